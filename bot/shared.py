"""What workers share: first-sight keys (dedup), counters (rate limits) and short-lived values (caches).

With `redis.url` set they live in Redis (the `redis` package's asyncio client) and every worker sees them.
Without it, or while Redis does not answer, they live in this process: a Redis outage makes limits, caches
and dedup per-worker for a while (with a warning), and never drops or stalls a message.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

LOCAL_KEYS = 100_000  # the in-process store forgets its oldest keys beyond this
REDIS_TIMEOUT_S = 0.5  # a Redis that takes longer counts as down: a customer never waits on it


class SharedState:
    def __init__(self, url: str = "", prefix: str = "relaydesk:", clock: Callable[[], float] = time.time) -> None:
        self._prefix = prefix
        self._clock = clock
        self._local: OrderedDict[str, tuple[float, Any]] = OrderedDict()  # key -> (expires at, value)
        self._redis: Any = None
        self._down_since: float | None = None
        if url:
            import redis.asyncio

            self._redis = redis.asyncio.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S, decode_responses=True
            )

    @property
    def shared(self) -> bool:
        """Whether workers share these values now (Redis configured and answering)."""
        return self._redis is not None and self._down_since is None

    async def first_time(self, key: str, ttl_s: float) -> bool:
        """True the first time anyone asks about `key` within `ttl_s` (dedup of redelivered events)."""
        result = await self._call("first_time", key, lambda r: r.set(self._prefix + key, 1, nx=True, px=_ms(ttl_s)))
        if result is not _LOCAL:
            return bool(result)
        if self._get_local(key) is not None:
            return False
        self._put_local(key, 1, ttl_s)
        return True

    async def count(self, key: str, ttl_s: float) -> int:
        """Add one to `key`'s counter (which lives `ttl_s` from its first hit); the new value."""

        async def incr(r: Any) -> int:
            async with r.pipeline(transaction=True) as pipe:
                pipe.incr(self._prefix + key)
                pipe.pexpire(self._prefix + key, _ms(ttl_s), nx=True)
                hits, _ = await pipe.execute()
            return int(hits)

        result = await self._call("count", key, incr)
        if result is not _LOCAL:
            return int(result)
        hits = int(self._get_local(key) or 0) + 1
        expires = self._local[key][0] if key in self._local else self._clock() + ttl_s
        self._local[key] = (expires, hits)
        return hits

    async def get(self, key: str) -> str | None:
        result = await self._call("get", key, lambda r: r.get(self._prefix + key))
        return self._get_local(key) if result is _LOCAL else result

    async def put(self, key: str, value: str, ttl_s: float) -> None:
        result = await self._call("put", key, lambda r: r.set(self._prefix + key, value, px=_ms(ttl_s)))
        if result is _LOCAL:
            self._put_local(key, value, ttl_s)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def _call(self, what: str, key: str, command: Callable[[Any], Any]) -> Any:
        if self._redis is None:
            return _LOCAL
        try:
            result = await command(self._redis)
        except (OSError, TimeoutError, _redis_errors()) as exc:
            if self._down_since is None:
                self._down_since = self._clock()
                log.warning("shared: Redis does not answer (%s); limits, caches and dedup are per worker until it does",
                            type(exc).__name__)  # fmt: skip
            return _LOCAL
        if self._down_since is not None:
            log.warning("shared: Redis answers again after %.0f s", self._clock() - self._down_since)
            self._down_since = None
        return result

    def _get_local(self, key: str) -> Any:
        hit = self._local.get(key)
        if hit is None or hit[0] <= self._clock():
            self._local.pop(key, None)
            return None
        return hit[1]

    def _put_local(self, key: str, value: Any, ttl_s: float) -> None:
        self._local[key] = (self._clock() + ttl_s, value)
        self._local.move_to_end(key)
        while len(self._local) > LOCAL_KEYS:
            self._local.popitem(last=False)


_LOCAL = object()  # "answer from this process": Redis is not configured or did not answer


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _redis_errors() -> type[Exception]:
    from redis.exceptions import RedisError

    return RedisError
