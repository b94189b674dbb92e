"""The buttons of a card and of its draft, and the draft's edit modal, turned into calls of the core.

A button is authorised against the queue channel the conversation's thread lives in, never against the
channel the request names.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.types import ActionResult
from bot.operators.actions import OperatorActions
from bot.operators.conversations import Conversations
from bot.operators.replies import DraftPost, OperatorReplies
from connectors.slack import cards
from connectors.slack.access import REFUSED, OperatorDirectory, tell
from connectors.slack.refs import split_ref

log = logging.getLogger(__name__)

_LEARNED = {cards.TEACH: "🎓", cards.ALWAYS_A_PERSON: "🙋"}  # buttons that teach the bot and leave the card as is


class CardButtons:
    def __init__(
        self,
        actions: OperatorActions,
        replies: OperatorReplies,
        conversations: Conversations,
        client: AsyncWebClient,
        directory: OperatorDirectory,
    ) -> None:
        self._actions = actions
        self._replies = replies
        self._conversations = conversations
        self._client = client
        self._directory = directory
        self.on_conversation: dict[str, Callable[[int, str], Awaitable[ActionResult]]] = {
            cards.CLAIM: replies.claim,
            cards.RESOLVE: actions.resolve,
            cards.RETURN: actions.return_to_bot,
            cards.TEACH: actions.teach,
            cards.ALWAYS_A_PERSON: actions.always_a_person,
        }
        self.on_draft = (cards.SEND, cards.DISCARD, cards.EDIT)

    async def press(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        container = body.get("container") or {}
        channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        message_ts = str(container.get("message_ts") or "")
        thread_ts = container.get("thread_ts")
        action_id, value = str(action.get("action_id")), str(action.get("value", ""))
        if not value.isdigit():
            return
        on_conversation = action_id in self.on_conversation
        home = await self._home(int(value) if on_conversation else None, None if on_conversation else int(value))
        if not home or not await self._directory.allowed(user, home):
            await tell(self._client, channel, user, REFUSED, thread_ts)
            return
        if action_id == cards.EDIT:  # the trigger id lives 3 s: open the modal before anything else
            await self._open_editor(int(value), str(body.get("trigger_id", "")), channel, message_ts, user, thread_ts)
            return
        operator = await self._directory.name(user)
        post = DraftPost(channel, message_ts)
        if action_id in self.on_conversation:
            result = await self.on_conversation[action_id](int(value), operator)
            if result.ok and action_id in _LEARNED:  # nothing changes on the card: say it worked
                message = f"{_LEARNED[action_id]} {result.message[:1].upper()}{result.message[1:]}."
                await tell(self._client, channel, user, message, thread_ts)
            if not result.ok:
                await tell(self._client, channel, user, f"Nothing done: {result.message}.", thread_ts)
        elif action_id == cards.SEND:
            outcome = await self._replies.send_draft(int(value), operator, None, post)
            await tell(self._client, channel, user, outcome.tell or "", thread_ts)
        else:  # DISCARD
            outcome = await self._replies.discard_draft(int(value), operator, post)
            await tell(self._client, channel, user, outcome.tell or "", thread_ts)

    async def submitted(self, body: dict[str, Any], view: dict[str, Any], text: str) -> None:
        """The edit modal came back: send the operator's version of the draft."""
        user = str((body.get("user") or {}).get("id", ""))
        handoff_id, _, rest = str(view.get("private_metadata", "")).partition("|")
        channel, _, message_ts = rest.partition("|")
        if not handoff_id.isdigit() or not channel:
            log.warning("slack: an edit modal came back without its draft reference")
            return
        home = await self._home(None, int(handoff_id))
        if not home or not await self._directory.allowed(user, home):
            await tell(self._client, channel, user, REFUSED, None)
            return
        operator = await self._directory.name(user)
        outcome = await self._replies.send_draft(
            int(handoff_id), operator, text.strip(), DraftPost(channel, message_ts)
        )
        if outcome.tell:
            await tell(self._client, channel, user, outcome.tell, await self._thread_of(outcome.result))

    async def _open_editor(
        self, handoff_id: int, trigger_id: str, channel: str, message_ts: str, user: str, thread_ts: str | None
    ) -> None:
        draft = await self._conversations.draft(handoff_id)
        refused = "the draft is gone" if draft is None else await self._actions.draft_refusal(handoff_id)
        if draft is None or refused:
            await tell(self._client, channel, user, f"Nothing done: {refused}.", thread_ts)
            return
        view = cards.edit_view(handoff_id, draft.text, channel, message_ts)
        try:
            await self._client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("slack: views.open failed: %s", exc.response.get("error"))
            await tell(
                self._client, channel, user, "Could not open the editor; reply in the thread instead.", thread_ts
            )

    async def _home(self, conversation_id: int | None, handoff_id: int | None) -> str:
        """The queue channel whose thread the conversation (or the handoff's) lives in; "" when none."""
        thread = await self._conversations.thread(conversation_id, handoff_id)
        return split_ref(thread)[0] if thread else ""

    async def _thread_of(self, result: ActionResult) -> str | None:
        if result.conversation_id is None:
            return None
        thread = await self._conversations.thread(result.conversation_id)
        return split_ref(thread)[1] if thread else None
