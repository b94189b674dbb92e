"""The desk end to end on real storage and Chroma: answers, handoffs, operators, restarts, duplicates."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from sqlmodel import select

from bot.app import App, build_app
from bot.config import Settings
from bot.domain.types import Attachment, Inbound, Reason
from bot.storage.models import Conversation, Customer, Event, Handoff, Message
from connectors.console import ConsoleChat
from tests.conftest import Recorder, make_settings

_ids = itertools.count(1)


def said(text: str, chat: str = "42", kind: str = "text", message_id: str | None = None, **extra: object) -> Inbound:
    return Inbound("test", chat, message_id or f"m{next(_ids)}", text, name="Anna", kind=kind, **extra)  # type: ignore[arg-type]


async def test_routine_question_is_answered_from_the_kb_with_feedback_buttons(app: App, customers: Recorder) -> None:
    decision = await app.desk.receive(said("How do I return an item?"))
    await app.outbox.deliver_due()
    assert decision.action == "answer"
    assert decision.answer is not None and decision.answer.sources == ("returns-policy",)
    assert customers.texts() == [decision.answer.text]
    assert "30 days" in customers.texts()[0]
    assert customers.sent[0].payload["buttons"] == "feedback"


async def test_russian_question_gets_the_russian_article(app: App, customers: Recorder) -> None:
    decision = await app.desk.receive(said("Где мой заказ?"))
    await app.outbox.deliver_due()
    assert decision.action == "answer"
    assert decision.analysis is not None and decision.analysis.language == "ru"
    assert decision.answer is not None and decision.answer.sources == ("order-tracking",)
    assert "Мои заказы" in customers.texts()[0]


async def test_the_same_message_twice_is_handled_once(app: App, customers: Recorder) -> None:
    first = await app.desk.receive(said("How do I return an item?", message_id="dup-1"))
    second = await app.desk.receive(said("How do I return an item?", message_id="dup-1"))
    await app.outbox.deliver_due()
    assert (first.action, second.action) == ("answer", "duplicate")
    assert len(customers.sent) == 1


async def test_asking_for_a_person_hands_off_with_a_card_and_a_notice(
    app: App, customers: Recorder, queue: Recorder
) -> None:
    decision = await app.desk.receive(said("I want to talk to a person"))
    await app.outbox.deliver_due()
    assert decision.action == "handoff"
    assert Reason.ASKED_FOR_HUMAN in decision.reasons
    card = queue.sent[0]
    assert card.kind == "handoff"
    assert card.payload["reasons"][0] == "asked_for_human"
    assert "I want to talk to a person" in card.payload["summary"]
    assert customers.texts() == [app.texts.render("handoff", "en")]


async def test_an_angry_customer_goes_to_a_person_with_a_draft(app: App, queue: Recorder) -> None:
    decision = await app.desk.receive(
        said(
            "This is the WORST shop ever!!! I returned the item a month ago "
            "and you still have not refunded me, you are thieves!"
        )
    )
    await app.outbox.deliver_due()
    assert decision.action == "handoff"
    assert Reason.NEGATIVE_SENTIMENT in decision.reasons
    assert queue.sent[0].payload["sentiment"] == "negative"
    assert queue.sent[0].payload["priority"] in ("high", "urgent")
    assert queue.sent[0].payload["draft"]


async def test_a_human_only_topic_is_never_answered_by_the_bot(settings: Settings) -> None:
    settings.automation.human_only_topics = ["payment-methods"]
    app = await build_app(settings)
    try:
        decision = await app.desk.receive(said("Which payment methods do you accept?"))
    finally:
        await app.close()
    assert decision.action == "handoff" and decision.reasons == (Reason.HUMAN_ONLY_TOPIC,)


async def test_asking_the_same_thing_again_reaches_a_person(app: App) -> None:
    first = await app.desk.receive(said("How do I return an item?"))
    again = await app.desk.receive(said("Can I send my order back?"))
    assert first.action == "answer"
    assert again.action == "handoff" and Reason.REPEATED_QUESTION in again.reasons


async def test_while_an_operator_owns_the_conversation_the_bot_stays_silent(
    app: App, customers: Recorder, queue: Recorder
) -> None:
    handoff = await app.desk.receive(said("I want to talk to a person"))
    await app.operators.claim(handoff.conversation_id, "olga")
    follow_up = await app.desk.receive(said("How do I return an item?"))
    await app.outbox.deliver_due()
    assert follow_up.action == "forwarded"
    assert customers.texts() == [app.texts.render("handoff", "en")]  # no bot answer
    forwarded = [d for d in queue.sent if d.kind == "customer_message"]
    assert [d.payload["text"] for d in forwarded] == ["How do I return an item?"]


async def test_a_huge_message_reaches_the_operator_whole(app: App, queue: Recorder) -> None:
    handoff = await app.desk.receive(said("I want to talk to a person"))
    await app.operators.claim(handoff.conversation_id, "olga")
    huge = "Here is the whole story: " + "🙂" * 4096
    assert len(huge) > app.settings.automation.analysis_chars
    await app.desk.receive(said(huge))
    await app.outbox.deliver_due()
    assert [d.payload["text"] for d in queue.sent if d.kind == "customer_message"] == [huge]


async def test_operator_sends_the_draft_once_however_often_it_is_pressed(
    app: App, customers: Recorder, queue: Recorder
) -> None:
    decision = await app.desk.receive(said("I want a human. How do I return an item?"))
    assert decision.handoff_id is not None
    first = await app.operators.send_draft(decision.handoff_id, "olga")
    second = await app.operators.send_draft(decision.handoff_id, "olga")
    await app.outbox.deliver_due()
    assert first.ok and not second.ok
    draft = queue.sent[0].payload["draft"]
    assert "30 days" in draft
    assert customers.texts().count(draft) == 1
    assert customers.sent[-1].payload["operator"] == "olga"


async def test_operator_reply_note_resolve_and_csat(app: App, customers: Recorder) -> None:
    decision = await app.desk.receive(said("Give me a human please"))
    cid = decision.conversation_id
    assert (await app.operators.note(cid, "olga", "// VIP customer")).ok
    assert (await app.operators.reply(cid, "olga", "Hello Anna, I am on it.")).ok
    assert (await app.operators.resolve(cid, "olga")).ok
    assert not (await app.operators.resolve(cid, "olga")).ok
    await app.outbox.deliver_due()
    texts = customers.texts()
    assert "// VIP customer" not in texts
    assert texts[-2:] == ["Hello Anna, I am on it.", app.texts.render("resolved", "en")]
    assert customers.sent[-1].payload["buttons"] == "csat"
    assert (await app.operators.feedback(cid, "csat", 5)).ok
    assert not (await app.operators.feedback(cid, "csat", 9)).ok


async def test_another_operator_cannot_take_over_a_claimed_conversation(app: App) -> None:
    decision = await app.desk.receive(said("operator please"))
    assert (await app.operators.claim(decision.conversation_id, "olga")).ok
    refused = await app.operators.reply(decision.conversation_id, "pavel", "hi")
    assert not refused.ok and "olga" in refused.message


async def test_a_new_message_reopens_a_resolved_conversation_and_return_to_bot_works(
    app: App, customers: Recorder
) -> None:
    decision = await app.desk.receive(said("connect me to an operator"))
    cid = decision.conversation_id
    await app.operators.resolve(cid, "olga")
    reopened = await app.desk.receive(said("Which payment methods do you accept?"))
    assert reopened.conversation_id == cid and reopened.action == "answer"
    handoff = await app.desk.receive(said("talk to a human"))
    assert (await app.operators.return_to_bot(cid, "olga")).ok
    back = await app.desk.receive(said("Where is my order?"))
    assert handoff.action == "handoff" and back.action == "answer"


async def test_the_card_of_a_reopened_conversation_shows_only_what_was_said_since_it_was_resolved(
    app: App, queue: Recorder
) -> None:
    first = await app.desk.receive(said("My parcel arrived broken, I want to talk to a person"))
    await app.operators.resolve(first.conversation_id, "olga")
    await app.desk.receive(said("Which payment methods do you accept?"))
    again = await app.desk.receive(said("talk to a human"))
    await app.outbox.deliver_due()
    assert again.action == "handoff" and again.conversation_id == first.conversation_id
    card = [d for d in queue.sent if d.kind == "handoff"][-1]
    texts = [text for _, text in card.payload["last_messages"]]
    assert (texts[0], texts[-1]) == ("Which payment methods do you accept?", "talk to a human")
    assert not any("broken" in text for text in texts)


async def test_a_customer_s_new_name_and_language_are_what_the_desk_writes_with(app: App) -> None:
    await app.desk.receive(said("How do I return an item?"))
    await app.desk.receive(Inbound("test", "42", "renamed-1", "Где мой заказ?", name="Анна К."))
    async with app.sessions() as session:
        customer = (await session.execute(select(Customer))).scalars().one()
    assert (customer.name, customer.language) == ("Анна К.", "ru")


async def test_photos_and_documents_go_to_an_operator_and_the_customer_hears_back(
    app: App, customers: Recorder, queue: Recorder
) -> None:
    decision = await app.desk.receive(said("", kind="photo", attachments=(Attachment("photo", file_id="AgAD1"),)))
    await app.outbox.deliver_due()
    assert decision.action == "handoff" and decision.reasons == (Reason.NOT_TEXT,)
    assert "photo" in customers.texts()[0]
    async with app.sessions() as session:
        message = (await session.execute(select(Message).where(Message.kind == "photo"))).scalars().one()
    assert message.meta["attachments"][0]["file_id"] == "AgAD1"


async def test_giant_and_garbled_messages_are_stored_cleaned(app: App) -> None:
    text = "How do I return an item?\x00\x07\ud800 " + "x" * 100_000
    decision = await app.desk.receive(said(text))
    async with app.sessions() as session:
        stored = (await session.execute(select(Message.text))).scalars().first()
    assert decision.action in ("answer", "handoff")
    assert stored is not None and stored.startswith("How do I return an item? x") and len(stored) == 20_000


async def test_a_failing_brain_hands_off_instead_of_showing_an_error(app: App, customers: Recorder) -> None:
    class Broken:
        async def respond(self, *args: object) -> None:
            raise RuntimeError("boom")

    app.desk._responder = Broken()  # type: ignore[assignment]
    decision = await app.desk.receive(said("How do I return an item?"))
    await app.outbox.deliver_due()
    assert decision.action == "handoff"
    assert customers.texts() == [app.texts.render("handoff", "en")]


async def test_restart_keeps_the_conversation_and_delivers_what_was_pending(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = await build_app(settings)
    decision = await first.desk.receive(said("I want to talk to a person", chat="7"))
    await first.close()  # crashed before delivering anything

    second = await build_app(settings)
    customers, queue = Recorder(), Recorder()
    second.outbox.register("test", customers)
    second.outbox.register(second.desk.queue_channel, queue)
    try:
        await second.outbox.deliver_due()
        follow_up = await second.desk.receive(said("are you there?", chat="7"))
        async with second.sessions() as session:
            conversation = await session.get(Conversation, decision.conversation_id)
    finally:
        await second.close()
    assert queue.kinds()[0] == "handoff"
    assert customers.texts() == [second.texts.render("handoff", "en")]
    assert follow_up.action == "forwarded" and follow_up.conversation_id == decision.conversation_id
    assert conversation is not None and conversation.state == "waiting_operator"


async def test_the_desk_works_the_same_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    app = await build_app(make_settings(tmp_path, postgres_url))
    customers = Recorder()
    app.outbox.register("test", customers)
    try:
        answer = await app.desk.receive(said("How do I return an item?", message_id="pg-1"))
        duplicate = await app.desk.receive(said("How do I return an item?", message_id="pg-1"))
        handoff = await app.desk.receive(said("I want to talk to a person"))
        assert handoff.handoff_id is not None
        sent = await app.operators.send_draft(handoff.handoff_id, "olga")
        await app.outbox.deliver_due()
        async with app.sessions() as session:
            customer = (await session.execute(select(Customer))).scalars().one()
    finally:
        await app.close()
    assert (answer.action, duplicate.action, handoff.action, sent.ok) == ("answer", "duplicate", "handoff", True)
    assert customer.chat_id == "42" and len(customers.sent) == 3


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01"])
async def test_empty_messages_are_ignored(app: App, customers: Recorder, text: str) -> None:
    decision = await app.desk.receive(said(text))
    await app.outbox.deliver_due()
    assert decision.action == "ignored" and customers.sent == []


async def test_an_operators_answer_becomes_a_draft_for_the_next_similar_question(app: App, queue: Recorder) -> None:
    first = await app.desk.receive(said("Operator please: do you offer gift wrapping for birthday orders?", chat="100"))
    assert first.action == "handoff"
    await app.operators.reply(first.conversation_id, "olga", "Yes: gift wrapping costs 150 RUB, choose it at checkout.")
    await app.operators.resolve(first.conversation_id, "olga")

    later = await app.desk.receive(said("Do you offer gift wrapping for birthday orders?", chat="200"))
    await app.outbox.deliver_due()
    assert later.action == "handoff"  # an operator's reply is not sent alone until someone approves it
    card = [d for d in queue.sent if d.kind == "handoff"][-1]
    assert card.payload["draft"] == "Yes: gift wrapping costs 150 RUB, choose it at checkout."
    assert Reason.RESPONDER_REQUEST in later.reasons


async def _gift_wrapping_answered(app: App) -> int:
    first = await app.desk.receive(said("Operator please: do you offer gift wrapping for birthday orders?", chat="100"))
    assert first.action == "handoff" and first.handoff_id is not None
    await app.operators.reply(first.conversation_id, "olga", "Yes: gift wrapping costs 150 RUB, choose it at checkout.")
    return first.conversation_id


async def test_a_taught_answer_is_sent_on_its_own_to_the_next_similar_question(
    app: App, customers: Recorder, queue: Recorder
) -> None:
    cid = await _gift_wrapping_answered(app)
    assert (await app.operators.resolve(cid, "olga")).ok
    taught = await app.operators.teach(cid, "olga")
    assert taught.ok and "taught" in taught.message
    again = await app.operators.teach(cid, "olga")
    assert not again.ok and "already" in again.message

    later = await app.desk.receive(said("Do you offer gift wrapping for birthday orders?", chat="200"))
    await app.outbox.deliver_due()
    assert later.action == "answer"
    assert later.answer is not None and later.answer.text == "Yes: gift wrapping costs 150 RUB, choose it at checkout."
    async with app.sessions() as session:
        handoff_id = (await session.execute(select(Handoff.id).where(Handoff.conversation_id == cid))).scalar_one()
        events = (await session.execute(select(Event).where(Event.type == "taught"))).scalars().all()
    assert later.answer.sources == (f"case-{handoff_id}",)
    to_later = [d.payload["text"] for d in customers.sent if d.payload["chat_id"] == "200"]
    assert to_later == ["Yes: gift wrapping costs 150 RUB, choose it at checkout."]
    assert [(e.conversation_id, e.operator, e.data["case"]) for e in events] == [(cid, "olga", str(handoff_id))]


async def test_teaching_before_resolving_survives_the_resolution(app: App) -> None:
    cid = await _gift_wrapping_answered(app)
    assert (await app.operators.teach(cid, "olga")).ok
    assert (await app.operators.resolve(cid, "olga")).ok  # re-stores the case: it must stay approved
    later = await app.desk.receive(said("Do you offer gift wrapping for birthday orders?", chat="200"))
    assert later.action == "answer"


async def test_without_an_operator_answer_there_is_nothing_to_teach(app: App) -> None:
    bot_only = await app.desk.receive(said("How do I return an item?"))
    refused = await app.operators.teach(bot_only.conversation_id, "olga")
    assert not refused.ok and "no operator answer" in refused.message
    handed_off = await app.desk.receive(said("I want to talk to a person", chat="300"))
    assert not (await app.operators.teach(handed_off.conversation_id, "olga")).ok
    assert not (await app.operators.teach(9999, "olga")).ok
    async with app.sessions() as session:
        assert (await session.execute(select(Event).where(Event.type == "taught"))).first() is None


async def test_the_terminal_chat_teaches_with_an_operator_command(app: App) -> None:
    out = io.StringIO()
    chat = ConsoleChat(app, out=out, operator="olga")
    await chat.handle("!teach")
    await chat.handle("I want a human: do you offer gift wrapping for birthday orders?")
    await chat.handle("!reply Yes: gift wrapping costs 150 RUB, choose it at checkout.")
    await chat.handle("!resolve")
    await chat.handle("!teach")
    later = await app.desk.receive(said("Do you offer gift wrapping for birthday orders?", chat="200"))
    lines = out.getvalue().splitlines()
    assert "[refused] no conversation yet" in lines
    assert any(line.startswith("[ok] taught") for line in lines)
    assert later.action == "answer"


@pytest.mark.parametrize(
    ("settled_by", "then_the_customer_says", "why"),
    [
        ("!resolve", "Can I pay by card?", "resolved"),
        ("!bot", "Can I pay by card?", "returned to the bot"),
        ("!reply Let me check that for you.", None, "answered"),
    ],
)
async def test_the_terminal_chat_refuses_a_draft_whose_question_was_settled(
    app: App, settled_by: str, then_the_customer_says: str | None, why: str
) -> None:
    out = io.StringIO()
    chat = ConsoleChat(app, out=out, operator="olga")
    await chat.handle("I want to talk to a person about returns")  # handed off with a draft
    await chat.handle(settled_by)  # the draft was neither sent nor discarded
    if then_the_customer_says:
        await chat.handle(then_the_customer_says)  # reopens the conversation: the bot answers
    before = out.getvalue()
    await chat.handle("!send")
    await chat.handle("!edit my own version of the stale draft")
    after = out.getvalue()[len(before) :].splitlines()
    refused = f"[refused] the draft expired when the conversation was {why}: reply in your own words if needed"
    assert after == [refused, refused]  # nothing reached the customer
    async with app.sessions() as session:
        conversation = (await session.execute(select(Conversation))).scalars().one()
    assert conversation.state == ("operator" if then_the_customer_says is None else "bot")


async def test_the_terminal_chat_says_what_it_taught_and_refuses_to_teach_nothing_new(app: App) -> None:
    out = io.StringIO()
    chat = ConsoleChat(app, out=out, operator="olga")
    await chat.handle("Operator please: do you offer gift wrapping for birthday orders?")
    await chat.handle("!reply Yes: gift wrapping costs 150 RUB, choose it at checkout.")
    await chat.handle("!resolve")
    await chat.handle("!teach")
    await chat.handle("!teach")
    await chat.handle("Operator please: can I change the delivery address of my order?")  # a new question
    await chat.handle("!resolve")  # resolved without an answer: the gift-wrapping reply does not answer it
    await chat.handle("!teach")
    results = [line for line in out.getvalue().splitlines() if line.startswith("[")]
    taught = "“Yes: gift wrapping costs 150 RUB, choose it at checkout.” to questions like “Operator please: do you"
    assert [line for line in results if "teach" in line or "taught" in line] == [
        f"[ok] taught: the bot may now send {taught} offer gift wrapping for birthday orders?”",
        f"[refused] nothing new to teach: the bot already knows this answer ({taught} offer gift wrapping for "
        "birthday orders?”)",
        "[refused] nothing to teach: no operator answer to the last handed-off question",
    ]
    later = await app.desk.receive(said("Can I change the delivery address of my order?", chat="200"))
    assert later.answer is None or "gift wrapping" not in later.answer.text
