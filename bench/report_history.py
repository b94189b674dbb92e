"""How long `relaydesk report` takes over a realistic 30-day history, on SQLite and on PostgreSQL.

Generates the history straight into a fresh database (bulk inserts, schema by the product's own
migrations): 10,000 conversations over 30 days with a daily and weekly rhythm. 70% of customers are
in the pilot cohort (stable per customer, bot/desk/pilot.py), where ~62% are answered by the bot alone; the
rest, and every copilot conversation, go to one of several operators (claims, replies, drafts,
resolutions, CSAT, reopens, a few left waiting), plus the customers' and answers' messages. Then times
`bot.analytics.report.build_report` (the function behind `relaydesk report`) for `--since 30d`,
and the JSON and HTML rendering, three runs each; prints the best and the median.

    .venv/bin/python bench/report_history.py [--quick] [--conversations N] [--pg URL | --no-pg]

PostgreSQL: a fresh database is created on the server of `--pg` (default
postgresql://postgres@127.0.0.1:5432/test) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.common import header
from bot.analytics.render import render
from bot.analytics.report import build_report
from bot.config import AnalyticsSettings, AutomationSettings
from bot.desk.pilot import PilotCohort
from bot.storage.db import create_engine, migrate, sessions
from bot.storage.models import Conversation, Customer, Event, Feedback, Handoff, Message

TOPICS = [
    ("order-tracking", 0.24, 0.85),  # topic, share, how often the bot handles it alone
    ("returns-policy", 0.18, 0.75),
    ("payment-methods", 0.12, 0.9),
    ("delivery-times", 0.12, 0.8),
    ("refund-status", 0.14, 0.35),
    ("damaged-item", 0.08, 0.15),
    ("account-access", 0.07, 0.55),
    ("promo-codes", 0.05, 0.7),
]
OPERATORS = ["alice", "bob", "carol", "dmitry", "elena", "farid"]
REASONS = ["low_confidence", "asked_for_human", "negative_sentiment", "no_answer", "repeated_question", "not_text"]
PILOT = PilotCohort(AutomationSettings(pilot_percent=70))  # the rest are copilot: every question to an operator
HOURLY = [1, 1, 1, 1, 1, 2, 3, 5, 8, 10, 11, 11, 10, 10, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2]  # customers by hour


class History:
    """Rows to insert, with ids assigned here so events can point at their conversation."""

    def __init__(self, conversations: int, days: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        self.start = self.end - timedelta(days=days)
        self.rows: dict[type, list[dict[str, Any]]] = {
            t: [] for t in (Customer, Conversation, Message, Handoff, Event, Feedback)
        }
        self.message_id = self.handoff_id = 0
        for cid in range(1, conversations + 1):
            self._conversation(cid)

    def _when(self) -> datetime:
        rng = self.rng
        while True:
            day = self.start + timedelta(days=rng.randrange((self.end - self.start).days))
            weekday_weight = 0.6 if day.weekday() >= 5 else 1.0
            hour = rng.choices(range(24), HOURLY)[0]
            if rng.random() < weekday_weight:
                return day.replace(hour=hour) + timedelta(seconds=rng.randrange(3600))

    def _event(self, cid: int, at: datetime, type_: str, operator: str | None = None, **data: Any) -> None:
        self.rows[Event].append(
            {"conversation_id": cid, "type": type_, "operator": operator, "data": data, "created_at": at}
        )

    def _message(self, cid: int, at: datetime, author: str, text: str, operator: str | None = None) -> None:
        self.message_id += 1
        external = f"b{self.message_id}" if author == "customer" else None
        self.rows[Message].append(
            {
                "conversation_id": cid,
                "author": author,
                "channel": "telegram",
                "external_id": external,
                "kind": "text",
                "text": text,
                "operator": operator,
                "meta": {},
                "created_at": at,
            }
        )

    def _conversation(self, cid: int) -> None:
        rng = self.rng
        topic, _, alone = rng.choices(TOPICS, [t[1] for t in TOPICS])[0]
        at = self._when()
        mood = rng.choices(["neutral", "positive", "negative"], [0.7, 0.1, 0.2])[0]
        language = rng.choice(["ru", "en"])
        cohort = str(PILOT.of("telegram", str(100000 + cid)))
        self.rows[Customer].append(
            {
                "id": cid,
                "channel": "telegram",
                "chat_id": str(100000 + cid),
                "name": f"Customer {cid}",
                "created_at": at,
            }
        )
        conversation: dict[str, Any] = {
            "id": cid,
            "customer_id": cid,
            "state": "bot",
            "topic": topic,
            "priority": "normal",
            "operator": None,
            "queue_thread": None,
            "created_at": at,
            "updated_at": at,
            "resolved_at": None,
        }
        self.rows[Conversation].append(conversation)
        self._message(cid, at, "customer", f"question about {topic}")
        self._event(cid, at, "message_in", kind="text")
        t = at + timedelta(seconds=rng.uniform(0.3, 4))
        if rng.random() < alone and mood != "negative" and cohort == "pilot":
            self._bot_answer(cid, t, topic, 0.8, language, mood, 40, cohort)
            if rng.random() < 0.35:
                t += timedelta(seconds=rng.uniform(20, 600))
                self.rows[Feedback].append({"conversation_id": cid, "kind": "helpful", "value": 0, "created_at": t})
                self._event(cid, t, "feedback", kind="helpful", value=0)
                self._event(cid, t, "resolved", by="bot")
                conversation.update(state="resolved", resolved_at=t)
            elif rng.random() < 0.05:
                self.rows[Feedback].append({"conversation_id": cid, "kind": "not_helpful", "value": 0, "created_at": t})
                self._event(cid, t, "feedback", kind="not_helpful", value=0)
            return
        if rng.random() < 0.3 and cohort == "pilot":  # the bot tried first, then the customer asked again
            self._bot_answer(cid, t, topic, 0.6, language, mood, 45, cohort)
            t += timedelta(seconds=rng.uniform(15, 300))
            self._message(cid, t, "customer", "that did not help")
            self._event(cid, t, "message_in", kind="text")
        reasons = ["negative_sentiment"] if mood == "negative" else rng.sample(REASONS, rng.choice([1, 1, 2]))
        if cohort == "copilot":
            reasons = [*reasons, "copilot_cohort"]
        self.handoff_id += 1
        self.rows[Handoff].append(
            {
                "id": self.handoff_id,
                "conversation_id": cid,
                "status": "open",
                "question": f"question about {topic}",
                "topic": topic,
                "sentiment": mood,
                "priority": "high" if mood == "negative" else "normal",
                "reasons": reasons,
                "summary": "",
                "draft": "a draft",
                "sources": [],
                "created_at": t,
            }
        )
        self._event(cid, t, "handoff", reasons=reasons, topic=topic, sentiment=mood, priority="normal", cohort=cohort)
        conversation["state"] = "waiting_operator"
        if rng.random() < 0.04:  # still waiting at the end of the window
            return
        operator = rng.choice(OPERATORS)
        busy = 1.0 if 9 <= t.hour < 19 else 4.0
        t += timedelta(seconds=rng.lognormvariate(4.5, 0.9) * busy)
        self._event(cid, t, "claimed", operator=operator)
        for n in range(rng.choice([1, 1, 2, 3])):
            t += timedelta(seconds=rng.uniform(20, 240))
            text = "operator answer" + " more" * n
            self._message(cid, t, "operator", text, operator)
            self._event(cid, t, "operator_reply", operator=operator, handoff_id=self.handoff_id, chars=len(text))
            if n == 0 and rng.random() < 0.4:
                self._event(cid, t, "draft_sent", operator=operator, handoff_id=self.handoff_id, edited=False)
            if n < 2 and rng.random() < 0.5:
                t += timedelta(seconds=rng.uniform(30, 900))
                self._message(cid, t, "customer", "thanks, and ...")
                self._event(cid, t, "message_in", kind="text")
        t += timedelta(seconds=rng.uniform(60, 3600))
        self._event(cid, t, "resolved", operator=operator)
        conversation.update(state="resolved", operator=operator, resolved_at=t)
        if rng.random() < 0.55:
            score = rng.choices([1, 2, 3, 4, 5], [0.05, 0.05, 0.12, 0.3, 0.48])[0]
            t += timedelta(seconds=rng.uniform(10, 600))
            self.rows[Feedback].append({"conversation_id": cid, "kind": "csat", "value": score, "created_at": t})
            self._event(cid, t, "feedback", kind="csat", value=score)
        if rng.random() < 0.06:
            t += timedelta(hours=rng.uniform(1, 48))
            self._event(cid, t, "reopened")
            self._message(cid, t, "customer", "it happened again")
            self._event(cid, t, "message_in", kind="text")
            conversation.update(state="bot", operator=None)

    def _bot_answer(
        self, cid: int, t: datetime, topic: str, confidence: float, language: str, mood: str, ms: int, cohort: str
    ) -> None:
        self._message(cid, t, "bot", f"answer about {topic}")
        self._event(
            cid,
            t,
            "bot_answer",
            topic=topic,
            confidence=confidence,
            language=language,
            sentiment=mood,
            ms=ms,
            cohort=cohort,
        )

    def counts(self) -> str:
        return ", ".join(f"{len(rows):,} {table.__name__.lower()}s" for table, rows in self.rows.items())


async def load(engine: AsyncEngine, history: History, chunk: int = 5000) -> float:
    started = time.perf_counter()
    await migrate(engine)
    async with engine.begin() as conn:
        for table, rows in history.rows.items():
            for i in range(0, len(rows), chunk):
                await conn.execute(insert(table), rows[i : i + chunk])
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for name in ("customer", "conversation", "handoff"):
                await conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), (SELECT max(id) FROM {name}))"
                )
            await conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - started


async def measure(name: str, url: str, history: History, days: int, runs: int) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        seconds = await load(engine, history)
        print(f"{name}: loaded in {seconds:.1f}s")
        factory = sessions(engine)
        since = datetime.now(UTC) - timedelta(days=days)
        timings: list[float] = []
        renders: list[float] = []
        report: dict[str, Any] = {}
        for _ in range(runs):
            started = time.perf_counter()
            report = await build_report(factory, AnalyticsSettings(), since)
            timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            render(report, "json")
            render(report, "html")
            renders.append(time.perf_counter() - started)
    finally:
        await engine.dispose()
    print(
        f"{name}: report over {report['conversations']:,} conversations: best {min(timings):.3f}s, "
        f"median {statistics.median(timings):.3f}s (+ json and html rendering {statistics.median(renders):.3f}s)"
    )
    return {"report": report, "best": min(timings), "median": statistics.median(timings)}


async def with_postgres(admin: str, history: History, days: int, runs: int) -> dict[str, Any] | None:
    try:
        import asyncpg
    except ImportError:
        print("postgresql: asyncpg is not installed; skipped")
        return None
    name = f"relaydesk_bench_{uuid.uuid4().hex[:8]}"
    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgresql: not available at {admin}: {exc}; skipped")
        return None
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        return await measure("postgresql", f"{base}/{name}", history, days, runs)
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1,000 conversations, one run")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", help="admin URL (asyncpg)")
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.conversations, args.runs = 1000, 1
    header(f"relaydesk report over {args.conversations:,} conversations in {args.days} days")
    started = time.perf_counter()
    history = History(args.conversations, args.days)
    print(f"generated {history.counts()} in {time.perf_counter() - started:.1f}s")
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await measure("sqlite", f"sqlite+aiosqlite:///{tmp}/history.db", history, args.days + 1, args.runs)
    postgres = None if args.no_pg else await with_postgres(args.pg, history, args.days + 1, args.runs)
    report = sqlite["report"]
    print(
        f"figures: automation {report['automation_rate']}, involvement {report['involvement_rate']}, "
        f"FRT p50 {report['frt_p50_s']}s / p90 {report['frt_p90_s']}s, human FRT p50 {report['frt_human_p50_s']}s, "
        f"CSAT {report['csat_avg']} ({report['csat_count']}), reopen {report['reopen_rate']}"
    )
    for name, group in report["per_cohort"].items():
        print(
            f"  {name}: {group['conversations']:,} conversations, automation {group['automation_rate']}, "
            f"FRT p50 {group['frt_p50_s']}s / p90 {group['frt_p90_s']}s, CSAT {group['csat_avg']}"
        )
    if postgres is not None:
        same = {k: v for k, v in postgres["report"].items() if k != "window"} == {
            k: v for k, v in report.items() if k != "window"
        }
        print(f"postgresql and sqlite reports identical: {same}")
    print(
        f"RESULT report_seconds sqlite={sqlite['median']:.3f}"
        + (f" postgresql={postgres['median']:.3f}" if postgres else "")
        + f" conversations={report['conversations']}"
    )


if __name__ == "__main__":
    asyncio.run(main())
