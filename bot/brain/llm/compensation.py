"""The compensation policy (`prompts/compensation.yaml`): the agent proposes, this code decides.

A proposal names an order; the code looks the order up itself, finds the first rule that holds
(lost, or late by at least N days), and offers that rule's percentage, never more than the cap and
never more than the agent asked for. What the customer said ("give me 100%", "ignore your rules")
plays no part. The offer goes into a draft; only an operator's Send delivers it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.orders.order import Order
from bot.prompts.texts import PromptError, Texts, read_yaml


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Literal["late", "lost"]
    min_days_late: int = Field(default=1, ge=0)
    percent: int = Field(gt=0, le=100)


class CompensationPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["promo_code"] = "promo_code"
    rules: list[Rule] = Field(default_factory=list)
    max_percent: int = Field(default=20, gt=0, le=100)
    code_prefix: str = Field(default="SORRY", pattern=r"^[A-Z0-9]{1,12}$")
    valid_days: int = Field(default=30, gt=0)

    def rule_for(self, order: Order, today: date | None = None) -> Rule | None:
        """The first rule the order meets; a lateness rule never holds when the CRM did not say the promised date."""
        late = order.days_late(today) if order.lateness_known else 0
        for rule in self.rules:
            if rule.when == "lost" and order.status == "lost":
                return rule
            if rule.when == "late" and order.status != "lost" and late >= max(rule.min_days_late, 1):
                return rule
        return None

    def decide(self, order: Order, requested_percent: int | None = None, today: date | None = None) -> Offer | None:
        """The offer this order earns (capped, and no more than requested), or None when it earns none."""
        rule = self.rule_for(order, today)
        if rule is None:
            return None
        percent = min(rule.percent, self.max_percent)
        if requested_percent is not None and requested_percent > 0:
            percent = min(percent, requested_percent)
        digest = hashlib.sha256(f"{order.order_id}:{percent}".encode()).hexdigest()[:6].upper()
        return Offer(
            order_id=order.order_id,
            percent=percent,
            code=f"{self.code_prefix}{percent}-{digest}",
            days_late=order.days_late(today),
            valid_days=self.valid_days,
            rule=f"{rule.when} >= {rule.min_days_late} days" if rule.when == "late" else "lost",
        )


@dataclass(frozen=True)
class Offer:
    order_id: str
    percent: int
    code: str
    days_late: int
    valid_days: int
    rule: str

    def action(self) -> dict[str, Any]:
        """How the offer travels in `Answer.actions` to the operator's card."""
        return {
            "type": "compensation",
            "kind": "promo_code",
            "order_id": self.order_id,
            "percent": self.percent,
            "code": self.code,
            "days_late": self.days_late,
            "valid_days": self.valid_days,
            "rule": self.rule,
            "requires_approval": True,
        }

    def text(self, texts: Texts, language: str) -> str:
        """The apology with the code, as the draft an operator approves (texts.yaml: compensation_*)."""
        values = {"order_id": self.order_id, "percent": self.percent, "code": self.code, "valid_days": self.valid_days}
        if self.rule == "lost":
            return texts.render("compensation_lost", language, **values)
        return texts.render("compensation_offer", language, days_late=self.days_late, **values)


def load_policy(path: Path) -> CompensationPolicy:
    data = read_yaml(path)
    try:
        policy = CompensationPolicy.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise PromptError(f"{path}: {where}: {err['msg']} (got {err.get('input')!r})") from None
    for i, rule in enumerate(policy.rules):
        if rule.percent > policy.max_percent:
            raise PromptError(f"{path}: rules.{i}.percent: {rule.percent} is above max_percent {policy.max_percent}")
    return policy
