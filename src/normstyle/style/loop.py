"""The optimisation loop of one level: the objective (loss and pixel gradient), the optimiser
chosen by the options, the progress bar and the per-step callbacks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from normstyle.nets.preprocessing import Preprocessing
from normstyle.nets.vgg import VGG
from normstyle.runtime.precision import Runtime
from normstyle.style.banded import banded_backward, banded_grams
from normstyle.style.bands import BandLayout, feature_sizes
from normstyle.style.lbfgs import LBFGS, LBFGS_HISTORY
from normstyle.style.losses import GatysLoss, LossTerms
from normstyle.style.optimizer import (
    Adam,
    Minimized,
    PixelOptimizer,
    minimize,
)
from normstyle.style.options import StyleOptions
from normstyle.style.precision import GradientScale, backward_to_pixels, evaluate
from normstyle.style.stopping import StoppingRule

StepCallback = Callable[[int, torch.Tensor, LossTerms], None]


def optimize(
    model: VGG,
    loss: GatysLoss,
    start: torch.Tensor,
    iterations: int,
    options: StyleOptions,
    prep: Preprocessing,
    runtime: Runtime,
    callbacks: Sequence[StepCallback] = (),
    finished: StoppingRule | None = None,
    project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    history: int = LBFGS_HISTORY,
    bands: BandLayout | None = None,
    interrupt: Callable[[], None] | None = None,
) -> Minimized:
    """Minimise ``loss`` over the pixels of ``start`` for ``iterations`` steps (one loss
    evaluation each), guarded against blow-ups (see :mod:`normstyle.style.optimizer`), or
    fewer where the stopping rule ``finished`` ends the run. ``project``, if given, maps each
    pixel gradient onto the directions the image may move in (the luminance-only transfer's grey
    images); ``start`` must lie in that set. ``history``: L-BFGS curvature pairs kept.
    ``bands``: evaluate the loss and its gradient band by band (exactly the same numbers; see
    :mod:`normstyle.style.banded`). ``interrupt`` is called before every evaluation; what it
    raises ends the run.

    Returns the best image found (``.x``, fp32 in network input space), its loss terms
    (``.extra``), the loss after each iteration and what the guard did.
    """
    scale = GradientScale()

    sizes = None if bands is None else feature_sizes(model, loss.layers, *start.shape[2:])

    def objective(
        x: torch.Tensor, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, LossTerms]:
        if interrupt is not None:
            interrupt()
        if bands is not None and sizes is not None:
            if not need_grad:
                terms = banded_grams(model, loss, x, runtime, bands, sizes)[0]
                return terms.total, None, terms
            terms, grad = banded_backward(model, loss, x, runtime, bands, sizes, scale)
            grad = grad if project is None else project(grad)
            return terms.total.detach(), grad, terms.detach()
        if not need_grad:
            terms = evaluate(model, loss, x, runtime)
            return terms.total.detach(), None, terms
        leaf = x.detach().requires_grad_(True)
        terms = backward_to_pixels(model, loss, leaf, runtime, scale).detach()
        grad = leaf.grad if project is None or leaf.grad is None else project(leaf.grad)
        return terms.total, grad, terms

    if options.optimizer == "lbfgs":
        # Unit steps, one evaluation per iteration; a step uphill is retried shorter by the
        # next evaluation (see style/optimizer.py).
        stepper: PixelOptimizer = LBFGS(prep.pixel_unit, options.step_size(), history)
    else:
        stepper = Adam(prep.pixel_unit, options.step_size())

    report_every = max(1, iterations // 10)
    where = "" if bands is None else f" in {len(bands.bands)} bands"
    with tqdm(
        total=iterations,
        desc=f"stylize {tuple(start.shape[2:])}{where}",
        unit="it",
        disable=None if options.progress else True,  # None: only where stderr is a terminal
        dynamic_ncols=True,
    ) as bar:

        def on_iteration(iteration: int, x: torch.Tensor, value: float, terms: Any) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if options.verbose and (iteration % report_every == 0 or iteration == 1):
                tqdm.write(format_terms(iteration, terms, loss))
            for callback in callbacks:
                callback(iteration, x, terms)

        # The pixels a saved image can hold: 0–1 in RGB, in the network's input space.
        low = prep.from_rgb(torch.zeros(1, 3, 1, 1, device=start.device))
        high = prep.from_rgb(torch.ones(1, 3, 1, 1, device=start.device))
        result = minimize(
            objective,
            start.float(),
            iterations,
            stepper,
            on_iteration,
            finished=finished,
            bounds=(torch.minimum(low, high), torch.maximum(low, high)),
            project=project,
        )
        if result.finished:  # the bar ends where the run did, not at its cap
            bar.total = len(result.losses)
            bar.refresh()
        return result


def format_terms(iteration: int, terms: LossTerms, loss: GatysLoss) -> str:
    """One line: total, weighted content and style terms per layer."""
    parts = [f"iter {iteration:5d}  total {float(terms.total):.4g}"]
    for name, value in terms.content.items():
        weighted = loss.content_weight * loss.content_layers[name] * float(value)
        parts.append(f"content {name} {weighted:.3g}")
    for name, value in terms.style.items():
        parts.append(
            f"style {name} {loss.style_weight * loss.style_layers[name] * float(value):.3g}"
        )
    if terms.tv is not None:
        parts.append(f"tv {loss.tv_weight * float(terms.tv):.3g}")
    return "  ".join(parts)
