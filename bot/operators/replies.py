"""An operator's reply, in one place for every console: what goes to the customer and what the operator is told.

- A reply that starts with the note prefix is an internal note: stored, never sent.
- With `show_operator_name` the customer learns who joined, only when the claim or the reply goes through.
- The card shows the first response time: the first reply after a handoff refreshes it.
- An edit of a sent reply within the edit window goes out as a correction, and only when its text changed;
  a refused edit answers the operator "That edit was not sent: <why>".
- A draft sent as edited says "(edited)" only when the text differs from the AI's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Protocol

from sqlalchemy.orm import Session

from bot.delivery.outbox import enqueue
from bot.domain.deliveries import DeliveryKind, DraftDone, StateChange
from bot.domain.types import ActionResult
from bot.operators.actions import OperatorActions
from bot.operators.conversations import Conversations, first_replies, latest_handoff_at
from bot.operators.quality import describe
from bot.prompts.texts import Texts

ALREADY_SENT = "already sent"  # a replayed event or a second press: nothing to tell


class ReplyRules(Protocol):
    """The settings the rules follow (the `slack` section: every console follows the same ones)."""

    @property
    def note_prefix(self) -> str: ...
    @property
    def show_operator_name(self) -> bool: ...
    @property
    def edit_window_s(self) -> float: ...


@dataclass(frozen=True)
class Outcome:
    """What an operator's reply came to, and what the operator who wrote it is told (only them); None: nothing."""

    result: ActionResult
    tell: str | None = None


@dataclass(frozen=True)
class DraftPost:
    """Where a console shows a draft, in its own terms: the core has it marked sent or discarded there."""

    channel: str
    ts: str


class OperatorReplies:
    def __init__(
        self,
        actions: OperatorActions,
        conversations: Conversations,
        texts: Texts,
        queue_channel: str,
        rules: ReplyRules,
    ) -> None:
        self._actions = actions
        self._conversations = conversations
        self._texts = texts
        self._queue = queue_channel
        self._rules = rules

    def is_note(self, text: str) -> bool:
        prefix = self._rules.note_prefix
        return bool(prefix) and text.startswith(prefix)

    def is_correction(self, old: str, new: str) -> bool:
        """An edit worth sending: a reply (not a note) whose text changed and is not empty (not an unfurl)."""
        return bool(new) and new != old and not self.is_note(old)

    # -- replies ----------------------------------------------------------------------------------

    async def reply(self, conversation_id: int, operator: str, text: str, dedup_key: str | None) -> Outcome:
        if self.is_note(text):
            note = text[len(self._rules.note_prefix) :].strip()
            return Outcome(await self._actions.note(conversation_id, operator, note))
        result = await self._actions.reply(
            conversation_id,
            operator,
            text,
            dedup_key,
            announce=self._rules.show_operator_name,
            also=partial(_first_response, self._queue, conversation_id),
        )
        return self._after(result, "Not sent")

    async def edit(self, conversation_id: int, operator: str, new: str, age_s: float, dedup_key: str | None) -> Outcome:
        """An operator changed a reply `age_s` after sending it (check `is_correction` first)."""
        refused = "That edit was not sent"
        if age_s > self._rules.edit_window_s:
            why = "the customer has the original. Reply again instead."
            return Outcome(ActionResult(False, why, conversation_id), f"{refused}: {why}")
        conversation = await self._conversations.get(conversation_id)
        language = conversation.language if conversation and conversation.language else self._texts.default_language
        correction = self._texts.render("operator_correction", language, text=new)
        also = partial(_first_response, self._queue, conversation_id)
        return self._after(
            await self._actions.reply(conversation_id, operator, correction, dedup_key, also=also), refused
        )

    async def claim(self, conversation_id: int, operator: str) -> ActionResult:
        return await self._actions.claim(conversation_id, operator, announce=self._rules.show_operator_name)

    # -- drafts -----------------------------------------------------------------------------------

    async def send_draft(
        self, handoff_id: int, operator: str, text: str | None = None, post: DraftPost | None = None
    ) -> Outcome:
        """Send the draft, or `text` (the operator's edit of it); `post` is then marked sent, in the same
        transaction as the reply."""
        draft = await self._conversations.draft(handoff_id)
        also = None
        if draft is not None:
            sent = (text if text is not None else draft.text).strip()
            done = self._draft_done(draft.conversation_id, post, "sent", operator, sent, sent != draft.text.strip())
            also = partial(_follow_ups, self._queue, draft.conversation_id, done)
        result = await self._actions.send_draft(
            handoff_id, operator, text, announce=self._rules.show_operator_name, also=also
        )
        if not result.ok:
            return Outcome(result, f"{'Nothing done' if text is None else 'Not sent'}: {result.message}.")
        return Outcome(result)

    async def discard_draft(self, handoff_id: int, operator: str, post: DraftPost | None = None) -> Outcome:
        draft = await self._conversations.draft(handoff_id) if post is not None else None
        done = draft and self._draft_done(draft.conversation_id, post, "discarded", operator, "", edited=False)
        also = partial(_enqueue_draft_done, self._queue, done) if done else None
        result = await self._actions.discard_draft(handoff_id, operator, also=also)
        if not result.ok:
            return Outcome(result, f"Nothing done: {result.message}.")
        return Outcome(result)

    # -- helpers ----------------------------------------------------------------------------------

    @staticmethod
    def _after(result: ActionResult, refused: str) -> Outcome:
        if not result.ok:  # the operator hears why, but not of a replayed event
            return Outcome(result, None if result.message == ALREADY_SENT else f"{refused}: {result.message}.")
        # coaching for the operator who replied; the customer never sees it
        return Outcome(result, describe(result.quality) if result.quality else None)

    @staticmethod
    def _draft_done(
        conversation_id: int, post: DraftPost | None, status: str, operator: str, text: str, edited: bool
    ) -> DraftDone | None:
        """The update of the draft's message (Sent by … / Discarded by …), when a console posted it."""
        if post is None or not post.ts:
            return None
        return DraftDone(
            conversation_id=conversation_id,
            channel=post.channel,
            ts=post.ts,
            status=status,
            operator=operator,
            text=text,
            edited=edited,
        )


def _follow_ups(queue: str, conversation_id: int, done: DraftDone | None, session: Session) -> None:
    """After a draft went out: the card's first response, then the draft's own message (behind the reply)."""
    _first_response(queue, conversation_id, session)
    if done is not None:
        _enqueue_draft_done(queue, done, session)


def _enqueue_draft_done(queue: str, done: DraftDone, session: Session) -> None:
    enqueue(session, queue, DeliveryKind.DRAFT_DONE, done, done.conversation_id)


def _first_response(queue: str, conversation_id: int, session: Session) -> None:
    """The card shows the first response time: refreshed when this reply is the first since the handoff."""
    handoff_at = latest_handoff_at(session, conversation_id)
    if handoff_at is not None and len(first_replies(session, conversation_id, handoff_at)) == 1:
        enqueue(session, queue, DeliveryKind.STATE, StateChange(conversation_id=conversation_id), conversation_id)
