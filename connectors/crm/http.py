"""A CRM behind a JSON API: `GET {base_url}/orders/{id}`, field names mapped in config.

`crm.fields` maps our names (order_id, status, promised, delivered, customer, total, expected,
tracking_url) to the CRM's JSON fields (dots reach into nested objects: `delivery.eta`); `crm.statuses`
maps the CRM's status values to ours. An answer that lacks the promised date's field altogether (not
null: absent) is a mapping problem, not an order on time: it is logged once and the order says so
(`Order.unmapped`), so no lateness is computed and no compensation proposed from it.
The auth header's value comes from the environment variable `crm.auth_env`, so the secret never sits
in config.yaml. 404 means no such order; anything else that goes wrong (timeout, 5xx, bad JSON, a date
we can't read) raises CRMUnavailable.
"""

from __future__ import annotations

import logging
import os
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.config import CRMSettings
from bot.orders.order import STATUSES, Order
from bot.ports import CRMUnavailable

log = logging.getLogger(__name__)

DEFAULT_FIELDS = {
    "order_id": "id",
    "status": "status",
    "promised": "promised_date",
    "delivered": "delivered_date",
    "customer": "customer_name",
    "total": "total",
    "expected": "expected_date",
    "tracking_url": "tracking_url",
}
NEEDED = ("promised",)  # what the compensation policy reads: its absence must not pass for "not late"
_ABSENT = object()


class HttpCRM:
    def __init__(self, settings: CRMSettings, environ: dict[str, str] | None = None) -> None:
        if not settings.base_url:
            raise ValueError("crm.base_url: got ''; expected the CRM's URL when crm.provider is http")
        self._settings = settings
        self._fields = {**DEFAULT_FIELDS, **settings.fields}
        self._env = os.environ if environ is None else environ
        self._reported: set[str] = set()  # unmapped fields already logged: once per process, not per order

    def _headers(self) -> dict[str, str]:
        value = self._env.get(self._settings.auth_env, "") if self._settings.auth_env else ""
        headers = {"Accept": "application/json"}
        if value and self._settings.auth_header:
            headers[self._settings.auth_header] = value
        return headers

    async def order(self, order_id: str) -> Order | None:
        url = f"{self._settings.base_url.rstrip('/')}/orders/{quote(order_id.strip(), safe='')}"
        timeout = aiohttp.ClientTimeout(total=self._settings.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, headers=self._headers()) as response,
            ):
                if response.status == 404:
                    return None
                if response.status != 200:
                    raise CRMUnavailable(f"CRM answered HTTP {response.status}")
                data = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise CRMUnavailable(f"CRM request failed: {type(exc).__name__}") from exc
        if not isinstance(data, dict):
            raise CRMUnavailable("CRM answered something other than a JSON object")
        return self._order(data, order_id)

    def _order(self, data: dict[str, Any], asked: str) -> Order:
        status_raw = str(self._get(data, "status") or "")
        status = self._settings.statuses.get(status_raw, status_raw.lower())
        if status not in STATUSES:
            raise CRMUnavailable(f"CRM status {status_raw!r} is not mapped (crm.statuses)")
        total = self._get(data, "total")
        unmapped = tuple(ours for ours in NEEDED if self._find(data, ours) is _ABSENT)
        for ours in unmapped:
            self._report(ours)
        try:
            return Order(
                order_id=str(self._get(data, "order_id") or asked),
                status=status,
                promised=_date(self._get(data, "promised")),
                delivered=_date(self._get(data, "delivered")),
                customer=str(self._get(data, "customer") or ""),
                total=float(total) if total not in (None, "") else 0.0,
                expected=_date(self._get(data, "expected")),
                tracking_url=str(self._get(data, "tracking_url") or ""),
                unmapped=unmapped,
            )
        except (TypeError, ValueError) as exc:
            raise CRMUnavailable(f"CRM answer not understood: {exc}") from exc

    def _get(self, data: dict[str, Any], ours: str) -> Any:
        found = self._find(data, ours)
        return None if found is _ABSENT else found

    def _find(self, data: dict[str, Any], ours: str) -> Any:
        """The value at our field's mapped path, None when it is null, _ABSENT when the path isn't there."""
        node: Any = data
        for key in self._fields[ours].split("."):
            if not isinstance(node, dict) or key not in node:
                return _ABSENT
            node = node[key]
        return node

    def _report(self, ours: str) -> None:
        if ours not in self._reported:
            self._reported.add(ours)
            log.warning(
                "crm: the CRM's answers have no field %r for %s: map crm.fields.%s (lateness is unknown until then)",
                self._fields[ours],
                ours,
                ours,
            )


def _date(value: Any) -> date | None:
    if value in (None, ""):
        return None
    text = str(value)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date() if "T" in text else date.fromisoformat(text)
