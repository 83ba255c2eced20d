"""When an image is finished: the stopping rule of ``--iterations auto``.

An L-BFGS run on the Gatys loss falls fast, then creeps: the last few hundred of 1000 iterations
lower the loss by a few per cent and change what the image looks like by little. The rule stops
a level once the loss has fallen by less than ``tolerance`` (relative) over the last ``window``
iterations, after at least ``minimum`` of them; the constants are chosen by measurement so that
the stopped image's loss is within 5% of a 1000-iteration run's (``make bench``; README, Speed):
with the default half-size start, 3% over 50 iterations stopped four pairs at 256 px within
1.0–3.6% of their references and a held-out pair 2.1% below its own, after ~27% fewer full-size
iterations than a 1.5% tolerance (whose worst stop was 1.5% above its reference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class StoppingRule:
    """Stop when ``(loss[i − window] − loss[i]) ≤ tolerance · loss[i]``, from ``minimum`` on."""

    window: int = 50
    tolerance: float = 0.03
    minimum: int = 100

    def __call__(self, losses: Sequence[float]) -> bool:
        """Whether the run that produced ``losses`` (one per iteration) may stop now."""
        if len(losses) < max(self.minimum, self.window + 1):
            return False
        before, now = losses[-1 - self.window], losses[-1]
        return before - now <= self.tolerance * abs(now)

    def describe(self) -> str:
        """One line for messages."""
        return f"the loss fell by less than {self.tolerance:.1%} over {self.window} iterations"


# The last level: the image is finished.
FINISHED = StoppingRule()
# A coarser level only prepares the next level's start: once its loss falls by less than this
# fraction over 50 iterations, its large structure has settled. Measured at 256 px (README,
# Speed; AVX2-only EPYC, 2026-12-06): after 100 half-size iterations four shared pairs and the
# held-out pair had fallen by 21–47% over the last 50, scikit-learn's china.jpg × flower.jpg by
# 139%. With 25% the half-size level ran 100–121 iterations on four of the five (their
# full-size levels −4 to +5 iterations, where measured) and 290 on china × flower, whose
# full-size level then took 344 iterations instead of 559.
SETTLED = StoppingRule(window=50, tolerance=0.25, minimum=100)
