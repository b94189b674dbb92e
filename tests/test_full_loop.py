"""The whole desk as `relaydesk run` starts it: a Telegram customer, the desk, the Slack queue, back.

Both outside worlds are real local HTTP servers (FakeTelegram, FakeSlack); everything above the
socket is the production code: runner.start(), the Telegram connector polling, the Slack connector
serving /slack/events on the shared server, and the outbox loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.runner import Running, start
from connectors.slack import cards
from tests.fakes.slack_api import QUEUE, FakeSlack, Posted, SlackUser
from tests.fakes.telegram_api import FakeTelegram
from tests.test_telegram_harness import free_port, telegram_settings

CHAT, MARIA, SECRET = 5001, "U0MARIA", "full-loop-signing-secret"


@dataclass
class Loop:
    running: Running
    telegram: FakeTelegram
    slack: FakeSlack
    operator: SlackUser

    async def card(self, timeout: float = 5.0) -> Posted:
        await self.telegram.wait_for(lambda: len(self.slack.roots()) == 1 and self._draft() is not None, timeout)
        return self.slack.roots()[0]

    def _draft(self) -> Posted | None:
        roots = self.slack.roots()
        thread = self.slack.thread(roots[0]) if roots else []
        return next((m for m in thread if cards.EDIT in m.buttons()), None)

    def draft(self) -> Posted:
        found = self._draft()
        assert found is not None
        return found


async def start_loop(tmp: Path, telegram: FakeTelegram, slack: FakeSlack, mode: str) -> Loop:
    settings = telegram_settings(tmp, telegram)
    settings.automation.mode = mode  # type: ignore[assignment]
    settings.server.port = free_port()
    settings.slack.bot_token = slack.token
    settings.slack.signing_secret = SECRET
    settings.slack.api_base = slack.base_url
    settings.slack.queue_channel = QUEUE
    running = await start(settings)
    url = f"http://127.0.0.1:{settings.server.port}/slack/events"
    return Loop(running, telegram, slack, SlackUser(url, SECRET, slack))


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeSlack]]:
    slack = FakeSlack()
    await slack.start()
    async with FakeTelegram() as telegram:
        yield telegram, slack
    await slack.close()


async def test_human_opens_a_slack_thread_and_a_reply_reaches_telegram(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeSlack]
) -> None:
    telegram, slack = fakes
    loop = await start_loop(tmp_path, telegram, slack, "auto")
    try:
        telegram.push_message(CHAT, "/human", first_name="Anna")
        root = await loop.card()
        assert "Anna" in root.all_text() and "telegram" in root.all_text()
        await telegram.wait_for(lambda: len(telegram.sent(CHAT)) == 1)  # "a person will reply here shortly"

        await loop.operator.reply(root, MARIA, "Hi Anna, Maria here. What happened?")
        await telegram.wait_for(lambda: "Hi Anna, Maria here. What happened?" in telegram.texts(CHAT))
        await telegram.wait_for(lambda: "Claimed by Maria" in root.all_text())

        telegram.push_message(CHAT, "My parcel is broken", first_name="Anna")  # the bot stays silent
        await telegram.wait_for(lambda: "My parcel is broken" in slack.thread(root)[-1].all_text())
        await loop.operator.reply(root, MARIA, "// photo needed, ask the warehouse")
        assert len(telegram.sent(CHAT)) == 2

        status, _ = await loop.operator.press(root, cards.RESOLVE, MARIA)
        assert status == 200
        await telegram.wait_for(lambda: len(telegram.sent(CHAT)) == 3)
        assert "How would you rate our help?" in telegram.texts(CHAT)[2]
        assert len(telegram.buttons(telegram.sent(CHAT)[2])) == 5
        await telegram.wait_for(lambda: "Resolved by Maria" in root.all_text())
    finally:
        await loop.running.stop()


async def test_send_delivers_the_ai_draft_to_the_telegram_customer(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeSlack]
) -> None:
    telegram, slack = fakes
    loop = await start_loop(tmp_path, telegram, slack, "suggest")
    try:
        telegram.push_message(CHAT, "How do I return an item?", first_name="Anna")
        await loop.card()
        draft = loop.draft()
        assert "30 days" in draft.all_text()
        status, _ = await loop.operator.press(draft, cards.SEND, MARIA)
        assert status == 200
        await telegram.wait_for(lambda: any("30 days" in t for t in telegram.texts(CHAT)))
        await telegram.wait_for(lambda: "Sent to the customer by Maria" in draft.all_text())
        assert sum("30 days" in t for t in telegram.texts(CHAT)) == 1
    finally:
        await loop.running.stop()
