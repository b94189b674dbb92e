"""Support for the Telegram tests (no tests here): the real connector, outbox loop and (for webhooks) HTTP
server, all pointed at a FakeTelegram on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlmodel import col, select

from bot.app import App, build_app
from bot.config import Settings
from bot.storage.models import Conversation, Customer, Delivery, Feedback, Message
from connectors.telegram import TelegramConnector
from tests.conftest import Recorder, make_settings
from tests.fakes.telegram_api import TOKEN, FakeTelegram

SECRET = "s3cret_token-for-tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def telegram_settings(tmp: Path, fake: FakeTelegram, mode: str = "polling", **telegram: Any) -> Settings:
    settings = make_settings(tmp)
    settings.telegram.token = fake.token
    settings.telegram.api_base = fake.base_url
    settings.telegram.polling_timeout_s = 1
    settings.telegram.request_timeout_s = 2.0
    if mode == "webhook":
        settings.server.port = free_port()
        settings.telegram.mode = "webhook"
        settings.telegram.webhook_url = f"http://127.0.0.1:{settings.server.port}/telegram/webhook"
        settings.telegram.webhook_secret = SECRET
    for key, value in telegram.items():
        setattr(settings.telegram, key, value)
    return settings


class Harness:
    """`async with Harness(settings, fake) as desk:` — relaydesk's Telegram side, running."""

    def __init__(self, settings: Settings, fake: FakeTelegram) -> None:
        self.settings = settings
        self.fake = fake
        self.queue = Recorder()
        self._tasks: list[asyncio.Task[None]] = []
        self._site: web.AppRunner | None = None

    async def __aenter__(self) -> Harness:
        self.app: App = await build_app(self.settings)
        self.app.outbox.register(self.app.desk.queue_channel, self.queue)
        self.connector = TelegramConnector(self.app)
        self.connector.retry_s = 0.01
        server = web.Application()
        await self.connector.start(server)
        if self.settings.telegram.mode == "webhook":
            self._site = web.AppRunner(server, access_log=None)
            await self._site.setup()
            await web.TCPSite(self._site, "127.0.0.1", self.settings.server.port).start()
        self._tasks.append(asyncio.create_task(self.app.outbox.run(poll_s=0.02)))
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.connector.stop()
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._site is not None:
            await self._site.cleanup()
        await self.app.close()

    @property
    def webhook_url(self) -> str:
        return self.settings.telegram.webhook_url

    async def processed(self, update: dict[str, Any], timeout: float = 5.0) -> None:
        """Until the bot has confirmed `update` (polling: a getUpdates with a later offset)."""
        after = update["update_id"] + 1

        def confirmed() -> bool:
            return any(int(c.params.get("offset") or 0) >= after for c in self.fake.calls if c.method == "getupdates")

        await self.fake.wait_for(confirmed, timeout)

    async def settle(self, timeout: float = 3.0) -> None:
        """Until the outbox has nothing pending for Telegram (sent or given up), or `timeout` passes."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            await self.app.outbox.deliver_due()
            await asyncio.sleep(0.05)
            if all(d.status != "pending" for d in await self.deliveries()):
                return

    async def messages(self, chat_id: int | str) -> list[Message]:
        async with self.app.sessions() as session:
            rows = await session.execute(
                select(Message)
                .join(Conversation)
                .join(Customer)
                .where(Customer.chat_id == str(chat_id))
                .where(Message.author == "customer")
                .order_by(col(Message.id))
            )
            return list(rows.scalars())

    async def conversation(self, chat_id: int | str) -> Conversation:
        async with self.app.sessions() as session:
            rows = await session.execute(
                select(Conversation)
                .join(Customer)
                .where(Customer.chat_id == str(chat_id))
                .order_by(col(Conversation.id))
            )
            found = rows.scalars().first()
        assert found is not None, f"no conversation for chat {chat_id}"
        return found

    async def feedback(self) -> list[Feedback]:
        async with self.app.sessions() as session:
            return list((await session.execute(select(Feedback).order_by(col(Feedback.id)))).scalars())

    async def deliveries(self, channel: str = "telegram") -> list[Delivery]:
        async with self.app.sessions() as session:
            rows = await session.execute(select(Delivery).where(Delivery.channel == channel).order_by(col(Delivery.id)))
            return list(rows.scalars())


__all__ = ["SECRET", "TOKEN", "FakeTelegram", "Harness", "free_port", "telegram_settings"]
