"""The pilot cohort: who the bot may answer directly, how the desk records it, and how the report compares."""

from __future__ import annotations

import csv
import io
import itertools
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.analytics.render import render
from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.config import AutomationSettings
from bot.desk.pilot import Cohort, PilotCohort, bucket
from bot.domain.types import Inbound, Reason
from bot.storage.models import Conversation, Event
from tests.conftest import REPO, Recorder, make_settings

_ids = itertools.count(1)


def said(chat: str, text: str) -> Inbound:
    return Inbound("test", chat, f"p{next(_ids)}", text, name="Anna")


# -- who is in the pilot ------------------------------------------------------------------------------


def test_the_bucket_is_a_stable_hash_not_pythons_salted_one() -> None:
    # Pinned: a change here would move customers between cohorts mid-pilot.
    assert bucket("telegram", "12345") == 17.52
    assert bucket("telegram", "12346") != bucket("slack", "12345")
    code = "from bot.desk.pilot import bucket; print(bucket('telegram', '12345'))"
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True)
        assert out.stdout.strip() == "17.52"


def test_the_percentage_is_the_share_of_customers_and_raising_it_only_adds() -> None:
    chats = [str(100_000 + n) for n in range(10_000)]

    def pilot(percent: float) -> set[str]:
        cohort = PilotCohort(AutomationSettings(pilot_percent=percent))
        return {chat for chat in chats if cohort.of("telegram", chat) == Cohort.PILOT}

    ten, thirty = pilot(10), pilot(30)
    assert 900 <= len(ten) <= 1100 and 2800 <= len(thirty) <= 3200
    assert ten < thirty  # a customer in the pilot stays in it when it grows
    assert pilot(0) == set() and pilot(100) == set(chats)


def test_the_allowlist_is_always_in_the_pilot() -> None:
    cohort = PilotCohort(AutomationSettings(pilot_percent=0, pilot_allowlist=["777", "telegram:888"]))
    assert cohort.of("telegram", "777") == cohort.of("console", "777") == Cohort.PILOT  # a bare id: any channel
    assert cohort.of("telegram", "888") == Cohort.PILOT
    assert cohort.of("console", "888") == Cohort.COPILOT  # channel:chat_id is that channel only
    assert cohort.of("telegram", "999") == Cohort.COPILOT


def test_suggest_mode_puts_everyone_in_copilot() -> None:
    cohort = PilotCohort(AutomationSettings(mode="suggest", pilot_percent=100, pilot_allowlist=["777"]))
    assert cohort.of("telegram", "777") == cohort.of("telegram", "1") == Cohort.COPILOT


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("automation:\n  pilot_percent: 120\n", "automation.pilot_percent", "less than or equal to 100"),
        ("automation:\n  pilot_percent: -1\n", "automation.pilot_percent", "greater than or equal to 0"),
        ("automation:\n  pilot_percent: half\n", "automation.pilot_percent", "number"),
        ("automation:\n  pilot_allowlist: ['', 'telegram:']\n", "automation.pilot_allowlist", "none of them empty"),
    ],
)
def test_bad_pilot_settings_name_the_key(tmp_path: Path, text: str, key: str, expected: str) -> None:
    from bot.config import ConfigError, load_settings

    (tmp_path / "config.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "config.yaml", environ={})
    line = next(line for line in str(caught.value).splitlines() if line.strip().startswith(key + ":"))
    assert "got" in line and expected in line


def test_numeric_chat_ids_in_the_allowlist_are_text(tmp_path: Path) -> None:
    from bot.config import load_settings

    (tmp_path / "config.yaml").write_text("automation:\n  pilot_allowlist: [12345, telegram:678]\n", encoding="utf-8")
    settings = load_settings(tmp_path / "config.yaml", environ={})
    assert settings.automation.pilot_allowlist == ["12345", "telegram:678"]
    assert load_settings(tmp_path / "config.yaml", environ={}).automation.pilot_percent == 100  # the default


# -- the desk -----------------------------------------------------------------------------------------


@pytest.fixture
async def piloted(tmp_path: Path) -> AsyncIterator[App]:
    """Nobody in the pilot by percentage; chats p1 and p2 are in it by the allowlist."""
    settings = make_settings(tmp_path)
    settings.automation.pilot_percent = 0
    settings.automation.pilot_allowlist = ["p1", "test:p2"]
    app = await build_app(settings)
    app.outbox.register("test", Recorder())
    yield app
    await app.close()


async def cohorts_recorded(app: App, conversation_id: int) -> list[tuple[str, str | None]]:
    async with app.sessions() as session:
        events = (
            await session.execute(
                select(Event)
                .where(Event.conversation_id == conversation_id)
                .where(col(Event.type).in_(("bot_answer", "handoff")))
                .order_by(col(Event.id))
            )
        ).scalars()
        return [(e.type, e.data.get("cohort")) for e in events]


async def test_outside_the_pilot_a_confident_answer_goes_to_an_operator_as_a_draft(piloted: App) -> None:
    queue = Recorder()
    piloted.outbox.register(piloted.desk.queue_channel, queue)
    inside = await piloted.desk.receive(said("p1", "How do I return an item?"))
    outside = await piloted.desk.receive(said("c1", "How do I return an item?"))
    await piloted.outbox.deliver_due()
    assert inside.action == "answer"
    assert outside.action == "handoff" and outside.reasons == (Reason.COPILOT_COHORT,)  # confident, only the cohort
    card = queue.sent[0].payload
    assert card["reasons"] == ["copilot_cohort"] and "30 days" in card["draft"]
    assert await cohorts_recorded(piloted, inside.conversation_id) == [("bot_answer", "pilot")]
    assert await cohorts_recorded(piloted, outside.conversation_id) == [("handoff", "copilot")]


async def test_by_default_everyone_is_in_the_pilot(app: App) -> None:
    app.outbox.register("test", Recorder())
    decision = await app.desk.receive(said("anyone", "How do I return an item?"))
    assert decision.action == "answer"
    assert await cohorts_recorded(app, decision.conversation_id) == [("bot_answer", "pilot")]


async def test_suggest_mode_hands_off_for_the_mode_not_the_cohort(piloted: App) -> None:
    piloted.settings.automation.mode = "suggest"
    decision = await piloted.desk.receive(said("p1", "How do I return an item?"))
    assert decision.action == "handoff" and decision.reasons == (Reason.SUGGEST_MODE,)
    assert await cohorts_recorded(piloted, decision.conversation_id) == [("handoff", "copilot")]


# -- the report compares the cohorts ------------------------------------------------------------------

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def handed(reply: float, resolved: float) -> dict[str, float]:
    """A handoff at 1 s, the operator's reply (which claims it), the resolution, a CSAT 50 s later."""
    claimed = {"claimed": reply, "operator_reply": reply}
    return {"message_in": 0, "handoff": 1, **claimed, "resolved": resolved, "feedback": resolved + 50}


# chat -> (minutes after START, {event type: seconds after the conversation starts})
TIMES: dict[str, tuple[int, dict[str, float]]] = {
    "p1": (0, {"message_in": 0, "bot_answer": 2, "feedback": 30, "resolved": 30}),
    "p2": (10, handed(60, 200)),
    "c1": (20, handed(120, 400)),
    "c2": (30, handed(300, 900)),
}


async def test_the_report_compares_pilot_and_copilot_with_exact_figures(piloted: App) -> None:
    piloted.outbox.register(piloted.desk.queue_channel, Recorder())
    ops = piloted.operators
    ids = {"p1": (await piloted.desk.receive(said("p1", "How do I return an item?"))).conversation_id}
    assert (await ops.feedback(ids["p1"], "helpful")).ok
    for chat, text, operator, score in (
        ("p2", "I want to talk to a person", "alice", 5),  # in the pilot, but asked for a person
        ("c1", "Where is my order?", "bob", 4),
        ("c2", "Which payment methods do you accept?", "alice", 2),
    ):
        ids[chat] = (await piloted.desk.receive(said(chat, text))).conversation_id
        assert (await ops.reply(ids[chat], operator, "Hello, here is the answer.")).ok
        assert (await ops.resolve(ids[chat], operator)).ok
        assert (await ops.feedback(ids[chat], "csat", score)).ok
    async with piloted.sessions() as session, session.begin():
        for chat, (minutes, offsets) in TIMES.items():
            start = START + timedelta(minutes=minutes)
            conversation = await session.get(Conversation, ids[chat])
            assert conversation is not None
            conversation.created_at = start
            events = (await session.execute(select(Event).where(Event.conversation_id == ids[chat]))).scalars().all()
            assert sorted({e.type for e in events}) == sorted(offsets), chat
            for event in events:
                event.created_at = start + timedelta(seconds=offsets[event.type])

    report = await build_report(piloted.sessions, piloted.settings.analytics, START, START + timedelta(hours=1))
    assert report["per_cohort"] == {
        "pilot": {
            "conversations": 2,
            "automated": 1,
            "involved": 1,
            "automation_rate": 0.5,
            "automated_confirmed": 1,  # p1 pressed Helped
            "automated_unconfirmed": 0,
            "automated_failed": 0,
            "confirmed_automation_rate": 0.5,
            "frt_p50_s": 2.0,
            "frt_p90_s": 60.0,
            "csat_avg": 5.0,
            "csat_count": 1,
        },
        "copilot": {
            "conversations": 2,
            "automated": 0,
            "involved": 2,
            "automation_rate": 0.0,
            "automated_confirmed": 0,
            "automated_unconfirmed": 0,
            "automated_failed": 0,
            "confirmed_automation_rate": 0.0,
            "frt_p50_s": 120.0,
            "frt_p90_s": 300.0,
            "csat_avg": 3.0,
            "csat_count": 2,
        },
    }
    assert report["handoff_reasons"]["copilot_cohort"] == 2

    table = render(report, "table")
    assert "pilot vs copilot" in table
    assert any(line.split()[:3] == ["copilot", "2", "0"] for line in table.splitlines())
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert {"section": "per_cohort", "key": "copilot", "metric": "frt_p90_s", "value": "300.0"} in rows
    assert {"section": "per_cohort", "key": "pilot", "metric": "automation_rate", "value": "0.5"} in rows
    page = render(report, "html")
    assert "<h2>Pilot vs copilot</h2>" in page and "<td>copilot</td>" in page and "<td>50.0%</td>" in page


async def test_conversations_from_before_cohorts_are_in_neither(piloted: App) -> None:
    piloted.outbox.register(piloted.desk.queue_channel, Recorder())
    decision = await piloted.desk.receive(said("p1", "How do I return an item?"))
    async with piloted.sessions() as session, session.begin():
        for event in (await session.execute(select(Event))).scalars():
            event.data = {k: v for k, v in event.data.items() if k != "cohort"}  # as an older release wrote it
    report = await build_report(piloted.sessions, piloted.settings.analytics, START, datetime.now(UTC) + timedelta(1))
    assert decision.action == "answer" and report["conversations"] == 1
    assert report["per_cohort"]["pilot"]["conversations"] == report["per_cohort"]["copilot"]["conversations"] == 0
