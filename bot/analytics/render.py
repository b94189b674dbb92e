"""The report as text: a terminal table, CSV, JSON, or one self-contained HTML page with inline SVG charts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

SUMMARY = (
    ("conversations", "conversations"),
    ("confirmed_automation_rate", "confirmed automation rate"),
    ("automation_rate", "automation rate"),
    ("bot_answered", "bot answers, no operator"),
    ("automated_confirmed", "bot answers confirmed"),
    ("automated_unconfirmed", "bot answers unconfirmed"),
    ("automated_failed", "bot answers failed"),
    ("involvement_rate", "involvement rate"),
    ("handed_off", "handed off"),
    ("resolved_by_bot", "resolved by bot (Helped)"),
    ("frt_p50_s", "FRT p50, s"),
    ("frt_p90_s", "FRT p90, s"),
    ("frt_bot_p50_s", "bot FRT p50, s"),
    ("frt_human_p50_s", "human FRT p50, s"),
    ("frt_human_p90_s", "human FRT p90, s"),
    ("resolution_p50_s", "resolution p50, s"),
    ("csat_avg", "CSAT avg (1-5)"),
    ("csat_count", "CSAT ratings"),
    ("reopen_rate", "reopen rate"),
)


def render(report: dict[str, Any], fmt: str) -> str:
    renderers: dict[str, Callable[[dict[str, Any]], str]] = {
        "json": lambda r: json.dumps(r, ensure_ascii=False),
        "table": render_table,
        "csv": render_csv,
        "html": render_html,
    }
    return renderers[fmt](report)


def _show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _grid(headers: Sequence[str], rows: list[list[Any]]) -> list[str]:
    cells = [[str(h) for h in headers]] + [[_show(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    return [line(cells[0]), "  ".join("-" * w for w in widths), *(line(row) for row in cells[1:])]


# the bot-answered conversations by what the customer did next (bot/analytics/report.py)
PARTS = ("automated_confirmed", "automated_unconfirmed", "automated_failed", "confirmed_automation_rate")
TOPIC_COLUMNS = ("conversations", "automated", "involved", "automation_rate", *PARTS, "frt_p50_s", "csat_avg")
OPERATOR_COLUMNS = ("conversations", "replies", "frt_p50_s", "frt_p90_s", "csat_avg", "csat_count")
DAY_COLUMNS = ("conversations", "automated", "automation_rate", *PARTS, "frt_p50_s", "csat_avg")
COHORT_COLUMNS = (
    "conversations",
    "automated",
    "automation_rate",
    *PARTS,
    "frt_p50_s",
    "frt_p90_s",
    "csat_avg",
    "csat_count",
)


def _roi_lines(roi: dict[str, Any]) -> list[str]:
    """The ROI in words: the headline, what it counts, and the floor that counts confirmed answers only."""
    money = roi["currency"]
    confirmed, unconfirmed = roi["operator_hours_saved_confirmed"], roi["operator_hours_saved_unconfirmed"]
    return [
        f"{roi['operator_hours_saved']} operator hours saved = {roi['operator_cost_saved']} {money} "
        f"(confirmed {confirmed} h + unconfirmed {unconfirmed} h; "
        f"failed bot answers are not savings); LLM spend {roi['llm_spend']} {money}; net {roi['net_saving']} {money}",
        f"counting only the answers customers confirmed: net {roi['net_saving_confirmed']} {money}",
    ]


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def render_table(report: dict[str, Any]) -> str:
    window = report["window"]
    out = [f"relaydesk report {window['since']} .. {window['until']}", ""]
    out += _grid(("metric", "value"), [[label, report[key]] for key, label in SUMMARY])
    roi = report["roi"]
    first, floor = _roi_lines(roi)
    out += ["", f"ROI: {first}", f"  ({floor})"]
    if roi["note"]:
        out.append(f"  ({roi['note']})")
    for title, key, columns in (
        ("pilot vs copilot", "per_cohort", COHORT_COLUMNS),
        ("per topic", "per_topic", TOPIC_COLUMNS),
        ("per operator", "per_operator", OPERATOR_COLUMNS),
    ):
        out += ["", title]
        out += _grid(
            (key.split("_")[1], *columns), [[name, *(v[c] for c in columns)] for name, v in report[key].items()]
        )
    out += ["", "handoff reasons: " + _counts(report["handoff_reasons"])]
    out += ["escalations: " + _counts(report.get("escalations", {}))]
    out += ["failed bot answers, by signal: " + _counts(report["failed_signals"])]
    out += ["sentiment: " + _counts(report["sentiment"])]
    out += ["stuck deliveries (relaydesk outbox): " + _counts(report.get("stuck_deliveries", {}))]
    out += ["", "per day"]
    out += _grid(("date", *DAY_COLUMNS), [[d["date"], *(d[c] for c in DAY_COLUMNS)] for d in report["per_day"]])
    return "\n".join(out)


def render_csv(report: dict[str, Any]) -> str:
    """One long table: section, key, metric, value.

    Sections: summary, roi, handoff_reasons, failed_signals, sentiment, escalations, stuck_deliveries, per_cohort,
    per_topic, per_operator, per_day.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("section", "key", "metric", "value"))
    for key, _ in SUMMARY:
        writer.writerow(("summary", "", key, _csv(report[key])))
    for metric, value in report["roi"].items():
        writer.writerow(("roi", "", metric, _csv(value)))
    for section in ("handoff_reasons", "failed_signals", "sentiment", "escalations", "stuck_deliveries"):
        for name, count in report.get(section, {}).items():
            writer.writerow((section, name, "count", count))
    for section in ("per_cohort", "per_topic", "per_operator"):
        for name, figures in report[section].items():
            for metric, value in figures.items():
                writer.writerow((section, name, metric, _csv(value)))
    for day in report["per_day"]:
        for metric, value in day.items():
            if metric != "date":
                writer.writerow(("per_day", day["date"], metric, _csv(value)))
    return buffer.getvalue()


def _csv(value: Any) -> Any:
    return "" if value is None else value


# -- HTML ---------------------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2433;background:#f7f8fa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:24px 0 8px}.muted{color:#69707d}
.tiles{display:flex;flex-wrap:wrap;gap:12px}.tile{background:#fff;border:1px solid #e3e6eb;border-radius:8px;
padding:10px 14px;min-width:130px}.tile b{display:block;font-size:22px}.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{background:#fff;border:1px solid #e3e6eb;border-radius:8px;margin:0;padding:8px}
figcaption{font-weight:600;margin:0 0 4px}table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #e3e6eb;padding:4px 10px;text-align:right}th:first-child,td:first-child{text-align:left}
"""


def _fmt_rate(value: Any) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _percent(rate: float | None) -> float | None:
    return None if rate is None else round(rate * 100, 1)


def _fmt_s(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


Series = tuple[str, list[float | None], str]  # name (shown in the legend when there are several), values, colour


def _chart(title: str, days: list[str], series: Sequence[Series], kind: str, top: float | None) -> str:
    """A 480x180 SVG bar or line chart of one or more series; missing values leave a gap."""
    width, height, left, bottom, pad = 480, 180, 40, 22, 8
    known = [v for _, values, _ in series for v in values if v is not None]
    peak = top if top is not None else max(known, default=0.0) or 1.0
    plot_w, plot_h = width - left - pad, height - bottom - pad
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
        f'<line x1="{left}" y1="{pad + plot_h}" x2="{width - pad}" y2="{pad + plot_h}" stroke="#9aa1ad"/>',
        f'<text x="{left - 4}" y="{pad + 10}" font-size="10" text-anchor="end">{peak:g}</text>',
        f'<text x="{left - 4}" y="{pad + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    for name, values, color in series:
        parts += _marks(name if len(series) > 1 else "", days, values, color, kind, peak, (left, pad, plot_w, plot_h))
    if len(series) > 1:
        for i, (name, _, color) in enumerate(series):
            parts.append(
                f'<text x="{width - pad}" y="{pad + 10 + 12 * i}" font-size="10" text-anchor="end" '
                f'fill="{color}">{escape(name)}</text>'
            )
    for i in sorted({0, len(days) - 1}) if days else []:
        anchor = "start" if i == 0 else "end"
        x = left if i == 0 else width - pad
        parts.append(f'<text x="{x}" y="{height - 6}" font-size="10" text-anchor="{anchor}">{escape(days[i])}</text>')
    parts.append("</svg>")
    return f"<figure><figcaption>{escape(title)}</figcaption>{''.join(parts)}</figure>"


def _marks(
    name: str,
    days: list[str],
    values: list[float | None],
    color: str,
    kind: str,
    peak: float,
    frame: tuple[int, int, float, float],
) -> list[str]:
    """One series' bars, or its points and lines, inside the plot `frame` (left, top, width, height)."""
    left, pad, plot_w, plot_h = frame
    step = plot_w / max(len(values), 1)
    parts: list[str] = []
    points: list[str] = []
    for i, value in enumerate(values):
        x = left + i * step
        if value is None:
            if len(points) > 1:
                parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>')
            points = []
            continue
        h = plot_h * min(value / peak, 1.0) if peak else 0.0
        label = f"<title>{escape(days[i])}: {escape(name + ' ' if name else '')}{value:g}</title>"
        if kind == "bar":
            parts.append(
                f'<rect x="{x + 1:.1f}" y="{pad + plot_h - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
                f'fill="{color}">{label}</rect>'
            )
        else:
            cx = x + step / 2
            points.append(f"{cx:.1f},{pad + plot_h - h:.1f}")
            parts.append(f'<circle cx="{cx:.1f}" cy="{pad + plot_h - h:.1f}" r="2.5" fill="{color}">{label}</circle>')
    if len(points) > 1:
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(points)}"/>')
    return parts


def _html_table(first: str, columns: Sequence[str], rows: dict[str, dict[str, Any]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in (first, *columns))
    body = []
    for name, figures in rows.items():
        cells = []
        for c in columns:
            value = figures[c]
            text = _fmt_rate(value) if c.endswith("_rate") else _fmt_s(value) if c.endswith("_s") else _show(value)
            cells.append(f"<td>{escape(text)}</td>")
        body.append(f"<tr><td>{escape(name)}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(report: dict[str, Any]) -> str:
    days = [d["date"] for d in report["per_day"]]
    series = report["per_day"]
    frt_min = [None if d["frt_p50_s"] is None else round(d["frt_p50_s"] / 60, 2) for d in series]
    automation = [_percent(d["automation_rate"]) for d in series]
    confirmed = [_percent(d["confirmed_automation_rate"]) for d in series]
    charts = "".join(
        (
            _chart("Conversations per day", days, [("", [d["conversations"] for d in series], "#3b6fd8")], "bar", None),
            _chart("First response time p50 (min)", days, [("", frt_min, "#d8793b")], "line", None),
            _chart(
                "Automation rate (%): all and confirmed",
                days,
                [("all", automation, "#9ccfb5"), ("confirmed", confirmed, "#2f9e6a")],
                "line",
                100.0,
            ),
            _chart("CSAT average (1-5)", days, [("", [d["csat_avg"] for d in series], "#8a4fd8")], "line", 5.0),
        )
    )
    tiles = "".join(
        f'<div class="tile"><span class="muted">{escape(label)}</span><b>{escape(text)}</b></div>'
        for label, text in (
            ("Confirmed automation", _fmt_rate(report["confirmed_automation_rate"])),  # the honest headline first
            ("Conversations", _show(report["conversations"])),
            ("Automation rate", _fmt_rate(report["automation_rate"])),
            (
                "Bot answers: confirmed / unconfirmed / failed",
                " / ".join(_show(report[f"automated_{part}"]) for part in ("confirmed", "unconfirmed", "failed")),
            ),
            ("Involvement rate", _fmt_rate(report["involvement_rate"])),
            ("FRT p50 / p90", f"{_fmt_s(report['frt_p50_s'])} / {_fmt_s(report['frt_p90_s'])}"),
            ("Human FRT p50", _fmt_s(report["frt_human_p50_s"])),
            ("Resolution p50", _fmt_s(report["resolution_p50_s"])),
            ("CSAT", f"{_show(report['csat_avg'])} ({report['csat_count']})"),
            ("Reopen rate", _fmt_rate(report["reopen_rate"])),
        )
    )
    roi = report["roi"]
    roi_lines = "".join(f"<p>{escape(line[0].upper() + line[1:])}.</p>" for line in _roi_lines(roi))
    counted = ("handoff_reasons", "failed_signals", "sentiment", "escalations", "stuck_deliveries")
    reasons, failures, moods, escalations, stuck = (escape(_counts(report.get(key, {}))) for key in counted)
    window = report["window"]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>relaydesk report</title><style>{CSS}</style></head><body>"
        f"<h1>relaydesk report</h1><p class=muted>{escape(window['since'])} .. {escape(window['until'])}</p>"
        f'<div class="tiles">{tiles}</div>'
        f"<h2>Over time</h2><div class=charts>{charts}</div>"
        f"<h2>Pilot vs copilot</h2>{_html_table('cohort', COHORT_COLUMNS, report['per_cohort'])}"
        "<p class=muted>pilot: the bot answers confident questions itself; "
        "copilot: every question goes to an operator with the bot's draft.</p>"
        f"<h2>Per operator</h2>{_html_table('operator', OPERATOR_COLUMNS, report['per_operator'])}"
        f"<h2>Per topic</h2>{_html_table('topic', TOPIC_COLUMNS, report['per_topic'])}"
        f"<h2>Handoffs and mood</h2><p>Handoff reasons: {reasons}</p><p>Escalation topics: {escalations}</p>"
        f"<p>Failed bot answers, by signal: {failures}</p><p>Sentiment: {moods}</p>"
        f"<p>Stuck deliveries (<code>relaydesk outbox</code>): {stuck}</p>"
        "<p class=muted>A bot answer is confirmed when the customer pressed Helped or thanked the bot, failed "
        "when they asked for a person, repeated the question, were negative, or were handed off after it.</p>"
        f"<h2>Return on investment</h2>{roi_lines}"
        + (f"<p class=muted>{escape(roi['note'])}</p>" if roi["note"] else "")
        + "</body></html>\n"
    )
