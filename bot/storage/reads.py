"""Rows an operator action reads first, in its own transaction."""

from __future__ import annotations

from sqlalchemy.orm import Session
from sqlmodel import col, select

from bot.domain.types import ActionResult, Author
from bot.storage.models import Conversation, Customer, Message


def locked_conversation(session: Session, conversation_id: int) -> Conversation | None:
    """The conversation, locked until the transaction ends (one action at a time per conversation)."""
    query = select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    return session.execute(query).scalars().first()


def last_message(session: Session, conversation_id: int, author: Author) -> Message | None:
    """The conversation's latest message by `author`."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .where(Message.author == author)
        .order_by(col(Message.id).desc())
        .limit(1)
    )
    return session.execute(query).scalars().first()


def load(session: Session, conversation_id: int) -> tuple[Conversation, Customer] | ActionResult:
    """The conversation, locked, and its customer; a refusal when there is no such conversation."""
    conversation = locked_conversation(session, conversation_id)
    if conversation is None:
        return ActionResult(False, f"no conversation {conversation_id}")
    customer = session.get(Customer, conversation.customer_id)
    assert customer is not None
    return conversation, customer
