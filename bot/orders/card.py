"""The order on an operator's card: the order and its status, how late it is, the proposed offer.

Pure functions of the handoff card, so the Slack card and the terminal view show the same words."""

from __future__ import annotations

from typing import Any

from bot.domain.deliveries import HandoffCard
from bot.domain.types import OrderCheck

_CHECKS = {OrderCheck.NOT_FOUND: "not found in the CRM", OrderCheck.UNAVAILABLE: "CRM unavailable, status unknown"}


def order_fields(card: HandoffCard) -> list[tuple[str, str]]:
    """(label, value) pairs: Order, Lateness and Proposed offer, each when the handoff has it."""
    fields: list[tuple[str, str]] = []
    order = card.order or {}
    if order:
        check = OrderCheck(order.get("check", OrderCheck.FOUND))
        status = str(order.get("status") or "").replace("_", " ") if check == OrderCheck.FOUND else _CHECKS[check]
        fields.append(("Order", f"{order['order_id']} · {status}"))
        if check == OrderCheck.FOUND:
            fields.append(("Lateness", _lateness(order)))
    for action in card.actions:
        if action.get("type") == "compensation":
            offer = f"{action['percent']}% promo code {action['code']} ({action['rule']})"
            fields.append(("Proposed offer", f"{offer}; sent only if you send the draft"))
    return fields


def _lateness(order: dict[str, Any]) -> str:
    days = order.get("days_late")
    if days is None:
        return str(order.get("note") or "unknown")
    return f"{days} days late" if days else "not late"
