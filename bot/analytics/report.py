"""The desk's figures over a time window, computed from the event log.

Definitions (each conversation counts once, in the window its first message falls in):

- automated: the bot answered and no person was needed (no handoff, no operator action);
  `automation_rate` is automated / conversations. `resolved_by_bot` counts those the customer also
  confirmed with the Helped button.
- involved: an operator claimed it, replied, or sent or discarded a draft. A handoff alone is not
  involvement: a conversation waiting in the queue is involved only once an operator acts on it.
- bot-answered (`bot_answered`): the bot answered at least once and no operator was involved. What
  the customer did after the bot's first answer splits them into three parts that add up to
  bot_answered:
  - failed (`automated_failed`): the customer pressed "Talk to a person" (feedback `not_helpful`),
    a later customer message was negative (its `sentiment`), or the conversation was handed off
    after the answer. A handoff for `asked_for_human`, `repeated_question` or `negative_sentiment`
    is the customer's own verdict; one for any other reason (a follow-up the bot could not answer)
    still means the conversation waits for a person, so it is no automation either, and it leaves
    bot_answered (for involved) as soon as an operator acts. `failed_signals` counts the failed
    conversations per signal (one conversation can show several).
  - confirmed (`automated_confirmed`): not failed, and the customer confirmed the answer helped:
    feedback `helpful` (the Helped button) or `thanks` (the customer thanked the bot after an
    answer). Failed wins over confirmed whatever the order: a customer who pressed Helped and later
    asked for a person was not served by the bot alone, and the conservative figure is the honest one.
  - unconfirmed (`automated_unconfirmed`): neither; the customer went silent after the answer.
  `confirmed_automation_rate` is confirmed / conversations. "After the answer" compares ids within
  the event log (handoffs) and within the messages (sentiment), not clocks; the buttons only exist
  under a bot answer.
- ROI: operator time saved is priced for the confirmed and the unconfirmed bot-answered
  conversations separately; the headline (`operator_hours_saved`, `operator_cost_saved`,
  `net_saving`) counts both, `net_saving_confirmed` only the confirmed ones; failed ones never count.
- first response time (FRT): from the first customer message to the first bot answer or operator
  reply. `frt_bot_*` is the bot's first answer; `frt_human_*` is the wait for a person: from the
  first handoff (or the first customer message when an operator stepped in unasked) to the first
  operator reply. Percentiles are nearest-rank.
- resolution time: from the first customer message to the first resolution.
- reopen rate: conversations reopened after a resolution / conversations resolved.
- per topic: the topic of the conversation's first question the desk analysed (what the customer
  came for), else the conversation's last topic.
- per cohort: `pilot` (the bot may answer directly) against `copilot` (every question goes to an
  operator with the bot's draft), by the cohort recorded with the conversation's first decision
  (bot answer or handoff); conversations from before cohorts were recorded are in neither.
- per operator: the conversations they touched, their replies, the human FRT of the conversations
  they answered first, and the CSAT of the conversations they replied in last.

The per-conversation aggregation runs in SQL (one GROUP BY over the event log, and joins that return
only the conversations with a failure signal); Python walks one row per conversation.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from bot.config import AnalyticsSettings
from bot.domain.types import Author, EventType, FeedbackKind, Reason, Sentiment
from bot.storage.models import STUCK, Conversation, Delivery, Event, Feedback, Handoff, Message

TOUCHED = (EventType.CLAIMED, EventType.OPERATOR_REPLY, EventType.DRAFT_SENT, EventType.DRAFT_DISCARDED)
CONFIRMING = (FeedbackKind.HELPFUL, FeedbackKind.THANKS)  # the Helped button; thanks after an answer
# Handoff reasons that are the customer's own verdict on the bot's answer; any other later handoff is "handed_off".
VERDICTS = frozenset(str(r) for r in (Reason.ASKED_FOR_HUMAN, Reason.REPEATED_QUESTION, Reason.NEGATIVE_SENTIMENT))
PARTS = ("confirmed", "unconfirmed", "failed")
COHORTS = ("pilot", "copilot")  # bot/desk/pilot.py's Cohort values, as recorded in the decision events
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class WindowError(ValueError):
    """A `--since` value that is neither a duration (7d, 24h) nor a date."""


def parse_since(value: str, now: datetime | None = None) -> datetime:
    """`7d`, `24h`, `90m`, `2w` back from now, or an ISO date/time (UTC unless it says otherwise)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(value)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        expected = "a duration such as 7d, 24h, 30d or a date such as 2026-11-01"
        raise WindowError(f"--since: got {value!r}; expected {expected}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: p50 of [10, 20, 30, 40] is 20."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return max(0.0, (_utc(later) - _utc(earlier)).total_seconds())


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _avg(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 3) if values else None


def _secs(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class _Group:
    """Running figures for one topic, operator or day."""

    conversations: int = 0
    automated: int = 0
    involved: int = 0
    replies: int = 0
    parts: Counter[str] = field(default_factory=Counter)  # bot-answered conversations by PARTS
    frt: list[float] = field(default_factory=list)
    csat: list[int] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        return {
            "conversations": self.conversations,
            "automated": self.automated,
            "involved": self.involved,
            "automation_rate": _rate(self.automated, self.conversations),
            **{f"automated_{part}": self.parts[part] for part in PARTS},
            "confirmed_automation_rate": _rate(self.parts["confirmed"], self.conversations),
            "frt_p50_s": _secs(percentile(self.frt, 50)),
            "csat_avg": _avg(self.csat),
            "csat_count": len(self.csat),
        }


@dataclass
class _Outcomes:
    """What customers did after the bot's answers: the signals that split the bot-answered conversations."""

    confirmed: set[int] = field(default_factory=set)
    failed: defaultdict[int, set[str]] = field(default_factory=lambda: defaultdict(set))  # conversation -> signals

    def part(self, conversation_id: int) -> str:
        # Failed wins whatever the order: a Helped press does not undo a later request for a person.
        if conversation_id in self.failed:
            return "failed"
        return "confirmed" if conversation_id in self.confirmed else "unconfirmed"


def _outcomes(feedback: Any, later_handoffs: Any, negative: Any) -> _Outcomes:
    outcomes = _Outcomes()
    for conversation_id, kind, _ in feedback:
        if kind in CONFIRMING:
            outcomes.confirmed.add(conversation_id)
        elif kind == FeedbackKind.NOT_HELPFUL:  # the "Talk to a person" button, only ever under a bot answer
            outcomes.failed[conversation_id].add(FeedbackKind.NOT_HELPFUL)
    for conversation_id, data in later_handoffs:
        reasons = {str(reason) for reason in (data or {}).get("reasons", [])}
        outcomes.failed[conversation_id].update(reasons & VERDICTS or {"handed_off"})
    for conversation_id in negative:
        outcomes.failed[conversation_id].add("negative_message")
    return outcomes


def _first(type_: EventType) -> Any:
    return func.min(case((col(Event.type) == type_, col(Event.created_at)), else_=None))


def _any(condition: Any) -> Any:
    return func.max(case((condition, 1), else_=0))


async def build_report(
    sessions: async_sessionmaker[AsyncSession],
    analytics: AnalyticsSettings,
    since: datetime,
    until: datetime | None = None,
) -> dict[str, Any]:
    until = until or datetime.now(UTC)
    in_window = and_(col(Conversation.created_at) >= since, col(Conversation.created_at) < until)
    async with sessions() as session:
        rows = (await session.execute(_per_conversation(in_window))).all()
        actions = (
            await session.execute(
                select(col(Event.conversation_id), col(Event.operator), col(Event.type))
                .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
                .where(in_window, col(Event.type).in_(TOUCHED), col(Event.operator).is_not(None))
                .order_by(col(Event.id))
            )
        ).all()
        first_decision = (
            select(col(Event.conversation_id), func.min(col(Event.id)).label("event_id"))
            .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
            .where(in_window, col(Event.type).in_((EventType.BOT_ANSWER, EventType.HANDOFF)))
            .group_by(col(Event.conversation_id))
            .subquery()
        )
        # the first decision's topic (what the customer came for) and pilot cohort (bot/desk/pilot.py)
        opening: dict[int, tuple[str | None, str | None]] = {
            conversation_id: (topic, cohort)
            for conversation_id, topic, cohort in (
                await session.execute(
                    select(
                        col(Event.conversation_id),
                        col(Event.data)["topic"].as_string(),
                        col(Event.data)["cohort"].as_string(),
                    ).join(first_decision, first_decision.c.event_id == col(Event.id))
                )
            ).all()
        }
        feedback = (
            await session.execute(
                select(col(Feedback.conversation_id), col(Feedback.kind), col(Feedback.value))
                .join(Conversation, col(Conversation.id) == col(Feedback.conversation_id))
                .where(in_window)
                .order_by(col(Feedback.id))
            )
        ).all()
        later_handoffs = (await session.execute(_handoffs_after_answer(in_window))).all()
        negative = (await session.execute(_negative_after_answer(in_window))).scalars().all()
        handoffs = (
            await session.execute(
                select(col(Handoff.reasons))
                .join(Conversation, col(Conversation.id) == col(Handoff.conversation_id))
                .where(in_window)
            )
        ).all()
        escalation = col(Event.data)["escalation"].as_string()
        escalations = (
            await session.execute(
                select(escalation, func.count())
                .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
                .where(in_window, col(Event.type) == EventType.HANDOFF, escalation.is_not(None))
                .group_by(escalation)
            )
        ).all()
        sentiment = col(Event.data)["sentiment"].as_string()
        moods = (
            await session.execute(
                select(sentiment, func.count())
                .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
                .where(in_window, col(Event.type).in_((EventType.BOT_ANSWER, EventType.HANDOFF)))
                .group_by(sentiment)
            )
        ).all()
        tokens = (
            await session.execute(
                select(
                    func.sum(col(Event.data)["tokens_in"].as_integer()),
                    func.sum(col(Event.data)["tokens_out"].as_integer()),
                )
                .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
                .where(in_window, col(Event.type).in_((EventType.BOT_ANSWER, EventType.HANDOFF, EventType.LLM_USAGE)))
            )
        ).one()
        stuck = (
            await session.execute(
                select(col(Delivery.channel), col(Delivery.status), func.count())
                .where(col(Delivery.status).in_(STUCK))
                .group_by(col(Delivery.channel), col(Delivery.status))
            )
        ).all()
    outcomes = _outcomes(feedback, later_handoffs, negative)
    report = _assemble(rows, opening, actions, feedback, outcomes, handoffs, moods, tokens, analytics, since, until)
    # handoffs by escalation topic (prompts/escalation.yaml): the risks the bot never answered alone
    report["escalations"] = {str(name): int(n) for name, n in sorted(escalations, key=lambda e: -e[1])}
    # deliveries no worker sends on its own any more, whenever queued (`relaydesk outbox` lists and re-queues them)
    report["stuck_deliveries"] = {f"{channel} {status}": int(n) for channel, status, n in sorted(stuck)}
    return report


def _handoffs_after_answer(in_window: Any) -> Any:
    """Each handoff after its conversation's first bot answer, with its data (the reasons).

    Event ids give the order: they grow as events are written, while clocks may be rewritten (imports, tests).
    """
    first_answer = (
        select(col(Event.conversation_id).label("conversation_id"), func.min(col(Event.id)).label("event_id"))
        .join(Conversation, col(Conversation.id) == col(Event.conversation_id))
        .where(in_window, col(Event.type) == EventType.BOT_ANSWER)
        .group_by(col(Event.conversation_id))
        .subquery()
    )
    after = and_(first_answer.c.conversation_id == col(Event.conversation_id), col(Event.id) > first_answer.c.event_id)
    return (
        select(col(Event.conversation_id), col(Event.data))
        .join(first_answer, after)
        .where(col(Event.type) == EventType.HANDOFF)
    )


def _negative_after_answer(in_window: Any) -> Any:
    """The conversations with a negative customer message after the bot's first answer (message ids give the order)."""
    first_reply = (
        select(col(Message.conversation_id).label("conversation_id"), func.min(col(Message.id)).label("message_id"))
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .where(in_window, col(Message.author) == Author.BOT.value)
        .group_by(col(Message.conversation_id))
        .subquery()
    )
    after = and_(
        first_reply.c.conversation_id == col(Message.conversation_id), col(Message.id) > first_reply.c.message_id
    )
    return (
        select(col(Message.conversation_id))
        .distinct()
        .join(first_reply, after)
        .where(
            col(Message.author) == Author.CUSTOMER.value,
            col(Message.meta)["sentiment"].as_string() == Sentiment.NEGATIVE.value,
        )
    )


def _per_conversation(in_window: Any) -> Any:
    event_type = col(Event.type)
    return (
        select(
            col(Conversation.id),
            col(Conversation.created_at),
            col(Conversation.topic),
            _first(EventType.MESSAGE_IN).label("first_in"),
            _first(EventType.BOT_ANSWER).label("first_bot"),
            _first(EventType.HANDOFF).label("first_handoff"),
            _first(EventType.OPERATOR_REPLY).label("first_human"),
            _first(EventType.RESOLVED).label("first_resolved"),
            _any(event_type.in_(TOUCHED)).label("touched"),
            _any(event_type == EventType.REOPENED).label("reopened"),
            _any(and_(event_type == EventType.RESOLVED, col(Event.operator).is_(None))).label("by_bot"),
            func.sum(case((event_type == EventType.OPERATOR_REPLY, 1), else_=0)).cast(Integer).label("replies"),
        )
        .select_from(Conversation)
        .outerjoin(Event, col(Event.conversation_id) == col(Conversation.id))
        .where(in_window)
        .group_by(col(Conversation.id), col(Conversation.created_at), col(Conversation.topic))
    )


def _assemble(
    rows: Any,
    opening: dict[int, tuple[str | None, str | None]],
    actions: Any,
    feedback: Any,
    outcomes: _Outcomes,
    handoffs: Any,
    moods: Any,
    tokens: Any,
    analytics: AnalyticsSettings,
    since: datetime,
    until: datetime,
) -> dict[str, Any]:
    # who did what: operators per conversation, the last replier (CSAT goes to them), replies per operator
    touched_by: dict[int, set[str]] = defaultdict(set)
    last_replier: dict[int, str] = {}
    first_replier: dict[int, str] = {}
    per_operator: dict[str, _Group] = defaultdict(_Group)
    for conversation_id, operator, type_ in actions:
        touched_by[conversation_id].add(operator)
        if type_ == EventType.OPERATOR_REPLY:
            per_operator[operator].replies += 1
            last_replier[conversation_id] = operator
            first_replier.setdefault(conversation_id, operator)
    csat_of: dict[int, list[int]] = defaultdict(list)
    buttons: Counter[str] = Counter()
    for conversation_id, kind, value in feedback:
        if kind == FeedbackKind.CSAT:
            csat_of[conversation_id].append(int(value))
        else:
            buttons[kind] += 1

    per_topic: dict[str, _Group] = defaultdict(_Group)
    per_cohort: dict[str, _Group] = {cohort: _Group() for cohort in COHORTS}
    per_day: dict[date, _Group] = {}
    day = since.astimezone(UTC).date()
    while day <= (until - timedelta(microseconds=1)).astimezone(UTC).date():
        per_day[day] = _Group()
        day += timedelta(days=1)
    frt: list[float] = []
    frt_bot: list[float] = []
    frt_human: list[float] = []
    resolution: list[float] = []
    totals = Counter[str]()
    failed_signals = Counter[str]()
    for row in rows:
        conversation_id = row.id
        bot_s = _seconds(row.first_bot, row.first_in)
        wait_from = row.first_handoff if row.first_handoff is not None else row.first_in
        if row.first_human is not None and wait_from is not None and _utc(wait_from) > _utc(row.first_human):
            wait_from = row.first_in
        human_s = _seconds(row.first_human, wait_from)
        first_s = min((s for s in (bot_s, _seconds(row.first_human, row.first_in)) if s is not None), default=None)
        resolved_s = _seconds(row.first_resolved, row.first_in)
        involved = bool(row.touched)
        automated = row.first_bot is not None and row.first_handoff is None and not involved
        # bot-answered: a later handoff nobody has acted on yet is still the bot's (and a failure, see above)
        part = outcomes.part(conversation_id) if row.first_bot is not None and not involved else None
        csat = csat_of.get(conversation_id, [])
        topic, cohort = opening.get(conversation_id, (None, None))
        groups = [per_topic[topic or row.topic or "(none)"]]
        created = _utc(row.created_at).date()
        groups.append(per_day.setdefault(created, _Group()))
        if cohort in per_cohort:  # history from before cohorts were recorded is in neither
            groups.append(per_cohort[cohort])
        for group in groups:
            group.conversations += 1
            group.automated += automated
            group.involved += involved
            if part:
                group.parts[part] += 1
            group.csat.extend(csat)
            if first_s is not None:
                group.frt.append(first_s)
        for operator in touched_by.get(conversation_id, ()):
            per_operator[operator].conversations += 1
            per_operator[operator].involved += 1
        if human_s is not None and conversation_id in first_replier:
            per_operator[first_replier[conversation_id]].frt.append(human_s)
        if csat and conversation_id in last_replier:
            per_operator[last_replier[conversation_id]].csat.extend(csat)
        flags = {
            "conversations": True,
            "automated": automated,
            "involved": involved,
            "handed_off": row.first_handoff is not None,
            "resolved": row.first_resolved is not None,
            "resolved_by_bot": bool(row.by_bot),
            "reopened": bool(row.reopened),
        }
        totals.update({name: int(flag) for name, flag in flags.items()})  # counts: an empty Counter keeps a bool
        if part:
            totals.update((part, "bot_answered"))
        if part == "failed":
            failed_signals.update(outcomes.failed[conversation_id])
        for values, value in ((frt, first_s), (frt_bot, bot_s), (frt_human, human_s), (resolution, resolved_s)):
            if value is not None:
                values.append(value)

    all_csat = [v for values in csat_of.values() for v in values]
    reasons: Counter[str] = Counter(str(r) for (found,) in handoffs for r in (found or []))
    tokens_in, tokens_out = int(tokens[0] or 0), int(tokens[1] or 0)
    conversations = totals["conversations"]
    return {
        "window": {"since": since.astimezone(UTC).isoformat(), "until": until.astimezone(UTC).isoformat()},
        "conversations": conversations,
        "automated": totals["automated"],
        "involved": totals["involved"],
        "handed_off": totals["handed_off"],
        "automation_rate": _rate(totals["automated"], conversations),
        "bot_answered": totals["bot_answered"],
        **{f"automated_{part}": totals[part] for part in PARTS},
        "confirmed_automation_rate": _rate(totals["confirmed"], conversations),
        "failed_signals": dict(failed_signals.most_common()),
        "involvement_rate": _rate(totals["involved"], conversations),
        "resolved_by_bot": totals["resolved_by_bot"],
        "frt_p50_s": _secs(percentile(frt, 50)),
        "frt_p90_s": _secs(percentile(frt, 90)),
        "frt_bot_p50_s": _secs(percentile(frt_bot, 50)),
        "frt_bot_p90_s": _secs(percentile(frt_bot, 90)),
        "frt_human_p50_s": _secs(percentile(frt_human, 50)),
        "frt_human_p90_s": _secs(percentile(frt_human, 90)),
        "resolved": totals["resolved"],
        "resolution_p50_s": _secs(percentile(resolution, 50)),
        "resolution_p90_s": _secs(percentile(resolution, 90)),
        "csat_avg": _avg(all_csat),
        "csat_count": len(all_csat),
        "helpful": buttons["helpful"],
        "not_helpful": buttons["not_helpful"],
        "thanks": buttons["thanks"],
        "reopened": totals["reopened"],
        "reopen_rate": _rate(totals["reopened"], totals["resolved"]),
        "handoff_reasons": dict(reasons.most_common()),
        "sentiment": {str(mood or "unknown"): int(n) for mood, n in sorted(moods, key=lambda m: -m[1])},
        "per_topic": {topic: g.figures() for topic, g in sorted(per_topic.items(), key=lambda t: -t[1].conversations)},
        "per_cohort": {
            cohort: {**g.figures(), "frt_p90_s": _secs(percentile(g.frt, 90))} for cohort, g in per_cohort.items()
        },
        "per_operator": {
            name: {
                "conversations": g.conversations,
                "replies": g.replies,
                "frt_p50_s": _secs(percentile(g.frt, 50)),
                "frt_p90_s": _secs(percentile(g.frt, 90)),
                "csat_avg": _avg(g.csat),
                "csat_count": len(g.csat),
            }
            for name, g in sorted(per_operator.items())
        },
        "per_day": [{"date": d.isoformat(), **g.figures()} for d, g in sorted(per_day.items())],
        "roi": _roi(totals["confirmed"], totals["unconfirmed"], tokens_in, tokens_out, analytics),
    }


def _roi(
    confirmed: int, unconfirmed: int, tokens_in: int, tokens_out: int, analytics: AnalyticsSettings
) -> dict[str, Any]:
    """Operator time the bot saved, priced; failed bot answers are never savings (a person was needed after all)."""
    hours_of = {
        part: count * analytics.handling_minutes / 60
        for part, count in (("confirmed", confirmed), ("unconfirmed", unconfirmed))
    }
    hours = sum(hours_of.values())
    saved = hours * analytics.hourly_cost
    spend = tokens_in / 1000 * analytics.price_input_per_1k + tokens_out / 1000 * analytics.price_output_per_1k
    recorded = bool(tokens_in or tokens_out)
    return {
        "currency": analytics.currency,
        "headline": "confirmed + unconfirmed",  # what operator_hours_saved, operator_cost_saved and net_saving count
        "operator_hours_saved": round(hours, 2),
        "operator_cost_saved": round(saved, 2),
        **{f"operator_hours_saved_{part}": round(h, 2) for part, h in hours_of.items()},
        **{f"operator_cost_saved_{part}": round(h * analytics.hourly_cost, 2) for part, h in hours_of.items()},
        "llm_tokens_in": tokens_in,
        "llm_tokens_out": tokens_out,
        "llm_spend": round(spend, 4),
        "net_saving": round(saved - spend, 2),
        "net_saving_confirmed": round(hours_of["confirmed"] * analytics.hourly_cost - spend, 2),
        "tokens_recorded": recorded,
        # Every LLM call records its tokens (answers, handoffs, the reply judge), so none means none were made.
        "note": "" if recorded else "no LLM calls in this window (offline brain), so the LLM spend is 0",
    }
