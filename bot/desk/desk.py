"""The desk: one customer message in, a decision out, every delivery through the outbox.

A conversation's state changes only through bot.domain.lifecycle's table; while an operator owns it the bot never
answers by itself.
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

from sqlalchemy import bindparam, func, insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col, select

from bot.brain.analyzer import Analyzer
from bot.brain.triage.smalltalk import SMALL_TALK_KINDS, SmallTalk
from bot.delivery.journal import record_event, send_to_customer
from bot.delivery.outbox import Outbox, enqueue
from bot.desk.hours import BusinessHours
from bot.desk.pilot import Cohort
from bot.desk.policy import HandoffPolicy
from bot.domain.deliveries import Buttons, CustomerMessage, DeliveryKind, HandoffCard
from bot.domain.lifecycle import Move, advance
from bot.domain.types import (
    Analysis,
    Answer,
    Author,
    Decision,
    EventType,
    FeedbackKind,
    Inbound,
    OrderFacts,
    Reason,
    State,
    spent,
)
from bot.orders.conversation import ask_once, continue_topic, with_orders
from bot.orders.status import OrderStatus
from bot.ports import Responder
from bot.prompts.texts import Texts
from bot.storage.db import Transactions, insert_row
from bot.storage.models import Conversation, Customer, Feedback, Handoff, Message, table, utcnow

log = logging.getLogger(__name__)

MAX_TEXT = 20_000  # longer messages are stored cut; nobody types more in one message
STALE_RETRIES = 2  # how often a message is decided again when another worker wrote to its chat meanwhile
HISTORY = 12
OWNED = (State.WAITING_OPERATOR, State.OPERATOR)
_CONFIRMS = (SmallTalk.THANKS, SmallTalk.PRAISE)  # small talk right after an answer that says it helped
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
    language: str = ""  # the conversation's, for a message with no language of its own ("10234", "👍")
    answered_last: bool = False  # the last message was the bot's answer: thanks now confirms it
    awaited_topic: str = ""  # the bot's last message asked for an order number under this topic
    orders: tuple[str, ...] = ()  # order numbers the customer gave since the conversation was last resolved
    seen: tuple[int, int] | None = None  # (conversation, its newest message) when read; None: no conversation


class StaleContext(Exception):
    """Another worker stored a message of this chat after the context was read: read it again."""


@dataclass(frozen=True)
class CustomerRow:
    """The customer as the desk writes to them (a bot.delivery.journal Recipient)."""

    id: int
    channel: str
    chat_id: str
    name: str
    language: str


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
        orders: OrderStatus | None = None,
        analysis_chars: int = 1000,
    ) -> None:
        self._transactions = transactions
        self._analyzer = analyzer
        self._responder = responder
        self._policy = policy
        self._texts = texts
        self._outbox = outbox
        self.queue_channel = queue_channel
        self._hours = hours  # None: always open
        self._orders = orders  # None: handoff cards carry no CRM status
        self._analysis_chars = analysis_chars  # the part of a message analysed and answered (all of it is stored)
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
            for attempt in range(STALE_RETRIES, -1, -1):
                context = await self._transactions.run(partial(_context, inbound))
                if context.duplicate:
                    return Decision("duplicate", conversation_id=0)
                analysis: Analysis | None = None
                answer: Answer | None = None
                order: OrderFacts | None = None
                if context.state not in OWNED and (text or inbound.kind in SMALL_TALK_KINDS):
                    hint = context.language or inbound.language_hint
                    read = text[: self._analysis_chars]
                    analysis = await self._analyzer.analyse(read, hint, inbound.kind)
                    if analysis.small_talk is not None:
                        answer = self._small_talk_answer(analysis)
                    elif inbound.kind == "text":
                        analysis = with_orders(analysis, context.orders)
                        analysis = continue_topic(analysis, context.awaited_topic, self._policy.unsure(analysis))
                        answer = ask_once(await self._respond(read, analysis, context.history), context.awaited_topic)
                        order = await self._order_for_card(inbound, analysis, answer, context)
                record = partial(
                    self._record, inbound, text, analysis, answer, order, context, arrived, started, attempt > 0
                )
                try:
                    decision = await self._transactions.run(record)
                    break
                except StaleContext:
                    continue
                except IntegrityError:  # the same message arrived twice at once (two workers): the other copy won
                    if (await self._transactions.run(partial(_context, inbound))).duplicate:
                        return Decision("duplicate", conversation_id=0)
                    raise  # not stored: the channel hears of the failure and sends it again
        self._outbox.wake()
        for observe in self.observers:
            observe(decision, time.perf_counter() - started)
        return decision

    async def preview(self, text: str, language_hint: str = "") -> Decision:
        """What the desk would do with a first message, storing nothing (ask, eval, tune)."""
        text = clean_text(text)
        analysis = await self._analyzer.analyse(text, language_hint)
        if analysis.small_talk is not None:
            return Decision("small_talk", 0, analysis, self._small_talk_answer(analysis))
        answer = await self._respond(text, analysis, [])
        reasons = self._policy.reasons(analysis, answer, 0)
        return Decision("handoff" if reasons else "answer", 0, analysis, answer, reasons)

    def _small_talk_answer(self, analysis: Analysis) -> Answer:
        assert analysis.small_talk is not None
        return Answer(self._texts.render(analysis.small_talk.text_name, analysis.language), 1.0)

    async def _order_for_card(
        self, inbound: Inbound, analysis: Analysis, answer: Answer, context: Context
    ) -> OrderFacts | None:
        """The CRM's word on the order the conversation mentions, for a message going to an operator."""
        if answer.order is not None or self._orders is None:
            return answer.order
        numbers = analysis.orders
        repeats = context.repeats_by_topic.get(analysis.topic or "", 0)
        cohort = self._policy.cohort(inbound.channel, inbound.chat_id)
        if not numbers or not self._policy.reasons(analysis, answer, repeats, cohort):
            return None  # nothing to show, or an answer, not a card: the CRM is not asked
        facts, _ = await self._orders.check(numbers[-1])
        return facts

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
        order: OrderFacts | None,
        context: Context,
        arrived: datetime,
        started: float,
        check_stale: bool,
        session: Session,
    ) -> Decision:
        # Plain statements (see the desk's statements below); each row is written once, with its final values.
        customer, first_contact = _customer(session, inbound, analysis)
        # The customer row is locked now, so one worker at a time writes to this chat: re-read the conversation
        # under that lock (unless there can be none), and decide again if another worker wrote to it meanwhile.
        chat = {"channel": inbound.channel, "chat_id": inbound.chat_id}
        latest = None if first_contact else session.execute(LATEST_CONVERSATION, chat).first()
        if check_stale and (None if latest is None else (latest.id, latest.newest)) != context.seen:
            raise StaleContext
        state = State(latest.state) if latest else State.BOT
        reopened = state == State.RESOLVED
        owned = state in OWNED
        ignored = not owned and not text and inbound.kind == "text"
        talk = None if owned or analysis is None or answer is None else analysis.small_talk
        reasons: tuple[Reason, ...] = ()
        cohort = self._policy.cohort(inbound.channel, inbound.chat_id)
        if not owned and not ignored and talk is None:
            repeats = context.repeats_by_topic.get(analysis.topic or "", 0) if analysis else 0
            reasons = self._reasons(inbound, analysis, answer, repeats, cohort)
        changes: dict[str, Any] = {"updated_at": utcnow()}
        if reopened:
            state = advance(state, Move.REOPEN)
            changes |= {"state": state, "operator": None}
        if reasons:
            changes["state"] = advance(state, Move.HAND_OFF)
        if analysis is not None:
            changes["priority"] = analysis.priority
            if analysis.topic:
                changes["topic"] = analysis.topic
        if latest is None:
            new = {"customer_id": customer.id, "created_at": arrived, **changes}
            conversation_id = insert_row(session, _NEW_CONVERSATION, new)
        else:
            conversation_id = latest.id
            session.execute(_UPDATE_CONVERSATION, {"row_id": conversation_id, **changes})
        if reopened:
            record_event(session, conversation_id, EventType.REOPENED)
        meta = _message_meta(inbound, analysis)
        message = {
            "conversation_id": conversation_id,
            "author": Author.CUSTOMER,
            "channel": inbound.channel,
            "external_id": inbound.message_id,
            "kind": inbound.kind,
            "text": text,
            "meta": meta,
            "created_at": arrived,
        }
        session.execute(_NEW_MESSAGE, message)
        record_event(session, conversation_id, EventType.MESSAGE_IN, at=arrived, kind=inbound.kind)
        if owned:
            assert latest is not None
            forwarded = CustomerMessage(
                conversation_id=conversation_id,
                thread=latest.queue_thread,
                text=text,
                kind=inbound.kind,
                attachments=meta.get("attachments", []),
                customer=customer.name,
            )
            enqueue(session, self.queue_channel, DeliveryKind.CUSTOMER_MESSAGE, forwarded, conversation_id)
            return Decision("forwarded", conversation_id, analysis)
        if ignored:
            return Decision("ignored", conversation_id)
        if talk is not None:
            assert analysis is not None and answer is not None
            self._small_talk(session, customer, conversation_id, analysis, answer, context.answered_last)
            return Decision("small_talk", conversation_id, analysis, answer)
        if reasons:
            last = (
                [(str(Author.CUSTOMER), text)]
                if latest is None
                else _recent(session, conversation_id, latest.resolved_at)
            )
            handoff_id = self._hand_off(
                session, customer, conversation_id, text, analysis, answer, order, reasons, inbound.kind, cohort, last
            )
            return Decision("handoff", conversation_id, analysis, answer, reasons, handoff_id)
        assert analysis is not None and answer is not None
        self._answer(session, customer, conversation_id, analysis, answer, started, cohort)
        return Decision("answer", conversation_id, analysis, answer)

    def _reasons(
        self, inbound: Inbound, analysis: Analysis | None, answer: Answer | None, repeats: int, cohort: Cohort
    ) -> tuple[Reason, ...]:
        if inbound.kind != "text" or analysis is None or answer is None:
            return (Reason.NOT_TEXT,)
        return self._policy.reasons(analysis, answer, repeats, cohort)

    def _answer(
        self,
        session: Session,
        customer: CustomerRow,
        conversation_id: int,
        analysis: Analysis,
        answer: Answer,
        started: float,
        cohort: Cohort,
    ) -> None:
        # A reply that asks (e.g. "what's your order number?") rather than answers is not a repeat.
        topic = analysis.topic if answer.sources and not answer.awaits_order else None
        meta: dict[str, Any] = {"topic": topic, "confidence": round(answer.confidence, 4)}
        meta["sources"] = list(answer.sources)
        if answer.awaits_order:
            meta["awaits_order"] = analysis.topic  # the next message with a number goes on with this topic
        _reply(session, customer, conversation_id, answer.text, meta)
        if answer.awaits_order:  # a question back, not an answer: nothing to rate, no source to cite
            send_to_customer(session, customer, conversation_id, answer.text)
        else:
            send_to_customer(
                session, customer, conversation_id, answer.text, buttons=Buttons.FEEDBACK, sources=list(answer.sources)
            )
        record_event(
            session,
            conversation_id,
            EventType.BOT_ANSWER,
            topic=analysis.topic,
            confidence=answer.confidence,
            language=analysis.language,
            sentiment=analysis.sentiment,
            ms=round((time.perf_counter() - started) * 1000, 2),
            cohort=str(cohort),  # the report compares the pilot with copilot by each conversation's first decision
            **spent(analysis, answer),  # LLM tokens of this message, for the report's ROI
        )

    def _small_talk(
        self,
        session: Session,
        customer: CustomerRow,
        conversation_id: int,
        analysis: Analysis,
        answer: Answer,
        after_answer: bool,
    ) -> None:
        """A reply from texts: not an answer of the knowledge base, so neither a repeat nor automation."""
        assert analysis.small_talk is not None
        _reply(session, customer, conversation_id, answer.text, {"small_talk": str(analysis.small_talk)})
        send_to_customer(session, customer, conversation_id, answer.text, language=analysis.language)
        record_event(session, conversation_id, EventType.SMALL_TALK, kind=str(analysis.small_talk))
        if analysis.small_talk in _CONFIRMS and after_answer:  # the customer confirms the answer helped
            thanks = FeedbackKind.THANKS
            session.execute(_NEW_FEEDBACK, {"conversation_id": conversation_id, "kind": thanks, "value": 0})
            record_event(session, conversation_id, EventType.FEEDBACK, kind=thanks, value=0)

    def _hand_off(
        self,
        session: Session,
        customer: CustomerRow,
        conversation_id: int,
        text: str,
        analysis: Analysis | None,
        answer: Answer | None,
        order: OrderFacts | None,
        reasons: tuple[Reason, ...],
        kind: str,
        cohort: Cohort,
        last: list[tuple[str, str]],
    ) -> int:
        language = analysis.language if analysis else (customer.language or self._texts.default_language)
        card: dict[str, Any] = {
            "topic": analysis.topic if analysis else None,
            "sentiment": analysis.sentiment if analysis else "neutral",
            "priority": analysis.priority if analysis else "normal",
            "reasons": [str(r) for r in reasons],
            "summary": (answer.summary if answer else "") or summarize(last, analysis, kind),
            "draft": answer.text if answer else "",
            "sources": list(answer.sources) if answer else [],
        }
        escalation = analysis.escalation if analysis else None
        new = {"conversation_id": conversation_id, "question": text, **card}
        handoff_id = insert_row(session, _NEW_HANDOFF, new)
        handoff = HandoffCard(
            handoff_id=handoff_id,
            conversation_id=conversation_id,
            customer=customer.name,
            channel=customer.channel,
            language=language,
            confidence=round(answer.confidence, 4) if answer else 0.0,
            **card,
            actions=list(answer.actions) if answer else [],
            order=order.as_data() if order else None,
            escalation=escalation.label if escalation else None,
            last_messages=last,
        )
        enqueue(session, self.queue_channel, DeliveryKind.HANDOFF, handoff, conversation_id)
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
        send_to_customer(session, customer, conversation_id, notice, language=language)
        record_event(
            session,
            conversation_id,
            EventType.HANDOFF,
            reasons=card["reasons"],
            topic=card["topic"],
            sentiment=card["sentiment"],
            priority=card["priority"],
            escalation=escalation.name if escalation else None,
            cohort=str(cohort),
            **spent(analysis, answer),  # LLM tokens of this message, for the report's ROI
        )
        return handoff_id


def _context(inbound: Inbound, session: Session) -> Context:
    chat = {"channel": inbound.channel, "chat_id": inbound.chat_id, "message_id": inbound.message_id}
    latest = session.execute(_CONTEXT, chat).first()
    if latest is None:
        return Context(False, None, [], {})
    if latest.seen:
        return Context(True, None, [], {})
    rows = session.execute(_HISTORY, {"conversation_id": latest.id}).all()
    answered_last = bool(rows) and rows[0].author == Author.BOT and bool(rows[0].meta.get("topic"))
    awaited = str(rows[0].meta.get("awaits_order") or "") if rows and rows[0].author == Author.BOT else ""
    since = latest.resolved_at
    repeats: dict[str, int] = {}
    orders: list[str] = []
    for message in rows:
        if since is not None and message.created_at <= since:
            break
        if message.author == Author.BOT and message.meta.get("topic"):
            repeats[message.meta["topic"]] = repeats.get(message.meta["topic"], 0) + 1
        if message.author == Author.CUSTOMER:
            orders[:0] = message.meta.get("slots", {}).get("orders", [])
    history = [(m.author, m.text) for m in reversed(rows) if m.author != Author.NOTE]
    seen = (latest.id, latest.newest)
    language = latest.language or ""
    return Context(False, State(latest.state), history, repeats, language, answered_last, awaited, tuple(orders), seen)


def _customer(session: Session, inbound: Inbound, analysis: Analysis | None) -> tuple[CustomerRow, bool]:
    """The customer, locked for this transaction, and whether they write for the first time."""
    chat = {"channel": inbound.channel, "chat_id": inbound.chat_id}
    found = session.execute(_CUSTOMER, chat).first()
    name = inbound.name or (found.name if found else "")
    language = analysis.language if analysis is not None else (found.language if found else "")
    if found is None:
        try:
            with session.begin_nested():  # another worker may add the same new customer at this moment
                customer_id = insert_row(session, _NEW_CUSTOMER, {**chat, "name": name, "language": language})
            return CustomerRow(customer_id, inbound.channel, inbound.chat_id, name, language), True
        except IntegrityError:  # it did, and committed first: theirs is the row (locked once theirs commits)
            found = session.execute(_CUSTOMER, chat).one()
            name = inbound.name or found.name
            language = analysis.language if analysis is not None else found.language
    customer_id = found.id
    if (name, language, False) != (found.name, found.language, found.blocked):
        # They wrote to us, so they can be written to (again).
        changes = {"row_id": customer_id, "name": name, "language": language, "blocked": False}
        session.execute(_UPDATE_CUSTOMER, changes)
    return CustomerRow(customer_id, inbound.channel, inbound.chat_id, name, language), False


def _reply(session: Session, customer: CustomerRow, conversation_id: int, text: str, meta: dict[str, Any]) -> None:
    """The bot's message, stored (the outbox delivers it)."""
    row = {"conversation_id": conversation_id, "author": Author.BOT, "channel": customer.channel}
    session.execute(_NEW_MESSAGE, {**row, "text": text, "meta": meta})


def _recent(session: Session, conversation_id: int, since: datetime | None) -> list[tuple[str, str]]:
    """The last few turns since the conversation's last resolution `since` (what came before is closed)."""
    history = session.execute(_RECENT, {"conversation_id": conversation_id, "since": since}).all()
    return [(str(a), str(t)) for a, t in reversed(history)]


# The desk's statements, built once: every message runs them, and building a statement anew (or an ORM
# object per row) cost more than SQLite's own work (bench/latency.py).
_CUSTOMERS, _CONVERSATIONS, _MESSAGES, _HANDOFFS, _FEEDBACK = (
    table(m) for m in (Customer, Conversation, Message, Handoff, Feedback)
)
_OF_CHAT = (col(Customer.channel) == bindparam("channel"), col(Customer.chat_id) == bindparam("chat_id"))
_NEWEST = (  # the id of a conversation's newest message: it changes when anyone writes to the conversation
    select(func.max(Message.id)).where(Message.conversation_id == Conversation.id).scalar_subquery().label("newest")
)
LATEST_CONVERSATION = (
    select(Conversation.id, Conversation.state, Conversation.queue_thread, Conversation.resolved_at)
    .add_columns(col(Customer.language), _NEWEST)
    .join(Customer)
    .where(*_OF_CHAT)
    .order_by(col(Conversation.id).desc())
    .limit(1)
)
"""A chat's newest conversation (a customer's conversations follow one another); parameters channel, chat_id."""
_SEEN = (  # a message id already stored belongs to this chat's conversation
    select(Message.id)
    .where(Message.channel == bindparam("channel"))
    .where(Message.external_id == bindparam("message_id"))
    .exists()
)
_CONTEXT = LATEST_CONVERSATION.add_columns(_SEEN.label("seen"))  # one statement for a first message
_HISTORY = (
    select(Message.author, Message.text, Message.meta, Message.created_at)
    .where(Message.conversation_id == bindparam("conversation_id"))
    .order_by(col(Message.id).desc())
    .limit(HISTORY)
)
_SINCE = bindparam("since", type_=_MESSAGES.c.created_at.type)  # typed: PostgreSQL must know what None is
_RECENT = (
    select(Message.author, Message.text)
    .where(Message.conversation_id == bindparam("conversation_id"))
    .where(Message.author != Author.NOTE)
    .where(or_(_SINCE.is_(None), col(Message.created_at) > _SINCE))
    .order_by(col(Message.id).desc())
    .limit(6)
)
_CUSTOMER = select(Customer.id, Customer.name, Customer.language, Customer.blocked).where(*_OF_CHAT).with_for_update()
_NEW_CUSTOMER, _NEW_CONVERSATION, _NEW_HANDOFF, _NEW_MESSAGE, _NEW_FEEDBACK = (
    insert(t) for t in (_CUSTOMERS, _CONVERSATIONS, _HANDOFFS, _MESSAGES, _FEEDBACK)
)
# The updates set the columns their parameters name, besides `row_id`, the row's id.
_UPDATE_CUSTOMER = update(_CUSTOMERS).where(_CUSTOMERS.c.id == bindparam("row_id"))
_UPDATE_CONVERSATION = update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("row_id"))


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
        if analysis.slots:
            meta["slots"] = analysis.slots.as_data()  # an order number said once serves later tools
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
