"""Device and precision: every precision runs and matches fp32 on a small net; refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nets import STYLIZE_BUILTINS
from normstyle.errors import OptionError
from normstyle.nets import VGG
from normstyle.nets.preprocessing import CAFFE
from normstyle.normalization.cascade import normalize
from normstyle.normalization.means import activation_means
from normstyle.runtime.precision import (
    Runtime,
    cpu_has_fast_bf16,
    resolve_runtime,
)
from normstyle.style.loop import optimize
from normstyle.style.options import StyleOptions
from normstyle.style.precision import GradientScale, backward_to_pixels, evaluate
from normstyle.style.targets import STYLE_WEIGHT_PER_CONTENT_VALUE, build_loss

LAYERS = {"content_layers": {"relu3_1": 1.0}, "style_layers": {"relu1_1": 0.5, "relu2_1": 0.5}}


@pytest.fixture(scope="module")
def small_vgg() -> VGG:
    torch.manual_seed(0)
    model = VGG("vgg11", pooling="avg")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight)
                module.bias.uniform_(0, 0.05)
    # Normalised, as stylisation runs it: activations of order 1, which fp16's range needs.
    generator = torch.Generator().manual_seed(3)
    batches = [CAFFE.from_rgb(torch.rand(2, 3, 40, 48, generator=generator)) for _ in range(2)]
    model = normalize(model, activation_means(model, batches))
    return model.to(memory_format=torch.channels_last)


def loss_for(model: VGG, runtime: Runtime, options: StyleOptions):
    generator = torch.Generator().manual_seed(1)
    content, style = (
        torch.rand(1, 3, 40, 48, generator=generator),
        torch.rand(1, 3, 40, 48, generator=generator),
    )
    return build_loss(model, CAFFE, content, [style], [1.0], options, runtime)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_each_precision_runs_and_matches_fp32(small_vgg: VGG, precision: str) -> None:
    options = StyleOptions(long_side=48, iterations=10, progress=False, **LAYERS)
    fp32 = resolve_runtime("cpu", "fp32")
    # Built directly (not by the policy): the numerics are exercised on every CPU, emulated where
    # the CPU has no native instructions for them.
    low = Runtime(torch.device("cpu"), precision)
    start = CAFFE.from_rgb(torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2)))
    judge_loss = loss_for(small_vgg, fp32, options)
    # One evaluation: loss and pixel gradient in low precision agree with fp32.
    gradients, totals = {}, {}
    for runtime in (fp32, low):
        x = start.clone().requires_grad_(True)
        scale = GradientScale()
        terms = backward_to_pixels(
            small_vgg, loss_for(small_vgg, runtime, options), x, runtime, scale
        )
        totals[runtime.precision], gradients[runtime.precision] = (
            float(terms.total.detach()),
            x.grad,
        )
        if runtime.precision == "fp16":
            assert scale.value < 1.0  # this loss's gradients overflow fp16 unscaled
    assert totals[precision] == pytest.approx(totals["fp32"], rel=0.03)
    cosine = torch.cosine_similarity(gradients[precision].flatten(), gradients["fp32"].flatten(), 0)
    assert cosine > 0.999
    # A short optimisation in low precision, judged in fp32, ends close to the fp32 run.
    results = {}
    for runtime in (fp32, low):
        done = optimize(
            small_vgg, loss_for(small_vgg, runtime, options), start, 10, options, CAFFE, runtime
        )
        assert done.rejected == 0 and done.stopped is None, done.events
        results[runtime.precision] = float(evaluate(small_vgg, judge_loss, done.x, fp32).total)
    assert results["fp32"] < 0.01 * totals["fp32"]
    # 15%: bf16 rounds the pixel gradient to ~3 digits, and L-BFGS's per-pixel diagonal start
    # (style/lbfgs.py) is fitted to gradient differences, so the fp32 run gets further
    # ahead early: after these 10 iterations bf16 ended 12% above fp32 (2.58e7 against 2.30e7;
    # fp32 runs from starts perturbed by 2⁻⁹ ended within 0.4% of each other), where with the
    # textbook γI start both ended near 2.6e7 (1.9% apart). fp16 ended within 0.4% of fp32.
    assert results[precision] == pytest.approx(results["fp32"], rel=0.15)


def test_grams_and_losses_stay_fp32_under_autocast(small_vgg: VGG) -> None:
    options = StyleOptions(long_side=48, progress=False, **LAYERS)
    runtime = Runtime(torch.device("cpu"), "bf16")
    loss = loss_for(small_vgg, runtime, options)
    assert all(g.dtype == torch.float32 for g in loss.style_grams.values())
    terms = evaluate(small_vgg, loss, torch.rand(1, 3, 40, 48) * 50, runtime)
    assert terms.total.dtype == torch.float32


def test_default_style_weight_scales_with_the_content_size(small_vgg: VGG) -> None:
    options = StyleOptions(long_side=48, progress=False, **LAYERS)
    loss = loss_for(small_vgg, resolve_runtime("cpu", "fp32"), options)
    values = 256 * (40 // 4) * (48 // 4)  # relu3_1: 256 channels at 1/4 resolution
    assert loss.style_weight == STYLE_WEIGHT_PER_CONTENT_VALUE * values
    explicit = loss_for(
        small_vgg,
        resolve_runtime("cpu", "fp32"),
        StyleOptions(long_side=48, style_weight=7.0, progress=False, **LAYERS),
    )
    assert explicit.style_weight == 7.0


def cpuinfo_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        pytest.skip("no /proc/cpuinfo on this system")
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}


def test_native_bf16_follows_the_cpu_flags_and_the_isa_limits() -> None:
    # Independent of torch's queries: the kernel's CPU flags and the documented env variables.
    import os
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the bf16 policy is for x86 CPUs")
    flags = cpuinfo_flags()
    limited = os.environ.get("ATEN_CPU_CAPABILITY", "").lower() in ("avx2", "default") or (
        os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in ("AVX2", "AVX512_CORE", "SSE41")
    )
    expected = bool({"avx512_bf16", "amx_bf16"} & flags) and "avx512f" in flags and not limited
    assert cpu_has_fast_bf16() == expected
    assert resolve_runtime("cpu").precision == ("bf16" if expected else "fp32")
    if not expected:
        with pytest.raises(OptionError, match="not native on this CPU"):
            resolve_runtime("cpu", "bf16")


@pytest.mark.slow
@pytest.mark.parametrize(
    "limits",
    [
        {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
        {"ATEN_CPU_CAPABILITY": "avx2"},
        {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    ],
)
def test_an_isa_limited_process_refuses_bf16_and_fp16_in_one_line(tmp_path: Path, limits) -> None:
    import os
    import subprocess

    out = tmp_path / "o.png"
    env = {**os.environ, **limits}
    for precision in ("bf16", "fp16"):
        done = subprocess.run(
            [
                *STYLIZE_BUILTINS,
                "-o",
                str(out),
                "--size",
                "32",
                "--precision",
                precision,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"--precision {precision} is not native on this CPU" in lines[0]
        assert "use --precision fp32" in lines[0]
        assert not out.exists() and list(tmp_path.iterdir()) == []


def test_auto_runtime_and_refusals(monkeypatch) -> None:
    auto = resolve_runtime()
    if not torch.cuda.is_available():
        assert auto.device.type in ("cpu", "mps")
        with pytest.raises(OptionError, match="CUDA is not available"):
            resolve_runtime("cuda")
    if auto.device.type == "cpu":
        assert auto.precision == ("bf16" if cpu_has_fast_bf16() else "fp32")
    monkeypatch.setattr("normstyle.runtime.precision.cpu_has_fast_bf16", lambda: False)
    assert resolve_runtime("cpu").precision == "fp32"  # never lowered without native support
    with pytest.raises(OptionError, match="precision must be"):
        resolve_runtime("cpu", "int8")
    with pytest.raises(OptionError, match="device must be"):
        resolve_runtime("tpu")


@pytest.mark.vgg
@pytest.mark.skipif(not cpu_has_fast_bf16(), reason="no native bf16 here (AVX-512-BF16 or AMX)")
def test_native_bf16_stylisation_matches_fp32_on_vgg19() -> None:
    from normstyle.io.resize import load_rgb
    from normstyle.registry import for_stylization
    from normstyle.style.transfer import run

    fp32 = resolve_runtime("cpu", "fp32")
    weights = for_stylization("vgg19-caffe")
    model = weights.build(pooling="avg").to(memory_format=torch.channels_last)
    judge = build_loss(
        model,
        weights.preprocessing,
        load_rgb("builtin:grace_hopper", 64),
        [load_rgb("builtin:swirls", 64)],
        [1.0],
        StyleOptions(long_side=64, progress=False),
        fp32,
    )
    finals = {}
    for precision in ("fp32", "bf16"):
        options = StyleOptions(
            long_side=64, iterations=30, seed=0, progress=False, precision=precision
        )
        result = run("builtin:grace_hopper", "builtin:swirls", options)
        assert result.runtime == f"cpu, {precision}"
        assert result.tensor is not None
        finals[precision] = float(evaluate(model, judge, result.tensor, fp32).total)
    assert finals["bf16"] == pytest.approx(finals["fp32"], rel=0.05)  # both judged in fp32


@pytest.mark.vgg
def test_coarse_to_fine_levels_and_intermediate_names(tmp_path: Path) -> None:
    from normstyle.style.transfer import run

    options = StyleOptions(
        long_side=64,
        iterations=4,
        scales=2,
        coarse_iterations=3,
        save_every=2,
        seed=0,
        progress=False,
        precision="fp32",
    )
    assert options.level_long_sides() == [32, 64] and options.level_iterations() == [3, 4]
    result = run("builtin:grace_hopper", "builtin:swirls", options, output=tmp_path / "o.png")
    assert len(result.losses) == 7 and result.image.size == (55, 64)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o_2.png", "o_4.png", "o_6.png"]
    message = r"builtin:grace_hopper would be 7×8 px at level 1 of 4 \(--size 8\).*--size 152 or"
    with pytest.raises(OptionError, match=message):
        run("builtin:grace_hopper", "builtin:swirls", StyleOptions(long_side=64, scales=4))


def test_scales_auto_is_coarse_to_fine_only_for_auto_runs_of_a_useful_size() -> None:
    from normstyle.style.options import AUTO_COARSE_MAX_ITERATIONS, AUTO_MAX_ITERATIONS
    from normstyle.style.stopping import FINISHED, SETTLED

    auto = StyleOptions(long_side=256)
    assert auto.scales == "auto" and auto.level_long_sides() == [128, 256]
    # the coarse level runs until it settles (at least 100), the last until the image is finished
    assert auto.level_budgets() == [
        (AUTO_COARSE_MAX_ITERATIONS, SETTLED),
        (AUTO_MAX_ITERATIONS, FINISHED),
    ]
    assert StyleOptions(long_side=256, coarse_iterations=7).level_budgets()[0] == (7, None)
    assert StyleOptions(long_side=255).level_long_sides() == [255]
    # a count given is run exactly, at one level; --paper is one level too
    assert StyleOptions(long_side=512, iterations=300).level_iterations() == [300]
    assert StyleOptions(long_side=512, paper=True).level_long_sides() == [512]
    # explicit choices win
    assert StyleOptions(long_side=512, scales=1).level_long_sides() == [512]
    assert StyleOptions(long_side=512, scales=3, coarse_iterations=7).level_iterations() == [
        7,
        7,
        AUTO_MAX_ITERATIONS,
    ]
    assert StyleOptions(long_side=512, scales=2, iterations=9).level_iterations() == [9, 9]
    for bad in (0, -1, "two", True):
        with pytest.raises(OptionError, match="scales must be a positive integer or 'auto'"):
            StyleOptions(scales=bad)


@pytest.mark.vgg
def test_each_auto_level_ends_by_its_own_stopping_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """The coarse level stops by SETTLED, the last by FINISHED, each within its own cap."""
    import normstyle.style.options as style_options
    from normstyle.style.stopping import StoppingRule
    from normstyle.style.transfer import run

    always = dict(window=2, tolerance=1e9)  # a rule that holds as soon as ``minimum`` is reached
    monkeypatch.setattr(style_options, "SETTLED", StoppingRule(**always, minimum=3))
    monkeypatch.setattr(style_options, "FINISHED", StoppingRule(**always, minimum=5))
    options = StyleOptions(long_side=64, scales=2, seed=0, progress=False, precision="fp32")
    result = run("builtin:grace_hopper", "builtin:swirls", options)
    assert len(result.losses) == 3 + 5
    # a coarse level that never settles runs to its cap, the count given is exact
    monkeypatch.setattr(style_options, "SETTLED", StoppingRule(window=2, tolerance=-1, minimum=3))
    monkeypatch.setattr(style_options, "AUTO_COARSE_MAX_ITERATIONS", 6)
    assert len(run("builtin:grace_hopper", "builtin:swirls", options).losses) == 6 + 5
    options.coarse_iterations = 2
    assert len(run("builtin:grace_hopper", "builtin:swirls", options).losses) == 2 + 5


def test_fp16_overflow_past_the_retries_gives_a_non_finite_gradient(small_vgg: VGG) -> None:
    options = StyleOptions(long_side=48, progress=False, **LAYERS)
    runtime = Runtime(torch.device("cpu"), "fp16")
    start = CAFFE.from_rgb(torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2)))
    x = start.clone().requires_grad_(True)
    scale = GradientScale(max_retries=1)  # no second try at a smaller scale
    terms = backward_to_pixels(small_vgg, loss_for(small_vgg, runtime, options), x, runtime, scale)
    assert torch.isfinite(terms.total)  # the loss itself is fine ...
    assert x.grad is not None and not torch.isfinite(x.grad).all()  # ... its fp16 gradient not
    assert scale.value == GradientScale().backoff  # backed off once, ready for the next call
