"""The only places the core meets the outside world: channels deliver what the outbox holds."""

from __future__ import annotations

from typing import Protocol

from bot.domain import Analysis, Answer
from bot.storage.models import Delivery


class RetryLater(Exception):
    """The channel is busy or down; try this delivery again (after `after_s` when it said so)."""

    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Undeliverable(Exception):
    """It will never go through (the customer blocked the bot, the chat is gone): stop retrying."""


class Sender(Protocol):
    """Delivers one outbox item; returns the channel's id of what it posted, if it has one."""

    async def deliver(self, delivery: Delivery) -> str | None: ...


class Responder(Protocol):
    """A brain: answers one customer message given the analysis and the conversation so far."""

    async def respond(self, text: str, analysis: Analysis, history: list[tuple[str, str]]) -> Answer: ...
