"""``normstyle stats`` and the statistics API on a user's own module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nets import random_relu_net
from normstyle.cli import main
from normstyle.normalization.means import FilterMeans
from normstyle.registry import NORMALIZED_MEANS_FILE
from normstyle.statistics.diagnostics import activation_report


def test_report_on_a_users_module_equals_brute_force() -> None:
    net = random_relu_net()
    batches = [torch.rand(2, 3, 16, 16), torch.rand(1, 3, 24, 20)]
    rows = {r.layer: r for r in activation_report(net, batches, ["relu*"])}
    for name in ("relu1", "relu2", "relu3"):
        index = list(dict(net.named_children())).index(name)
        values = torch.cat(
            [net[: index + 1](b).double().transpose(0, 1).flatten(1) for b in batches], dim=1
        )
        assert rows[name].mean == pytest.approx(float(values.mean()), rel=1e-6)
        assert rows[name].std == pytest.approx(float(values.std(correction=0)), rel=1e-5)
        assert rows[name].zero_fraction == pytest.approx(float((values == 0).double().mean()))
        assert rows[name].channel_means == pytest.approx(values.mean(1).tolist(), rel=1e-6)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


@pytest.mark.vgg
def test_stats_cli_writes_the_report(tmp_path: Path, capsys) -> None:
    from normstyle.io.builtin import builtin_image

    images = tmp_path / "images"
    images.mkdir()
    builtin_image("builtin:grace_hopper").resize((48, 56)).save(images / "a.png")
    builtin_image("builtin:swirls").resize((40, 40)).save(images / "b.jpg")
    out = tmp_path / "report"
    argv = ["stats", "--images", str(images), "--short-side", "32", "--no-progress"]
    code = main([*argv, "--layers", "relu1_*,relu5_1", "--compare", "normalized", "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    data = json.loads((out / "stats.json").read_text())
    assert list(data["reports"]) == ["vgg19-caffe", "vgg19-caffe-normalized"]
    assert [r["layer"] for r in data["reports"]["vgg19-caffe"]] == ["relu1_1", "relu1_2", "relu5_1"]
    for name in ("stats.md", "channel_means.png", "zero_fraction.png"):
        assert (out / name).is_file()
    # Normalised: each per-channel mean is the original one divided by the shipped μ, exactly
    # up to float32 rounding (relu5_1 comes out right only if every earlier layer compensates).
    means = FilterMeans.load(NORMALIZED_MEANS_FILE).scales()
    for index, conv in ((0, "conv1_1"), (2, "conv5_1")):
        original = torch.tensor(data["reports"]["vgg19-caffe"][index]["channel_means"])
        normalized = torch.tensor(data["reports"]["vgg19-caffe-normalized"][index]["channel_means"])
        expected = original.double() / means[conv]
        torch.testing.assert_close(normalized.double(), expected, rtol=1e-4, atol=1e-9)
    code = main(["stats", "--images", str(images), "--layers", "rleu*", "-o", str(out)])
    assert code == 2 and "did you mean" in capsys.readouterr().err


@pytest.mark.vgg
def test_stats_compare_normalized_with_a_weights_file(tmp_path: Path, capsys) -> None:
    from safetensors.torch import save_file

    from normstyle.io.builtin import builtin_image
    from normstyle.nets import VGG

    torch.manual_seed(3)
    model = VGG("vgg11")
    for name, parameter in model.named_parameters():
        with torch.no_grad():
            if name.endswith("weight"):
                torch.nn.init.kaiming_normal_(parameter)
            else:
                parameter.uniform_(0.0, 0.1)
    weights = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    images = tmp_path / "images"
    images.mkdir()
    builtin_image("builtin:grace_hopper").resize((48, 56)).save(images / "a.png")
    builtin_image("builtin:swirls").resize((40, 40)).save(images / "b.jpg")
    out = tmp_path / "report"
    argv = ["stats", "--weights", str(weights), "--images", str(images), "--short-side", "32"]
    code = main([*argv, "--compare", "normalized", "--no-progress", "-o", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    reports = json.loads((out / "stats.json").read_text())["reports"]
    label = f"{weights} normalised on these images"
    assert list(reports) == [str(weights), label]
    # Calibrated on exactly these images: every live channel's mean is 1 (float32 rounding).
    for original, normalized in zip(reports[str(weights)], reports[label]):
        live = torch.tensor(original["channel_means"]) > 0
        means = torch.tensor(normalized["channel_means"])[live]
        assert (means - 1).abs().max() < 1e-3, original["layer"]
