"""The optimisation on the real VGG-19 at small sizes, and colour preservation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from normstyle import stylize
from normstyle.errors import OptionError
from normstyle.style.color import keep_luminance, match_color_histogram, rgb_to_yiq, yiq_to_rgb
from normstyle.style.options import StyleOptions
from normstyle.style.transfer import run

SMALL = {"long_side": 64, "progress": False}


@pytest.mark.vgg
def test_lbfgs_lowers_the_loss_tenfold_from_noise() -> None:
    result = run(
        "builtin:grace_hopper",
        "builtin:swirls",
        StyleOptions(iterations=20, seed=3, init="noise", **SMALL),
    )
    assert result.losses[0] / result.final["total"] >= 10, (result.losses[0], result.final)


@pytest.mark.vgg
def test_same_seed_gives_identical_output() -> None:
    options = {"iterations": 5, "seed": 11, "init": "noise", **SMALL}
    first = np.asarray(stylize("builtin:grace_hopper", "builtin:swirls", **options))
    second = np.asarray(stylize("builtin:grace_hopper", "builtin:swirls", **options))
    third = np.asarray(stylize("builtin:grace_hopper", "builtin:swirls", **{**options, "seed": 12}))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)


@pytest.mark.vgg
def test_adam_multi_style_and_intermediate_saves(tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    blue = torch.zeros(3, 40, 40)
    blue[2] = 1.0
    result = run(
        "builtin:grace_hopper",
        ["builtin:swirls", blue],
        StyleOptions(
            iterations=6,
            optimizer="adam",
            init="content",
            seed=1,
            style_blend=(3.0, 1.0),
            save_every=2,
            **SMALL,
        ),
        output=out,
    )
    assert result.final["total"] < result.losses[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out_2.png", "out_4.png"]
    assert result.image.size == (55, 64)


def test_options_are_validated() -> None:
    for bad in (
        {"long_side": 0},
        {"iterations": -1},
        {"optimizer": "sgd"},
        {"pooling": "min"},
        {"style_weight": -1.0},
        {"preserve_colors": "yes"},
    ):
        with pytest.raises(OptionError):
            StyleOptions(**bad)
    with pytest.raises(OptionError, match="did you mean 'iterations'"):
        StyleOptions.from_kwargs(iteration=3)


def test_yiq_round_trip_and_luminance_transfer() -> None:
    rgb = torch.rand(1, 3, 5, 7)
    torch.testing.assert_close(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-6, rtol=0)
    stylized, content = torch.rand(1, 3, 5, 7) * 0.5 + 0.25, torch.rand(1, 3, 5, 7) * 0.5 + 0.25
    mixed = rgb_to_yiq(keep_luminance(stylized, content))
    # Luminance from the stylised image, chrominance from the content (where nothing clips).
    torch.testing.assert_close(mixed[:, 0], rgb_to_yiq(stylized)[:, 0], atol=1e-5, rtol=0)
    ok = (
        yiq_to_rgb(torch.cat([rgb_to_yiq(stylized)[:, :1], rgb_to_yiq(content)[:, 1:]], 1)) - 0.5
    ).abs().amax(1) < 0.5
    torch.testing.assert_close(
        mixed[:, 1:][:, :, ok[0]], rgb_to_yiq(content)[:, 1:][:, :, ok[0]], atol=1e-5, rtol=0
    )


def test_histogram_matching_gives_the_content_mean_and_covariance() -> None:
    generator = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 30, 30, generator=generator) * 0.3 + 0.2
    content = torch.rand(1, 3, 30, 30, generator=generator) * 0.2 + 0.4
    matched = match_color_histogram(style, content).reshape(3, -1).double()
    target = content.reshape(3, -1).double()
    torch.testing.assert_close(matched.mean(1), target.mean(1), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cov(matched), torch.cov(target), atol=1e-5, rtol=1e-3)


@pytest.mark.vgg
def test_luminance_preservation_keeps_the_content_chrominance_after_coarse_to_fine() -> None:
    from normstyle.io.resize import load_rgb
    from normstyle.io.tensors import image_to_rgb

    options = StyleOptions(
        iterations=3, scales=2, seed=0, preserve_colors="luminance", precision="fp32", **SMALL
    )
    output = image_to_rgb(run("builtin:grace_hopper", "builtin:swirls", options).image)
    content = load_rgb("builtin:grace_hopper", 64)  # read independently, at the output's size
    assert output.shape == content.shape
    got, want = rgb_to_yiq(output)[:, 1:], rgb_to_yiq(content)[:, 1:]
    unclipped = ((output > 0.01) & (output < 0.99)).all(1, keepdim=True).expand_as(got)
    assert unclipped.float().mean() > 0.5
    # Equal up to the 8-bit rounding of the saved image.
    torch.testing.assert_close(got[unclipped], want[unclipped], atol=0.01, rtol=0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"style_layers": {"relu1_1": float("nan")}}, "weight of relu1_1 must be a finite"),
        ({"content_layers": {"relu4_2": float("inf")}}, "weight of relu4_2 must be a finite"),
        ({"style_layers": {"relu1_1": -5.0}}, "weight of relu1_1 must be a finite number ≥ 0"),
        ({"style_blend": (float("nan"), 1.0)}, "style blend weights must be finite"),
        ({"content_weight": float("inf")}, "content_weight must be a finite number ≥ 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number > 0"),
        ({"style_scale": 9.0}, "style_scale 9 is more than 8"),
        ({"seed": 2**64}, "seed must be a whole number from 0 to 2\\^64 − 1"),
        ({"seed": -1}, "seed must be"),
        ({"iterations": True}, "iterations must be a positive integer"),
        ({"save_every": 1.5}, "save_every must be a whole number"),
    ],
)
def test_api_options_are_validated(options, message) -> None:
    with pytest.raises(OptionError, match=message):
        stylize("builtin:grace_hopper", "builtin:swirls", **options)


def test_paper_sets_the_papers_exact_set_up() -> None:
    options = StyleOptions(
        paper=True,
        init="content",
        style_weight=5.0,
        content_weight=2.0,
        style_layers={"relu3_1": 1.0},
        progress=False,
    )
    assert options.init == "noise"
    assert options.style_layers == {f"relu{b}_1": 0.2 for b in range(1, 6)}
    assert options.content_layers == {"relu4_2": 1.0}
    assert options.content_weight / options.style_weight == pytest.approx(1e-3)  # α/β, Fig. 2


@pytest.mark.vgg
@pytest.mark.parametrize(("bf16_seconds", "expected"), [(0.5, "bf16"), (1.5, "fp32")])
def test_auto_precision_keeps_native_bf16_only_where_it_was_timed_faster(
    monkeypatch: pytest.MonkeyPatch, bf16_seconds: float, expected: str
) -> None:
    """Where bf16 is native (made so here on any CPU), ``auto`` runs the network in it only if
    this machine's remembered timings of the run's conv shapes say it is faster than fp32."""
    import normstyle.runtime.convolutions as convolutions
    import normstyle.style.transfer as transfer
    from normstyle.io.decode import decoded, image_size
    from normstyle.io.resize import scaled_size
    from normstyle.nets.chain import chain_of
    from normstyle.registry import for_stylization
    from normstyle.runtime.precision import Runtime
    from normstyle.runtime.tuning import Tuning, conv_key

    model = for_stylization("vgg19-caffe").build(pooling="avg")
    width, height = scaled_size(image_size(decoded("builtin:grace_hopper")), long_side=64)
    sizes = convolutions.input_sizes(chain_of(model), (1, 3, height, width))
    tuning = Tuning(None, "test")
    for name, module in chain_of(model):
        if isinstance(module, torch.nn.Conv2d) and module.in_channels >= 16:
            timings = {"fp32-direct": 1.0, "fp32-winograd": 2.0, "fp32-winograd6": 2.0}
            timings["bf16-direct"] = bf16_seconds
            timings["bf16-winograd2"] = 2 * bf16_seconds  # slower: bf16 runs direct
            tuning.put(conv_key(module, *sizes[name]), timings)
    monkeypatch.setattr(convolutions, "current", lambda: tuning)
    monkeypatch.setattr(convolutions, "_time_kernels", None)  # everything is remembered
    monkeypatch.setattr(
        transfer, "resolve_runtime", lambda device, precision: Runtime(torch.device("cpu"), "bf16")
    )
    options = StyleOptions(iterations=2, scales=1, seed=0, **SMALL)
    assert run("builtin:grace_hopper", "builtin:swirls", options).runtime == f"cpu, {expected}"
