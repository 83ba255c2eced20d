"""The paper's loss formulas, recomputed independently in float64 loops, and gradchecks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normstyle.style.losses import (
    GatysLoss,
    content_loss,
    gram_matrix,
    scaled_gram,
    style_layer_loss,
    total_variation,
)


def loop_gram(f: torch.Tensor) -> torch.Tensor:
    n, m = f.shape[0], f.shape[1] * f.shape[2]
    flat = f.reshape(n, m).double()
    g = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            g[i, j] = sum(flat[i, k] * flat[j, k] for k in range(m))
    return g


def test_gram_equals_the_papers_sum() -> None:
    f = torch.rand(1, 5, 3, 4)
    torch.testing.assert_close(gram_matrix(f)[0].double(), loop_gram(f[0]), rtol=1e-6, atol=1e-6)


def test_content_loss_is_half_the_squared_error() -> None:
    f, p = torch.randn(1, 4, 5, 6), torch.randn(1, 4, 5, 6)
    expected = 0.5 * sum((float(a) - float(b)) ** 2 for a, b in zip(f.flatten(), p.flatten()))
    assert abs(float(content_loss(f, p)) - expected) < 1e-4 * expected


def test_style_layer_loss_is_the_papers_E_l() -> None:
    f = torch.rand(1, 6, 4, 5)
    a = loop_gram(torch.rand(6, 4, 5))
    n, m = 6, 20
    g = loop_gram(f[0])
    expected = float(((g - a) ** 2).sum()) / (4 * n**2 * m**2)
    got = float(style_layer_loss(f, a.float()))
    assert abs(got - expected) < 1e-5 * expected


def test_scaled_gram_rescales_to_the_output_positions() -> None:
    f = torch.rand(1, 3, 4, 4)
    torch.testing.assert_close(scaled_gram(f, 16), gram_matrix(f))
    torch.testing.assert_close(scaled_gram(f, 64), 4 * gram_matrix(f))


def test_total_variation_closed_form() -> None:
    x = torch.tensor([[[[0.0, 1.0], [3.0, 7.0]]]])
    assert float(total_variation(x)) == (3**2 + 6**2) + (1**2 + 4**2)


def tiny_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()
    ).double()


def test_total_loss_gradients_pass_gradcheck() -> None:
    net = tiny_net()
    content, style = (
        torch.rand(1, 3, 5, 5, dtype=torch.float64),
        torch.rand(1, 3, 5, 5, dtype=torch.float64),
    )

    def feats(x):
        return {"a": net[:2](x), "b": net(x)}

    with torch.no_grad():
        targets = feats(content)
        grams = {k: gram_matrix(v) for k, v in feats(style).items()}
    loss = GatysLoss(
        {"b": targets["b"]},
        grams,
        {"b": 1.0},
        {"a": 0.5, "b": 0.5},
        content_weight=1.0,
        style_weight=10.0,
        tv_weight=0.1,
    )
    loss_fn = lambda x: loss(feats(x), x).total  # noqa: E731
    x = torch.rand(1, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(loss_fn, (x,), eps=1e-6, atol=1e-5)
    for fn in (lambda x: gram_matrix(net(x)), lambda x: style_layer_loss(net(x), grams["b"])):
        assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


def test_gatys_loss_combines_terms_with_alpha_and_beta() -> None:
    f = {"c": torch.rand(1, 2, 3, 3), "s": torch.rand(1, 4, 2, 2)}
    p, a = torch.rand(1, 2, 3, 3), gram_matrix(torch.rand(1, 4, 2, 2))
    loss = GatysLoss(
        {"c": p}, {"s": a}, {"c": 1.0}, {"s": 0.2}, content_weight=2.0, style_weight=30.0
    )
    terms = loss(f, torch.zeros(1, 3, 4, 4))
    expected = 2.0 * content_loss(f["c"], p) + 30.0 * 0.2 * style_layer_loss(f["s"], a)
    torch.testing.assert_close(terms.total, expected)


def test_blended_gram_target_has_the_gradient_of_the_weighted_sum() -> None:
    """Why several styles are one blended target: Σ w_s ||G − A_s||² and ||G − Σ w_s A_s||²
    differ by a constant when Σ w_s = 1, so their gradients are equal."""
    net = tiny_net()
    x = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    grams = [
        gram_matrix(net(torch.rand(1, 3, 6, 6, dtype=torch.float64))).detach() for _ in range(2)
    ]
    w = [0.3, 0.7]
    separate = sum(wi * style_layer_loss(net(x), a) for wi, a in zip(w, grams))
    (g_separate,) = torch.autograd.grad(separate, x)
    blended = style_layer_loss(net(x), w[0] * grams[0] + w[1] * grams[1])
    (g_blended,) = torch.autograd.grad(blended, x)
    torch.testing.assert_close(g_separate, g_blended, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batched_target", [False, True])
def test_style_layer_loss_closed_form_gradient_matches_autograd_of_the_formula(
    channels_last: bool, batched_target: bool
) -> None:
    """The hand-written backward of E_l against torch's autograd through the paper's eq. 4
    written out plainly (float64), for both memory layouts and both target shapes."""
    torch.manual_seed(0)
    f = torch.rand(2, 5, 4, 3, dtype=torch.float64)
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    a = torch.rand(2 if batched_target else 1, 5, 5, dtype=torch.float64)
    a = a + a.mT if batched_target else (a + a.mT)[0]
    f.requires_grad_(True)
    a.requires_grad_(True)

    def plain(f: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(2, 5, 12)
        return ((flat @ flat.mT - a) ** 2).sum() / (4 * 5**2 * 12**2)

    ours = style_layer_loss(f, a)
    expected = plain(f, a)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)
    got = torch.autograd.grad(3.0 * ours, (f, a))
    want = torch.autograd.grad(3.0 * expected, (f, a))
    for g, w in zip(got, want):
        assert g.shape == w.shape
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(style_layer_loss, (f, a), eps=1e-6, atol=1e-7)
