"""Messages in a conversation's thread: an operator's reply, note, edit or deletion, turned into calls of the core.

What a reply does (notes, corrections, who joined, first response) is bot.operators.replies'; this module reads Slack's
events and tells the operator what the core answered, as an ephemeral only they see.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.operators.conversations import Conversations, ConversationView
from bot.operators.replies import OperatorReplies, Outcome
from connectors.slack.access import REFUSED, OperatorDirectory, tell
from connectors.slack.refs import thread_ref
from connectors.slack.text import to_plain

REPLY_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
FILES = "Files are not forwarded to the customer: paste a link instead."
DELETED = "Deleting a reply here does not unsend it: the customer already has it."


class ThreadMessages:
    def __init__(
        self,
        replies: OperatorReplies,
        conversations: Conversations,
        client: AsyncWebClient,
        directory: OperatorDirectory,
    ) -> None:
        self._replies = replies
        self._conversations = conversations
        self._client = client
        self._directory = directory

    async def handle(self, event: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            await self._changed(event)
        elif subtype == "message_deleted":
            await self._deleted(event)
        elif subtype in REPLY_SUBTYPES and not event.get("bot_id"):
            await self._reply(event)

    async def _reply(self, event: dict[str, Any]) -> None:
        channel, ts, thread_ts = str(event.get("channel", "")), str(event.get("ts", "")), event.get("thread_ts")
        if not thread_ts or thread_ts == ts:
            return  # a message in the channel, not in a conversation's thread
        conversation = await self._conversation(channel, str(thread_ts))
        if conversation is None:
            return
        user = str(event.get("user", ""))
        if not await self._directory.allowed(user, channel):
            await tell(self._client, channel, user, REFUSED, str(thread_ts))
            return
        operator = await self._directory.name(user)
        text = to_plain(str(event.get("text", "")))
        if event.get("files") and not self._replies.is_note(text):
            await tell(self._client, channel, user, FILES, str(thread_ts))
        if not text:
            return
        outcome = await self._replies.reply(conversation.id, operator, text, dedup_key=f"slack:{channel}:{ts}")
        await self._told(outcome, channel, user, str(thread_ts))

    async def _changed(self, event: dict[str, Any]) -> None:
        """An operator edited a thread reply: within the window, the customer gets a correction."""
        message, previous = event.get("message") or {}, event.get("previous_message") or {}
        if message.get("bot_id") or previous.get("bot_id") or message.get("subtype") == "bot_message":
            return
        channel, ts, thread_ts = str(event.get("channel", "")), str(message.get("ts", "")), message.get("thread_ts")
        new, old = to_plain(str(message.get("text", ""))), to_plain(str(previous.get("text", "")))
        if not thread_ts or thread_ts == ts or not self._replies.is_correction(old, new):
            return  # an unfurl, a note, or not a conversation reply
        conversation = await self._conversation(channel, str(thread_ts))
        if conversation is None:
            return
        user = str(message.get("user", ""))
        if not await self._directory.allowed(user, channel):
            return
        edited_ts = str((message.get("edited") or {}).get("ts") or event.get("ts") or ts)
        operator = await self._directory.name(user)
        dedup_key = f"slack-edit:{channel}:{ts}:{edited_ts}"
        outcome = await self._replies.edit(conversation.id, operator, new, float(edited_ts) - float(ts), dedup_key)
        await self._told(outcome, channel, user, str(thread_ts))

    async def _deleted(self, event: dict[str, Any]) -> None:
        """A customer cannot be made to unread a message: the operator is told so."""
        previous = event.get("previous_message") or {}
        thread_ts, user = previous.get("thread_ts"), str(previous.get("user", ""))
        channel = str(event.get("channel", ""))
        text = to_plain(str(previous.get("text", "")))
        if not thread_ts or previous.get("bot_id") or not user or self._replies.is_note(text):
            return
        if await self._conversation(channel, str(thread_ts)) is None:
            return
        await tell(self._client, channel, user, DELETED, thread_ts)

    async def _conversation(self, channel: str, thread_ts: str) -> ConversationView | None:
        return await self._conversations.by_thread(thread_ref(channel, thread_ts))

    async def _told(self, outcome: Outcome, channel: str, user: str, thread_ts: str) -> None:
        if outcome.tell:
            await tell(self._client, channel, user, outcome.tell, thread_ts)
