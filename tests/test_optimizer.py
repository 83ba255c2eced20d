"""The guarded pixel optimisers against independent references: the dense BFGS update in
float64, closed-form minima, torch's own LBFGS and GradScaler; and fake losses that blow up."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable

import pytest
import torch

from normstyle.style.lbfgs import LBFGS
from normstyle.style.optimizer import BLOW_UP, GIVE_UP, MAX_BACKTRACKS, Adam, minimize
from normstyle.style.precision import GradientScale

UNIT = 1.0  # one grey level in the fake losses' units


def quadratic(n: int = 20, condition: float = 100.0, seed: int = 0):
    """f(x) = ½ (x − x*)ᵀA(x − x*) + 1 in float64, A's eigenvalues from 1 to ``condition``;
    like the Gatys loss, positive with a positive minimum."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    eigenvalues = torch.logspace(0, math.log10(condition), n, dtype=torch.float64)
    a = q @ torch.diag(eigenvalues) @ q.T
    minimum = torch.randn(n, dtype=torch.float64, generator=generator)
    calls: list[torch.Tensor] = []

    def objective(x: torch.Tensor, need_grad: bool):
        calls.append(x.clone())
        d = x - minimum
        value = 0.5 * d @ a @ d + 1.0
        return value, (a @ d) if need_grad else None, {"x": x.clone()}

    return objective, minimum, calls


def _dense_bfgs(h: torch.Tensor, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Nocedal & Wright eq. 6.17 applied to the matrix ``h`` for each pair, oldest first."""
    identity = torch.eye(h.shape[0], dtype=torch.float64)
    for s, y in pairs:
        rho = 1.0 / float(y @ s)
        h = (identity - rho * torch.outer(s, y)) @ h @ (identity - rho * torch.outer(y, s))
        h = h + rho * torch.outer(s, s)
    return h


def _random_pairs(n: int, m: int, lbfgs: LBFGS, seed: int = 1, curvature=None, noise=0.3):
    """Pairs y = c ⊙ s + noise (c = ``curvature``, default 1) with y·s > 0; and a gradient."""
    generator = torch.Generator().manual_seed(seed)
    c = torch.ones(n, dtype=torch.float64) if curvature is None else curvature
    pairs = []
    for _ in range(m):
        s = torch.randn(n, dtype=torch.float64, generator=generator)
        y = c * s + noise * torch.randn(n, dtype=torch.float64, generator=generator)
        assert float(y @ s) > 0
        pairs.append((s, y))
        lbfgs.pairs.append((s, y, 1.0 / float(y @ s)))
    return pairs, torch.randn(n, dtype=torch.float64, generator=generator)


def test_two_loop_recursion_equals_the_dense_bfgs_inverse_hessian() -> None:
    n, m = 7, 5
    lbfgs = LBFGS(pixel_unit=UNIT, history=m, diagonal=False)
    pairs, g = _random_pairs(n, m, lbfgs)
    # From H₀ = γI, γ = sᵀy / yᵀy of the newest pair (eq. 7.20).
    s_last, y_last = pairs[-1]
    h0 = float(s_last @ y_last) / float(y_last @ y_last) * torch.eye(n, dtype=torch.float64)
    torch.testing.assert_close(
        lbfgs.direction(g), -_dense_bfgs(h0, pairs) @ g, rtol=1e-10, atol=1e-12
    )


def test_two_loop_recursion_from_the_fitted_diagonal_equals_the_dense_bfgs_inverse() -> None:
    """The default H₀: per element, the least-squares solution of d·y_j ≈ s_j over the newest
    DIAGONAL_PAIRS pairs (here by torch.linalg.lstsq, one element at a time), where positive,
    else γ, clipped to [γ/DIAGONAL_RANGE, γ·DIAGONAL_RANGE]."""
    from normstyle.style.lbfgs import DIAGONAL_PAIRS, DIAGONAL_RANGE

    n, m = 9, DIAGONAL_PAIRS + 3  # older pairs than the fit uses
    lbfgs = LBFGS(pixel_unit=UNIT, history=m)
    # One element curving downwards (its fit negative: γ instead) and one nearly flat (its fit
    # ~1/0.02, far beyond 10 γ: clipped), beside ordinary ones.
    curvature = torch.tensor([1.0, 2.0, 0.5, -1.0, 0.02, 1.5, 1.0, 3.0, 1.0], dtype=torch.float64)
    pairs, g = _random_pairs(n, m, lbfgs, seed=2, curvature=curvature, noise=0.02)
    s_last, y_last = pairs[-1]
    gamma = float(s_last @ y_last) / float(y_last @ y_last)
    recent_s = torch.stack([s for s, _ in pairs[-DIAGONAL_PAIRS:]])  # (pairs, n)
    recent_y = torch.stack([y for _, y in pairs[-DIAGONAL_PAIRS:]])
    fitted = []
    for i in range(n):
        d = float(torch.linalg.lstsq(recent_y[:, i : i + 1], recent_s[:, i : i + 1]).solution)
        fitted.append(
            min(max(d if d > 0 else gamma, gamma / DIAGONAL_RANGE), gamma * DIAGONAL_RANGE)
        )
    assert fitted[3] == gamma and fitted[4] == gamma * DIAGONAL_RANGE  # both branches taken
    h0 = torch.diag(torch.tensor(fitted, dtype=torch.float64))
    torch.testing.assert_close(
        lbfgs.direction(g), -_dense_bfgs(h0, pairs) @ g, rtol=1e-10, atol=1e-12
    )


def test_on_a_separable_quadratic_the_diagonal_start_gives_the_newton_step() -> None:
    """f = ½ Σ h_i x_i²: exact pairs y = h ⊙ s fit D = 1/h exactly, and BFGS updates with exact
    pairs keep the exact inverse Hessian, so the direction is −g / h (γI would not give it)."""
    generator = torch.Generator().manual_seed(3)
    n = 12
    h = torch.linspace(1.0, 4.0, n, dtype=torch.float64)
    for diagonal in (True, False):
        lbfgs = LBFGS(pixel_unit=UNIT, diagonal=diagonal)
        for _ in range(4):
            s = torch.randn(n, dtype=torch.float64, generator=generator)
            y = h * s
            lbfgs.pairs.append((s, y, 1.0 / float(y @ s)))
        g = torch.randn(n, dtype=torch.float64, generator=generator)
        newton = -g / h
        error = float((lbfgs.direction(g) - newton).norm() / newton.norm())
        assert (error < 1e-12) if diagonal else (error > 1e-3)


def test_lbfgs_reaches_the_closed_form_minimum_of_a_quadratic() -> None:
    objective, minimum, _ = quadratic()
    result = minimize(objective, torch.zeros(20, dtype=torch.float64), 80, LBFGS(UNIT))
    assert result.rejected == 0 and result.stopped is None
    assert float((result.x - minimum).norm() / minimum.norm()) < 1e-6


def test_first_step_moves_the_largest_pixel_by_the_learning_rate_in_grey_levels() -> None:
    objective, _, calls = quadratic()
    start = torch.full((20,), 5.0, dtype=torch.float64)
    minimize(objective, start, 1, LBFGS(pixel_unit=0.25, learning_rate=3.0))
    assert float((calls[1] - start).abs().max()) == pytest.approx(0.75, rel=1e-12)


def double_well(scale: float = 1e8):
    """f(x) = scale · Σ (x² − 1)², concave for |x| < 1/√3: a start near 0 gives y·s < 0."""

    def objective(x: torch.Tensor, need_grad: bool):
        value = scale * ((x.square() - 1).square()).sum()
        grad = scale * 4 * x * (x.square() - 1)
        return value, grad if need_grad else None, None

    return objective


def test_negative_curvature_is_dropped_and_never_followed_by_a_raw_gradient_step() -> None:
    start = torch.linspace(-0.3, 0.3, 16, dtype=torch.float64)
    # The failure traced in the issue, reproduced with torch's LBFGS: a tiny first step, the
    # pair dropped for y·s < 0, then the raw gradient at t = 1.
    x = start.clone().requires_grad_(True)
    reference = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=100)
    objective = double_well()
    seen = []

    def closure():
        reference.zero_grad()
        value = 1e8 * ((x.square() - 1).square()).sum()
        value.backward()
        seen.append(float(value.detach()))
        return value

    for _ in range(20):
        reference.step(closure)
    assert max(seen) > 1e30 * seen[0]  # torch's LBFGS blew up on this start ...
    assert min(seen[3:]) > 0.5 * seen[0]  # ... and never recovered
    lbfgs = LBFGS(pixel_unit=0.01)
    result = minimize(objective, start, 200, lbfgs)
    assert lbfgs.skipped_pairs >= 1  # the concave start gave y·s ≤ 0 at least once
    assert result.stopped is None and math.isfinite(result.loss)
    assert result.loss < 1e-6 * float(objective(start, False)[0])  # reached the wells ±1
    assert torch.allclose(result.x.abs(), torch.ones(16, dtype=torch.float64), atol=1e-3)


def test_steepest_steps_double_while_curvature_pairs_are_dropped() -> None:
    """On a concave loss every pair fails y·s > 0: each next step moves the largest pixel
    twice as far as the last (1, 2, 4 … grey levels), up to MAX_STEEPEST, not one grey level
    forever; a reset starts again at one."""
    from normstyle.style.lbfgs import MAX_STEEPEST

    lbfgs = LBFGS(pixel_unit=UNIT)
    x = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    moves = []
    for _ in range(10):
        grad = -2.0 * x  # f = −|x|²: concave everywhere
        step = lbfgs.step(x, grad)
        moves.append(float((step - x).abs().max()))
        x = step
    assert lbfgs.skipped_pairs == 9 and not lbfgs.pairs
    expected = [min(2.0**k, MAX_STEEPEST) for k in range(10)]
    assert moves == pytest.approx(expected, rel=1e-12)
    lbfgs.reset()
    step = lbfgs.step(x, -2.0 * x)
    assert float((step - x).abs().max()) == pytest.approx(1.0)


def test_a_non_finite_loss_at_step_k_is_rejected_and_the_last_good_image_kept(caplog) -> None:
    inner, _, _ = quadratic()
    evaluations = []

    def objective(x: torch.Tensor, need_grad: bool):
        evaluations.append(x.clone())
        value, grad, extra = inner(x, need_grad)
        if len(evaluations) == 6:  # the 5th iteration's image
            return torch.tensor(float("nan"), dtype=torch.float64), grad, extra
        return value, grad, extra

    with caplog.at_level(logging.WARNING, logger="normstyle"):
        result = minimize(objective, torch.zeros(20, dtype=torch.float64), 5, LBFGS(UNIT))
    assert result.rejected == 1 and result.stopped is None
    assert "iteration 5: loss nan (not finite" in result.events[0]
    assert "iteration 5" in caplog.text and "rejected" in caplog.text
    # The output is the image of iteration 4 (the last accepted), its loss evaluated there.
    assert torch.equal(result.x, evaluations[4]) and result.iteration == 4
    assert result.loss == pytest.approx(float(inner(evaluations[4], False)[0]))
    assert len(result.losses) == 5 and result.losses[-1] == result.losses[-2]


def with_fault(inner, at: Callable[[int], bool], fault: Callable[[torch.Tensor], torch.Tensor]):
    """``inner`` whose loss is replaced by ``fault(loss)`` at the evaluations where ``at(n)``
    (n counts evaluations from 1); gradients are left as they are."""
    count = [0]

    def objective(x: torch.Tensor, need_grad: bool):
        count[0] += 1
        value, grad, extra = inner(x, need_grad)
        return (fault(value) if at(count[0]) else value), grad, extra

    return objective


def test_a_blow_up_restores_the_last_image_resets_history_and_continues() -> None:
    inner, minimum, _ = quadratic()
    # The 8th evaluation's loss is far above BLOW_UP × the last accepted one.
    objective = with_fault(inner, lambda n: n == 8, lambda value: value.abs() * 1e6 + 1e6)
    lbfgs = LBFGS(UNIT)
    result = minimize(objective, torch.zeros(20, dtype=torch.float64), 120, lbfgs)
    assert result.rejected == 1 and "× the last accepted" in result.events[0]
    assert float((result.x - minimum).norm() / minimum.norm()) < 1e-6  # recovered after it


def test_giving_up_keeps_the_best_image_and_says_why() -> None:
    inner, _, _ = quadratic()
    # Every step after the 3rd iteration (the 4th evaluation) has a loss that is not finite.
    objective = with_fault(inner, lambda n: n > 4, lambda value: torch.full_like(value, math.inf))

    result = minimize(objective, torch.zeros(20, dtype=torch.float64), 100, LBFGS(UNIT))
    assert result.rejected == GIVE_UP and result.iteration == 3
    assert result.stopped is not None and f"stopped at iteration {3 + GIVE_UP} of 100" in (
        result.stopped
    )
    assert len(result.losses) == 3 + GIVE_UP


def test_a_start_without_a_finite_loss_is_an_error() -> None:
    def objective(x: torch.Tensor, need_grad: bool):
        return torch.tensor(float("nan")), torch.zeros_like(x), None

    with pytest.raises(RuntimeError, match="not finite at the start image"):
        minimize(objective, torch.zeros(3), 5, LBFGS(UNIT))


def test_adam_steps_in_grey_levels_and_is_guarded() -> None:
    objective, minimum, calls = quadratic()
    start = torch.zeros(20, dtype=torch.float64)
    result = minimize(objective, start, 1, Adam(pixel_unit=0.5, learning_rate=2.0))
    # Adam's first step is lr·g/(|g| + ε): every coordinate moves by lr = 2 grey levels × 0.5.
    assert torch.allclose((calls[1] - start).abs(), torch.full((20,), 1.0, dtype=torch.float64))
    count = [0]

    def failing(x: torch.Tensor, need_grad: bool):
        count[0] += 1
        value, grad, extra = objective(x, need_grad)
        return (torch.tensor(float("nan")) if count[0] == 3 else value), grad, extra

    result = minimize(failing, start, 400, Adam(pixel_unit=0.01, learning_rate=5.0))
    assert result.rejected == 1
    assert float((result.x - minimum).norm() / minimum.norm()) < 1e-2


def test_blow_up_threshold_is_relative_to_the_last_accepted_loss() -> None:
    values = iter([10.0, 10.0 * BLOW_UP, 10.0 * BLOW_UP * BLOW_UP * 1.01, 1.0])

    def objective(x: torch.Tensor, need_grad: bool):
        return torch.tensor(next(values)), torch.ones_like(x), None

    # Adam (no line search): ×BLOW_UP exactly is accepted; just above it the step is rejected.
    result = minimize(objective, torch.zeros(2), 3, Adam(UNIT))
    assert result.rejected == 1 and result.losses == [20.0, 20.0, 1.0]


def test_an_lbfgs_step_uphill_is_retried_at_the_line_minimum_of_a_quadratic(caplog) -> None:
    # f(x) = ½ xᵀAx + 1 with A = diag(1, 3), from x₀ = (1, 1): the first step (steepest, its
    # largest pixel move 2.25 grey levels) overshoots, f(x₁) ≈ 3.41 > f(x₀) = 3, within the
    # blow-up guard. Along a line a quadratic is its own quadratic interpolation, so the retry
    # must land on the exact line minimum x₀ − t*·g, t* = gᵀg / gᵀAg (closed form).
    a = torch.diag(torch.tensor([1.0, 3.0], dtype=torch.float64))
    calls: list[torch.Tensor] = []

    def objective(x: torch.Tensor, need_grad: bool):
        calls.append(x.clone())
        return 0.5 * x @ a @ x + 1.0, a @ x, None

    start = torch.ones(2, dtype=torch.float64)
    g = a @ start
    with caplog.at_level(logging.WARNING, logger="normstyle"):
        result = minimize(objective, start, 2, LBFGS(pixel_unit=1.0, learning_rate=2.25))
    first = float(objective(calls[1], False)[0])
    assert 3.0 < first <= BLOW_UP * 3.0  # the precondition: uphill, not a blow-up
    line_minimum = start - float(g @ g) / float(g @ a @ g) * g
    torch.testing.assert_close(calls[2], line_minimum, rtol=1e-12, atol=1e-12)
    assert result.backtracks == 1 and result.rejected == 0 and not caplog.records
    assert result.losses == [3.0, pytest.approx(float(objective(line_minimum, False)[0]))]


def rosenbrock(x: torch.Tensor, need_grad: bool):
    """Rosenbrock's banana valley in 2-D, the classic on which unit quasi-Newton steps overshoot."""
    value = 100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2
    grad = torch.stack(
        [-400.0 * x[0] * (x[1] - x[0] ** 2) - 2.0 * (1.0 - x[0]), 200.0 * (x[1] - x[0] ** 2)]
    )
    return value, grad if need_grad else None, None


def test_lbfgs_never_accepts_a_higher_loss_but_adam_may() -> None:
    start = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    lbfgs = minimize(rosenbrock, start, 200, LBFGS(pixel_unit=0.1))
    assert all(b <= a for a, b in zip(lbfgs.losses, lbfgs.losses[1:]))
    assert lbfgs.backtracks > 0  # it did have to retry steps
    assert float((lbfgs.x - torch.ones(2, dtype=torch.float64)).norm()) < 1e-6  # the minimum (1, 1)
    adam = minimize(rosenbrock, start, 200, Adam(pixel_unit=0.1, learning_rate=1.0))
    assert any(b > a for a, b in zip(adam.losses, adam.losses[1:]))


def test_a_direction_that_stays_uphill_is_rejected_after_the_shorter_tries() -> None:
    # Every evaluation after the first reports a loss 50% above the start's: no shorter step
    # helps, so after MAX_BACKTRACKS tries the step is rejected and the history cleared.
    values = iter([10.0] + [15.0] * (MAX_BACKTRACKS + 1))

    def objective(x: torch.Tensor, need_grad: bool):
        return torch.tensor(next(values), dtype=torch.float64), x - 3.0, None

    lbfgs = LBFGS(UNIT)
    result = minimize(objective, torch.zeros(4, dtype=torch.float64), MAX_BACKTRACKS + 1, lbfgs)
    assert result.backtracks == MAX_BACKTRACKS and result.rejected == 1
    assert lbfgs.previous is None and not lbfgs.pairs  # the history was cleared
    assert (
        f"still above the last accepted after {MAX_BACKTRACKS} shorter tries" in (result.events[0])
    )
    assert result.losses == [10.0] * (MAX_BACKTRACKS + 1) and result.iteration == 0


@pytest.mark.parametrize(
    "overflows", [[False] * 120, [True, True, False] + [False] * 60 + [True] + [False] * 55]
)
def test_gradient_scale_follows_torch_grad_scaler(overflows: list[bool]) -> None:
    ours = GradientScale()
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.0)
    scaler = torch.amp.GradScaler(
        "cpu",
        init_scale=ours.value,
        growth_factor=ours.growth,
        backoff_factor=ours.backoff,
        growth_interval=ours.growth_interval,
    )
    for overflow in overflows:
        optimizer.zero_grad()
        scaler.scale(parameter.sum() * (float("inf") if overflow else 1.0)).backward()
        scaler.step(optimizer)
        scaler.update()
        ours.overflowed() if overflow else ours.succeeded()
        assert ours.value == scaler.get_scale()
    assert ours.value != 1.0  # the sequences did move the scale


def test_the_stopping_rule_against_its_definition() -> None:
    from normstyle.style.stopping import StoppingRule

    rule = StoppingRule(window=10, tolerance=0.01, minimum=20)
    # Loss 100·r^i falls over 10 iterations by (r^-10 − 1) of the newer value: 0.90% for
    # r = 0.9991 (under 1%: finished), 2.0% for r = 0.998 (not yet).
    slow = [100 * 0.9991**i for i in range(30)]
    fast = [100 * 0.998**i for i in range(30)]
    assert rule(slow) and not rule(fast)
    assert not rule(slow[:19])  # before the minimum
    flat = [5.0] * 11
    assert not StoppingRule(window=10, tolerance=0.0, minimum=5)(flat[:10])  # window not full
    assert StoppingRule(window=10, tolerance=0.0, minimum=5)(flat)
    # Messages quote the tolerance as given, not rounded to one decimal (1.75% is not "1.8%").
    assert StoppingRule(window=50, tolerance=0.0175, minimum=100).describe() == (
        "the loss fell by less than 1.75% over 50 iterations"
    )
    assert "less than 25% over" in StoppingRule(window=50, tolerance=0.25, minimum=1).describe()


def test_a_finished_run_stops_early_and_keeps_its_best_image() -> None:
    from normstyle.style.stopping import StoppingRule

    objective, minimum, _ = quadratic()
    rule = StoppingRule(window=5, tolerance=1e-9, minimum=10)
    result = minimize(
        objective, torch.zeros(20, dtype=torch.float64), 500, LBFGS(UNIT), finished=rule
    )
    assert result.finished and 10 <= len(result.losses) < 500
    assert float((result.x - minimum).norm() / minimum.norm()) < 1e-4
    exact = minimize(objective, torch.zeros(20, dtype=torch.float64), 37, LBFGS(UNIT))
    assert not exact.finished and len(exact.losses) == 37  # a count given is run exactly


def test_bounds_keep_every_image_inside_and_find_the_box_optimum() -> None:
    # A separable quadratic: its minimum inside the box [-0.5, 0.5]^n is the unconstrained
    # minimum clipped to the box (closed form), and most of that minimum lies outside the box.
    generator = torch.Generator().manual_seed(3)
    scales = torch.logspace(0, 1, 12, dtype=torch.float64)
    target = 2 * torch.randn(12, dtype=torch.float64, generator=generator)
    seen: list[torch.Tensor] = []

    def objective(x: torch.Tensor, need_grad: bool):
        seen.append(x.clone())
        d = x - target
        return 0.5 * (scales * d * d).sum(), (scales * d) if need_grad else None, None

    low, high = torch.tensor(-0.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
    start = torch.full((12,), 3.0, dtype=torch.float64)  # outside too: projected first
    result = minimize(objective, start, 200, LBFGS(UNIT), bounds=(low, high))
    assert all(bool(((x >= -0.5) & (x <= 0.5)).all()) for x in seen)
    best = target.clamp(-0.5, 0.5)
    best_loss = float(objective(best, False)[0])
    torch.testing.assert_close(result.x, best, atol=1e-6, rtol=0)
    assert result.loss == pytest.approx(best_loss, rel=1e-6)


def box_optimum(a: torch.Tensor, target: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """The minimum of ½ (x − t)ᵀA(x − t) over the box, by enumerating which coordinates sit at
    which bound and solving the KKT conditions of each guess (float64; A positive definite, so
    exactly one guess is consistent)."""
    n = target.numel()
    found = []
    for guess in itertools.product((low, None, high), repeat=n):
        held = torch.tensor([g is not None for g in guess])
        x = torch.tensor([0.0 if g is None else g for g in guess], dtype=torch.float64)
        free = ~held
        if free.any():  # ∂f/∂x_free = 0 with the held coordinates fixed
            rhs = (a @ target)[free] - a[free][:, held] @ x[held]
            x[free] = torch.linalg.solve(a[free][:, free], rhs)
        grad = a @ (x - target)
        inside = bool(((x[free] > low) & (x[free] < high)).all())
        at_low = torch.tensor([g == low for g in guess])
        at_high = torch.tensor([g == high for g in guess])
        pushing_out = bool((grad[at_low] >= 0).all() and (grad[at_high] <= 0).all())
        if inside and pushing_out:
            found.append(x)
    assert len(found) == 1
    return found[0]


def test_a_coupled_box_problem_reaches_its_kkt_optimum() -> None:
    # Coupled pixels, several held at bounds by gradients that push outwards (as a style with
    # black areas pushes pixels below 0): projecting unconstrained L-BFGS steps stalled there
    # (a natural image pair stopped at 25× the loss it reaches now). The gradient and step are
    # restricted to the free pixels, as in projected quasi-Newton methods.
    generator = torch.Generator().manual_seed(5)
    n = 6
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=generator))
    a = q @ torch.diag(torch.logspace(0, 2, n, dtype=torch.float64)) @ q.T
    target = 1.5 * torch.randn(n, dtype=torch.float64, generator=generator)

    def objective(x: torch.Tensor, need_grad: bool):
        d = x - target
        return 0.5 * d @ a @ d, (a @ d) if need_grad else None, None

    low, high = -1.0, 1.0
    best = box_optimum(a, target, low, high)
    held = int(((best == low) | (best == high)).sum())
    assert 2 <= held < n  # the test needs both held and free coordinates
    bounds = (torch.tensor(low, dtype=torch.float64), torch.tensor(high, dtype=torch.float64))
    result = minimize(
        objective, torch.zeros(n, dtype=torch.float64), 100, LBFGS(UNIT), bounds=bounds
    )
    torch.testing.assert_close(result.x, best, atol=1e-6, rtol=0)
