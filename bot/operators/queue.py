"""The operator queue: the outbox's sender for the queue channel, which drives an `OperatorConsole`.

Kinds: `handoff` (the card and the draft in the conversation's thread; returns the thread, stored as the
conversation's `queue_thread`), `customer_message` (into the thread), `state` (the card shows where the
conversation stands), `draft_done` (the draft's message after Send / Discard), `notice` (a line for all
operators) and `operator_event` (an operator's action the console could not handle yet, replayed by it).

Cards are read from the database at delivery time, so a delayed or repeated delivery shows the conversation
as it is now. A handoff whose card was posted but not its draft remembers the thread (the delivery's `ref`)
and never posts the card twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from bot.delivery.outbox import Outbox
from bot.domain.deliveries import CustomerMessage, DeliveryKind, DraftDone, HandoffCard, Notice, StateChange, read
from bot.operators.conversations import Conversations
from bot.ports import OperatorConsole, Outgoing, RetryLater
from bot.storage.db import Transactions
from bot.storage.models import Conversation, Delivery

log = logging.getLogger(__name__)


class OperatorQueue:
    def __init__(self, transactions: Transactions, conversations: Conversations, outbox: Outbox, channel: str) -> None:
        self._transactions = transactions
        self._conversations = conversations
        self._outbox = outbox
        self.channel = channel  # the outbox's name of the queue
        self._console: OperatorConsole | None = None
        self._kinds: dict[str, Callable[[OperatorConsole, Outgoing], Awaitable[str | None]]] = {
            DeliveryKind.HANDOFF: self._handoff,
            DeliveryKind.CUSTOMER_MESSAGE: self._customer_message,
            DeliveryKind.STATE: self._state,
            DeliveryKind.DRAFT_DONE: self._draft_done,
            DeliveryKind.NOTICE: self._notice,
            DeliveryKind.OPERATOR_EVENT: self._operator_event,
        }

    def attach(self, console: OperatorConsole) -> None:
        """From now on the queue's deliveries go to `console`."""
        self._console = console
        self._outbox.register(self.channel, self)

    # -- what a console asks of the queue ---------------------------------------------------------

    async def notice(self, text: str) -> None:
        """A line for all operators, through the outbox (e.g. a broken prompt or knowledge edit)."""
        await self._outbox.later(self.channel, DeliveryKind.NOTICE, Notice(text=text))

    async def later(self, action: dict[str, Any], key: str) -> None:
        """Keep an operator's action the console cannot handle now (it can't tell who may act): the outbox
        hands it back to the console's `replay` until it is handled; `key` keeps one copy of it."""
        await self._outbox.later(self.channel, DeliveryKind.OPERATOR_EVENT, action, dedup_key=key)

    # -- delivering -------------------------------------------------------------------------------

    async def deliver(self, delivery: Outgoing) -> str | None:
        if self._console is None:
            raise RetryLater("no operator console in this process yet")
        handler = self._kinds.get(delivery.kind)
        if handler is None:
            log.warning("queue: no handler for a %r delivery, skipped", delivery.kind)
            return None
        return await handler(self._console, delivery)

    async def _handoff(self, console: OperatorConsole, delivery: Outgoing) -> str:
        card = read(delivery.payload, HandoffCard)
        thread = delivery.ref  # set when an earlier attempt already posted the card
        if thread is None:
            current = await self._conversations.thread(card.conversation_id)
            state = await self._conversations.card_state(card.conversation_id)
            if current:  # the conversation came back to people: same thread, card refreshed
                await console.reopen_thread(current, card, state)
                thread = current
            else:
                thread = await console.open_thread(card, state)
            await self._remember(delivery, card.conversation_id, thread)
        await console.post_draft(thread, card)
        return thread

    async def _customer_message(self, console: OperatorConsole, delivery: Outgoing) -> str | None:
        message = read(delivery.payload, CustomerMessage)
        return await console.post_customer_message(await self._conversations.thread(message.conversation_id), message)

    async def _state(self, console: OperatorConsole, delivery: Outgoing) -> str | None:
        conversation_id = read(delivery.payload, StateChange).conversation_id
        thread = await self._conversations.thread(conversation_id)
        card = await self._conversations.card(conversation_id)
        if thread is None or card is None:
            return None  # the card is not posted yet; it will show the state it finds then
        await console.update_card(thread, card, await self._conversations.card_state(conversation_id))
        return thread

    async def _draft_done(self, console: OperatorConsole, delivery: Outgoing) -> None:
        await console.settle_draft(read(delivery.payload, DraftDone))

    async def _notice(self, console: OperatorConsole, delivery: Outgoing) -> str | None:
        return await console.post_notice(read(delivery.payload, Notice).text)

    async def _operator_event(self, console: OperatorConsole, delivery: Outgoing) -> None:
        await console.replay(delivery.payload)

    async def _remember(self, delivery: Outgoing, conversation_id: int, thread: str) -> None:
        """Store the thread at once, so a retry of this delivery never posts a second card."""
        await self._transactions.run(partial(_remember, delivery.id, conversation_id, thread))
        delivery.ref = thread


def _remember(delivery_id: int | None, conversation_id: int, thread: str, session: Session) -> None:
    row = session.get(Delivery, delivery_id)
    if row is not None:
        row.ref = thread
    conversation = session.get(Conversation, conversation_id)
    if conversation is not None:
        conversation.queue_thread = thread
