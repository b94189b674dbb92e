"""The seed scenario, end to end, in English and in Russian, on the real connectors:

Telegram fake -> desk -> the LLM agent (fake OpenAI server) looks the order up in the demo CRM -> the
order is late -> the Slack fake gets a thread with the compensation draft -> an operator presses Send
-> the Telegram fake receives the offer. Nothing reaches the customer before that Send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.runner import start
from connectors.slack import cards
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_api import QUEUE, FakeSlack, SlackUser
from tests.fakes.telegram_api import FakeTelegram
from tests.test_full_loop import CHAT, MARIA, SECRET, Loop
from tests.test_llm import support_brain
from tests.test_telegram_harness import free_port, telegram_settings


@pytest.fixture
async def world() -> AsyncIterator[tuple[FakeTelegram, FakeSlack, FakeOpenAI]]:
    slack = FakeSlack()
    await slack.start()
    async with FakeTelegram() as telegram, FakeOpenAI() as openai:
        openai.chat_default = support_brain
        yield telegram, slack, openai
    await slack.close()


async def start_desk(tmp: Path, telegram: FakeTelegram, slack: FakeSlack, openai: FakeOpenAI) -> Loop:
    settings = telegram_settings(tmp, telegram)
    settings.server.port = free_port()
    settings.slack.bot_token = slack.token
    settings.slack.signing_secret = SECRET
    settings.slack.api_base = slack.base_url
    settings.slack.queue_channel = QUEUE
    settings.llm.provider = "openai"
    settings.llm.base_url = openai.base_url
    settings.llm.api_key = "sk-test"
    settings.llm.max_retries = 0
    settings.crm.provider = "demo"
    running = await start(settings)
    url = f"http://127.0.0.1:{settings.server.port}/slack/events"
    return Loop(running, telegram, slack, SlackUser(url, SECRET, slack))


@pytest.mark.parametrize(
    ("message", "apology", "offer"),
    [
        ("Hi, my order 10234 hasn't arrived yet!", "order 10234 is running late", "10% promo code"),
        ("Здравствуйте, мой заказ №10234 до сих пор не пришёл!", "заказ 10234 задерживается", "промокод на 10%"),
    ],
)
async def test_a_late_order_ends_with_the_operator_sending_the_compensation_offer(
    tmp_path: Path,
    world: tuple[FakeTelegram, FakeSlack, FakeOpenAI],
    message: str,
    apology: str,
    offer: str,
) -> None:
    telegram, slack, openai = world
    loop = await start_desk(tmp_path, telegram, slack, openai)
    try:
        telegram.push_message(CHAT, message, first_name="Ivan")
        root = await loop.card()
        draft = loop.draft()
        # the agent classified the message, looked the order up and proposed a compensation
        tools_called = [
            c["function"]["name"]
            for body in openai.chat_bodies()
            for m in body["messages"]
            if m["role"] == "assistant"
            for c in m.get("tool_calls") or []
        ]
        assert {"get_order_status", "propose_compensation"} <= set(tools_called)
        assert "Ivan" in root.all_text()
        assert apology in draft.all_text() and offer in draft.all_text() and "SORRY10-" in draft.all_text()
        # before Send the customer only heard that a person will answer
        await telegram.wait_for(lambda: len(telegram.sent(CHAT)) == 1)
        assert "SORRY10-" not in " ".join(telegram.texts(CHAT))

        status, _ = await loop.operator.press(draft, cards.SEND, MARIA)
        assert status == 200
        await telegram.wait_for(lambda: any("SORRY10-" in t for t in telegram.texts(CHAT)))
        sent = telegram.texts(CHAT)[-1]
        assert offer in sent and apology in sent
        await telegram.wait_for(lambda: "Sent to the customer by Maria" in draft.all_text())
    finally:
        await loop.running.stop()
