"""The CLI in-process: help, version, each error path's one-line message and exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from normstyle import __version__
from normstyle.cli import main

TINY = ["--size", "32", "--iterations", "2", "--no-progress", "--seed", "1"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def stylize_builtins(capsys, out: Path | str, *args: str) -> tuple[int, str, str]:
    """``normstyle stylize builtin:grace_hopper builtin:swirls -o OUT ARGS…``"""
    return run_cli(
        capsys, "stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out), *args
    )


def test_help_and_version(capsys) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0 and "stylize" in out and "weights" in out
    code, out, _ = run_cli(capsys, "stylize", "--help")
    assert code == 0 and "--style-weight" in out and "--no-normalize" in out and "[512]" in out
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"normstyle {__version__}"


@pytest.mark.vgg
def test_stylize_writes_the_output(capsys, tmp_path: Path) -> None:
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(
        capsys, "stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out), *TINY
    )
    assert code == 0, err
    assert out.is_file() and f"wrote {out}" in stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--size", "0"], 2, "--size: must be positive"),
        (["--iterations", "-5"], 2, "--iterations: must be positive"),
        (["--iterations", "many"], 2, "expected a positive integer"),
        (["--iterations", "Auto"], 2, "expected a positive integer"),
        (["--scales", "0"], 2, "--scales: must be positive"),
        (["--scales", "few"], 2, "expected a positive integer"),
        (["--convolution", "fft"], 2, "invalid choice"),
        (["--style-layers", "relu4_3x"], 2, "unknown layer 'relu4_3x' (did you mean 'relu4_3'?)"),
        (["--weights", "vgg19-cafe"], 2, "did you mean 'vgg19-caffe'"),
        (["--pooling", "min"], 2, "invalid choice"),
        (["--style-blend", "1,2"], 2, "2 style blend weights for 1 style images"),
    ],
)
def test_option_errors(capsys, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    out = tmp_path / "out.png"
    got, _, err = run_cli(
        capsys, "stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out), *TINY, *args
    )
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_input_errors(capsys, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    out = tmp_path / "out.png"
    cases = [
        ([str(tmp_path / "missing.jpg"), "builtin:swirls", "-o", str(out)], "no such file"),
        ([str(broken), "builtin:swirls", "-o", str(out)], "broken.jpg"),
        (
            ["builtin:grace_hopper", "builtin:swirls", "-o", str(tmp_path / "no" / "o.png")],
            "does not exist",
        ),
        (["builtin:grace_hoper", "builtin:swirls", "-o", str(out)], "did you mean 'grace_hopper'"),
    ]
    for args, message in cases:
        code, _, err = run_cli(capsys, "stylize", *args, *TINY)
        assert code == 1, (args, err)
        assert message in err and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
    assert not out.exists()


def test_unsupported_output_suffix_is_a_usage_error(capsys, tmp_path: Path) -> None:
    code, _, err = run_cli(
        capsys,
        "stylize",
        "builtin:grace_hopper",
        "builtin:swirls",
        "-o",
        str(tmp_path / "out.xyz"),
        *TINY,
    )
    assert code == 2 and "unsupported output format" in err


def test_interrupt_writes_nothing(capsys, tmp_path: Path, monkeypatch) -> None:
    import normstyle.cli.stylize_command as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "run", interrupted)
    out = tmp_path / "out.png"
    code, _, err = run_cli(
        capsys, "stylize", "builtin:grace_hopper", "builtin:swirls", "-o", str(out)
    )
    assert code == 130 and "interrupted" in err and not out.exists()


def test_weights_list_and_show(capsys) -> None:
    code, out, _ = run_cli(capsys, "weights", "list")
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("vgg19-caffe"))
    assert "yes" in row and "caffe" in row
    code, out, _ = run_cli(capsys, "weights", "show", "vgg19-caffe")
    assert code == 0
    assert "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6" in out
    assert "20,024,384" in out  # VGG-19's conv parameters
    code, out, _ = run_cli(capsys, "weights", "show", "vgg16_bn")
    assert code == 0 and "6c64b313" in out and "138,365,992" in out
    code, _, err = run_cli(capsys, "weights", "show", "vgg16_bm")
    assert code == 2 and "did you mean 'vgg16_bn'" in err


def test_module_entry_point() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "normstyle", "--version"], capture_output=True, text=True
    )
    assert done.returncode == 0 and __version__ in done.stdout


@pytest.mark.vgg
def test_init_file_is_the_starting_image(capsys, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from normstyle.io.builtin import builtin_image

    content = builtin_image("builtin:grace_hopper")  # 512×600
    init = tmp_path / "init.png"
    builtin_image("builtin:swirls").resize((300, 300)).save(init)  # square: not the content's
    out = tmp_path / "out.png"
    # One step of at most 1e-6 grey levels: the output is the start image, as the run saw it.
    code, _, err = stylize_builtins(
        capsys,
        out,
        *["--init", str(init), "--learning-rate", "1e-6", "--size", "64", "--iterations", "1"],
        *["--no-progress", "--precision", "fp32"],
    )
    assert code == 0, err
    result = np.asarray(Image.open(out)).astype(float)
    width, height = Image.open(out).size
    assert (width, height) == (55, 64) and content.size == (512, 600)
    # The init keeps its proportions: its centred crop of the output's aspect, resized (Pillow's
    # own 8-bit Lanczos here; ours runs in float, hence a fraction of a grey level apart).
    crop = round(300 * width / height)
    left = (300 - crop) // 2
    cropped = (
        Image.open(init).crop((left, 0, left + crop, 300)).resize((width, height), Image.LANCZOS)
    )
    stretched = Image.open(init).resize((width, height), Image.LANCZOS)
    assert np.abs(result - np.asarray(cropped)).mean() < 1.0
    assert np.abs(result - np.asarray(stretched)).mean() > 5.0  # the old, distorting way


@pytest.mark.vgg
def test_histogram_colours_and_style_scale_reach_the_loss(capsys, tmp_path, monkeypatch) -> None:
    import numpy as np

    import normstyle.style.transfer as transfer

    seen = {}
    real = transfer.build_loss

    def spy(model, prep, content_rgb, style_rgbs, *args, **kwargs):
        seen["content"], seen["styles"] = content_rgb, style_rgbs
        return real(model, prep, content_rgb, style_rgbs, *args, **kwargs)

    monkeypatch.setattr(transfer, "build_loss", spy)
    code, _, err = stylize_builtins(
        capsys, tmp_path / "o.png", "--preserve-colors", "histogram", "--style-scale", "0.75", *TINY
    )
    assert code == 0, err
    from scipy.linalg import sqrtm

    from normstyle.io.resize import load_rgb

    assert max(seen["styles"][0].shape[2:]) == round(32 * 0.75)  # --style-scale
    # The style image reached the loss recoloured as Gatys et al. 2017, §5.2 write it:
    # x' = Σ_c^½ Σ_s^-½ (x − μ_s) + μ_c, here recomputed with numpy and scipy, then clamped.
    # Σ: the pixels' population covariance (1/N; the paper names no normaliser, and 1/(N − 1)
    # would scale the transform by a factor that differs from 1 by O(1/N) where N_s ≠ N_c).
    original = load_rgb("builtin:swirls", round(32 * 0.75))[0].reshape(3, -1).double().numpy()
    content = seen["content"][0].reshape(3, -1).double().numpy()
    cov_s = np.cov(original, bias=True) + 1e-6 * np.eye(3)
    cov_c = np.cov(content, bias=True) + 1e-6 * np.eye(3)
    transform = np.real(sqrtm(cov_c)) @ np.linalg.inv(np.real(sqrtm(cov_s)))
    mean_s, mean_c = original.mean(1, keepdims=True), content.mean(1, keepdims=True)
    expected = np.clip(transform @ (original - mean_s) + mean_c, 0, 1)
    got = seen["styles"][0][0].reshape(3, -1).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.vgg
def test_a_loss_that_is_not_finite_is_one_line(capsys, tmp_path: Path) -> None:
    out = tmp_path / "o.png"
    code, _, err = stylize_builtins(
        capsys, out, *TINY, "--content-weight", "1e38", "--precision", "fp32", "--init", "noise"
    )
    assert code == 1 and "not finite at the start image" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
