"""What the desk learns from operators: their answers to handed-off questions (Teach the bot, and the case a
resolution stores) and the messages they mark "always a person"."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from sqlalchemy import func, or_
from sqlalchemy.orm import Session
from sqlmodel import col, select

from bot.brain.intent import only_asks_for_a_person
from bot.delivery.journal import record_event
from bot.domain.types import ActionResult, Author, EventType, Reason
from bot.knowledge.index import KnowledgeIndex
from bot.storage.db import Transactions
from bot.storage.models import Event, Handoff, Message
from bot.storage.reads import last_message, load

if TYPE_CHECKING:  # only the type: without an LLM, langchain is never imported
    from bot.brain.triage.examples import TriageExamples

log = logging.getLogger(__name__)

_LOOK_BACK = 20  # customer messages searched for the question behind a bare request for a person
_QUOTED = 80  # characters of a question or reply quoted back to the operator

Case = tuple[str, str, str, str]  # (case_id, question, answer, language)


@dataclass(frozen=True)
class Learned:
    """An operator's answer to the last handed-off question, as a case the bot may learn."""

    case: Case
    reply_id: int | None
    taught: bool  # an operator approved this very answer for automatic use already


class Teaching:
    def __init__(
        self, transactions: Transactions, index: KnowledgeIndex | None, examples: TriageExamples | None
    ) -> None:
        self._transactions = transactions
        self._index = index
        self._examples = examples  # escalation examples, which "always a person" adds to

    async def remember(self, learned: Learned | None) -> None:
        """After a resolution: the case is stored, reusable only if it was taught."""
        if learned is None or self._index is None:
            return
        try:
            await self._index.add_case(*learned.case, reusable=learned.taught)
        except Exception:  # learning is a bonus; a failed write must not undo the resolution
            log.exception("operators: could not store the resolved case")

    async def teach(self, conversation_id: int, operator: str) -> ActionResult:
        """The operator approves their answer for automatic use: the bot may now send it on its own."""
        if self._index is None:
            return ActionResult(False, "there is no knowledge index to teach", conversation_id)
        found = await self._transactions.run(partial(_learnable, conversation_id))
        if isinstance(found, ActionResult):
            return found
        if found is None:
            return ActionResult(
                False, "nothing to teach: no operator answer to the last handed-off question", conversation_id
            )
        _, question, answer, _ = found.case
        taught = f"{_quote(answer)} to questions like {_quote(question)}"
        if found.taught:
            return ActionResult(
                False, f"nothing new to teach: the bot already knows this answer ({taught})", conversation_id
            )
        # Stored before the event is written: a failed write leaves nothing claiming it was taught.
        try:
            await self._index.add_case(*found.case, reusable=True)
        except Exception:
            log.exception("operators: could not store the taught case")
            return ActionResult(False, "the knowledge index could not be updated; try again", conversation_id)
        case_id, reply_id = found.case[0], found.reply_id
        await self._transactions.run(
            lambda session: record_event(
                session, conversation_id, EventType.TAUGHT, operator=operator, case=case_id, message_id=reply_id
            )
        )
        return ActionResult(True, f"taught: the bot may now send {taught}", conversation_id)

    async def always_a_person(self, conversation_id: int, operator: str, topic: str | None) -> ActionResult:
        """Messages like the conversation's handed-off question go to a person from now on, whatever the
        knowledge base says: an escalation example taught from the queue (bot.brain.triage.marked)."""
        if self._examples is None or not self._examples.learns:
            return ActionResult(
                False, "this desk matches no messages by meaning (a hashing embedder): nothing to mark", conversation_id
            )
        found = await self._transactions.run(partial(_question_of, conversation_id))
        if isinstance(found, ActionResult):
            return found
        if not found:
            return ActionResult(False, "there is no handed-off customer question to mark", conversation_id)
        try:
            chosen = await self._examples.mark(found, operator, topic)
        except KeyError:
            names = ", ".join(t.name for t in self._examples.topics())
            return ActionResult(False, f"no escalation topic {topic!r}; choose one of: {names}", conversation_id)
        except Exception:
            log.exception("operators: could not store the marked message")
            return ActionResult(False, "the escalation examples could not be updated; try again", conversation_id)
        shown = " ".join(found.split())[:120]
        if chosen is None:
            return ActionResult(False, f"messages like “{shown}” already go to a person", conversation_id)
        name = chosen.name
        await self._transactions.run(
            lambda session: record_event(session, conversation_id, EventType.MARKED, operator=operator, topic=name)
        )
        return ActionResult(
            True, f"always a person: messages like “{shown}” now go to operators as “{chosen.label}”", conversation_id
        )


def learned_case(session: Session, conversation_id: int, language: str) -> Learned | None:
    """The last handed-off question (`handed_off`) and the operator's last answer to it (given after it): a
    case to learn from, and whether an operator taught it already."""
    found = handed_off(session, conversation_id)
    reply = last_message(session, conversation_id, Author.OPERATOR)
    if found is None or reply is None or reply.created_at < found[0].created_at:
        return None  # an answer written before the question was handed off does not answer it
    handoff, question = found
    if Reason.COMPENSATION in handoff.reasons:
        return None  # an offer for one customer's order (its promo code) is no answer for anyone else
    case = (str(handoff.id), question, reply.text, language)
    return Learned(case, reply.id, _taught(session, conversation_id, case, reply.id))


def _learnable(conversation_id: int, session: Session) -> Learned | ActionResult | None:
    found = load(session, conversation_id)
    if isinstance(found, ActionResult):
        return found
    return learned_case(session, conversation_id, found[1].language)


def _question_of(conversation_id: int, session: Session) -> str | ActionResult:
    """The handed-off question ('' when there is none)."""
    if isinstance(refused := load(session, conversation_id), ActionResult):
        return refused
    found = handed_off(session, conversation_id)
    return found[1] if found else ""


def handed_off(session: Session, conversation_id: int) -> tuple[Handoff, str] | None:
    """The conversation's last handoff and the question behind it.

    When the handed-off message only asks for a person ("/human" from the Talk to a person button, "I want
    to talk to a person"), the question is the customer's last real message before it since the
    conversation's previous resolution; with none, there is no question."""
    latest = select(Handoff).where(Handoff.conversation_id == conversation_id).order_by(col(Handoff.id).desc())
    handoff = session.execute(latest.limit(1)).scalars().first()
    if handoff is None or not handoff.question:
        return None
    question: str | None = handoff.question
    if only_asks_for_a_person(handoff.question):
        question = _asked_before(session, handoff)
    return (handoff, question) if question else None


def _asked_before(session: Session, handoff: Handoff) -> str | None:
    """The customer's last message before `handoff` that is more than a request for a person, since the
    conversation's last resolution before it (what was said before that was closed)."""
    resolved = (
        select(func.max(Event.created_at))
        .where(Event.conversation_id == handoff.conversation_id)
        .where(Event.type == EventType.RESOLVED)
        .where(col(Event.created_at) < handoff.created_at)
        .scalar_subquery()
    )
    earlier = session.execute(
        select(Message.text)
        .where(Message.conversation_id == handoff.conversation_id)
        .where(Message.author == Author.CUSTOMER)
        .where(col(Message.created_at) < handoff.created_at)
        .where(or_(resolved.is_(None), col(Message.created_at) > resolved))
        .order_by(col(Message.id).desc())
        .limit(_LOOK_BACK)
    ).scalars()
    return next((t.strip() for t in earlier if t.strip() and not only_asks_for_a_person(t)), None)


def _taught(session: Session, conversation_id: int, case: Case, reply_id: int | None) -> bool:
    """Whether an operator taught this very answer (this handoff, this message) to the bot."""
    events = session.execute(
        select(Event).where(Event.conversation_id == conversation_id).where(Event.type == EventType.TAUGHT)
    ).scalars()
    return any((e.data or {}).get("case") == case[0] and (e.data or {}).get("message_id") == reply_id for e in events)


def _quote(text: str) -> str:
    """A question or reply as the operator is shown it: one line, quoted, cut to `_QUOTED` characters."""
    line = " ".join(text.split())
    return f"“{line if len(line) <= _QUOTED else line[: _QUOTED - 1].rstrip() + '…'}”"
