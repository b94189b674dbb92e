"""Who may act on the queue (members of its channel, or of a configured user group) and their names.

Answers are cached for a short while: a click costs no extra Slack call, and someone removed from
the channel loses the right within `ttl_s`. When Slack cannot say (an outage with the cache expired),
`allowed` raises `DirectoryUnavailable`: the caller keeps the action until Slack can, never refusing or
dropping it for that.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.shared import SharedState

log = logging.getLogger(__name__)


class DirectoryUnavailable(Exception):
    """Slack could not say who may act on the queue."""


class OperatorDirectory:
    def __init__(self, client: AsyncWebClient, shared: SharedState, group: str = "", ttl_s: float = 60.0) -> None:
        self._client = client
        self._shared = shared  # the cache, shared by the workers when Redis is configured
        self._group = group
        self._ttl_s = ttl_s

    async def allowed(self, user: str, channel: str) -> bool:
        if not user:
            return False
        if user in await self._cached(f"channel:{channel}", self._channel_members, channel):
            return True
        return bool(self._group) and user in await self._cached(f"group:{self._group}", self._group_users, self._group)

    async def name(self, user: str) -> str:
        """The operator's Slack name (display name, else real name), recorded on everything they do."""
        hit = await self._shared.get(f"slack-name:{user}")
        if hit is not None:
            return hit
        try:
            info = (await self._client.users_info(user=user))["user"]
        except (SlackApiError, aiohttp.ClientError, TimeoutError, KeyError, TypeError):
            log.warning("slack: users.info failed for an operator; using the user id")
            return user
        profile = info.get("profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or info.get("real_name") or info.get("name")
        name = str(name or user)
        await self._shared.put(f"slack-name:{user}", name, self._ttl_s * 60)
        return name

    async def _cached(self, key: str, load: Callable[[str], Awaitable[frozenset[str]]], arg: str) -> frozenset[str]:
        hit = await self._shared.get(f"slack-members:{key}")
        if hit is not None:
            return frozenset(json.loads(hit))
        try:
            members = await load(arg)
        except (SlackApiError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("slack: could not list %s: %s", key, exc)
            raise DirectoryUnavailable(f"slack: could not list {key}: {type(exc).__name__}") from None
        await self._shared.put(f"slack-members:{key}", json.dumps(sorted(members)), self._ttl_s)
        return members

    async def _channel_members(self, channel: str) -> frozenset[str]:
        members: set[str] = set()
        cursor = ""
        while True:
            page = await self._client.conversations_members(channel=channel, cursor=cursor or None, limit=1000)
            members.update(page.get("members") or [])
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or ""
            if not cursor:
                return frozenset(members)

    async def _group_users(self, group: str) -> frozenset[str]:
        page = await self._client.usergroups_users_list(usergroup=group)
        return frozenset(page.get("users") or [])


REFUSED = "Only members of the support queue can act on customer conversations — nothing was sent."


async def tell(client: AsyncWebClient, channel: str, user: str, text: str, thread_ts: str | None) -> None:
    """An ephemeral note only `user` sees; best effort (it is advice, not a delivery)."""
    if not channel or not user or not text:
        return
    kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
    try:
        await client.chat_postEphemeral(channel=channel, user=user, text=text, **kwargs)
    except Exception as exc:  # a lost hint must not break the handler
        log.warning("slack: chat.postEphemeral failed: %s", exc)
