"""The Telegram channel end to end: real aiogram + AiohttpSession against a fake Bot API on loopback.

Every assertion is about what the customer would notice (what Telegram received) or what the
operator gets; the database is checked only where "stored once" is the point.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.domain.types import State
from bot.knowledge.embeddings import cpu_has_avx2
from bot.prompts.texts import load_texts
from tests.conftest import REPO, on_shipped_kb
from tests.fakes.telegram_api import BOT_USER, FakeTelegram
from tests.test_telegram_harness import Harness, telegram_settings

CHAT = 1001


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def desk(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Harness]:
    async with Harness(telegram_settings(tmp_path, fake), fake) as harness:
        yield harness


async def test_a_question_is_answered_from_the_knowledge_base_with_buttons(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "How do I return an item?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    (answer,) = fake.sent(CHAT)
    assert "30 days" in fake.texts(CHAT)[0]
    assert answer["parse_mode"] == "HTML"
    conversation = await desk.conversation(CHAT)
    labels = fake.buttons(answer)
    assert [label for label, _ in labels] == ["👍 Helped", "🙋 Talk to a person"]
    assert all(f":{conversation.id}:" in data for _, data in labels)
    typing = fake.called("sendChatAction")
    assert typing and typing[0].params["action"] == "typing" and typing[0].at <= fake.called("sendMessage")[0].at


async def test_start_greets_in_the_customers_language_and_help_explains(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "/start", first_name="Иван", language_code="ru")
    fake.push_message(CHAT + 1, "/start", first_name="Ann", language_code="en")
    fake.push_message(CHAT + 1, "/help")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1 and len(fake.sent(CHAT + 1)) == 2)
    assert fake.texts(CHAT)[0].startswith("Здравствуйте, Иван!")
    assert fake.texts(CHAT + 1)[0].startswith("Hello, Ann!")
    assert "/human" in fake.texts(CHAT + 1)[1]


async def test_human_command_hands_the_customer_to_an_operator(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "/human")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    assert "a person will reply here" in fake.texts(CHAT)[0]
    assert (await desk.conversation(CHAT)).state == State.WAITING_OPERATOR
    await fake.wait_for(lambda: desk.queue.kinds() == ["handoff"])
    assert "asked_for_human" in desk.queue.sent[0].payload["reasons"]


async def test_helped_button_is_answered_recorded_and_removed(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "Where is my order?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    helped = fake.buttons(fake.sent(CHAT)[0])[0][1]
    fake.push_callback(CHAT, helped, message_id=1, callback_id="press-1")
    await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == 1)
    assert fake.called("answerCallbackQuery")[0].params["text"] == "Thank you! Glad I could help."
    assert [(f.kind, f.value) for f in await desk.feedback()] == [("helpful", 0)]
    await fake.wait_for(lambda: len(fake.called("editMessageReplyMarkup")) == 1)
    assert (await desk.conversation(CHAT)).state == State.RESOLVED


async def test_talk_to_a_person_button_hands_off(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "Which payment methods do you accept?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    human = fake.buttons(fake.sent(CHAT)[0])[1][1]
    fake.push_callback(CHAT, human, callback_id="press-2")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 2)
    assert "a person will reply here" in fake.texts(CHAT)[1]
    assert (await desk.conversation(CHAT)).state == State.WAITING_OPERATOR
    # The press is answered once it is recorded; the handoff notice may reach the chat before that.
    await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == 1)
    assert [f.kind for f in await desk.feedback()] == ["not_helpful"]
    assert fake.called("answerCallbackQuery")[0].params["text"] == "Calling a person from the support team…"


async def test_csat_after_resolution_records_the_score(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "/human")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    conversation = await desk.conversation(CHAT)
    assert conversation.id is not None
    await desk.app.operators.reply(conversation.id, "maria", "Your parcel is on its way.")
    await desk.app.operators.resolve(conversation.id, "maria")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 3)
    assert fake.texts(CHAT)[1] == "Your parcel is on its way."
    assert "How would you rate our help?" in fake.texts(CHAT)[2]
    buttons = fake.buttons(fake.sent(CHAT)[2])
    assert [label for label, _ in buttons] == ["1 ⭐", "2 ⭐", "3 ⭐", "4 ⭐", "5 ⭐"]
    fake.push_callback(CHAT, buttons[3][1], callback_id="csat-1")
    await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == 1)
    assert fake.called("answerCallbackQuery")[0].params["text"] == "Thank you for your rating!"
    assert [(f.kind, f.value) for f in await desk.feedback()] == [("csat", 4)]


async def test_stale_or_forged_button_presses_are_answered_and_change_nothing(
    desk: Harness, fake: FakeTelegram
) -> None:
    fake.push_message(CHAT, "Where is my order?")
    fake.push_message(CHAT + 1, "How do I return an item?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1 and len(fake.sent(CHAT + 1)) == 1)
    others = fake.buttons(fake.sent(CHAT + 1)[0])
    mine = await desk.conversation(CHAT)
    forged = [
        others[0][1],  # another customer's conversation
        others[1][1],
        f"rd:{mine.id}:csat:9",  # no such score
        f"rd:{mine.id}:refund:0",  # no such action
        "rd:not-a-number:helped:0",
        "hello",
        f"rd:{(mine.id or 0) + 100}:helped:0",  # no such conversation
    ]
    for index, data in enumerate(forged):
        fake.push_callback(CHAT, data, callback_id=f"forged-{index}")
    await fake.wait_for(lambda: len(fake.called("answerCallbackQuery")) == len(forged))
    texts = {c.params["text"] for c in fake.called("answerCallbackQuery")}
    assert texts == {"This button is no longer active. Just write your question here."}
    assert await desk.feedback() == []
    assert (await desk.conversation(CHAT)).state == State.BOT
    assert (await desk.conversation(CHAT + 1)).state == State.BOT
    assert len(fake.sent(CHAT)) == 1 and fake.called("editMessageReplyMarkup") == []


PHOTO = [
    {"file_id": "photo-small", "file_unique_id": "u1", "width": 90, "height": 90},
    {"file_id": "photo-large", "file_unique_id": "u2", "width": 1280, "height": 960},
]
KINDS: dict[str, tuple[dict[str, Any], str]] = {
    "photo": ({"photo": PHOTO, "caption": "The box arrived crushed"}, "photo-large"),
    "document": (
        {"document": {"file_id": "doc-1", "file_unique_id": "d1", "file_name": "receipt.pdf"}},
        "doc-1",
    ),
    "voice": ({"voice": {"file_id": "voice-1", "file_unique_id": "v1", "duration": 3}}, "voice-1"),
    "sticker": (
        {
            "sticker": {
                "file_id": "sticker-1",
                "file_unique_id": "s1",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
                "emoji": "😡",
            }
        },
        "sticker-1",
    ),
    "location": ({"location": {"latitude": 55.75, "longitude": 37.61}}, ""),
    "video": (
        {"video": {"file_id": "video-1", "file_unique_id": "vi1", "width": 1, "height": 1, "duration": 1}},
        "video-1",
    ),
    "contact": ({"contact": {"phone_number": "+100200300", "first_name": "Ann"}}, ""),
}


async def test_every_kind_of_message_is_stored_passed_on_and_acknowledged(desk: Harness, fake: FakeTelegram) -> None:
    for offset, (fields, _) in enumerate(KINDS.values()):
        fake.push_message(CHAT + offset, None, **fields)
    await fake.wait_for(lambda: all(len(fake.sent(CHAT + i)) == 1 for i in range(len(KINDS))))
    await fake.wait_for(lambda: len(desk.queue.sent) == len(KINDS) - 1)  # all but the sticker
    handoffs = {d.payload["conversation_id"]: d.payload for d in desk.queue.sent}
    for offset, (kind, (_, file_id)) in enumerate(KINDS.items()):
        (stored,) = await desk.messages(CHAT + offset)
        assert stored.kind == kind
        attachment = stored.meta["attachments"][0]
        assert attachment["kind"] == kind and attachment["file_id"] == file_id
        if kind == "sticker":  # an acknowledgement: answered from texts, no operator's work
            assert fake.texts(CHAT + offset) == [
                load_texts(REPO / "prompts" / "texts.yaml").render("smalltalk_ack", "en")
            ]
            assert stored.conversation_id not in handoffs
            continue
        assert "I've received your" in fake.texts(CHAT + offset)[0], kind
        card = handoffs[stored.conversation_id]
        assert "not_text" in card["reasons"]
    photo = (await desk.messages(CHAT))[0]
    assert photo.text == "The box arrived crushed"
    location = (await desk.messages(CHAT + 4))[0].meta["attachments"][0]
    assert location["url"] == "https://maps.google.com/?q=55.75,37.61"


async def test_edits_and_replies_are_stored_with_their_context(desk: Harness, fake: FakeTelegram) -> None:
    update = fake.push_message(CHAT, "Where is my ordr?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    edited = dict(update["message"], text="Where is my order?", edit_date=update["message"]["date"] + 5)
    fake.push_update({"edited_message": edited})
    bot_reply = {"message_id": 1, "date": 1, "chat": {"id": CHAT, "type": "private"}, "from": BOT_USER, "text": "Hi"}
    last = fake.push_message(CHAT, "How can I track my parcel?", reply_to_message=bot_reply)
    await desk.processed(last)
    _first, edit, reply = await desk.messages(CHAT)
    assert edit.external_id == f"{CHAT}:{update['message']['message_id']}:e{edited['edit_date']}"
    assert edit.text == "Where is my order?" and edit.meta["attachments"][0]["kind"] == "edited"
    assert reply.meta["attachments"] == [{"kind": "reply", "file_id": "1", "name": "Hi", "url": ""}]
    # the same topic twice went to a person; what the customer adds next reaches the operator with its context
    await fake.wait_for(lambda: desk.queue.kinds() == ["handoff", "customer_message"])
    assert desk.queue.sent[1].payload["attachments"][0]["name"] == "Hi"
    assert len(fake.sent(CHAT)) == 2


async def test_a_poll_gets_a_polite_notice_and_service_messages_are_ignored(desk: Harness, fake: FakeTelegram) -> None:
    poll = {
        "id": "p1",
        "question": "?",
        "options": [
            {"persistent_id": "o1", "text": "a", "voter_count": 0},
            {"persistent_id": "o2", "text": "b", "voter_count": 0},
        ],
        "total_voter_count": 0,
        "is_closed": False,
        "is_anonymous": True,
        "type": "regular",
        "allows_multiple_answers": False,
        "allows_revoting": False,
        "members_only": False,
    }
    fake.push_message(CHAT, None, poll=poll)
    service = fake.push_message(CHAT, None, new_chat_title="New name")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    await desk.processed(service)
    await desk.settle()
    assert fake.texts(CHAT) == [
        "Sorry, I can't take a poll here. Please describe your question in a message, or send a photo or a file."
    ]
    assert await desk.messages(CHAT) == []


async def test_in_groups_the_bot_speaks_only_when_mentioned_or_replied_to(desk: Harness, fake: FakeTelegram) -> None:
    group = -100500
    chatter = fake.push_message(group, "How do I return an item?", chat_type="supergroup", user_id=7)
    await desk.processed(chatter)
    await desk.settle()
    assert fake.sent(group) == [] and await desk.messages(group) == []
    mention = "@relaydesk_test_bot how do I return an item?"
    entities = [{"type": "mention", "offset": 0, "length": len("@relaydesk_test_bot")}]
    fake.push_message(group, mention, chat_type="supergroup", user_id=7, entities=entities)
    await fake.wait_for(lambda: len(fake.sent(group)) == 1)
    bot_message = {
        "message_id": 9,
        "date": 1,
        "chat": {"id": group, "type": "supergroup"},
        "from": BOT_USER,
        "text": "…",
    }
    fake.push_message(group, "and where is my order?", chat_type="supergroup", user_id=8, reply_to_message=bot_message)
    await fake.wait_for(lambda: len(fake.sent(group)) == 2)
    stored = await desk.messages(group)
    assert [m.text for m in stored] == ["how do I return an item?", "and where is my order?"]
    assert "30 days" in fake.texts(group)[0]


async def test_a_flooding_customer_is_limited_with_one_polite_notice(tmp_path: Path, fake: FakeTelegram) -> None:
    settings = telegram_settings(tmp_path, fake, rate_limit_messages=3, rate_limit_window_s=60.0)
    async with Harness(settings, fake) as desk:
        last = None
        for index in range(8):
            last = fake.push_message(CHAT, f"Where is my order number {index}?")
        fake.push_message(CHAT + 1, "Where is my order?")
        assert last is not None
        await desk.processed(last)
        await fake.wait_for(lambda: len(fake.sent(CHAT + 1)) == 1)
        notice = "You're sending messages very quickly"
        await fake.wait_for(lambda: any(t.startswith(notice) for t in fake.texts(CHAT)))
        await desk.settle()
        assert len([t for t in fake.texts(CHAT) if t.startswith(notice)]) == 1
        assert len(await desk.messages(CHAT)) == 3


async def test_a_restart_never_answers_the_same_update_twice(tmp_path: Path, fake: FakeTelegram) -> None:
    settings = telegram_settings(tmp_path, fake)
    async with Harness(settings, fake):
        update = fake.push_message(CHAT, "How do I return an item?")
        await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    # The process died before Telegram saw the confirmation: Telegram sends the same update again.
    fake.push_update(update)
    async with Harness(settings, fake) as again:
        follow_up = fake.push_message(CHAT, "Which payment methods do you accept?")
        await again.processed(follow_up)
        await fake.wait_for(lambda: len(fake.sent(CHAT)) == 2)
        await again.settle()
        assert len(fake.sent(CHAT)) == 2
        assert [m.text for m in await again.messages(CHAT)] == [
            "How do I return an item?",
            "Which payment methods do you accept?",
        ]


async def test_undelivered_answers_are_sent_after_a_restart(tmp_path: Path, fake: FakeTelegram) -> None:
    settings = telegram_settings(tmp_path, fake)
    fake.fail("sendMessage", status=500, times=1000)
    async with Harness(settings, fake) as first:
        update = fake.push_message(CHAT, "How do I return an item?")
        await first.processed(update)
        await fake.wait_for(lambda: len(fake.called("sendMessage", ok_only=False)) >= 2)
    assert fake.sent(CHAT) == []
    fake._failures.clear()
    async with Harness(settings, fake):
        await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    assert "30 days" in fake.texts(CHAT)[0]


async def test_an_outage_then_recovery_loses_nothing_and_keeps_order(tmp_path: Path, fake: FakeTelegram) -> None:
    async with Harness(telegram_settings(tmp_path, fake, request_timeout_s=0.3), fake) as desk:
        await _outage_then_recovery(desk, fake)


async def _outage_then_recovery(desk: Harness, fake: FakeTelegram) -> None:
    fake.fail("sendMessage", status=429, retry_after=1)
    fake.fail("sendMessage", status=500)
    fake.fail("sendMessage", status=502, html_body=True)  # a proxy's error page, not JSON
    fake.fail("sendMessage", status=504, hang_s=0.6)  # a hang longer than the request timeout
    questions = ["How do I return an item?", "Where is my order?", "Which payment methods do you accept?"]
    for question in questions:
        fake.push_message(CHAT, question)
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 3, timeout=15)
    texts = fake.texts(CHAT)
    assert "30 days" in texts[0] and "Track" in texts[1] and "Apple Pay" in texts[2]
    calls = fake.called("sendMessage", ok_only=False)
    assert calls[0].status == 429 and calls[1].at - calls[0].at >= 1.0  # retry_after honoured
    # Telegram goes away completely (connection refused) and comes back.
    await fake.stop()
    conversation = await desk.conversation(CHAT)
    assert conversation.id is not None
    await desk.app.operators.reply(conversation.id, "maria", "An operator's answer during the outage")
    await desk.settle(timeout=0.3)  # it tries, and fails: nobody is listening
    await fake.start()
    fake.push_message(CHAT + 1, "How can I track my parcel?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 4 and len(fake.sent(CHAT + 1)) == 1, timeout=10)
    assert fake.texts(CHAT)[3] == "An operator's answer during the outage"
    assert "Track" in fake.texts(CHAT + 1)[0]
    await desk.settle()
    assert [d.status for d in await desk.deliveries()] == ["sent"] * 5


async def test_a_customer_who_blocked_the_bot_is_marked_and_not_retried(desk: Harness, fake: FakeTelegram) -> None:
    fake.block(CHAT)
    update = fake.push_message(CHAT, "How do I return an item?")
    await desk.processed(update)
    await fake.wait_for(lambda: len(fake.called("sendMessage", ok_only=False)) == 1)
    await desk.settle()
    (delivery,) = await desk.deliveries()
    assert delivery.status == "dead" and "blocked" in delivery.last_error
    async with desk.app.sessions() as session:
        from bot.storage.models import Customer

        customer = await session.get(Customer, (await desk.conversation(CHAT)).customer_id)
    assert customer is not None and customer.blocked
    assert len(fake.called("sendMessage", ok_only=False)) == 1


async def test_a_10000_character_message_in_and_out(desk: Harness, fake: FakeTelegram) -> None:
    question = ("Where is my order? " + "I have been waiting for a very long time. " * 40 + "\n\n") * 6
    question = question[:10_000]
    fake.push_message(CHAT, question)
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    (stored,) = await desk.messages(CHAT)
    assert len(stored.text) >= 9_900
    paragraphs = [f"**Part {n}.** " + ("All of this is true & <important>. " * 30).strip() for n in range(12)]
    long_answer = "\n\n".join(paragraphs)
    assert len(long_answer) > 10_000
    conversation = await desk.conversation(CHAT)
    assert conversation.id is not None
    await desk.app.operators.reply(conversation.id, "maria", long_answer)
    await fake.wait_for(lambda: len(fake.sent(CHAT)) >= 4)
    await desk.settle()
    parts = fake.texts(CHAT)[1:]
    assert len(parts) == 4 and all(len(p) <= 4096 for p in parts)  # 3 paragraphs of ~1,060 each fit in one
    seen = "\n\n".join(parts)
    assert seen == long_answer.replace("**", "")  # every paragraph arrived whole, bold rendered as bold
    assert all(p.startswith("Part") for p in parts)


async def test_invalid_text_and_control_characters_do_not_break_anything(desk: Harness, fake: FakeTelegram) -> None:
    fake.push_message(CHAT, "Where is\x00 my \x07order?\ud800\x1b", first_name="A\x00nn\udfff")
    fake.push_message(CHAT + 1, "\x00\x01\x02")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    (stored,) = await desk.messages(CHAT)
    assert stored.text == "Where is my order?"
    assert "Track" in fake.texts(CHAT)[0]
    await desk.settle()
    assert fake.sent(CHAT + 1) == []  # nothing left to answer, and no error either


async def test_an_update_this_aiogram_cannot_read_is_skipped_and_polling_goes_on(
    desk: Harness, fake: FakeTelegram
) -> None:
    fake.push_update({"message": {"message_id": "not a number", "chat": "nowhere"}})
    fake.push_message(CHAT, "Where is my order?")
    await fake.wait_for(lambda: len(fake.sent(CHAT)) == 1)
    assert "Track" in fake.texts(CHAT)[0]


async def test_triage_through_telegram_on_the_shipped_help_centre(
    tmp_path: Path, fake: FakeTelegram, shipped_kb_store: Path
) -> None:
    """Small talk is answered, an off-topic question and a risk go to a person, each in the customer's language;
    an order number does not blur a question."""
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    settings = on_shipped_kb(telegram_settings(tmp_path, fake), shipped_kb_store)
    texts = load_texts(REPO / "prompts" / "texts.yaml")
    async with Harness(settings, fake) as desk:
        fake.push_message(CHAT, "Привет!")
        fake.push_message(CHAT + 1, "What will the weather be like in Moscow tomorrow?")
        fake.push_message(CHAT + 2, "Мой аккаунт взломали и поменяли почту")
        fake.push_message(CHAT + 3, "Передумала насчёт куртки, можно её вернуть? Заказ NW-4829173")
        await fake.wait_for(lambda: all(fake.sent(CHAT + n) for n in range(4)), timeout=60)
        await fake.wait_for(lambda: len(desk.queue.kinds()) == 2)
    assert fake.texts(CHAT) == [texts.render("smalltalk_greeting", "ru")]
    assert fake.texts(CHAT + 1)[0].startswith(texts.render("handoff", "en")[:20])
    assert fake.texts(CHAT + 2)[0].startswith(texts.render("handoff", "ru")[:20])
    answer = fake.texts(CHAT + 3)[0]  # the returns article in Russian: the order number changes nothing
    assert "вернуть" in answer and not answer.startswith(texts.render("handoff", "ru")[:20])
    reasons = {tuple(d.payload["reasons"]) for d in desk.queue.sent}
    assert any("out_of_scope" in r for r in reasons) and any("escalation" in r for r in reasons)
    assert {d.payload.get("escalation") for d in desk.queue.sent} >= {"Account takeover or fraud"}
