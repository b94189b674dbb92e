"""`/relaydesk stats|help`: signed slash-command requests to the real AsyncApp, answers via the response URL.

The history is made by the real desk and the real Slack handlers (thread replies, Resolve); the
summary must show the figures that history implies, counted by hand below, for today only.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import col, update

from bot.app import App, build_app
from bot.domain.types import Inbound
from bot.storage.models import Conversation
from connectors.slack import cards
from connectors.slack.stats import HELP, REFUSED, duration, start_of_day, zone_of
from tests.conftest import Recorder, make_settings
from tests.fakes.slack_api import BOT_USER, QUEUE, FakeSlack, Posted, SlackSide, SlackUser

MARIA, IVAN, EVE = "U0MARIA", "U0IVAN", "U0EVE"
GENERAL = "C0GENERAL"  # a channel the bot is not in; Eve is a member, as is Maria
_ids = itertools.count(1)


@dataclass
class Desk:
    app: App
    side: SlackSide
    slack: FakeSlack
    started: datetime

    @property
    def user(self) -> SlackUser:
        assert self.side.user is not None
        return self.side.user

    async def customer(self, chat: str, text: str) -> int:
        decision = await self.app.desk.receive(Inbound("test", chat, f"m{next(_ids)}", text, name=f"Customer {chat}"))
        await self.side.settle()
        return decision.conversation_id

    async def stats(self, user: str, channel: str = QUEUE) -> list[dict[str, object]]:
        status, body, url = await self.user.command("stats", user, channel)
        assert status == 200 and body == ""  # acknowledged at once, with nothing to show yet
        await self.side.settle()
        return self.slack.responded(url)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    slack = FakeSlack()
    slack.channels[GENERAL] = {"name": "general", "members": [EVE, MARIA]}
    await slack.start()
    settings = make_settings(tmp_path)
    settings.slack.bot_token = slack.token
    app = await build_app(settings)
    app.outbox.register("test", Recorder())
    side = await SlackSide(app, slack).start()
    started = datetime.now(UTC)
    assert side.connector.handlers.stats is not None
    side.connector.handlers.stats.clock = lambda: started  # "today" is the day the test began, even at 23:59:59
    yield Desk(app, side, slack, started)
    await side.stop()
    await app.close()
    await slack.close()


def readable(response: dict[str, object]) -> str:
    return Posted(QUEUE, "0", str(response.get("text", "")), list(response.get("blocks") or [])).all_text()  # type: ignore[call-overload]


async def make_history(desk: Desk) -> None:
    """Yesterday: 1 conversation (not counted). Today: 4 —

    | customer | first message                                  | what happens                                   |
    |----------|------------------------------------------------|------------------------------------------------|
    | y        | Can I pay by card?                             | (yesterday) bot answers                        |
    | a        | How do I return an item?                       | bot answers, customer presses Helped           |
    | b        | Where is my order?                             | bot answers                                    |
    | c        | Where is my order? I want to talk to a person  | handoff (asked for a person); Maria replies,   |
    |          |                                                | resolves; CSAT 4                               |
    | d        | Как вернуть товар? Это ужасно, я в бешенстве!  | handoff (upset); Ivan replies twice, resolves; |
    |          |                                                | CSAT 2                                         |
    """
    yesterday = await desk.customer("y", "Can I pay by card?")
    async with desk.app.sessions() as session, session.begin():
        midnight = start_of_day(desk.started, UTC)
        await session.execute(
            update(Conversation)
            .where(col(Conversation.id) == yesterday)
            .values(created_at=midnight - timedelta(hours=1))
        )
    helped = await desk.customer("a", "How do I return an item?")
    await desk.app.operators.feedback(helped, "helpful")
    await desk.customer("b", "Where is my order?")
    asked = await desk.customer("c", "Where is my order? I want to talk to a person")
    upset = await desk.customer("d", "Как вернуть товар? Это ужасно, я в бешенстве!")
    first, second = desk.slack.roots()
    await desk.user.reply(first, MARIA, "Hi, Maria here: your parcel is at the pickup point.")
    await desk.user.reply(second, IVAN, "Простите, пожалуйста! Сейчас всё оформим.")
    await desk.user.reply(second, IVAN, "Курьер заберёт товар завтра.")
    await desk.side.settle()
    for root, who in ((first, MARIA), (second, IVAN)):
        status, _ = await desk.user.press(root, cards.RESOLVE, who)
        assert status == 200
        await desk.side.settle()
    await desk.app.operators.feedback(asked, "csat", 4)
    await desk.app.operators.feedback(upset, "csat", 2)


async def test_stats_posts_todays_summary_to_the_channel(desk: Desk) -> None:
    await make_history(desk)
    responses = await desk.stats(MARIA)
    assert len(responses) == 1
    posted = responses[0]
    assert posted["response_type"] == "in_channel"  # visible to the channel, not only to Maria
    text = readable(posted)
    for expected in (
        "*Conversations*\n4",  # yesterday's is not today's
        "*Automated*\n2 (50%)",
        "*Handed off*\n2",
        "*Resolved*\n3 (0 reopened)",
        "*CSAT*\n3.00 (2 rated)",
        "*Helped / not helpful*\n1 / 0",
        "• asked for a person — 1",
        "• upset customer — 1",
        "• order-tracking — 2 (1 automated)",
        "• returns-policy — 2 (1 automated)",
        "• Ivan Petrov — 2 replies in 1 conversation",
        "• Maria — 1 reply in 1 conversation",
        "since 00:00 UTC",
    ):
        assert expected in text, (expected, text)
    assert "payment-methods" not in text
    assert text.index("Ivan Petrov") < text.index("• Maria")  # the busiest operator first
    frt = next(line for line in text.splitlines() if line.startswith("bot "))
    assert "—" not in frt and "human" in frt  # both the bot's and the people's first responses were measured
    assert all(block["type"] in {"header", "section", "context"} for block in posted["blocks"])  # type: ignore[attr-defined]


async def test_stats_are_posted_where_the_command_was_typed_even_without_the_bot(desk: Desk) -> None:
    """The response URL answers in any channel; chat.postMessage would fail there with not_in_channel."""
    assert BOT_USER not in desk.slack.channels[GENERAL]["members"]
    await desk.customer("a", "How do I return an item?")
    responses = await desk.stats(MARIA, GENERAL)
    assert [r["response_type"] for r in responses] == ["in_channel"]
    assert "*Conversations*\n1" in readable(responses[0])
    assert not desk.slack.called("chat.postMessage") or all(
        call["channel"] != GENERAL for call in desk.slack.called("chat.postMessage")
    )


async def test_someone_outside_the_queue_is_refused_privately(desk: Desk) -> None:
    await desk.customer("a", "How do I return an item?")
    for channel in (GENERAL, QUEUE):  # a member of #general, not of the queue
        responses = await desk.stats(EVE, channel)
        assert responses == [{"text": REFUSED, "response_type": "ephemeral"}]


async def test_a_quiet_day_reads_as_such(desk: Desk) -> None:
    (posted,) = await desk.stats(IVAN)
    text = readable(posted)
    assert "*Conversations*\n0" in text and "*Automated*\n0 (—)" in text and "*CSAT*\n—" in text
    assert "no handoffs" in text and "no operator replies yet" in text


async def test_help_unknown_and_plain_commands_answer_only_the_person(desk: Desk) -> None:
    # a plain-text acknowledgement is a message only the person who typed the command sees
    status, body, _ = await desk.user.command("help", EVE)
    assert status == 200 and body == HELP and "/relaydesk stats" in HELP
    status, body, _ = await desk.user.command("frobnicate now", MARIA)
    assert status == 200 and body.startswith("Unknown subcommand `frobnicate`") and "/relaydesk stats" in body
    await desk.customer("c", "Where is my order? I want to talk to a person")
    status, body, _ = await desk.user.command("", MARIA)
    assert status == 200 and body == "1 waiting for a person, 0 being handled."
    await desk.side.settle()
    assert desk.slack.responses == []  # none of these posted anything to the channel


async def test_a_badly_signed_or_stale_command_gets_401(desk: Desk) -> None:
    form = (
        f"command=%2Frelaydesk&text=stats&user_id={MARIA}&channel_id={QUEUE}&team_id=T0TEAM"
        f"&response_url={desk.slack.response_url()}&trigger_id=1.2"
    )
    content = "application/x-www-form-urlencoded"
    assert (await desk.user.post(form, content, secret="not-the-secret"))[0] == 401
    assert (await desk.user.post(form, content, timestamp=int(time.time()) - 600))[0] == 401
    await desk.side.settle()
    assert desk.slack.responses == []
    assert (await desk.user.post(form, content))[0] == 200  # the same request, signed properly
    await desk.side.settle()
    assert [r["body"]["response_type"] for r in desk.slack.responses] == ["in_channel"]


def test_today_starts_at_midnight_in_the_configured_zone(tmp_path: Path) -> None:
    late = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)
    assert start_of_day(late, UTC) == datetime(2026, 11, 23, tzinfo=UTC)
    tokyo = start_of_day(late, ZoneInfo("Asia/Tokyo"))  # already the 24th there
    assert tokyo == datetime(2026, 11, 24, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert tokyo.astimezone(UTC) == datetime(2026, 11, 23, 15, tzinfo=UTC)
    settings = make_settings(tmp_path)
    assert zone_of(settings).utcoffset(late) == timedelta(0)
    hours = getattr(settings, "business_hours", None)
    if hours is not None and hasattr(hours, "timezone"):  # the setting arrives with business hours
        hours.timezone = "Europe/Berlin"
        assert zone_of(settings).utcoffset(late) == timedelta(hours=1)
    assert [duration(s) for s in (None, 0.04, 42, 150, 5400, 200000)] == [
        "—",
        "< 0.1 s",
        "42 s",
        "2.5 min",
        "1.5 h",
        "2.3 d",
    ]


async def test_stats_over_socket_mode_answer_through_the_response_url(tmp_path: Path, slack: FakeSlack) -> None:
    settings = make_settings(tmp_path)
    settings.slack.bot_token = slack.token
    settings.slack.app_token = slack.app_token
    app = await build_app(settings)
    app.outbox.register("test", Recorder())
    side = await SlackSide(app, slack).start()
    try:
        url = slack.response_url()
        payload = {"command": "/relaydesk", "text": "stats", "user_id": MARIA, "channel_id": QUEUE, "team_id": "T0TEAM",
                   "response_url": url, "trigger_id": "1.trigger", "api_app_id": "A0APP"}  # fmt: skip
        envelope = await slack.push_envelope("slash_commands", payload)
        for _ in range(300):
            if slack.responded(url):
                break
            await side.settle()
            await asyncio.sleep(0.01)
        assert any(ack.get("envelope_id") == envelope for ack in slack.socket_acks)
        (posted,) = slack.responded(url)
        assert posted["response_type"] == "in_channel" and "*Conversations*\n0" in readable(posted)
    finally:
        await side.stop()
        await app.close()
