"""Triage by meaning, on the shipped help centre and the bundled encoder: risks go to a person with their
escalation topic, off-topic questions as out of scope, ordinary questions are answered, an order number
changes nothing of what a question means."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.domain.types import Decision, Inbound, Reason
from bot.knowledge.embeddings import cpu_has_avx2
from connectors.console import ConsoleChat
from tests.conftest import Recorder, make_settings, on_shipped_kb

pytestmark = pytest.mark.asyncio(loop_scope="module")


def said(text: str, chat: str) -> Inbound:
    return Inbound("test", chat, f"{chat}-{text}", text)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sample_app(tmp_path_factory: pytest.TempPathFactory, shipped_kb_store: Path) -> AsyncIterator[App]:
    """The shipped help centre on the bundled model, built once for this module."""
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    built = await build_app(on_shipped_kb(make_settings(tmp_path_factory.mktemp("sample")), shipped_kb_store))
    yield built
    await built.close()


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("Someone logged into my account and bought things with my card", "account_takeover"),
        ("Мой аккаунт взломали и поменяли почту", "account_takeover"),
        ("Your courier damaged my front door", "damage_or_injury"),
        ("I was charged twice and now my account is overdrawn, fix this today", "financial_harm"),
        ("Оператор мне нахамил", "employee_complaint"),
        ("Подам на вас в суд", "legal_threat"),
    ],
)
async def test_a_risk_goes_to_a_person_with_its_topic_and_priority(sample_app: App, text: str, topic: str) -> None:
    queue = Recorder()
    sample_app.outbox.register(sample_app.desk.queue_channel, queue)
    sample_app.outbox.register("test", Recorder())
    decision = await sample_app.desk.receive(said(text, chat=f"risk-{topic}-{text[:8]}"))
    await sample_app.outbox.deliver_due()
    assert decision.action == "handoff" and Reason.ESCALATION in decision.reasons
    assert decision.analysis is not None and decision.analysis.escalation is not None
    assert decision.analysis.escalation.name == topic
    card = queue.sent[-1].payload
    assert card["escalation"] == decision.analysis.escalation.label and card["priority"] in ("high", "urgent")


@pytest.mark.parametrize("text", ["What will the weather be like in Kazan tomorrow?", "Посоветуй фильм на вечер"])
async def test_an_off_topic_question_goes_to_a_person_as_out_of_scope(sample_app: App, text: str) -> None:
    decision = await sample_app.desk.preview(text)
    assert decision.action == "handoff" and Reason.OUT_OF_SCOPE in decision.reasons


@pytest.mark.parametrize("text", ["How do I return an item?", "Где мой заказ?", "Can I pay by card?"])
async def test_ordinary_questions_are_not_escalated_or_out_of_scope(sample_app: App, text: str) -> None:
    decision = await sample_app.desk.preview(text)
    assert decision.analysis is not None and decision.analysis.escalation is None
    assert not ({Reason.ESCALATION, Reason.OUT_OF_SCOPE} & set(decision.reasons)), decision.reasons


async def test_an_order_number_does_not_change_what_the_question_means(sample_app: App) -> None:
    plain = await sample_app.desk.preview("Где мой заказ?")
    numbered = await sample_app.desk.preview("Где мой заказ? №10236")  # in the demo CRM, not late
    assert plain.analysis is not None and numbered.analysis is not None
    assert numbered.analysis.topic == plain.analysis.topic == "order-tracking"
    assert abs(numbered.analysis.confidence - plain.analysis.confidence) < 1e-6
    assert numbered.action == plain.action == "answer"


# -- the late-order scenario on the shipped help centre, the bundled encoder and the demo CRM ----------


class Customer:
    def __init__(self, app: App, chat: str) -> None:
        self.app, self.chat, self.heard, self.queue = app, chat, Recorder(), Recorder()
        app.outbox.register("test", self.heard)
        app.outbox.register(app.desk.queue_channel, self.queue)

    async def say(self, text: str) -> Decision:
        decision = await self.app.desk.receive(said(text, self.chat))
        await self.app.outbox.deliver_due()
        return decision


async def test_where_is_my_order_is_answered_in_russian_with_its_status(sample_app: App) -> None:
    customer = Customer(sample_app, "order-ru")
    decision = await customer.say("Где мой заказ 10234?")  # in transit, 5 days late
    assert decision.analysis is not None and decision.analysis.topic == "order-tracking"
    assert customer.heard.texts()[-1].startswith("Заказ 10234 в пути. Он опаздывает на 5 дн.")


async def test_a_late_order_is_handed_off_with_its_lateness_and_the_15_percent_code(sample_app: App) -> None:
    customer = Customer(sample_app, "order-en")
    decision = await customer.say("My order 10237 hasn't arrived")
    assert decision.action == "handoff" and Reason.COMPENSATION in decision.reasons
    card = customer.queue.sent[-1].payload
    assert card["order"]["days_late"] == 9 and "15% promo code" in card["draft"] and "SORRY15-" in card["draft"]


async def test_the_number_sent_after_the_question_reaches_the_same_result_in_russian(sample_app: App) -> None:
    customer = Customer(sample_app, "order-ask")
    asked = await customer.say("Не пришёл заказ")
    assert asked.action == "answer" and "номер заказа" in customer.heard.texts()[-1]
    decision = await customer.say("10237")
    assert decision.action == "handoff" and Reason.COMPENSATION in decision.reasons
    card = customer.queue.sent[-1].payload
    assert card["language"] == "ru" and "промокод на 15%" in card["draft"]
    assert customer.heard.texts()[-1].startswith("Заказ 10237 в пути")


@pytest.mark.parametrize("text", ["Где мой заказ 99999?", "My order 88888 never arrived"])
async def test_an_order_the_crm_does_not_know_gets_a_polite_text_and_a_person(sample_app: App, text: str) -> None:
    customer = Customer(sample_app, f"order-unknown-{text[:6]}")
    decision = await customer.say(text)
    assert decision.action == "handoff" and Reason.ORDER_NOT_CHECKED in decision.reasons
    assert "заказ 99999" in customer.heard.texts()[-1] or "order 88888" in customer.heard.texts()[-1]


async def test_the_report_counts_handoffs_by_escalation_topic(sample_app: App) -> None:
    sample_app.outbox.register("test", Recorder())
    sample_app.outbox.register(sample_app.desk.queue_channel, Recorder())
    await sample_app.desk.receive(said("Ваш курьер поцарапал мне машину во дворе", chat="report-1"))
    since = datetime.now(UTC) - timedelta(days=1)
    report = await build_report(sample_app.sessions, sample_app.settings.analytics, since)
    assert report["escalations"].get("damage_or_injury", 0) >= 1
    assert report["handoff_reasons"].get("escalation", 0) >= 1


async def test_an_operator_marks_a_question_always_a_person_and_questions_like_it_follow(sample_app: App) -> None:
    out = io.StringIO()
    chat = ConsoleChat(sample_app, out=out, operator="olga")
    similar = "Are dogs allowed inside your pickup points?"
    before = await sample_app.desk.preview(similar)
    assert before.analysis is not None and before.analysis.escalation is None
    await chat.handle("Can I bring my dog with me into the pickup point?")
    await chat.handle("/human")
    await chat.handle("!escalate ?")
    await chat.handle("!escalate")
    await chat.handle("!escalate")
    lines = out.getvalue().splitlines()
    assert any(
        line.startswith("[refused] no escalation topic '?'; choose one of:") and "marked" in line for line in lines
    )
    assert any(line.startswith("[ok] always a person") and "bring my dog" in line for line in lines), lines
    assert any(line.startswith("[refused] messages like") for line in lines)

    after = await sample_app.desk.preview(similar)
    assert after.action == "handoff" and Reason.ESCALATION in after.reasons
    assert after.analysis is not None and after.analysis.escalation is not None
    assert after.analysis.escalation.name == "marked"
    ordinary = await sample_app.desk.preview("How do I return an item?")
    assert ordinary.analysis is not None and ordinary.analysis.escalation is None
