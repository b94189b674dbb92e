"""An order as the core sees it, and order numbers in a message (the CRM's port is bot.ports.OrderLookup)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

STATUSES = ("processing", "in_transit", "delivered", "lost", "cancelled")


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str  # one of STATUSES
    promised: date | None = None  # the delivery date the customer was promised
    delivered: date | None = None
    customer: str = ""
    total: float = 0.0
    expected: date | None = None  # the carrier's current estimate, when the CRM has one
    tracking_url: str = ""
    unmapped: tuple[str, ...] = ()  # our fields the CRM's answer lacked (crm.fields names a field it doesn't send)

    @property
    def lateness_known(self) -> bool:
        """False when the CRM's answer lacks the promised date: how late it is can't be told (nor compensated)."""
        return "promised" not in self.unmapped

    def days_late(self, today: date | None = None) -> int:
        """How many days past the promised date it arrived (or, not yet arrived, is now)."""
        if self.promised is None or self.status == "cancelled":
            return 0
        end = self.delivered if self.status == "delivered" and self.delivered else (today or date.today())
        return max(0, (end - self.promised).days)

    def describe(self, today: date | None = None) -> str:
        """What the agent is told: facts only, no customer PII."""
        parts = [f"order {self.order_id}: status {self.status}"]
        if not self.lateness_known:
            parts.append("lateness unknown (the CRM sent no promised date)")
        if self.promised:
            parts.append(f"promised for {self.promised.isoformat()}")
        if self.delivered:
            parts.append(f"delivered on {self.delivered.isoformat()}")
        late = self.days_late(today)
        if late and self.status != "delivered":
            parts.append(f"{late} days late")
        elif late:
            parts.append(f"arrived {late} days late")
        return ", ".join(parts)


# "order 10234", "order #A-10234", "order no. 10234", "заказ №10234", "номер заказа 10234", "#10234"
_ORDER = re.compile(
    r"(?:\b(?:order|заказ\w*|номер)\s*(?:number|no\.?|num\.?|номер|n|№|#)?\s*:?\s*|#|№\s*)"
    r"([A-Za-z]{0,3}-?\d{4,12})\b",
    re.IGNORECASE,
)
_BARE = re.compile(r"(?<![\w.,+-])(\d{5,12})(?![\w.,])")


def find_order_numbers(text: str) -> list[str]:
    """Order numbers a customer wrote, in Russian or English; a bare 5+ digit number counts too."""
    found = [m.group(1).upper() for m in _ORDER.finditer(text)]
    if not found:
        found = [m.group(1) for m in _BARE.finditer(text)]
    return list(dict.fromkeys(found))
