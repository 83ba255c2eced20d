"""The statistics engine against float64 brute force and torch's BatchNorm2d."""

from __future__ import annotations

import gc
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from nets import random_relu_net
from normstyle.errors import OptionError
from normstyle.statistics.engine import ActivationStats, HistogramSpec, RunningStats, collect


def test_running_stats_equal_float64_brute_force() -> None:
    generator = torch.Generator().manual_seed(0)
    # Batches of different sizes, a large offset (hard for naive variance), some exact zeros.
    batches = [
        torch.randn(n, 5, h, w, generator=generator) * 3 + 1000
        for n, h, w in [(2, 4, 4), (1, 7, 3), (3, 2, 9)]
    ]
    batches[1][0, 2] = 0.0
    stats = RunningStats(moments=2)
    for batch in batches:
        stats.update(batch)
    values = torch.cat([b.double().transpose(0, 1).reshape(5, -1) for b in batches], dim=1)
    torch.testing.assert_close(stats.mean, values.mean(1), rtol=1e-7, atol=0)
    torch.testing.assert_close(stats.var, values.var(1, correction=0), rtol=1e-4, atol=0)
    torch.testing.assert_close(stats.zero_fraction, (values == 0).double().mean(1))
    torch.testing.assert_close(stats.minimum, values.amin(1).to(stats.minimum.dtype))
    torch.testing.assert_close(stats.maximum, values.amax(1).to(stats.maximum.dtype))
    assert stats.count == values.shape[1]
    pooled = values.flatten()
    assert abs(stats.overall_std - float(pooled.std(correction=0))) < 1e-6 * float(pooled.std())


def test_channel_mean_and_variance_equal_batchnorm_train_mode() -> None:
    x = torch.randn(6, 4, 5, 7) * torch.tensor([1.0, 2.0, 0.5, 3.0]).view(1, 4, 1, 1) + 2
    bn = nn.BatchNorm2d(4, momentum=1.0)  # momentum 1: running stats = this batch's
    bn.train()
    bn(x)
    stats = RunningStats(moments=2)
    stats.update(x)
    n = 6 * 5 * 7
    torch.testing.assert_close(stats.mean.float(), bn.running_mean, rtol=1e-6, atol=1e-6)
    # BatchNorm stores the unbiased variance in running_var and normalises with the biased one.
    torch.testing.assert_close(
        (stats.var * n / (n - 1)).float(), bn.running_var, rtol=1e-5, atol=1e-6
    )
    normalized = (x - stats.mean.float().view(1, 4, 1, 1)) / (
        stats.var.float().view(1, 4, 1, 1) + bn.eps
    ).sqrt()
    torch.testing.assert_close(
        normalized * bn.weight.view(1, 4, 1, 1) + bn.bias.view(1, 4, 1, 1),
        nn.functional.batch_norm(x, None, None, bn.weight, bn.bias, True),
        rtol=1e-4,
        atol=1e-5,
    )


def test_histogram_counts_every_value() -> None:
    x = torch.tensor([[-10.0, -0.5, 0.0, 0.5, 0.9, 10.0]]).T.reshape(6, 1)
    stats = RunningStats(histogram=HistogramSpec(bins=4, low=-1.0, high=1.0))
    stats.update(x)
    # numpy's convention (bins [a, b), the last one closed), values outside clipped into the ends.
    reference, _ = np.histogram(np.clip(x.numpy(), -1, 1), bins=4, range=(-1, 1))
    assert stats.hist.tolist() == reference.tolist() == [1, 1, 1, 3]
    assert stats.histogram_edges.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance on some deprecated torch objects warns
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_hooks_are_removed_and_nothing_grows_over_1000_passes() -> None:
    net = random_relu_net()
    x = torch.rand(1, 3, 8, 8)
    with ActivationStats(net, ["relu*"]) as stats:
        assert all(
            len(m._forward_hooks) == 1
            for name, m in net.named_children()
            if name.startswith("relu")
        )
        net(x)
        tensors_before = live_tensors()
        for _ in range(1000):
            net(x)
        tensors_after = live_tensors()
    assert tensors_after <= tensors_before + 5
    assert stats["relu1"].batches == 1001
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_patterns_select_modules_and_misses_are_named() -> None:
    net = random_relu_net(head=True)
    stats = collect(net, [torch.rand(2, 3, 16, 16)], ["conv?", "fc*"])
    assert list(stats) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    assert stats["fc1"].mean.shape == (10,)
    with pytest.raises(OptionError, match="no layer matches 'rleu\\*'"):
        ActivationStats(net, ["rleu*"])


def test_reset_keeps_the_hooks_working() -> None:
    net = random_relu_net()
    with ActivationStats(net, ["relu1"]) as stats:
        net(torch.rand(1, 3, 8, 8))
        stats.reset()
        x = torch.rand(2, 3, 8, 8)
        net(x)
        expected = torch.relu(net.conv1(x)).mean(dim=(0, 2, 3))  # not through the hooked relu1
        torch.testing.assert_close(stats["relu1"].mean.float(), expected)
        assert stats["relu1"].batches == 1


class Unreachable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("ran past the deepest selected layer")


def test_collect_stops_after_the_deepest_selected_layer() -> None:
    net = random_relu_net()
    net.pool2 = Unreachable()  # replaces the module in place, keeping the chain order
    x = torch.rand(2, 3, 8, 8)
    stats = collect(net, [x], ["conv1", "relu2"])
    # conv1's output is read by its hook before relu1 (run in place) overwrites it.
    torch.testing.assert_close(stats["conv1"].mean.float(), net.conv1(x).mean(dim=(0, 2, 3)))
    expected = torch.relu(net.conv2(torch.relu(net.conv1(x)))).double().mean(dim=(0, 2, 3))
    torch.testing.assert_close(stats["relu2"].mean, expected, rtol=1e-6, atol=1e-9)
    with pytest.raises(AssertionError, match="ran past"):
        collect(net, [x], ["relu2"], forward=net)  # an explicit forward runs the whole model


def test_float64_activations_are_reduced_in_float64() -> None:
    # 1 + k·1e-9 for a million positions: a float32 sum rounds every term to 1.0 and loses the
    # 5e-4 the small parts add to the mean.
    values = 1.0 + 1e-9 * torch.arange(1_000_000, dtype=torch.float64)
    stats = RunningStats(moments=2)
    stats.update(values.view(1, 1, 1000, 1000))
    exact_mean = math.fsum(values.tolist()) / values.numel()
    assert float(stats.mean[0]) == pytest.approx(exact_mean, rel=1e-14)
    exact_var = math.fsum(((values - exact_mean) ** 2).tolist()) / values.numel()
    assert float(stats.var[0]) == pytest.approx(exact_var, rel=1e-9)


def test_collect_without_any_batch_is_an_error_not_a_crash() -> None:
    from normstyle.errors import InputError

    with pytest.raises(InputError, match="no batches"):
        collect(random_relu_net(), [], ["relu1"])
