"""The desk: one customer message in, a decision out, every delivery through the outbox.

A conversation is a small state machine (bot → waiting_operator → operator → resolved, and
operator → bot on "return to bot"); while an operator owns it the bot never answers by itself.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col, select
from sqlmodel.sql.expression import SelectOfScalar

from bot.analyzer import Analyzer
from bot.domain import Analysis, Answer, Author, Decision, Inbound, Reason, State, spent
from bot.hours import BusinessHours
from bot.journal import record_event, send_to_customer
from bot.outbox import Outbox, enqueue
from bot.pilot import Cohort
from bot.policy import HandoffPolicy
from bot.ports import Responder
from bot.storage.db import Transactions
from bot.storage.models import Conversation, Customer, Handoff, Message, utcnow
from bot.texts import Texts

log = logging.getLogger(__name__)

MAX_TEXT = 20_000  # longer messages are stored cut; nobody types more in one message
HISTORY = 12
OWNED = (State.WAITING_OPERATOR, State.OPERATOR)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Control characters and lone surrogates out (they break storage and channels), length capped."""
    return _CONTROL.sub("", text)[:MAX_TEXT].strip()


@dataclass(frozen=True)
class Context:
    """What the desk knows before it writes: duplicate?, who owns the conversation, the recent turns."""

    duplicate: bool
    state: State | None
    history: list[tuple[str, str]]
    repeats_by_topic: dict[str, int]


class Desk:
    def __init__(
        self,
        transactions: Transactions,
        analyzer: Analyzer,
        responder: Responder,
        policy: HandoffPolicy,
        texts: Texts,
        outbox: Outbox,
        queue_channel: str,
        hours: BusinessHours | None = None,
    ) -> None:
        self._transactions = transactions
        self._analyzer = analyzer
        self._responder = responder
        self._policy = policy
        self._texts = texts
        self._outbox = outbox
        self.queue_channel = queue_channel
        self._hours = hours  # None: always open
        self.clock: Callable[[], datetime] = utcnow  # what "now" is for business hours (tests set it)
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()
        self.observers: list[Callable[[Decision, float], None]] = []  # e.g. live metrics: (decision, seconds)

    def _lock(self, channel: str, chat_id: str) -> asyncio.Lock:
        lock = self._locks.get((channel, chat_id))
        if lock is None:
            lock = self._locks[(channel, chat_id)] = asyncio.Lock()
        return lock

    # -- customer messages ------------------------------------------------------------------------

    async def receive(self, inbound: Inbound) -> Decision:
        started, arrived = time.perf_counter(), utcnow()  # arrival, not storage, starts the response clock
        text = clean_text(inbound.text)
        async with self._lock(inbound.channel, inbound.chat_id):
            context = await self._transactions.run(partial(_context, inbound))
            if context.duplicate:
                return Decision("duplicate", conversation_id=0)
            analysis: Analysis | None = None
            answer: Answer | None = None
            if context.state not in OWNED and text:
                analysis = await self._analyzer.analyse(text, inbound.language_hint)
                if inbound.kind == "text":
                    answer = await self._respond(text, analysis, context.history)
            try:
                record = partial(self._record, inbound, text, analysis, answer, context, arrived, started)
                decision = await self._transactions.run(record)
            except IntegrityError:  # the same message arrived twice at once: the other copy won
                return Decision("duplicate", conversation_id=0)
        self._outbox.wake()
        for observe in self.observers:
            observe(decision, time.perf_counter() - started)
        return decision

    async def preview(self, text: str, language_hint: str = "") -> Decision:
        """What the desk would do with a first message, storing nothing (ask, eval, tune)."""
        text = clean_text(text)
        analysis = await self._analyzer.analyse(text, language_hint)
        answer = await self._respond(text, analysis, [])
        reasons = self._policy.reasons(analysis, answer, 0)
        return Decision("handoff" if reasons else "answer", 0, analysis, answer, reasons)

    async def _respond(self, text: str, analysis: Analysis, history: list[tuple[str, str]]) -> Answer:
        try:
            return await self._responder.respond(text, analysis, history)
        except Exception as exc:  # a brain's failure becomes a handoff, never an error for the customer
            log.exception("desk: responder failed")
            return Answer(text="", confidence=0.0, needs_human=True, reason=f"responder failed: {type(exc).__name__}")

    def _record(
        self,
        inbound: Inbound,
        text: str,
        analysis: Analysis | None,
        answer: Answer | None,
        context: Context,
        arrived: datetime,
        started: float,
        session: Session,
    ) -> Decision:
        customer, first_contact = _customer(session, inbound, analysis)
        # The customer row is locked now; re-read the conversation under that lock (unless there can be none).
        latest = (
            None
            if first_contact
            else session.execute(latest_conversation(inbound.channel, inbound.chat_id)).scalars().first()
        )
        conversation = latest or Conversation(customer_id=customer.id or 0, created_at=arrived)
        if latest is None:
            session.add(conversation)
        elif conversation.state == State.RESOLVED:
            conversation.state = State.BOT
            conversation.operator = None
            record_event(session, conversation, "reopened")
        conversation.updated_at = utcnow()
        if analysis is not None:
            conversation.topic = analysis.topic or conversation.topic
            conversation.priority = analysis.priority
        owned = conversation.state in OWNED
        ignored = not owned and not text and inbound.kind == "text"
        reasons: tuple[Reason, ...] = ()
        cohort = self._policy.cohort(inbound.channel, inbound.chat_id)
        if not owned and not ignored:
            repeats = context.repeats_by_topic.get(analysis.topic or "", 0) if analysis else 0
            reasons = self._reasons(inbound, analysis, answer, repeats, cohort)
            if reasons:  # set before the flush: the row is written once, not inserted and then updated
                conversation.state = State.WAITING_OPERATOR
        session.flush()
        assert conversation.id is not None
        message = Message(
            conversation_id=conversation.id,
            author=Author.CUSTOMER,
            channel=inbound.channel,
            external_id=inbound.message_id,
            kind=inbound.kind,
            text=text,
            meta=_message_meta(inbound, analysis),
            created_at=arrived,
        )
        session.add(message)
        record_event(session, conversation, "message_in", at=arrived, kind=inbound.kind)
        if owned:
            enqueue(
                session,
                self.queue_channel,
                "customer_message",
                {
                    "conversation_id": conversation.id,
                    "thread": conversation.queue_thread,
                    "text": text,
                    "kind": inbound.kind,
                    "attachments": message.meta.get("attachments", []),
                    "customer": customer.name,
                },
                conversation.id,
            )
            return Decision("forwarded", conversation.id, analysis)
        if ignored:
            return Decision("ignored", conversation.id)
        if reasons:
            handoff = self._hand_off(
                session,
                customer,
                conversation,
                text,
                analysis,
                answer,
                reasons,
                inbound.kind,
                cohort,
                latest is None,
            )
            return Decision("handoff", conversation.id, analysis, answer, reasons, handoff.id)
        assert analysis is not None and answer is not None
        self._answer(session, customer, conversation, analysis, answer, started, cohort)
        return Decision("answer", conversation.id, analysis, answer)

    def _reasons(
        self, inbound: Inbound, analysis: Analysis | None, answer: Answer | None, repeats: int, cohort: Cohort
    ) -> tuple[Reason, ...]:
        if inbound.kind != "text" or analysis is None or answer is None:
            return (Reason.NOT_TEXT,)
        return self._policy.reasons(analysis, answer, repeats, cohort)

    def _answer(
        self,
        session: Session,
        customer: Customer,
        conversation: Conversation,
        analysis: Analysis,
        answer: Answer,
        started: float,
        cohort: Cohort,
    ) -> None:
        assert conversation.id is not None
        # A reply without sources (e.g. "what's your order number?") asks rather than answers: not a repeat.
        topic = analysis.topic if answer.sources else None
        meta = {"topic": topic, "confidence": round(answer.confidence, 4), "sources": list(answer.sources)}
        session.add(
            Message(
                conversation_id=conversation.id,
                author=Author.BOT,
                channel=customer.channel,
                text=answer.text,
                meta=meta,
            )
        )
        send_to_customer(session, customer, conversation, answer.text, buttons="feedback", sources=list(answer.sources))
        record_event(
            session,
            conversation,
            "bot_answer",
            topic=analysis.topic,
            confidence=answer.confidence,
            language=analysis.language,
            sentiment=analysis.sentiment,
            ms=round((time.perf_counter() - started) * 1000, 2),
            cohort=str(cohort),  # the report compares the pilot with copilot by each conversation's first decision
            **spent(analysis, answer),  # LLM tokens of this message, for the report's ROI
        )

    def _hand_off(
        self,
        session: Session,
        customer: Customer,
        conversation: Conversation,
        text: str,
        analysis: Analysis | None,
        answer: Answer | None,
        reasons: tuple[Reason, ...],
        kind: str,
        cohort: Cohort,
        new_conversation: bool,
    ) -> Handoff:
        assert conversation.id is not None
        language = analysis.language if analysis else (customer.language or self._texts.default_language)
        handoff = Handoff(
            conversation_id=conversation.id,
            question=text,
            topic=analysis.topic if analysis else None,
            sentiment=analysis.sentiment if analysis else "neutral",
            priority=analysis.priority if analysis else "normal",
            reasons=[str(r) for r in reasons],
            draft=answer.text if answer else "",
            sources=list(answer.sources) if answer else [],
        )
        last = [(str(Author.CUSTOMER), text)] if new_conversation else _recent(session, conversation)
        handoff.summary = (answer.summary if answer else "") or summarize(last, analysis, kind)
        session.add(handoff)
        session.flush()
        enqueue(
            session,
            self.queue_channel,
            "handoff",
            {
                "handoff_id": handoff.id,
                "conversation_id": conversation.id,
                "customer": customer.name,
                "channel": customer.channel,
                "language": language,
                "topic": handoff.topic,
                "confidence": round(answer.confidence, 4) if answer else 0.0,
                "sentiment": handoff.sentiment,
                "priority": handoff.priority,
                "reasons": handoff.reasons,
                "summary": handoff.summary,
                "draft": handoff.draft,
                "sources": handoff.sources,
                "actions": list(answer.actions) if answer else [],  # e.g. a compensation awaiting Send
                "last_messages": last,
            },
            conversation.id,
        )
        # Outside business hours the customer hears when operators are back, not "shortly"; a responder's
        # own notice (e.g. "can't check the order now") still wins, since it says what went wrong.
        offline = self._hours.notice(self._texts, language, self.clock()) if self._hours else None
        if answer and answer.notice:
            notice = answer.notice
        elif offline:
            notice = offline
        elif kind != "text":
            notice = self._texts.render("not_text", language, kind=kind)
        else:
            notice = self._texts.render("handoff", language)
        send_to_customer(session, customer, conversation, notice, language=language)
        record_event(
            session,
            conversation,
            "handoff",
            reasons=handoff.reasons,
            topic=handoff.topic,
            sentiment=handoff.sentiment,
            priority=handoff.priority,
            cohort=str(cohort),
            **spent(analysis, answer),  # LLM tokens of this message, for the report's ROI
        )
        return handoff


def _context(inbound: Inbound, session: Session) -> Context:
    # One statement for a first message: a message id already stored belongs to this chat's conversation.
    seen = (
        select(Message.id)
        .where(Message.channel == inbound.channel)
        .where(Message.external_id == inbound.message_id)
        .exists()
    )
    query = latest_conversation(inbound.channel, inbound.chat_id).add_columns(seen.label("seen"))
    latest = session.execute(query).first()
    if latest is None:
        return Context(False, None, [], {})
    conversation, duplicate = latest
    if duplicate:
        return Context(True, None, [], {})
    query = select(Message).where(Message.conversation_id == conversation.id).order_by(col(Message.id).desc())
    rows = session.execute(query.limit(HISTORY)).scalars().all()
    since = conversation.resolved_at
    repeats: dict[str, int] = {}
    for message in rows:
        if since is not None and message.created_at <= since:
            break
        if message.author == Author.BOT and message.meta.get("topic"):
            repeats[message.meta["topic"]] = repeats.get(message.meta["topic"], 0) + 1
    history = [(m.author, m.text) for m in reversed(rows) if m.author != Author.NOTE]
    return Context(False, State(conversation.state), history, repeats)


def _customer(session: Session, inbound: Inbound, analysis: Analysis | None) -> tuple[Customer, bool]:
    """The customer, locked for this transaction, and whether they write for the first time."""
    query = select(Customer).where(Customer.channel == inbound.channel).where(Customer.chat_id == inbound.chat_id)
    customer = session.execute(query.with_for_update()).scalars().first()
    first_contact = customer is None
    if customer is None:
        customer = Customer(
            channel=inbound.channel,
            chat_id=inbound.chat_id,
            name=inbound.name,
            language=analysis.language if analysis else "",
        )
        session.add(customer)
        session.flush()
    customer.blocked = False  # they wrote to us, so they can be written to
    if inbound.name:
        customer.name = inbound.name
    if analysis is not None:
        customer.language = analysis.language
    return customer, first_contact


def latest_conversation(channel: str, chat_id: str) -> SelectOfScalar[Conversation]:
    """The query for a chat's newest conversation (a customer's conversations follow one another)."""
    return (
        select(Conversation)
        .join(Customer)
        .where(Customer.channel == channel)
        .where(Customer.chat_id == chat_id)
        .order_by(col(Conversation.id).desc())
        .limit(1)
    )


def _recent(session: Session, conversation: Conversation) -> list[tuple[str, str]]:
    """The last few turns since the conversation's last resolution (what came before is closed)."""
    query = (
        select(Message.author, Message.text)
        .where(Message.conversation_id == conversation.id)
        .where(Message.author != Author.NOTE)
    )
    if conversation.resolved_at is not None:
        query = query.where(Message.created_at > conversation.resolved_at)
    history = session.execute(query.order_by(col(Message.id).desc()).limit(6)).all()
    return [(str(a), str(t)) for a, t in reversed(history)]


def _message_meta(inbound: Inbound, analysis: Analysis | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if inbound.attachments:
        meta["attachments"] = [vars(a) for a in inbound.attachments]
    if analysis is not None:
        meta.update(
            language=analysis.language,
            sentiment=analysis.sentiment,
            sentiment_score=round(analysis.sentiment_score, 3),
            topic_guess=analysis.topic,
        )
    return meta


def summarize(last: list[tuple[str, str]], analysis: Analysis | None, kind: str) -> str:
    """One paragraph for the operator card, built from the conversation (the LLM brain writes its own)."""
    asked = [t for a, t in last if a == Author.CUSTOMER and t]
    about = analysis.matches[0].title if analysis and analysis.matches else "an unknown topic"
    mood = f"{analysis.sentiment} mood" if analysis else "no text"
    lead = f"Customer ({mood}) wrote about {about}"
    if kind != "text":
        lead += f" and sent a {kind}"
    quote = " / ".join(t if len(t) <= 160 else t[:157] + "…" for t in asked[-3:])
    return f"{lead}: «{quote}»" if quote else lead + "."
