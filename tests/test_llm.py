"""The LLM brain against a real local fake of the OpenAI API: grounding, history, analysis, failures.

Everything above the socket is production code: `build_app` picks the LLM brain from settings, the
langchain agent talks HTTP to FakeOpenAI, whose replies are scripted per request.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App, build_app
from bot.brain.responders.offline import OfflineResponder
from bot.brain.sentiment import score_sentiment
from bot.config import Settings
from bot.domain.types import Inbound, Reason
from tests.conftest import Recorder, make_settings
from tests.fakes.openai_server import FakeOpenAI, Raw, call_tools, say

_ids = itertools.count(1)


def said(text: str, chat: str = "42", name: str = "Anna") -> Inbound:
    return Inbound("test", chat, f"llm-{next(_ids)}", text, name=name)


def analysis(
    topic: str | None = None,
    sentiment: str = "neutral",
    score: float = 0.0,
    priority: str = "normal",
    human: bool = False,
) -> dict[str, Any]:
    args = {
        "topic": topic,
        "sentiment": sentiment,
        "sentiment_score": score,
        "priority": priority,
        "wants_human": human,
    }
    return call_tools(("MessageAnalysis", args))


def final(answer: str, cited: list[str] | None = None, confidence: float = 0.9, **extra: Any) -> dict[str, Any]:
    args = {"answer": answer, "cited_article_ids": cited or [], "confidence": confidence, **extra}
    return call_tools(("FinalAnswer", args))


def llm_settings(tmp: Path, fake: FakeOpenAI, analysis: bool = False) -> Settings:
    settings = make_settings(tmp)
    settings.llm.provider = "openai"
    settings.llm.base_url = fake.base_url
    settings.llm.api_key = "sk-test"
    settings.llm.timeout_s = 2.0  # the fake answers in milliseconds; room for a loaded 2-core CI machine
    settings.llm.budget_s = 4.0
    settings.llm.max_retries = 0
    settings.llm.analysis = analysis
    return settings


class Desk:
    """An app on the LLM brain with recorders for the customer channel and the operator queue."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.chat = f"chat-{next(_ids)}"  # a fresh customer per test, so tests can share one app
        self.customers = Recorder()
        self.queue = Recorder()
        app.outbox.register("test", self.customers)
        app.outbox.register(app.desk.queue_channel, self.queue)

    async def say(self, text: str, chat: str = "") -> Any:
        decision = await self.app.desk.receive(said(text, chat or self.chat))
        await self.app.outbox.deliver_due()
        return decision


# One fake server and one app per module (building an app indexes the KB: a second or two); each test
# gets them reset, and a customer of its own.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_app(tmp_path_factory: pytest.TempPathFactory, shared_fake: FakeOpenAI) -> AsyncIterator[App]:
    app = await build_app(llm_settings(tmp_path_factory.mktemp("llm"), shared_fake))
    yield app
    await app.close()


@pytest.fixture
def fake(shared_fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    yield shared_fake
    shared_fake.chat_default = None
    shared_fake.calls.clear()
    shared_fake._chat_script.clear()
    shared_fake._failures.clear()


@pytest.fixture
def desk(shared_app: App, fake: FakeOpenAI) -> Desk:
    return Desk(shared_app)


def support_brain(body: dict[str, Any]) -> dict[str, Any]:
    """A tiny rule-based model for scenarios and benchmarks: classify, look the order up, propose, answer."""
    messages = body["messages"]
    tools = {t["function"]["name"] for t in body.get("tools", [])}
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    text = str(messages[last_user]["content"]).lower()
    if "MessageAnalysis" in tools:
        upset = any(w in text for w in ("late", "not arrived", "hasn't", "не пришёл", "не пришел", "опаздыва"))
        return analysis("order-tracking", "negative" if upset else "neutral", -0.4 if upset else 0.0, "high")
    system = str(messages[0]["content"])
    ru = "language: ru" in system
    given = re.search(r"Order numbers the customer gave: ([^.]+)\.", system)
    order = given.group(1).split(",")[0].strip() if given and given.group(1) != "none" else None
    results = [str(m["content"]) for m in messages[last_user + 1 :] if m["role"] == "tool"]
    if order is None:
        return final("", ask_order_number=True, confidence=0.9)
    if not results:
        return call_tools(("get_order_status", {"order_id": order}))
    if "Compensation eligible: yes" in results[-1]:
        return call_tools(("propose_compensation", {"order_id": order, "percent": 10}))
    if "can't be reached" in results[-1]:
        return call_tools(("request_human", {"reason": "CRM down"}))
    if results[-1].startswith("order "):  # looked up, not late: just the status
        return final(results[-1].split(". Cite")[0].capitalize() + ".", [f"order:{order}"], 0.85, summary="Status.")
    sorry = (
        f"Простите, заказ {order} задерживается. Он уже в пути."
        if ru
        else f"I'm sorry, order {order} is running late. It is on its way."
    )
    summary = f"Order {order} is late; the customer is upset. A promo code is proposed."
    return final(sorry, [f"order:{order}"], 0.85, summary=summary)


# -- answers and grounding ---------------------------------------------------------------------------


async def test_a_grounded_answer_goes_out_with_its_sources(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(
        call_tools(("search_knowledge", {"query": "return an item"})),
        final("You can return any item within 30 days.", ["returns-policy"]),
    )
    decision = await desk.say("How do I return an item?")
    assert decision.action == "answer"
    assert decision.answer.sources == ("returns-policy",)
    assert desk.customers.texts() == ["You can return any item within 30 days."]
    tool_result = fake.chat_bodies()[1]["messages"][-1]
    assert tool_result["role"] == "tool" and "[returns-policy]" in tool_result["content"]
    # the real request: the key, the model, all four tools plus the structured answer, a forced tool choice
    call = fake.called("/v1/chat/completions")[0]
    assert call.headers["Authorization"] == "Bearer sk-test"
    names = [t["function"]["name"] for t in call.body["tools"]]
    assert names == ["search_knowledge", "get_order_status", "propose_compensation", "request_human", "FinalAnswer"]


async def test_an_answer_citing_nothing_retrieved_becomes_a_draft(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(final("Returns are free for 90 days.", ["returns-policy"]))  # cited, but never searched
    decision = await desk.say("How do I return an item?")
    assert decision.action == "handoff" and Reason.RESPONDER_REQUEST in decision.reasons
    card = desk.queue.sent[0].payload
    assert card["draft"] == "Returns are free for 90 days." and card["sources"] == []
    assert "cites nothing" in decision.answer.reason
    assert "Returns are free" not in " ".join(desk.customers.texts())


async def test_a_low_confidence_answer_becomes_a_draft(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(
        call_tools(("search_knowledge", {"query": "pay"})),
        final("We accept cards.", ["payment-methods"], confidence=0.1, summary="Asks how to pay."),
    )
    decision = await desk.say("Can I pay by card?")
    assert decision.action == "handoff" and Reason.LOW_CONFIDENCE in decision.reasons
    card = desk.queue.sent[0].payload
    assert card["draft"] == "We accept cards." and card["summary"] == "Asks how to pay."


async def test_without_an_order_number_the_agent_asks_for_it_then_uses_the_history(
    desk: Desk, fake: FakeOpenAI
) -> None:
    fake.chat_default = support_brain
    first = await desk.say("Where is my order?")
    assert first.action == "answer"
    assert desk.customers.texts() == [
        "Could you tell me your order number? You'll find it in the confirmation email, e.g. 10234."
    ]
    second = await desk.say("It's 10231")
    body = fake.chat_bodies()[-2]  # the request that looked the order up
    roles = [m["role"] for m in body["messages"]]
    assert roles[:4] == ["system", "user", "assistant", "user"]
    assert body["messages"][1]["content"] == "Where is my order?"
    assert second.action == "answer" and second.answer.sources == ("order:10231",)
    assert desk.customers.texts()[-1].startswith("Order 10231: status delivered")


async def test_the_agent_sees_a_bounded_history_with_older_turns_summarised(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.llm.history_messages = 4
    settings.automation.repeat_limit = 0
    app = await build_app(settings)
    try:
        desk = Desk(app)
        for i in range(5):
            fake.script(call_tools(("search_knowledge", {"query": "pay"})), final(f"answer {i}", ["payment-methods"]))
            await desk.say(f"question number {i} about paying")
        messages = fake.chat_bodies()[-1]["messages"]
        assert [m["role"] for m in messages] == [
            "system",
            "user",
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "tool",
        ]
        assert "Earlier in this conversation (summarised)" in messages[0]["content"]
        assert (
            "question number 0" in messages[0]["content"] and messages[5]["content"] == "question number 4 about paying"
        )
    finally:
        await app.close()


async def test_a_plain_text_ending_is_a_draft_not_an_answer(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(say("Just restart your router."))
    decision = await desk.say("How do I return an item?")
    assert decision.action == "handoff"
    assert desk.queue.sent[0].payload["draft"] == "Just restart your router."


# -- failures: the customer never sees an error ------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"status": 429, "retry_after_ms": 10}, id="429"),
        pytest.param({"status": 500}, id="500"),
        pytest.param({"status": 503}, id="503"),
        pytest.param({"status": None, "delay_s": 3.0}, id="timeout"),
    ],
)
async def test_an_llm_failure_answers_offline_within_the_budget(
    desk: Desk, fake: FakeOpenAI, failure: dict[str, Any]
) -> None:
    fake.fail(times=5, path="/v1/chat/completions", **failure)
    started = time.perf_counter()
    decision = await desk.say("How do I return an item?")
    elapsed = time.perf_counter() - started
    assert elapsed < desk.app.settings.llm.budget_s + 1.0
    assert decision.action == "answer" and decision.answer.sources == ("returns-policy",)
    assert "llm unavailable" in decision.answer.reason
    assert "30 days" in desk.customers.texts()[0]
    assert not any("error" in t.lower() for t in desk.customers.texts())


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Raw("{not json"), id="not-json"),
        pytest.param(Raw('{"choices": []}'), id="no-choices"),
        pytest.param(call_tools(("FinalAnswer", {"answer": 42})), id="schema"),
    ],
)
async def test_malformed_output_answers_offline(desk: Desk, fake: FakeOpenAI, reply: Any) -> None:
    fake.chat_default = lambda body: reply
    decision = await desk.say("Где мой заказ?")
    assert decision.action == "answer" and decision.answer.sources == ("order-tracking",)
    assert "Мои заказы" in desk.customers.texts()[0]


async def test_a_broken_structured_answer_is_retried_by_the_agent(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(
        call_tools(("search_knowledge", {"query": "pay"})),
        call_tools(("FinalAnswer", {"answer": "cards", "confidence": "very"})),
        final("We accept cards.", ["payment-methods"]),
    )
    decision = await desk.say("Can I pay by card?")
    assert decision.action == "answer" and desk.customers.texts() == ["We accept cards."]


async def test_an_unreachable_server_answers_offline(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.llm.base_url = "http://127.0.0.1:1/v1"  # nothing listens there: connection refused
    app = await build_app(settings)
    try:
        decision = await Desk(app).say("How do I return an item?")
        assert decision.action == "answer" and "llm unavailable" in decision.answer.reason
    finally:
        await app.close()


# -- LLM analysis --------------------------------------------------------------------------------------


async def test_llm_analysis_classifies_with_the_same_types(tmp_path: Path, fake: FakeOpenAI) -> None:
    app = await build_app(llm_settings(tmp_path, fake, analysis=True))
    try:
        fake.script(
            analysis("payment-methods", "negative", -0.5, "high"),
            call_tools(("search_knowledge", {"query": "card"})),
            final("We accept cards.", ["payment-methods"]),
        )
        decision = await Desk(app).say("Can I pay by card? Your site is annoying")
        a = decision.analysis
        assert (a.topic, a.sentiment, a.priority, a.sentiment_score) == ("payment-methods", "negative", "high", -0.5)
        system = fake.chat_bodies()[0]["messages"][0]["content"]
        assert "payment-methods (Ways to pay)" in system
    finally:
        await app.close()


async def test_slow_analysis_and_agent_together_stay_within_one_budget(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake, analysis=True)
    settings.llm.timeout_s, settings.llm.budget_s = 5.0, 3.0  # each request alone could take longer
    app = await build_app(settings)
    try:
        fake.fail(None, times=5, delay_s=6.0, path="/v1/chat/completions")  # every call hangs
        started = time.perf_counter()
        decision = await Desk(app).say("How do I return an item?")
        # analysis (at most a third of the budget) + agent (the rest): ~3 s, not 1 + 3 s
        assert time.perf_counter() - started < 3.0 + 0.9  # a second budget would need 1 s more
        assert decision.action == "answer" and decision.analysis.topic == "returns-policy"
    finally:
        await app.close()


async def test_llm_analysis_cannot_invent_a_topic_and_falls_back_on_failure(tmp_path: Path, fake: FakeOpenAI) -> None:
    app = await build_app(llm_settings(tmp_path, fake, analysis=True))
    try:
        desk = Desk(app)
        fake.script(analysis("free-money", "positive", 0.9, "low"), final("x"))
        decision = await desk.say("How do I return an item?")
        assert decision.analysis.topic == "returns-policy" and decision.analysis.sentiment == "positive"
        fake.fail(500, times=3, path="/v1/chat/completions")
        decision = await desk.say("Can I pay by card?", chat="43")
        assert decision.analysis.topic == "payment-methods" and decision.action == "answer"
    finally:
        await app.close()


# -- the CRM ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "notice"),
    [
        ("My order 10234 hasn't arrived", "can't check the status of order 10234 right now"),
        ("Мой заказ 10234 не пришёл", "не могу проверить статус заказа 10234"),
    ],
)
async def test_a_crm_failure_tells_the_customer_and_hands_off(
    tmp_path: Path, fake: FakeOpenAI, text: str, notice: str
) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.crm.provider = "http"
    settings.crm.base_url = "http://127.0.0.1:1"  # nothing listens there: connection refused
    app = await build_app(settings)
    try:
        desk = Desk(app)
        fake.chat_default = support_brain
        decision = await desk.say(text)
        assert decision.action == "handoff"
        assert "CRM unavailable" in decision.answer.reason
        assert any(notice in t for t in desk.customers.texts())
        card = desk.queue.sent[0].payload
        assert card["actions"] == [] and "10234" in card["summary"]
    finally:
        await app.close()


async def test_an_order_the_customer_never_mentioned_is_not_looked_up(desk: Desk, fake: FakeOpenAI) -> None:
    fake.script(
        call_tools(("get_order_status", {"order_id": "10235"})),
        final("Let me check.", [], confidence=0.2),
    )
    await desk.say("Where is my order?")
    tool_result = fake.chat_bodies()[1]["messages"][-1]["content"]
    assert "has not given order number" in tool_result


# -- composition -------------------------------------------------------------------------------------


async def test_without_a_provider_nothing_calls_the_llm(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = make_settings(tmp_path)
    settings.llm.base_url = fake.base_url
    app = await build_app(settings)
    try:
        assert isinstance(app.desk._responder, OfflineResponder)
        await Desk(app).say("How do I return an item?")
        assert fake.calls == []
    finally:
        await app.close()


async def test_an_llm_brain_that_cannot_be_built_falls_back_to_offline(tmp_path: Path, fake: FakeOpenAI) -> None:
    settings = llm_settings(tmp_path, fake)
    settings.crm.provider = "http"  # without crm.base_url: refused at build time
    app = await build_app(settings)
    try:
        assert isinstance(app.desk._responder, OfflineResponder)
    finally:
        await app.close()


async def test_final_answer_schema_is_what_the_model_is_shown() -> None:
    from bot.brain.responders.llm import FinalAnswer

    schema = json.dumps(FinalAnswer.model_json_schema())
    for name in ("answer", "cited_article_ids", "confidence", "needs_human", "reason", "summary"):
        assert name in schema


async def test_broken_agent_prompts_at_start_up_mean_the_offline_brain(tmp_path: Path, fake: FakeOpenAI) -> None:
    import shutil

    from tests.conftest import REPO

    folder = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", folder)
    (folder / "agent.yaml").write_text("persona: [", encoding="utf-8")
    settings = llm_settings(tmp_path, fake)
    settings.prompts.path = folder
    app = await build_app(settings)
    try:
        assert isinstance(app.desk._responder, OfflineResponder)
    finally:
        await app.close()


async def test_llm_sentiment_score_is_made_to_agree_with_its_label(
    tmp_path: Path, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    app = await build_app(llm_settings(tmp_path, fake, analysis=True))
    cases = [  # (text, the LLM's label and score, the score the analysis keeps)
        ("How do I return an item?", "negative", 0.9, -0.25),  # the label wins: the nearest end of its band
        ("How do I return an item?", "positive", 1.7, 1.0),  # out of range
        ("How do I return an item?", "neutral", -3.0, None),  # the offline score (0.0) agrees: it is used
        ("How do I return an item?", "neutral", 0.1, 0.1),  # agrees: kept
        ("This is terrible, my order is broken", "negative", 0.8, None),  # the offline score agrees: it is used
    ]
    try:
        desk = Desk(app)
        for number, (text, label, score, expected) in enumerate(cases):
            caplog.clear()
            fake.script(analysis("returns-policy", label, score, "normal"), final("See the returns article."))
            a = (await desk.say(text, chat=f"mood-{number}")).analysis  # a new customer: the bot answers
            offline = score_sentiment(text, a.language).score  # the offline analysis on hashing embeddings
            assert a.sentiment == label
            assert a.sentiment_score == (offline if expected is None else expected)
            assert ("llm analysis: sentiment" in caplog.text) is (score != a.sentiment_score)
    finally:
        await app.close()


async def test_an_unknown_topic_from_the_llm_is_replaced_by_the_offline_one_and_logged(
    tmp_path: Path, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    app = await build_app(llm_settings(tmp_path, fake, analysis=True))
    try:
        fake.script(analysis("free-money-policy", "neutral", 0.0), final("See the returns article."))
        a = (await Desk(app).say("How do I return an item?")).analysis
        assert a.topic == "returns-policy" and "topic 'free-money-policy' is not a candidate" in caplog.text
    finally:
        await app.close()


@pytest.mark.parametrize("confidence", [1.7, -0.4])
async def test_an_answer_confidence_outside_0_1_is_replaced_by_the_analysis_and_logged(
    desk: Desk, fake: FakeOpenAI, caplog: pytest.LogCaptureFixture, confidence: float
) -> None:
    fake.script(
        call_tools(("search_knowledge", {"query": "pay"})),
        final("We accept cards.", ["payment-methods"], confidence=confidence),
    )
    decision = await desk.say("Can I pay by card?")
    assert decision.answer.confidence == decision.analysis.confidence != confidence
    assert f"confidence {confidence!r} outside 0..1" in caplog.text
