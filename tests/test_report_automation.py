"""The honest automation figure: `relaydesk report` splits the bot's answers by what the customer did next.

Each customer below is played through the real Desk and OperatorActions on a real database; the expected
parts are counted by hand from SCRIPT. The test config answers alone only what the knowledge base covers
almost verbatim (`min_confidence: 0.9`), so "Can I pay with bitcoin?" is handed off for low confidence, and
counts a repeat after one answer on a topic (`repeat_limit: 1`).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.analytics.render import render
from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.delivery.journal import record_event
from bot.domain.types import Inbound
from bot.storage.models import Feedback
from tests.conftest import Recorder, make_settings

RETURNS, ORDER, PAYMENTS = "How do I return an item?", "Where is my order?", "Which payment methods do you accept?"
HUMAN = "I want to talk to a person"

# chat -> (what the customer writes, one message after another; what they press or do afterwards)
SCRIPT: dict[str, tuple[tuple[str, ...], str]] = {
    "helped": ((RETURNS,), "helped"),  # confirmed: the Helped button
    "thanked": ((ORDER,), "thanks"),  # confirmed: the desk recorded a thank-you after the answer
    "silent": ((PAYMENTS,), ""),  # unconfirmed: nothing more
    "talk": ((ORDER,), "talk"),  # failed: the "Talk to a person" button (as the Telegram connector sends it)
    "asked": ((ORDER, HUMAN), ""),  # failed: a handoff for asked_for_human after the answer
    "repeated": ((RETURNS, RETURNS), ""),  # failed: a handoff for repeated_question
    "upset": ((PAYMENTS, "Your answer is wrong and useless."), ""),  # failed: negative_sentiment
    "grumbled": ((ORDER, "How do I return an item? I am a bit disappointed."), ""),  # failed: answered, but negative
    "followup": ((RETURNS, "Can I pay with bitcoin?"), ""),  # failed: handed off (low confidence), nobody acted yet
    "helped_then_asked": ((RETURNS,), "helped, then asked"),  # failed wins over confirmed
    "operator": ((ORDER, HUMAN), "operator"),  # an operator replied: involved, not among the bot's answers
}
CONVERSATIONS = 11
CONFIRMED, UNCONFIRMED, FAILED = 2, 1, 7
AUTOMATED = 4  # no handoff, no operator: helped, thanked, silent, grumbled (the old figure, unchanged)

_ids = itertools.count(1)


async def play(app: App) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chat, (texts, then) in SCRIPT.items():
        for text in texts:
            decision = await app.desk.receive(Inbound("test", chat, f"ra{next(_ids)}", text, name="Anna"))
            ids[chat] = decision.conversation_id
        await act(app, ids[chat], chat, then)
    await app.outbox.deliver_due()
    return ids


async def act(app: App, conversation_id: int, chat: str, then: str) -> None:
    ops = app.operators
    if then.startswith("helped"):
        assert (await ops.feedback(conversation_id, "helpful")).ok
    if then == "helped, then asked":  # a new message reopens the resolved conversation, then goes to a person
        assert (await app.desk.receive(Inbound("test", chat, f"ra{next(_ids)}", HUMAN))).action == "handoff"
    elif then == "thanks":  # the contract the desk writes when a customer thanks the bot after an answer
        async with app.sessions() as session, session.begin():
            session.add(Feedback(conversation_id=conversation_id, kind="thanks"))
            await session.run_sync(record_event, conversation_id, "feedback", kind="thanks")
    elif then == "talk":  # what connectors/telegram sends for the button: a request for a person, then the feedback
        assert (await app.desk.receive(Inbound("test", chat, f"ra{next(_ids)}", "/human"))).action == "handoff"
        assert (await ops.feedback(conversation_id, "not_helpful")).ok
    elif then == "operator":
        assert (await ops.reply(conversation_id, "alice", "Hi, Alice here: your parcel left today.")).ok


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return str(request.getfixturevalue("postgres_url")) if request.param == "postgres" else None


@pytest.fixture
async def played(database_url: str | None, tmp_path: Path) -> AsyncIterator[tuple[App, dict[str, Any]]]:
    settings = make_settings(tmp_path, database_url)
    settings.automation.min_confidence = 0.9
    settings.automation.repeat_limit = 1
    app = await build_app(settings)
    app.outbox.register("test", Recorder())
    app.outbox.register(app.desk.queue_channel, Recorder())
    try:
        await play(app)
        report = await build_report(app.sessions, settings.analytics, datetime.now(UTC) - timedelta(hours=1))
        yield app, report
    finally:
        await app.close()


def parts(figures: dict[str, Any]) -> tuple[int, int, int]:
    return figures["automated_confirmed"], figures["automated_unconfirmed"], figures["automated_failed"]


async def test_the_bots_answers_split_into_confirmed_unconfirmed_and_failed(
    played: tuple[App, dict[str, Any]],
) -> None:
    _, report = played
    assert report["conversations"] == CONVERSATIONS
    assert parts(report) == (CONFIRMED, UNCONFIRMED, FAILED)
    assert report["bot_answered"] == CONFIRMED + UNCONFIRMED + FAILED == CONVERSATIONS - report["involved"]
    assert report["confirmed_automation_rate"] == round(CONFIRMED / CONVERSATIONS, 4)
    # automation_rate keeps its meaning: the bot answered, no handoff, no operator
    assert (report["automated"], report["automation_rate"]) == (AUTOMATED, round(AUTOMATED / CONVERSATIONS, 4))
    assert (report["helpful"], report["thanks"], report["not_helpful"]) == (2, 1, 1)
    signals = report["failed_signals"]
    assert signals["not_helpful"] == 1  # talk
    assert signals["asked_for_human"] == 3  # talk, asked, helped_then_asked
    assert signals["repeated_question"] == 1 and signals["handed_off"] == 1  # repeated; followup
    assert signals["negative_sentiment"] == 1 and signals["negative_message"] == 2  # upset; upset, grumbled


async def test_the_parts_add_up_in_every_group(played: tuple[App, dict[str, Any]]) -> None:
    _, report = played
    groups = [*report["per_topic"].values(), *report["per_day"], *report["per_cohort"].values()]
    for figures in groups:
        bot_answered = sum(parts(figures))
        assert bot_answered <= figures["conversations"] - figures["involved"], figures
        assert figures["confirmed_automation_rate"] == (
            round(figures["automated_confirmed"] / figures["conversations"], 4) if figures["conversations"] else None
        )
    for key in ("per_topic", "per_cohort"):  # every conversation here is in one topic and in the pilot cohort
        total = tuple(sum(p) for p in zip(*(parts(f) for f in report[key].values()), strict=True))
        assert total == (CONFIRMED, UNCONFIRMED, FAILED), key
    assert tuple(sum(p) for p in zip(*(parts(d) for d in report["per_day"]), strict=True)) == parts(report)


async def test_roi_saves_only_what_was_not_failed_and_says_so(played: tuple[App, dict[str, Any]]) -> None:
    app, report = played
    roi, analytics = report["roi"], app.settings.analytics
    hour = analytics.handling_minutes / 60  # one conversation the bot took
    assert roi["operator_hours_saved_confirmed"] == round(CONFIRMED * hour, 2)
    assert roi["operator_hours_saved_unconfirmed"] == round(UNCONFIRMED * hour, 2)
    assert roi["operator_hours_saved"] == round((CONFIRMED + UNCONFIRMED) * hour, 2)  # the headline: no failed ones
    assert roi["operator_cost_saved"] == round((CONFIRMED + UNCONFIRMED) * hour * analytics.hourly_cost, 2)
    assert roi["operator_cost_saved_confirmed"] == round(CONFIRMED * hour * analytics.hourly_cost, 2)
    assert roi["net_saving_confirmed"] == roi["operator_cost_saved_confirmed"] - roi["llm_spend"]
    assert roi["headline"] == "confirmed + unconfirmed"


async def test_every_format_shows_the_split_and_the_page_leads_with_the_confirmed_rate(
    played: tuple[App, dict[str, Any]],
) -> None:
    _, report = played
    rate = report["confirmed_automation_rate"]
    assert json.loads(render(report, "json"))["automated_failed"] == FAILED
    table = render(report, "table")
    assert re.search(rf"confirmed automation rate\s+{rate:g}\b", table)
    assert re.search(rf"bot answers failed\s+{FAILED}\b", table)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    for metric, value in (("automated_confirmed", CONFIRMED), ("automated_unconfirmed", UNCONFIRMED)):
        assert {"section": "summary", "key": "", "metric": metric, "value": str(value)} in rows
    assert {"section": "roi", "key": "", "metric": "headline", "value": "confirmed + unconfirmed"} in rows
    pilot = {r["metric"]: r["value"] for r in rows if (r["section"], r["key"]) == ("per_cohort", "pilot")}
    assert pilot["automated_failed"] == str(FAILED) and pilot["confirmed_automation_rate"] == str(rate)
    page = render(report, "html")
    tiles = re.findall(r'<div class="tile"><span class="muted">([^<]+)</span><b>([^<]+)</b>', page)
    assert tiles[0] == ("Confirmed automation", f"{rate * 100:.1f}%")
    assert ("Automation rate", f"{report['automation_rate'] * 100:.1f}%") in tiles[1:]
    assert "confirmed" in page.split("<h2>Return on investment</h2>")[1]
