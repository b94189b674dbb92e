"""`relaydesk report` and `/metrics` against a known script played through the real Desk and OperatorActions.

Event times are rewritten after the script (per conversation and event type), so every figure below is
exact: FRT, resolution, automation, involvement, CSAT, per operator, per topic and per day.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import json
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlmodel import col, select

from bot.analytics.render import render
from bot.analytics.report import build_report, parse_since, percentile
from bot.app import App, build_app
from bot.cli import main
from bot.domain.types import Inbound
from bot.runner import make_server
from bot.storage.models import Conversation, Event, Handoff
from tests.conftest import Recorder, make_settings

DAY1 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY2 = DAY1 + timedelta(days=1)
ANGRY = (
    "This is the WORST shop ever!!! I returned the item a month ago and you still have not refunded me, "
    "you are thieves!"
)

# chat -> (conversation start, {event type: seconds after the start, one per occurrence})
TIMELINE: dict[str, tuple[datetime, dict[str, list[float]]]] = {
    "c1": (DAY1, {"message_in": [0], "bot_answer": [2], "feedback": [50], "resolved": [60]}),
    "c2": (DAY1 + timedelta(hours=1), {"message_in": [0], "bot_answer": [4]}),
    "c3": (
        DAY1 + timedelta(hours=2),
        {
            "message_in": [0],
            "handoff": [1],
            "claimed": [100],
            "operator_reply": [121],
            "resolved": [600],
            "feedback": [700],
        },
    ),
    "c4": (
        DAY2,
        {
            "message_in": [0],
            "handoff": [1],
            "claimed": [200],
            "operator_reply": [301],
            "draft_sent": [301],
            "resolved": [1200],
            "feedback": [1300],
        },
    ),
    "c5": (DAY2 + timedelta(hours=1), {"message_in": [0], "handoff": [1]}),
    "c6": (
        DAY2 + timedelta(hours=2),
        {
            "message_in": [0, 30, 500],
            "bot_answer": [3, 502],
            "handoff": [31],
            "claimed": [90],
            "operator_reply": [91],
            "resolved": [400],
            "feedback": [450],
            "reopened": [500],
        },
    ),
}

_ids = itertools.count(1)


async def say(app: App, chat: str, text: str) -> int:
    decision = await app.desk.receive(Inbound("test", chat, f"mx{next(_ids)}", text, name="Anna"))
    return decision.conversation_id


async def play(app: App) -> dict[str, int]:
    """Six conversations: two the bot handles alone, three operators take, one still waiting."""
    ops = app.operators
    # c5 asks before c3 is resolved: a resolved case becomes a topic of its own (the learning loop)
    ids = {"c5": await say(app, "c5", "I want to talk to a person")}
    ids["c1"] = await say(app, "c1", "How do I return an item?")
    assert (await ops.feedback(ids["c1"], "helpful")).ok  # Helped: resolved by the bot
    ids["c2"] = await say(app, "c2", "Where is my order?")
    ids["c3"] = await say(app, "c3", "I want to talk to a person")
    assert (await ops.reply(ids["c3"], "alice", "Hi, Alice here. How can I help?")).ok
    assert (await ops.resolve(ids["c3"], "alice")).ok
    assert (await ops.feedback(ids["c3"], "csat", 5)).ok
    ids["c4"] = await say(app, "c4", ANGRY)
    assert (await ops.claim(ids["c4"], "bob")).ok
    async with app.sessions() as session:
        card = (await session.execute(select(Handoff).where(Handoff.conversation_id == ids["c4"]))).scalars().one()
    assert card.id is not None
    assert (await ops.send_draft(card.id, "bob", "Sorry for the wait: your refund is on its way.")).ok
    assert (await ops.resolve(ids["c4"], "bob")).ok
    assert (await ops.feedback(ids["c4"], "csat", 3)).ok
    ids["c6"] = await say(app, "c6", "Which payment methods do you accept?")
    assert await say(app, "c6", "I want to talk to a person") == ids["c6"]
    assert (await ops.reply(ids["c6"], "alice", "Hello! Cards, Apple Pay and cash.")).ok
    assert (await ops.resolve(ids["c6"], "alice")).ok
    assert (await ops.feedback(ids["c6"], "csat", 4)).ok
    assert await say(app, "c6", "Can I pay by card?") == ids["c6"]  # reopens the resolved conversation
    await app.outbox.deliver_due()
    return ids


async def retime(app: App, ids: dict[str, int]) -> None:
    """Put every conversation and event at its place in TIMELINE (the script itself runs in milliseconds)."""
    async with app.sessions() as session, session.begin():
        for chat, (start, offsets) in TIMELINE.items():
            conversation = await session.get(Conversation, ids[chat])
            assert conversation is not None
            conversation.created_at = start
            events = (
                (await session.execute(select(Event).where(Event.conversation_id == ids[chat]).order_by(col(Event.id))))
                .scalars()
                .all()
            )
            seen: dict[str, int] = defaultdict(int)
            for event in events:
                at = offsets[event.type][seen[event.type]]
                seen[event.type] += 1
                event.created_at = start + timedelta(seconds=at)
            assert {t: len(v) for t, v in offsets.items()} == dict(seen), chat


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else None


@pytest.fixture
async def scripted(database_url: str | None, tmp_path: Path) -> AsyncIterator[App]:
    app = await build_app(make_settings(tmp_path, database_url))
    app.outbox.register("test", Recorder())
    app.outbox.register(app.desk.queue_channel, Recorder())
    await retime(app, await play(app))
    yield app
    await app.close()


async def report_of(app: App) -> dict[str, Any]:
    return await build_report(app.sessions, app.settings.analytics, DAY1 - timedelta(hours=9), DAY2 + timedelta(days=1))


async def test_the_report_has_the_exact_figures_of_the_script(scripted: App) -> None:
    report = json.loads(render(await report_of(scripted), "json"))
    assert report["conversations"] == 6
    assert (report["automated"], report["automation_rate"]) == (2, 0.3333)  # c1, c2
    # of the bot's answers nobody else touched, c1 pressed Helped, c2 said nothing more; c6 is an operator's
    assert (report["bot_answered"], report["automated_confirmed"], report["automated_unconfirmed"]) == (2, 1, 1)
    assert (report["automated_failed"], report["confirmed_automation_rate"]) == (0, 0.1667)
    assert (report["involved"], report["involvement_rate"]) == (3, 0.5)  # c3, c4, c6
    assert report["handed_off"] == 4 and report["resolved_by_bot"] == 1
    # first responses: 2, 4 (bot), 121, 301 (operators), 3 (bot, c6); c5 still waits
    assert (report["frt_p50_s"], report["frt_p90_s"]) == (4.0, 301.0)
    assert (report["frt_bot_p50_s"], report["frt_bot_p90_s"]) == (3.0, 4.0)
    assert (report["frt_human_p50_s"], report["frt_human_p90_s"]) == (120.0, 300.0)  # from the handoff
    assert (report["resolved"], report["resolution_p50_s"], report["resolution_p90_s"]) == (4, 400.0, 1200.0)
    assert (report["csat_avg"], report["csat_count"]) == (4.0, 3)
    assert (report["helpful"], report["not_helpful"]) == (1, 0)
    assert (report["reopened"], report["reopen_rate"]) == (1, 0.25)
    async with scripted.sessions() as session:
        stored = Counter(r for h in (await session.execute(select(Handoff))).scalars() for r in h.reasons)
    assert report["handoff_reasons"] == dict(stored)  # the offline brain may add its own reasons
    assert (stored["asked_for_human"], stored["negative_sentiment"]) == (3, 1)
    assert report["sentiment"] == {"neutral": 7, "negative": 1}  # 4 bot answers + 4 handoffs
    assert report["per_operator"] == {
        "alice": {
            "conversations": 2,
            "replies": 2,
            "frt_p50_s": 60.0,
            "frt_p90_s": 120.0,
            "csat_avg": 4.5,
            "csat_count": 2,
        },
        "bob": {
            "conversations": 1,
            "replies": 1,
            "frt_p50_s": 300.0,
            "frt_p90_s": 300.0,
            "csat_avg": 3.0,
            "csat_count": 1,
        },
    }
    topics = report["per_topic"]
    assert set(topics) == {"returns-policy", "order-tracking", "payment-methods"}
    assert (topics["returns-policy"]["conversations"], topics["returns-policy"]["automated"]) == (1, 1)
    assert (topics["order-tracking"]["automation_rate"], topics["order-tracking"]["frt_p50_s"]) == (1.0, 4.0)
    payments = topics["payment-methods"]
    assert (payments["conversations"], payments["automated"], payments["involved"]) == (4, 0, 3)
    assert (payments["csat_avg"], payments["csat_count"]) == (4.0, 3)
    days = {d["date"]: d for d in report["per_day"]}
    assert list(days) == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert (days["2026-03-02"]["conversations"], days["2026-03-02"]["automated"]) == (3, 2)
    assert (days["2026-03-03"]["conversations"], days["2026-03-03"]["automation_rate"]) == (3, 0.0)
    assert days["2026-03-03"]["csat_avg"] == 3.5 and days["2026-03-04"]["conversations"] == 0
    roi = report["roi"]
    assert roi["operator_hours_saved"] == 0.2 and roi["operator_cost_saved"] == 5.0  # 2 x 6 min x 25/h
    assert (roi["operator_cost_saved_confirmed"], roi["operator_cost_saved_unconfirmed"]) == (2.5, 2.5)
    assert roi["llm_spend"] == 0 and not roi["tokens_recorded"] and "no LLM calls" in roi["note"]


async def test_a_window_counts_only_the_conversations_that_started_in_it(scripted: App) -> None:
    report = await build_report(scripted.sessions, scripted.settings.analytics, DAY2, DAY2 + timedelta(hours=10))
    assert (report["conversations"], report["automated"], report["involved"]) == (3, 0, 2)
    assert set(report["per_operator"]) == {"alice", "bob"}
    assert [d["date"] for d in report["per_day"]] == ["2026-03-03"]


async def test_table_csv_and_html_render_the_same_figures(scripted: App, tmp_path: Path) -> None:
    report = await report_of(scripted)
    table = render(report, "table")
    assert re.search(r"automation rate\s+0.3333", table) and "alice" in table and "payment-methods" in table
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert {"section": "summary", "key": "", "metric": "conversations", "value": "6"} in rows
    assert {"section": "per_operator", "key": "bob", "metric": "replies", "value": "1"} in rows
    assert {"section": "handoff_reasons", "key": "asked_for_human", "metric": "count", "value": "3"} in rows
    page = render(report, "html")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 4
    for title in ("Conversations per day", "First response time", "Automation rate (%)", "CSAT average"):
        assert title in page
    assert "<td>alice</td>" in page and "<td>bob</td>" in page
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r"<script|<link|src=|@import|url\(", page)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)


def test_the_command_writes_json_and_an_html_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)

    async def prepare() -> None:
        app = await build_app(settings)
        app.outbox.register("test", Recorder())
        app.outbox.register(app.desk.queue_channel, Recorder())
        await play(app)
        await app.close()

    asyncio.run(prepare())
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {settings.database.url}\n", encoding="utf-8")
    assert main(["--config", str(config), "report", "--since", "1d", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    for key in ("conversations", "automation_rate", "involvement_rate", "frt_p50_s", "frt_p90_s"):
        assert key in report
    assert (report["conversations"], report["automation_rate"], report["involvement_rate"]) == (6, 0.3333, 0.5)
    assert set(report["per_operator"]) == {"alice", "bob"} and "payment-methods" in report["per_topic"]
    out = tmp_path / "report.html"
    assert main(["--config", str(config), "report", "--since", "24h", "--format", "html", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("<svg") == 4
    assert main(["--config", str(config), "report", "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err


def test_the_json_report_of_one_conversation_has_counts_not_booleans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)

    async def one_conversation() -> None:
        app = await build_app(settings)
        app.outbox.register("test", Recorder())
        conversation_id = await say(app, "solo", "How do I return an item?")
        assert (await app.operators.feedback(conversation_id, "helpful")).ok
        await app.close()

    asyncio.run(one_conversation())
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {settings.database.url}\n", encoding="utf-8")
    assert main(["--config", str(config), "report", "--since", "1d", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    counts = ("conversations", "automated", "involved", "handed_off", "resolved", "resolved_by_bot", "reopened")
    assert {key: report[key] for key in counts} == dict(zip(counts, (1, 1, 0, 0, 1, 1, 0), strict=True))
    assert not [key for key in counts if isinstance(report[key], bool)]


def test_since_reads_durations_and_dates() -> None:
    now = datetime(2026, 3, 10, 12, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("24h", now) == now - timedelta(hours=24)
    assert parse_since("2026-03-01", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert percentile([10, 20, 30, 40], 50) == 20 and percentile([], 90) is None


async def test_metrics_endpoint_speaks_prometheus(app: App, customers: Recorder, queue: Recorder) -> None:
    async with TestClient(TestServer(make_server(app))) as client:
        await play(app)
        response = await client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()

    def value(sample: str) -> float:
        found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        assert found, sample
        return float(found.group(1))

    assert "# TYPE relaydesk_messages_in_total counter" in text
    assert "# TYPE relaydesk_desk_latency_seconds histogram" in text
    assert value('relaydesk_messages_in_total{action="answer"}') == 4
    assert value('relaydesk_messages_in_total{action="handoff"}') == 4
    assert value("relaydesk_bot_answers_total") == 4 and value("relaydesk_handoffs_total") == 4
    assert value('relaydesk_handoff_reasons_total{reason="asked_for_human"}') == 3
    assert value('relaydesk_handoff_reasons_total{reason="negative_sentiment"}') == 1
    assert value('relaydesk_desk_latency_seconds_count{action="answer"}') == 4
    assert value('relaydesk_desk_latency_seconds_bucket{action="handoff",le="+Inf"}') == 4
    sent = value('relaydesk_deliveries_total{channel="test",outcome="sent"}')
    assert sent == len(customers.sent) > 0
    assert value(f'relaydesk_deliveries_total{{channel="{app.desk.queue_channel}",outcome="sent"}}') == len(queue.sent)


async def test_failed_deliveries_are_counted(app: App, customers: Recorder) -> None:
    async with TestClient(TestServer(make_server(app))) as client:
        customers.failures.append(ConnectionError("down"))
        await say(app, "x1", "How do I return an item?")
        await app.outbox.deliver_due()
        text = await (await client.get("/metrics")).text()
    assert 'relaydesk_deliveries_total{channel="test",outcome="failed"} 1.0' in text
