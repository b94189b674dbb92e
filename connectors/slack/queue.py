"""The operator queue in Slack: the `OperatorConsole` that posts and updates cards, drafts and notices.

The core (bot.operators.queue) decides what to show and when; this module only turns it into Slack calls. A 429, 5xx or
network error raises `RetryLater` (the outbox tries again, as long as Slack asked when it did say).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.config import SlackSettings
from bot.domain.deliveries import CustomerMessage, DraftDone, HandoffCard
from bot.operators.conversations import CardState
from bot.ports import RetryLater
from connectors.slack import cards
from connectors.slack.access import DirectoryUnavailable
from connectors.slack.refs import split_ref, thread_ref
from connectors.slack.text import clip, escape

log = logging.getLogger(__name__)

GONE = ("message_not_found", "cant_update_message")  # someone deleted the message: nothing left to update


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


@contextmanager
def _as_retry() -> Iterator[None]:
    try:
        yield
    except SlackApiError as exc:
        raise retry_for(exc) from None
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise RetryLater(f"slack: network error {type(exc).__name__}") from None


class SlackQueue:
    """The `OperatorConsole` of the Slack queue channel (and the channels `slack.routes` sends topics to)."""

    def __init__(self, client: AsyncWebClient, settings: SlackSettings) -> None:
        self._client = client
        self._settings = settings
        self.replay_action: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # set by the Slack handlers

    def channel_for(self, topic: str | None) -> str:
        return self._settings.routes.get(topic or "", self._settings.queue_channel)

    async def open_thread(self, card: HandoffCard, state: CardState) -> str:
        text, blocks = cards.root_card(card, state)
        with _as_retry():
            posted = await self._client.chat_postMessage(
                channel=self.channel_for(card.topic), text=text, blocks=blocks, unfurl_links=False
            )
        return thread_ref(str(posted["channel"]), str(posted["ts"]))

    async def reopen_thread(self, thread: str, card: HandoffCard, state: CardState) -> None:
        await self.update_card(thread, card, state)
        text, blocks = cards.reopened(card)
        await self._post(split_ref(thread)[0], text, blocks, split_ref(thread)[1])

    async def update_card(self, thread: str, card: HandoffCard, state: CardState) -> None:
        channel, ts = split_ref(thread)
        text, blocks = cards.root_card(card, state)
        if not await self._update(channel, ts, text, blocks):
            log.warning("slack: the card of conversation %s is gone; not updated", card.conversation_id)

    async def post_draft(self, thread: str, card: HandoffCard) -> None:
        channel, ts = split_ref(thread)
        text, blocks = cards.draft_message(card, self._settings.note_prefix)
        await self._post(channel, text, blocks, ts)

    async def post_customer_message(self, thread: str | None, message: CustomerMessage) -> str | None:
        text, blocks = cards.customer_message(message)
        if thread is None:  # its handoff never reached Slack (parked): still show the message
            blocks.append(cards.context(f"Conversation #{message.conversation_id} (its card is missing)"))
            await self._post(self._settings.queue_channel, text, blocks)
            return None
        channel, ts = split_ref(thread)
        return await self._post(channel, text, blocks, ts)

    async def settle_draft(self, done: DraftDone) -> None:
        text, blocks = cards.draft_done(done)
        await self._update(done.channel, done.ts, text, blocks)

    async def post_notice(self, text: str) -> str:
        block = {"type": "section", "text": {"type": "mrkdwn", "text": clip(escape(text))}}
        return await self._post(self._settings.queue_channel, text, [block])

    async def replay(self, action: dict[str, Any]) -> None:
        if self.replay_action is None:
            raise RetryLater("slack: operator events are not handled in this process yet")
        try:
            await self.replay_action(action)
        except DirectoryUnavailable as exc:
            raise RetryLater(str(exc)) from None

    # -- Slack calls ------------------------------------------------------------------------------

    async def _post(self, channel: str, text: str, blocks: cards.Blocks, thread_ts: str | None = None) -> str:
        kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        with _as_retry():
            posted = await self._client.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, **kwargs
            )
        return thread_ref(str(posted["channel"]), str(posted["ts"]))

    async def _update(self, channel: str, ts: str, text: str, blocks: cards.Blocks) -> bool:
        """Update a message in place; False when it is gone."""
        with _as_retry():
            try:
                await self._client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
            except SlackApiError as exc:
                if exc.response.get("error") not in GONE:
                    raise
                return False
        return True
