"""A worker on a Chroma server follows what the `relaydesk kb ingest` job published; it never indexes.

Its own knowledge folder (in its image) is only compared with the collection's version, so that a
worker of an older or a newer deploy says so in its log; it answers from whatever the job indexed.
Every `knowledge.reload_s` seconds it reads the published state (one record) and, when a job changed
it, forgets its cached articles and loads the classifier the job trained.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.hooks import Hook, RepeatedFailure
from bot.knowledge.index import KnowledgeIndex
from bot.knowledge.published import Published, PublishedKnowledge
from bot.knowledge.version import VersionError, read_version

log = logging.getLogger(__name__)


class KnowledgeFollower:
    def __init__(self, index: KnowledgeIndex, published: PublishedKnowledge, folder: Path, interval_s: float) -> None:
        self._index = index
        self._published = published
        self._folder = folder
        self.interval_s = interval_s
        self._seen: Published | None = None
        self._error_hooks: list[Hook] = []
        self._failure = RepeatedFailure(log, "knowledge", self._error_hooks)

    @property
    def published(self) -> Published | None:
        """What this worker answers from: the state it last loaded."""
        return self._seen

    def on_error(self, hook: Hook) -> None:
        """Call `hook(message)` when taking a new ingest fails (said once, until it succeeds)."""
        self._error_hooks.append(hook)

    async def start(self) -> None:
        """Load what the collection holds now (the classifier the job trained) and say how it compares."""
        state = await asyncio.to_thread(self._published.state)
        await self._index.prepare_classifier()
        self._seen = state
        if state is not None:
            log.info("knowledge: answering from version %s, ingested by `relaydesk kb ingest`", state.version)
        await asyncio.to_thread(self._compare, state)

    async def check(self) -> bool:
        """Take a new ingest if a job published one since the last check; True if it did."""
        state = await asyncio.to_thread(self._published.state)
        if state == self._seen:
            return False
        try:
            await self._index.reload()
        except Exception as exc:  # e.g. Chroma is down: this worker keeps answering as before, and tries again
            self._failure.report(
                f"Loading knowledge version {state and state.version} failed ({type(exc).__name__}: {exc})."
            )
            return False
        was, self._seen = self._seen, state
        self._failure.clear()
        log.info("knowledge: now answering from version %s (was %s)", state and state.version, was and was.version)
        await asyncio.to_thread(self._compare, state)
        return True

    async def watch(self) -> None:
        """Poll until cancelled."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except Exception:  # Chroma unreachable for a moment: the next poll tries again
                log.exception("knowledge: the check for a new ingest failed")

    def _compare(self, state: Published | None) -> None:
        if state is None:
            if self._index.count() == 0:
                log.warning(
                    "knowledge: the collection is empty: run `relaydesk kb ingest` (workers on a Chroma server "
                    "do not index their folder); until then no question is answered from articles"
                )
            else:
                log.warning(
                    "knowledge: the collection records no knowledge version (it was indexed before ingest "
                    "became a job): run `relaydesk kb ingest`"
                )
            return
        try:
            own = read_version(self._folder)
        except VersionError:  # a worker needs no folder of its own on a Chroma server
            return
        if own < state.version:
            log.warning(
                "knowledge: this worker's folder is version %s, older than the collection's version %s: "
                "it answers from version %s",
                own,
                state.version,
                state.version,
            )
        elif own > state.version:
            log.warning(
                "knowledge: this worker's folder is version %s, newer than the collection's version %s: "
                "run `relaydesk kb ingest` to publish it",
                own,
                state.version,
            )
