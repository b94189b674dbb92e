"""The Telegram channel for `relaydesk run`: long polling or a webhook on the shared HTTP server.

Nothing is lost between Telegram and the desk: in polling mode an update is confirmed (the next
`getUpdates` offset) only after the desk has stored it, and in webhook mode Telegram gets its 200
only then (a failure answers 503, so Telegram sends the update again). A redelivered update is
harmless: the desk is idempotent on the message id, which survives restarts in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections import defaultdict
from typing import Any, cast

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramServerError, TelegramUnauthorizedError
from aiogram.methods import GetUpdates
from aiogram.types import Update
from aiogram.utils.token import TokenValidationError, validate_token
from aiohttp import web
from pydantic import ValidationError

from bot.app import App
from bot.config import ConfigError, TelegramSettings
from bot.ports import storage_unavailable
from connectors.telegram.handlers import CustomerHandlers
from connectors.telegram.inbound import CHANNEL
from connectors.telegram.limits import RateLimiter
from connectors.telegram.sender import TelegramSender

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
UPDATE_ATTEMPTS = 5  # a failing update (not an outage) is tried this often, then logged and skipped
WEBHOOK_BUDGET_S = 50.0  # Telegram waits about 60 s for the answer to a webhook request


def transient(exc: BaseException) -> bool:
    """Failures that pass by themselves: the database or the network is away for a while."""
    network = (OSError, TimeoutError, TelegramNetworkError, TelegramServerError)
    return storage_unavailable(exc) or isinstance(exc, network)


def create_bot(settings: TelegramSettings) -> Bot:
    """A Bot on aiogram's real HTTP session, pointed at `telegram.api_base` (a self-hosted Bot API server works)."""
    if not settings.api_base.startswith(("https://", "http://")):
        raise ConfigError(
            f"telegram.api_base: got {settings.api_base!r}; expected a URL such as https://api.telegram.org"
        )
    try:
        validate_token(settings.token)
    except TokenValidationError:
        raise ConfigError(
            "telegram.token: not a bot token; expected the form 123456789:AA… that @BotFather gives"
        ) from None
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.api_base), timeout=settings.request_timeout_s)
    return Bot(token=settings.token, session=session)


def check_settings(settings: TelegramSettings) -> None:
    if settings.mode != "webhook":
        return
    if not settings.webhook_url.startswith(("https://", "http://")):
        raise ConfigError(
            f"telegram.webhook_url: got {settings.webhook_url!r}; expected the public URL of "
            f"{WEBHOOK_PATH} on this server (https://…) in webhook mode"
        )
    if not _SECRET.match(settings.webhook_secret):
        raise ConfigError(
            "telegram.webhook_secret: expected 1-256 characters of A-Z, a-z, 0-9, _ and - in webhook mode "
            "(Telegram sends it with every update; requests without it are refused)"
        )


class RawGetUpdates(GetUpdates):
    """getUpdates whose result stays JSON: each update is validated on its own (see `_parse`)."""

    __returning__ = list[dict[str, Any]]


def chat_of(update: Update) -> str:
    """Updates of one chat are handled in order; different chats at the same time."""
    for event in (update.message, update.edited_message):
        if event is not None:
            return str(event.chat.id)
    query = update.callback_query
    if query is not None:
        return str(query.message.chat.id if query.message else query.from_user.id)
    return f"update:{update.update_id}"


class TelegramConnector:
    """`Channel` for the runner: registers the outbox sender, then polls or serves the webhook."""

    name = CHANNEL

    def __init__(self, app: App, bot: Bot | None = None) -> None:
        self.app = app
        self.settings = app.settings.telegram
        check_settings(self.settings)
        self.bot = bot or create_bot(self.settings)
        self.sender = TelegramSender(self.bot, app.texts)
        limiter = RateLimiter(app.shared, self.settings.rate_limit_messages, self.settings.rate_limit_window_s)
        self.handlers = CustomerHandlers(app, self.bot, limiter)
        self.dispatcher = Dispatcher()
        self.dispatcher.include_router(self.handlers.router())
        self.retry_s = 1.0  # backoff start when Telegram or the database is unavailable
        self.batch = 100  # updates per getUpdates; a batch is confirmed once all of it is stored
        self._task: asyncio.Task[None] | None = None

    async def start(self, server: web.Application) -> None:
        self.app.outbox.register(CHANNEL, self.sender)
        await self._check_token()
        if self.settings.mode == "webhook":
            server.router.add_post(WEBHOOK_PATH, self.webhook)
            self._task = asyncio.create_task(self._set_webhook())
        else:
            self._task = asyncio.create_task(self.poll())
        log.info("telegram: started in %s mode", self.settings.mode)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.handlers.close()
        await self.bot.session.close()

    async def _check_token(self) -> None:
        """A refused token is a configuration error; Telegram being unreachable is not (we keep trying)."""
        try:
            await self.bot.me()
        except TelegramUnauthorizedError:
            await self.bot.session.close()
            raise ConfigError(
                "telegram.token: Telegram refused it (401 Unauthorized); expected the token @BotFather gave you"
            ) from None
        except Exception as exc:
            log.warning("telegram: Bot API not reachable yet (%s); will keep trying", type(exc).__name__)

    # -- updates ----------------------------------------------------------------------------------

    async def handle(self, update: Update, attempts: int = UPDATE_ATTEMPTS) -> None:
        """Feed one update through the router, retried in place: an outage (database, network) is waited
        out however long it lasts; any other failure is given `attempts` tries."""
        delay = self.retry_s
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.dispatcher.feed_update(self.bot, update)
                return
            except Exception as exc:
                if attempt >= attempts and not transient(exc):
                    raise
                log.warning("telegram: update %s failed (%s), retrying", update.update_id, type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def handle_batch(self, updates: list[Update]) -> None:
        """One chat's updates in order; chats side by side."""
        by_chat: dict[str, list[Update]] = defaultdict(list)
        for update in updates:
            by_chat[chat_of(update)].append(update)

        async def one_chat(items: list[Update]) -> None:
            for update in items:
                try:
                    await self.handle(update)
                except Exception:
                    log.exception("telegram: update %s could not be processed; skipped", update.update_id)

        await asyncio.gather(*(one_chat(items) for items in by_chat.values()))

    async def poll(self) -> None:
        """Long polling; the offset moves past a batch only once the desk has stored all of it."""
        with contextlib.suppress(Exception):
            await self.bot.delete_webhook(drop_pending_updates=False)
        allowed = self.dispatcher.resolve_used_update_types()
        offset: int | None = None
        delay = self.retry_s
        timeout = self.settings.polling_timeout_s
        while True:
            try:
                raw: Any = await self.bot(
                    RawGetUpdates(offset=offset, limit=self.batch, timeout=timeout, allowed_updates=allowed),
                    request_timeout=int(self.settings.request_timeout_s + timeout + 1),
                )
                updates = cast(list[dict[str, Any]], raw)
            except Exception as exc:
                log.warning("telegram: getUpdates failed (%s: %s); retry in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = self.retry_s
            if updates:
                await self.handle_batch([u for u in map(self._parse, updates) if u is not None])
                offset = int(updates[-1]["update_id"]) + 1

    def _parse(self, raw: dict[str, Any]) -> Update | None:
        """One update at a time, so a shape this aiogram version can't read costs that update, not polling."""
        try:
            return Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as exc:
            log.error("telegram: update %s is not readable, skipped (%s)", raw.get("update_id"), exc.error_count())
            return None

    async def _set_webhook(self) -> None:
        delay = self.retry_s
        while True:
            try:
                await self.bot.set_webhook(
                    url=self.settings.webhook_url,
                    secret_token=self.settings.webhook_secret,
                    allowed_updates=self.dispatcher.resolve_used_update_types(),
                    drop_pending_updates=False,
                )
                log.info("telegram: webhook registered")
                return
            except Exception as exc:
                log.warning("telegram: setWebhook failed (%s); retry in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /telegram/webhook: 401 without the secret, 400 for a body that is not an update."""
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), self.settings.webhook_secret.encode()):
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        try:
            data: Any = json.loads((await request.read()).decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
            update = Update.model_validate(data, context={"bot": self.bot})
        except web.HTTPException:
            raise
        except Exception as exc:
            log.info("telegram: malformed webhook body refused (%s)", type(exc).__name__)
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        try:
            await asyncio.wait_for(self.handle(update, attempts=1), WEBHOOK_BUDGET_S)
        except Exception:
            log.exception("telegram: update %s failed; Telegram will send it again", update.update_id)
            return web.json_response({"ok": False, "error": "try again"}, status=503)
        return web.json_response({"ok": True})
