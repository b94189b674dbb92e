"""The order-status tool: ask the CRM (never raising), word its answer in the customer's language.

Articles opt in with `tool: order_status`. With an order number the answer is that order's status
from `prompts/texts.yaml` rather than the article; an order late or lost as `prompts/compensation.yaml`
defines becomes a handoff whose draft carries the status, the apology and the promo code, which only an
operator's Send delivers. An order the CRM does not know, or a CRM that is down, slow or unreadable,
gets a polite text and a handoff that says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import date

from bot.brain.llm.compensation import CompensationPolicy
from bot.domain.types import Answer, OrderCheck, OrderFacts
from bot.orders.order import Order
from bot.ports import CRMUnavailable, OrderLookup
from bot.prompts.texts import Texts

log = logging.getLogger(__name__)

LATENESS_UNKNOWN = "lateness unknown: map crm.fields.promised"
_EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class OrderStatus:
    def __init__(
        self,
        crm: OrderLookup,
        texts: Texts,
        policy: Callable[[], CompensationPolicy],
        timeout_s: float,
        today: Callable[[], date] = date.today,
    ) -> None:
        """`policy`: the current compensation policy (prompts are reloaded on edit)."""
        self.crm = crm
        self._texts = texts
        self._policy = policy
        self._timeout_s = timeout_s
        self._today = today

    async def check(self, order_id: str) -> tuple[OrderFacts, Order | None]:
        """What the CRM says about the order, as card facts and (when found) the order itself."""
        try:
            async with asyncio.timeout(self._timeout_s):
                order = await self.crm.order(order_id)
        except (CRMUnavailable, TimeoutError) as exc:
            log.warning("orders: the CRM could not be asked: %s", exc or type(exc).__name__)
            return OrderFacts(order_id, OrderCheck.UNAVAILABLE), None
        if order is None:
            return OrderFacts(order_id, OrderCheck.NOT_FOUND), None
        return facts_of(order, self._today()), order

    def ask(self, language: str, article_id: str, confidence: float) -> Answer:
        """No order number in the conversation: ask for it (the next message with one continues the topic)."""
        text = self._texts.render("ask_order_number", language)
        return Answer(text, confidence, (article_id,), reason="asked for the order number", awaits_order=True)

    async def answer(self, order_id: str, language: str, article_id: str, confidence: float) -> Answer:
        """The status as the reply, or a handoff: with the policy's offer, or saying why it couldn't look."""
        facts, order = await self.check(order_id)
        texts = self._texts
        if order is None:
            text = "order_unknown" if facts.check == OrderCheck.NOT_FOUND else "crm_unavailable"
            notice = texts.render(text, language, order_id=order_id)
            reason = f"order {order_id}: {facts.check.value.replace('_', ' ')}"
            return Answer("", confidence, (article_id,), needs_human=True, reason=reason, notice=notice, order=facts)
        status = self.describe(order, language)
        sources = (article_id, f"order:{order.order_id}")
        offer = self._policy().decide(order, today=self._today())
        if offer is None:
            return Answer(status, confidence, sources, order=facts)
        draft = f"{status}\n\n{offer.text(texts, language)}"
        notice = f"{status}\n\n{texts.render('order_handoff', language)}"
        reason = "a compensation needs an operator's approval"
        return Answer(draft, confidence, sources, (offer.action(),), True, reason, notice=notice, order=facts)

    def describe(self, order: Order, language: str) -> str:
        """The order's status in the customer's language: where it is, how late, where to track it."""
        texts, today = self._texts, self._today()
        when = order.delivered or today
        parts = [texts.render(f"order_{order.status}", language, order_id=order.order_id, date=_day(when, language))]
        if order.status in ("processing", "in_transit"):
            late = order.days_late(today) if order.lateness_known else 0
            if late and order.promised:
                parts.append(texts.render("order_late", language, days=late, date=_day(order.promised, language)))
            expected = order.expected or (order.promised if not late else None)
            if expected and expected >= today:
                parts.append(texts.render("order_expected", language, date=_day(expected, language)))
            if order.tracking_url:
                parts.append(texts.render("order_tracking", language, url=order.tracking_url))
        return " ".join(parts)


def facts_of(order: Order, today: date) -> OrderFacts:
    """A found order as its card shows it; without the promised date, lateness is unknown and says why."""
    if not order.lateness_known:
        return OrderFacts(order.order_id, OrderCheck.FOUND, order.status, None, LATENESS_UNKNOWN)
    return OrderFacts(order.order_id, OrderCheck.FOUND, order.status, order.days_late(today))


def _day(day: date, language: str) -> str:
    if language == "ru":
        return f"{day.day:02d}.{day.month:02d}.{day.year}"
    return f"{_EN_MONTHS[day.month - 1]} {day.day}, {day.year}"
