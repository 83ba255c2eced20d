"""Mixed precision for the network in the optimisation loop: its features in the runtime's
precision (the first conv always in fp32), the loss in fp32, and a gradient scale for fp16."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from normstyle.nets.chain import chain_of, run_chain
from normstyle.nets.vgg import VGG
from normstyle.runtime.precision import Runtime
from normstyle.style.losses import GatysLoss, LossTerms


def network_features(
    model: VGG, x: torch.Tensor, layers: list[str], runtime: Runtime
) -> dict[str, torch.Tensor]:
    x = x.contiguous(memory_format=runtime.memory_format)
    if runtime.precision == "fp32":
        return model(x, layers)
    # The first conv runs in fp32 even under autocast: its input is the image being optimised,
    # and bf16 rounds 0-255 pixel values to steps of up to 1, hiding the small moves L-BFGS makes
    # (on a small net its first step left the loss unchanged, the curvature estimate was empty
    # and the next step exploded). On VGG-19 at 512 px it moved bf16's loss after 500 iterations
    # from +0.49% to -0.07% of fp32's at no measurable cost per iteration (make bench).
    chain = chain_of(model)
    first_name, first = chain[0]
    x = first(x)
    out = {first_name: x} if first_name in layers else {}
    rest = [name for name in layers if name != first_name]
    if rest:
        with runtime.autocast():
            out.update(run_chain(chain[1:], x, rest))
    return out


def evaluate(
    model: VGG, loss: GatysLoss, x: torch.Tensor, runtime: Runtime, grad: bool = False
) -> LossTerms:
    """The loss terms at image ``x`` (network in the runtime's precision, loss in fp32)."""
    with torch.set_grad_enabled(grad):
        return loss(network_features(model, x, loss.layers, runtime), x)


@dataclass
class GradientScale:
    """The factor on the gradients flowing back through an fp16 network.

    fp16's range ends at 65504: the gradients are scaled down (and the pixel gradient scaled
    back up) by a factor that backs off whenever they overflow and grows again after
    ``growth_interval`` evaluations without overflow — torch.amp.GradScaler's rule. Departures
    from GradScaler's defaults (backoff 0.5, interval 2000): an overflow here costs a whole
    re-evaluation, not a skipped training step, so the backoff is 1/16; and a run is hundreds of
    evaluations, not millions, so the growth interval is 50. Other precisions keep 1.
    """

    value: float = 1.0
    backoff: float = 2.0**-4
    growth: float = 2.0
    growth_interval: int = 50
    max_retries: int = 12
    good_steps: int = 0

    def overflowed(self) -> None:
        """Back off after a non-finite gradient."""
        self.value *= self.backoff
        self.good_steps = 0

    def succeeded(self) -> None:
        """Count an evaluation without overflow; grow after ``growth_interval`` of them."""
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.value *= self.growth
            self.good_steps = 0


def backward_to_pixels(
    model: VGG, loss: GatysLoss, x: torch.Tensor, runtime: Runtime, scale: GradientScale
) -> LossTerms:
    """The loss terms at ``x`` (a leaf that requires grad); their gradient replaces ``x.grad``.

    A loss that is not finite is returned as it is, with ``x.grad`` None (the optimiser's guard
    rejects the step); in fp16 a gradient that overflows is recomputed at a smaller scale, and
    after ``scale.max_retries`` overflows is returned non-finite.
    """
    for _ in range(scale.max_retries):
        x.grad = None
        terms = evaluate(model, loss, x, runtime, grad=True)
        if not torch.isfinite(terms.total):
            return terms
        (terms.total * scale.value).backward()
        assert x.grad is not None
        if runtime.precision != "fp16":
            break
        if torch.isfinite(x.grad).all():
            scale.succeeded()
            break
        scale.overflowed()
    if scale.value != 1.0:
        x.grad /= scale.value
    return terms
