"""Writes that go with every state change, in the same transaction: the event log and customer deliveries.

Plain inserts on a synchronous session (an async caller passes them to `AsyncSession.run_sync`): they run
for every message, and an ORM object per row cost more than SQLite's own work (bench/latency.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session

from bot.delivery.outbox import enqueue
from bot.domain.deliveries import Buttons, CustomerText, DeliveryKind
from bot.domain.types import EventType
from bot.storage.db import insert_row
from bot.storage.models import Event, table, utcnow

_NEW_EVENT = insert(table(Event))


class Recipient(Protocol):
    """Whom a message goes to: a stored customer (or the desk's row of one)."""

    @property
    def channel(self) -> str: ...
    @property
    def chat_id(self) -> str: ...
    @property
    def language(self) -> str: ...


def record_event(
    session: Session,
    conversation_id: int | None,
    type_: EventType,
    operator: str | None = None,
    at: datetime | None = None,
    **data: Any,
) -> int:
    """Append to the event log; `at` when it happened earlier than now (a message's arrival). The event's id."""
    row = {"conversation_id": conversation_id, "type": str(type_), "operator": operator, "data": data}
    return insert_row(session, _NEW_EVENT, {**row, "created_at": at or utcnow()})


def send_to_customer(
    session: Session,
    customer: Recipient,
    conversation_id: int | None,
    text: str,
    buttons: Buttons = Buttons.NONE,
    language: str = "",
    dedup_key: str | None = None,
    operator: str | None = None,
    sources: list[str] | None = None,
) -> None:
    """Queue a message to the customer on their own channel, with a keyboard under it when `buttons` says."""
    payload = CustomerText(
        chat_id=customer.chat_id,
        text=text,
        buttons=buttons,
        language=language or customer.language,
        operator=operator,
        sources=sources or [],
    )
    enqueue(session, customer.channel, DeliveryKind.TEXT, payload, conversation_id, dedup_key)
