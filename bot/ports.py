"""Where the core meets the outside world, all in one place.

Customers' side: a channel's `Sender` delivers what the outbox holds (`Outgoing`), a `Responder` is a brain.
Operators' side: an `OperatorConsole` (the Slack queue; a Telegram operator group could be another) shows what
the core asks it to (bot.operators.queue drives it) and calls the core back (bot.operators: replies, actions,
conversations). The CRM is an `OrderLookup`. A `Channel` is a connector `relaydesk run` starts and stops.
Connectors import these protocols and the core's types, never the storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.exc import DisconnectionError, OperationalError

if TYPE_CHECKING:  # only types: ports stay importable without the web server or the brains
    from aiohttp import web

    from bot.domain.deliveries import CustomerMessage, DraftDone, HandoffCard
    from bot.domain.types import Analysis, Answer
    from bot.operators.conversations import CardState
    from bot.orders.order import Order


class RetryLater(Exception):
    """The channel is busy or down; try this delivery again (after `after_s` when it said so)."""

    def __init__(self, reason: str, after_s: float | None = None) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Undeliverable(Exception):
    """It will never go through (the customer blocked the bot, the chat is gone): stop retrying."""


def storage_unavailable(exc: BaseException) -> bool:
    """The desk's database is away for a while (a connector waits it out and tries the update again)."""
    return isinstance(exc, (OperationalError, DisconnectionError))


class Outgoing(Protocol):
    """One outbox item as a channel sees it: its kind (bot.domain.deliveries.DeliveryKind) and payload (`read` it)."""

    id: int | None
    channel: str
    kind: str
    payload: dict[str, Any]
    conversation_id: int | None
    ref: str | None  # what the channel called it the last time it was tried, if it said


class Sender(Protocol):
    """Delivers one outbox item; returns the channel's id of what it posted, if it has one."""

    async def deliver(self, delivery: Outgoing) -> str | None: ...


class Responder(Protocol):
    """A brain: answers one customer message given the analysis and the conversation so far."""

    async def respond(self, text: str, analysis: Analysis, history: list[tuple[str, str]]) -> Answer: ...


class Channel(Protocol):
    """A connector to the outside world: registers its outbox sender and routes, runs, stops."""

    name: str

    async def start(self, server: web.Application) -> None: ...

    async def stop(self) -> None: ...


class CRMUnavailable(Exception):
    """The CRM did not answer (timeout, 5xx, bad JSON): the status can't be checked right now."""


class OrderLookup(Protocol):
    """A CRM: the order by its number, None when there is no such order; CRMUnavailable when it can't say."""

    async def order(self, order_id: str) -> Order | None: ...


class OperatorConsole(Protocol):
    """Where operators work: what the core asks it to show (bot.operators.queue.OperatorQueue calls these).

    A conversation lives in one thread of the console; `thread` is the console's own reference to it (Slack:
    "CHANNEL:TS"), which the core stores and hands back. Like a `Sender`, a method raises `RetryLater` when the
    console is busy or down: the outbox tries again. Cards come with the conversation as it is now.
    """

    async def open_thread(self, card: HandoffCard, state: CardState) -> str:
        """Post a newly handed-off conversation's card; the reference of its thread."""
        ...

    async def reopen_thread(self, thread: str, card: HandoffCard, state: CardState) -> None:
        """The conversation came back to people: refresh its card and say so in its thread."""
        ...

    async def update_card(self, thread: str, card: HandoffCard, state: CardState) -> None:
        """Show where the conversation stands (state, owner, first response) on its card."""
        ...

    async def post_draft(self, thread: str, card: HandoffCard) -> None:
        """The AI's draft (with Send / Edit / Discard) in the conversation's thread."""
        ...

    async def post_customer_message(self, thread: str | None, message: CustomerMessage) -> str | None:
        """A customer's message while people own the conversation; `thread` None when its card never arrived."""
        ...

    async def settle_draft(self, done: DraftDone) -> None:
        """A draft was sent or discarded: its message says so (it may be gone: nothing to do then)."""
        ...

    async def post_notice(self, text: str) -> str | None:
        """A line for all operators (a refused prompt or knowledge edit)."""
        ...

    async def replay(self, action: dict[str, Any]) -> None:
        """An operator's action this console kept for later (bot.operators.queue.OperatorQueue.later), handled now."""
        ...
