"""L-BFGS's step rule on the pixels: curvature pairs, the two-loop recursion from a per-pixel
diagonal start, and the first steps before any curvature is known. Which steps are accepted,
retried shorter or rejected is :func:`normstyle.style.optimizer.minimize`'s job (its module
docstring says why each guard exists)."""

from __future__ import annotations

import math

import torch

# The largest steepest-descent step (in grey levels, times the learning rate) that doubling after
# dropped curvature pairs may reach.
MAX_STEEPEST = 64.0
# L-BFGS curvature pairs kept, as neural-style (each costs two image-sized tensors).
LBFGS_HISTORY = 100
# H₀, the inverse-Hessian estimate the two-loop recursion starts from, is diagonal: per pixel,
# the least-squares fit of the secant equations D y ≈ s over the newest DIAGONAL_PAIRS pairs,
# kept within DIAGONAL_RANGE of the usual scalar γ (see LBFGS.initial_scaling).
DIAGONAL_PAIRS = 10
DIAGONAL_RANGE = 10.0


def flat_dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """The dot product of two tensors of any shape, as a float."""
    return float(torch.dot(a.flatten(), b.flatten()))


class LBFGS:
    """L-BFGS (Nocedal & Wright, *Numerical Optimization*, Alg. 7.4) with unit steps, except that
    a step without curvature history moves no pixel by more than ``learning_rate`` pixel units
    (more after pairs dropped for want of curvature: see :mod:`normstyle.style.optimizer` for
    why); its ``minimize`` retries a step that goes uphill shorter.

    Departure from the textbook (and from neural-style and torch's ``LBFGS``): the recursion
    starts from a diagonal H₀ fitted to the newest pairs (``diagonal``, the default), not from
    γI — a variable-storage method with a diagonal initial matrix, as Gilbert & Lemaréchal
    (Math. Programming 45, 1989) proposed. Pixels differ in how strongly the loss curves along
    them (edges against flat regions, the three colour channels), and one γ for all of them is
    the mean of those curvatures. Measured (Zen 4, 2026-12-07, 256 px, seed 0, default schedule,
    three pairs: tubingen × starry_night, golden_gate × the_scream, an ImageNet alp ×
    seated-nude): the 1000-iteration fp32 references from noise ended 0.7–1.8% lower; against
    them the default runs first came within 1.05 × after 137–230 full-size iterations, where
    γI took 145–213 and on alp × seated-nude did not within its 273, and the 1.75% rule
    stopped them at 1.010–1.036 × after 223–271, where γI stopped at 1.012–1.059 × after
    230–273 (README, Speed). ``diagonal=False`` gives the textbook γI.
    """

    line_search = True

    def __init__(
        self,
        pixel_unit: float,
        learning_rate: float = 1.0,
        history: int = LBFGS_HISTORY,
        diagonal: bool = True,
    ) -> None:
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning rate must be a positive number, got {learning_rate}")
        self.pixel_unit = pixel_unit
        self.learning_rate = learning_rate
        self.history = history
        self.diagonal = diagonal
        self.pairs: list[tuple[torch.Tensor, torch.Tensor, float]] = []  # (s, y, 1/(y·s))
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # (x, g) of the last step
        self.skipped_pairs = 0  # pairs dropped for failing the curvature condition
        self.steepest = 1.0  # the next steepest step, in units of learning_rate grey levels

    def reset(self) -> None:
        """Clear the curvature history; the next step is a pixel-unit step."""
        self.pairs.clear()
        self.previous = None
        self.steepest = 1.0

    def _remember(self, x: torch.Tensor, grad: torch.Tensor) -> None:
        if self.previous is not None:
            s = x - self.previous[0]
            y = grad - self.previous[1]
            ys = flat_dot(y, s)
            # The curvature condition y·s > 0 keeps the inverse-Hessian estimate positive
            # definite; a pair that fails it (or is not finite) is dropped, as in torch's LBFGS.
            if ys > 1e-10 and math.isfinite(ys):
                if len(self.pairs) == self.history:
                    self.pairs.pop(0)
                self.pairs.append((s, y, 1.0 / ys))
            else:
                self.skipped_pairs += 1
                self.steepest = min(2.0 * self.steepest, MAX_STEEPEST)
        self.previous = (x.clone(), grad.clone())

    def initial_scaling(self) -> torch.Tensor | float:
        """H₀ of the two-loop recursion (needs at least one pair): γ = s·y / y·y of the newest
        pair (Nocedal & Wright, eq. 7.20), or with ``diagonal`` per element i the least-squares
        solution of D_i y_ij ≈ s_ij over the newest :data:`DIAGONAL_PAIRS` pairs j,
        D_i = Σ_j s_ij y_ij / Σ_j y_ij², where that is positive (else γ), clipped to
        [γ / DIAGONAL_RANGE, γ · DIAGONAL_RANGE] so that H stays positive definite and no pixel
        is trusted far beyond the others."""
        _, y, rho = self.pairs[-1]
        gamma = 1.0 / (rho * flat_dot(y, y))
        if not self.diagonal:
            return gamma
        recent = self.pairs[-DIAGONAL_PAIRS:]
        products = sum(s * y for s, y, _ in recent)
        squares = sum(y * y for _, y, _ in recent)
        assert isinstance(products, torch.Tensor) and isinstance(squares, torch.Tensor)
        fitted = products / squares.clamp_min(torch.finfo(squares.dtype).tiny)
        fitted = torch.where((products > 0) & (squares > 0), fitted, gamma)
        return fitted.clamp(gamma / DIAGONAL_RANGE, gamma * DIAGONAL_RANGE)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """−H·g by the two-loop recursion from H₀ = :meth:`initial_scaling`."""
        q = grad.neg()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            alpha = rho * flat_dot(s, q)
            q.add_(y, alpha=-alpha)
            alphas.append(alpha)
        q.mul_(self.initial_scaling())
        for (s, y, rho), alpha in zip(self.pairs, reversed(alphas)):
            beta = rho * flat_dot(y, q)
            q.add_(s, alpha=alpha - beta)
        return q

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The next image from the accepted image ``x`` and its gradient."""
        self._remember(x, grad)
        if self.pairs:
            return x + self.learning_rate * self.direction(grad)
        # No curvature yet: steepest descent, the largest pixel move `learning_rate` grey levels
        # (more after pairs dropped for want of curvature: see style/optimizer.py's docstring).
        peak = float(grad.abs().max())
        if peak == 0.0:
            return x.clone()
        t = self.learning_rate * self.steepest * self.pixel_unit / peak
        return x - t * grad
