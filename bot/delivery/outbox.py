"""The persisted outbox: every message out of the desk waits here until its channel takes it.

Rows are written in the same transaction as the state change that caused them, so a crash either
loses both or neither. Delivery is at-least-once and in order per conversation and channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import col, select

from bot.config import OutboxSettings
from bot.domain.deliveries import DeliveryKind, Payload
from bot.ports import RetryLater, Sender, Undeliverable
from bot.storage.db import Transactions
from bot.storage.models import STUCK, Conversation, Customer, Delivery, DeliveryStatus, table, utcnow

log = logging.getLogger(__name__)

PARALLEL_CONVERSATIONS = 8  # deliveries in flight at once, each to a different conversation
_NEW_DELIVERY = insert(table(Delivery))


def enqueue(
    session: Session,
    channel: str,
    kind: DeliveryKind,
    payload: Payload | dict[str, Any],
    conversation_id: int | None = None,
    dedup_key: str | None = None,
) -> None:
    """Queue a delivery in the caller's transaction (a plain insert, as bot.delivery.journal's writes; an async caller
    passes it to `AsyncSession.run_sync`). A `dedup_key` already queued fails the insert: sent once.

    The payload is the kind's model (bot.domain.deliveries); a plain dict only for a connector's own data that it
    replays itself (an operator event)."""
    data = payload.as_data() if isinstance(payload, Payload) else payload
    row = {"channel": channel, "kind": str(kind), "payload": data, "conversation_id": conversation_id}
    session.execute(_NEW_DELIVERY, {**row, "dedup_key": dedup_key})


class Outbox:
    def __init__(
        self,
        transactions: Transactions,
        settings: OutboxSettings,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self._transactions = transactions
        self._settings = settings
        self._senders: dict[str, Sender] = dict(senders or {})
        self._may_have_parked: set[str] = set(self._senders)  # channels whose parked rows a success revives
        self._wake = asyncio.Event()
        self.observers: list[Callable[[Delivery, DeliveryStatus | None], None]] = []  # e.g. live metrics
        """Told of every attempt: the row's status after it, None when it will be retried."""

    def register(self, channel: str, sender: Sender) -> None:
        self._senders[channel] = sender
        self._may_have_parked.add(channel)

    def wake(self) -> None:
        self._wake.set()

    async def later(
        self, channel: str, kind: DeliveryKind, payload: Payload | dict[str, Any], dedup_key: str | None = None
    ) -> bool:
        """Queue a delivery in a transaction of its own (a connector's deferred work); False when `dedup_key`
        was queued already."""
        try:
            await self._transactions.run(
                partial(enqueue, channel=channel, kind=kind, payload=payload, dedup_key=dedup_key)
            )
        except IntegrityError:
            return False
        self.wake()
        return True

    async def run(self, poll_s: float = 1.0) -> None:
        """Deliver forever: at once when woken, otherwise every `poll_s` (for retries that fall due)."""
        while True:
            try:
                await self.deliver_due()
            except Exception:  # a database hiccup must not kill delivery for good
                log.exception("outbox: delivery pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), poll_s)
            self._wake.clear()

    async def deliver_due(self, limit: int = 200) -> int:
        """One pass over pending rows; returns how many were delivered.

        Conversations are delivered side by side (a slow chat must not hold up the others); within one
        conversation and channel, in order, and nothing after a failure.
        """
        lease = Lease(time.monotonic() + self._settings.lease_s)  # counted from before the claim: on the safe side
        claimed = await self._claim(limit)
        held = {delivery.id for delivery in claimed}  # claimed and not finished: their lease is renewed
        renewal = asyncio.create_task(self._renew(held, lease))
        try:
            return await self._deliver_claimed(claimed, held, lease)
        finally:
            renewal.cancel()  # gather, not a suppressed await: a cancellation of this pass itself must go through
            await asyncio.gather(renewal, return_exceptions=True)

    async def _deliver_claimed(self, claimed: list[Delivery], held: set[int | None], lease: Lease) -> int:
        queues: dict[str, list[Delivery]] = {}
        for delivery in claimed:
            # rows outside a conversation keep no order with each other: a queue of their own
            scope = delivery.conversation_id if delivery.conversation_id is not None else f"row{delivery.id}"
            queues.setdefault(f"{delivery.channel}:{scope}", []).append(delivery)
        gate = asyncio.Semaphore(PARALLEL_CONVERSATIONS)

        async def in_order(rows: list[Delivery]) -> int:
            async with gate:
                for i, delivery in enumerate(rows):
                    if lease.lapsed():  # this worker stalled: another may own these rows now; a later pass sees
                        held.difference_update(later.id for later in rows[i:])
                        return i
                    outcome = await self._deliver(delivery)
                    held.discard(delivery.id)
                    for observe in self.observers:
                        observe(delivery, outcome)
                    if outcome != DeliveryStatus.SENT:
                        for later in rows[i + 1 :]:
                            await self._release(later)  # keep order: wait behind the one that failed
                            held.discard(later.id)
                        return i
                return len(rows)

        return sum(await asyncio.gather(*(in_order(rows) for rows in queues.values())))

    async def _claim(self, limit: int) -> list[Delivery]:
        lease = timedelta(seconds=self._settings.lease_s)
        return await self._transactions.run(partial(_claim, list(self._senders), limit, lease))

    async def _renew(self, held: set[int | None], claim: Lease) -> None:
        """Keep the claimed rows' lease while the pass runs: a slow channel never lets another worker claim a
        row this one is still sending, and a worker that dies frees its rows within one short lease."""
        lease = timedelta(seconds=self._settings.lease_s)
        while True:
            await asyncio.sleep(self._settings.lease_s / 3)
            if held:
                try:
                    renewed = time.monotonic() + self._settings.lease_s
                    await self._transactions.run(partial(_renew, list(held), lease))
                    claim.until = renewed
                except Exception:
                    log.exception("outbox: the lease of %d deliveries could not be renewed", len(held))

    async def _release(self, delivery: Delivery) -> None:
        await self._transactions.run(partial(_release, delivery.id))

    async def _deliver(self, delivery: Delivery) -> DeliveryStatus | None:
        """Send one row; its status after the attempt (None: it will be tried again)."""
        sender = self._senders[delivery.channel]
        try:
            ref = await sender.deliver(delivery)
        except Undeliverable as exc:
            await self._finish(delivery, DeliveryStatus.DEAD, str(exc), undeliverable=True)
            log.warning("outbox: delivery %s to %s undeliverable: %s", delivery.id, delivery.channel, exc)
            return DeliveryStatus.DEAD
        except RetryLater as exc:
            return await self._retry(delivery, str(exc), exc.after_s)
        except Exception as exc:
            return await self._retry(delivery, f"{type(exc).__name__}: {exc}", None)
        # The channel has it: record that even if this worker is being stopped now, or another sends it again.
        finishing = asyncio.ensure_future(self._finish(delivery, DeliveryStatus.SENT, "", ref=ref))
        try:
            await asyncio.shield(finishing)
        except asyncio.CancelledError:
            await finishing
            raise
        if delivery.channel in self._may_have_parked:  # the channel answers again: what it gave up on goes out
            self._may_have_parked.discard(delivery.channel)
            revived = await self._transactions.run(partial(requeue, (DeliveryStatus.PARKED,), delivery.channel, None))
            if revived:
                log.warning("outbox: %s answers again; %d parked deliveries re-queued", delivery.channel, revived)
                self.wake()
        return DeliveryStatus.SENT

    async def _retry(self, delivery: Delivery, error: str, after_s: float | None) -> DeliveryStatus | None:
        attempts = delivery.attempts + 1
        if attempts >= self._settings.max_attempts:
            log.error(
                "outbox: delivery %s to %s failed %d times, parked until the channel answers again: %s",
                delivery.id,
                delivery.channel,
                attempts,
                error,
            )
            await self._finish(delivery, DeliveryStatus.PARKED, error)
            self._may_have_parked.add(delivery.channel)
            return DeliveryStatus.PARKED
        backoff = min(self._settings.backoff_s * 2 ** (attempts - 1), self._settings.max_backoff_s)
        delay = after_s if after_s is not None else backoff
        log.info("outbox: delivery %s to %s will retry in %.1fs: %s", delivery.id, delivery.channel, delay, error)
        await self._transactions.run(partial(_retry, delivery.id, attempts, error, delay))
        return None

    async def _finish(
        self,
        delivery: Delivery,
        status: DeliveryStatus,
        error: str,
        ref: str | None = None,
        undeliverable: bool = False,
    ) -> None:
        await self._transactions.run(partial(_finish, delivery.id, status, error, ref, undeliverable))


@dataclass
class Lease:
    """Until when (monotonic) this worker's claim on a pass's rows holds, as far as it knows."""

    until: float

    def lapsed(self) -> bool:
        # a margin for the clocks and the claim's own transaction: never start a send near the end of a claim
        return time.monotonic() > self.until - LEASE_MARGIN_S


LEASE_MARGIN_S = 0.1


def requeue(
    statuses: tuple[DeliveryStatus, ...], channel: str | None, delivery_ids: list[int] | None, session: Session
) -> int:
    """Rows in `statuses` (of a channel, with these ids when given) back to pending, attempts from zero; how many."""
    rows = update(table(Delivery)).where(col(Delivery.status).in_(statuses))
    if channel is not None:
        rows = rows.where(col(Delivery.channel) == channel)
    if delivery_ids is not None:
        rows = rows.where(col(Delivery.id).in_(delivery_ids))
    changed = session.execute(rows.values(status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=utcnow()))
    return int(changed.rowcount)  # type: ignore[attr-defined]


def stuck(session: Session) -> list[Delivery]:
    """The rows no worker sends on its own any more (parked and dead), oldest first."""
    return list(
        session.execute(select(Delivery).where(col(Delivery.status).in_(STUCK)).order_by(col(Delivery.id))).scalars()
    )


def _claim(channels: list[str], limit: int, lease: timedelta, session: Session) -> list[Delivery]:
    now = utcnow()
    query = (
        select(Delivery)
        .where(Delivery.status == DeliveryStatus.PENDING)
        .where(col(Delivery.channel).in_(channels))
        .order_by(col(Delivery.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    waiting: set[tuple[str, int | None]] = set()
    claimed = []
    for row in session.execute(query).scalars():
        key = (row.channel, row.conversation_id)
        if row.next_attempt_at > now or (key in waiting and row.conversation_id is not None):
            waiting.add(key)  # an earlier message of this conversation is not due yet
            continue
        row.next_attempt_at = now + lease
        claimed.append(row)
    return claimed


def _renew(delivery_ids: list[int | None], lease: timedelta, session: Session) -> None:
    rows = update(table(Delivery)).where(
        col(Delivery.id).in_(delivery_ids), col(Delivery.status) == DeliveryStatus.PENDING
    )
    session.execute(rows.values(next_attempt_at=utcnow() + lease))


def _release(delivery_id: int | None, session: Session) -> None:
    row = session.get(Delivery, delivery_id)
    if row is not None:
        row.next_attempt_at = utcnow()


def _retry(delivery_id: int | None, attempts: int, error: str, delay: float, session: Session) -> None:
    row = session.get(Delivery, delivery_id)
    if row is not None:
        row.attempts = attempts
        row.last_error = error[:500]
        row.next_attempt_at = utcnow() + timedelta(seconds=delay)


def _finish(
    delivery_id: int | None,
    status: DeliveryStatus,
    error: str,
    ref: str | None,
    undeliverable: bool,
    session: Session,
) -> None:
    row = session.get(Delivery, delivery_id)
    if row is None:
        return
    row.status = status
    row.last_error = error[:500]
    row.attempts += 1
    if status == DeliveryStatus.SENT:
        row.sent_at = utcnow()
        row.ref = ref
    if ref and row.kind == DeliveryKind.HANDOFF and row.conversation_id is not None:
        conversation = session.get(Conversation, row.conversation_id)
        if conversation is not None:
            conversation.queue_thread = ref
    if undeliverable and row.conversation_id is not None:
        owner = session.get(Conversation, row.conversation_id)
        customer = session.get(Customer, owner.customer_id) if owner is not None else None
        if customer is not None and customer.channel == row.channel:
            customer.blocked = True  # e.g. the customer blocked the bot: stop writing to them
