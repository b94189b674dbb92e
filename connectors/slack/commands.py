"""`/relaydesk [stats|help]`: the queue now (only you see it), today's summary (posted), the list of commands."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncRespond

from bot.config import SlackSettings
from bot.operators.conversations import Conversations
from connectors.slack.access import OperatorDirectory
from connectors.slack.stats import HELP, REFUSED, USAGE, StatsCommand

log = logging.getLogger(__name__)


class SlashCommand:
    def __init__(
        self,
        conversations: Conversations,
        directory: OperatorDirectory,
        settings: SlackSettings,
        stats: StatsCommand | None,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._conversations = conversations
        self._directory = directory
        self._settings = settings
        self.stats = stats
        self._spawn = spawn  # work after the ack, tracked by the handlers

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        words = str(command.get("text") or "").split()
        sub = words[0].lower() if words else ""
        if not sub:
            counts = await self._conversations.queue_counts()
            await ack(f"{counts.waiting} waiting for a person, {counts.handled} being handled.")
        elif sub == "help":
            await ack(HELP)
        elif sub == "stats" and self.stats is not None:
            await ack()  # the report reads the day's event log: answer Slack now, post when it is ready
            self._spawn(self._post_stats(str(command.get("user_id", "")), respond))
        else:
            await ack(f"Unknown subcommand `{sub[:40]}`. {USAGE}")

    async def _post_stats(self, user: str, respond: AsyncRespond) -> None:
        """Operators only (members of a queue channel or the operator group); posted via the response URL.

        The response URL answers in the channel the command was typed in, whether or not the bot is a
        member (a DM, a private channel), where chat.postMessage would fail with not_in_channel.
        """
        assert self.stats is not None
        queues = dict.fromkeys([self._settings.queue_channel, *self._settings.routes.values()])
        allowed = False
        for channel in queues:
            if channel and await self._directory.allowed(user, channel):
                allowed = True
                break
        if not allowed:
            await respond(REFUSED, response_type="ephemeral")
            return
        text, blocks = await self.stats.today()
        answer = await respond(text, blocks=blocks, response_type="in_channel")
        if answer.status_code != 200:
            log.warning("slack: posting /relaydesk stats failed: %s %s", answer.status_code, answer.body[:100])
