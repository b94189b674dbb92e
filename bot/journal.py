"""Writes that go with every state change, in the same transaction: the event log and customer deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from bot.outbox import enqueue
from bot.storage.models import Conversation, Customer, Event, utcnow


def record_event(
    session: Session | AsyncSession,
    conversation: Conversation,
    type_: str,
    operator: str | None = None,
    at: datetime | None = None,
    **data: Any,
) -> None:
    """Append to the event log; `at` when it happened earlier than now (a message's arrival)."""
    session.add(
        Event(conversation_id=conversation.id, type=type_, operator=operator, data=data, created_at=at or utcnow())
    )


def send_to_customer(
    session: Session | AsyncSession,
    customer: Customer,
    conversation: Conversation,
    text: str,
    buttons: str = "",
    language: str = "",
    dedup_key: str | None = None,
    **extra: Any,
) -> None:
    """Queue a message to the customer on their own channel; `buttons` names a keyboard (feedback, csat)."""
    payload = {
        "chat_id": customer.chat_id,
        "text": text,
        "buttons": buttons,
        "language": language or customer.language,
        **extra,
    }
    enqueue(session, customer.channel, "text", payload, conversation.id, dedup_key)
