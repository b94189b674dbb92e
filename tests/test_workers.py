"""Two workers on one PostgreSQL database: every customer message stored and answered once, every delivery sent once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func
from sqlalchemy.orm import Session
from sqlmodel import select

from bot.app import App, build_app
from bot.delivery.outbox import Outbox, enqueue
from bot.domain.types import Inbound
from bot.ports import RetryLater
from bot.storage.models import Conversation, Customer, Delivery, Message
from tests.conftest import Recorder, make_settings


@pytest.fixture
async def workers(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[App, App]]:
    apps = []
    for name in ("a", "b"):
        settings = make_settings(tmp_path / name, postgres_url)
        settings.outbox.lease_s = 0.6
        apps.append(await build_app(settings))
    yield apps[0], apps[1]
    for app in apps:
        await app.close()


def said(chat: int, message_id: str, text: str = "How do I return an item?") -> Inbound:
    return Inbound("test", str(chat), message_id, text, name=f"Customer {chat}")


async def test_first_messages_of_new_customers_spread_over_two_workers_are_each_answered_once(
    workers: tuple[App, App],
) -> None:
    a, b = workers
    # Every new customer sends two messages at once, one to each worker; Telegram redelivers the first to the other.
    arrivals = []
    for chat in range(40):
        arrivals += [
            a.desk.receive(said(chat, f"{chat}:1")),
            b.desk.receive(said(chat, f"{chat}:2", "Where is my order?")),
            b.desk.receive(said(chat, f"{chat}:1")),
        ]
    decisions = await asyncio.gather(*arrivals)
    async with a.sessions() as session:
        customers = (await session.execute(select(func.count()).select_from(Customer))).scalar_one()
        conversations = (await session.execute(select(func.count()).select_from(Conversation))).scalar_one()
        stored = (await session.execute(select(Message.external_id).where(Message.author == "customer"))).all()
        replies = (await session.execute(select(Delivery.conversation_id).where(Delivery.channel == "test"))).all()
    assert Counter(d.action for d in decisions)["duplicate"] == 40  # the redelivered copies, and only those
    assert (customers, conversations) == (40, 40)
    assert sorted(e for (e,) in stored) == sorted(f"{chat}:{n}" for chat in range(40) for n in (1, 2))
    assert Counter(c for (c,) in replies) == {c: 2 for c in Counter(c for (c,) in replies)}
    assert len(replies) == 80


async def _queue(app: App, count: int) -> None:
    def work(session: Session) -> None:
        for n in range(count):  # each its own conversation-less row: all go out side by side
            enqueue(session, "test", "text", {"chat_id": str(n), "text": f"reply {n}"})

    await app.transactions.run(work)


class SlowChannel(Recorder):
    """A channel that takes longer to answer than a claim's lease lasts."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    async def deliver(self, delivery: Delivery) -> str | None:
        await asyncio.sleep(self.seconds)
        return await super().deliver(delivery)


async def test_a_slow_channel_never_makes_a_second_worker_send_the_same_row(workers: tuple[App, App]) -> None:
    channels = [SlowChannel(seconds=1.5), SlowChannel(seconds=1.5)]  # 2.5 leases per send
    for app, channel in zip(workers, channels, strict=True):
        app.outbox.register("test", channel)
    await _queue(workers[0], 12)
    loops = [asyncio.create_task(app.outbox.run(poll_s=0.1)) for app in workers]
    try:
        await _until(lambda: sum(len(c.sent) for c in channels) >= 12)
        await asyncio.sleep(2)  # time for a wrongly re-claimed row to be sent a second time
    finally:
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    sent = Counter(d.id for c in channels for d in c.sent)
    assert len(sent) == 12 and set(sent.values()) == {1}


async def test_a_dead_workers_deliveries_move_to_another_within_a_lease(workers: tuple[App, App]) -> None:
    a, b = workers
    hung, alive = SlowChannel(seconds=3600), Recorder()
    a.outbox.register("test", hung)
    b.outbox.register("test", alive)
    await _queue(a, 5)
    dying = asyncio.create_task(a.outbox.deliver_due())  # claims every row, then hangs in the channel
    await asyncio.sleep(0.2)
    assert await b.outbox.deliver_due() == 0  # claimed by the other worker, which is still alive
    dying.cancel()  # the worker dies: its claims stay, nobody renews them
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    await asyncio.sleep(0.7)  # one lease
    assert await b.outbox.deliver_due() == 5
    assert sorted(d.payload["text"] for d in alive.sent) == sorted(f"reply {n}" for n in range(5))


async def _until(done: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not done():
            await asyncio.sleep(0.05)


async def test_a_huge_message_is_analysed_from_its_start_and_stored_whole(
    app: App, customers: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedded: list[int] = []  # the length of every text the embedder was given
    queries = app.index.embedder.queries

    async def measured(texts: Sequence[str]) -> np.ndarray:
        embedded.extend(len(t) for t in texts)
        return await queries(texts)

    monkeypatch.setattr(app.index.embedder, "queries", measured)
    text = "How do I return an item? " + "🙂" * 4000
    decision = await app.desk.receive(said(1, "huge-1", text))
    await app.outbox.deliver_due()
    async with app.sessions() as session:
        stored = (await session.execute(select(Message.text).where(Message.author == "customer"))).scalar_one()
    assert embedded and max(embedded) <= app.settings.automation.analysis_chars
    assert decision.answer is not None and decision.answer.sources == ("returns-policy",)
    assert stored == text and "30 days" in customers.texts()[0]


class FlakyChannel(Recorder):
    """A customer channel under load: every fifth call is a 429 or a 5xx, every call takes a moment."""

    def __init__(self, calls: itertools.count[int]) -> None:
        super().__init__()
        self._calls = calls

    async def deliver(self, delivery: Delivery) -> str | None:
        await asyncio.sleep(0.01)
        n = next(self._calls)
        if n % 10 == 3:
            raise RetryLater("429", after_s=0.01)
        if n % 10 == 7:
            raise ConnectionError("502 from the proxy")
        return await super().deliver(delivery)


async def test_a_short_soak_two_workers_faults_and_a_killed_worker_lose_and_duplicate_nothing(
    workers: tuple[App, App],
) -> None:
    """Customers spread over two workers (some updates redelivered to the other), a flaky channel, and one
    worker's outbox killed mid-way and replaced: every message stored once and answered exactly once."""
    for app in workers:  # a lease outlasting a busy machine's stalls: a lapse under load would be a real resend
        app.settings.outbox.lease_s = 2.0
    calls = itertools.count()
    channels = [FlakyChannel(calls), FlakyChannel(calls), FlakyChannel(calls)]
    for app, channel in zip(workers, channels[:2], strict=True):
        app.outbox.register("test", channel)
    loops = [asyncio.create_task(app.outbox.run(poll_s=0.05)) for app in workers]
    questions = ["How do I return an item?", "Where is my order?", "Can I pay by card?", "Thanks!"]
    sent: list[str] = []
    replied = 0  # messages the desk answered the customer for (a message to a conversation operators own is not)
    try:
        for wave in range(4):
            arrivals = []
            for chat in range(30):
                message_id = f"{chat}:{wave}"
                sent.append(message_id)
                first, other = workers if (chat + wave) % 2 else workers[::-1]
                arrivals.append(first.desk.receive(said(chat, message_id, questions[(chat + wave) % 4])))
                if chat % 5 == 0:  # the channel redelivers this update, to the other worker
                    arrivals.append(other.desk.receive(said(chat, message_id, questions[(chat + wave) % 4])))
            decisions = await asyncio.gather(*arrivals)
            replied += sum(d.action in ("answer", "handoff", "small_talk") for d in decisions)
            if wave == 1:  # worker a's outbox dies (its claims stay); a new one takes over in its place
                loops[0].cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loops[0]
                replacement = Outbox(workers[0].transactions, workers[0].settings.outbox, {"test": channels[2]})
                loops[0] = asyncio.create_task(replacement.run(poll_s=0.05))
        async with workers[0].sessions() as session:
            query = select(func.count()).select_from(Delivery).where(Delivery.channel == "test")
            expected = (await session.execute(query)).scalar_one()
        await _until(lambda: sum(len(c.sent) for c in channels) >= expected)
        await asyncio.sleep(1.5)  # time for a duplicate to show
    finally:
        for loop in loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
    async with workers[0].sessions() as session:
        stored = Counter(
            (await session.execute(select(Message.external_id).where(Message.author == "customer"))).scalars()
        )
        replies = (await session.execute(select(Delivery.id).where(Delivery.channel == "test"))).scalars().all()
    delivered = Counter(d.id for c in channels for d in c.sent)
    assert set(stored) == set(sent) and set(stored.values()) == {1}  # lost 0, stored twice 0
    assert len(replies) == replied > len(sent) // 2  # one reply (an answer or a notice) per message answered
    twice = {i: [n for n, c in enumerate(channels) for d in c.sent if d.id == i] for i, k in delivered.items() if k > 1}
    assert set(delivered) == set(replies) and set(delivered.values()) == {1}, twice  # answered exactly once
