"""The Management API's rate limit: a token bucket per caller (the client of the access token),
with Auth0's headers on every answer and Auth0's 429 when the bucket is empty.

    x-ratelimit-limit      the bucket's size (requests that may come at once)
    x-ratelimit-remaining  requests left now
    x-ratelimit-reset      the UNIX time (seconds) at which the bucket is full again

Auth0's SDKs (auth0-python, node-auth0) read these headers and wait before retrying. The
bucket lives in each server process: with N processes a caller may reach N times the
rate. That keeps the limit free of a shared store; it protects each process from one noisy
caller, which is what it is for (docs/management-api.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

__all__ = ["RateLimiter", "Decision"]

_MAX_CALLERS = 10_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset: int  # UNIX seconds

    def headers(self) -> dict[str, str]:
        values = {"x-ratelimit-limit": str(self.limit), "x-ratelimit-remaining": str(self.remaining), "x-ratelimit-reset": str(self.reset)}
        if not self.allowed:
            values["retry-after"] = str(max(1, self.reset - int(time.time())))
        return values


class RateLimiter:
    def __init__(self, *, rate: float, burst: int):
        self.rate = rate  # requests per second, refilled continuously
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, at monotonic time)

    def take(self, caller: str) -> Decision:
        now = time.monotonic()
        tokens, at = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        if len(self._buckets) >= _MAX_CALLERS and caller not in self._buckets:
            self._buckets.clear()  # forget idle callers rather than grow without bound
        self._buckets[caller] = (tokens, now)
        full_in = (self.burst - tokens) / self.rate
        return Decision(allowed=allowed, limit=self.burst, remaining=int(tokens), reset=math.ceil(time.time() + full_in))
