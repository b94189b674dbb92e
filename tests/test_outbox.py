"""The outbox: outages delay messages, never lose or reorder them; a blocked customer stops retries."""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.orm import Session
from sqlmodel import select

from bot.app import App
from bot.cli import main
from bot.delivery.outbox import enqueue
from bot.domain.types import Inbound
from bot.ports import RetryLater, Undeliverable
from bot.storage.db import create_engine, migrate, sessions
from bot.storage.models import Customer, Delivery, DeliveryStatus
from tests.conftest import Recorder


async def _queue(app: App, texts: list[str], conversation_id: int | None = None) -> None:
    def write(session: Session) -> None:
        for text in texts:
            enqueue(session, "test", "text", {"chat_id": "1", "text": text}, conversation_id)

    await app.transactions.run(write)


async def _wait_until_due(app: App) -> None:
    await asyncio.sleep(0.05)  # backoff in tests is 10 ms


async def test_an_outage_delays_messages_then_delivers_all_in_order(app: App) -> None:
    channel = Recorder()
    channel.failures = [ConnectionError("down"), RetryLater("429", after_s=0.01)]
    app.outbox.register("test", channel)
    decision = await app.desk.receive(Inbound("test", "1", "x1", "How do I return an item?"))
    await _queue(app, ["second", "third"], decision.conversation_id)
    for _ in range(5):
        await app.outbox.deliver_due()
        await _wait_until_due(app)
    assert channel.texts()[1:] == ["second", "third"]
    assert len(channel.sent) == 3
    async with app.sessions() as session:
        first = await session.get(Delivery, channel.sent[0].id)
    assert first is not None and first.status == "sent" and first.attempts == 3


async def _answer_a_customer_who_blocked_the_bot(app: App) -> Recorder:
    """Customer 9 asks; delivering the answer finds the bot blocked. The channel works from then on."""
    channel = Recorder()
    channel.failures = [Undeliverable("Forbidden: bot was blocked by the user")]
    app.outbox.register("test", channel)
    await app.desk.receive(Inbound("test", "9", "b1", "How do I return an item?"))
    await app.outbox.deliver_due()
    return channel


async def test_a_blocked_customer_is_marked_and_not_retried(app: App) -> None:
    channel = await _answer_a_customer_who_blocked_the_bot(app)
    await app.outbox.deliver_due()
    async with app.sessions() as session:
        customer = (await session.execute(select(Customer))).scalars().one()
        delivery = (await session.execute(select(Delivery))).scalars().one()
    assert customer.blocked and delivery.status == "dead" and channel.sent == []


async def test_a_customer_who_blocked_the_bot_and_writes_again_is_answered(app: App) -> None:
    channel = await _answer_a_customer_who_blocked_the_bot(app)
    await app.desk.receive(Inbound("test", "9", "b2", "Where is my order?"))
    await app.outbox.deliver_due()
    async with app.sessions() as session:
        customer = (await session.execute(select(Customer))).scalars().one()
    assert not customer.blocked and len(channel.sent) == 1


async def test_after_max_attempts_a_delivery_is_parked_not_dropped(app: App) -> None:
    app.settings.outbox.max_attempts = 2
    channel = Recorder()
    channel.failures = [OSError("down")] * 5
    app.outbox.register("test", channel)
    await _queue(app, ["hello"])
    for _ in range(3):
        await app.outbox.deliver_due()
        await _wait_until_due(app)
    async with app.sessions() as session:
        delivery = (await session.execute(select(Delivery))).scalars().one()
    assert delivery.status == "parked" and "down" in delivery.last_error
    assert delivery.payload["text"] == "hello"
    assert channel.sent == []
    channel.failures.clear()
    await _queue(app, ["after the outage"])  # the channel answers again: the parked row goes out too
    await app.outbox.deliver_due()
    await app.outbox.deliver_due()
    assert sorted(channel.texts()) == ["after the outage", "hello"]


async def test_messages_for_a_channel_nobody_serves_wait(app: App) -> None:
    await app.transactions.run(
        partial(enqueue, channel="telegram", kind="text", payload={"chat_id": "1", "text": "later"})
    )
    assert await app.outbox.deliver_due() == 0
    async with app.sessions() as session:
        delivery = (await session.execute(select(Delivery))).scalars().one()
    assert delivery.status == "pending"


async def test_the_background_loop_delivers_when_woken(app: App) -> None:
    channel = Recorder()
    app.outbox.register("test", channel)
    task = asyncio.create_task(app.outbox.run(poll_s=60))
    try:
        await app.desk.receive(Inbound("test", "3", "w1", "Where is my order?"))
        for _ in range(1000):  # woken at once; the next poll is a minute away
            if channel.sent:
                break
            await asyncio.sleep(0.005)
    finally:
        task.cancel()  # and wait for it: a loop cancelled mid-transaction must be gone before the engine closes
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(channel.sent) == 1


def test_relaydesk_outbox_lists_stuck_deliveries_and_sends_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: sqlite+aiosqlite:///{tmp_path}/desk.db\n", encoding="utf-8")
    monkeypatch.setenv("RELAYDESK_CONFIG", str(config))
    statuses = [DeliveryStatus.SENT, DeliveryStatus.PARKED, DeliveryStatus.DEAD, DeliveryStatus.PARKED]

    async def seed() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/desk.db")
        await migrate(engine)
        async with sessions(engine)() as session, session.begin():
            for n, status in enumerate(statuses):
                session.add(Delivery(channel="slack", kind="handoff", payload={"n": n}, status=status, attempts=12))
        await engine.dispose()

    asyncio.run(seed())
    assert main(["outbox", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(row["id"], row["status"]) for row in listed] == [(2, "parked"), (3, "dead"), (4, "parked")]
    assert main(["report", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["stuck_deliveries"] == {"slack dead": 1, "slack parked": 2}
    assert main(["outbox", "--requeue", "3"]) == 0
    assert "1 deliveries re-queued" in capsys.readouterr().out
    assert main(["outbox", "--requeue", "all"]) == 0
    assert "2 deliveries re-queued" in capsys.readouterr().out
    assert main(["outbox"]) == 0
    assert "0 stuck deliveries" in capsys.readouterr().out
    assert main(["outbox", "--requeue", "two"]) == 2
    assert "expected delivery ids or `all`" in capsys.readouterr().err
