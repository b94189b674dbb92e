"""One time budget per customer message, shared by the LLM analysis and the agent.

The desk calls the analyzer and then the responder in the same task, so a context variable set when
the analysis starts is what the responder sees: together they never take longer than `budget_s`.
"""

from __future__ import annotations

import time
from contextvars import ContextVar

_deadline: ContextVar[float] = ContextVar("relaydesk_llm_deadline", default=0.0)


def start(budget_s: float) -> float:
    """A message begins: its deadline, on the monotonic clock."""
    deadline = time.monotonic() + budget_s
    _deadline.set(deadline)
    return deadline


def remaining(budget_s: float) -> float:
    """Seconds left for this message; the full budget when no analysis started one in this task."""
    now = time.monotonic()
    deadline = _deadline.get()
    if deadline > now:
        return min(deadline - now, budget_s)
    if deadline and now - deadline < budget_s:
        return 0.0  # the analysis used it all: answer offline, at once
    return budget_s  # nobody started one (or it belongs to a long-gone message)
