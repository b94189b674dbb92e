"""The Slack operator queue as a `relaydesk run` channel: slack-bolt's AsyncApp, HTTP or Socket Mode.

HTTP mode (no `slack.app_token`): Slack posts Events API and interactivity requests to
`/slack/events` on the shared aiohttp server. The signature is checked first (bad or stale: 401),
then the body (malformed: 400); only then does Bolt see the request. Socket Mode (`slack.app_token`
set): Bolt's aiohttp Socket Mode handler connects out, no public URL needed.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import App
from bot.config import ConfigError, SlackSettings
from connectors.slack.access import OperatorDirectory
from connectors.slack.handlers import SlackHandlers
from connectors.slack.queue import SlackQueue
from connectors.slack.stats import StatsCommand

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"


def well_formed(body: str, content_type: str) -> bool:
    """What Slack sends: a JSON object (Events API), or a form with a JSON `payload` or a `command`."""
    try:
        if content_type == "application/json":
            return isinstance(json.loads(body), dict)
        if content_type == "application/x-www-form-urlencoded":
            form = parse_qs(body, strict_parsing=True)
            if "payload" in form:
                return isinstance(json.loads(form["payload"][0]), dict)
            return "command" in form or "ssl_check" in form
    except (ValueError, TypeError):
        return False
    return False


class SlackConnector:
    """Operators' side of the desk in Slack; `start()` attaches the queue console and adds the route."""

    name = "slack"

    def __init__(self, app: App, settings: SlackSettings | None = None) -> None:
        self._app = app
        self._settings = settings or app.settings.slack
        self._socket: AsyncSocketModeHandler | None = None
        self.client = AsyncWebClient(token=self._settings.bot_token, base_url=self._settings.api_base)
        self.queue = SlackQueue(self.client, self._settings)
        self.handlers = SlackHandlers(
            app,
            self.client,
            OperatorDirectory(self.client, app.shared, self._settings.operator_group),
            self._settings,
            StatsCommand(app.report, app.settings),
        )
        secret = self._settings.signing_secret
        self._verifier = SignatureVerifier(secret) if secret else None
        self.bolt = AsyncApp(
            client=self.client,
            signing_secret=secret,
            request_verification_enabled=bool(secret),
            process_before_response=False,  # ack at once, work after: Slack's 3-second rule
            logger=logging.getLogger("connectors.slack.bolt"),
        )
        self.handlers.register(self.bolt)
        self.queue.replay_action = self.handlers.replay

    def _check(self) -> None:
        if not self._settings.queue_channel:
            raise ConfigError("slack.queue_channel: empty; expected the operator queue's channel ID (C…) or name")
        if not self._settings.app_token and not self._settings.signing_secret:
            raise ConfigError(
                "slack.signing_secret: empty; expected the app's signing secret for the HTTP Events API "
                "(or set slack.app_token to use Socket Mode)"
            )

    async def start(self, server: web.Application) -> None:
        self._check()
        self._app.queue.attach(self.queue)
        if self._app.prompts is not None:
            self._app.prompts.on_error(self._prompt_refused)
        if self._app.knowledge is not None:
            self._app.knowledge.on_error(self.notice)
        if self._settings.app_token:
            self._socket = AsyncSocketModeHandler(self.bolt, self._settings.app_token)
            await self._socket.connect_async()
            log.info("slack: connected in Socket Mode")
        else:
            server.router.add_post(EVENTS_PATH, self.handle)
            log.info("slack: receiving events at %s", EVENTS_PATH)

    async def _prompt_refused(self, message: str) -> None:
        """Operators see a broken prompt edit at once; the bot keeps using the last good version."""
        await self.notice(f"A prompt edit was refused; the last good version stays in use. {message}")

    async def notice(self, text: str) -> None:
        """A line for the operator queue (through the outbox): broken prompt or knowledge edits."""
        await self._app.queue.notice(text)

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()
        await self.handlers.drain()

    async def handle(self, request: web.Request) -> web.Response:
        """POST /slack/events: 401 unless signed by Slack, 400 unless well formed, else Bolt's answer."""
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.json_response({"error": "body is not UTF-8"}, status=400)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        try:
            valid = self._verifier is not None and self._verifier.is_valid(body, timestamp, signature)
        except (TypeError, ValueError):  # a timestamp that is not a number
            valid = False
        if not valid:
            return web.json_response({"error": "invalid or stale signature"}, status=401)
        if not well_formed(body, request.content_type):
            return web.json_response({"error": "malformed body"}, status=400)
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, KeyError):
            return web.json_response({"error": "malformed body"}, status=400)
        response = await self.bolt.async_dispatch(bolt_request)
        if response.status == 404:  # an event nobody listens to: acknowledge, or Slack retries it
            return web.Response(status=200)
        return await to_aiohttp_response(response)
