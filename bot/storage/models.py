"""Tables. Times are timezone-aware UTC (SQLModel stores and returns them as UTC on every engine)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Dialect, Index, String, Table, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from bot.domain.lifecycle import Draft
from bot.domain.types import State


def utcnow() -> datetime:
    return datetime.now(UTC)


def table(model: type[SQLModel]) -> Table:
    """A model's table, for plain statements where ORM objects cost too much (the desk's per-message writes)."""
    found: Table = model.__table__  # type: ignore[attr-defined]
    return found


class EnumText(TypeDecorator[StrEnum]):
    """A closed set of states stored as its text (the column stays VARCHAR: no migration), read back as the
    enum; writing a value outside the set fails before it reaches the database."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[StrEnum], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(self.enum(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


def _json(empty: type[dict[str, Any]] | type[list[Any]] = dict) -> Any:
    # The column default too: plain inserts (the desk's, bot.delivery.journal's) do not build models.
    return Field(default_factory=empty, sa_column=Column(JSON, nullable=False, default=empty))


class Customer(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "chat_id"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    chat_id: str = Field(max_length=128)
    name: str = Field(default="", max_length=256)
    language: str = Field(default="", max_length=8)
    blocked: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class Conversation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    customer_id: int = Field(foreign_key="customer.id", index=True)
    state: State = Field(default=State.BOT, sa_type=EnumText(State, 32), index=True)
    topic: str | None = Field(default=None, max_length=128)
    priority: str = Field(default="normal", max_length=16)
    operator: str | None = Field(default=None, max_length=128)
    queue_thread: str | None = Field(default=None, max_length=128)  # the operator queue's thread ref
    created_at: datetime = Field(default_factory=utcnow, index=True)
    updated_at: datetime = Field(default_factory=utcnow)
    resolved_at: datetime | None = None


class Message(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    author: str = Field(max_length=16)
    channel: str = Field(max_length=32)
    external_id: str | None = Field(default=None, max_length=128)  # inbound id: idempotency key
    kind: str = Field(default="text", max_length=32)
    text: str = ""
    operator: str | None = Field(default=None, max_length=128)
    meta: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow)


class Handoff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    status: Draft = Field(default=Draft.OPEN, sa_type=EnumText(Draft, 16))
    question: str = ""  # the customer message that was handed off
    topic: str | None = Field(default=None, max_length=128)
    sentiment: str = Field(default="neutral", max_length=16)
    priority: str = Field(default="normal", max_length=16)
    reasons: list[str] = _json(list)
    summary: str = ""
    draft: str = ""
    sources: list[str] = _json(list)
    created_at: datetime = Field(default_factory=utcnow)


class Feedback(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    kind: str = Field(max_length=16)  # helpful | not_helpful | thanks (thanked the bot after an answer) | csat
    value: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Append-only log the analytics are computed from."""

    __table_args__ = (Index("ix_event_type_created", "type", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    type: str = Field(max_length=48)
    operator: str | None = Field(default=None, max_length=128)
    data: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow)


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its channel (claimed by a worker while its lease lasts)
    SENT = "sent"
    PARKED = "parked"  # gave up after outbox.max_attempts while the channel failed: sent when it answers again
    DEAD = "dead"  # the channel refused it for good (e.g. the customer blocked the bot)


STUCK = (DeliveryStatus.PARKED, DeliveryStatus.DEAD)  # rows no worker sends any more on its own


class Delivery(SQLModel, table=True):
    """The outbox: every message to a customer or to the operator queue, until it is delivered."""

    __table_args__ = (Index("ix_delivery_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    channel: str = Field(max_length=32)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = _json()
    dedup_key: str | None = Field(default=None, max_length=128, unique=True)
    status: DeliveryStatus = Field(default=DeliveryStatus.PENDING, sa_type=EnumText(DeliveryStatus, 16))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    last_error: str = ""
    ref: str | None = Field(default=None, max_length=128)  # what the channel calls it (e.g. a Slack ts)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
