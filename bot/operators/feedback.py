"""The customer's buttons: helped / talk to a person under a bot answer, 1-5 stars after a resolution."""

from __future__ import annotations

from functools import partial

from sqlalchemy.orm import Session

from bot.delivery.journal import record_event
from bot.domain.lifecycle import Move, advance, allowed
from bot.domain.types import EventType, FeedbackKind
from bot.operators.drafts import expire_drafts
from bot.storage.db import Transactions
from bot.storage.models import Conversation, Feedback, utcnow

BUTTONS = frozenset({FeedbackKind.HELPFUL, FeedbackKind.NOT_HELPFUL, FeedbackKind.CSAT})  # what a press can say


class CustomerFeedback:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def record(self, conversation_id: int, kind: FeedbackKind, value: int = 0) -> str | None:
        """Why the press was refused, None when it was recorded."""
        if kind not in BUTTONS or (kind == FeedbackKind.CSAT and not 1 <= value <= 5):
            return "unknown feedback"
        return await self._transactions.run(partial(_record, conversation_id, kind, value))


def _record(conversation_id: int, kind: FeedbackKind, value: int, session: Session) -> str | None:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return f"no conversation {conversation_id}"
    session.add(Feedback(conversation_id=conversation_id, kind=kind, value=value))
    record_event(session, conversation_id, EventType.FEEDBACK, kind=kind, value=value)
    if kind == FeedbackKind.HELPFUL and allowed(conversation.state, Move.HELPED):
        conversation.state = advance(conversation.state, Move.HELPED)  # solved by the bot alone
        conversation.resolved_at = utcnow()
        record_event(session, conversation_id, EventType.RESOLVED, by="bot")
        expire_drafts(session, conversation_id)
    return None
