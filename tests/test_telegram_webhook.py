"""Webhook mode on relaydesk's own HTTP server, and `relaydesk run` with Telegram switched on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web

from bot.config import ConfigError
from bot.domain.types import Decision, Inbound
from bot.runner import start
from tests.fakes.telegram_api import FakeTelegram
from tests.test_telegram_harness import SECRET, Harness, free_port, telegram_settings

CHAT = 2002
HEADER = "X-Telegram-Bot-Api-Secret-Token"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def desk(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Harness]:
    async with Harness(telegram_settings(tmp_path, fake, mode="webhook"), fake) as harness:
        await fake.wait_for(lambda: bool(fake.webhook))
        yield harness


async def test_webhook_is_registered_with_its_secret_and_answers_customers(desk: Harness, fake: FakeTelegram) -> None:
    assert fake.webhook == {"url": desk.webhook_url, "secret_token": SECRET}
    (call,) = fake.called("setWebhook")
    assert "message" in call.params["allowed_updates"] and "callback_query" in call.params["allowed_updates"]
    fake.push_message(CHAT, "How do I return an item?")  # Telegram POSTs it to our webhook
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    assert "30 days" in fake.texts(CHAT)[0]
    assert fake.webhook_statuses == [200]
    assert fake.called("getUpdates", ok_only=False) == []
    helped = fake.buttons(fake.sent(CHAT)[0])[0][1]
    fake.push_callback(CHAT, helped, callback_id="wh-press")
    await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == 1)
    assert [f.kind for f in await desk.feedback()] == ["helpful"]


async def test_webhook_refuses_requests_without_the_secret_and_malformed_bodies(desk: Harness) -> None:
    good = json.dumps(
        {"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": CHAT, "type": "private"}}}
    )
    cases = [
        ({}, good.encode(), 401),
        ({HEADER: "wrong"}, good.encode(), 401),
        ({HEADER: SECRET[:-1]}, good.encode(), 401),
        ({HEADER: SECRET}, b"not json at all", 400),
        ({HEADER: SECRET}, b'{"update_id": 1, "message": {"text": "\xff\xfe broken utf-8"}}', 400),
        ({HEADER: SECRET}, b"[1, 2, 3]", 400),
        ({HEADER: SECRET}, b'{"message": {}}', 400),
        ({HEADER: SECRET}, b'{"update_id": "x"}', 400),
        ({HEADER: SECRET}, b"[" * 100_000 + b"]" * 100_000, 400),
        ({HEADER: SECRET}, b"", 400),
        ({HEADER: SECRET}, good.encode(), 200),
    ]
    async with ClientSession() as http:
        for headers, body, expected in cases:
            async with http.post(desk.webhook_url, data=body, headers=headers) as response:
                assert response.status == expected, (headers, body[:40])
    assert len(await desk.messages(CHAT)) == 0  # the valid update had no text: nothing to store


async def test_a_failing_desk_answers_503_and_telegram_redelivers_until_it_is_stored(
    desk: Harness, fake: FakeTelegram
) -> None:
    original = desk.app.desk.receive
    failures = iter([RuntimeError("database is restarting")])

    async def flaky(inbound: Inbound) -> Decision:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return await original(inbound)

    desk.app.desk.receive = flaky  # type: ignore[method-assign]
    fake.push_message(CHAT, "Where is my order?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    assert fake.webhook_statuses == [503, 200]
    assert len(await desk.messages(CHAT)) == 1


async def test_webhook_mode_needs_a_url_and_a_proper_secret(tmp_path: Path, fake: FakeTelegram) -> None:
    from bot.app import build_app
    from connectors.telegram import TelegramConnector

    settings = telegram_settings(tmp_path, fake, mode="webhook", webhook_secret="")
    app = await build_app(settings)
    try:
        with pytest.raises(ConfigError, match=r"telegram\.webhook_secret"):
            TelegramConnector(app)
        settings.telegram.webhook_secret = "has spaces!"
        with pytest.raises(ConfigError, match=r"telegram\.webhook_secret"):
            TelegramConnector(app)
        settings.telegram.webhook_secret, settings.telegram.webhook_url = SECRET, ""
        with pytest.raises(ConfigError, match=r"telegram\.webhook_url"):
            TelegramConnector(app)
        settings.telegram.mode, settings.telegram.token = "polling", "not-a-token"
        with pytest.raises(ConfigError, match=r"telegram\.token"):
            TelegramConnector(app)
        settings.telegram.token = "999:refused-token"
        with pytest.raises(ConfigError, match=r"401"):
            await TelegramConnector(app).start(web.Application())
    finally:
        await app.close()


async def test_relaydesk_run_answers_hands_off_and_survives_telegram_going_away(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    settings = telegram_settings(tmp_path, fake)
    settings.server.port = free_port()
    running = await start(settings)
    try:
        assert [c.name for c in running.channels] == ["telegram"]
        health = f"http://127.0.0.1:{settings.server.port}/healthz"
        async with ClientSession() as http, http.get(health) as response:
            assert response.status == 200
        fake.push_message(CHAT, "Which payment methods do you accept?")
        await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
        assert "Apple Pay" in fake.texts(CHAT)[0]
        await fake.stop()
        await fake.start()
        fake.push_message(CHAT, "/human")
        await fake.wait_for(lambda: len(fake.sent(CHAT)) == 2, timeout=10)
        assert "a person will reply here" in fake.texts(CHAT)[1]
    finally:
        await running.stop()
