"""Knowledge edits while the desk runs: new, edited, broken and vanished files, without a restart."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App, build_app
from bot.config import Settings
from tests.conftest import make_settings
from tests.fakes.slack_api import FakeSlack, SlackSide

GIFT = (
    "---\nid: gift-wrapping\ntitle: Gift wrapping\nlang: en\ntags: [gifts]\n"
    "questions:\n  - Can you gift wrap my order?\n  - Do you offer gift packaging?\n---\n"
    "{body}\n"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path)
    settings.knowledge.reload_s = 0.02
    return settings


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    built = await build_app(settings)
    assert built.knowledge is not None
    built.watch()
    yield built
    await built.close()


async def eventually_answers(app: App, question: str, topic: str | None, timeout: float = 10.0) -> str:
    """The desk's answer once its topic for `question` is `topic` (polling: the watcher runs on its own)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        decision = await app.desk.preview(question)
        if decision.analysis is not None and decision.analysis.topic == topic:
            return decision.answer.text if decision.answer else ""
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{question!r} still goes to {decision.analysis and decision.analysis.topic}")
        await asyncio.sleep(0.02)


async def test_a_new_article_answers_without_a_restart(app: App, settings: Settings) -> None:
    question = "Can you gift wrap my order?"
    assert (await app.desk.preview(question)).analysis.topic != "gift-wrapping"  # type: ignore[union-attr]
    (settings.knowledge.path / "gift.md").write_text(GIFT.format(body="Yes, for 3 EUR per parcel."), "utf-8")
    answer = await eventually_answers(app, question, "gift-wrapping")
    assert "3 EUR" in answer


async def test_an_edited_article_answers_with_its_new_text(app: App, settings: Settings) -> None:
    path = settings.knowledge.path / "gift.md"
    path.write_text(GIFT.format(body="Yes, for 3 EUR per parcel."), "utf-8")
    await eventually_answers(app, "Do you offer gift packaging?", "gift-wrapping")
    path.write_text(GIFT.format(body="Gift wrapping is free since May."), "utf-8")
    deadline = asyncio.get_running_loop().time() + 10
    while "free since May" not in await eventually_answers(app, "Do you offer gift packaging?", "gift-wrapping"):
        assert asyncio.get_running_loop().time() < deadline, "the old text is still served"
        await asyncio.sleep(0.02)


async def test_a_broken_file_is_reported_once_and_the_rest_keeps_answering(app: App, settings: Settings) -> None:
    told: list[str] = []
    assert app.knowledge is not None
    app.knowledge.on_error(told.append)
    (settings.knowledge.path / "broken.md").write_text("---\ntitle: no id here\n---\nbody\n", "utf-8")
    (settings.knowledge.path / "gift.md").write_text(GIFT.format(body="Yes, for 3 EUR per parcel."), "utf-8")
    await eventually_answers(app, "Can you gift wrap my order?", "gift-wrapping")
    assert len(told) == 1 and "broken.md" in told[0] and "id" in told[0]
    (settings.knowledge.path / "gift.md").write_text(GIFT.format(body="Free wrapping."), "utf-8")
    await eventually_answers(app, "Where is my order?", "order-tracking")
    for _ in range(20):  # several more polls: the same broken file is not reported again
        await asyncio.sleep(0.02)
    assert len(told) == 1


async def test_a_broken_edit_keeps_the_last_good_version_answering_and_a_typo_is_reported(
    app: App, settings: Settings
) -> None:
    told: list[str] = []
    assert app.knowledge is not None
    app.knowledge.on_error(told.append)
    path = settings.knowledge.path / "gift.md"
    path.write_text(GIFT.format(body="Yes, for 3 EUR per parcel."), "utf-8")
    await eventually_answers(app, "Can you gift wrap my order?", "gift-wrapping")
    path.write_text(GIFT.format(body="Free wrapping.").replace("title: Gift wrapping", "title: [Gift"), "utf-8")
    deadline = asyncio.get_running_loop().time() + 10
    while not told:
        assert asyncio.get_running_loop().time() < deadline, "nobody was told"
        await asyncio.sleep(0.02)
    assert (
        "gift.md was skipped: bad front matter: line 4" in told[0]
        and "sequence at line 3)" in told[0]
        and "last good version still answers" in told[0]
    )
    assert "3 EUR" in await eventually_answers(app, "Can you gift wrap my order?", "gift-wrapping")
    path.write_text(GIFT.format(body="Free wrapping.").replace("questions:", "questons:"), "utf-8")
    while len(told) < 2:
        assert asyncio.get_running_loop().time() < deadline + 10, "the typo was not reported"
        await asyncio.sleep(0.02)
    assert (
        told[1]
        == "Knowledge file gift.md: unknown key 'questons' ignored; the keys are id, title, lang, tags, questions, tool"
    )


async def test_a_vanished_folder_keeps_the_index_serving_and_says_so(app: App, settings: Settings) -> None:
    told: list[str] = []
    assert app.knowledge is not None
    app.knowledge.on_error(told.append)
    backup = settings.knowledge.path.with_name("kb-backup")
    shutil.move(settings.knowledge.path, backup)
    deadline = asyncio.get_running_loop().time() + 10
    while not told:
        assert asyncio.get_running_loop().time() < deadline, "nobody was told"
        await asyncio.sleep(0.02)
    assert "failed" in told[0] and "previous index still answers" in told[0]
    assert await eventually_answers(app, "Where is my order?", "order-tracking")  # still answers
    for _ in range(10):  # more polls while it is gone: told once
        await asyncio.sleep(0.02)
    assert len(told) == 1
    shutil.move(backup, settings.knowledge.path)
    (settings.knowledge.path / "gift.md").write_text(GIFT.format(body="Yes, for 3 EUR per parcel."), "utf-8")
    await eventually_answers(app, "Can you gift wrap my order?", "gift-wrapping")


async def test_watching_is_off_when_reload_s_is_zero(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.knowledge.reload_s = 0
    app = await build_app(settings)
    try:
        assert app.knowledge is None
    finally:
        await app.close()


async def test_operators_see_a_skipped_knowledge_file_in_slack(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path)
    settings.knowledge.reload_s = 0.02
    settings.slack.bot_token = slack.token
    app = await build_app(settings)
    side = await SlackSide(app, slack).start()
    app.watch()
    try:
        (settings.knowledge.path / "broken.md").write_text("---\nid: x\ntitle: [unclosed\n---\nbody\n", "utf-8")
        deadline = asyncio.get_running_loop().time() + 10
        while not slack.roots():
            assert asyncio.get_running_loop().time() < deadline, "no notice reached the queue"
            await asyncio.sleep(0.02)
            await side.settle()
        notices = [m.text for m in slack.roots()]
    finally:
        await side.stop()
        await app.close()
    assert len(notices) == 1 and "broken.md was skipped" in notices[0]
