"""A CRM's JSON API on a local port: orders by id, and the ways a real one fails (5xx, slow, not JSON)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web


class FakeCRM:
    """A real local HTTP server shaped like somebody's CRM."""

    def __init__(self) -> None:
        self.orders: dict[str, Any] = {}
        self.status = 200
        self.delay_s = 0.0
        self.body: str | None = None
        self.headers: list[dict[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> FakeCRM:
        app = web.Application()
        app.router.add_get("/api/orders/{id}", self._order)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/api"
        return self

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _order(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        await asyncio.sleep(self.delay_s)
        if self.body is not None:
            return web.Response(text=self.body, status=self.status)
        if self.status != 200:
            return web.json_response({"error": "boom"}, status=self.status)
        found = self.orders.get(request.match_info["id"])
        return web.json_response(found) if found else web.json_response({"error": "not found"}, status=404)
