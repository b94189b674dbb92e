"""A conversation's thread in Slack as the core stores it: "CHANNEL:TS" (the root card's channel and ts)."""

from __future__ import annotations


def thread_ref(channel: str, ts: str) -> str:
    return f"{channel}:{ts}"


def split_ref(ref: str) -> tuple[str, str]:
    channel, _, ts = ref.partition(":")
    return channel, ts
