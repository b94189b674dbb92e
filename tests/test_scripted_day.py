"""A scripted day at the desk, end to end, checked against `relaydesk report --format json`.

Sixteen Telegram customers (ru and en) write to the bot through FakeTelegram; three operators work
the Slack queue through FakeSlack (signed thread replies, buttons, the Edit modal). Everything
between the two fakes is `relaydesk run`'s own start path. When the day is over the desk is
stopped and `relaydesk report` runs through `bot.cli.main` on the same config and database.

The expected figures are counted by hand from the DAY table, not read back from the code.
The test config answers alone only what the knowledge base covers almost verbatim
(`automation.min_confidence: 0.9`; the shared test knowledge base has three articles in en and
ru: returns-policy, order-tracking, payment-methods) and counts no repeats (`repeat_limit: 0`).
So a question the articles do not answer ("Can I pay with bitcoin?") is handed off for low
confidence, still under the topic it is about; a bare request for a person ("Not helpful",
`/human`) carries no question, so the bot is also not confident about it: asked_for_human and
low_confidence.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot.analytics.report import build_report
from bot.app import build_app
from bot.cli import main
from bot.config import Settings
from bot.domain.types import Inbound
from bot.runner import Running, start
from bot.storage.models import Conversation, Customer, Event, Handoff
from connectors.slack import cards
from tests.conftest import Recorder, make_settings
from tests.fakes.slack_api import BOT_USER, QUEUE, FakeSlack, Posted, SlackUser
from tests.fakes.telegram_api import FakeTelegram
from tests.test_telegram_harness import free_port, telegram_settings

SECRET = "scripted-day-signing-secret"
MARIA, IVAN, OLGA = "U0MARIA", "U0IVAN", "U0OLGA"  # Slack names: Maria, Ivan Petrov (no display name), Olga
ASKED, LOW, UPSET = "asked_for_human", "low_confidence", "negative_sentiment"


@dataclass(frozen=True)
class Visit:
    """One customer's conversation: what they write, what the desk should do, who works on it."""

    chat: int
    lang: str
    text: str
    topic: str  # what the customer came for
    reasons: tuple[str, ...] = ()  # why it goes to a person; () = the bot answers
    press: str = ""  # after the bot's answer: "helped" or "human" (the Not helpful button)
    operator: str = ""
    work: tuple[str, ...] = ()  # claim / reply / send (the draft as is) / edit (the draft, edited) / discard
    resolve: bool = False
    csat: int = 0  # the star the customer presses after the resolution; 0 = none
    reopen: str = ""  # written after the resolution: the conversation comes back
    reopen_work: tuple[str, ...] = ()
    reopen_csat: int = 0


NOT_HELPFUL = (ASKED, LOW)  # "Not helpful" sends the bare request for a person
DAY = [
    Visit(7001, "en", "How do I return an item?", "returns-policy", press="helped"),
    Visit(7002, "ru", "Где мой заказ?", "order-tracking", press="helped"),
    Visit(7003, "en", "Can I pay by card?", "payment-methods", press="helped"),
    Visit(7004, "ru", "Как отследить посылку?", "order-tracking"),
    Visit(7005, "en", "Which payment methods do you accept?", "payment-methods"),
    Visit(7006, "en", "Where is my order?", "order-tracking", press="human", operator=MARIA, work=("reply",),
          resolve=True, csat=5),
    Visit(7007, "ru", "Как вернуть товар?", "returns-policy", press="human", operator=IVAN, work=("claim", "reply"),
          resolve=True, csat=3),
    Visit(7008, "en", "Where is my order? I want to talk to a person", "order-tracking", (ASKED,), operator=MARIA,
          work=("send",), resolve=True, csat=4),
    Visit(7009, "ru", "Где мой заказ? Позовите оператора", "order-tracking", (ASKED,), operator=OLGA,
          work=("edit",), resolve=True, csat=5),
    Visit(7010, "en", "How do I return an item? This is awful, I am furious!", "returns-policy", (UPSET,),
          operator=IVAN, work=("reply",), resolve=True, csat=2),
    Visit(7011, "ru", "Где мой заказ? Ужасный сервис, я очень зол!", "order-tracking", (UPSET,), operator=OLGA,
          work=("claim", "reply", "reply"), resolve=True),
    Visit(7012, "en", "Can I pay with bitcoin?", "payment-methods", (LOW,), operator=MARIA, work=("edit",),
          resolve=True, csat=4),
    Visit(7013, "ru", "Трек-номер не работает", "order-tracking", (LOW,), operator=IVAN, work=("reply",),
          resolve=True, reopen="/human", reopen_work=("reply",), reopen_csat=3),
    Visit(7014, "en", "The tracking number does not work", "order-tracking", (LOW,), operator=OLGA,
          work=("discard", "reply"), resolve=True, csat=4),
    Visit(7015, "ru", "Можно ли оплатить в рассрочку?", "payment-methods", (LOW,)),  # nobody got to it today
    Visit(7016, "en", "Can I return a gift without a receipt?", "returns-policy", (LOW,), operator=MARIA,
          work=("claim",)),
]  # fmt: skip

# Counted by hand from DAY.
EXPECTED: dict[str, Any] = {
    "conversations": 16,
    "automated": 5,  # 7001-7005: answered, nobody needed
    "resolved_by_bot": 3,  # 7001-7003 pressed Helped
    "handed_off": 11,  # 7006-7016
    "involved": 10,  # 7006-7014 and 7016 (a claim counts); 7015 waits
    "automation_rate": 0.3125,  # 5 / 16
    "bot_answered": 5,  # 7001-7005; 7006 and 7007 pressed Not helpful, but an operator took them: involved
    "automated_confirmed": 3,  # 7001-7003 pressed Helped
    "automated_unconfirmed": 2,  # 7004, 7005 said nothing more
    "automated_failed": 0,
    "confirmed_automation_rate": 0.1875,  # 3 / 16
    "involvement_rate": 0.625,  # 10 / 16
    "resolved": 12,  # 7001-7003 by the bot, 7006-7014 by operators
    "reopened": 1,  # 7013
    "reopen_rate": 0.0833,  # 1 / 12
    "csat_avg": 3.75,  # 5 3 4 5 2 4 3 4 = 30 / 8
    "csat_count": 8,
    "helpful": 3,
    "not_helpful": 2,
    # per handoff: 7006 7007 (Not helpful) 7013's comeback: asked + low; 7008 7009: asked;
    # 7010 7011: upset; 7012 7013 7014 7015 7016: low
    "handoff_reasons": {LOW: 8, ASKED: 5, UPSET: 2},
}
EXPECTED_OPERATORS = {  # conversations touched, replies, CSAT of the conversations they replied in last
    "Maria": {"conversations": 4, "replies": 3, "csat_avg": 4.333, "csat_count": 3},  # 7006 7008 7012 (+7016)
    "Ivan Petrov": {"conversations": 3, "replies": 4, "csat_avg": 2.667, "csat_count": 3},  # 7007 7010 7013×2
    "Olga": {"conversations": 3, "replies": 4, "csat_avg": 4.5, "csat_count": 2},  # 7009 7011×2 7014
}
EXPECTED_TOPICS = {  # conversations, automated, involved, CSAT
    "order-tracking": {"conversations": 8, "automated": 2, "involved": 6, "csat_avg": 4.2, "csat_count": 5},
    "returns-policy": {"conversations": 4, "automated": 1, "involved": 3, "csat_avg": 2.5, "csat_count": 2},
    "payment-methods": {"conversations": 4, "automated": 2, "involved": 1, "csat_avg": 4.0, "csat_count": 1},
}
EXPECTED_TOPIC_PARTS = {  # the bot's answers per topic: confirmed, unconfirmed, failed
    "order-tracking": (1, 1, 0),  # 7002 Helped; 7004 silent
    "returns-policy": (1, 0, 0),  # 7001 Helped
    "payment-methods": (1, 1, 0),  # 7003 Helped; 7005 silent
}
DECISIONS = 19  # 7 bot answers (7001-7007) and 12 handoffs (11 + 7013's comeback): each has a sentiment


@dataclass
class Day:
    running: Running
    telegram: FakeTelegram
    slack: FakeSlack
    operator: SlackUser
    roots: dict[int, Posted] = field(default_factory=dict)  # chat -> its conversation's root card

    async def until(self, predicate: Any, what: str) -> None:
        try:
            await self.telegram.wait_for(predicate, timeout=10)
        except AssertionError:
            raise AssertionError(f"never happened: {what}") from None

    # -- the customer, in Telegram ----------------------------------------------------------------

    async def says(self, visit: Visit, text: str) -> None:
        seen = len(self.telegram.sent(visit.chat))
        self.telegram.push_message(visit.chat, text, first_name=f"Guest{visit.chat}", language_code=visit.lang)
        await self.until(lambda: len(self.telegram.sent(visit.chat)) > seen, f"{visit.chat} got an answer to {text!r}")

    async def presses(self, visit: Visit, action: str, value: int = 0) -> None:
        """The customer presses a button under the latest message that has it: helped, human, csat."""
        data = next(
            data
            for params in reversed(self.telegram.sent(visit.chat))
            for _, data in self.telegram.buttons(params)
            if data.split(":")[2:] == [action, str(value)]
        )
        query = self.telegram.push_callback(visit.chat, data)["callback_query"]["id"]
        await self.until(  # the handler answers the press after recording it
            lambda: any(
                c.params.get("callback_query_id") == query for c in self.telegram.called("answerCallbackQuery")
            ),
            f"{visit.chat} pressed {action}",
        )

    # -- the operators, in Slack ------------------------------------------------------------------

    async def conversation(self, visit: Visit) -> int:
        async with self.running.app.sessions() as session:
            found = await session.execute(
                select(Conversation.id).join(Customer).where(Customer.chat_id == str(visit.chat))
            )
            return int(found.scalar_one())

    async def root(self, visit: Visit) -> Posted:
        """The conversation's card: the root whose buttons carry its conversation id."""
        if visit.chat not in self.roots:
            value = str(await self.conversation(visit))
            await self.until(
                lambda: any(b["value"] == value for r in self.slack.roots() for b in r.buttons().values()),
                f"{visit.chat}'s card in Slack",
            )
            self.roots[visit.chat] = next(
                r for r in self.slack.roots() if any(b["value"] == value for b in r.buttons().values())
            )
        return self.roots[visit.chat]

    def drafts(self, root: Posted) -> list[Posted]:
        return [m for m in self.slack.thread(root) if cards.EDIT in m.buttons()]

    async def handed_off(self, visit: Visit, drafts: int = 1) -> Posted:
        root = await self.root(visit)
        await self.until(lambda: len(self.drafts(root)) == drafts, f"{visit.chat}'s draft in Slack")
        return root

    async def works(self, visit: Visit, step: str, root: Posted) -> None:
        who, sent = visit.operator, len(self.telegram.sent(visit.chat))
        if step == "claim":
            await self.pressed(root, cards.CLAIM, who)
            await self.until(lambda: "Claimed by" in root.all_text(), f"{visit.chat} claimed")
        elif step == "reply":
            text = f"Reply {sent} to Guest{visit.chat} from the support team."
            await self.operator.reply(root, who, text)
            await self.until(lambda: text in self.telegram.texts(visit.chat), f"{visit.chat} got {text!r}")
        elif step in ("send", "discard"):
            draft = self.drafts(root)[-1]
            await self.pressed(draft, cards.SEND if step == "send" else cards.DISCARD, who)
            done = "Sent to the customer by" if step == "send" else "Draft discarded by"
            await self.until(lambda: done in draft.all_text(), f"{visit.chat}'s draft {step}")
            if step == "send":
                await self.until(lambda: len(self.telegram.sent(visit.chat)) > sent, f"{visit.chat} got the draft")
        elif step == "edit":
            draft = self.drafts(root)[-1]
            handoff = draft.buttons()[cards.EDIT]["value"]
            await self.pressed(draft, cards.EDIT, who)
            await self.until(lambda: self.editor(handoff) is not None, f"{visit.chat}'s draft opened in the editor")
            text = f"Edited draft for Guest{visit.chat}: we will check and write back today."
            view = self.editor(handoff)
            assert view is not None
            status, _ = await self.operator.submit(view, who, {cards.EDIT_BLOCK: {cards.EDIT_INPUT: text}})
            assert status == 200
            await self.until(lambda: text in self.telegram.texts(visit.chat), f"{visit.chat} got the edited draft")
        else:
            raise ValueError(step)

    def editor(self, handoff: str) -> dict[str, Any] | None:
        return next((v for v in self.slack.views if str(v.get("private_metadata", "")).startswith(f"{handoff}|")), None)

    async def resolves(self, visit: Visit, root: Posted) -> None:
        sent = len(self.telegram.sent(visit.chat))
        await self.pressed(root, cards.RESOLVE, visit.operator)
        await self.until(
            lambda: (
                len(self.telegram.sent(visit.chat)) > sent
                and ":csat:" in json.dumps(self.telegram.sent(visit.chat)[-1])
            ),
            f"{visit.chat} resolved and asked for a rating",
        )

    async def pressed(self, message: Posted, action_id: str, user: str) -> None:
        status, _ = await self.operator.press(message, action_id, user)
        assert status == 200


# The day in three parts, each part's conversations side by side (customers do not wait for each
# other). Operators resolve after the queue is answered: a resolution teaches the desk a case that
# would become the draft for a later similar question (and change that handoff's reasons), so the
# only case learned before a handoff is 7013's own, right before 7013 comes back.


async def morning(day: Day, visit: Visit) -> None:
    """Customers write; the bot answers or hands off; some press Helped or Not helpful."""
    await day.says(visit, visit.text)
    if visit.press:
        await day.presses(visit, visit.press)
    if visit.reasons or visit.press == "human":
        await day.handed_off(visit)


async def queue(day: Day, visit: Visit) -> None:
    """Operators work their conversations."""
    root = await day.root(visit)
    for step in visit.work:
        await day.works(visit, step, root)


async def closing(day: Day, visit: Visit) -> None:
    """Operators resolve; customers rate; one conversation comes back and is resolved again."""
    root = await day.root(visit)
    await day.resolves(visit, root)
    if visit.csat:
        await day.presses(visit, "csat", visit.csat)
    if visit.reopen:
        await day.says(visit, visit.reopen)
        await day.handed_off(visit, drafts=2)  # the same thread, a fresh draft
        for step in visit.reopen_work:
            await day.works(visit, step, root)
        await day.resolves(visit, root)
        await day.presses(visit, "csat", visit.reopen_csat)


async def handoffs(running: Running) -> list[tuple[str, str, list[str]]]:
    """Each handoff's customer, question and reasons: what to look at when a figure is off."""
    async with running.app.sessions() as session:
        rows = await session.execute(
            select(Customer.chat_id, Handoff.question, Handoff.reasons)
            .join(Conversation, col(Conversation.id) == col(Handoff.conversation_id))
            .join(Customer, col(Customer.id) == col(Conversation.customer_id))
            .order_by(col(Handoff.id))
        )
        return [(str(chat), str(question), list(reasons)) for chat, question, reasons in rows.all()]


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeSlack]]:
    slack = FakeSlack()
    slack.users[OLGA] = {"name": "olga", "real_name": "Olga Smirnova", "display_name": "Olga"}
    slack.channels[QUEUE]["members"] = [MARIA, IVAN, OLGA, BOT_USER]
    await slack.start()
    async with FakeTelegram() as telegram:
        yield telegram, slack
    await slack.close()


async def open_day(tmp_path: Path, fakes: tuple[FakeTelegram, FakeSlack]) -> tuple[Day, Settings]:
    """`relaydesk run` between the two fakes, with the test config the module docstring describes."""
    telegram, slack = fakes
    settings = telegram_settings(tmp_path, telegram)
    settings.automation.min_confidence = 0.9
    settings.automation.repeat_limit = 0
    settings.server.port = free_port()
    settings.slack.bot_token = slack.token
    settings.slack.signing_secret = SECRET
    settings.slack.api_base = slack.base_url
    settings.slack.queue_channel = QUEUE
    running = await start(settings)
    user = SlackUser(f"http://127.0.0.1:{settings.server.port}/slack/events", SECRET, slack)
    return Day(running, telegram, slack, user), settings


async def report_of_the_day(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str], fmt: str = "json"
) -> str:
    """`relaydesk report --since 1d` on the day's config and database, as a person runs it."""
    config = tmp_path / "config.yaml"
    config.write_text(f"database:\n  url: {settings.database.url}\n", encoding="utf-8")
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["--config", str(config), "report", "--since", "1d", "--format", fmt])
    assert code == 0
    return capsys.readouterr().out


async def test_a_scripted_day_adds_up_in_relaydesk_report(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeSlack], capsys: pytest.CaptureFixture[str]
) -> None:
    day, settings = await open_day(tmp_path, fakes)
    running, slack = day.running, day.slack
    try:
        await asyncio.gather(*(morning(day, visit) for visit in DAY))
        cards_for = {b["value"] for r in slack.roots() for b in r.buttons().values()}
        for visit in DAY:  # the bot handled these alone: nothing reached the operators
            if not visit.reasons and visit.press != "human":
                assert str(await day.conversation(visit)) not in cards_for, visit.chat
        await asyncio.gather(*(queue(day, visit) for visit in DAY if visit.work))
        for visit in [v for v in DAY if v.reopen]:
            await closing(day, visit)
        await asyncio.gather(*(closing(day, visit) for visit in DAY if visit.resolve and not visit.reopen))
        trail = await handoffs(running)
    finally:
        await running.stop()

    report = json.loads(await report_of_the_day(tmp_path, settings, capsys))

    for key, value in EXPECTED.items():
        assert report[key] == value, f"{key}: {report[key]} != {value}; handoffs:\n" + "\n".join(map(str, trail))
    operators = {
        name: {key: figures[key] for key in ("conversations", "replies", "csat_avg", "csat_count")}
        for name, figures in report["per_operator"].items()
    }
    assert operators == EXPECTED_OPERATORS
    topics = {
        topic: {key: figures[key] for key in ("conversations", "automated", "involved", "csat_avg", "csat_count")}
        for topic, figures in report["per_topic"].items()
    }
    assert topics == EXPECTED_TOPICS
    parts = ("automated_confirmed", "automated_unconfirmed", "automated_failed")
    assert {topic: tuple(f[k] for k in parts) for topic, f in report["per_topic"].items()} == EXPECTED_TOPIC_PARTS
    assert report["roi"]["operator_hours_saved_confirmed"] == 0.3  # 3 x 6 min
    assert sum(report["sentiment"].values()) == DECISIONS
    assert sum(d["conversations"] for d in report["per_day"]) == EXPECTED["conversations"]

    # Times are wall-clock here: only what must hold, whatever the machine's speed.
    for key in ("frt_p50_s", "frt_bot_p50_s", "frt_bot_p90_s", "frt_human_p50_s", "frt_human_p90_s"):
        assert report[key] is not None, key
    assert report["frt_bot_p50_s"] <= report["frt_bot_p90_s"] and report["frt_human_p50_s"] <= report["frt_human_p90_s"]
    # A resolution needs a press or a Slack round trip after the first answer; a bot answer needs neither.
    assert report["resolution_p50_s"] is not None and report["resolution_p50_s"] >= report["frt_bot_p50_s"]
    for name, figures in report["per_operator"].items():  # each answered some conversation first
        assert figures["frt_p50_s"] is not None, name


async def test_the_bots_first_response_time_includes_the_time_it_took_to_answer(tmp_path: Path) -> None:
    app = await build_app(make_settings(tmp_path))
    app.outbox.register("test", Recorder())
    try:
        decision = await app.desk.receive(Inbound("test", "1", "m1", "How do I return an item?"))
        assert decision.action == "answer"
        async with app.sessions() as session:
            answer = (await session.execute(select(Event).where(Event.type == "bot_answer"))).scalars().one()
        report = await build_report(app.sessions, app.settings.analytics, datetime.now(UTC) - timedelta(hours=1))
    finally:
        await app.close()
    took_s = float(answer.data["ms"]) / 1000  # what the desk itself measured from receive() to the answer
    assert took_s > 0.001  # the brain did real work (embedding, retrieval, classification)
    assert report["frt_bot_p50_s"] >= took_s - 0.002  # the report rounds to milliseconds


async def test_a_request_for_a_person_is_not_learned_as_a_question(tmp_path: Path) -> None:
    app = await build_app(make_settings(tmp_path))
    app.outbox.register("test", Recorder())
    try:
        first = await app.desk.receive(Inbound("test", "1", "a1", "How do I return an item?"))
        await app.desk.receive(Inbound("test", "1", "a2", "/human"))  # what Not helpful sends
        await app.operators.reply(first.conversation_id, "Maria", "Anna, your refund for order 1234 is on its way.")
        await app.operators.resolve(first.conversation_id, "Maria")
        await app.desk.receive(Inbound("test", "2", "b1", "Where is my order?"))
        second = await app.desk.receive(Inbound("test", "2", "b2", "/human"))
        async with app.sessions() as session:
            handoff = await session.get(Handoff, second.handoff_id)
    finally:
        await app.close()
    assert handoff is not None
    assert "order 1234" not in handoff.draft  # another customer's reply is no draft for this one
    assert "responder_request" not in handoff.reasons


async def test_a_press_of_talk_to_a_person_nobody_answered_yet_is_a_failed_answer_not_a_saving(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeSlack], capsys: pytest.CaptureFixture[str]
) -> None:
    visits = [
        Visit(7101, "en", "How do I return an item?", "returns-policy", press="helped"),  # confirmed
        Visit(7102, "ru", "Где мой заказ?", "order-tracking"),  # unconfirmed: silence
        Visit(7103, "en", "Which payment methods do you accept?", "payment-methods", press="human"),  # failed
        Visit(7104, "en", "Where is my order?", "order-tracking", press="human", operator=MARIA, work=("reply",)),
    ]
    day, settings = await open_day(tmp_path, fakes)
    try:
        await asyncio.gather(*(morning(day, visit) for visit in visits))
        await queue(day, visits[-1])  # Maria answers 7104; nobody gets to 7103 today
    finally:
        await day.running.stop()
    report = json.loads(await report_of_the_day(tmp_path, settings, capsys))
    assert (report["conversations"], report["involved"], report["handed_off"]) == (4, 1, 2)
    assert report["bot_answered"] == 3  # 7104 is Maria's now
    parts = (report["automated_confirmed"], report["automated_unconfirmed"], report["automated_failed"])
    assert parts == (1, 1, 1) and sum(parts) == report["bot_answered"]
    assert report["failed_signals"] == {"asked_for_human": 1, "not_helpful": 1}
    assert (report["automation_rate"], report["confirmed_automation_rate"]) == (0.5, 0.25)  # 7101 7102; 7101
    roi = report["roi"]  # 6 minutes each for 7101 and 7102, none for 7103
    assert (roi["operator_hours_saved"], roi["operator_hours_saved_confirmed"]) == (0.2, 0.1)
    page = await report_of_the_day(tmp_path, settings, capsys, "html")
    assert page.index("Confirmed automation") < page.index("Conversations") < page.index("Automation rate")
    assert '<span class="muted">Confirmed automation</span><b>25.0%</b>' in page
