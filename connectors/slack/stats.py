"""`/relaydesk stats`: today's figures from `bot.analytics.report`, as Block Kit for the channel.

"Today" starts at midnight UTC, or at midnight in `business_hours.timezone` when the deployment
sets one. The figures are exactly `relaydesk report`'s (same function, same definitions); this
module only picks the ones an operator wants at a glance and formats them. `summary()` is pure
(report in, `(text, blocks)` out) so the layout can be tested without Slack.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.config import Settings
from bot.domain.types import Reason
from connectors.slack.cards import Blocks
from connectors.slack.text import clip, escape

log = logging.getLogger(__name__)

TOP = 5  # reasons, topics and operators listed in the summary
USAGE = "Usage: `/relaydesk` (the queue now), `/relaydesk stats` (today's summary), `/relaydesk help`."
HELP = (
    "*relaydesk* commands:\n"
    "• `/relaydesk` — how many conversations wait for a person and how many are being handled (only you see it)\n"
    "• `/relaydesk stats` — today's summary, posted to this channel: conversations, automation, handoffs, "
    "first response and resolution times, CSAT, top reasons and topics, replies per operator (operators only)\n"
    "• `/relaydesk help` — this list"
)
REFUSED = "Only members of the support queue can see the desk's figures."


def zone_of(settings: Settings) -> tzinfo:
    """`business_hours.timezone` when the config has one (and it is a real zone), else UTC."""
    name = str(getattr(getattr(settings, "business_hours", None), "timezone", "") or "")
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        log.warning("slack: business_hours.timezone %r is not a known time zone; /relaydesk stats uses UTC", name)
        return UTC


def start_of_day(now: datetime, zone: tzinfo) -> datetime:
    """Midnight of `now`'s day in `zone` (a DST day still starts at its own 00:00)."""
    local = now.astimezone(zone)
    return datetime(local.year, local.month, local.day, tzinfo=zone)


Report = Callable[[datetime], Awaitable[dict[str, Any]]]
"""The desk's report since a moment (`App.report`: bot.analytics.report over the desk's database)."""


class StatsCommand:
    """Computes today's report; `clock` is the time source (a test pins the day with it)."""

    def __init__(self, report: Report, settings: Settings, clock: Callable[[], datetime] | None = None) -> None:
        self._report = report
        self._settings = settings
        self.clock = clock or (lambda: datetime.now(UTC))

    async def today(self) -> tuple[str, Blocks]:
        zone = zone_of(self._settings)
        since = start_of_day(self.clock(), zone)
        report = await self._report(since)
        return summary(report, since, _zone_name(zone))


def _zone_name(zone: tzinfo) -> str:
    return "UTC" if zone is UTC else str(getattr(zone, "key", zone))


# -- formatting ------------------------------------------------------------------------------------


_UNITS = (("s", 1, 60), ("min", 60, 3600), ("h", 3600, 86400), ("d", 86400, float("inf")))


def duration(seconds: float | None) -> str:
    """< 0.1 s, 12 s, 4.5 min, 2.1 h, 1.5 d; — when there is nothing to measure."""
    if seconds is None:
        return "—"
    if seconds < 0.1:
        return "< 0.1 s"
    unit, size = next((u, n) for u, n, upto in _UNITS if seconds < upto)
    value = seconds / size
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.0f}%"


def _field(title: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": f"*{title}*\n{value}"}


def _listing(title: str, lines: list[str], empty: str) -> dict[str, Any]:
    body = "\n".join(f"• {line}" for line in lines) if lines else f"_{empty}_"
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(f"*{title}*\n{body}")}}


def summary(report: dict[str, Any], since: datetime, zone: str = "UTC") -> tuple[str, Blocks]:
    """The fallback text and the blocks of today's summary."""
    day = since.strftime("%a %d %b")
    conversations = int(report["conversations"])
    csat = report["csat_avg"]
    csat_text = "—" if csat is None else f"{csat:.2f} ({report['csat_count']} rated)"
    text = (
        f"Today ({day}, since 00:00 {zone}): {conversations} conversations, "
        f"{report['automated']} automated ({percent(report['automation_rate'])}), "
        f"{report['handed_off']} handed off, CSAT {csat_text}"
    )
    reasons = [
        f"{escape(Reason.label_of(reason))} — {count}"
        for reason, count in list(report["handoff_reasons"].items())[:TOP]
    ]
    topics = [
        f"{escape(topic)} — {figures['conversations']} ({figures['automated']} automated)"
        for topic, figures in list(report["per_topic"].items())[:TOP]
    ]
    operators = sorted(report["per_operator"].items(), key=lambda item: (-item[1]["replies"], item[0]))
    people = [
        f"{escape(name)} — {figures['replies']} {'reply' if figures['replies'] == 1 else 'replies'} "
        f"in {figures['conversations']} conversation{'' if figures['conversations'] == 1 else 's'}"
        for name, figures in operators[:TOP]
    ]
    blocks: Blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"📊 Today at the desk — {day}", "emoji": True}},
        {
            "type": "section",
            "fields": [
                _field("Conversations", str(conversations)),
                _field("Automated", f"{report['automated']} ({percent(report['automation_rate'])})"),
                _field("Handed off", str(report["handed_off"])),
                _field("Resolved", f"{report['resolved']} ({report['reopened']} reopened)"),
                _field(
                    "First response p50",
                    f"bot {duration(report['frt_bot_p50_s'])} · human {duration(report['frt_human_p50_s'])}",
                ),
                _field("Resolution p50", duration(report["resolution_p50_s"])),
                _field("CSAT", csat_text),
                _field("Helped / not helpful", f"{report['helpful']} / {report['not_helpful']}"),
            ],
        },
        _listing("Top handoff reasons", reasons, "no handoffs"),
        _listing("Top topics", topics, "no conversations yet"),
        _listing("Operators", people, "no operator replies yet"),
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"Since 00:00 {escape(zone)} · the full report: `relaydesk report --since 1d`",
                }
            ],
        },
    ]
    return text, blocks
