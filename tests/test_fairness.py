"""Fair under abuse: one customer's huge messages do not hold back everyone else's answers."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from tests.test_shared import REDIS
from tests.test_telegram_harness import FakeTelegram, Harness, telegram_settings

HUGE = "🙂" * 4096


async def test_ten_flooders_do_not_hold_back_an_ordinary_customers_answer(tmp_path: Path) -> None:
    flooders = list(range(1, 11))
    async with FakeTelegram() as fake:
        settings = telegram_settings(tmp_path, fake)
        settings.embeddings.provider = "local"
        settings.automation.analysis_chars = 400  # still long to embed, and the test stays quick
        for chat in flooders:  # all in one getUpdates batch, the flood first
            fake.push_message(chat, HUGE)
        fake.push_message(100, "How do I return an item?")
        async with Harness(settings, fake) as harness:
            await fake.wait_for(lambda: all(fake.texts(chat) for chat in [*flooders, 100]), timeout=300)
            first: dict[int, int] = {}
            for n, call in enumerate(fake.called("sendmessage")):
                first.setdefault(int(call.params["chat_id"]), n)
            ahead = [chat for chat in flooders if first[chat] < first[100]]
            assert len(ahead) < len(flooders) // 2, ahead
            for chat in flooders:  # nothing lost: each flooder is answered and stored whole
                assert [m.text for m in await harness.messages(chat)] == [HUGE]
            assert "30 days" in fake.texts(100)[0]


async def test_a_flood_from_one_chat_is_limited_across_two_workers_sharing_redis(tmp_path: Path) -> None:
    host, port = REDIS.split("//")[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError as exc:
        pytest.skip(f"Redis not available at {REDIS}: {exc}")
    chat = random.randrange(10**9, 10**10)  # its counters are this test's own
    async with FakeTelegram() as fake_a, FakeTelegram() as fake_b:
        workers = []
        for name, fake in (("a", fake_a), ("b", fake_b)):
            settings = telegram_settings(tmp_path / name, fake, rate_limit_messages=3)
            settings.redis.url = REDIS
            workers.append(Harness(settings, fake))
        last = [
            [fake.push_message(chat, f"Where is my order? ({n})") for n in range(3)][-1] for fake in (fake_a, fake_b)
        ]
        async with workers[0] as a, workers[1] as b:
            await a.processed(last[0], timeout=30)
            await b.processed(last[1], timeout=30)
            await a.settle()
            await b.settle()
            stored = len(await a.messages(chat)) + len(await b.messages(chat))
            notice = a.app.texts.render("rate_limited", a.app.texts.default_language)
            told = [t for fake in (fake_a, fake_b) for t in fake.texts(chat) if t == notice]
    assert stored == 3  # three of six, whichever worker each reached
    assert len(told) == 1  # told once, by one of the workers
