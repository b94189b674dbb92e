"""A handoff's draft in the database: expired when its question is settled, and why it can no longer be sent.

A draft answers the question it was written for, so it lives only until that question is settled: sent,
discarded, or expired when the conversation is resolved, returned to the bot or answered in the operator's
own words (bot.domain.lifecycle.Draft). An expired draft is never sent (a stale one would answer a later question).
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from sqlmodel import col, select

from bot.domain.lifecycle import Draft, settle_draft
from bot.domain.types import EventType
from bot.storage.models import Event, Handoff

# What settles a draft's question (the event that expires it), as the operator is told.
_SETTLED_BY = {
    EventType.RESOLVED: "resolved",
    EventType.RETURNED_TO_BOT: "returned to the bot",
    EventType.OPERATOR_REPLY: "answered",
}


def expire_drafts(session: Session, conversation_id: int, keep: int | None = None) -> None:
    """The conversation's open drafts (but `keep`, the one being sent) die: their question is settled."""
    drafts = session.execute(
        select(Handoff).where(Handoff.conversation_id == conversation_id).where(Handoff.status == Draft.OPEN)
    )
    for handoff in drafts.scalars():
        if handoff.id != keep:
            handoff.status = settle_draft(handoff.status, Draft.EXPIRED)


def unsendable(session: Session, handoff_id: int) -> str | None:
    """Why the draft can no longer be sent, as the operator is told; None while it is open."""
    handoff = session.get(Handoff, handoff_id)
    if handoff is None or handoff.status == Draft.OPEN:
        return None
    if handoff.status != Draft.EXPIRED:
        return f"the draft was already {handoff.status}"
    settled = session.execute(  # the first event after the draft that settled its question
        select(Event.type)
        .where(Event.conversation_id == handoff.conversation_id)
        .where(col(Event.type).in_(_SETTLED_BY))
        .where(col(Event.created_at) >= handoff.created_at)
        .order_by(col(Event.id))
        .limit(1)
    ).scalar()
    why = _SETTLED_BY.get(EventType(settled), "settled") if settled else "settled"
    return f"the draft expired when the conversation was {why}: reply in your own words if needed"
