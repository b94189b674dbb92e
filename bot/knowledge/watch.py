"""Knowledge edits go live without a restart: `relaydesk run` polls the folder and re-ingests what changed.

The poll compares (file, mtime, size) of every article file, a stat each; ingest itself is incremental,
so an edit re-embeds only its own file. A malformed file is reported once per distinct problem (logs,
and the error hooks: the Slack connector posts it to the operator queue); the rest stays live, and so does
the file's last good version. A likely mistake that still indexes (an unknown key) is reported with each edit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.hooks import Hook, RepeatedFailure, notify
from bot.knowledge.articles import article_files
from bot.knowledge.index import IngestReport, KnowledgeIndex

log = logging.getLogger(__name__)

Signature = frozenset[tuple[str, int, int]]


def folder_signature(root: Path) -> Signature:
    """What a change to the knowledge folder changes: every article file's path, mtime and size."""
    found = set()
    try:
        files = article_files(root)
    except OSError:  # the folder vanished mid-scan: as if empty; the ingest that follows says what is wrong
        return frozenset()
    for path in files:
        try:
            stat = path.stat()
        except OSError:  # deleted between listing and stat: the next poll sees it gone
            continue
        found.add((str(path.relative_to(root)), stat.st_mtime_ns, stat.st_size))
    return frozenset(found)


class KnowledgeWatcher:
    def __init__(self, index: KnowledgeIndex, root: Path, interval_s: float) -> None:
        self._index = index
        self._root = root
        self.interval_s = interval_s
        self._error_hooks: list[Hook] = []
        self._seen = folder_signature(root)  # taken before the start-up ingest: nothing edited since is missed
        self._reported: set[tuple[str, str]] = set()
        self._failure = RepeatedFailure(log, "knowledge", self._error_hooks)

    def on_error(self, hook: Hook) -> None:
        """Call `hook(message)` for each newly malformed file or a failed re-ingest."""
        self._error_hooks.append(hook)

    async def check(self) -> IngestReport | None:
        """Re-ingest if the folder changed since the last check (or since the watcher was made)."""
        current = await asyncio.to_thread(folder_signature, self._root)
        if current == self._seen and self._failure.message is None:
            return None
        try:
            report = await self._index.ingest(self._root)
        except Exception as exc:  # e.g. the folder vanished or the embedder is down: retried every poll
            self._failure.report(
                f"Re-indexing the knowledge folder failed ({type(exc).__name__}: {exc}); "
                "the previous index still answers."
            )
            return None
        self._seen = current
        self._failure.clear()
        log.info(
            "knowledge: re-ingested: %d added, %d updated, %d removed, %d skipped",
            report.added,
            report.updated,
            report.removed,
            len(report.errors),
        )
        errors = set(report.errors)
        for path, reason in sorted(errors - self._reported):
            notify(self._error_hooks, f"Knowledge file {path} was skipped: {reason}")
        self._reported = errors
        for path, warning in report.warnings:
            notify(self._error_hooks, f"Knowledge file {path}: {warning}")
        return report

    async def watch(self) -> None:
        """Poll until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:  # whatever went wrong, the next poll tries again
                log.exception("knowledge: the check failed")
            await asyncio.sleep(self.interval_s)
