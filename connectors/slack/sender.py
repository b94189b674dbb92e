"""The operator queue's outbox sender: every Slack post and card update goes through here.

Kinds (from the core): `handoff` (root card + draft in its thread; returns "CHANNEL:TS", stored as the
conversation's `queue_thread`), `customer_message` (into the thread), `state` (re-render the root
card in place). Our own kinds: `draft_done` (the draft message after Send / Discard) and `operator_event` (an
operator's Slack event or button press that came while Slack could not say who may act: handled again,
by `replay`, until it can).

Cards are always rendered from the database at delivery time, so a delayed or repeated delivery
shows the conversation as it is now. A 429, 5xx or network error raises `RetryLater`; a handoff
that posted its root but not its draft remembers the root (`Delivery.ref`) and never posts it twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from bot.config import SlackSettings
from bot.deliveries import CustomerMessage, DeliveryKind, DraftDone, HandoffCard, Notice, StateChange, read
from bot.domain import Author
from bot.ports import RetryLater
from bot.storage.models import Conversation, Delivery, Handoff, Message
from connectors.slack import cards
from connectors.slack.access import DirectoryUnavailable
from connectors.slack.text import clip, escape

log = logging.getLogger(__name__)


def thread_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def split_ref(ref: str) -> tuple[str, str]:
    channel, _, ts = ref.partition(":")
    return channel, ts


def retry_for(exc: SlackApiError) -> RetryLater:
    """What a failed Slack call means for the outbox: wait as long as Slack asked, or back off."""
    status = exc.response.status_code
    if status == 429:
        try:
            after = float(exc.response.headers.get("Retry-After", "1"))
        except (TypeError, ValueError):
            after = 1.0
        return RetryLater("slack: rate limited (429)", after_s=after)
    if status >= 500:
        return RetryLater(f"slack: server error {status}")
    error = exc.response.get("error") if isinstance(exc.response.data, dict) else None
    return RetryLater(f"slack: {error or status}")  # e.g. not_in_channel: retried while an admin fixes it


async def latest_handoff_at(session: AsyncSession, conversation_id: int) -> datetime | None:
    """When the conversation was last handed to people: its first response time counts from there."""
    query = (
        select(Handoff.created_at)
        .where(Handoff.conversation_id == conversation_id)
        .order_by(col(Handoff.id).desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar()


class SlackQueue:
    """Delivers operator-queue items to Slack (the `Sender` of the queue channel)."""

    def __init__(
        self, client: AsyncWebClient, sessions: async_sessionmaker[AsyncSession], settings: SlackSettings
    ) -> None:
        self._client = client
        self._sessions = sessions
        self._settings = settings
        self._kinds: dict[str, Callable[[Delivery], Awaitable[str | None]]] = {
            DeliveryKind.HANDOFF: self._handoff,
            DeliveryKind.CUSTOMER_MESSAGE: self._customer_message,
            DeliveryKind.STATE: self._state,
            DeliveryKind.DRAFT_DONE: self._draft_done,
            DeliveryKind.NOTICE: self._notice,
            DeliveryKind.OPERATOR_EVENT: self._operator_event,
        }
        self.replay: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # set by the Slack handlers

    async def deliver(self, delivery: Delivery) -> str | None:
        handler = self._kinds.get(delivery.kind)
        if handler is None:
            log.warning("slack: no handler for a %r delivery, skipped", delivery.kind)
            return None
        try:
            return await handler(delivery)
        except SlackApiError as exc:
            raise retry_for(exc) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise RetryLater(f"slack: network error {type(exc).__name__}") from None

    def channel_for(self, topic: str | None) -> str:
        return self._settings.routes.get(topic or "", self._settings.queue_channel)

    # -- kinds ------------------------------------------------------------------------------------

    async def _operator_event(self, delivery: Delivery) -> None:
        if self.replay is None:
            raise RetryLater("slack: operator events are not handled in this process yet")
        try:
            await self.replay(delivery.payload)
        except DirectoryUnavailable as exc:
            raise RetryLater(str(exc)) from None

    async def _handoff(self, delivery: Delivery) -> str:
        payload = read(delivery.payload, HandoffCard)
        conversation_id = payload.conversation_id
        root = delivery.ref  # set when an earlier attempt already posted the root
        if root is None:
            current = await self._thread(conversation_id)
            if current:  # the conversation came back to people: same thread, card refreshed
                await self._update_root(current, payload, conversation_id)
                text, blocks = cards.reopened(payload)
                await self._post(split_ref(current)[0], text, blocks, split_ref(current)[1])
                root = current
            else:
                state = await self._card_state(conversation_id)
                text, blocks = cards.root_card(payload, state)
                posted = await self._client.chat_postMessage(
                    channel=self.channel_for(payload.topic), text=text, blocks=blocks, unfurl_links=False
                )
                root = thread_ref(str(posted["channel"]), str(posted["ts"]))
            await self._remember(delivery, conversation_id, root)
        channel, ts = split_ref(root)
        text, blocks = cards.draft_message(payload, self._settings.note_prefix)
        await self._post(channel, text, blocks, ts)
        return root

    async def _customer_message(self, delivery: Delivery) -> str | None:
        payload = read(delivery.payload, CustomerMessage)
        text, blocks = cards.customer_message(payload)
        thread = await self._thread(payload.conversation_id)
        if thread is None:  # its handoff never reached Slack (parked): still show the message
            blocks.append(cards.context(f"Conversation #{payload.conversation_id} (its card is missing)"))
            await self._post(self._settings.queue_channel, text, blocks)
            return None
        channel, ts = split_ref(thread)
        return await self._post(channel, text, blocks, ts)

    async def _state(self, delivery: Delivery) -> str | None:
        conversation_id = read(delivery.payload, StateChange).conversation_id
        thread = await self._thread(conversation_id)
        payload = await self._handoff_payload(conversation_id)
        if thread is None or payload is None:
            return None  # the card is not posted yet; it will show the state it finds then
        await self._update_root(thread, payload, conversation_id)
        return thread

    async def _draft_done(self, delivery: Delivery) -> str | None:
        done = read(delivery.payload, DraftDone)
        text, blocks = cards.draft_done(done)
        try:
            await self._client.chat_update(channel=done.channel, ts=done.ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            if exc.response.get("error") in ("message_not_found", "cant_update_message"):
                return None  # someone deleted the draft message: nothing left to update
            raise
        return None

    # -- helpers ----------------------------------------------------------------------------------

    async def _notice(self, delivery: Delivery) -> str:
        """A message for all operators, e.g. a refused prompt edit."""
        text = read(delivery.payload, Notice).text
        block = {"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(text))}}
        return await self._post(self._settings.queue_channel, text, [block])

    async def _post(self, channel: str, text: str, blocks: cards.Blocks, thread_ts: str | None = None) -> str:
        kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        posted = await self._client.chat_postMessage(
            channel=channel, text=text, blocks=blocks, unfurl_links=False, **kwargs
        )
        return thread_ref(str(posted["channel"]), str(posted["ts"]))

    async def _update_root(self, thread: str, payload: HandoffCard, conversation_id: int) -> None:
        channel, ts = split_ref(thread)
        text, blocks = cards.root_card(payload, await self._card_state(conversation_id))
        try:
            await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:
            if exc.response.get("error") not in ("message_not_found", "cant_update_message"):
                raise
            log.warning("slack: the card of conversation %s is gone; not updated", conversation_id)

    async def _thread(self, conversation_id: int) -> str | None:
        async with self._sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
        return conversation.queue_thread if conversation else None

    async def _remember(self, delivery: Delivery, conversation_id: int, root: str) -> None:
        """Store the root at once, so a retry of this delivery never posts a second card."""
        async with self._sessions() as session, session.begin():
            row = await session.get(Delivery, delivery.id)
            if row is not None:
                row.ref = root
            conversation = await session.get(Conversation, conversation_id)
            if conversation is not None:
                conversation.queue_thread = root
        delivery.ref = root

    async def _handoff_payload(self, conversation_id: int) -> HandoffCard | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(Delivery.payload)
                    .where(Delivery.conversation_id == conversation_id)
                    .where(Delivery.kind == DeliveryKind.HANDOFF)
                    .order_by(col(Delivery.id).desc())
                    .limit(1)
                )
            ).first()
        return read(row[0], HandoffCard) if row else None

    async def _card_state(self, conversation_id: int) -> cards.CardState:
        """State, owner and first response time (latest handoff → first operator message after it)."""
        async with self._sessions() as session:
            conversation = await session.get(Conversation, conversation_id)
            if conversation is None:
                return cards.CardState()
            handoff_at = await latest_handoff_at(session, conversation_id)
            first_reply = None
            if handoff_at is not None:
                first_reply = (
                    await session.execute(
                        select(Message.created_at)
                        .where(Message.conversation_id == conversation_id)
                        .where(Message.author == Author.OPERATOR)
                        .where(col(Message.created_at) >= handoff_at)
                        .order_by(col(Message.id))
                        .limit(1)
                    )
                ).scalar()
        seconds = (first_reply - handoff_at).total_seconds() if first_reply and handoff_at else None
        return cards.CardState(conversation.state, conversation.operator, seconds)
