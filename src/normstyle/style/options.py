"""Every stylisation default in one place; the CLI derives its options and help from here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from normstyle.errors import OptionError

# Gatys et al. 2016, §3: content at conv4_2, style on conv1_1 … conv5_1 with w_l = 1/5.
# Named after the ReLU: the paper's feature maps F^l are the rectified responses.
PAPER_CONTENT_LAYERS = {"relu4_2": 1.0}
PAPER_STYLE_LAYERS = {f"relu{block}_1": 0.2 for block in range(1, 6)}


def _option(default: Any = None, help: str = "", factory: Any = None) -> Any:
    """A dataclass field whose help text the CLI shows: defaults and help live only here."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class StyleOptions:
    """Options of :func:`normstyle.stylize`. Each help says where the default comes from."""

    size: int = _option(512, "output long side in px (the paper's figures are ~512 px)")
    iterations: int = _option(500, "optimiser steps, one loss evaluation each")
    optimizer: Literal["lbfgs", "adam"] = _option(
        "lbfgs", "the paper optimises the pixels with L-BFGS"
    )
    learning_rate: float | None = _option(
        None,
        "L-BFGS: step scale (default 1, plain L-BFGS); Adam: step in 1/255 intensity"
        " levels (default 10, as neural-style)",
    )
    init: str = _option(
        "noise", "start image: 'noise' (the paper: white noise), 'content', or an image path"
    )
    content_weight: float = _option(1.0, "α, the content loss weight")
    style_weight: float | None = _option(
        None,
        "β, the style loss weight (default: 10 × the number of content feature values"
        " N·M, so the balance does not change with image size; see the README)",
    )
    content_layers: dict[str, float] = _option(
        help="content layers with weights (the paper: relu4_2)",
        factory=lambda: dict(PAPER_CONTENT_LAYERS),
    )
    style_layers: dict[str, float] = _option(
        help="style layers with weights w_l (the paper: relu1_1…relu5_1, 1/5 each)",
        factory=lambda: dict(PAPER_STYLE_LAYERS),
    )
    tv_weight: float = _option(0.0, "total-variation smoothing weight (not in the paper)")
    style_scale: float = _option(1.0, "style image long side = size × style_scale")
    style_blend: tuple[float, ...] | None = _option(
        None, "weights of several style images (default: equal)"
    )
    preserve_colors: Literal["none", "luminance", "histogram"] = _option(
        "none", "keep the content's colours (Gatys et al. 2017): 'luminance' or 'histogram'"
    )
    pooling: Literal["avg", "max"] = _option(
        "avg", "the paper replaces max by average pooling for synthesis"
    )
    scales: int = _option(
        1,
        "coarse-to-fine levels: optimise at size/2^(k-1), …, size/2, size, each level"
        " starting from the previous result upsampled (Gatys et al. 2017)",
    )
    coarse_iterations: int | None = _option(
        None, "iterations at each coarser level (default: the same as --iterations)"
    )
    weights: str = _option("vgg19-caffe", "weight source id or file (the paper: Caffe VGG-19)")
    normalize: bool = _option(True, "use the weights' mean-normalised variant, as the paper does")
    device: str = _option("auto", "cpu, cuda, mps or auto (the first available of cuda, mps, cpu)")
    precision: str = _option(
        "auto",
        "network precision: fp32, bf16, fp16 or auto (bf16 where the hardware computes"
        " it natively, else fp32; losses and Grams stay fp32)",
    )
    seed: int | None = _option(None, "random seed; by default a random one, reported")
    save_every: int = _option(0, "write an intermediate image every N iterations (0: never)")
    progress: bool = _option(True, "show a progress bar with the loss")
    verbose: bool = _option(False, "print per-layer losses at ten points of the run")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`OptionError` for values that cannot work."""
        for name in ("size", "iterations", "scales"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise OptionError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.size < 16:
            raise OptionError(f"size {self.size} is too small: VGG's five poolings need ≥ 16 px")
        if self.size >> (self.scales - 1) < 16:
            raise OptionError(
                f"{self.scales} scales from size {self.size}: the coarsest is under 16 px"
            )
        if self.coarse_iterations is not None and self.coarse_iterations < 0:
            raise OptionError(f"coarse_iterations must be ≥ 0, got {self.coarse_iterations}")
        if self.optimizer not in ("lbfgs", "adam"):
            raise OptionError(f"optimizer must be 'lbfgs' or 'adam', not '{self.optimizer}'")
        if self.pooling not in ("avg", "max"):
            raise OptionError(f"pooling must be 'avg' or 'max', not '{self.pooling}'")
        if self.preserve_colors not in ("none", "luminance", "histogram"):
            raise OptionError(
                "preserve_colors must be 'none', 'luminance' or 'histogram',"
                f" not '{self.preserve_colors}'"
            )
        for name in ("learning_rate", "style_scale"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise OptionError(f"{name} must be positive, got {value!r}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) is not None and not getattr(self, name) >= 0:
                raise OptionError(f"{name} must be ≥ 0, got {getattr(self, name)!r}")
        if self.save_every < 0:
            raise OptionError(f"save_every must be ≥ 0, got {self.save_every}")
        if not self.content_layers and not self.style_layers:
            raise OptionError("no content and no style layers: nothing to optimise")
        if self.style_blend is not None and any(w < 0 for w in self.style_blend):
            raise OptionError("style blend weights must be ≥ 0")

    def step_size(self) -> float:
        """The learning rate with its per-optimiser default filled in."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 1.0 if self.optimizer == "lbfgs" else 10.0

    def level_sizes(self) -> list[int]:
        """Long side of each coarse-to-fine level, coarsest first."""
        return [self.size >> k for k in reversed(range(self.scales))]

    def level_iterations(self) -> list[int]:
        """Iterations at each level, coarsest first."""
        coarse = self.iterations if self.coarse_iterations is None else self.coarse_iterations
        return [coarse] * (self.scales - 1) + [self.iterations]

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> StyleOptions:
        """Build from keyword arguments, with a close-match suggestion for a misspelled name."""
        from normstyle.errors import did_you_mean

        known = {f.name for f in fields(cls)}
        for key in kwargs:
            if key not in known:
                raise OptionError(f"unknown option '{key}'{did_you_mean(key, known)}")
        return cls(**kwargs)
