"""What a connector renders, read from the database: conversations, their drafts, their cards, the queue's size.

The read model of the desk for its consoles and channels: each read is one short transaction and returns a
frozen view, never a database row, so a connector cannot write through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy.orm import Session
from sqlmodel import col, func, select

from bot.domain.deliveries import DeliveryKind, HandoffCard, read
from bot.domain.lifecycle import Draft
from bot.domain.types import Author, State
from bot.storage.db import Transactions
from bot.storage.models import Conversation, Customer, Delivery, Handoff, Message


@dataclass(frozen=True)
class ConversationView:
    id: int
    state: State
    operator: str | None  # who owns it, when someone does
    thread: str | None  # the operator console's reference to its thread, once its card is posted
    customer: str  # the customer's name ("" when unknown)
    language: str  # the customer's language


@dataclass(frozen=True)
class DraftView:
    """A handoff's draft: the AI's suggested reply and whether it may still be sent."""

    handoff_id: int
    conversation_id: int
    text: str
    status: Draft


@dataclass(frozen=True)
class CardState:
    """Where the conversation stands, as its card shows it."""

    state: str = State.WAITING_OPERATOR
    operator: str | None = None
    first_response_s: float | None = None  # from the latest handoff to the first operator reply after it


@dataclass(frozen=True)
class QueueCounts:
    waiting: int  # for a person
    handled: int  # owned by an operator


class Conversations:
    def __init__(self, transactions: Transactions) -> None:
        self._transactions = transactions

    async def get(self, conversation_id: int) -> ConversationView | None:
        return await self._transactions.run(partial(_view, conversation_id))

    async def by_thread(self, thread: str) -> ConversationView | None:
        """The conversation whose card is in the console's `thread`."""

        def work(session: Session) -> ConversationView | None:
            query = select(Conversation.id).where(Conversation.queue_thread == thread).limit(1)
            found = session.execute(query).scalar()
            return _view(found, session) if found is not None else None

        return await self._transactions.run(work)

    async def latest_of_chat(self, channel: str, chat_id: str) -> ConversationView | None:
        """A chat's newest conversation (a customer's conversations follow one another)."""

        def work(session: Session) -> ConversationView | None:
            query = (
                select(Conversation.id)
                .join(Customer)
                .where(Customer.channel == channel)
                .where(Customer.chat_id == chat_id)
                .order_by(col(Conversation.id).desc())
                .limit(1)
            )
            found = session.execute(query).scalar()
            return _view(found, session) if found is not None else None

        return await self._transactions.run(work)

    async def of_chat(self, conversation_id: int, channel: str, chat_id: str) -> bool:
        """Whether the conversation is this chat's (a customer's button names one: it must be their own)."""

        def work(session: Session) -> bool:
            query = (
                select(Conversation.id)
                .join(Customer)
                .where(Conversation.id == conversation_id)
                .where(Customer.channel == channel)
                .where(Customer.chat_id == chat_id)
            )
            return session.execute(query).first() is not None

        return await self._transactions.run(work)

    async def thread(self, conversation_id: int | None = None, handoff_id: int | None = None) -> str | None:
        """The thread of the conversation (or of the handoff's): what an operator's right to act is checked on."""

        def work(session: Session) -> str | None:
            handoff = session.get(Handoff, handoff_id) if handoff_id is not None else None
            owner = handoff.conversation_id if handoff is not None else conversation_id
            conversation = session.get(Conversation, owner) if owner is not None else None
            return conversation.queue_thread if conversation is not None else None

        return await self._transactions.run(work)

    async def draft(self, handoff_id: int) -> DraftView | None:
        return await self._transactions.run(lambda session: _draft(session.get(Handoff, handoff_id)))

    async def latest_draft(self, conversation_id: int) -> DraftView | None:
        """The conversation's newest draft, whatever became of it (a used one is refused with the reason)."""

        def work(session: Session) -> DraftView | None:
            query = (
                select(Handoff)
                .where(Handoff.conversation_id == conversation_id)
                .order_by(col(Handoff.id).desc())
                .limit(1)
            )
            return _draft(session.execute(query).scalars().first())

        return await self._transactions.run(work)

    async def card(self, conversation_id: int) -> HandoffCard | None:
        """The card of the conversation's latest handoff, as it was queued; None before any."""

        def work(session: Session) -> HandoffCard | None:
            query = (
                select(Delivery.payload)
                .where(Delivery.conversation_id == conversation_id)
                .where(Delivery.kind == DeliveryKind.HANDOFF)
                .order_by(col(Delivery.id).desc())
                .limit(1)
            )
            payload = session.execute(query).scalar()
            return read(payload, HandoffCard) if payload is not None else None

        return await self._transactions.run(work)

    async def card_state(self, conversation_id: int) -> CardState:
        return await self._transactions.run(partial(card_state, conversation_id))

    async def recent_messages(self, conversation_id: int, limit: int) -> list[tuple[str, str]]:
        """(author, text) of the conversation's last `limit` messages, oldest first."""

        def work(session: Session) -> list[tuple[str, str]]:
            query = (
                select(Message.author, Message.text)
                .where(Message.conversation_id == conversation_id)
                .order_by(col(Message.id).desc())
                .limit(limit)
            )
            return [(str(author), str(text)) for author, text in reversed(session.execute(query).all())]

        return await self._transactions.run(work)

    async def queue_counts(self) -> QueueCounts:
        def work(session: Session) -> QueueCounts:
            query = (
                select(Conversation.state, func.count())
                .where(col(Conversation.state).in_([State.WAITING_OPERATOR, State.OPERATOR]))
                .group_by(Conversation.state)
            )
            counts = {str(state): int(n) for state, n in session.execute(query).all()}
            return QueueCounts(counts.get(State.WAITING_OPERATOR, 0), counts.get(State.OPERATOR, 0))

        return await self._transactions.run(work)


def latest_handoff_at(session: Session, conversation_id: int) -> datetime | None:
    """When the conversation was last handed to people: its first response time counts from there."""
    query = (
        select(Handoff.created_at)
        .where(Handoff.conversation_id == conversation_id)
        .order_by(col(Handoff.id).desc())
        .limit(1)
    )
    return session.execute(query).scalar()


def first_replies(session: Session, conversation_id: int, since: datetime) -> list[datetime]:
    """When operators answered since `since` (at most two: the first, and whether there were more)."""
    query = (
        select(Message.created_at)
        .where(Message.conversation_id == conversation_id)
        .where(Message.author == Author.OPERATOR)
        .where(col(Message.created_at) >= since)
        .order_by(col(Message.id))
        .limit(2)
    )
    return list(session.execute(query).scalars())


def card_state(conversation_id: int, session: Session) -> CardState:
    """State, owner and first response time (latest handoff → first operator message after it)."""
    conversation = session.get(Conversation, conversation_id)
    if conversation is None:
        return CardState()
    handoff_at = latest_handoff_at(session, conversation_id)
    replies = first_replies(session, conversation_id, handoff_at) if handoff_at is not None else []
    seconds = (replies[0] - handoff_at).total_seconds() if replies and handoff_at is not None else None
    return CardState(conversation.state, conversation.operator, seconds)


def _view(conversation_id: int, session: Session) -> ConversationView | None:
    conversation = session.get(Conversation, conversation_id)
    if conversation is None or conversation.id is None:
        return None
    customer = session.get(Customer, conversation.customer_id)
    return ConversationView(
        id=conversation.id,
        state=State(conversation.state),
        operator=conversation.operator,
        thread=conversation.queue_thread,
        customer=(customer.name or "") if customer else "",
        language=customer.language if customer else "",
    )


def _draft(handoff: Handoff | None) -> DraftView | None:
    if handoff is None or handoff.id is None:
        return None
    return DraftView(handoff.id, handoff.conversation_id, handoff.draft, Draft(handoff.status))
