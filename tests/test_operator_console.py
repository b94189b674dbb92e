"""A second operator console plugs into the core through the `OperatorConsole` port alone.

`GroupConsole` is what a Telegram operator group would be: a thread per conversation, keyed its own way. It is
attached to the real core and database; customers write through the real Telegram connector against the fake
Bot API, and what they receive is read there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.domain.deliveries import CustomerMessage, DraftDone, HandoffCard
from bot.domain.types import State
from bot.operators.conversations import CardState
from bot.operators.replies import DraftPost
from bot.ports import OperatorConsole
from tests.fakes.telegram_api import FakeTelegram
from tests.test_telegram_harness import Harness, telegram_settings

CHAT = 2002


@dataclass
class Thread:
    card: HandoffCard
    state: CardState
    lines: list[str] = field(default_factory=list)


class GroupConsole:
    """An operator group: each handed-off conversation is a topic "topic:N" with its card and its messages."""

    def __init__(self) -> None:
        self.threads: dict[str, Thread] = {}
        self.settled: list[DraftDone] = []
        self.notices: list[str] = []

    async def open_thread(self, card: HandoffCard, state: CardState) -> str:
        thread = f"topic:{len(self.threads) + 1}"
        self.threads[thread] = Thread(card, state)
        return thread

    async def reopen_thread(self, thread: str, card: HandoffCard, state: CardState) -> None:
        await self.update_card(thread, card, state)
        self.threads[thread].lines.append("needs a person again")

    async def update_card(self, thread: str, card: HandoffCard, state: CardState) -> None:
        self.threads[thread].card, self.threads[thread].state = card, state

    async def post_draft(self, thread: str, card: HandoffCard) -> None:
        self.threads[thread].lines.append(f"draft: {card.draft}")

    async def post_customer_message(self, thread: str | None, message: CustomerMessage) -> str | None:
        assert thread is not None
        self.threads[thread].lines.append(f"customer: {message.text}")
        return None

    async def settle_draft(self, done: DraftDone) -> None:
        self.settled.append(done)

    async def post_notice(self, text: str) -> str | None:
        self.notices.append(text)
        return None

    async def replay(self, action: dict[str, Any]) -> None:
        raise AssertionError("this console never defers an action")


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def desk(tmp_path: Path, fake: FakeTelegram) -> AsyncIterator[Harness]:
    settings = telegram_settings(tmp_path, fake)
    settings.automation.mode = "suggest"  # every answer goes through an operator: there is always a draft
    async with Harness(settings, fake) as harness:
        yield harness


@pytest.fixture
def console(desk: Harness) -> GroupConsole:
    group = GroupConsole()
    checked: OperatorConsole = group  # the port is all it implements
    desk.app.queue.attach(checked)
    return group


async def test_a_card_reaches_the_console_and_its_reply_reaches_the_customer(
    desk: Harness, fake: FakeTelegram, console: GroupConsole
) -> None:
    fake.push_message(CHAT, "How do I return an item?", first_name="Anna")
    await fake.wait_for(lambda: any(t.lines for t in console.threads.values()))
    ((thread, topic),) = console.threads.items()
    assert topic.card.customer == "Anna" and topic.state.state == State.WAITING_OPERATOR
    assert topic.lines[0].startswith("draft: ") and "30 days" in topic.lines[0]
    assert "a person will reply here" in fake.texts(CHAT)[-1]

    conversation = await desk.app.conversations.by_thread(thread)  # the console knows its thread, nothing else
    assert conversation is not None
    outcome = await desk.app.replies.reply(conversation.id, "Olga", "Hello Anna, Olga here.", f"{thread}:msg:1")
    assert outcome.result.ok
    await fake.wait_for(lambda: fake.texts(CHAT)[-1] == "Hello Anna, Olga here.")
    await fake.wait_for(lambda: topic.state.first_response_s is not None)
    assert (topic.state.state, topic.state.operator) == (State.OPERATOR, "Olga")

    answered = len(fake.texts(CHAT))
    fake.push_message(CHAT, "Thanks, and where is my order?", first_name="Anna")
    await fake.wait_for(lambda: topic.lines[-1] == "customer: Thanks, and where is my order?")
    await desk.settle()
    assert len(fake.texts(CHAT)) == answered  # Olga owns it: the bot stays silent


async def test_the_console_sends_the_draft_once_and_hears_it_was_sent(
    desk: Harness, fake: FakeTelegram, console: GroupConsole
) -> None:
    fake.push_message(CHAT, "How do I return an item?")
    await fake.wait_for(lambda: any(t.lines for t in console.threads.values()))
    ((thread, topic),) = console.threads.items()
    assert topic.card.handoff_id is not None
    post = DraftPost(thread, "draft-1")
    first = await desk.app.replies.send_draft(topic.card.handoff_id, "Olga", None, post)
    again = await desk.app.replies.send_draft(topic.card.handoff_id, "Olga", None, post)
    assert first.result.ok and not again.result.ok
    assert again.tell == "Nothing done: the draft was already sent."
    await fake.wait_for(lambda: "30 days" in fake.texts(CHAT)[-1])
    await fake.wait_for(lambda: len(console.settled) == 1)
    (done,) = console.settled
    assert (done.status, done.operator, done.edited) == ("sent", "Olga", False)
    assert sum("30 days" in t for t in fake.texts(CHAT)) == 1


async def test_a_notice_for_operators_reaches_the_console(
    desk: Harness, fake: FakeTelegram, console: GroupConsole
) -> None:
    await desk.app.queue.notice("A prompt edit was refused; the last good version stays in use.")
    await fake.wait_for(lambda: bool(console.notices))
    assert console.notices == ["A prompt edit was refused; the last good version stays in use."]
