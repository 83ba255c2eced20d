"""Each lab experiment at a tiny size, checked for the property the lecture claims."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from normstyle.cli import main
from normstyle.lab import activations, bn, depth, init, norms


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lab")


def test_init_shows_collapse_saturation_and_the_right_scales(out: Path) -> None:
    numbers = init.run(out, tiny=True)
    by = {c["config"]: c["layers"] for c in numbers["configs"]}
    tanh_small, _, tanh_xavier, relu_xavier, relu_kaiming = (
        by[label] for label, *_ in init.CONFIGS
    )
    # Collapse towards zero: each layer multiplies the std by about √(n·Var[w]) = 0.64. (After
    # six layers that is ~10%, not the "< 1%" one might expect; see the README's lab section.)
    stds = [layer["std"] for layer in tanh_small]
    assert all(b < 0.75 * a for a, b in itertools.pairwise(stds)) and stds[5] < 0.15 * stds[0]
    assert min(numbers["tanh_0.05_saturated_fraction"]) > 0.3  # saturated at ±1 in every layer
    assert (
        0.3 < tanh_xavier[5]["std"] / tanh_xavier[0]["std"] < 1.0
    )  # "just right": slow decay only
    assert relu_xavier[5]["std"] < 0.25 * relu_xavier[0]["std"]  # halves the variance per layer
    assert 0.5 < relu_kaiming[5]["std"] / relu_kaiming[0]["std"] < 2.0  # stable
    # Var[y_l] = n·Var[w]·E[x²] on each layer's measured input holds for every configuration;
    # the a-priori chain (×½ per ReLU) holds for ReLU, not for tanh once it leaves its linear range.
    for config in numbers["configs"]:
        for layer in config["layers"]:
            assert layer["pre_activation_var"] == pytest.approx(layer["one_step_var"], rel=0.1)
    for layers in (relu_kaiming, relu_xavier):
        for layer in layers:
            assert layer["pre_activation_var"] == pytest.approx(layer["theory_var"], rel=0.15)
    assert tanh_xavier[5]["pre_activation_var"] < 0.2 * tanh_xavier[5]["theory_var"]
    # Vanishing activations give smaller weight gradients at every layer than Xavier's.
    assert all(a["grad_norm"] < 0.5 * b["grad_norm"] for a, b in zip(tanh_small, tanh_xavier))
    assert (out / "init_histograms.png").stat().st_size > 10_000 and (out / "init.json").is_file()


def test_init_statistics_equal_a_direct_computation() -> None:
    generator = torch.Generator().manual_seed(3)
    results = init.experiment(width=64, depth=2, batch=8, seed=3)
    # Recompute the Xavier-tanh configuration's first layer by hand, in float64.
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(8, 64, generator=generator)
    net = init.mlp(64, 2, "tanh", 1 / 8, generator)
    with torch.no_grad():
        first = torch.tanh(net.fc1(x)).double()
    layer = results[2]["layers"][0]
    assert layer["mean"] == pytest.approx(float(first.mean()), abs=1e-6)
    assert layer["std"] == pytest.approx(float(first.std(correction=0)), rel=1e-5)


def test_depth_runs_and_kaiming_learns_at_30_layers(out: Path) -> None:
    numbers = depth.run(out, tiny=True)
    runs = {(r["depth"], r["variance"]): r for r in numbers["runs"]}
    assert set(runs) == {(22, "1/n"), (22, "2/n"), (30, "1/n"), (30, "2/n")}
    kaiming, xavier = runs[(30, "2/n")], runs[(30, "1/n")]
    assert kaiming["losses"][-1] < kaiming["losses"][0]
    assert kaiming["losses"][-1] < xavier["losses"][-1]
    assert (out / "depth.png").is_file()


def test_bn_lenet_trains_and_folds_exactly(out: Path) -> None:
    numbers = bn.run(out, tiny=True)
    assert numbers["folded_vs_eval_max_abs_difference"] < 1e-4
    assert numbers["folded_layers"] == ["bn1", "bn2"]
    assert numbers["train_vs_eval_relative_difference"] > 1e-3  # train mode ≠ eval mode
    finals = {(r["batch_norm"], r["lr"]): r["final"] for r in numbers["runs"]}
    assert finals[(True, 1.0)] > finals[(False, 1.0)]  # BN tolerates the high rate
    assert finals[(True, 0.03)] > 0.5


def test_lenet5_matches_the_course_notes() -> None:
    net = bn.lenet5(batch_norm=False)
    shapes = [(n, tuple(m.weight.shape)) for n, m in net.named_children() if hasattr(m, "weight")]
    assert shapes == [
        ("conv1", (6, 1, 5, 5)),
        ("conv2", (16, 6, 5, 5)),
        ("fc3", (120, 400)),
        ("fc4", (84, 120)),
        ("fc5", (10, 84)),
    ]
    assert net(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_norms_share_the_textbook_sets(out: Path) -> None:
    numbers = norms.run(out, tiny=True)["changed_by_element_0000"]
    n, c, h, w = 4, 6, 3, 3
    assert numbers["BatchNorm2d"] == {
        "count": n * h * w,
        "samples": [0, 1, 2, 3],
        "channels": [0],
        "positions": h * w,
    }
    assert numbers["LayerNorm"]["count"] == c * h * w and numbers["LayerNorm"]["samples"] == [0]
    assert numbers["InstanceNorm2d"]["count"] == h * w and numbers["InstanceNorm2d"][
        "channels"
    ] == [0]
    group = numbers["GroupNorm (2 groups)"]
    assert group["count"] == (c // 2) * h * w and group["channels"] == [0, 1, 2]


def test_activations_derivatives_and_blocked_units(out: Path) -> None:
    curves = activations.curves(points=11)
    x, _, grad = curves["sigmoid"]
    sig = torch.sigmoid(torch.tensor(x, dtype=torch.float64))
    torch.testing.assert_close(
        torch.tensor(grad, dtype=torch.float64), sig * (1 - sig)
    )  # closed form
    _, _, relu_grad = curves["ReLU"]
    assert relu_grad == [0.0] * 5 + [relu_grad[5]] + [1.0] * 5
    numbers = activations.run(out, tiny=True)["blocked_fraction"]
    assert 0.3 < numbers["ReLU"]["Kaiming"] < 0.7  # about half the units are off
    assert (
        numbers["Leaky ReLU (0.01)"]["Kaiming"] == 0.0
        and numbers["ELU"]["Kaiming"] < numbers["ReLU"]["Kaiming"]
    )
    assert numbers["Maxout (2 pieces)"]["Xavier"] == 0.0
    maxout = activations.Maxout(4, 3, pieces=2)
    x = torch.randn(5, 4)
    expected = torch.stack([maxout.linear(x)[:, 0::2], maxout.linear(x)[:, 1::2]]).amax(0)
    torch.testing.assert_close(maxout(x), expected)


def test_lab_cli(tmp_path: Path, capsys) -> None:
    assert main(["lab", "norms", "-o", str(tmp_path), "--tiny"]) == 0
    assert (tmp_path / "norms.png").is_file()
    assert json.loads((tmp_path / "norms.json").read_text())["shape"] == [4, 6, 3, 3]
    assert main(["lab", "nope"]) == 2
