"""Every stylisation default in one place; the CLI derives its options and help from here."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from normstyle.errors import OptionError
from normstyle.runtime.convolutions import CONVOLUTION_CHOICES, ConvolutionChoice
from normstyle.runtime.precision import DeviceChoice, PrecisionChoice
from normstyle.style.stopping import FINISHED, SETTLED, StoppingRule

# Gatys et al. 2016, §3: content at conv4_2, style on conv1_1 … conv5_1 with w_l = 1/5.
# Named after the ReLU: the paper's feature maps F^l are the rectified responses.
PAPER_CONTENT_LAYERS = {"relu4_2": 1.0}
PAPER_STYLE_LAYERS = {f"relu{block}_1": 0.2 for block in range(1, 6)}
# α/β of the paper's Fig. 2 (its third column; the others range from 1e-2 to 1e-4).
PAPER_ALPHA_OVER_BETA = 1e-3


def _option(
    default: Any = None, help: str = "", factory: Any = None, flag: str | None = None
) -> Any:
    """A dataclass field whose help text the CLI shows: defaults and help live only here.
    ``flag``: the command-line name, where it is not the field's (``--size`` for long_side,
    neural-style's ``-image_size``)."""
    metadata = {"help": help, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# More iterations than this are a typo, not a plan (a 64 px iteration takes ~0.05 s).
MAX_ITERATIONS = 1_000_000
# The most iterations an 'auto' level runs if the stopping rule has not ended it before.
AUTO_MAX_ITERATIONS = 1000
# --scales auto: a half-size level first when the output is at least AUTO_SCALES_MIN_SIDE and
# --iterations is auto. It runs until its large structure has settled (style/stopping.py:
# SETTLED), at least SETTLED.minimum iterations — measured on 4 pairs at 256 px (README, Speed):
# the full-size level then reaches a finished image in 123–183 iterations instead of 199–281, for
# ~30 full-size iterations' worth of coarse work — and at most AUTO_COARSE_MAX_ITERATIONS: on
# china.jpg × flower.jpg, whose half-size loss still fell fast after 100 iterations, 200 more
# half-size iterations (each a quarter of a full-size one's work) saved 225 at full size.
AUTO_COARSE_MAX_ITERATIONS = 400
AUTO_SCALES_MIN_SIDE = 256
# A style image larger than this multiple of the output only adds upsampled pixels (and memory:
# --style-scale 100 once asked for a 6400 px style image beside a 64 px output).
MAX_STYLE_SCALE = 8.0


def _finite_number(value: Any, positive: bool = False) -> bool:
    """A real number (not a bool), finite, ≥ 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (value > 0 if positive else value >= 0)


@dataclass
class StyleOptions:
    """Options of :func:`normstyle.stylize`. Each help says where the default comes from."""

    long_side: int = _option(
        512, "output long side in px (the paper's figures are ~512 px)", flag="--size"
    )
    iterations: int | Literal["auto"] = _option(
        "auto",
        "optimiser steps per level, one loss evaluation each: a number, or 'auto' — until the"
        " image is finished (see style/stopping.py), at most 1000",
    )
    optimizer: Literal["lbfgs", "adam"] = _option(
        "lbfgs", "the paper optimises the pixels with L-BFGS"
    )
    learning_rate: float | None = _option(
        None,
        "L-BFGS: step scale (default 1, plain L-BFGS); Adam: step in 1/255 intensity"
        " levels (default 10, as neural-style)",
    )
    init: str = _option(
        "recolored",
        "start image: 'recolored' (the content image recoloured to the style's colour mean and"
        " covariance; measured: fewer steps to a finished image where the style's colours are"
        " far from the photo's), 'content' (as low a loss as white noise in fewer steps, and"
        " no grain where content and style are flat), 'noise' (the paper), or an image path",
    )
    content_weight: float = _option(1.0, "α, the content loss weight")
    style_weight: float | None = _option(
        None,
        "β, the style loss weight (default: 600 × the number of content feature values"
        " N·M, so the balance does not change with image size; see the README)",
    )
    content_layers: dict[str, float] = _option(
        help="content layers with weights (the paper: relu4_2)",
        factory=lambda: dict(PAPER_CONTENT_LAYERS),
    )
    style_layers: dict[str, float] | list[dict[str, float]] = _option(
        help="style layers with weights w_l (the paper: relu1_1…relu5_1, 1/5 each); one set for"
        " every style image, or one set per style image (scale control, Gatys et al. 2017 §6:"
        " e.g. the fine layers relu1_1,relu2_1 from one style and relu3_1,relu4_1,relu5_1 from"
        " another)",
        factory=lambda: dict(PAPER_STYLE_LAYERS),
    )
    tv_weight: float = _option(0.0, "total-variation smoothing weight (not in the paper)")
    style_scale: float = _option(
        1.0, "style image long side = output long side × style_scale (at most 8)"
    )
    style_blend: tuple[float, ...] | None = _option(
        None, "weights of several style images (default: equal)"
    )
    preserve_colors: Literal["none", "luminance", "luminance-swap", "histogram"] = _option(
        "none",
        "keep the content's colours (Gatys et al. 2017, §5): 'luminance' (the transfer runs on"
        " luminance alone, the style's matched to the content's mean and variance; the content's"
        " chrominance is put back), 'histogram' (the style image recoloured to the content's"
        " colour mean and covariance first) or 'luminance-swap' (a colour transfer whose"
        " luminance is then combined with the content's chrominance, as neural-style's"
        " -original_colors)",
    )
    masks: tuple[Any, ...] | None = _option(
        None,
        "spatial control (Gatys et al. 2017, §4): one greyscale mask per style image over the"
        " content image (white: where that style goes; any size, stretched to the content's;"
        " grey blends); where no mask is white the output keeps the content without style",
    )
    style_masks: tuple[Any, ...] | None = _option(
        None,
        "one greyscale mask per style image over that style image: the region whose style is"
        " taken (default: all of it)",
    )
    pooling: Literal["avg", "max"] = _option(
        "avg", "the paper replaces max by average pooling for synthesis"
    )
    scales: int | Literal["auto"] = _option(
        "auto",
        "coarse-to-fine levels: a number k — optimise at long sides L/2^(k-1), …, L/2, L, each"
        " level starting from the previous result upsampled (Gatys et al. 2017) — or 'auto':"
        f" two levels when --iterations is auto and the output is at least {AUTO_SCALES_MIN_SIDE}"
        " px, else one",
    )
    coarse_iterations: int | None = _option(
        None,
        "iterations at each coarser level, exactly (default with --iterations auto: until its"
        f" loss settles, {SETTLED.minimum}–{AUTO_COARSE_MAX_ITERATIONS}; else the same as"
        " --iterations)",
    )
    weights: str = _option("vgg19-caffe", "weight source id or file (the paper: Caffe VGG-19)")
    normalize: bool = _option(True, "use the weights' mean-normalised variant, as the paper does")
    device: DeviceChoice = _option(
        "auto", "cpu, cuda, mps or auto (the first available of cuda, mps, cpu)"
    )
    precision: PrecisionChoice = _option(
        "auto",
        "network precision: fp32, bf16, fp16 or auto (bf16 where the hardware computes"
        " it natively and, on the CPU, it was timed faster than fp32 here; else fp32; losses"
        " and Grams stay fp32)",
    )
    convolution: ConvolutionChoice = _option(
        "auto",
        "3×3 conv algorithm in an fp32 network: direct, winograd (F(4×4,3×3)), auto (per layer,"
        " the faster on this machine: each layer shape timed once and remembered in"
        " $NORMSTYLE_CACHE, see the README) or measure (timed afresh)",
    )
    max_memory: str | float | None = _option(
        None,
        "memory a run may use, e.g. 8G or 512M (default: 6 GB, or 80% of the memory available"
        " if less); an image that does not fit runs with a shorter L-BFGS history and in bands"
        " of rows, with exactly the same loss",
    )
    tile: int | None = _option(
        None,
        "run the image in bands of this many rows (plus halos), whatever the memory (for"
        " experts; default: bands only where the image does not fit --max-memory)",
    )
    seed: int | None = _option(None, "random seed; by default a random one, reported")
    save_every: int = _option(0, "write an intermediate image every N iterations (0: never)")
    progress: bool = _option(True, "show a progress bar with the loss")
    verbose: bool = _option(False, "print per-layer losses at ten points of the run")
    paper: bool = _option(
        False,
        "use the paper's exact set-up: white-noise start, one scale, w_l = 1/5 on relu1_1…relu5_1,"
        " content relu4_2, α/β = 1e-3 as printed (overrides those options)",
    )

    def __post_init__(self) -> None:
        if self.paper and isinstance(self.style_layers, (list, tuple)):
            raise OptionError(
                "--paper uses the paper's style layers for every style image: it cannot be"
                " combined with one set of style layers per style image"
            )
        if self.paper:  # Gatys et al. 2016, §3 and Fig. 2, as printed
            self.init = "noise"
            self.scales = 1
            self.content_layers = dict(PAPER_CONTENT_LAYERS)
            self.style_layers = dict(PAPER_STYLE_LAYERS)
            self.style_weight = self.content_weight / PAPER_ALPHA_OVER_BETA
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OptionError` for values that cannot work. (Image sizes at each level
        and the memory they need are checked against the images, when a run starts.)"""
        for name in ("long_side", "iterations", "scales"):
            value = getattr(self, name)
            if name in ("iterations", "scales") and value == "auto":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                also = " or 'auto'" if name != "long_side" else ""
                raise OptionError(f"{name} must be a positive integer{also}, got {value!r}")
        if self.long_side >> (self.level_count() - 1) < 1:
            raise OptionError(
                f"{self.scales} scales from long side {self.long_side}: the coarsest is 0 px"
            )
        self.max_memory_bytes()
        if self.tile is not None and (
            not isinstance(self.tile, int) or isinstance(self.tile, bool) or self.tile <= 0
        ):
            raise OptionError(f"tile must be a positive number of rows, got {self.tile!r}")
        for name in ("coarse_iterations", "save_every"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise OptionError(f"{name} must be a whole number ≥ 0, got {value!r}")
        if self.seed is not None and (not isinstance(self.seed, int) or not 0 <= self.seed < 2**64):
            raise OptionError(f"seed must be a whole number from 0 to 2^64 − 1, got {self.seed!r}")
        if self.device not in typing.get_args(DeviceChoice):
            raise OptionError(f"device must be cpu, cuda, mps or auto, not '{self.device}'")
        if self.precision not in typing.get_args(PrecisionChoice):
            raise OptionError(f"precision must be fp32, bf16, fp16 or auto, not '{self.precision}'")
        if self.convolution not in CONVOLUTION_CHOICES:
            raise OptionError(
                f"convolution must be auto, measure, direct or winograd, not '{self.convolution}'"
            )
        if self.optimizer not in ("lbfgs", "adam"):
            raise OptionError(f"optimizer must be 'lbfgs' or 'adam', not '{self.optimizer}'")
        if self.pooling not in ("avg", "max"):
            raise OptionError(f"pooling must be 'avg' or 'max', not '{self.pooling}'")
        if self.preserve_colors not in ("none", "luminance", "luminance-swap", "histogram"):
            raise OptionError(
                "preserve_colors must be 'none', 'luminance', 'luminance-swap' or 'histogram',"
                f" not '{self.preserve_colors}'"
            )
        for name in ("masks", "style_masks"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (list, tuple)) or len(value) == 0):
                raise OptionError(f"{name} must be a list with one mask per style image")

        for name in ("learning_rate", "style_scale"):
            value = getattr(self, name)
            if value is not None and not _finite_number(value, positive=True):
                raise OptionError(f"{name} must be a finite number > 0, got {value!r}")
        if self.style_scale > MAX_STYLE_SCALE:
            raise OptionError(
                f"style_scale {self.style_scale:g} is more than {MAX_STYLE_SCALE:g}: the style"
                f" image would be {self.style_scale:g}× the output's size, only upsampled"
            )
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            if value is not None and not _finite_number(value):
                raise OptionError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if isinstance(self.style_layers, (list, tuple)):
            if not self.style_layers or not all(isinstance(d, dict) for d in self.style_layers):
                raise OptionError("style_layers must be one set of layers, or one per style image")
            self.style_layers = [dict(layers) for layers in self.style_layers]
        for name, sets in (
            ("content_layers", [self.content_layers]),
            ("style_layers", self.style_layer_sets()),
        ):
            for layers in sets:
                for layer, weight in layers.items():
                    if not _finite_number(weight):
                        raise OptionError(
                            f"{name}: the weight of {layer} must be a finite number ≥ 0,"
                            f" got {weight!r}"
                        )
        if not self.content_layers and not self.style_layer_names():
            raise OptionError("no content and no style layers: nothing to optimise")
        content_total = self.content_weight * sum(self.content_layers.values())
        style_total = (1.0 if self.style_weight is None else self.style_weight) * sum(
            sum(layers.values()) for layers in self.style_layer_sets()
        )
        if content_total == 0 and style_total == 0:
            raise OptionError("every content and style weight is 0: nothing to optimise")
        caps = self.level_iterations()
        if max(caps) > MAX_ITERATIONS:
            raise OptionError(f"more than {MAX_ITERATIONS:,} iterations per level")
        if self.style_blend is not None:
            for weight in self.style_blend:
                if not _finite_number(weight):
                    raise OptionError(
                        f"style blend weights must be finite numbers ≥ 0, got {weight!r}"
                    )

    def max_memory_bytes(self) -> float | None:
        """``max_memory`` in bytes (None: the default budget, see runtime/memory.py)."""
        if self.max_memory is None:
            return None
        from normstyle.runtime.memory import parse_size

        return parse_size(self.max_memory)

    def style_layer_sets(self) -> list[dict[str, float]]:
        """The style layers as given: one set (for every style image) or one per style image."""
        if isinstance(self.style_layers, dict):
            return [self.style_layers]
        return list(self.style_layers)

    def style_layer_names(self) -> list[str]:
        """Every style layer any style image uses, in order of first mention."""
        return list(dict.fromkeys(name for layers in self.style_layer_sets() for name in layers))

    def style_layers_per_style(self, count: int) -> list[dict[str, float]]:
        """The style layers of each of ``count`` style images; an :class:`OptionError` if one
        set per style image was given for another number of them."""
        sets = self.style_layer_sets()
        if isinstance(self.style_layers, dict):
            return sets * count
        if len(sets) != count:
            raise OptionError(
                f"{len(sets)} sets of style layers for {count} style image"
                f"{'s' if count != 1 else ''}: give one set for all, or one per style image"
            )
        return sets

    def step_size(self) -> float:
        """The learning rate with its per-optimiser default filled in."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1.0 if self.optimizer == "lbfgs" else 10.0

    def level_count(self) -> int:
        """How many coarse-to-fine levels: ``scales``, or what 'auto' makes of it."""
        if self.scales != "auto":
            return self.scales
        coarse = self.iterations == "auto" and self.long_side >= AUTO_SCALES_MIN_SIDE
        return 2 if coarse else 1

    def level_long_sides(self) -> list[int]:
        """Long side of each coarse-to-fine level, coarsest first."""
        return [self.long_side >> k for k in reversed(range(self.level_count()))]

    def level_iterations(self) -> list[int]:
        """Iterations at each level, coarsest first: the count given, or for an 'auto' level the
        most it may run (:data:`AUTO_MAX_ITERATIONS`, :data:`AUTO_COARSE_MAX_ITERATIONS`)."""
        return [count for count, _ in self.level_budgets()]

    def level_budgets(self) -> list[tuple[int, StoppingRule | None]]:
        """Per level, coarsest first: (iterations, the stopping rule that may end it sooner, or
        None). A count given is run exactly."""
        final: tuple[int, StoppingRule | None] = (AUTO_MAX_ITERATIONS, FINISHED)
        if self.iterations != "auto":
            final = (self.iterations, None)
        coarse: tuple[int, StoppingRule | None]
        if self.coarse_iterations is not None:
            coarse = (self.coarse_iterations, None)
        elif self.iterations == "auto":
            coarse = (AUTO_COARSE_MAX_ITERATIONS, SETTLED)
        else:
            coarse = final
        return [coarse] * (self.level_count() - 1) + [final]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> StyleOptions:
        """Build from keyword arguments, with a close-match suggestion for a misspelled name."""
        from normstyle.errors import did_you_mean

        known = {f.name for f in fields(cls)}
        for key in kwargs:
            if key not in known:
                raise OptionError(f"unknown option '{key}'{did_you_mean(key, known)}")
        return cls(**kwargs)
