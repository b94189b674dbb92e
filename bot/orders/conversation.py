"""Order numbers across a conversation: the one a customer gave earlier, and the answer to "which order?"."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.domain.types import Analysis, Answer, Match


def with_orders(analysis: Analysis, earlier: Sequence[str]) -> Analysis:
    """The analysis knowing the conversation's order numbers: `earlier` ones, then this message's, the latest last."""
    said = [*earlier, *analysis.slots.orders]
    return replace(analysis, orders=tuple(dict.fromkeys(reversed(said)))[::-1])


def continue_topic(analysis: Analysis, awaited_topic: str, unsure: bool) -> Analysis:
    """The bot asked for an order number under `awaited_topic`; a message that gives one (and is not about
    anything else the desk is sure of: `unsure`) goes on with that topic."""
    if not awaited_topic or not analysis.slots.orders or analysis.escalation is not None or analysis.wants_human:
        return analysis
    if not (unsure or analysis.topic == awaited_topic):
        return analysis
    # The topic was sure enough to ask under; this message only completes it.
    matches = (Match(awaited_topic, 1.0),)
    return replace(
        analysis, topic=awaited_topic, matches=matches, confidence=1.0, margin=1.0, similarity=1.0, off_topic=False
    )


def ask_once(answer: Answer, awaited_topic: str) -> Answer:
    """Asked for the number already and still none: a person takes it from here, rather than asking again."""
    if not (answer.awaits_order and awaited_topic):
        return answer
    return replace(answer, text="", needs_human=True, awaits_order=False, reason="no order number after asking for it")
