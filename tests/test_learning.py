"""The learning loop's promise, end to end through the desk: a question the knowledge base could not
answer gets the operator's answer as a draft the next time it is asked (in other words), and is answered
automatically once an operator teaches it. Real SQLite and Chroma, hashing embedder; the KB answers
only confident matches (`min_confidence: 0.9`), so these questions are handed off as `low_confidence`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App, build_app
from bot.domain import Inbound, Reason
from tests.conftest import Recorder, make_settings

CASES = {
    "en": (
        "Do you offer gift wrapping for birthday orders?",
        "Do you offer gift wrapping for a birthday order?",
        "Yes: gift wrapping costs 150 RUB, choose it at checkout.",
    ),
    "ru": (
        "Есть ли у вас подарочная упаковка для заказа?",
        "Есть ли подарочная упаковка для заказов?",
        "Да: подарочная упаковка стоит 150 рублей, выберите её при оформлении.",
    ),
}


@pytest.fixture
async def strict_app(tmp_path: Path) -> AsyncIterator[App]:
    settings = make_settings(tmp_path)
    settings.automation.min_confidence = 0.9
    built = await build_app(settings)
    yield built
    await built.close()


def said(text: str, chat: str) -> Inbound:
    return Inbound(channel="test", chat_id=chat, message_id=f"{chat}-{text}", text=text)


@pytest.mark.parametrize("lang", sorted(CASES))
async def test_an_unanswerable_question_is_drafted_after_an_operator_answers_and_sent_once_taught(
    strict_app: App, lang: str
) -> None:
    app = strict_app
    question, paraphrase, reply = CASES[lang]
    queue, customers = Recorder(), Recorder()
    app.outbox.register(app.desk.queue_channel, queue)
    app.outbox.register("test", customers)

    first = await app.desk.receive(said(question, "1"))
    assert first.action == "handoff" and first.reasons == (Reason.LOW_CONFIDENCE,)
    assert (await app.operators.reply(first.conversation_id, "olga", reply)).ok
    assert (await app.operators.resolve(first.conversation_id, "olga")).ok

    second = await app.desk.receive(said(paraphrase, "2"))  # asked again, in other words
    await app.outbox.deliver_due()
    assert second.action == "handoff" and Reason.RESPONDER_REQUEST in second.reasons
    card = [d for d in queue.sent if d.kind == "handoff"][-1]
    assert card.payload["draft"] == reply and card.payload["sources"] == [f"case-{first.handoff_id}"]

    assert (await app.operators.teach(first.conversation_id, "olga")).ok
    third = await app.desk.receive(said(paraphrase, "3"))
    await app.outbox.deliver_due()
    assert third.action == "answer" and third.answer is not None
    assert third.answer.sources == (f"case-{first.handoff_id}",)
    assert [d.payload["text"] for d in customers.sent if d.payload["chat_id"] == "3"] == [reply]

    unrelated = await app.desk.receive(said("How do I return an item?", "4"))  # the KB's own topics stay its own
    assert unrelated.action == "answer" and unrelated.answer is not None
    assert unrelated.answer.sources == ("returns-policy",)
