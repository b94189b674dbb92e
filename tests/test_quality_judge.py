"""The LLM judge of operator replies, against the fake OpenAI server (and the fake Slack for what is shown).

With an LLM configured, an operator's reply is scored by the model (structured output, clamped,
one-line reasons in the reply's language) after it is stored and queued; any failure leaves the
offline score. The customer's reply never waits for the judge, and the judge's tokens reach the report.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select

from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.domain.types import Author, Inbound
from bot.operators.quality import DIMENSIONS, describe, score_reply
from bot.storage.models import Delivery, Event, Message
from tests.conftest import Recorder
from tests.fakes.openai_server import FakeOpenAI, Raw, call_tools, with_usage
from tests.fakes.slack_api import FakeSlack, SlackSide
from tests.test_llm import final, llm_settings

MARIA = "U0MARIA"
ANGRY = "WHERE IS MY ORDER 10234?? This is unacceptable!"
REPLY = "Hello Anna, I am sorry for the wait. Order 10234 arrives tomorrow; I will check on it in the morning."
_ids = itertools.count(1)


def verdict(structure: Any = 80, clarity: Any = 75, empathy: Any = 90, **why: str) -> dict[str, Any]:
    """The model's structured answer: scores as given (even out of range), a reason per dimension."""
    args = {"structure": structure, "clarity": clarity, "empathy": empathy}
    for name in DIMENSIONS:
        args[f"{name}_reason"] = why.get(f"{name}_why", f"{name} reason")
    return call_tools(("Verdict", args))


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture
async def app(tmp_path: Path, fake: FakeOpenAI) -> AsyncIterator[App]:
    settings = llm_settings(tmp_path, fake)  # the agent answers customers; the offline analyzer classifies
    settings.automation.mode = "suggest"  # every message reaches an operator
    built = await build_app(settings)
    yield built
    await built.close()


async def handed_off(app: App, fake: FakeOpenAI, text: str = ANGRY) -> int:
    fake.script(final("Let me check that for you.", confidence=0.9))  # the agent's draft
    decision = await app.desk.receive(Inbound("test", "42", f"m{next(_ids)}", text, name="Anna"))
    assert decision.action == "handoff"
    return decision.conversation_id


async def events(app: App, type_: str) -> list[Event]:
    async with app.sessions() as session:
        query = select(Event).where(Event.type == type_).order_by(col(Event.id))
        return list((await session.execute(query)).scalars().all())


async def customer_mood(app: App) -> float:
    async with app.sessions() as session:
        asked = (await session.execute(select(Message).where(Message.author == Author.CUSTOMER))).scalars().one()
    return float(asked.meta["sentiment_score"])


async def stored_quality(app: App) -> dict[str, Any]:
    async with app.sessions() as session:
        reply = (await session.execute(select(Message).where(Message.author == Author.OPERATOR))).scalars().one()
    (event,) = await events(app, "operator_reply")
    assert event.data["quality"] == reply.meta["quality"]  # the log and the message agree
    return dict(reply.meta["quality"])


# -- the judge's score, stored and shown ------------------------------------------------------------


async def test_the_judges_scores_are_stored_and_shown_to_the_operator_alone(
    app: App, fake: FakeOpenAI, slack: FakeSlack
) -> None:
    customer = Recorder()
    app.outbox.register("test", customer)
    side = await SlackSide(app, slack).start()
    try:
        fake.script(final("Let me check that for you.", confidence=0.9))
        await app.desk.receive(Inbound("test", "42", f"m{next(_ids)}", ANGRY, name="Anna"))
        await side.settle()
        (root,) = slack.roots()
        fake.script(
            with_usage(
                verdict(82, 91.6, 130, structure_why="Greets and closes.", empathy_why="Apologises\nand reassures."),
                321,
                45,
            )
        )
        assert side.user is not None
        await side.user.reply(root, MARIA, REPLY)
        await side.settle()

        assert customer.texts()[-1] == REPLY
        assert not any("/100" in t for t in customer.texts())
        quality = await stored_quality(app)
        assert quality == {
            "structure": 82,
            "clarity": 92,  # rounded
            "empathy": 100,  # clamped
            "reasons": {
                "structure": "Greets and closes.",
                "clarity": "clarity reason",
                "empathy": "Apologises and reassures.",  # made one line
            },
            "scorer": "llm",
        }
        (told,) = [e for e in slack.ephemerals if e["user"] == MARIA]
        assert told["text"] == describe(quality)
        assert told["text"].startswith("Reply quality (visible only to you; scored by the AI):")
        assert "empathy: 100/100 (good) — Apologises and reassures." in told["text"]

        # what the model was asked: the customer's message and the reply as data, the mood, the schema
        request = fake.chat_bodies()[-1]
        assert [t["function"]["name"] for t in request["tools"]] == ["Verdict"]
        system, review = request["messages"][0]["content"], request["messages"][1]["content"]
        assert "support operator" in system and "The customer's mood: negative" in system
        assert ANGRY in review and REPLY in review

        (usage,) = await events(app, "llm_usage")
        (replied,) = await events(app, "operator_reply")
        assert usage.conversation_id == replied.conversation_id is not None
        assert (usage.data["tokens_in"], usage.data["tokens_out"], usage.data["purpose"]) == (321, 45, "judge")
    finally:
        await side.stop()


async def test_a_russian_reply_is_judged_with_the_russian_prompt(app: App, fake: FakeOpenAI) -> None:
    conversation = await handed_off(app, fake, "Где мой заказ 10234? Уже неделю жду!")
    fake.script(verdict(70, 60, 85, clarity_why="Нет конкретного срока."))
    result = await app.operators.reply(conversation, "olga", "Здравствуйте! Простите за ожидание, я проверю заказ.")
    assert result.ok and result.quality is not None and result.quality["scorer"] == "llm"
    assert result.quality["reasons"]["clarity"] == "Нет конкретного срока."
    system = fake.chat_bodies()[-1]["messages"][0]["content"]
    assert system.startswith("Вы оцениваете один ответ оператора") and "по-русски" in system


# -- failures: the offline score, and the reply goes out regardless ---------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"fail": {"status": 500}}, id="500"),
        pytest.param({"fail": {"status": 429, "retry_after_ms": 10}}, id="429"),
        pytest.param({"fail": {"status": None, "delay_s": 3.0}}, id="timeout"),  # llm.timeout_s is 2 s
        pytest.param({"reply": Raw("{not json")}, id="not-json"),
        pytest.param({"reply": call_tools(("Verdict", {"structure": "great"}))}, id="schema"),
        pytest.param({"reply": Raw('{"choices": []}')}, id="no-choices"),
        pytest.param({"reply": {"role": "assistant", "content": "Looks fine to me!"}}, id="plain-text"),
    ],
)
async def test_a_failing_judge_leaves_the_offline_score_and_the_reply_is_delivered(
    app: App, fake: FakeOpenAI, failure: dict[str, Any]
) -> None:
    customer = Recorder()
    app.outbox.register("test", customer)
    conversation = await handed_off(app, fake)
    billed_before = fake.tokens()
    if "fail" in failure:
        fake.fail(path="/v1/chat/completions", **failure["fail"])
    else:
        fake.script(failure["reply"])

    result = await app.operators.reply(conversation, "olga", REPLY)
    await app.outbox.deliver_due()

    assert result.ok and customer.texts()[-1] == REPLY
    quality = await stored_quality(app)
    assert quality == {**score_reply(REPLY, ANGRY, await customer_mood(app), "en").as_dict(), "scorer": "offline"}
    assert result.quality == quality
    assert describe(quality).startswith("Reply quality (visible only to you):")
    # tokens the server billed for a useless answer were still paid for, and are logged; none otherwise
    judged = tuple(now - before for now, before in zip(fake.tokens(), billed_before, strict=True))
    logged = [(e.data["tokens_in"], e.data["tokens_out"]) for e in await events(app, "llm_usage")]
    assert logged == ([judged] if any(judged) else [])


async def test_the_reply_is_queued_before_the_judge_answers(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.automation.mode = "suggest"
    settings.llm.timeout_s = settings.llm.budget_s = 60.0  # the judge waits for the test, not for a clock
    app = await build_app(settings)
    try:
        await _queued_before_judged(app, fake)
    finally:
        await app.close()


async def _queued_before_judged(app: App, fake: FakeOpenAI) -> None:
    customer = Recorder()
    app.outbox.register("test", customer)
    conversation = await handed_off(app, fake)
    release = asyncio.Event()

    async def slow_judge(body: dict[str, Any]) -> dict[str, Any]:
        await release.wait()  # the model thinks until the test has seen the reply leave
        return {"id": "chatcmpl-slow", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", **verdict()}, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 200, "completion_tokens": 30, "total_tokens": 230}}  # fmt: skip

    fake.add_route("POST", "/v1/chat/completions", slow_judge)
    replying = asyncio.create_task(app.operators.reply(conversation, "olga", REPLY))
    for _ in range(500):  # until the judge's request reaches the server
        if any(c.body.get("tools", [{}])[0].get("function", {}).get("name") == "Verdict" for c in fake.calls):
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the judge was never called")
    assert not replying.done()
    async with app.sessions() as session:
        queued = (await session.execute(select(Delivery).where(Delivery.channel == "test"))).scalars().all()
    assert REPLY in [d.payload.get("text") for d in queued]  # committed while the judge still thinks
    await app.outbox.deliver_due()
    assert customer.texts()[-1] == REPLY
    release.set()
    result = await replying
    assert result.quality is not None and result.quality["scorer"] == "llm"
    assert (await stored_quality(app))["scorer"] == "llm"


# -- wiring ------------------------------------------------------------------------------------------


async def test_with_llm_judge_off_replies_are_scored_offline_without_a_call(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.automation.mode = "suggest"
    settings.llm.judge = False
    built = await build_app(settings)
    try:
        conversation = await handed_off(built, fake)
        calls = len(fake.chat_bodies())
        result = await built.operators.reply(conversation, "olga", REPLY)
        assert result.ok and result.quality is not None and result.quality["scorer"] == "offline"
        assert len(fake.chat_bodies()) == calls
    finally:
        await built.close()


async def test_the_judges_tokens_are_in_the_report(app: App, fake: FakeOpenAI) -> None:
    conversation = await handed_off(app, fake)
    fake.script(with_usage(verdict(), 500, 60))
    await app.operators.reply(conversation, "olga", REPLY)
    (decision,) = await events(app, "handoff")
    now = datetime.now(UTC)
    roi = (await build_report(app.sessions, app.settings.analytics, now - timedelta(days=1), now))["roi"]
    assert (roi["llm_tokens_in"], roi["llm_tokens_out"]) == fake.tokens()
    assert roi["llm_tokens_in"] == decision.data["tokens_in"] + 500
    assert roi["llm_tokens_out"] == decision.data["tokens_out"] + 60
    analytics = app.settings.analytics
    expected = roi["llm_tokens_in"] / 1000 * analytics.price_input_per_1k
    expected += roi["llm_tokens_out"] / 1000 * analytics.price_output_per_1k
    assert roi["llm_spend"] == round(expected, 4) and roi["tokens_recorded"]
