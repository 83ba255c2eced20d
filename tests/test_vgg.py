"""Our named VGG against hand-built nn.Sequential networks with the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normstyle.errors import OptionError
from normstyle.nets import VGG, vgg_layer_names


def hand_built_vgg19(pooling: str) -> nn.Sequential:
    pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
    layers: list[nn.Module] = []
    channels = 3
    for width, repeats in [(64, 2), (128, 2), (256, 4), (512, 4), (512, 4)]:
        for _ in range(repeats):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            channels = width
        layers.append(pool(2, 2))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_named_features_equal_a_hand_built_sequential(pooling: str) -> None:
    reference = hand_built_vgg19(pooling)
    ours = VGG("vgg19", pooling=pooling)
    convs = [m for m in reference if isinstance(m, nn.Conv2d)]
    for ref, name in zip(convs, [n for n in ours.layer_names if n.startswith("conv")]):
        getattr(ours, name).load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 48, 40)
    names = ["relu1_1", "pool1", "conv3_3", "relu4_2", "relu5_4", "pool5"]
    features = ours(x, names)
    # Positions of those layers in the hand-built list.
    index = {"relu1_1": 1, "pool1": 4, "conv3_3": 14, "relu4_2": 22, "relu5_4": 35, "pool5": 36}
    for name in names:
        expected = reference[: index[name] + 1](x)
        torch.testing.assert_close(features[name], expected, rtol=1e-5, atol=1e-6)


def test_forward_stops_at_the_deepest_requested_layer() -> None:
    model = VGG("vgg19")
    called: list[str] = []
    for name, module in model.named_children():
        module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    model(torch.randn(1, 3, 32, 32), ["relu1_1", "relu3_1"])
    assert called[-1] == "relu3_1"
    assert called == vgg_layer_names("vgg19")[: len(called)]


def test_weights_are_frozen_and_eval() -> None:
    model = VGG("vgg16_bn")
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_head_gives_logits() -> None:
    model = VGG("vgg11", head=True, num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_layer_names_of_every_architecture() -> None:
    assert vgg_layer_names("vgg11")[:4] == ["conv1_1", "relu1_1", "pool1", "conv2_1"]
    assert vgg_layer_names("vgg19_bn")[:3] == ["conv1_1", "bn1_1", "relu1_1"]
    assert vgg_layer_names("vgg16", head=True)[-3:] == ["relu7", "drop7", "fc8"]
    assert sum(n.startswith("conv") for n in vgg_layer_names("vgg13")) == 10


def test_misspelled_names_get_suggestions() -> None:
    with pytest.raises(OptionError, match="did you mean 'relu4_2'"):
        VGG("vgg19")(torch.randn(1, 3, 32, 32), ["relu42"])
    with pytest.raises(OptionError, match="did you mean 'vgg19'"):
        VGG("vgg91")


def test_in_place_relus_give_the_same_gradients() -> None:
    """run_chain rectifies unrequested conv outputs in place; gradients must not change."""
    reference = hand_built_vgg19("avg")
    ours = VGG("vgg19", pooling="avg")
    convs = [m for m in reference if isinstance(m, nn.Conv2d)]
    for ref, name in zip(convs, [n for n in ours.layer_names if n.startswith("conv")]):
        getattr(ours, name).load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    features = ours(x, ["relu1_1", "conv2_1", "relu3_1", "relu5_1"])
    loss = sum(f.square().mean() for f in features.values())
    (grad,) = torch.autograd.grad(loss, x)
    y = x.detach().clone().requires_grad_(True)
    index = {"relu1_1": 1, "conv2_1": 5, "relu3_1": 11, "relu5_1": 29}
    expected_loss = sum(reference[: i + 1](y).square().mean() for i in index.values())
    (expected,) = torch.autograd.grad(expected_loss, y)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(
        features["conv2_1"], reference[:6](x)
    )  # a requested conv output survives
