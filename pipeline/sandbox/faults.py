"""Rate limit and injected faults. One random.Random(fault_seed) decides every fault."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from pipeline.sandbox.config import SandboxConfig


@dataclass(frozen=True, slots=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset: float  # seconds until the bucket holds a whole token again (0 when it does now)

    def headers(self, *, fractional: bool) -> dict[str, str]:
        reset = f"{self.reset:.3f}" if fractional else str(math.ceil(self.reset))
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": reset,
        }


class TokenBucket:
    """Refuses (429) instead of waiting.

    Hand-rolled because aiolimiter only waits for capacity and keeps its level private, while the
    sandbox must answer at once and report remaining/reset in the x-ratelimit-* headers.
    """

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> RateDecision:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        allowed = self.tokens >= 1.0
        if allowed:
            self.tokens -= 1.0
        reset = 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
        return RateDecision(allowed, self.burst, int(self.tokens), reset)


ApiFault = Literal["reset", 500, 503] | None
AudioFault = Literal["reset", "expire", "truncate"] | None


class Faults:
    """Draws fault decisions in request order; the same seed and order give the same faults."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self._seed = config.fault_seed
        self.rng = random.Random(config.fault_seed)
        self._server_errors = 0
        self._bucket: TokenBucket | None = None

    def _reseed_if_changed(self) -> None:
        if self.config.fault_seed != self._seed:
            self._seed = self.config.fault_seed
            self.rng = random.Random(self._seed)
            self._server_errors = 0

    def rate(self, now: float) -> RateDecision | None:
        """None when no rate limit is configured."""
        c = self.config
        if c.rate_limit is None:
            self._bucket = None
            return None
        b = self._bucket
        if b is None or (b.rate, b.burst) != (c.rate_limit, c.rate_burst):
            b = self._bucket = TokenBucket(c.rate_limit, c.rate_burst, now)
        return b.take(now)

    def api(self) -> ApiFault:
        c = self.config
        if c.fault_reset <= 0 and c.fault_5xx <= 0:
            return None
        self._reseed_if_changed()
        u = self.rng.random()
        if u < c.fault_reset:
            return "reset"
        if u < c.fault_reset + c.fault_5xx:
            # 500 and 503 take turns (not a coin flip), so that any two server errors show both.
            self._server_errors += 1
            return 500 if self._server_errors % 2 else 503
        return None

    def audio(self) -> AudioFault:
        c = self.config
        if c.fault_reset <= 0 and c.fault_expire <= 0 and c.fault_truncate <= 0:
            return None
        self._reseed_if_changed()
        u = self.rng.random()
        for fault, share in (
            ("reset", c.fault_reset),
            ("expire", c.fault_expire),
            ("truncate", c.fault_truncate),
        ):
            if u < share:
                return fault  # type: ignore[return-value]
            u -= share
        return None

    def truncate_at(self, size: int) -> int:
        """How many bytes a truncated download delivers: fewer than all of them."""
        return self.rng.randrange(size) if size > 0 else 0

    def partial_delete(self, ids: list[str]) -> list[str] | None:
        """The ids a failing bulk delete removes before its 500, or None if it does not fail."""
        c = self.config
        if c.fault_partial_delete <= 0:
            return None
        self._reseed_if_changed()
        if self.rng.random() >= c.fault_partial_delete:
            return None
        return ids[: self.rng.randrange(len(ids))] if ids else []
