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

from bot.delivery.outbox import Outbox, enqueue
from bot.domain.deliveries import DeliveryKind, DraftDone, StateChange
from bot.domain.types import ActionResult
from bot.operators.actions import OperatorActions
from bot.operators.conversations import Conversations, first_replies, latest_handoff_at
from bot.operators.quality import describe
from bot.prompts.texts import Texts
from bot.storage.db import Transactions

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
        transactions: Transactions,
        conversations: Conversations,
        texts: Texts,
        outbox: Outbox,
        queue_channel: str,
        rules: ReplyRules,
    ) -> None:
        self._actions = actions
        self._transactions = transactions
        self._conversations = conversations
        self._texts = texts
        self._outbox = outbox
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
            conversation_id, operator, text, dedup_key, announce=self._rules.show_operator_name
        )
        return await self._after(result, "Not sent")

    async def edit(self, conversation_id: int, operator: str, new: str, age_s: float, dedup_key: str | None) -> Outcome:
        """An operator changed a reply `age_s` after sending it (check `is_correction` first)."""
        refused = "That edit was not sent"
        if age_s > self._rules.edit_window_s:
            why = "the customer has the original. Reply again instead."
            return Outcome(ActionResult(False, why, conversation_id), f"{refused}: {why}")
        conversation = await self._conversations.get(conversation_id)
        language = conversation.language if conversation and conversation.language else self._texts.default_language
        correction = self._texts.render("operator_correction", language, text=new)
        return await self._after(await self._actions.reply(conversation_id, operator, correction, dedup_key), refused)

    async def claim(self, conversation_id: int, operator: str) -> ActionResult:
        return await self._actions.claim(conversation_id, operator, announce=self._rules.show_operator_name)

    # -- drafts -----------------------------------------------------------------------------------

    async def send_draft(
        self, handoff_id: int, operator: str, text: str | None = None, post: DraftPost | None = None
    ) -> Outcome:
        """Send the draft, or `text` (the operator's edit of it); `post` is then marked sent."""
        draft = await self._conversations.draft(handoff_id)
        result = await self._actions.send_draft(handoff_id, operator, text, announce=self._rules.show_operator_name)
        if not result.ok:
            return Outcome(result, f"{'Nothing done' if text is None else 'Not sent'}: {result.message}.")
        if result.conversation_id is not None:
            await self._first_response(result.conversation_id)
        if post is not None and draft is not None:
            sent = (text if text is not None else draft.text).strip()
            await self._draft_done(result, post, "sent", operator, sent, edited=sent != draft.text.strip())
        return Outcome(result)

    async def discard_draft(self, handoff_id: int, operator: str, post: DraftPost | None = None) -> Outcome:
        result = await self._actions.discard_draft(handoff_id, operator)
        if not result.ok:
            return Outcome(result, f"Nothing done: {result.message}.")
        if post is not None:
            await self._draft_done(result, post, "discarded", operator, "", edited=False)
        return Outcome(result)

    # -- helpers ----------------------------------------------------------------------------------

    async def _after(self, result: ActionResult, refused: str) -> Outcome:
        if not result.ok:  # the operator hears why, but not of a replayed event
            return Outcome(result, None if result.message == ALREADY_SENT else f"{refused}: {result.message}.")
        if result.conversation_id is not None:
            await self._first_response(result.conversation_id)
        # coaching for the operator who replied; the customer never sees it
        return Outcome(result, describe(result.quality) if result.quality else None)

    async def _first_response(self, conversation_id: int) -> None:
        """The card shows the first response time: refresh it when the first reply went out."""
        if await self._transactions.run(partial(_first_response, self._queue, conversation_id)):
            self._outbox.wake()

    async def _draft_done(
        self, result: ActionResult, post: DraftPost, status: str, operator: str, text: str, edited: bool
    ) -> None:
        """Queue the update of the draft's message (Sent by … / Discarded by …) behind the reply itself."""
        if not post.ts or result.conversation_id is None:
            return
        done = DraftDone(
            conversation_id=result.conversation_id,
            channel=post.channel,
            ts=post.ts,
            status=status,
            operator=operator,
            text=text,
            edited=edited,
        )
        kind, conversation_id = DeliveryKind.DRAFT_DONE, result.conversation_id
        await self._transactions.run(
            partial(enqueue, channel=self._queue, kind=kind, payload=done, conversation_id=conversation_id)
        )
        self._outbox.wake()


def _first_response(queue: str, conversation_id: int, session: Session) -> bool:
    handoff_at = latest_handoff_at(session, conversation_id)
    if handoff_at is None or len(first_replies(session, conversation_id, handoff_at)) != 1:
        return False
    enqueue(session, queue, DeliveryKind.STATE, StateChange(conversation_id=conversation_id), conversation_id)
    return True
