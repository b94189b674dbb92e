"""A fake Telegram Bot API: a real local aiohttp server that speaks the methods relaydesk uses.

It keeps updates for `getUpdates` (long polling honours `offset`, `limit` and `timeout`), posts them
to a webhook when one is set (with the secret token header, retried until the bot says 2xx), answers
`sendMessage` the way Telegram does (HTML is parsed strictly, 4096 characters at most, callback data
at most 64 bytes), records every call, and can be told to fail: 429 with `retry_after`, 5xx, an HTML
502 from a proxy, a hang (timeout), a blocked customer (403), or a full outage (connection refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

TOKEN = "123456:TEST-token_for-relaydesk"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "Relay Desk", "username": "relaydesk_test_bot"}
MAX_TEXT = 4096
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)\s*(/?)>")
_ENTITY = re.compile(r"&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")
_ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "span",
    "tg-spoiler",
    "a",
    "code",
    "pre",
    "blockquote",
    "tg-emoji",
}


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    status: int = 200
    at: float = field(default_factory=time.monotonic)


@dataclass
class Failure:
    status: int = 500
    description: str = "Internal Server Error"
    retry_after: int | None = None
    hang_s: float = 0.0  # sleep this long first (a client with a shorter timeout sees a timeout)
    html_body: bool = False  # a proxy's HTML error page instead of Telegram's JSON


def parse_html(text: str) -> str:
    """Telegram's strict HTML parse mode: returns the visible text or raises ApiError(400)."""
    visible: list[str] = []
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char == "<":
            match = _TAG.match(text, pos)
            if match is None:
                raise ApiError(400, f"Bad Request: can't parse entities: unsupported start tag at byte offset {pos}")
            closing, name, attrs = match.group(1), match.group(2).lower(), match.group(3)
            if name not in _ALLOWED_TAGS:
                raise ApiError(400, f'Bad Request: can\'t parse entities: unsupported start tag "{name}"')
            if closing:
                if not stack or stack[-1] != name:
                    raise ApiError(400, f'Bad Request: can\'t parse entities: unexpected end tag "{name}"')
                stack.pop()
            else:
                if name == "a" and "href=" not in attrs:
                    raise ApiError(400, "Bad Request: can't parse entities: a tag without href")
                stack.append(name)
            pos = match.end()
        elif char == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                raise ApiError(400, f"Bad Request: can't parse entities: unsupported entity at byte offset {pos}")
            visible.append(html.unescape(match.group(0)))
            pos = match.end()
        elif char == ">":
            raise ApiError(400, "Bad Request: can't parse entities: character '>' is reserved")
        else:
            visible.append(char)
            pos += 1
    if stack:
        raise ApiError(400, f"Bad Request: can't parse entities: can't find end tag corresponding to \"{stack[-1]}\"")
    return "".join(visible)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


class FakeTelegram:
    """One bot's view of Telegram. `await start()`, point the bot at `base_url`, push updates, read `calls`."""

    def __init__(self, token: str = TOKEN, host: str = "127.0.0.1", port: int = 0) -> None:
        self.token = token
        self.host = host
        self.port = port
        self.calls: list[Call] = []
        self.updates: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}  # url, secret_token when set
        self.webhook_statuses: list[int] = []
        self.webhook_retry_s = 0.02
        self.blocked: set[str] = set()
        self.down = False  # every request gets a proxy's HTML 502
        self._failures: dict[str, list[Failure]] = {}
        self._update_ids = itertools.count(1)
        self._message_ids: dict[str, itertools.count[int]] = {}
        self._arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._webhook_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners: list[Callable[[Call], Awaitable[None] | None]] = []

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self._webhook_task = asyncio.create_task(self._webhook_worker())
        return self

    async def stop(self) -> None:
        """Stop listening (an outage: connections are refused); `start()` again resumes on the same port."""
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- what a test does -------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        status: int = 500,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
        hang_s: float = 0.0,
        html_body: bool = False,
    ) -> None:
        """The next `times` calls of `method` fail this way (429 with retry_after, 5xx, a hang, ...)."""
        default = {
            429: f"Too Many Requests: retry after {retry_after}",
            403: "Forbidden: bot was blocked by the user",
            400: "Bad Request",
        }.get(status, "Internal Server Error")
        failure = Failure(status, description or default, retry_after, hang_s, html_body)
        self._failures.setdefault(method.lower(), []).extend([failure] * times)

    def block(self, chat_id: int | str) -> None:
        """The customer blocked the bot: every send to them is a 403."""
        self.blocked.add(str(chat_id))

    def push_update(self, body: dict[str, Any]) -> dict[str, Any]:
        """Queue one update (an `update_id` is assigned unless given); returns it."""
        update = {"update_id": next(self._update_ids), **body}
        if self.webhook.get("url"):
            self._webhook_queue.put_nowait(update)
        else:
            self.updates.append(update)
            self._arrived.set()
        return update

    def message(
        self,
        chat_id: int,
        text: str | None = None,
        *,
        user_id: int | None = None,
        first_name: str = "Ann",
        language_code: str = "en",
        chat_type: str = "private",
        message_id: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A customer's message as Telegram sends it (any extra field: photo, document, entities, ...)."""
        user = {"id": user_id or chat_id, "is_bot": False, "first_name": first_name, "language_code": language_code}
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        chat.update({"first_name": first_name} if chat_type == "private" else {"title": "Shop group"})
        body: dict[str, Any] = {
            "message_id": message_id if message_id is not None else self._next_message_id(str(chat_id)),
            "date": int(time.time()),
            "chat": chat,
            "from": user,
            **extra,
        }
        if text is not None:
            body["text"] = text
        return body

    def push_message(self, chat_id: int, text: str | None = None, **kwargs: Any) -> dict[str, Any]:
        return self.push_update({"message": self.message(chat_id, text, **kwargs)})

    def push_callback(
        self, chat_id: int, data: str, message_id: int = 1, user_id: int | None = None, callback_id: str | None = None
    ) -> dict[str, Any]:
        """A press of an inline button under message `message_id` in `chat_id`."""
        user = {"id": user_id or chat_id, "is_bot": False, "first_name": "Ann", "language_code": "en"}
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Ann"},
            "from": BOT_USER,
            "text": "…",
        }
        query = {
            "id": callback_id or f"cb{next(self._update_ids)}",
            "from": user,
            "message": message,
            "chat_instance": f"ci{chat_id}",
            "data": data,
        }
        return self.push_update({"callback_query": query})

    # -- what a test reads ------------------------------------------------------------------------

    def called(self, method: str, ok_only: bool = True) -> list[Call]:
        return [c for c in self.calls if c.method == method.lower() and (c.status == 200 or not ok_only)]

    def sent(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Every message Telegram accepted (sendMessage that returned 200), optionally for one chat."""
        return [c.params for c in self.called("sendMessage") if chat_id is None or c.params["chat_id"] == str(chat_id)]

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """What the customer sees: the visible text of each accepted message (HTML tags removed)."""
        out = []
        for params in self.sent(chat_id):
            text = params["text"]
            out.append(parse_html(text) if params.get("parse_mode", "").lower() == "html" else text)
        return out

    def buttons(self, params: dict[str, Any]) -> list[tuple[str, str]]:
        """(label, callback_data) of a sent message's inline keyboard."""
        markup = params.get("reply_markup") or {}
        return [(b["text"], b.get("callback_data", "")) for row in markup.get("inline_keyboard", []) for b in row]

    def on_call(self, listener: Callable[[Call], Awaitable[None] | None]) -> None:
        self._listeners.append(listener)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Until `predicate()` holds (checked every few ms); AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s; calls: {[c.method for c in self.calls]}")
            await asyncio.sleep(0.005)

    # -- the server -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        params = await self._params(request)
        call = Call(method, params)
        self.calls.append(call)
        if request.match_info["token"] != self.token:
            call.status = 401
            return _error(401, "Unauthorized")
        if self.down:
            call.status = 502
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>")
        queued = self._failures.get(method)
        if queued:
            failure = queued.pop(0)
            call.status = failure.status
            if failure.hang_s:
                await asyncio.sleep(failure.hang_s)
            if failure.html_body:
                return web.Response(status=failure.status, text=f"<html>{failure.status}</html>")
            return _error(failure.status, failure.description, failure.retry_after)
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            call.status = 404
            return _error(404, "Not Found: method not found")
        try:
            result = await handler(params)
        except ApiError as exc:
            call.status = exc.status
            return _error(exc.status, exc.description, exc.retry_after)
        for listener in self._listeners:
            maybe = listener(call)
            if maybe is not None:
                await maybe
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            body = await request.json()
            return {k: v for k, v in body.items()} if isinstance(body, dict) else {}
        form = await request.post()
        params: dict[str, Any] = {}
        for key, value in form.items():
            text = value if isinstance(value, str) else "<file>"
            if key in ("reply_markup", "allowed_updates", "entities"):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(text)
                    continue
            params[key] = text
        params.update({k: v for k, v in request.query.items() if k not in params})
        return params

    def _next_message_id(self, chat_id: str) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    # -- methods ----------------------------------------------------------------------------------

    async def _m_getme(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**BOT_USER, "can_join_groups": True, "can_read_all_group_messages": False}

    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook.get("url"):
            raise ApiError(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook")
        offset = int(params.get("offset") or 0)
        limit = max(1, min(int(params.get("limit") or 100), 100))
        timeout = float(params.get("timeout") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self.updates:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.updates[:limit]

    async def _m_sendmessage(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = str(params.get("chat_id", ""))
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if not chat_id.lstrip("-").isdigit():
            raise ApiError(400, "Bad Request: chat not found")
        text = params.get("text", "")
        mode = str(params.get("parse_mode", "")).lower()
        if mode == "html":
            visible = parse_html(text)
        elif mode:
            raise ApiError(400, f"Bad Request: unsupported parse_mode {mode!r} in this fake")
        else:
            visible = text
        if not visible.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if utf16_len(visible) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        for _label, data in self.buttons(params):
            if not 1 <= len(data.encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": {"id": int(chat_id), "type": "private"},
            "from": BOT_USER,
            "text": visible,
        }

    async def _m_sendchataction(self, params: dict[str, Any]) -> bool:
        if str(params.get("chat_id")) in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return True

    async def _m_answercallbackquery(self, params: dict[str, Any]) -> bool:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        return True

    async def _m_editmessagereplymarkup(self, params: dict[str, Any]) -> bool:
        return True

    async def _m_setwebhook(self, params: dict[str, Any]) -> bool:
        secret = params.get("secret_token", "")
        if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = {"url": params.get("url", ""), "secret_token": secret}
        for update in self.updates:  # what was waiting for getUpdates now goes to the webhook
            self._webhook_queue.put_nowait(update)
        self.updates = []
        return True

    async def _m_deletewebhook(self, params: dict[str, Any]) -> bool:
        self.webhook = {}
        if str(params.get("drop_pending_updates", "")).lower() == "true":
            self.updates = []
        return True

    async def _m_getwebhookinfo(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"url": self.webhook.get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    # -- webhook delivery -------------------------------------------------------------------------

    async def _webhook_worker(self) -> None:
        """Like Telegram: one update at a time, retried until the bot answers 2xx."""
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            while True:
                update = await self._webhook_queue.get()
                while True:
                    url = self.webhook.get("url")
                    if not url:  # the webhook was removed: back to getUpdates
                        self.updates.append(update)
                        self._arrived.set()
                        break
                    headers = {"Content-Type": "application/json"}
                    if self.webhook.get("secret_token"):
                        headers["X-Telegram-Bot-Api-Secret-Token"] = self.webhook["secret_token"]
                    try:
                        async with session.post(url, data=json.dumps(update), headers=headers) as response:
                            self.webhook_statuses.append(response.status)
                            if 200 <= response.status < 300:
                                break
                    except (ClientError, TimeoutError):
                        self.webhook_statuses.append(0)
                    await asyncio.sleep(self.webhook_retry_s)


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
