"""When an image is finished: the stopping rule of ``--iterations auto``.

An L-BFGS run on the Gatys loss falls fast, then creeps: the last few hundred of 1000 iterations
lower the loss by a few per cent and change what the image looks like by little. The rule stops
a level once the loss has fallen by less than ``tolerance`` (relative) over the last ``window``
iterations, after at least ``minimum`` of them. "Finished" is measured against a reference: the
loss of a 1000-iteration one-level run from noise (``make bench``; README, Speed).

The rule sees only its own run's losses, and where it stops every recorded run looks alike (its
loss 3.7–5.4% above the same run's after 400 full-size iterations); what differs between image
pairs is where the run is heading against the reference: 0.93–0.99 × on three shared pairs, the
held-out one and an ImageNet tiger × Escher pair, 1.01 × on an ImageNet alp × seated-nude
(AVX2-only EPYC, 2026-12-07, 256 px, default schedule, the full-size level recorded to 400
iterations). 3% over 50 iterations, the default before, stopped alp × seated-nude at 1.059 × its
reference in-run (1.064 from the saved PNG: not finished) and tiger × Escher at 1.047. 1.75%
over 50 stops all six recorded runs at ≤ 1.036 × (2% stopped alp × seated-nude at 1.042), after
26% more full-size iterations than 3% on the held-out pair and three shared ones (958 against
763): the price of a margin that holds on pairs never used to choose it. With L-BFGS started from
a per-pixel diagonal (style/lbfgs.py; its references 0.7–1.8% lower) the same rule stopped
tubingen × starry_night, golden_gate × the_scream and alp × seated-nude at 1.013, 1.010 and
1.036 × their references after 247, 223 and 271 full-size iterations (Zen 4, 2026-12-07), where
the γI start stopped at 1.032, 1.012 and 1.059 × the same references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StoppingRule:
    """Stop when ``(loss[i − window] − loss[i]) ≤ tolerance · loss[i]``, from ``minimum`` on."""

    window: int
    tolerance: float
    minimum: int

    def __call__(self, losses: Sequence[float]) -> bool:
        """Whether the run that produced ``losses`` (one per iteration) may stop now."""
        if len(losses) < max(self.minimum, self.window + 1):
            return False
        before, now = losses[-1 - self.window], losses[-1]
        return before - now <= self.tolerance * abs(now)

    def describe(self) -> str:
        """One line for messages."""
        return f"the loss fell by less than {self.tolerance * 100:g}% over {self.window} iterations"


# The last level: the image is finished.
FINISHED = StoppingRule(window=50, tolerance=0.0175, minimum=100)
# A coarser level only prepares the next level's start: once its loss falls by less than this
# fraction over 50 iterations, its large structure has settled. Measured at 256 px (README,
# Speed; AVX2-only EPYC, 2026-12-06): after 100 half-size iterations four shared pairs and the
# held-out pair had fallen by 21–47% over the last 50, scikit-learn's china.jpg × flower.jpg by
# 139%. With 25% the half-size level ran 100–121 iterations on four of the five (their
# full-size levels −4 to +5 iterations, where measured) and 290 on china × flower, whose
# full-size level then took 344 iterations instead of 559.
SETTLED = StoppingRule(window=50, tolerance=0.25, minimum=100)
