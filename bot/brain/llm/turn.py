"""What one customer message's agent run found out: the per-run context its tools write into."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.brain.llm.compensation import Offer
from bot.orders.order import Order


@dataclass
class Turn:
    language: str
    mentioned_orders: list[str]  # order numbers the customer wrote in this conversation
    offline_confidence: float = 0.0  # the analysis's, standing in for a confidence the model got wrong
    retrieved: dict[str, str] = field(default_factory=dict)  # article id -> the text the agent was shown
    orders: dict[str, Order] = field(default_factory=dict)  # looked up in the CRM during this run
    crm_failed: str | None = None  # the order number whose status could not be checked
    offer: Offer | None = None  # the compensation code approved as a proposal (an operator still sends it)
    human_requested: str = ""
    tool_calls: int = 0
