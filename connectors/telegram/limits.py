"""Per-customer flood control: at most N messages per window, one polite notice when it trips.

In-process (one worker); a deployment with several workers would keep these counters in Redis.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import Enum


class Verdict(Enum):
    PASS = "pass"
    NOTIFY = "notify"  # over the limit for the first time in this window: tell the customer once
    DROP = "drop"  # over the limit, already told


class RateLimiter:
    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._notified: dict[str, float] = {}

    def check(self, key: str) -> Verdict:
        if self.limit <= 0:
            return Verdict.PASS
        now = self._clock()
        seen = self._seen.setdefault(key, deque())
        while seen and now - seen[0] >= self.window_s:
            seen.popleft()
        if len(seen) < self.limit:
            seen.append(now)
            if len(self._seen) > 10_000:
                self._forget(now)
            return Verdict.PASS
        told = self._notified.get(key)
        if told is not None and now - told < self.window_s:
            return Verdict.DROP
        self._notified[key] = now
        return Verdict.NOTIFY

    def _forget(self, now: float) -> None:
        """Keep memory bounded: customers quiet for a whole window are forgotten."""
        for key in [k for k, seen in self._seen.items() if not seen or now - seen[-1] >= self.window_s]:
            self._seen.pop(key, None)
            self._notified.pop(key, None)
