"""A fake Slack: a real local HTTP server speaking the Web API methods relaydesk uses, and a fake
Slack *client side* that sends Events API / interactivity requests signed with the real algorithm.

The server keeps channels, members, users and every posted message (with its thread), records each
call, and can be told to answer 429 with Retry-After or 5xx, once or for a while (an outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

TEAM, BOT_USER, BOT_ID, APP_ID = "T0TEAM", "U0BOT", "B0BOT", "A0APP"
QUEUE = "C0QUEUE"


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None = None
    user: str = BOT_USER
    updates: int = 0

    def buttons(self) -> dict[str, dict[str, Any]]:
        """action_id -> {block_id, value, text} for every button on the message."""
        found = {}
        for block in self.blocks:
            if block.get("type") == "actions":
                for element in block["elements"]:
                    found[element["action_id"]] = {
                        "block_id": block.get("block_id", ""),
                        "value": element.get("value", ""),
                        "text": element["text"]["text"],
                    }
        return found

    def all_text(self) -> str:
        """Everything a person can read on the message (fallback text and every block)."""
        parts = [self.text]

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                if isinstance(node.get("text"), str):
                    parts.append(node["text"])
                for value in node.values():
                    walk(value)
            elif isinstance(node, list):
                for value in node:
                    walk(value)

        walk(self.blocks)
        return "\n".join(parts)


@dataclass
class Failure:
    status: int
    retry_after: int | None = None
    times: int = 1


@dataclass
class FakeSlack:
    """The Slack Web API at http://127.0.0.1:<port>/api/ (pass `base_url` as `slack.api_base`)."""

    channels: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {QUEUE: {"name": "support-queue", "members": ["U0MARIA", "U0IVAN", BOT_USER]}}
    )
    users: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "U0MARIA": {"name": "maria", "real_name": "Maria Lopez", "display_name": "Maria"},
            "U0IVAN": {"name": "ivan", "real_name": "Ivan Petrov", "display_name": ""},
            "U0EVE": {"name": "eve", "real_name": "Eve Outsider", "display_name": "Eve"},
        }
    )
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    messages: list[Posted] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # method -> seconds before it answers
    down: int = 0  # >0: the whole API answers this status (an outage) until set back to 0
    token: str = "xoxb-test-token"
    app_token: str = "xapp-1-test-app-token"
    socket_acks: list[dict[str, Any]] = field(default_factory=list)  # Socket Mode acknowledgements
    responses: list[dict[str, Any]] = field(default_factory=list)  # what the app posted to response URLs
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _server: TestServer | None = None
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/hooks/{key}", self._response_url)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.base_url

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._server is not None:
            await self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("/api/"))

    # -- failure injection ------------------------------------------------------------------------

    def fail(self, method: str, status: int = 429, retry_after: int | None = None, times: int = 1) -> None:
        """The next `times` calls of `method` ("*" for any) answer `status` (429 with Retry-After)."""
        self.failures.setdefault(method, []).append(Failure(status, retry_after, times))

    # -- what operators see -----------------------------------------------------------------------

    def roots(self, channel: str = QUEUE) -> list[Posted]:
        return [m for m in self.messages if m.channel == channel and m.thread_ts is None]

    def thread(self, root: Posted) -> list[Posted]:
        return [m for m in self.messages if m.channel == root.channel and m.thread_ts == root.ts]

    def called(self, method: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == method]

    def message(self, channel: str, ts: str) -> Posted:
        return next(m for m in self.messages if m.channel == channel and m.ts == ts)

    def human_says(self, channel: str, text: str, user: str, thread_ts: str | None = None) -> Posted:
        """A person's message, as Slack stores it (the test then sends the matching event)."""
        posted = Posted(channel, self._next_ts(), text, [], thread_ts, user=user)
        self.messages.append(posted)
        return posted

    # -- the API ----------------------------------------------------------------------------------

    def _next_ts(self) -> str:
        n = next(self._ts)
        return f"{int(time.time())}.{n:06d}"

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        body = await request.read()
        if body:
            if request.content_type == "application/json":
                params.update(json.loads(body))
            else:
                params.update(parse_qsl(body.decode()))
        for key in ("blocks", "view"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls.append((method, params))
        if method in self.delays:
            await asyncio.sleep(self.delays[method])
        if self.down:
            return web.Response(status=self.down, text="upstream connect error", content_type="text/html")
        for key in (method, "*"):
            queued = self.failures.get(key)
            if queued:
                failure = queued[0]
                failure.times -= 1
                if failure.times <= 0:
                    queued.pop(0)
                headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                if failure.status == 429:
                    return web.json_response({"ok": False, "error": "ratelimited"}, status=429, headers=headers)
                return web.Response(status=failure.status, text="<html>oops</html>", content_type="text/html")
        auth = request.headers.get("Authorization", "")
        expected = self.app_token if method == "apps.connections.open" else self.token
        if auth != f"Bearer {expected}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result: dict[str, Any] = handler(params)
        return web.json_response({"ok": "error" not in result, **result})

    def _channel_id(self, ref: str) -> str | None:
        ref = ref.lstrip("#")
        if ref in self.channels:
            return ref
        return next((cid for cid, c in self.channels.items() if c["name"] == ref), None)

    # -- response URLs: a slash command's (or an action's) delayed answers --------------------------

    def response_url(self) -> str:
        """A fresh response URL, as Slack puts in a slash command's payload."""
        assert self._server is not None
        return str(self._server.make_url(f"/hooks/T0TEAM-{next(self._ts)}"))

    def responded(self, url: str) -> list[dict[str, Any]]:
        """What the app posted to this response URL (JSON bodies, each with `response_type`)."""
        key = url.rsplit("/", 1)[-1]
        return [r["body"] for r in self.responses if r["key"] == key]

    async def _response_url(self, request: web.Request) -> web.Response:
        """Slack's answer to a response URL post: 200 `ok`; a body without text or blocks is refused."""
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(body, dict) or not (body.get("text") or body.get("blocks")):
            return web.Response(status=400, text="no_text")
        if body.get("response_type", "ephemeral") not in ("ephemeral", "in_channel"):
            return web.Response(status=400, text="invalid_response_type")
        self.responses.append({"key": request.match_info["key"], "body": body})
        return web.Response(text="ok")

    # -- Socket Mode: apps.connections.open hands out a WebSocket URL; envelopes go down, acks come up --

    def _apps_connections_open(self, _: dict[str, Any]) -> dict[str, Any]:
        assert self._server is not None
        return {"url": str(self._server.make_url("/link")).replace("http://", "ws://")}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}})
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                self.socket_acks.append(json.loads(message.data))
        self._sockets.remove(ws)
        return ws

    async def push_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Send an `events_api` / `interactive` / `slash_commands` envelope to the connected app."""
        envelope_id = f"env-{next(self._ts)}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload, "accepts_response_payload": False}
        for ws in self._sockets:
            await ws.send_json(envelope)
        return envelope_id

    def _auth_test(self, _: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://fake.slack.com/", "team": "Fake", "user": "relaydesk", "team_id": TEAM,
                "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}  # fmt: skip

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(p.get("channel", "")))
        if channel is None:
            return {"error": "channel_not_found"}
        if BOT_USER not in self.channels[channel]["members"]:
            return {"error": "not_in_channel"}
        if not p.get("text") and not p.get("blocks"):
            return {"error": "no_text"}
        thread_ts = p.get("thread_ts") or None
        if thread_ts is not None and not any(m.channel == channel and m.ts == thread_ts for m in self.messages):
            return {"error": "thread_not_found"}
        posted = Posted(channel, self._next_ts(), str(p.get("text", "")), list(p.get("blocks") or []), thread_ts)
        self.messages.append(posted)
        return {"channel": channel, "ts": posted.ts, "message": {"text": posted.text, "ts": posted.ts}}

    def _chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(p.get("channel", "")))
        found = [m for m in self.messages if m.channel == channel and m.ts == p.get("ts")]
        if not found:
            return {"error": "message_not_found"}
        message = found[0]
        message.text = str(p.get("text", message.text))
        if "blocks" in p:
            message.blocks = list(p["blocks"] or [])
        message.updates += 1
        return {"channel": channel, "ts": message.ts, "text": message.text}

    def _chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(p.get("channel", "")))
        if channel is None:
            return {"error": "channel_not_found"}
        self.ephemerals.append({"channel": channel, **p})
        return {"message_ts": self._next_ts()}

    def _views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("trigger_id"):
            return {"error": "invalid_trigger_id"}
        view = dict(p["view"])
        view["id"] = f"V{len(self.views) + 1:05d}"
        self.views.append(view)
        return {"view": view}

    def _conversations_members(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel_id(str(p.get("channel", "")))
        if channel is None:
            return {"error": "channel_not_found"}
        return {"members": list(self.channels[channel]["members"]), "response_metadata": {"next_cursor": ""}}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(str(p.get("user", "")))
        if user is None:
            return {"error": "user_not_found"}
        profile = {"real_name": user["real_name"], "display_name": user["display_name"]}
        return {"user": {"id": p["user"], "name": user["name"], "real_name": user["real_name"], "profile": profile}}

    def _usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(str(p.get("usergroup", "")))
        return {"error": "no_such_subteam"} if group is None else {"users": list(group)}


# -- the Slack side of Events API and interactivity: signed requests to the app ---------------------


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature: HMAC-SHA256 over "v0:{timestamp}:{body}" with the signing secret."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


class SlackUser:
    """Sends what Slack would send the app when people act, signed with the real algorithm."""

    def __init__(self, url: str, secret: str, slack: FakeSlack) -> None:
        self.url = url
        self.secret = secret
        self.slack = slack
        self._ids = itertools.count(1)

    async def post(
        self, body: str, content_type: str, *, secret: str | None = None, timestamp: int | None = None
    ) -> tuple[int, str]:
        headers = {"Content-Type": content_type, **sign(secret or self.secret, body, timestamp)}
        async with aiohttp.ClientSession() as session, session.post(self.url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()

    async def event(self, event: dict[str, Any], event_id: str | None = None) -> tuple[int, str]:
        envelope = {
            "token": "legacy",
            "team_id": TEAM,
            "api_app_id": APP_ID,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }
        return await self.post(json.dumps(envelope), "application/json")

    async def interact(self, payload: dict[str, Any]) -> tuple[int, str]:
        return await self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    async def command(
        self, text: str, user: str, channel: str = QUEUE, command: str = "/relaydesk"
    ) -> tuple[int, str, str]:
        """A person types a slash command: a signed form POST; returns (status, body, response URL)."""
        response_url = self.slack.response_url()
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": self.slack.channels.get(channel, {}).get("name", "directmessage"),
            "user_id": user,
            "user_name": self.slack.users.get(user, {}).get("name", user),
            "command": command,
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{next(self._ids)}.trigger",
        }
        status, body = await self.post(urlencode(form), "application/x-www-form-urlencoded")
        return status, body, response_url

    async def reply(self, root: Posted, user: str, text: str, event_id: str | None = None) -> Posted:
        """A person replies in a thread: Slack stores it and sends a `message` event."""
        posted = self.slack.human_says(root.channel, text, user, thread_ts=root.ts)
        event = {
            "type": "message",
            "channel": root.channel,
            "channel_type": "channel",
            "user": user,
            "text": text,
            "ts": posted.ts,
            "thread_ts": root.ts,
            "event_ts": posted.ts,
            "team": TEAM,
        }
        status, _ = await self.event(event, event_id)
        assert status == 200
        return posted

    async def edit(self, message: Posted, text: str, after_s: float = 5) -> None:
        edited_ts = f"{float(message.ts) + after_s:.6f}"
        previous = {"type": "message", "user": message.user, "text": message.text, "ts": message.ts}
        if message.thread_ts:
            previous["thread_ts"] = message.thread_ts
        message.text = text
        event = {
            "type": "message",
            "subtype": "message_changed",
            "channel": message.channel,
            "hidden": True,
            "message": {**previous, "text": text, "edited": {"user": message.user, "ts": edited_ts}},
            "previous_message": previous,
            "ts": edited_ts,
            "event_ts": edited_ts,
        }
        status, _ = await self.event(event)
        assert status == 200

    async def delete(self, message: Posted) -> None:
        previous = {"type": "message", "user": message.user, "text": message.text, "ts": message.ts}
        if message.thread_ts:
            previous["thread_ts"] = message.thread_ts
        self.slack.messages.remove(message)
        event = {
            "type": "message",
            "subtype": "message_deleted",
            "channel": message.channel,
            "hidden": True,
            "deleted_ts": message.ts,
            "previous_message": previous,
            "ts": f"{float(message.ts) + 3:.6f}",
            "event_ts": f"{float(message.ts) + 3:.6f}",
        }
        status, _ = await self.event(event)
        assert status == 200

    def _user(self, user: str) -> dict[str, Any]:
        name = self.slack.users.get(user, {}).get("name", user)
        return {"id": user, "username": name, "name": name, "team_id": TEAM}

    async def press(self, message: Posted, action_id: str, user: str) -> tuple[int, str]:
        """A person clicks a button on a message."""
        button = message.buttons()[action_id]
        container: dict[str, Any] = {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        }
        if message.thread_ts:
            container["thread_ts"] = message.thread_ts
        raw_message: dict[str, Any] = {"type": "message", "ts": message.ts, "text": message.text}
        raw_message["blocks"] = message.blocks
        if message.thread_ts:
            raw_message["thread_ts"] = message.thread_ts
        payload = {
            "type": "block_actions",
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": "legacy",
            "container": container,
            "trigger_id": f"{next(self._ids)}.trigger",
            "team": {"id": TEAM, "domain": "fake"},
            "channel": {"id": message.channel, "name": self.slack.channels.get(message.channel, {}).get("name", "")},
            "message": raw_message,
            "response_url": "https://hooks.slack.invalid/actions/1",
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": button["block_id"],
                    "text": {"type": "plain_text", "text": button["text"], "emoji": True},
                    "value": button["value"],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return await self.interact(payload)

    async def submit(self, view: dict[str, Any], user: str, values: dict[str, dict[str, str]]) -> tuple[int, str]:
        """A person submits a modal; `values` is {block_id: {action_id: text}}."""
        state = {
            block: {action: {"type": "plain_text_input", "value": text} for action, text in inputs.items()}
            for block, inputs in values.items()
        }
        payload = {
            "type": "view_submission",
            "team": {"id": TEAM, "domain": "fake"},
            "user": self._user(user),
            "api_app_id": APP_ID,
            "token": "legacy",
            "trigger_id": f"{next(self._ids)}.trigger",
            "view": {**view, "team_id": TEAM, "state": {"values": state}, "hash": "1.abc", "app_id": APP_ID},
            "response_urls": [],
        }
        return await self.interact(payload)


# -- the connector under test, served on a real local HTTP server ------------------------------------


class SlackSide:
    """relaydesk's Slack connector started against a FakeSlack: its /slack/events on a real port."""

    def __init__(self, app: Any, slack: FakeSlack, secret: str = "test-signing-secret") -> None:
        from connectors.slack import SlackConnector

        app.settings.slack.bot_token = slack.token
        app.settings.slack.signing_secret = secret
        app.settings.slack.api_base = slack.base_url
        app.settings.slack.queue_channel = app.settings.slack.queue_channel or QUEUE
        self.app = app
        self.slack = slack
        self.connector = SlackConnector(app)
        self.server = web.Application()
        self._http: TestServer | None = None
        self.user: SlackUser | None = None
        self.secret = secret

    async def start(self) -> SlackSide:
        await self.connector.start(self.server)
        self._http = TestServer(self.server, host="127.0.0.1")
        await self._http.start_server()
        self.user = SlackUser(str(self._http.make_url("/slack/events")), self.secret, self.slack)
        return self

    async def stop(self) -> None:
        await self.connector.stop()
        if self._http is not None:
            await self._http.close()

    async def settle(self, rounds: int = 6) -> None:
        """Finish what Slack requests started, then deliver whatever the outbox holds, until quiet."""
        for _ in range(rounds):
            await self.connector.handlers.drain()
            if not await self.app.outbox.deliver_due():
                await self.connector.handlers.drain()
                if not await self.app.outbox.deliver_due():
                    return
