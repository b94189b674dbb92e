"""What operators do to a conversation: claim, reply, send or discard the draft, note, resolve, return, teach,
mark a message "always a person".

Every action is one transaction (bot.storage.db.Transactions) that changes the state through
bot.domain.lifecycle, logs an event and queues what the customer and the operator queue should see. Repeated
clicks are harmless: each action checks the state it expects and a sent draft carries a dedup key. Learning
lives in teaching.py, the reply's score in scoring.py, the customer's buttons in feedback.py, the draft's
rules in drafts.py (all in this package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import select

from bot.delivery.journal import record_event, send_to_customer
from bot.delivery.outbox import Outbox, enqueue
from bot.domain.deliveries import Buttons, DeliveryKind, StateChange
from bot.domain.lifecycle import Draft, Move, advance, allowed, may_claim, settle_draft
from bot.domain.types import ActionResult, Author, EventType, FeedbackKind, State
from bot.knowledge.index import KnowledgeIndex
from bot.operators.drafts import expire_drafts, unsendable
from bot.operators.feedback import CustomerFeedback
from bot.operators.scoring import Asked, Judging, score_offline
from bot.operators.teaching import Learned, Teaching, learned_case
from bot.prompts.texts import Texts
from bot.storage.db import Transactions
from bot.storage.models import Conversation, Customer, Delivery, Handoff, Message, utcnow
from bot.storage.reads import load

if TYPE_CHECKING:  # only the type: without an LLM, langchain is never imported
    from bot.brain.llm.judge import ReplyJudge
    from bot.brain.triage.examples import TriageExamples


AlsoWrite = Callable[[Session], object]
"""A console's follow-up written in the action's own transaction (the card's first response, the draft's post)."""


@dataclass(frozen=True)
class _Sent:
    """A reply stored and queued: what the judge scores after the commit."""

    message_id: int
    event_id: int
    quality: dict[str, Any]
    asked: Asked


class OperatorActions:
    def __init__(
        self,
        transactions: Transactions,
        texts: Texts,
        outbox: Outbox,
        queue_channel: str,
        index: KnowledgeIndex | None = None,
        judge: ReplyJudge | None = None,
        examples: TriageExamples | None = None,
    ) -> None:
        self._transactions = transactions
        self._texts = texts
        self._outbox = outbox
        self._queue_channel = queue_channel
        self._judging = Judging(transactions, judge) if judge is not None else None
        self._teaching = Teaching(transactions, index, examples)
        self._feedback = CustomerFeedback(transactions)

    # -- claims and replies -----------------------------------------------------------------------

    async def claim(self, conversation_id: int, operator: str, announce: bool = False) -> ActionResult:
        """The operator takes the conversation; with `announce` the customer is told who joined
        (bot.operators.replies)."""
        refused = await self._transactions.run(partial(self._claim, conversation_id, operator, announce))
        return refused or self._done("claimed", conversation_id)

    def _claim(self, conversation_id: int, operator: str, announce: bool, session: Session) -> ActionResult | None:
        found = load(session, conversation_id)
        if isinstance(found, ActionResult):
            return found
        conversation, customer = found
        if conversation.state == State.OPERATOR and not may_claim(conversation.operator, operator):
            return ActionResult(False, f"already claimed by {conversation.operator}", conversation_id)
        self._take(session, conversation, customer, operator, announce)
        return None

    async def reply(
        self,
        conversation_id: int,
        operator: str,
        text: str,
        dedup_key: str | None = None,
        handoff_id: int | None = None,
        announce: bool = False,
        also: AlsoWrite | None = None,
    ) -> ActionResult:
        text = text.strip()
        if not text:
            return ActionResult(False, "empty reply", conversation_id)
        work = partial(self._reply, conversation_id, operator, text, dedup_key, handoff_id, announce, also)
        try:
            sent = await self._transactions.run(work)
        except IntegrityError:  # the same button, pressed twice at once: the dedup key let one through
            return ActionResult(False, "already sent", conversation_id)
        if isinstance(sent, ActionResult):
            return sent
        quality = sent.quality
        if self._judging is not None:
            self._outbox.wake()  # the reply leaves now; the judge's opinion must not hold it up
            quality = await self._judging.judged(
                conversation_id, sent.message_id, sent.event_id, text, sent.asked, quality
            )
        return self._done("sent to the customer", conversation_id, quality)

    def _reply(
        self,
        conversation_id: int,
        operator: str,
        text: str,
        dedup_key: str | None,
        handoff_id: int | None,
        announce: bool,
        also: AlsoWrite | None,
        session: Session,
    ) -> _Sent | ActionResult:
        found = load(session, conversation_id)
        if isinstance(found, ActionResult):
            return found
        conversation, customer = found
        if conversation.state == State.OPERATOR and not may_claim(conversation.operator, operator):
            return ActionResult(False, f"{conversation.operator} owns this conversation", conversation_id)
        if dedup_key and session.execute(select(Delivery.id).where(Delivery.dedup_key == dedup_key)).first():
            return ActionResult(False, "already sent", conversation_id)
        refused = unsendable(session, handoff_id) if handoff_id is not None else None
        if refused:  # checked again under the conversation's lock: resolved meanwhile, it stays unsent
            return ActionResult(False, refused, conversation_id)
        # The offline score is stored with the reply; an LLM judge's replaces it after the commit.
        quality, asked = score_offline(session, conversation_id, text, customer.language)
        self._take(session, conversation, customer, operator, announce)
        message = Message(
            conversation_id=conversation_id,
            author=Author.OPERATOR,
            channel=customer.channel,
            text=text,
            operator=operator,
            meta={"handoff_id": handoff_id, "quality": quality},
        )
        session.add(message)
        send_to_customer(session, customer, conversation_id, text, dedup_key=dedup_key, operator=operator)
        expire_drafts(session, conversation_id, keep=handoff_id)
        # The judge may score this very event later: its id is kept.
        event_id = record_event(
            session,
            conversation_id,
            EventType.OPERATOR_REPLY,
            operator,
            handoff_id=handoff_id,
            chars=len(text),
            quality=quality,
        )
        if handoff_id is not None:  # the draft goes out with this reply: sent in the same transaction
            self._settle_sent(session, handoff_id, operator, text)
        session.flush()
        if also is not None:
            also(session)
        assert message.id is not None
        return _Sent(message.id, event_id, quality, asked)

    async def note(self, conversation_id: int, operator: str, text: str) -> ActionResult:
        def work(session: Session) -> bool:
            if session.get(Conversation, conversation_id) is None:
                return False
            session.add(
                Message(
                    conversation_id=conversation_id,
                    author=Author.NOTE,
                    channel=self._queue_channel,
                    text=text.strip(),
                    operator=operator,
                )
            )
            return True

        if not await self._transactions.run(work):
            return ActionResult(False, f"no conversation {conversation_id}")
        return ActionResult(True, "internal note saved", conversation_id)

    # -- drafts -----------------------------------------------------------------------------------

    async def send_draft(
        self,
        handoff_id: int,
        operator: str,
        text: str | None = None,
        announce: bool = False,
        also: AlsoWrite | None = None,
    ) -> ActionResult:
        """Send the AI draft (or the operator's edit of it) once, however many times it is clicked."""

        def read(session: Session) -> tuple[Handoff | None, str | None]:
            return session.get(Handoff, handoff_id), unsendable(session, handoff_id)

        handoff, refused = await self._transactions.run(read)
        if handoff is None:
            return ActionResult(False, f"no handoff {handoff_id}")
        if refused:
            return ActionResult(False, refused, handoff.conversation_id)
        body = (text if text is not None else handoff.draft).strip()
        if not body:
            return ActionResult(False, "the draft is empty: reply in your own words", handoff.conversation_id)
        dedup_key = f"handoff:{handoff_id}:send"
        return await self.reply(handoff.conversation_id, operator, body, dedup_key, handoff_id, announce, also)

    async def draft_refusal(self, handoff_id: int) -> str | None:
        """Why the draft can no longer be sent or edited, as the operator is told; None while it is open."""
        return await self._transactions.run(partial(unsendable, handoff_id=handoff_id))

    async def discard_draft(self, handoff_id: int, operator: str, also: AlsoWrite | None = None) -> ActionResult:
        def work(session: Session) -> int | None:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None or handoff.status != Draft.OPEN:
                return None
            handoff.status = settle_draft(handoff.status, Draft.DISCARDED)
            record_event(session, handoff.conversation_id, EventType.DRAFT_DISCARDED, operator)
            if also is not None:
                also(session)
            return handoff.conversation_id

        conversation_id = await self._transactions.run(work)
        if conversation_id is None:
            return ActionResult(False, "nothing to discard")
        return self._done("draft discarded", conversation_id)

    # -- resolution -------------------------------------------------------------------------------

    async def resolve(self, conversation_id: int, operator: str) -> ActionResult:
        done = await self._transactions.run(partial(self._resolve, conversation_id, operator))
        if isinstance(done, ActionResult):
            return done
        await self._teaching.remember(done)
        return self._done("resolved", conversation_id)

    def _resolve(self, conversation_id: int, operator: str, session: Session) -> Learned | ActionResult | None:
        found = self._leave_operator(session, conversation_id, operator, Move.RESOLVE, "already resolved")
        if isinstance(found, ActionResult):
            return found
        conversation, customer = found
        conversation.resolved_at = conversation.updated_at
        conversation.operator = conversation.operator or operator
        self._tell(session, conversation, customer, operator, "resolved", EventType.RESOLVED, Buttons.CSAT)
        # Taught before the resolution: the very answer the operator approved stays approved.
        return learned_case(session, conversation_id, customer.language)

    async def return_to_bot(self, conversation_id: int, operator: str) -> ActionResult:
        refused = await self._transactions.run(partial(self._return_to_bot, conversation_id, operator))
        return refused or self._done("returned to the bot", conversation_id)

    def _return_to_bot(self, conversation_id: int, operator: str, session: Session) -> ActionResult | None:
        found = self._leave_operator(session, conversation_id, operator, Move.RETURN_TO_BOT, "the bot already has it")
        if isinstance(found, ActionResult):
            return found
        conversation, customer = found
        conversation.operator = None
        self._tell(session, conversation, customer, operator, "returned_to_bot", EventType.RETURNED_TO_BOT)
        return None

    @staticmethod
    def _leave_operator(
        session: Session, conversation_id: int, operator: str, move: Move, refusal: str
    ) -> tuple[Conversation, Customer] | ActionResult:
        """The conversation moved on by `move` (resolve, return to the bot), or why it cannot be."""
        found = load(session, conversation_id)
        if isinstance(found, ActionResult):
            return found
        conversation, _ = found
        if not allowed(conversation.state, move):
            return ActionResult(False, refusal, conversation_id)
        conversation.state = advance(conversation.state, move)
        conversation.updated_at = utcnow()
        return found

    def _tell(
        self,
        session: Session,
        conversation: Conversation,
        customer: Customer,
        operator: str,
        text: str,
        event: EventType,
        buttons: Buttons = Buttons.NONE,
    ) -> None:
        """What follows a move away from the operator: the customer told, the event logged, the open drafts
        expired (their question is settled), the queue's card updated."""
        assert conversation.id is not None
        send_to_customer(session, customer, conversation.id, self._texts.render(text, customer.language), buttons)
        record_event(session, conversation.id, event, operator=operator)
        expire_drafts(session, conversation.id)
        self._queue_state(session, conversation)

    # -- learning and the customer's buttons ------------------------------------------------------

    async def teach(self, conversation_id: int, operator: str) -> ActionResult:
        """The operator approves their answer for automatic use: the bot may now send it on its own."""
        return await self._teaching.teach(conversation_id, operator)

    async def always_a_person(self, conversation_id: int, operator: str, topic: str | None = None) -> ActionResult:
        """Messages like the conversation's handed-off question go to a person from now on (bot.operators.teaching)."""
        return await self._teaching.always_a_person(conversation_id, operator, topic)

    async def feedback(self, conversation_id: int, kind: FeedbackKind, value: int = 0) -> ActionResult:
        """A customer's button: helpful / not_helpful after an answer, csat 1-5 after a resolution."""
        refused = await self._feedback.record(conversation_id, kind, value)
        if refused:
            return ActionResult(False, refused)
        return ActionResult(True, "thank you", conversation_id)

    # -- helpers ----------------------------------------------------------------------------------

    def _take(
        self, session: Session, conversation: Conversation, customer: Customer, operator: str, announce: bool
    ) -> None:
        """The operator owns the conversation from now on: the bot stays silent. With `announce`, the customer
        learns who joined, in the same transaction: only when the claim or the reply itself goes through."""
        if conversation.state == State.OPERATOR and conversation.operator == operator:
            return
        if announce:
            joined = self._texts.render("operator_joined", customer.language, operator=operator)
            send_to_customer(session, customer, conversation.id, joined, operator=operator)
        conversation.state = advance(conversation.state, Move.CLAIM)
        conversation.operator = operator
        conversation.updated_at = utcnow()
        record_event(session, conversation.id, EventType.CLAIMED, operator=operator)
        self._queue_state(session, conversation)

    @staticmethod
    def _settle_sent(session: Session, handoff_id: int, operator: str, text: str) -> None:
        handoff = session.get(Handoff, handoff_id)
        assert handoff is not None  # `unsendable` found it open under the same lock
        handoff.status = settle_draft(handoff.status, Draft.SENT)
        edited = text != handoff.draft.strip()
        conversation_id = handoff.conversation_id
        record_event(session, conversation_id, EventType.DRAFT_SENT, operator, handoff_id=handoff_id, edited=edited)

    def _queue_state(self, session: Session, conversation: Conversation) -> None:
        assert conversation.id is not None
        change = StateChange(
            conversation_id=conversation.id,
            thread=conversation.queue_thread,
            state=State(conversation.state),
            operator=conversation.operator,
        )
        enqueue(session, self._queue_channel, DeliveryKind.STATE, change, conversation.id)

    def _done(self, message: str, conversation_id: int, quality: dict[str, Any] | None = None) -> ActionResult:
        self._outbox.wake()
        return ActionResult(True, message, conversation_id, quality)
