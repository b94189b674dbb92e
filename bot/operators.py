"""What operators do to a conversation: claim, reply, send or discard the draft, note, resolve, return, teach,
mark a message "always a person".

Every action is one transaction that updates the state, logs an event and queues what the customer
and the operator queue should see. Repeated clicks are harmless: each action checks the state it
expects and a sent draft carries a dedup key.

A draft answers the question it was written for, so it lives only until that question is settled: sent,
discarded, or expired when the conversation is resolved, returned to the bot or answered in the operator's
own words. An expired draft is never sent (a stale one would answer a later, different question).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from bot.analysis.intent import only_asks_for_a_person
from bot.analysis.language import detect_language
from bot.analysis.sentiment import score_sentiment
from bot.deliveries import Buttons, DeliveryKind, StateChange
from bot.domain import Author, EventType, Reason, State
from bot.journal import record_event, send_to_customer
from bot.knowledge.index import KnowledgeIndex
from bot.lifecycle import Draft, Move, advance, allowed, may_claim, settle_draft
from bot.outbox import Outbox, enqueue
from bot.quality import score_reply
from bot.storage.models import Conversation, Customer, Delivery, Event, Feedback, Handoff, Message, utcnow
from bot.texts import Texts

if TYPE_CHECKING:  # only the type: without an LLM, langchain is never imported
    from bot.llm.judge import ReplyJudge
    from bot.triage.examples import TriageExamples

log = logging.getLogger(__name__)

_LOOK_BACK = 20  # customer messages searched for the question behind a bare request for a person
_QUOTED = 80  # characters of a question or reply quoted back to the operator

# What settles a draft's question (the event that expires it), as the operator is told.
_SETTLED_BY = {
    EventType.RESOLVED: "resolved",
    EventType.RETURNED_TO_BOT: "returned to the bot",
    EventType.OPERATOR_REPLY: "answered",
}


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    message: str
    conversation_id: int | None = None
    quality: dict[str, Any] | None = None  # a sent reply's score (bot.quality), shown to its operator only


@dataclass(frozen=True)
class _Asked:
    """What a reply is scored against: the customer's last message, their mood (-1 … 1), the language."""

    question: str
    sentiment: float
    language: str


class OperatorActions:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        texts: Texts,
        outbox: Outbox,
        queue_channel: str,
        index: KnowledgeIndex | None = None,
        judge: ReplyJudge | None = None,
        examples: TriageExamples | None = None,
    ) -> None:
        self._sessions = sessions
        self._texts = texts
        self._outbox = outbox
        self._queue_channel = queue_channel
        self._index = index
        self._judge = judge  # the LLM's scoring of replies; None: the offline scorer alone
        self._examples = examples  # escalation examples, which "always a person" adds to

    async def claim(self, conversation_id: int, operator: str) -> ActionResult:
        async with self._sessions() as session, session.begin():
            found = await self._load(session, conversation_id)
            if isinstance(found, ActionResult):
                return found
            conversation, _ = found
            if conversation.state == State.OPERATOR and not may_claim(conversation.operator, operator):
                return ActionResult(False, f"already claimed by {conversation.operator}", conversation_id)
            await self._take(session, conversation, operator)
        return self._done("claimed", conversation_id)

    async def reply(
        self,
        conversation_id: int,
        operator: str,
        text: str,
        dedup_key: str | None = None,
        handoff_id: int | None = None,
    ) -> ActionResult:
        text = text.strip()
        if not text:
            return ActionResult(False, "empty reply", conversation_id)
        try:
            async with self._sessions() as session, session.begin():
                found = await self._load(session, conversation_id)
                if isinstance(found, ActionResult):
                    return found
                conversation, customer = found
                if conversation.state == State.OPERATOR and not may_claim(conversation.operator, operator):
                    return ActionResult(False, f"{conversation.operator} owns this conversation", conversation_id)
                if dedup_key and await self._delivered(session, dedup_key):
                    return ActionResult(False, "already sent", conversation_id)
                refused = await self._unsendable(session, handoff_id) if handoff_id is not None else None
                if refused:  # checked again under the conversation's lock: resolved meanwhile, it stays unsent
                    return ActionResult(False, refused, conversation_id)
                # The offline score is stored with the reply; an LLM judge's replaces it after the commit.
                quality, asked = await self._quality(session, conversation_id, text, customer.language)
                await self._take(session, conversation, operator)
                message = Message(
                    conversation_id=conversation_id,
                    author=Author.OPERATOR,
                    channel=customer.channel,
                    text=text,
                    operator=operator,
                    meta={"handoff_id": handoff_id, "quality": quality},
                )
                session.add(message)
                await session.run_sync(
                    send_to_customer, customer, conversation_id, text, dedup_key=dedup_key, operator=operator
                )
                await self._expire_drafts(session, conversation_id, keep=handoff_id)
                # The judge may score this very event later: its id is kept.
                event_id = await session.run_sync(
                    record_event,
                    conversation_id,
                    EventType.OPERATOR_REPLY,
                    operator,
                    handoff_id=handoff_id,
                    chars=len(text),
                    quality=quality,
                )
        except IntegrityError:  # the same button, pressed twice at once: the dedup key let one through
            return ActionResult(False, "already sent", conversation_id)
        if self._judge is not None:
            self._outbox.wake()  # the reply leaves now; the judge's opinion must not hold it up
            quality = await self._judged(conversation_id, message, event_id, text, asked, quality)
        return self._done("sent to the customer", conversation_id, quality)

    async def send_draft(self, handoff_id: int, operator: str, text: str | None = None) -> ActionResult:
        """Send the AI draft (or the operator's edit of it) once, however many times it is clicked."""
        async with self._sessions() as session:
            handoff = await session.get(Handoff, handoff_id)
            refused = await self._unsendable(session, handoff_id)
        if handoff is None:
            return ActionResult(False, f"no handoff {handoff_id}")
        if refused:
            return ActionResult(False, refused, handoff.conversation_id)
        body = (text if text is not None else handoff.draft).strip()
        if not body:
            return ActionResult(False, "the draft is empty: reply in your own words", handoff.conversation_id)
        result = await self.reply(
            handoff.conversation_id, operator, body, dedup_key=f"handoff:{handoff_id}:send", handoff_id=handoff_id
        )
        if result.ok:
            await self._set_handoff(handoff_id, Draft.SENT, operator, edited=text is not None and text != handoff.draft)
        return result

    async def draft_refusal(self, handoff_id: int) -> str | None:
        """Why the draft can no longer be sent or edited, as the operator is told; None while it is open."""
        async with self._sessions() as session:
            return await self._unsendable(session, handoff_id)

    async def discard_draft(self, handoff_id: int, operator: str) -> ActionResult:
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id)
            if handoff is None or handoff.status != Draft.OPEN:
                return ActionResult(False, "nothing to discard")
            handoff.status = settle_draft(handoff.status, Draft.DISCARDED)
            await session.run_sync(record_event, handoff.conversation_id, EventType.DRAFT_DISCARDED, operator)
        return ActionResult(True, "draft discarded", handoff.conversation_id)

    async def note(self, conversation_id: int, operator: str, text: str) -> ActionResult:
        async with self._sessions() as session, session.begin():
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return ActionResult(False, f"no conversation {conversation_id}")
            session.add(
                Message(
                    conversation_id=conversation_id,
                    author=Author.NOTE,
                    channel=self._queue_channel,
                    text=text.strip(),
                    operator=operator,
                )
            )
        return ActionResult(True, "internal note saved", conversation_id)

    async def resolve(self, conversation_id: int, operator: str) -> ActionResult:
        learned: tuple[str, str, str, str] | None = None
        taught = False
        async with self._sessions() as session, session.begin():
            found = await self._load(session, conversation_id)
            if isinstance(found, ActionResult):
                return found
            conversation, customer = found
            if not allowed(conversation.state, Move.RESOLVE):
                return ActionResult(False, "already resolved", conversation_id)
            conversation.state = advance(conversation.state, Move.RESOLVE)
            conversation.resolved_at = conversation.updated_at = utcnow()
            conversation.operator = conversation.operator or operator
            await session.run_sync(
                send_to_customer,
                customer,
                conversation.id,
                self._texts.render("resolved", customer.language),
                buttons=Buttons.CSAT,
            )
            await session.run_sync(record_event, conversation.id, EventType.RESOLVED, operator=operator)
            await self._expire_drafts(session, conversation_id)
            await self._queue_state(session, conversation)
            found_case = await self._case(session, conversation_id, customer.language)
            if found_case is not None:
                learned = found_case[0]
                # Taught before the resolution: the very answer the operator approved stays approved.
                taught = await self._taught(session, conversation_id, *found_case)
        if learned and self._index is not None:
            try:
                await self._index.add_case(*learned, reusable=taught)
            except Exception:  # learning is a bonus; a failed write must not undo the resolution
                log.exception("operators: could not store the resolved case")
        return self._done("resolved", conversation_id)

    async def teach(self, conversation_id: int, operator: str) -> ActionResult:
        """The operator approves their answer for automatic use: the bot may now send it on its own."""
        if self._index is None:
            return ActionResult(False, "there is no knowledge index to teach", conversation_id)
        async with self._sessions() as session, session.begin():
            found = await self._load(session, conversation_id)
            if isinstance(found, ActionResult):
                return found
            conversation, customer = found
            found_case = await self._case(session, conversation_id, customer.language)
            if found_case is None:
                return ActionResult(
                    False, "nothing to teach: no operator answer to the last handed-off question", conversation_id
                )
            case, reply_id = found_case
            _, question, answer, _ = case
            taught = f"{_quote(answer)} to questions like {_quote(question)}"
            if await self._taught(session, conversation_id, case, reply_id):
                return ActionResult(
                    False, f"nothing new to teach: the bot already knows this answer ({taught})", conversation_id
                )
            # Stored before the event commits: a failed write leaves nothing claiming it was taught.
            try:
                await self._index.add_case(*case, reusable=True)
            except Exception:
                log.exception("operators: could not store the taught case")
                return ActionResult(False, "the knowledge index could not be updated; try again", conversation_id)
            await session.run_sync(
                record_event, conversation.id, EventType.TAUGHT, operator=operator, case=case[0], message_id=reply_id
            )
        return ActionResult(True, f"taught: the bot may now send {taught}", conversation_id)

    async def always_a_person(self, conversation_id: int, operator: str, topic: str | None = None) -> ActionResult:
        """Messages like the conversation's handed-off question go to a person from now on, whatever the
        knowledge base says: an escalation example taught from the queue (bot.triage.marked)."""
        if self._examples is None or not self._examples.learns:
            return ActionResult(
                False, "this desk matches no messages by meaning (a hashing embedder): nothing to mark", conversation_id
            )
        async with self._sessions() as session:
            found = await self._load(session, conversation_id)
            if isinstance(found, ActionResult):
                return found
            handed_off = await self._handed_off(session, conversation_id)
        if handed_off is None:
            return ActionResult(False, "there is no handed-off customer question to mark", conversation_id)
        question = handed_off[1]
        try:
            chosen = await self._examples.mark(question, operator, topic)
        except KeyError:
            names = ", ".join(t.name for t in self._examples.topics())
            return ActionResult(False, f"no escalation topic {topic!r}; choose one of: {names}", conversation_id)
        except Exception:
            log.exception("operators: could not store the marked message")
            return ActionResult(False, "the escalation examples could not be updated; try again", conversation_id)
        shown = " ".join(question.split())[:120]
        if chosen is None:
            return ActionResult(False, f"messages like “{shown}” already go to a person", conversation_id)
        async with self._sessions() as session, session.begin():
            await session.run_sync(
                record_event, conversation_id, EventType.MARKED, operator=operator, topic=chosen.name
            )
        return ActionResult(
            True, f"always a person: messages like “{shown}” now go to operators as “{chosen.label}”", conversation_id
        )

    async def return_to_bot(self, conversation_id: int, operator: str) -> ActionResult:
        async with self._sessions() as session, session.begin():
            found = await self._load(session, conversation_id)
            if isinstance(found, ActionResult):
                return found
            conversation, customer = found
            if not allowed(conversation.state, Move.RETURN_TO_BOT):
                return ActionResult(False, "the bot already has it", conversation_id)
            conversation.state = advance(conversation.state, Move.RETURN_TO_BOT)
            conversation.operator = None
            conversation.updated_at = utcnow()
            await session.run_sync(
                send_to_customer, customer, conversation.id, self._texts.render("returned_to_bot", customer.language)
            )
            await session.run_sync(record_event, conversation.id, EventType.RETURNED_TO_BOT, operator=operator)
            await self._expire_drafts(session, conversation_id)
            await self._queue_state(session, conversation)
        return self._done("returned to the bot", conversation_id)

    async def feedback(self, conversation_id: int, kind: str, value: int = 0) -> ActionResult:
        """A customer's button: helpful / not_helpful after an answer, csat 1-5 after a resolution."""
        if kind not in ("helpful", "not_helpful", "csat") or (kind == "csat" and not 1 <= value <= 5):
            return ActionResult(False, "unknown feedback")
        async with self._sessions() as session, session.begin():
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return ActionResult(False, f"no conversation {conversation_id}")
            session.add(Feedback(conversation_id=conversation_id, kind=kind, value=value))
            await session.run_sync(record_event, conversation.id, EventType.FEEDBACK, kind=kind, value=value)
            if kind == "helpful" and allowed(conversation.state, Move.HELPED):
                conversation.state = advance(conversation.state, Move.HELPED)
                conversation.resolved_at = utcnow()
                await session.run_sync(record_event, conversation.id, EventType.RESOLVED, by="bot")
                await self._expire_drafts(session, conversation_id)
        return ActionResult(True, "thank you", conversation_id)

    # -- helpers ----------------------------------------------------------------------------------

    async def _load(self, session: AsyncSession, conversation_id: int) -> tuple[Conversation, Customer] | ActionResult:
        conversation = (
            (await session.execute(select(Conversation).where(Conversation.id == conversation_id).with_for_update()))
            .scalars()
            .first()
        )
        if conversation is None:
            return ActionResult(False, f"no conversation {conversation_id}")
        customer = await session.get(Customer, conversation.customer_id)
        assert customer is not None
        return conversation, customer

    async def _take(self, session: AsyncSession, conversation: Conversation, operator: str) -> None:
        """The operator owns the conversation from now on: the bot stays silent."""
        if conversation.state == State.OPERATOR and conversation.operator == operator:
            return
        conversation.state = advance(conversation.state, Move.CLAIM)
        conversation.operator = operator
        conversation.updated_at = utcnow()
        await session.run_sync(record_event, conversation.id, EventType.CLAIMED, operator=operator)
        await self._queue_state(session, conversation)

    async def _queue_state(self, session: AsyncSession, conversation: Conversation) -> None:
        await session.run_sync(
            enqueue,
            self._queue_channel,
            DeliveryKind.STATE,
            StateChange(
                conversation_id=conversation.id or 0,
                thread=conversation.queue_thread,
                state=State(conversation.state),
                operator=conversation.operator,
            ),
            conversation.id,
        )

    @staticmethod
    async def _quality(
        session: AsyncSession, conversation_id: int, text: str, language: str
    ) -> tuple[dict[str, Any], _Asked]:
        """Score the reply offline against the customer's last message (its stored sentiment when the desk had
        one); also returns what it was scored against, for the LLM judge."""
        asked = await _last_message(session, conversation_id, Author.CUSTOMER)
        question = asked.text if asked else ""
        language = language or detect_language(question or text)
        stored = (asked.meta or {}).get("sentiment_score") if asked else None
        sentiment = float(stored) if isinstance(stored, int | float) else score_sentiment(question, language).score
        scored_against = _Asked(question, sentiment, language)
        return score_reply(text, question, sentiment, language).as_dict(), scored_against

    async def _judged(
        self, conversation_id: int, message: Message, event_id: int, text: str, asked: _Asked, offline: dict[str, Any]
    ) -> dict[str, Any]:
        """The LLM judge's score of a stored reply, written over the offline one; the offline one on any failure.

        Runs outside the reply's transaction (a slow model must not hold row locks or the delivery). The
        judge's tokens are logged as an `llm_usage` event, so the report's ROI counts them.
        """
        assert self._judge is not None
        # The reasons come back in the reply's language (usually, not always, the customer's).
        verdict = await self._judge.judge(text, asked.question, asked.sentiment, detect_language(text, asked.language))
        quality = verdict.score.as_dict() if verdict.score is not None else offline
        spent = verdict.usage.as_data()
        if verdict.score is None and not spent:
            return offline
        try:
            async with self._sessions() as session, session.begin():
                if verdict.score is not None:
                    stored = await session.get(Message, message.id)
                    logged = await session.get(Event, event_id)
                    if stored is not None:
                        stored.meta = {**stored.meta, "quality": quality}  # a new dict: JSON columns track assignment
                    if logged is not None:
                        logged.data = {**logged.data, "quality": quality}
                if spent:
                    await session.run_sync(record_event, conversation_id, EventType.LLM_USAGE, purpose="judge", **spent)
        except Exception:  # advice only: the reply is sent and keeps its offline score
            log.exception("operators: could not store the judge's score")
            return offline
        return quality

    @staticmethod
    async def _expire_drafts(session: AsyncSession, conversation_id: int, keep: int | None = None) -> None:
        """The conversation's open drafts (but `keep`, the one being sent) die: their question is settled."""
        drafts = await session.execute(
            select(Handoff).where(Handoff.conversation_id == conversation_id).where(Handoff.status == Draft.OPEN)
        )
        for handoff in drafts.scalars():
            if handoff.id != keep:
                handoff.status = settle_draft(handoff.status, Draft.EXPIRED)

    @staticmethod
    async def _unsendable(session: AsyncSession, handoff_id: int) -> str | None:
        """Why the draft can no longer be sent, as the operator is told; None while it is open."""
        handoff = await session.get(Handoff, handoff_id)
        if handoff is None or handoff.status == Draft.OPEN:
            return None
        if handoff.status != Draft.EXPIRED:
            return f"the draft was already {handoff.status}"
        settled = await session.execute(  # the first event after the draft that settled its question
            select(Event.type)
            .where(Event.conversation_id == handoff.conversation_id)
            .where(col(Event.type).in_(_SETTLED_BY))
            .where(col(Event.created_at) >= handoff.created_at)
            .order_by(col(Event.id))
            .limit(1)
        )
        event = settled.scalar()
        why = _SETTLED_BY.get(EventType(event), "settled") if event else "settled"
        return f"the draft expired when the conversation was {why}: reply in your own words if needed"

    @staticmethod
    async def _delivered(session: AsyncSession, dedup_key: str) -> bool:
        found = await session.execute(select(Delivery.id).where(Delivery.dedup_key == dedup_key))
        return found.first() is not None

    async def _set_handoff(self, handoff_id: int, status: Draft, operator: str, edited: bool) -> None:
        async with self._sessions() as session, session.begin():
            handoff = await session.get(Handoff, handoff_id)
            if handoff is not None:
                handoff.status = status
                conversation_id = handoff.conversation_id
                await session.run_sync(
                    record_event, conversation_id, EventType.DRAFT_SENT, operator, handoff_id=handoff_id, edited=edited
                )

    @staticmethod
    async def _case(
        session: AsyncSession, conversation_id: int, language: str
    ) -> tuple[tuple[str, str, str, str], int | None] | None:
        """The last handed-off question (`_handed_off`) and the operator's last answer to it (given after it): a
        case to learn from. Returns `(case_id, question, answer, language)` and the id of the operator's message.
        """
        handed_off = await OperatorActions._handed_off(session, conversation_id)
        reply = await _last_message(session, conversation_id, Author.OPERATOR)
        if handed_off is None or reply is None or reply.created_at < handed_off[0].created_at:
            return None  # an answer written before the question was handed off does not answer it
        handoff, question = handed_off
        if Reason.COMPENSATION in handoff.reasons:
            return None  # an offer for one customer's order (its promo code) is no answer for anyone else
        return (str(handoff.id), question, reply.text, language), reply.id

    @staticmethod
    async def _handed_off(session: AsyncSession, conversation_id: int) -> tuple[Handoff, str] | None:
        """The conversation's last handoff and the question behind it.

        When the handed-off message only asks for a person ("/human" from the Talk to a person button, "I want
        to talk to a person"), the question is the customer's last real message before it since the
        conversation's previous resolution; with none, there is no question."""
        handoff = (
            (
                await session.execute(
                    select(Handoff)
                    .where(Handoff.conversation_id == conversation_id)
                    .order_by(col(Handoff.id).desc())
                    .limit(1)
                )
            )
            .scalars()
            .first()
        )
        if handoff is None or not handoff.question:
            return None
        question: str | None = handoff.question
        if only_asks_for_a_person(handoff.question):
            question = await OperatorActions._asked_before(session, handoff)
        return (handoff, question) if question else None

    @staticmethod
    async def _asked_before(session: AsyncSession, handoff: Handoff) -> str | None:
        """The customer's last message before `handoff` that is more than a request for a person, since the
        conversation's last resolution before it (what was said before that was closed)."""
        resolved = (
            select(func.max(Event.created_at))
            .where(Event.conversation_id == handoff.conversation_id)
            .where(Event.type == EventType.RESOLVED)
            .where(col(Event.created_at) < handoff.created_at)
            .scalar_subquery()
        )
        earlier = (
            await session.execute(
                select(Message.text)
                .where(Message.conversation_id == handoff.conversation_id)
                .where(Message.author == Author.CUSTOMER)
                .where(col(Message.created_at) < handoff.created_at)
                .where(or_(resolved.is_(None), col(Message.created_at) > resolved))
                .order_by(col(Message.id).desc())
                .limit(_LOOK_BACK)
            )
        ).scalars()
        return next((t.strip() for t in earlier if t.strip() and not only_asks_for_a_person(t)), None)

    @staticmethod
    async def _taught(
        session: AsyncSession, conversation_id: int, case: tuple[str, str, str, str], reply_id: int | None
    ) -> bool:
        """Whether an operator taught this very answer (this handoff, this message) to the bot."""
        events = (
            (
                await session.execute(
                    select(Event).where(Event.conversation_id == conversation_id).where(Event.type == EventType.TAUGHT)
                )
            )
            .scalars()
            .all()
        )
        return any(
            (e.data or {}).get("case") == case[0] and (e.data or {}).get("message_id") == reply_id for e in events
        )

    def _done(self, message: str, conversation_id: int, quality: dict[str, Any] | None = None) -> ActionResult:
        self._outbox.wake()
        return ActionResult(True, message, conversation_id, quality)


def _quote(text: str) -> str:
    """A question or reply as the operator is shown it: one line, quoted, cut to `_QUOTED` characters."""
    line = " ".join(text.split())
    return f"“{line if len(line) <= _QUOTED else line[: _QUOTED - 1].rstrip() + '…'}”"


async def _last_message(session: AsyncSession, conversation_id: int, author: Author) -> Message | None:
    """The conversation's latest message by `author`."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id)
        .where(Message.author == author)
        .order_by(col(Message.id).desc())
        .limit(1)
    )
    return (await session.execute(query)).scalars().first()
