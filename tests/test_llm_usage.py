"""LLM token usage in the event log and in the report's ROI, against the fake OpenAI server.

The server bills every chat completion with an OpenAI `usage` object; langchain-openai turns it into
`usage_metadata`, and the desk must log the sum over every call of one customer message (analysis and
agent) on that message's `bot_answer` or `handoff` event, so `relaydesk report` prices it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from sqlmodel import col, select

from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.storage.models import Event
from tests.conftest import make_settings
from tests.fakes.openai_server import ApiError, FakeOpenAI, call_tools, with_usage
from tests.test_llm import Desk, analysis, final, llm_settings

PRICE_IN, PRICE_OUT = 0.5, 2.0  # per 1,000 tokens: large enough that the rounded spend shows every token


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


async def open_app(tmp: Path, fake: FakeOpenAI | None, llm_analysis: bool = True) -> App:
    settings = llm_settings(tmp, fake, analysis=llm_analysis) if fake is not None else make_settings(tmp)
    settings.analytics.price_input_per_1k, settings.analytics.price_output_per_1k = PRICE_IN, PRICE_OUT
    return await build_app(settings)


async def decisions(app: App) -> list[Event]:
    async with app.sessions() as session:
        query = select(Event).where(col(Event.type).in_(("bot_answer", "handoff"))).order_by(col(Event.id))
        return list((await session.execute(query)).scalars().all())


async def roi(app: App) -> dict[str, Any]:
    now = datetime.now(UTC)
    report = await build_report(app.sessions, app.settings.analytics, now - timedelta(days=1), now + timedelta(hours=1))
    return dict(report["roi"])


def server_down(body: dict[str, Any]) -> dict[str, Any]:
    raise ApiError(500, "The server had an error while processing your request.", "server_error")


def spend(tokens_in: int, tokens_out: int) -> float:
    return round(tokens_in / 1000 * PRICE_IN + tokens_out / 1000 * PRICE_OUT, 4)


async def test_every_call_of_a_message_is_summed_on_its_event_and_priced_in_the_report(
    tmp_path: Path, fake: FakeOpenAI
) -> None:
    app = await open_app(tmp_path, fake)
    try:
        desk = Desk(app)
        fake.script(
            with_usage(analysis("returns-policy"), 410, 17),  # the classification
            with_usage(call_tools(("search_knowledge", {"query": "return an item"})), 655, 23),  # the agent, twice
            with_usage(final("You can return any item within 30 days.", ["returns-policy"]), 1290, 58),
        )
        first = await desk.say("How do I return an item?")
        fake.script(
            with_usage(analysis("payment-methods"), 400, 15),
            with_usage(final("We accept cards.", ["payment-methods"], confidence=0.1), 900, 40),  # a draft: handoff
        )
        second = await desk.say("Can I pay by card?", chat="other-customer")
        assert (first.action, second.action) == ("answer", "handoff")

        answered, handed_off = await decisions(app)
        assert answered.type == "bot_answer"
        assert (answered.data["tokens_in"], answered.data["tokens_out"]) == (410 + 655 + 1290, 17 + 23 + 58)
        assert handed_off.type == "handoff"
        assert (handed_off.data["tokens_in"], handed_off.data["tokens_out"]) == (400 + 900, 15 + 40)

        figures = await roi(app)
        assert (figures["llm_tokens_in"], figures["llm_tokens_out"]) == (3655, 153) == fake.tokens()
        assert figures["llm_spend"] == spend(3655, 153) == 2.1335
        assert figures["tokens_recorded"] and figures["note"] == ""
        assert figures["net_saving"] == round(figures["operator_cost_saved"] - figures["llm_spend"], 2)
    finally:
        await app.close()


async def test_what_the_server_bills_is_what_the_desk_logs(tmp_path: Path, fake: FakeOpenAI) -> None:
    """No scripted counts: the server's own usage (from the real request sizes) ends up in the log."""
    app = await open_app(tmp_path, fake, llm_analysis=False)
    try:
        fake.script(
            call_tools(("search_knowledge", {"query": "return an item"})),
            final("You can return any item within 30 days.", ["returns-policy"]),
        )
        await Desk(app).say("How do I return an item?")
        (event,) = await decisions(app)
        billed = fake.tokens()
        assert billed[0] > 500 and billed[1] > 10  # two requests carrying the tool schemas, two replies
        assert (event.data["tokens_in"], event.data["tokens_out"]) == billed
    finally:
        await app.close()


async def test_calls_made_before_the_llm_failed_still_count(tmp_path: Path, fake: FakeOpenAI) -> None:
    app = await open_app(tmp_path, fake, llm_analysis=False)
    try:
        fake.script(with_usage(call_tools(("search_knowledge", {"query": "return an item"})), 700, 30), server_down)
        decision = await Desk(app).say("How do I return an item?")
        assert decision.action == "answer" and "llm unavailable" in decision.answer.reason
        (event,) = await decisions(app)
        assert (event.data["tokens_in"], event.data["tokens_out"]) == (700, 30)
    finally:
        await app.close()


async def test_the_offline_brain_records_no_tokens_and_the_report_says_why(tmp_path: Path) -> None:
    app = await open_app(tmp_path, None)
    try:
        decision = await Desk(app).say("How do I return an item?")
        assert decision.action == "answer"
        (event,) = await decisions(app)
        assert "tokens_in" not in event.data and "tokens_out" not in event.data
        figures = await roi(app)
        assert (figures["llm_tokens_in"], figures["llm_tokens_out"], figures["llm_spend"]) == (0, 0, 0)
        assert not figures["tokens_recorded"] and "no LLM calls" in figures["note"]
    finally:
        await app.close()
