"""Slack's events, button presses, modal submissions and the slash command, handed to the parts that translate
them into calls of the core: thread (replies in a conversation's thread), buttons (cards, drafts, the edit
modal), commands (`/relaydesk`).

Every listener acknowledges first (Slack wants an answer within 3 s) and does the work afterwards in
a tracked task (`drain()` waits for them: tests and shutdown). Only members of the queue channel (or
of `slack.operator_group`) may act; anyone else gets an ephemeral refusal and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import App
from bot.config import SlackSettings
from connectors.slack import cards
from connectors.slack.access import DirectoryUnavailable, OperatorDirectory
from connectors.slack.buttons import CardButtons
from connectors.slack.commands import SlashCommand
from connectors.slack.stats import StatsCommand
from connectors.slack.thread import ThreadMessages

log = logging.getLogger(__name__)

EVENT_MEMORY_S = 3600.0  # Slack retries an event for about an hour: each event id is handled once within it


class SlackHandlers:
    def __init__(
        self,
        app: App,
        client: AsyncWebClient,
        directory: OperatorDirectory,
        settings: SlackSettings,
        stats: StatsCommand | None = None,
    ) -> None:
        self._app = app
        self._tasks: set[asyncio.Task[None]] = set()
        self.thread = ThreadMessages(app.replies, app.conversations, client, directory)
        self.buttons = CardButtons(app.operators, app.replies, app.conversations, client, directory)
        self.command = SlashCommand(app.conversations, directory, settings, stats, self._spawn)

    @property
    def stats(self) -> StatsCommand | None:
        return self.command.stats

    def register(self, app: AsyncApp) -> None:
        app.event("message")(self.on_message)
        for action_id in (*self.buttons.on_conversation, *self.buttons.on_draft):
            app.action(action_id)(self.on_button)
        app.view(cards.EDIT_VIEW)(self.on_edit_submitted)
        app.command("/relaydesk")(self.on_command)

    async def drain(self) -> None:
        """Wait until every piece of work started by a Slack request has finished."""
        for _ in range(100):
            await asyncio.sleep(0.01)  # let Bolt start listeners it has scheduled
            if not self._tasks:
                return
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # after the ack nobody is waiting for an answer: log, never crash the loop
            log.exception("slack: handling a request failed")

    async def _first_time(self, event_id: str | None) -> bool:
        """Slack redelivers an event it thinks we missed (same event_id): handle each once."""
        if not event_id:
            return True
        return await self._app.shared.first_time(f"slack-event:{event_id}", EVENT_MEMORY_S)  # by any worker

    # -- listeners: acknowledge, then work --------------------------------------------------------

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if await self._first_time(body.get("event_id")):  # Bolt has acknowledged events already
            self._spawn(self._or_later({"event": event}, f"{event.get('channel')}:{event.get('ts')}"))

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = (body.get("user") or {}).get("id")
        self._spawn(self._or_later({"body": body, "action": action}, f"{user}:{action.get('action_ts')}"))

    async def on_edit_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = (view.get("state") or {}).get("values") or {}
        text = ((values.get(cards.EDIT_BLOCK) or {}).get(cards.EDIT_INPUT) or {}).get("value") or ""
        if not text.strip():
            await ack(response_action="errors", errors={cards.EDIT_BLOCK: "Write the reply to send."})
            return
        await ack()
        self._spawn(self.buttons.submitted(body, view, text))

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        await self.command.on_command(ack, command, respond)

    async def replay(self, payload: dict[str, Any]) -> None:
        """Handle an event or a button press kept by `_or_later` (raises DirectoryUnavailable while Slack can't say)."""
        if "event" in payload:
            await self.thread.handle(payload["event"])
        else:
            await self.buttons.press(payload["body"], payload["action"])

    async def _or_later(self, payload: dict[str, Any], key: str) -> None:
        """Handle it now, or, when Slack cannot say whether the operator may act, keep it in the outbox: it is
        handled (sent, or refused with a note the operator sees) once Slack answers again; never lost."""
        try:
            await self.replay(payload)
        except DirectoryUnavailable:
            await self._app.queue.later(payload, key=f"slack-later:{key}")
            log.warning("slack: could not check an operator's rights; their action waits in the outbox")
