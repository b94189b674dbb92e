"""A fake OpenAI API: a real local aiohttp server that speaks what relaydesk uses.

Structure, so that more endpoints slot in without touching the rest:

- `routes` maps (method, path) to an async handler `(body) -> response JSON`; `add_route` registers one.
  Today: `POST /v1/embeddings` and `POST /v1/chat/completions`.
- `calls` records every request (path, JSON body, headers), whatever the outcome; `called(path)` filters.
- `fail(...)` scripts failures, consumed one per request in order: an HTTP status with an OpenAI-style
  error body (500, 429 with `retry-after-ms`, 401, ...) and/or a delay (to make a client time out; a
  request whose client gave up during the delay is dropped and consumes no scripted chat reply).

Embeddings are deterministic and deliberately NOT unit-length (so a client's normalisation is
visible); `vector(text)` gives the raw vector the server returns for a text. The server honours
`encoding_format` ("float" or "base64", which the official client asks for) and can answer with the
`data` items in reverse order (`reverse_order`), as the API allows, to check that clients sort by `index`.

Chat completions are scripted: `script(...)` queues replies, consumed one per request in order; each is
a message (`say("text")`, `call_tools(("name", {args}), ...)`), a `Raw` body (malformed output) or a
callable `(request body) -> reply` that can look at the conversation so far. With the queue empty,
`chat_default` (a callable, e.g. a small rule-based brain for benchmarks) answers, or the request gets a
500 naming the unscripted call. `chat_bodies()` lists what clients sent.

Every chat answer carries an OpenAI `usage` object (prompt/completion tokens with their details), about
one token per four characters of the request and of the reply, as a tokenizer would count; a reply may
set its own with `with_usage(reply, prompt, completion)`. `tokens()` sums what the server billed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Raw:
    """A chat reply sent as is (status 200): malformed JSON, a body without choices, ..."""

    body: str


ChatReply = dict[str, Any] | Raw | Callable[[dict[str, Any]], "dict[str, Any] | Raw"]


def say(content: str) -> dict[str, Any]:
    """An assistant message with text and no tool calls."""
    return {"role": "assistant", "content": content}


def call_tools(*calls: tuple[str, dict[str, Any]], content: str = "") -> dict[str, Any]:
    """An assistant message calling tools: `call_tools(("search_knowledge", {"query": "returns"}))`."""
    return {
        "role": "assistant",
        "content": content or None,
        "tool_calls": [
            {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
            }
            for name, args in calls
        ],
    }


def with_usage(reply: dict[str, Any], prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """A scripted reply that reports exactly these token counts in its `usage`."""
    return {**reply, "_usage": (prompt_tokens, completion_tokens)}


def _tokens(value: Any) -> int:
    """Roughly what a BPE tokenizer counts: a token per four characters, at least one."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return max(1, len(text) // 4)


class ApiError(Exception):
    """Raised by a handler to answer with an OpenAI-style error."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int = 0  # what the server answered
    usage: dict[str, Any] | None = None  # the `usage` the server billed for this request, if any


@dataclass
class Failure:
    status: int | None = 500  # None: no error, only the delay
    message: str = "The server had an error while processing your request."
    delay_s: float = 0.0
    retry_after_ms: int | None = None
    path: str | None = None  # only requests to this path; None = any


@dataclass
class FakeOpenAI:
    host: str = "127.0.0.1"
    port: int = 0
    dimensions: int = 16
    api_key: str | None = None  # when set, requests without `Authorization: Bearer <api_key>` get 401
    reverse_order: bool = False
    calls: list[Call] = field(default_factory=list)
    routes: dict[tuple[str, str], Handler] = field(default_factory=dict)
    chat_default: Callable[[dict[str, Any]], dict[str, Any] | Raw] | None = None
    _chat_script: list[ChatReply] = field(default_factory=list)
    _failures: list[Failure] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        self.add_route("POST", "/v1/embeddings", self._embeddings)
        self.add_route("POST", "/v1/chat/completions", self._chat)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as `base_url`."""
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop listening (an outage: connections are refused); `start()` again resumes on the same port."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- scripting and inspection -----------------------------------------------------------------

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes[(method.upper(), path)] = handler

    def fail(
        self,
        status: int | None = 500,
        times: int = 1,
        *,
        message: str | None = None,
        delay_s: float = 0.0,
        retry_after_ms: int | None = None,
        path: str | None = None,
    ) -> None:
        """The next `times` matching requests fail this way (after `delay_s`)."""
        failure = Failure(status, message or Failure.message, delay_s, retry_after_ms, path)
        self._failures.extend([failure] * times)

    def script(self, *replies: ChatReply) -> None:
        """Queue chat replies, one per `/v1/chat/completions` request, in order."""
        self._chat_script.extend(replies)

    def scripted_left(self) -> int:
        return len(self._chat_script)

    def chat_bodies(self) -> list[dict[str, Any]]:
        return [c.body for c in self.called("/v1/chat/completions")]

    def called(self, path: str) -> list[Call]:
        return [c for c in self.calls if c.path == path]

    def tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens billed over all chat completions so far."""
        billed = [c.usage for c in self.called("/v1/chat/completions") if c.usage]
        return sum(u["prompt_tokens"] for u in billed), sum(u["completion_tokens"] for u in billed)

    def vector(self, text: str) -> np.ndarray:
        """The raw (not normalised) vector this server returns for `text`."""
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return (np.random.default_rng(seed).standard_normal(self.dimensions) * 3.0).astype(np.float32)

    # -- transport --------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {"_raw": raw.decode(errors="replace")}
        call = Call(request.method, request.path, body, dict(request.headers))
        self.calls.append(call)
        response = await self._respond(request, call)
        call.status = response.status
        return response

    async def _respond(self, request: web.Request, call: Call) -> web.Response:
        failure = self._next_failure(call.path)
        if failure is not None:
            if failure.delay_s:
                await asyncio.sleep(failure.delay_s)
                if request.transport is None or request.transport.is_closing():
                    return _error(499, "client closed the request", "server_error")  # consumes no scripted reply
            if failure.status is not None:
                headers = {}
                if failure.retry_after_ms is not None:
                    headers["retry-after-ms"] = str(failure.retry_after_ms)
                kind = "rate_limit_error" if failure.status == 429 else "server_error"
                return _error(failure.status, failure.message, kind, headers)
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        handler = self.routes.get((call.method, call.path))
        if handler is None:
            return _error(404, f"Unknown request URL: {call.method} {call.path}.", "invalid_request_error")
        try:
            result = await handler(call.body)
            call.usage = result.get("usage")
            return web.json_response(result)
        except ApiError as exc:
            return _error(exc.status, exc.message, exc.kind)
        except _RawReply as raw:
            return web.Response(text=raw.body, content_type="application/json")

    def _next_failure(self, path: str) -> Failure | None:
        for i, failure in enumerate(self._failures):
            if failure.path is None or failure.path == path:
                return self._failures.pop(i)
        return None

    # -- endpoints --------------------------------------------------------------------------------

    async def _embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        model, texts = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "you must provide a model parameter")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
            raise ApiError(400, "'input' must be a non-empty string or a list of non-empty strings")
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise ApiError(400, f"unknown encoding_format {encoding!r}")
        data = []
        for index, text in enumerate(texts):
            vector = self.vector(text)
            embedding: Any = (
                base64.b64encode(vector.astype("<f4").tobytes()).decode() if encoding == "base64" else vector.tolist()
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        if self.reverse_order:
            data.reverse()
        tokens = sum(len(t.split()) for t in texts)
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list")
        if self._chat_script:
            reply = self._chat_script.pop(0)
        elif self.chat_default is not None:
            reply = self.chat_default
        else:
            last = messages[-1].get("content") if isinstance(messages[-1], dict) else None
            raise ApiError(500, f"fake OpenAI: no scripted chat reply left (last message: {last!r})", "server_error")
        if callable(reply):
            reply = reply(body)
        if isinstance(reply, Raw):
            raise _RawReply(reply.body)
        reply = dict(reply)
        billed = reply.pop("_usage", None)
        message = {"role": "assistant", "content": None, **reply}
        # The prompt counts the messages and the tool schemas the client sent, as the real API does.
        tools = _tokens(body["tools"]) if body.get("tools") else 0
        prompt, completion = billed or (_tokens(messages) + tools, _tokens(reply))
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
            },
        }


class _RawReply(Exception):
    def __init__(self, body: str) -> None:
        super().__init__(body)
        self.body = body


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return web.json_response(body, status=status, headers=headers)
