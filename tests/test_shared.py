"""What workers share through Redis (real, at 127.0.0.1:6379): dedup, rate limits, caches; and a Redis outage."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest

from bot.shared import SharedState
from connectors.telegram.limits import RateLimiter, Verdict

REDIS = os.environ.get("RELAYDESK_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def two_workers() -> AsyncIterator[tuple[SharedState, SharedState]]:
    """Two workers' views of one Redis, under a prefix of this test's own (parallel runs do not collide)."""
    host, port = REDIS.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"Redis not available at {REDIS}: {exc}")
    prefix = f"relaydesk-test-{uuid.uuid4().hex[:8]}:"
    workers = SharedState(REDIS, prefix), SharedState(REDIS, prefix)
    yield workers
    for worker in workers:
        await worker.close()


async def test_an_event_seen_by_one_worker_is_not_handled_by_another(
    two_workers: tuple[SharedState, SharedState],
) -> None:
    a, b = two_workers
    assert await a.first_time("slack-event:Ev1", 60)
    assert not await b.first_time("slack-event:Ev1", 60)
    assert await b.first_time("slack-event:Ev2", 60)
    assert a.shared and b.shared


async def test_a_flood_is_limited_across_workers(two_workers: tuple[SharedState, SharedState]) -> None:
    a, b = (RateLimiter(worker, limit=3, window_s=60) for worker in two_workers)
    verdicts = [await (a if n % 2 else b).check("chat-1") for n in range(6)]
    assert verdicts == [Verdict.PASS] * 3 + [Verdict.NOTIFY, Verdict.DROP, Verdict.DROP]


async def test_a_cached_value_is_seen_by_every_worker_until_it_expires(
    two_workers: tuple[SharedState, SharedState],
) -> None:
    a, b = two_workers
    await a.put("slack-members:channel:C1", '["U1"]', 60)
    assert await b.get("slack-members:channel:C1") == '["U1"]'
    await a.put("short", "x", 0.05)
    assert await b.get("short") == "x"
    await asyncio.sleep(0.1)
    assert await b.get("short") is None


async def test_without_redis_each_worker_keeps_its_own_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on: Redis is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = SharedState(f"redis://127.0.0.1:{port}/0")
    try:
        with caplog.at_level(logging.WARNING, logger="bot.shared"):
            assert await worker.first_time("press:1", 60)
            assert not await worker.first_time("press:1", 60)  # dedup still holds within the worker
            assert [await worker.count("rate:a", 60) for _ in range(3)] == [1, 2, 3]
        assert not worker.shared
        warnings = [r.getMessage() for r in caplog.records if r.name == "bot.shared"]
        assert len(warnings) == 1 and "per worker" in warnings[0]  # said once, not per call
    finally:
        await worker.close()
