"""Quality scoring of operator replies: agreement with hand labels, behaviour, and the Slack hint.

tests/data/quality_labels.jsonl holds operator replies (ru and en) labelled good/ok/poor per dimension
by hand before the scorer was written; rows marked "holdout" were labelled after it and never used to
tune it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.app import App, build_app
from bot.domain.types import Author, Inbound
from bot.operators.quality import DIMENSIONS, QualityScore, describe, score_reply
from bot.storage.models import Event, Message
from tests.conftest import Recorder, make_settings
from tests.fakes.slack_api import FakeSlack, SlackSide

LABELS = Path(__file__).parent / "data" / "quality_labels.jsonl"
MARIA = "U0MARIA"
_ids = itertools.count(1)


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]


def _agreement(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """Share of (reply, dimension) bands the scorer gets right, and how many good/poor it swapped."""
    hits = swaps = 0
    for row in rows:
        score = score_reply(row["reply"], row["question"], row["sentiment"], row["language"])
        for name in DIMENSIONS:
            got, want = QualityScore.band(getattr(score, name)), row[name]
            hits += got == want
            swaps += {got, want} == {"good", "poor"}
    return hits / (len(rows) * len(DIMENSIONS)), swaps


def test_the_labelled_set_is_big_enough_and_bilingual() -> None:
    rows = _rows()
    assert len(rows) >= 30
    assert {r["language"] for r in rows} == {"ru", "en"}
    assert all(r[name] in ("good", "ok", "poor") for r in rows for name in DIMENSIONS)


def test_scores_agree_with_the_hand_labels() -> None:
    rows = _rows()
    tuned = [r for r in rows if not r.get("holdout")]
    holdout = [r for r in rows if r.get("holdout")]
    accuracy, swaps = _agreement(tuned)
    held_accuracy, held_swaps = _agreement(holdout)
    print(f"band agreement: {accuracy:.3f} on {len(tuned)} replies, {held_accuracy:.3f} on {len(holdout)} held out")
    assert accuracy >= 0.85 and swaps == 0
    assert held_accuracy >= 0.75 and held_swaps == 0


def test_a_curt_reply_to_an_angry_customer_scores_low_on_empathy() -> None:
    for question, reply, language in (
        ("WHERE IS MY ORDER?? Two weeks late, this is unacceptable!", "Wait.", "en"),
        ("Вы списали деньги дважды, это ужасно!", "Ждите.", "ru"),
    ):
        score = score_reply(reply, question, -0.8, language)
        assert score.empathy < 40, score
        assert "upset" in score.reasons["empathy"]
    # the same words to a calm customer are less of a problem than to an angry one
    calm = score_reply("Please wait a day.", "When will it arrive?", 0.0, "en")
    angry = score_reply("Please wait a day.", "When will it arrive? I am furious!", -0.8, "en")
    assert angry.empathy < calm.empathy


def test_a_structured_polite_answer_scores_high() -> None:
    reply = (
        "Hi Anna! I'm sorry for the trouble. You can return the item within 30 days:\n\n"
        '1. Open the order in the app.\n2. Press "Return" and print the label.\n'
        "3. Drop the parcel at any post office.\n\nThe refund arrives within 5 days. Have a nice day!"
    )
    score = score_reply(reply, "How do I return the item? It's broken", -0.4, "en")
    assert min(score.structure, score.clarity, score.empathy) >= 70, score
    ru = score_reply(
        "Здравствуйте! Извините за неудобства. Вернуть товар можно в течение 30 дней: откройте заказ и "
        "нажмите «Вернуть». Деньги придут в течение 5 дней. Хорошего дня!",
        "Как вернуть товар? Он сломан",
        -0.4,
        "ru",
    )
    assert min(ru.structure, ru.clarity, ru.empathy) >= 70, ru


def test_an_off_topic_reply_scores_low_on_clarity() -> None:
    on = score_reply("Yes, we ship to Canada; delivery takes 7-10 days.", "Do you ship to Canada?", 0.0, "en")
    off = score_reply("Our summer collection is out, 20% off this week!", "Do you ship to Canada?", 0.0, "en")
    assert off.clarity < 40 <= on.clarity and off.clarity < on.clarity
    assert "question" in off.reasons["clarity"]
    ru = score_reply("Наша компания работает с 2009 года.", "Можно изменить адрес доставки?", 0.0, "ru")
    assert ru.clarity < 40


def test_jargon_and_capitals_cost_clarity() -> None:
    plain = score_reply("Your parcel arrives in 3 days.", "When does my parcel arrive?", 0.0, "en")
    jargon = score_reply("Your parcel ETA per the 3PL SLA is 3 days.", "When does my parcel arrive?", 0.0, "en")
    caps = score_reply("YOUR PARCEL ARRIVES IN 3 DAYS.", "When does my parcel arrive?", 0.0, "en")
    assert jargon.clarity < plain.clarity and caps.clarity < plain.clarity
    assert "jargon" in jargon.reasons["clarity"]


def test_scoring_is_deterministic_and_bounded() -> None:
    for row in _rows():
        args = (row["reply"], row["question"], row["sentiment"], row["language"])
        first, second = score_reply(*args), score_reply(*args)
        assert first == second
        assert all(0 <= getattr(first, name) <= 100 for name in DIMENSIONS)
        assert set(first.reasons) == set(DIMENSIONS) and all(first.reasons.values())
    assert score_reply("", "", 0.0, "en").structure < 40  # degenerate input does not crash


# -- stored with the reply and shown to the operator in Slack -----------------------------------------


@pytest.fixture
async def world(tmp_path: Path, slack: FakeSlack) -> AsyncIterator[tuple[App, SlackSide, Recorder]]:
    settings = make_settings(tmp_path)  # the minimal setup of tests/test_slack.py's make_world
    settings.automation.mode = "suggest"
    settings.slack.bot_token = slack.token
    app = await build_app(settings)
    customer = Recorder()
    app.outbox.register("test", customer)
    side = await SlackSide(app, slack).start()
    yield app, side, customer
    await side.stop()
    await app.close()


async def test_the_operator_alone_sees_the_scores_of_a_thread_reply(
    world: tuple[App, SlackSide, Recorder], slack: FakeSlack
) -> None:
    app, side, customer = world
    inbound = Inbound("test", "42", f"m{next(_ids)}", "WHERE IS MY ORDER?? This is unacceptable!", name="Anna")
    await app.desk.receive(inbound)
    await side.settle()
    (root,) = slack.roots()
    assert side.user is not None
    await side.user.reply(root, MARIA, "check tracking")
    await side.settle()

    assert customer.texts()[-1] == "check tracking"
    assert not any("quality" in t.lower() or "/100" in t for t in customer.texts())
    told = [e for e in slack.ephemerals if e["user"] == MARIA]
    assert len(told) == 1 and told[0]["thread_ts"] == root.ts
    for name in DIMENSIONS:
        assert f"{name}: " in told[0]["text"] and "/100" in told[0]["text"]
    assert "empathy" in told[0]["text"] and "(poor)" in told[0]["text"]

    async with app.sessions() as session:
        reply = (await session.execute(select(Message).where(Message.author == Author.OPERATOR))).scalars().one()
        event = (await session.execute(select(Event).where(Event.type == "operator_reply"))).scalars().one()
    quality = reply.meta["quality"]
    assert event.data["quality"] == quality
    assert quality["empathy"] < 40  # the customer's stored sentiment was negative
    assert describe(quality) == told[0]["text"]
