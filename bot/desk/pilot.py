"""The pilot cohort: which customers the bot may answer directly while automation is rolled out.

Inside the pilot (mode `auto`), confident answers go straight to the customer; outside it every question
goes to an operator with the bot's draft (copilot). Membership is stable per customer: a SHA-256 of
`channel:chat_id` (not Python's per-process salted `hash()`) puts each customer at a fixed point in
[0, 100), and the customer is in the pilot when that point is under `pilot_percent`. So raising the
percentage only adds customers, and every worker agrees without sharing state.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from bot.config import AutomationSettings


class Cohort(StrEnum):
    PILOT = "pilot"  # the bot answers confident questions itself
    COPILOT = "copilot"  # every question goes to an operator with the bot's draft


def bucket(channel: str, chat_id: str) -> float:
    """The customer's fixed point in [0, 100), in steps of 0.01."""
    digest = hashlib.sha256(f"{channel}:{chat_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


class PilotCohort:
    def __init__(self, settings: AutomationSettings) -> None:
        self._settings = settings  # read on every call: settings edited in place take effect

    def of(self, channel: str, chat_id: str) -> Cohort:
        s = self._settings
        if s.mode == "suggest":
            return Cohort.COPILOT
        allowed = set(s.pilot_allowlist)
        if chat_id in allowed or f"{channel}:{chat_id}" in allowed:  # a bare id matches on any channel
            return Cohort.PILOT
        return Cohort.PILOT if bucket(channel, chat_id) < s.pilot_percent else Cohort.COPILOT
