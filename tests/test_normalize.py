"""Normalisation against independent references: float64 brute force, original/μ, unchanged
logits, torch's conv-BN fusion, and a constructed counter-example for the naive method."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from nets import random_relu_net, relative_error
from normstyle.errors import OptionError
from normstyle.nets import chain_of, run_chain
from normstyle.normalization.cascade import normalize
from normstyle.normalization.checks import check_means, verify
from normstyle.normalization.layout import fold_batch_norm, plan
from normstyle.normalization.means import FilterMeans, activation_means


def images(count: int = 4, size: int = 16, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, size, size, generator=generator) * 2 - 0.5 for _ in range(count)]


def features(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    names = [name for name, _ in chain_of(net)]
    return run_chain(chain_of(net), x, names)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_calibration_means_become_one(pooling: str) -> None:
    net = random_relu_net(pooling)
    batches = images()
    means = activation_means(net, batches)
    normalized = normalize(net, means)
    after = activation_means(normalized, batches)
    for row in check_means(after, means.dead()):
        assert row.max_error <= 1e-4, row


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_normalized_features_are_original_over_mu(pooling: str) -> None:
    net = random_relu_net(pooling)
    means = activation_means(net, images())
    normalized = normalize(net, means)
    x = images(1, 24, seed=9)[0]  # other images, another size: the identity holds everywhere
    original, scaled = features(net, x), features(normalized, x)
    scales = means.scales()
    for step in plan(net).steps:
        for name in (step.conv, step.relu):
            expected = original[name] / scales[step.conv].view(1, -1, 1, 1)
            assert relative_error(scaled[name], expected) <= 1e-5, name
    expected_pool = original["pool3"] / scales["conv3"].view(1, -1, 1, 1)
    assert relative_error(scaled["pool3"], expected_pool) <= 1e-5


def test_classifier_head_absorbs_the_last_scale() -> None:
    net = random_relu_net(head=True)
    means = activation_means(net, images())
    normalized = normalize(net, means)
    x = torch.cat(images(3, 16, seed=5))
    assert relative_error(normalized(x), net(x)) <= 1e-5
    assert not torch.equal(normalized.conv3.weight, net.conv3.weight)


@pytest.mark.vgg
def test_vgg11_head_logits_unchanged_at_64px() -> None:
    from normstyle.nets import VGG

    torch.manual_seed(0)
    model = VGG("vgg11", head=True)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
                module.bias.uniform_(0, 0.1)
    batches = [torch.randn(2, 3, 64, 64) for _ in range(2)]
    means = activation_means(model, batches)
    normalized = normalize(model, means)
    x = torch.randn(2, 3, 64, 64)
    assert relative_error(normalized(x), model(x)) <= 1e-5


def test_batch_norm_folding_matches_torch_fusion_and_normalizes_exactly() -> None:
    net = random_relu_net(batch_norm=True)
    folded = fold_batch_norm(net)
    for index in (1, 2, 3):
        reference = fuse_conv_bn_eval(getattr(net, f"conv{index}"), getattr(net, f"bn{index}"))
        torch.testing.assert_close(
            getattr(folded, f"conv{index}").weight, reference.weight, rtol=1e-6, atol=1e-7
        )
        torch.testing.assert_close(
            getattr(folded, f"conv{index}").bias, reference.bias, rtol=1e-6, atol=1e-7
        )
        assert isinstance(getattr(folded, f"bn{index}"), nn.Identity)
    x = images(1)[0]
    assert relative_error(folded(x), net(x)) <= 1e-6
    means = activation_means(net, images())
    after = activation_means(normalize(net, means), images())
    assert max(row.max_error for row in check_means(after)) <= 1e-4


@pytest.mark.parametrize(("affine", "conv_bias"), [(False, True), (True, False), (False, False)])
def test_batch_norm_without_affine_or_conv_bias_folds_like_torch(affine, conv_bias) -> None:
    generator = torch.Generator().manual_seed(5)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=conv_bias)
    bn = nn.BatchNorm2d(4, affine=affine)
    with torch.no_grad():
        conv.weight.normal_(generator=generator)
        bn.running_mean.uniform_(-1, 1, generator=generator)
        bn.running_var.uniform_(0.5, 2, generator=generator)
        if affine:
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.uniform_(-0.5, 0.5, generator=generator)
    net = nn.Sequential(OrderedDict(conv1=conv, bn1=bn, relu1=nn.ReLU())).eval()
    folded = fold_batch_norm(net)
    reference = fuse_conv_bn_eval(conv, bn)  # torch's own folding
    torch.testing.assert_close(folded.conv1.weight, reference.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(folded.conv1.bias, reference.bias, rtol=1e-6, atol=1e-7)
    x = torch.randn(2, 3, 8, 8, generator=generator)
    torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_batch_norm_without_running_statistics_is_refused() -> None:
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 4, 3), bn1=nn.BatchNorm2d(4, track_running_stats=False), r=nn.ReLU()
        )
    )
    with pytest.raises(OptionError, match="keeps no running statistics"):
        fold_batch_norm(net)


def test_naive_division_flips_a_relu_decision() -> None:
    """Layer 1: a1 = x, a2 = 100·x (means E[x], 100·E[x]). Layer 2: z = a1 − 0.02·a2 + 1.5
    = 1.5 − x, on for x < 1.5. Naively both inputs arrive as x/E[x]: z' ∝ 0.98·x/E[x] + 1.5,
    on for every x ≥ 0 — the decision flips for x > 1.5. The cascade keeps it."""
    net = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 2, 1), relu1=nn.ReLU(), conv2=nn.Conv2d(2, 1, 1), relu2=nn.ReLU()
        )
    )
    with torch.no_grad():
        net.conv1.weight.copy_(torch.tensor([1.0, 100.0]).view(2, 1, 1, 1))
        net.conv1.bias.zero_()
        net.conv2.weight.copy_(torch.tensor([1.0, -0.02]).view(1, 2, 1, 1))
        net.conv2.bias.fill_(1.5)
    x = torch.linspace(0.05, 2.95, 30).view(1, 1, 1, 30)  # no point on the boundary x = 1.5
    means = activation_means(net, [x])
    before = features(net, x)["conv2"] > 0
    naive = features(normalize(net, means, "naive"), x)["conv2"] > 0
    cascade = features(normalize(net, means), x)["conv2"] > 0
    assert torch.equal(cascade, before)
    assert (naive != before).sum() == 15  # x = 1.55 … 2.95


def test_dead_filters_keep_scale_one_and_count_as_one_downstream() -> None:
    net = random_relu_net()
    with torch.no_grad():
        net.conv1.weight[2].zero_()
        net.conv1.bias[2] = -1.0  # filter 2 of conv1 never fires
    means = activation_means(net, images())
    assert means.dead()["conv1"] == [2]
    assert json.loads(json.dumps(means.to_json()))["dead"] == {"conv1": [2]}
    normalized = normalize(net, means)
    torch.testing.assert_close(normalized.conv1.bias[2], torch.tensor(-1.0))  # scale 1
    # conv2's input column 2 is multiplied by 1 (not 0): the weight is only divided by μ².
    mu2 = means.means["conv2"].view(-1, 1, 1).float()
    torch.testing.assert_close(
        normalized.conv2.weight[:, 2], net.conv2.weight[:, 2] / mu2, rtol=1e-6, atol=0
    )


def test_means_weight_every_position_once_across_sizes() -> None:
    net = random_relu_net()
    batches = [torch.rand(1, 3, 16, 16), torch.rand(1, 3, 32, 24), torch.rand(2, 3, 8, 40)]
    means = activation_means(net, batches)
    net64 = random_relu_net().double()  # same seed → same weights, in float64
    for name in ("relu1", "relu2", "relu3"):
        values = torch.cat(
            [
                features(net64, b.double())[name]
                .transpose(0, 1)
                .reshape(features(net64, b.double())[name].shape[1], -1)
                for b in batches
            ],
            dim=1,
        )
        brute = values.mean(dim=1)  # every position of every image once
        conv = name.replace("relu", "conv")
        torch.testing.assert_close(means.means[conv], brute, rtol=1e-5, atol=1e-9)
        assert means.positions[conv] == values.shape[1]
    assert means.images == 4


def test_statistic_is_one_pass_on_the_original_network() -> None:
    net = random_relu_net()
    calls = []
    net.conv1.register_forward_hook(lambda *args: calls.append(1))
    batches = images(5)
    means = activation_means(net, iter(batches))  # a one-shot iterator: one pass is all there is
    assert len(calls) == 5
    # Every layer's μ is that of the original network (not of a partly normalised one).
    for name in ("relu1", "relu2", "relu3"):
        direct = torch.stack([features(net, b)[name].mean(dim=(0, 2, 3)) for b in batches]).mean(0)
        torch.testing.assert_close(
            means.means[name.replace("relu", "conv")].float(), direct, rtol=1e-5, atol=0
        )


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (nn.LocalResponseNorm(2), "LocalResponseNorm"),
        (nn.Sigmoid(), "Sigmoid"),
        (nn.Tanh(), "Tanh"),
    ],
)
def test_scale_breaking_layers_are_refused_by_name(module: nn.Module, message: str) -> None:
    net = random_relu_net()
    layers = OrderedDict(net.named_children())
    layers["odd"] = module
    with pytest.raises(OptionError, match=f"layer odd \\({message}\\) is not scale-equivariant"):
        plan(nn.Sequential(layers))


def test_other_unsupported_layouts() -> None:
    with pytest.raises(OptionError, match="conv layer c is followed by p before its ReLU"):
        plan(nn.Sequential(OrderedDict(c=nn.Conv2d(3, 4, 3), p=nn.MaxPool2d(2))))
    with pytest.raises(OptionError, match="conv layer c is not followed by a ReLU"):
        plan(nn.Sequential(OrderedDict(r=nn.ReLU(), c=nn.Conv2d(3, 4, 3))))
    with pytest.raises(OptionError, match="batch norm b does not directly follow a conv"):
        plan(nn.Sequential(OrderedDict(c=nn.Conv2d(3, 4, 3), r=nn.ReLU(), b=nn.BatchNorm2d(4))))
    with pytest.raises(OptionError, match="only zero padding"):
        plan(
            nn.Sequential(
                OrderedDict(c=nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), r=nn.ReLU())
            )
        )
    # After the head's first Linear anything goes: the scale has been absorbed.
    net = random_relu_net(head=True)
    layers = OrderedDict(net.named_children())
    layers["softmax"] = nn.Softmax(dim=1)
    assert plan(nn.Sequential(layers)).head == "fc1"


def test_means_json_round_trip_is_exact(tmp_path: Path) -> None:
    means = activation_means(random_relu_net(), images())
    means.meta = {"weights": {"id": "x", "sha256": "0" * 64}}
    path = tmp_path / "m.json"
    path.write_text(json.dumps(means.to_json()))
    loaded = FilterMeans.load(path)
    for name, mu in means.means.items():
        assert torch.equal(loaded.means[name], mu)
    assert loaded.positions == means.positions and loaded.meta == means.meta


def test_verify_reports_other_images_against_one() -> None:
    net = random_relu_net()
    normalized = normalize(net, activation_means(net, images(seed=1)))
    same = verify(normalized, images(seed=1))
    other = verify(normalized, images(seed=7))
    assert max(row.max_error for row in same) <= 1e-4
    assert max(row.median_error for row in other) > 1e-4  # other images: sampling error shows
    assert [row.layer for row in other] == ["conv1", "conv2", "conv3"]
