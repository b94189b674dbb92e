"""The Slack operator queue: a real AsyncApp against a fake Slack Web API, with signed requests.

Each test asserts what an operator sees in Slack (the fake's messages, ephemerals, modals) and what
the customer receives (the customer channel's recorder).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.app import App, build_app
from bot.domain.types import Attachment, Author, Inbound
from bot.knowledge.embeddings import cpu_has_avx2
from bot.logs import setup_logging
from bot.storage.models import Conversation, Delivery, Message
from connectors.slack import cards
from tests.conftest import REPO, Recorder, make_settings
from tests.fakes.slack_api import QUEUE, FakeSlack, Posted, SlackSide, SlackUser

MARIA, IVAN, EVE = "U0MARIA", "U0IVAN", "U0EVE"
_ids = itertools.count(1)


@dataclass
class World:
    app: App
    side: SlackSide
    slack: FakeSlack
    customer: Recorder

    @property
    def user(self) -> SlackUser:
        assert self.side.user is not None
        return self.side.user

    async def customer_says(self, text: str, **extra: object) -> None:
        inbound = Inbound("test", "42", f"m{next(_ids)}", text, name="Anna", **extra)  # type: ignore[arg-type]
        await self.app.desk.receive(inbound)
        await self.side.settle()

    def root(self) -> Posted:
        roots = self.slack.roots()
        assert len(roots) == 1, [r.text for r in roots]
        return roots[0]

    def draft(self) -> Posted:
        return next(m for m in self.slack.thread(self.root()) if cards.SEND in m.buttons() or cards.EDIT in m.buttons())

    async def press(self, message: Posted, action_id: str, user: str = MARIA) -> None:
        status, _ = await self.user.press(message, action_id, user)
        assert status == 200
        await self.side.settle()

    async def reply(self, text: str, user: str = MARIA, event_id: str | None = None) -> Posted:
        posted = await self.user.reply(self.root(), user, text, event_id)
        await self.side.settle()
        return posted

    def told(self, user: str) -> list[str]:
        return [e["text"] for e in self.slack.ephemerals if e["user"] == user]


async def make_world(
    tmp: Path, slack: FakeSlack, embeddings: str = "hashing", **slack_settings: object
) -> tuple[World, SlackSide]:
    settings = make_settings(tmp)
    settings.embeddings.provider = embeddings
    settings.automation.mode = "suggest"  # every answer goes through an operator: there is always a draft
    settings.slack.bot_token = slack.token
    for key, value in slack_settings.items():
        setattr(settings.slack, key, value)
    app = await build_app(settings)
    customer = Recorder()
    app.outbox.register("test", customer)
    side = await SlackSide(app, slack).start()
    return World(app, side, slack, customer), side


@pytest.fixture
async def world(tmp_path: Path, slack: FakeSlack) -> AsyncIterator[World]:
    built, side = await make_world(tmp_path, slack)
    yield built
    await side.stop()
    await built.app.close()


async def handed_off(world: World) -> Posted:
    await world.customer_says("How do I return an item?")
    return world.root()


# -- the card and the draft --------------------------------------------------------------------------


async def test_a_handoff_opens_one_thread_with_the_card_and_the_draft(world: World) -> None:
    root = await handed_off(world)
    card = root.all_text()
    for expected in ("Anna", "test · en", "returns-policy", "neutral", "normal", "suggest mode", "Summary"):
        assert expected in card
    assert "How do I return an item?" in card  # the last messages
    assert "Waiting for an operator" in card
    assert set(root.buttons()) == {cards.CLAIM, cards.RESOLVE, cards.RETURN, cards.ALWAYS_A_PERSON}
    draft = world.draft()
    assert draft.thread_ts == root.ts
    assert "30 days" in draft.all_text() and "Sources: returns-policy" in draft.all_text()
    assert set(draft.buttons()) == {cards.SEND, cards.EDIT, cards.DISCARD}
    async with world.app.sessions() as session:
        conversation = (await session.execute(select(Conversation))).scalars().one()
    assert conversation.queue_thread == f"{QUEUE}:{root.ts}"
    # the customer was told a person will answer, and nothing else
    assert world.customer.texts() == [world.app.texts.render("handoff", "en")]


async def test_send_delivers_the_draft_once_however_often_it_is_pressed(world: World) -> None:
    await handed_off(world)
    draft = world.draft()
    stale = Posted(draft.channel, draft.ts, draft.text, list(draft.blocks), draft.thread_ts)
    await asyncio.gather(world.user.press(draft, cards.SEND, MARIA), world.user.press(draft, cards.SEND, MARIA))
    await world.side.settle()
    await world.press(stale, cards.SEND)  # a double click that arrives after the card changed
    sent = [t for t in world.customer.texts() if "30 days" in t]
    assert len(sent) == 1
    assert world.customer.sent[-1].payload["operator"] == "Maria"
    assert "Sent to the customer by Maria" in draft.all_text() and draft.buttons() == {}
    card = world.root().all_text()
    assert "Claimed by Maria" in card and "first response in" in card
    assert cards.CLAIM not in world.root().buttons()


async def test_edit_opens_the_draft_in_a_modal_and_sends_the_edited_text(world: World) -> None:
    await handed_off(world)
    draft = world.draft()
    await world.press(draft, cards.EDIT)
    view = world.slack.views[-1]
    element = view["blocks"][0]["element"]
    assert "30 days" in element["initial_value"]
    status, body = await world.user.submit(view, MARIA, {cards.EDIT_BLOCK: {cards.EDIT_INPUT: "Hi Anna! 30 days."}})
    assert (status, body) == (200, "")
    await world.side.settle()
    assert world.customer.texts()[-1] == "Hi Anna! 30 days."
    assert "(edited)" in draft.all_text() and "Hi Anna! 30 days." in draft.all_text()
    # the draft is used up: the same modal submitted again sends nothing
    await world.user.submit(view, MARIA, {cards.EDIT_BLOCK: {cards.EDIT_INPUT: "again"}})
    await world.side.settle()
    assert "again" not in world.customer.texts()
    assert any("already sent" in t for t in world.told(MARIA))


async def test_a_draft_sent_unchanged_from_the_modal_is_not_marked_edited(world: World) -> None:
    await handed_off(world)
    draft = world.draft()
    await world.press(draft, cards.EDIT)
    view = world.slack.views[-1]
    unchanged = view["blocks"][0]["element"]["initial_value"]
    await world.user.submit(view, MARIA, {cards.EDIT_BLOCK: {cards.EDIT_INPUT: unchanged + "\n"}})
    await world.side.settle()
    assert world.customer.texts()[-1] == unchanged
    assert "Sent to the customer by Maria" in draft.all_text() and "(edited)" not in draft.all_text()


async def test_an_empty_edit_is_refused_inside_the_modal(world: World) -> None:
    await handed_off(world)
    await world.press(world.draft(), cards.EDIT)
    status, body = await world.user.submit(world.slack.views[-1], MARIA, {cards.EDIT_BLOCK: {cards.EDIT_INPUT: " "}})
    assert status == 200 and '"response_action": "errors"' in body.replace('":"', '": "')
    await world.side.settle()
    assert len(world.customer.sent) == 1  # only the handoff notice


async def test_discard_sends_nothing_and_the_draft_cannot_be_sent_after(world: World) -> None:
    await handed_off(world)
    draft = world.draft()
    stale = Posted(draft.channel, draft.ts, draft.text, list(draft.blocks), draft.thread_ts)  # another screen
    await world.press(draft, cards.DISCARD)
    assert "Draft discarded by Maria" in draft.all_text() and draft.buttons() == {}
    await world.press(stale, cards.SEND)
    await world.press(stale, cards.DISCARD)
    assert not any("30 days" in t for t in world.customer.texts())
    assert any("already discarded" in t for t in world.told(MARIA))
    assert any("nothing to discard" in t for t in world.told(MARIA))


# -- the thread -------------------------------------------------------------------------------------


async def test_a_thread_reply_reaches_the_customer_and_the_bot_stays_silent(world: World) -> None:
    await handed_off(world)
    await world.reply("Hello Anna, I'm <https://shop.example/returns|on it> &amp; will check")
    assert world.customer.texts()[-1] == "Hello Anna, I'm on it (https://shop.example/returns) & will check"
    assert "Claimed by Maria" in world.root().all_text()
    before = len(world.customer.sent)
    await world.customer_says("Where is my order?")  # the bot would know this one, but Maria owns it
    assert len(world.customer.sent) == before
    assert "Anna:* Where is my order?" in world.slack.thread(world.root())[-1].all_text()


async def test_a_customer_attachment_appears_in_the_thread_as_a_link(world: World) -> None:
    await handed_off(world)
    await world.reply("Send me a photo please")
    photo = Attachment("photo", file_id="F1", name="broken.jpg", url="https://files.example/broken.jpg")
    await world.customer_says("", kind="photo", attachments=(photo,))
    last = world.slack.thread(world.root())[-1].all_text()
    assert "<https://files.example/broken.jpg|broken.jpg>" in last and "sent a photo" in last


async def test_an_internal_note_stays_internal(world: World) -> None:
    await handed_off(world)
    before = len(world.customer.sent)
    await world.reply("// she already called twice, be gentle")
    assert len(world.customer.sent) == before
    async with world.app.sessions() as session:
        notes = (await session.execute(select(Message).where(Message.author == Author.NOTE))).scalars().all()
    assert [(n.text, n.operator) for n in notes] == [("she already called twice, be gentle", "Maria")]


async def test_messages_from_bots_and_outside_threads_are_ignored(world: World) -> None:
    root = await handed_off(world)
    before = len(world.customer.sent)
    bot_event = {"type": "message", "subtype": "bot_message", "bot_id": "B0OTHER", "channel": QUEUE,
                 "text": "beep", "ts": "1.000001", "thread_ts": root.ts}  # fmt: skip
    await world.user.event(bot_event)
    top = world.slack.human_says(QUEUE, "coffee anyone?", MARIA)
    await world.user.event({"type": "message", "channel": QUEUE, "user": MARIA, "text": top.text, "ts": top.ts})
    await world.side.settle()
    assert len(world.customer.sent) == before and world.slack.ephemerals == []


async def test_an_edit_within_the_window_goes_out_as_a_correction(world: World) -> None:
    await handed_off(world)
    reply = await world.reply("Your refund is 10 EUR")
    await world.user.edit(reply, "Your refund is 12 EUR", after_s=20)
    await world.side.settle()
    assert world.customer.texts()[-1] == "Correction to my previous message: Your refund is 12 EUR"
    await world.user.edit(reply, "Your refund is 13 EUR", after_s=3600)
    await world.side.settle()
    assert "13 EUR" not in " ".join(world.customer.texts())
    assert any("edit was not sent" in t for t in world.told(MARIA))


async def test_an_edit_the_conversation_no_longer_takes_is_refused_with_the_reason(world: World) -> None:
    root = await handed_off(world)
    reply = await world.reply("Your refund is 10 EUR")
    await world.press(root, cards.RETURN)
    await world.reply("Ivan here, I will take it from now", user=IVAN)
    await world.user.edit(reply, "Your refund is 12 EUR", after_s=20)
    await world.side.settle()
    assert "12 EUR" not in " ".join(world.customer.texts())
    assert "That edit was not sent: Ivan Petrov owns this conversation." in world.told(MARIA)


async def test_deleting_a_reply_tells_the_operator_it_cannot_be_unsent(world: World) -> None:
    await handed_off(world)
    reply = await world.reply("oops, wrong chat")
    await world.user.delete(reply)
    await world.side.settle()
    assert world.customer.texts()[-1] == "oops, wrong chat"
    assert any("does not unsend" in t for t in world.told(MARIA))


# -- root buttons -----------------------------------------------------------------------------------


async def test_claim_then_resolve_asks_the_customer_for_csat_and_closes_the_card(world: World) -> None:
    root = await handed_off(world)
    stale = Posted(root.channel, root.ts, root.text, list(root.blocks))
    await world.press(root, cards.CLAIM)
    assert "Claimed by Maria" in root.all_text() and set(root.buttons()) == {
        cards.RESOLVE,
        cards.RETURN,
        cards.ALWAYS_A_PERSON,
    }
    await world.press(stale, cards.CLAIM, IVAN)  # a stale card: Ivan tries to take it too
    assert any("already claimed by Maria" in t for t in world.told(IVAN))
    await world.reply("Done, refund sent")
    await world.press(root, cards.RESOLVE)
    last = world.customer.sent[-1]
    assert last.payload["text"] == world.app.texts.render("resolved", "en") and last.payload["buttons"] == "csat"
    assert "Resolved by Maria" in root.all_text() and "first response in" in root.all_text()
    assert set(root.buttons()) == {cards.TEACH}  # Maria answered: her reply can be taught to the bot


async def test_a_draft_left_on_a_resolved_conversation_is_never_sent_later(world: World) -> None:
    root = await handed_off(world)
    stale = world.draft()
    await world.press(root, cards.RESOLVE)  # resolved without sending or discarding the draft
    await world.customer_says("Where is my order?")  # reopened: a new question, a new draft
    await world.press(stale, cards.SEND)
    await world.press(stale, cards.EDIT)
    assert not any("30 days" in t for t in world.customer.texts())
    told = [t for t in world.told(MARIA) if "the draft expired when the conversation was resolved" in t]
    assert len(told) == 2 and all(t.startswith("Nothing done") for t in told)
    assert world.slack.views == []
    async with world.app.sessions() as session:
        conversation = (await session.execute(select(Conversation))).scalars().one()
    assert conversation.state == "waiting_operator" and conversation.operator is None


async def test_teach_the_bot_makes_the_operators_reply_an_answer_the_bot_may_send(world: World) -> None:
    await world.customer_says("I want a person: do you offer gift wrapping for birthday orders?")
    root = world.root()
    await world.reply("Yes: gift wrapping costs 150 RUB, choose it at checkout.")
    assert cards.TEACH not in root.buttons()  # only once the conversation is resolved
    await world.press(root, cards.RESOLVE)
    await world.press(root, cards.TEACH, EVE)  # members only
    hits = await world.app.index.search("Do you offer gift wrapping for birthday orders?", 3)
    assert hits[0].kind == "case" and not hits[0].reusable
    assert any("Only members of the support queue" in t for t in world.told(EVE))

    await world.press(root, cards.TEACH)
    assert any(t.startswith("🎓 Taught") for t in world.told(MARIA))
    taught = next(t for t in world.told(MARIA) if t.startswith("🎓 Taught"))
    assert "gift wrapping costs 150 RUB" in taught and "for birthday orders?" in taught  # which reply, which question
    hits = await world.app.index.search("Do you offer gift wrapping for birthday orders?", 3)
    assert hits[0].kind == "case" and hits[0].reusable
    await world.press(root, cards.TEACH)  # a second press changes nothing and says so
    assert any("already knows this answer" in t for t in world.told(MARIA))


async def test_always_a_person_sends_questions_like_the_marked_one_to_operators(
    tmp_path: Path, slack: FakeSlack
) -> None:
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    world, side = await make_world(tmp_path, slack, embeddings="local")
    try:
        similar = "Can I buy a gift card in your shop?"
        before = await world.app.desk.preview(similar)
        assert before.analysis is not None and before.analysis.escalation is None
        await world.customer_says("Do you sell gift cards?")
        root = world.root()
        await world.press(root, cards.ALWAYS_A_PERSON, EVE)  # members only
        assert any("Only members of the support queue" in t for t in world.told(EVE))
        await world.press(root, cards.ALWAYS_A_PERSON)
        assert any(t.startswith("🙋 Always a person: messages like") for t in world.told(MARIA)), world.told(MARIA)
        await world.press(root, cards.ALWAYS_A_PERSON)  # a second press changes nothing and says so
        assert any("already go to a person" in t for t in world.told(MARIA))
        after = await world.app.desk.preview(similar)
        assert after.analysis is not None and after.analysis.escalation is not None
        assert after.analysis.escalation.label == "Marked by an operator: always a person"
    finally:
        await side.stop()
        await world.app.close()


async def test_without_a_notion_of_meaning_nothing_can_be_marked(world: World) -> None:
    root = await handed_off(world)
    await world.press(root, cards.ALWAYS_A_PERSON)
    assert any("Nothing done: this desk matches no messages by meaning" in t for t in world.told(MARIA))


async def test_return_to_bot_gives_the_conversation_back(world: World) -> None:
    root = await handed_off(world)
    await world.press(root, cards.RETURN)
    assert world.customer.texts()[-1] == world.app.texts.render("returned_to_bot", "en")
    assert "Back with the bot" in root.all_text() and root.buttons() == {}
    async with world.app.sessions() as session:
        conversation = (await session.execute(select(Conversation))).scalars().one()
    assert conversation.state == "bot"


async def test_a_conversation_that_comes_back_reuses_its_thread(world: World) -> None:
    root = await handed_off(world)
    await world.press(root, cards.RESOLVE)
    await world.customer_says("I want to talk to a person again")
    assert world.slack.roots() == [root]  # still one root message per conversation
    assert "Waiting for an operator" in root.all_text() and cards.CLAIM in root.buttons()
    texts = [m.all_text() for m in world.slack.thread(root)]
    assert any("needs a person again" in t for t in texts)


# -- who may act ------------------------------------------------------------------------------------


async def test_someone_outside_the_queue_channel_cannot_act(world: World) -> None:
    root = await handed_off(world)
    before = list(world.customer.texts())
    await world.reply("I'm not an operator but hi", user=EVE)
    for action in (cards.SEND, cards.DISCARD, cards.EDIT):
        await world.press(world.draft(), action, EVE)
    for action in (cards.CLAIM, cards.RESOLVE, cards.RETURN):
        await world.press(root, action, EVE)
    assert world.customer.texts() == before
    assert world.slack.views == []
    assert len(world.told(EVE)) == 7 and all("Only members of the support queue" in t for t in world.told(EVE))
    assert "Waiting for an operator" in root.all_text()


async def test_a_button_is_authorised_against_its_conversations_queue_not_the_channel_the_request_names(
    world: World,
) -> None:
    root = await handed_off(world)
    before = list(world.customer.texts())
    world.slack.channels["C0ELSE"] = {"name": "random", "members": [EVE, "U0BOT"]}
    draft = world.draft()
    for message, action in ((draft, cards.SEND), (draft, cards.DISCARD), (root, cards.CLAIM)):
        elsewhere = Posted("C0ELSE", message.ts, message.text, list(message.blocks), message.thread_ts)
        await world.press(elsewhere, action, EVE)  # EVE is a member of C0ELSE, not of the queue
    assert world.customer.texts() == before
    assert len(world.told(EVE)) == 3 and all("Only members of the support queue" in t for t in world.told(EVE))
    assert "Waiting for an operator" in root.all_text() and cards.SEND in world.draft().buttons()


async def test_at_verbose_no_library_logs_customer_texts_names_or_tokens(
    tmp_path: Path, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    setup_logging(logging.DEBUG)  # what `relaydesk -v` does
    try:
        world, side = await make_world(tmp_path, slack)
        try:
            await world.customer_says("Where is my parcel Zanzibar-4242? I want a person")
            await world.reply("Your Quixotic parcel leaves today")
        finally:
            await side.stop()
            await world.app.close()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    logged = capsys.readouterr().err
    assert '"level": "debug"' in logged  # the desk did log in detail
    for secret in ("Zanzibar", "Quixotic", "Anna", slack.token):
        assert secret not in logged


async def test_members_of_the_operator_group_may_act(tmp_path: Path, slack: FakeSlack) -> None:
    slack.usergroups["S0SUPPORT"] = [EVE]
    built, side = await make_world(tmp_path, slack, operator_group="S0SUPPORT")
    try:
        await handed_off(built)
        await built.reply("Hi from Eve", user=EVE)
        assert built.customer.texts()[-1] == "Hi from Eve"
    finally:
        await side.stop()
        await built.app.close()


async def test_show_operator_name_tells_the_customer_who_joined(tmp_path: Path, slack: FakeSlack) -> None:
    built, side = await make_world(tmp_path, slack, show_operator_name=True)
    try:
        root = await handed_off(built)
        await built.press(root, cards.CLAIM)
        await built.reply("How can I help?")
        texts = built.customer.texts()
        assert texts[-2:] == [built.app.texts.render("operator_joined", "en", operator="Maria"), "How can I help?"]
    finally:
        await side.stop()
        await built.app.close()


async def test_topics_can_be_routed_to_their_own_channel(tmp_path: Path, slack: FakeSlack) -> None:
    slack.channels["C0RETURNS"] = {"name": "returns", "members": [IVAN, "U0BOT"]}
    built, side = await make_world(tmp_path, slack, routes={"returns-policy": "C0RETURNS"})
    try:
        await built.customer_says("How do I return an item?")
        assert built.slack.roots() == [] and len(built.slack.roots("C0RETURNS")) == 1
        root = built.slack.roots("C0RETURNS")[0]
        await built.user.reply(root, MARIA, "Maria is not in #returns")
        await built.user.reply(root, IVAN, "Ivan is")
        await built.side.settle()
        assert built.customer.texts()[-1] == "Ivan is"
        assert "Maria is not in #returns" not in built.customer.texts()
    finally:
        await side.stop()
        await built.app.close()


# -- reliability -------------------------------------------------------------------------------------


async def test_a_replayed_event_is_handled_once(world: World) -> None:
    root = await handed_off(world)
    reply = await world.reply("Only once please", event_id="Ev0REPLAY")
    event = {"type": "message", "channel": QUEUE, "user": MARIA, "text": reply.text, "ts": reply.ts,
             "thread_ts": root.ts, "channel_type": "channel"}  # fmt: skip
    await world.user.event(event, "Ev0REPLAY")  # Slack's retry: same event id
    await world.user.event(event, "Ev0OTHER")  # the same message under another id: the message ts decides
    await world.side.settle()
    assert world.customer.texts().count("Only once please") == 1
    assert [t.split("\n")[0] for t in world.told(MARIA)] == ["Reply quality (visible only to you):"]  # one score


async def test_an_operators_reply_during_a_slack_outage_waits_and_is_sent_or_refused_after_it(world: World) -> None:
    root = await handed_off(world)
    before = list(world.customer.texts())
    chatter = {"type": "message", "channel": QUEUE, "user": MARIA, "text": "hi all", "ts": f"{root.ts}1"}
    await world.user.event(chatter, "Ev0CHATTER")  # Bolt has met Slack once (its auth.test is cached)
    world.slack.down = 503  # and nobody's membership is cached: Slack cannot say who may answer
    await world.reply("Your parcel ships today")
    await world.reply("I'm not an operator but hi", user=EVE)
    await world.press(world.draft(), cards.DISCARD, EVE)
    assert world.customer.texts() == before
    async with world.app.sessions() as session:
        waiting = (await session.execute(select(Delivery).where(Delivery.kind == "operator_event"))).scalars().all()
    assert [d.status for d in waiting] == ["pending"] * 3
    world.slack.down = 0
    for _ in range(5):
        await asyncio.sleep(0.2)  # the outbox's backoff (10 ms, doubling) in tests
        await world.side.settle()
    assert world.customer.texts()[len(before) :] == ["Your parcel ships today"]
    assert len(world.told(EVE)) == 2 and all("Only members of the support queue" in t for t in world.told(EVE))
    assert cards.SEND in world.draft().buttons()  # EVE's Discard was refused, not done


async def test_acks_come_before_slow_work(world: World) -> None:
    await handed_off(world)
    world.slack.delays["conversations.members"] = 1.0  # Slack is slow today
    status, _ = await world.user.press(world.draft(), cards.SEND, MARIA)
    assert status == 200  # answered while the slow work is still waiting on Slack
    assert not any("30 days" in t for t in world.customer.texts())
    await world.side.settle()
    assert any("30 days" in t for t in world.customer.texts())


async def test_an_outage_delays_the_handoff_and_rate_limits_are_respected(world: World) -> None:
    world.slack.down = 503
    await world.customer_says("How do I return an item?")
    assert world.slack.roots() == []
    async with world.app.sessions() as session:
        pending = (await session.execute(select(Delivery).where(Delivery.channel == "slack"))).scalars().one()
    assert pending.status == "pending" and "503" in pending.last_error
    world.slack.down = 0
    world.slack.fail("chat.postMessage", status=429, retry_after=0)
    await asyncio.sleep(0.05)
    await world.side.settle()
    await asyncio.sleep(0.05)
    await world.side.settle()
    assert len(world.slack.roots()) == 1 and world.draft()
    async with world.app.sessions() as session:
        delivery = await session.get(Delivery, pending.id)
    assert delivery is not None and delivery.status == "sent" and delivery.attempts >= 3


async def test_a_failed_draft_post_never_duplicates_the_card(world: World) -> None:
    world.slack.fail("chat.postMessage", status=500, times=1)  # first call fails: nothing posted
    await world.customer_says("How do I return an item?")
    await asyncio.sleep(0.05)
    original = world.slack._chat_postMessage
    calls = {"n": 0}

    def flaky(params: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 2:  # the root goes through, the draft hits a broken Slack
            return {"error": "internal_error"}
        return original(params)

    setattr(world.slack, "_chat_postMessage", flaky)  # noqa: B010 (replace one API method for this test)
    for _ in range(3):
        await world.side.settle()
        await asyncio.sleep(0.05)
    assert len(world.slack.roots()) == 1
    assert len([m for m in world.slack.thread(world.root()) if m.buttons()]) == 1


async def test_a_restart_keeps_the_thread_mapping(tmp_path: Path, slack: FakeSlack) -> None:
    first, side = await make_world(tmp_path, slack)
    await handed_off(first)
    root = first.root()
    await side.stop()
    await first.app.close()
    second, side = await make_world(tmp_path, slack)  # same database, a new process
    try:
        await second.user.reply(root, MARIA, "Back after a restart")
        await second.side.settle()
        assert second.customer.texts()[-1] == "Back after a restart"
        assert "Claimed by Maria" in root.all_text()
    finally:
        await side.stop()
        await second.app.close()


# -- the HTTP endpoint -------------------------------------------------------------------------------


async def test_requests_with_a_bad_or_stale_signature_get_401(world: World) -> None:
    body = '{"type": "url_verification", "challenge": "abc"}'
    assert (await world.user.post(body, "application/json"))[0] == 200
    assert (await world.user.post(body, "application/json", secret="wrong"))[0] == 401
    stale = int(time.time()) - 600
    assert (await world.user.post(body, "application/json", timestamp=stale))[0] == 401
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(world.user.url, data=body) as resp:
            assert resp.status == 401
        headers = {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"}
        async with session.post(world.user.url, data=body, headers=headers) as resp:
            assert resp.status == 401


async def test_url_verification_answers_the_challenge(world: World) -> None:
    status, body = await world.user.post('{"type": "url_verification", "challenge": "abc"}', "application/json")
    assert status == 200 and "abc" in body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        ("payload=%7Bnope", "application/x-www-form-urlencoded"),
        ("payload=%5B%5D", "application/x-www-form-urlencoded"),
        ("hello", "text/plain"),
        ("", "application/json"),
    ],
)
async def test_malformed_signed_bodies_get_400(world: World, body: str, content_type: str) -> None:
    assert (await world.user.post(body, content_type))[0] == 400


async def test_the_slash_command_shows_the_queue(world: World) -> None:
    await handed_off(world)
    form = "command=%2Frelaydesk&text=&user_id=U0MARIA&channel_id=C0QUEUE&team_id=T0TEAM&trigger_id=1.2"
    status, body = await world.user.post(form, "application/x-www-form-urlencoded")
    assert status == 200 and "1 waiting for a person" in body


# -- Socket Mode ------------------------------------------------------------------------------------


async def test_socket_mode_receives_events_and_button_presses_over_the_websocket(
    tmp_path: Path, slack: FakeSlack
) -> None:
    built, side = await make_world(tmp_path, slack, app_token=slack.app_token, signing_secret="")
    try:
        assert "/slack/events" not in {r.resource.canonical for r in side.server.router.routes() if r.resource}
        root = await handed_off(built)
        posted = slack.human_says(QUEUE, "Hello over the socket", MARIA, thread_ts=root.ts)
        event = {"type": "message", "channel": QUEUE, "user": MARIA, "text": posted.text, "ts": posted.ts,
                 "thread_ts": root.ts, "channel_type": "channel"}  # fmt: skip
        envelope = {"type": "event_callback", "team_id": "T0TEAM", "api_app_id": "A0APP", "event": event,
                    "event_id": "Ev0SOCKET", "event_time": int(time.time())}  # fmt: skip
        first = await slack.push_envelope("events_api", envelope)
        for _ in range(200):
            if "Hello over the socket" in built.customer.texts():
                break
            await built.side.settle()
            await asyncio.sleep(0.01)
        assert built.customer.texts()[-1] == "Hello over the socket"
        assert any(ack.get("envelope_id") == first for ack in slack.socket_acks)
    finally:
        await side.stop()
        await built.app.close()


async def test_a_missing_queue_channel_or_signing_secret_is_a_clear_config_error(tmp_path: Path) -> None:
    from aiohttp import web

    from bot.config import ConfigError
    from connectors.slack import SlackConnector

    settings = make_settings(tmp_path)
    settings.slack.bot_token = "xoxb-1"
    app = await build_app(settings)
    try:
        with pytest.raises(ConfigError, match=r"slack\.queue_channel"):
            await SlackConnector(app).start(web.Application())
        settings.slack.queue_channel = QUEUE
        with pytest.raises(ConfigError, match=r"slack\.signing_secret"):
            await SlackConnector(app).start(web.Application())
    finally:
        await app.close()


async def test_a_broken_prompt_edit_is_shown_to_operators(tmp_path: Path, slack: FakeSlack) -> None:
    prompts = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", prompts)
    settings = make_settings(tmp_path)
    settings.prompts.path = prompts
    settings.slack.bot_token = slack.token
    app = await build_app(settings)
    side = await SlackSide(app, slack).start()
    try:
        texts = prompts / "texts.yaml"
        texts.write_text(texts.read_text(encoding="utf-8") + "\nbroken: [unclosed\n", encoding="utf-8")
        assert app.prompts is not None
        app.prompts.refresh(force=True)
        await asyncio.sleep(0)  # the hook runs as a task
        await side.settle()
        notices = [m.text for m in slack.roots()]
    finally:
        await side.stop()
        await app.close()
    assert len(notices) == 1
    assert "prompt edit was refused" in notices[0] and "texts.yaml" in notices[0]
    assert app.texts.render("handoff", "en")  # the last good version still answers
