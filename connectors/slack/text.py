"""Text between Slack's mrkdwn and plain text: what operators type reaches customers as they meant it."""

from __future__ import annotations

import html
import re

_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")
SECTION_LIMIT = 2900  # Slack refuses a section text over 3000 characters


def escape(text: str) -> str:
    """Customer text shown in Block Kit mrkdwn: &, < and > must not become markup or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def quote(text: str) -> str:
    return "\n".join("> " + line for line in escape(text).splitlines() or [""])


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_plain(text: str) -> str:
    """An operator's Slack message as the customer should read it: links unwrapped, entities decoded."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith(("@", "#", "!")):  # mentions and @here: show the label or nothing
            return label or ""
        if label and label != target and label not in target:
            return f"{label} ({target.removeprefix('mailto:')})"
        return (label or target).removeprefix("mailto:")

    return html.unescape(_LINK.sub(link, text)).strip()
