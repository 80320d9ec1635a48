"""How long a Bot API request takes to come back: a seeded model of Telegram's
round trip for the Telegram double.

Most requests take about the median, jittered (a lognormal); a few are much
slower (a second lognormal, `tail_factor` times the median), as over a real
network where a lost packet or a busy Telegram front costs a multiple of the
usual round trip. The same seed gives the same delays in the same order.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, fields


@dataclass
class RoundTrip:
    """Seconds for one request's round trip, drawn per request."""

    median_ms: float = 40.0
    sigma: float = 0.25
    """Spread of the usual requests (lognormal σ): p99 ≈ median × e^(2.33σ), 1.8× here."""
    tail_share: float = 0.02
    """Share of requests in the slow tail."""
    tail_factor: float = 4.0
    """The slow tail's median, in multiples of `median_ms`."""
    seed: int = 1
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.median_ms < 0 or self.sigma < 0 or not 0 <= self.tail_share <= 1:
            raise ValueError("median_ms and sigma must be ≥ 0, tail_share within [0, 1]")
        self._rng = random.Random(self.seed)

    def settings(self) -> dict[str, float]:
        """The model's parameters (the seed left out)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init and f.name != "seed"}

    def __call__(self) -> float:
        if self.median_ms == 0:
            return 0.0
        rng = self._rng
        median = self.median_ms
        if self.tail_share and rng.random() < self.tail_share:
            median *= self.tail_factor
        return median * math.exp(rng.gauss(0.0, self.sigma)) / 1000
