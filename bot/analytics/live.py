"""Live counters for Prometheus (`GET /metrics`), updated by the desk and the outbox as things happen.

Nothing is queried per scrape: the desk and the outbox call `observe_decision` / `observe_delivery`
through their `observers` lists, and a scrape renders the counters. Each App gets its own registry
(no process-global state), so tests and several apps in one process do not mix their figures.
Counters restart from zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from bot.domain.types import Decision
from bot.storage.models import Delivery, DeliveryStatus

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # what generate_latest writes


class LiveMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter(
            "relaydesk_messages_in",
            "Customer messages the desk handled, by what it did",
            ["action"],
            registry=self.registry,
        )
        self.bot_answers = Counter("relaydesk_bot_answers", "Answers the bot sent on its own", registry=self.registry)
        self.handoffs = Counter("relaydesk_handoffs", "Questions handed to operators", registry=self.registry)
        self.handoff_reasons = Counter(
            "relaydesk_handoff_reasons",
            "Why questions went to operators (a handoff may give several reasons)",
            ["reason"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "relaydesk_deliveries",
            "Outbox delivery attempts by channel and outcome (sent; failed: retried later; parked: gave up until "
            "the channel answers again; dead: refused for good)",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "relaydesk_desk_latency_seconds",
            "Time Desk.receive took per customer message, by action",
            ["action"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def attach(self, app: Any) -> LiveMetrics:
        """Start counting what `app.desk` and `app.outbox` do."""
        app.desk.observers.append(self.observe_decision)
        app.outbox.observers.append(self.observe_delivery)
        return self

    def observe_decision(self, decision: Decision, seconds: float) -> None:
        self.messages.labels(decision.action).inc()
        self.latency.labels(decision.action).observe(seconds)
        if decision.action == "answer":
            self.bot_answers.inc()
        elif decision.action == "handoff":
            self.handoffs.inc()
            for reason in decision.reasons:
                self.handoff_reasons.labels(str(reason)).inc()

    def observe_delivery(self, delivery: Delivery, status: DeliveryStatus | None) -> None:
        self.deliveries.labels(delivery.channel, status or "failed").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
