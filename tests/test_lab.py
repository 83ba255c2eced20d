"""Each lab experiment at a tiny size, checked for the property the lecture claims."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch

from normstyle.cli import main
from normstyle.lab import activations, bn, common, depth, init, norms


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
    results = init.experiment(width=64, depth=2, batch=8, seed=3)
    # Recompute the Xavier-tanh configuration's first layer by hand, in float64, from the same
    # draws (input first, then fc1's weights, std 1/√64) but without init.mlp or the hooks.
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(8, 64, generator=generator)
    weight = torch.empty(64, 64).normal_(0.0, 1 / 8, generator=generator)
    pre = x.double() @ weight.double().T
    first = torch.tanh(pre)
    layer = results[2]["layers"][0]
    assert layer["mean"] == pytest.approx(float(first.mean()), abs=1e-6)
    assert layer["std"] == pytest.approx(float(first.std(correction=0)), rel=1e-5)
    assert layer["pre_activation_var"] == pytest.approx(float(pre.var(correction=0)), rel=1e-5)


def test_depth_runs_and_kaiming_learns_at_30_layers(out: Path) -> None:
    numbers = depth.run(out, tiny=True)
    runs = {(r["depth"], r["variance"]): r for r in numbers["runs"]}
    assert set(runs) == {(22, "1/n"), (22, "2/n"), (30, "1/n"), (30, "2/n")}
    kaiming, xavier = runs[(30, "2/n")], runs[(30, "1/n")]
    assert kaiming["losses"][-1] < kaiming["losses"][0]
    assert kaiming["losses"][-1] < xavier["losses"][-1]
    assert (out / "depth.png").is_file()


def test_bn_lenet_trains_and_folds_exactly(out: Path) -> None:
    threads = torch.get_num_threads()
    numbers = bn.run(out, tiny=True)
    assert torch.get_num_threads() == threads  # the one-thread training restores the count
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
    curves = activations.curves(points=11)  # x = −5, −4, …, 5: x = 0 is the sixth point
    x, _, grad = curves["sigmoid"]
    sig = torch.sigmoid(torch.tensor(x, dtype=torch.float64))
    torch.testing.assert_close(
        torch.tensor(grad, dtype=torch.float64), sig * (1 - sig)
    )  # closed form
    _, _, relu_grad = curves["ReLU"]
    assert relu_grad == [0.0] * 6 + [1.0] * 5  # torch's ReLU has derivative 0 at x = 0
    _, _, leaky_grad = curves["Leaky ReLU (0.01)"]
    assert leaky_grad == pytest.approx([0.01] * 6 + [1.0] * 5)
    _, _, maxout_grad = curves["Maxout max(x, −x/2 + 1)"]  # the pieces cross at x = 2/3
    assert maxout_grad == [-0.5] * 6 + [1.0] * 5
    numbers = activations.run(out, tiny=True)["blocked_fraction"]
    assert 0.3 < numbers["ReLU"]["Kaiming"] < 0.7  # about half the units are off
    assert (
        numbers["Leaky ReLU (0.01)"]["Kaiming"] == 0.0
        and numbers["ELU"]["Kaiming"] < numbers["ReLU"]["Kaiming"]
    )
    # A measurement, not a definition (see test_maxout_gradient_ratio_matches_its_jacobian):
    assert numbers["Maxout (2 pieces)"] == {"Xavier": 0.0, "Kaiming": 0.0}
    maxout = activations.Maxout(4, 3, pieces=2)
    x = torch.randn(5, 4)
    expected = torch.stack([maxout.linear(x)[:, 0::2], maxout.linear(x)[:, 1::2]]).amax(0)
    torch.testing.assert_close(maxout(x), expected)


def test_blocked_threshold_is_clear_of_leaky_relus_slope(monkeypatch) -> None:
    # Leaky ReLU's slope sits 10× above the threshold, not on it (rounding decided that at 1%).
    assert activations.BLOCKED <= 0.01 / 10
    # Slopes 10× below and 10× above the threshold: the first blocks exactly the units ReLU
    # blocks in layer 1 (pre-activation ≤ 0, computed by hand from the same draws), the second
    # none anywhere.
    below, above = activations.BLOCKED / 10, activations.BLOCKED * 10
    monkeypatch.setitem(activations.ELEMENTWISE, "below", lambda: torch.nn.LeakyReLU(below))
    monkeypatch.setitem(activations.ELEMENTWISE, "above", lambda: torch.nn.LeakyReLU(above))
    width, batch = 128, 16
    ratios = activations.gradient_ratios(["ReLU", "below", "above"], "Kaiming", width, 3, batch, 0)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, width, generator=generator)
    weight = torch.empty(width, width).normal_(0.0, (2 / width) ** 0.5, generator=generator)
    dead = x @ weight.T <= 0
    assert 0.3 < float(dead.float().mean()) < 0.7
    blocked = {name: ratio < activations.BLOCKED for name, ratio in ratios.items()}
    assert torch.equal(blocked["ReLU"][0], dead) and torch.equal(blocked["below"][0], dead)
    assert not blocked["above"].any()
    torch.testing.assert_close(ratios["above"][0][dead], torch.full((int(dead.sum()),), above))


def test_maxout_gradient_ratio_matches_its_jacobian() -> None:
    torch.manual_seed(0)
    layer = activations.Maxout(6, 5, pieces=2)
    with torch.no_grad():  # piece 1 of every unit gets tiny weights: units it wins pass ~1e-4
        layer.linear.weight.view(5, 2, 6)[:, 1] *= 1e-4
    x = torch.randn(40, 6)
    ratio, out = activations.maxout_gradient_ratio(layer, x)
    torch.testing.assert_close(out, layer(x))
    # Independently: the per-sample Jacobian ∂y_j/∂x of the module, over max_k ‖w_jk‖.
    jacobian = torch.autograd.functional.jacobian(layer, x)  # (40, 5, 40, 6)
    per_sample = jacobian.diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (40, 5, 6)
    largest = layer.linear.weight.detach().view(5, 2, 6).norm(dim=-1).amax(dim=-1)
    torch.testing.assert_close(ratio, per_sample.norm(dim=-1) / largest)
    # By hand: a unit is blocked exactly when its tiny piece wins.
    tiny_wins = layer.pre_activations(x).argmax(dim=-1) == 1
    assert 0.2 < float(tiny_wins.float().mean()) < 0.8
    assert torch.equal(ratio < activations.BLOCKED, tiny_wins)


def test_threads_restores_the_count_even_after_an_error() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), common.threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("inside")
    assert torch.get_num_threads() == before
    assert common.progress_bar(3, "test", "step", show=False).disable


def test_lab_cli(tmp_path: Path, capsys) -> None:
    assert main(["lab", "norms", "-o", str(tmp_path), "--tiny"]) == 0
    assert (tmp_path / "norms.png").is_file()
    assert json.loads((tmp_path / "norms.json").read_text())["shape"] == [4, 6, 3, 3]
    assert main(["lab", "nope"]) == 2
