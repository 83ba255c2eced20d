"""Minimising a loss over the pixels of an image, guarded so that no precision and no image can
make the run blow up.

Gatys et al. optimise the pixels with L-BFGS. Like neural-style we take one loss evaluation per
iteration and unit steps (predictable time), with a line search only where a step goes uphill;
each way this can fail was seen here:

- **The first step.** Without curvature pairs L-BFGS steps along the raw gradient; torch's
  ``LBFGS`` scales that first step by min(1, 1/‖g‖₁), which for a Gatys loss (‖g‖₁ ~ 1e8) moves
  pixels by ~0.016 grey levels. In emulated bf16 the resulting pair had s·y < 0 and was dropped,
  so the next step was the raw gradient at t = 1: loss 4.9e25, never recovered. Here every step
  without curvature history is scaled in *pixel units*: its largest pixel change is
  ``learning_rate`` grey levels.
- **No curvature.** Where the loss curves downward along the steps (the Gatys loss is quartic
  in the features: a Gram below its target makes it concave along directions that raise it),
  every pair fails the curvature condition and is dropped, and L-BFGS would creep on in steps of
  one grey level (seen: a luminance-only transfer spent 75 iterations there, the loss falling
  by half). So each pair dropped for want of curvature doubles the next such step, up to
  :data:`~normstyle.style.lbfgs.MAX_STEEPEST` grey levels; the guard below catches a step
  that overshoots.
- **A step uphill.** Unit L-BFGS steps usually lower the loss, but not always: on some pairs
  (scikit-learn's china.jpg × flower.jpg, 256 px, README "Speed") accepted steps raised the loss
  again and again, the run wandered and the stopping rule ended it on a plateau 3.7× above the
  reference. So an L-BFGS step is accepted only if it lowers the loss by the Armijo margin
  (Nocedal & Wright, eq. 3.4, c₁ = :data:`ARMIJO`); otherwise the next evaluation tries a
  shorter step along the same direction, at the minimum of the quadratic through the two losses
  and the slope (eq. 3.57), between 1/10 and 1/2 of the step (a backtracking line search that
  costs nothing while unit steps succeed, which is nearly always: 0–1 backtracks per run on the
  shared pairs). The curvature history is kept. Adam's steps may raise the loss by design and are
  not held to this. After :data:`MAX_BACKTRACKS` in a row the step counts as rejected (below).
- **Pixels at a bound.** Every image is projected into the valid pixels (0–255). Projecting
  unconstrained L-BFGS steps is not enough where a style pulls many pixels past a bound: on
  china.jpg × flower.jpg (whose background is black) 14% of the pixels sat at a bound with the
  gradient pushing them further out, 80–90% of the gradient's norm; L-BFGS's steps pointed
  mostly out of the box, were cut off by the projection, and the default run stopped on a
  plateau at a loss of 8.5e6 (256 px). So a pixel held at a bound by its gradient is left out
  of the step: its gradient component is zeroed before L-BFGS sees it and its component of the
  step is zeroed after (the reduced problem of projected quasi-Newton methods: Kim, Sra &
  Dhillon, "Tackling box-constrained optimization via a new projected quasi-Newton approach",
  SIAM J. Sci. Comput. 2010). It may move again as soon as its gradient points inwards. The
  same run then ends at 3.5e5 (README, "Speed").
- **A bad step.** A step whose loss is not finite, or more than :data:`BLOW_UP` times the last
  accepted loss, is rejected: the image goes back to the last accepted one and the curvature
  history is cleared. From then on every step's largest pixel change is capped by a radius,
  half the rejected step's at first, doubled after each accepted step that was cut by it (the
  trust-region rule of Nocedal & Wright, Alg. 4.1, with the loss ratio test replaced by the
  blow-up test). A run without rejections is never capped. After :data:`GIVE_UP` rejections in
  a row the run stops with a message and keeps the best image found.

The output is always the accepted image with the lowest loss. Each rejection is logged (logger
``normstyle``) and listed in :attr:`Minimized.events`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from normstyle.style.lbfgs import flat_dot

logger = logging.getLogger("normstyle")

# A step is rejected when its loss grows by more than (BLOW_UP − 1)·|last accepted loss| (for the
# non-negative Gatys loss: exceeds BLOW_UP × the last accepted loss), or is not finite. Below it,
# L-BFGS retries a step that raised the loss shorter and Adam accepts it; a doubling is a blow-up.
BLOW_UP = 2.0
# Sufficient decrease of an L-BFGS step: loss ≤ last accepted + ARMIJO · (gradient · step)
# (Nocedal & Wright's usual c₁).
ARMIJO = 1e-4
# Shorter tries along one direction after which the step counts as rejected.
MAX_BACKTRACKS = 10
# Rejections in a row after which the run stops (the restart step is halved each time, so the
# last try moved pixels by 2^-7 of the first step).
GIVE_UP = 8
# objective(x, need_grad) → (loss as a 0-d tensor, ∂loss/∂x or None, anything to hand back)
Objective = Callable[[torch.Tensor, bool], tuple[torch.Tensor, torch.Tensor | None, Any]]
# on_iteration(iteration, x, loss, extra) after every iteration (x is the current image)
IterationCallback = Callable[[int, torch.Tensor, float, Any], None]


class PixelOptimizer(Protocol):
    """One update rule: ``step`` maps the accepted image and its gradient to the next image.
    ``line_search``: whether a step that does not lower the loss is retried shorter (L-BFGS)
    rather than accepted within the blow-up guard (Adam)."""

    line_search: bool

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor: ...

    def reset(self) -> None:
        """Forget all state (the next step is a first step again)."""


class Adam:
    """Adam on the pixels; ``learning_rate`` in grey levels (as neural-style's -learning_rate)."""

    line_search = False

    def __init__(self, pixel_unit: float, learning_rate: float = 10.0) -> None:
        if not (learning_rate > 0 and math.isfinite(learning_rate)):
            raise ValueError(f"learning rate must be a positive number, got {learning_rate}")
        self.lr = learning_rate * pixel_unit
        self.reset()

    def reset(self) -> None:
        """Forget the moment estimates."""
        self.param: torch.Tensor | None = None
        self.optimizer: torch.optim.Adam | None = None

    def step(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """The next image from the accepted image ``x`` and its gradient."""
        if self.param is None or self.optimizer is None:
            self.param = x.detach().clone()
            self.optimizer = torch.optim.Adam([self.param], lr=self.lr)
        with torch.no_grad():
            self.param.copy_(x)
        self.param.grad = grad.clone()
        self.optimizer.step()
        return self.param.detach().clone()


@dataclass
class Minimized:
    """The outcome of :func:`minimize`."""

    x: torch.Tensor  # the accepted image with the lowest loss
    loss: float  # its loss
    extra: Any  # what the objective handed back for it
    iteration: int  # the iteration that produced it (0: the start image)
    losses: list[float] = field(default_factory=list)  # accepted loss after each iteration
    rejected: int = 0  # steps rejected by the guard
    backtracks: int = 0  # evaluations that retried a step shorter (L-BFGS's line search)
    events: list[str] = field(default_factory=list)  # what the guard did, one line each
    stopped: str | None = None  # why the guard stopped the run before its last iteration
    finished: bool = False  # the stopping rule ended the run (the image is finished)


def minimize(
    objective: Objective,
    start: torch.Tensor,
    iterations: int,
    optimizer: PixelOptimizer,
    on_iteration: IterationCallback | None = None,
    blow_up: float = BLOW_UP,
    give_up: int = GIVE_UP,
    finished: Callable[[list[float]], bool] | None = None,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Minimized:
    """Run ``iterations`` steps of ``optimizer`` on ``objective`` from ``start``, guarded; with
    ``finished`` (a stopping rule on the accepted losses so far), stop as soon as it says so;
    with ``bounds`` (low, high, broadcastable to ``start``), every image stays inside them; with
    ``project``, every step is projected by it (onto the directions the image may move in: an
    optimiser like Adam rescales each pixel's step and would leave them otherwise).

    Each iteration makes one step and one evaluation of the objective (plus one at the start).
    Raises :class:`RuntimeError` only if the start image itself has no finite loss and gradient.
    """
    x = start.detach().clone()
    if bounds is not None:
        x = _inside(x, bounds)
    loss, grad, extra = objective(x, iterations > 0)
    value = float(loss)
    if not _finite(value, grad):
        raise RuntimeError(
            f"the loss or its gradient is not finite at the start image (loss {value:.4g});"
            " check the weights, or use --precision fp32"
        )
    result = Minimized(x=x, loss=value, extra=extra, iteration=0)
    good_x, good_grad, good_value, good_extra = x, grad, value, extra  # the last accepted step
    rejections = 0
    radius = math.inf  # the largest pixel change a step may make (finite after a rejection)
    retry: tuple[torch.Tensor, float] | None = None  # (direction, fraction) while backtracking
    backtracks = 0  # shorter tries of the current direction so far
    for iteration in range(1, iterations + 1):
        assert good_grad is not None
        if retry is None:
            if bounds is None:
                direction = optimizer.step(good_x, good_grad) - good_x
            else:
                free = _free(good_x, good_grad, bounds)
                direction = (optimizer.step(good_x, good_grad * free) - good_x) * free
            if project is not None:
                direction = project(direction)
            fraction = 1.0
        else:
            direction, fraction = retry
        peak = fraction * float(direction.abs().max())
        capped = peak > radius
        if capped:
            fraction *= radius / peak
            peak = radius
        move = direction if fraction == 1.0 else fraction * direction
        candidate = good_x + move
        if bounds is not None:
            # Projected onto the valid pixels. The paper optimises unconstrained pixels, but a
            # saved image is clipped to 0–255: clipping after the run raised the saved image's
            # loss by 56% (8× from a noise start); projecting every step costs nothing measured.
            candidate = _inside(candidate, bounds)
        # The last evaluation needs no gradient: nothing steps from it.
        loss, grad, extra = objective(candidate, iteration < iterations)
        value = float(loss)
        finite = _finite(value, grad)
        slope = flat_dot(good_grad, candidate - good_x)  # the loss's rate of change along the step
        within_guard = finite and value - good_value <= (blow_up - 1.0) * abs(good_value)
        if optimizer.line_search:
            accepted = finite and value <= good_value + ARMIJO * min(slope, 0.0)
        else:
            accepted = within_guard
        if accepted:
            good_x, good_grad, good_value, good_extra = candidate, grad, value, extra
            rejections = 0
            retry, backtracks = None, 0
            if capped:
                radius *= 2.0
            if value < result.loss:
                result.x, result.loss, result.extra = candidate, value, extra
                result.iteration = iteration
        elif within_guard and slope < 0.0 and backtracks < MAX_BACKTRACKS:
            # Next, the minimum of the quadratic through the last accepted loss, its slope along
            # the step and this loss, as a fraction of this step (in [1/10, 1/2] of it).
            curvature = 2.0 * (value - good_value - slope)
            shorter = -slope / curvature if curvature > 0.0 else 0.5
            retry = (direction, fraction * min(max(shorter, 0.1), 0.5))
            backtracks += 1
            result.backtracks += 1
        else:
            rejections += 1
            result.rejected += 1
            radius = 0.5 * peak
            if not finite:
                what = "not finite"
            elif not within_guard:
                what = f"more than {blow_up:g}× the last accepted"
            elif backtracks:
                what = f"still above the last accepted after {backtracks} shorter tries"
            else:
                what = "above the last accepted, and uphill along the step"
            retry, backtracks = None, 0
            event = (
                f"iteration {iteration}: loss {value:.4g} ({what}, {good_value:.4g}): step"
                " rejected; back to the last accepted image, curvature history cleared, steps"
                f" capped at {radius:.3g} per pixel"
            )
            result.events.append(event)
            logger.warning(event)
            optimizer.reset()
        result.losses.append(good_value)
        if on_iteration is not None:
            on_iteration(iteration, good_x, good_value, good_extra)
        if rejections >= give_up:
            result.stopped = (
                f"stopped at iteration {iteration} of {iterations}: {rejections} steps in a row"
                " made the loss non-finite, blow up or fail to go down, even at small steps;"
                " kept the best image"
                f" (iteration {result.iteration}, loss {result.loss:.4g}). Try --precision fp32"
                " or a lower --learning-rate"
            )
            logger.warning(result.stopped)
            break
        if finished is not None and finished(result.losses):
            result.finished = True
            break
    return result


def _free(
    x: torch.Tensor, grad: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """1 where a pixel may move downhill, 0 where it is held at a bound by a gradient that
    pushes it further out (the active set of the projected gradient)."""
    low, high = bounds
    held = ((x <= low.to(x)) & (grad > 0)) | ((x >= high.to(x)) & (grad < 0))
    return (~held).to(grad.dtype)


def _inside(x: torch.Tensor, bounds: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    low, high = bounds
    return torch.maximum(torch.minimum(x, high.to(x)), low.to(x))


def _finite(value: float, grad: torch.Tensor | None) -> bool:
    return math.isfinite(value) and (grad is None or bool(torch.isfinite(grad).all()))
