"""Per-customer flood control: at most N messages per window, one polite notice when it trips.

The counters live in the shared state (bot.shared: Redis when configured, so the limit holds across
workers; this process otherwise). Windows are fixed: a window starts every `window_s` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

from bot.shared import SharedState


class Verdict(Enum):
    PASS = "pass"
    NOTIFY = "notify"  # over the limit for the first time in this window: tell the customer once
    DROP = "drop"  # over the limit, already told


class RateLimiter:
    def __init__(
        self, shared: SharedState, limit: int, window_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._shared = shared
        self._clock = clock

    async def check(self, key: str) -> Verdict:
        if self.limit <= 0:
            return Verdict.PASS
        window = f"rate:{key}:{int(self._clock() // self.window_s)}"
        if await self._shared.count(window, self.window_s) <= self.limit:
            return Verdict.PASS
        return Verdict.NOTIFY if await self._shared.first_time(window + ":told", self.window_s) else Verdict.DROP
