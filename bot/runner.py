"""`relaydesk run`: the desk with every channel config.yaml enables, one HTTP server, the outbox loop.

The HTTP server (aiohttp) serves `/healthz`, `/metrics` (Prometheus) and whatever routes the channels
add (`/telegram/webhook`, `/slack/events`); it listens on `server.host:server.port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from bot.analytics.live import CONTENT_TYPE as METRICS_CONTENT_TYPE
from bot.analytics.live import LiveMetrics
from bot.app import App, build_app
from bot.config import ConfigError, Settings
from bot.ports import Channel

log = logging.getLogger(__name__)


ChannelFactory = Callable[[App], Channel]


def enabled_channels(settings: Settings) -> list[ChannelFactory]:
    """The connectors config.yaml switches on (a channel is on when its token is set)."""
    factories: list[ChannelFactory] = []
    if settings.telegram.enabled:
        from connectors.telegram import TelegramConnector

        factories.append(TelegramConnector)
    if settings.slack.enabled:
        from connectors.slack import SlackConnector

        factories.append(SlackConnector)
    return factories


def make_server(app: App) -> web.Application:
    server = web.Application(client_max_size=1024 * 1024)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "knowledge_records": app.index.count()})

    server.router.add_get("/healthz", healthz)
    live = LiveMetrics().attach(app)  # counters the desk and the outbox update; a scrape only renders them

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=live.render(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    server.router.add_get("/metrics", metrics)
    return server


class Running:
    """A started desk: channels, HTTP server and outbox loop; `stop()` takes them down in order."""

    def __init__(self, app: App, channels: list[Channel], site: web.AppRunner, outbox: asyncio.Task[None]) -> None:
        self.app = app
        self.channels = channels
        self._site = site
        self._outbox = outbox

    async def stop(self) -> None:
        for channel in self.channels:
            await channel.stop()
        self._outbox.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._outbox
        await self._site.cleanup()
        await self.app.close()


async def start(settings: Settings, app: App | None = None) -> Running:
    factories = enabled_channels(settings)
    if not factories:
        raise ConfigError(
            "no channel is enabled: set telegram.token (and slack.bot_token for operators), "
            "or try the desk in the terminal with `relaydesk chat`"
        )
    app = app or await build_app(settings)
    app.watch()
    server = make_server(app)
    channels = [factory(app) for factory in factories]
    for channel in channels:
        await channel.start(server)
    site = web.AppRunner(server, access_log=None)
    await site.setup()
    await web.TCPSite(site, settings.server.host, settings.server.port).start()
    log.info(
        "relaydesk: serving on %s:%s with %s",
        settings.server.host,
        settings.server.port,
        ", ".join(c.name for c in channels),
    )
    return Running(app, channels, site, asyncio.create_task(app.outbox.run()))


async def run_forever(settings: Settings) -> None:
    running = await start(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()
