"""`relaydesk kb ingest` on a Chroma server: the one writer of the knowledge base all workers read.

The collection records the version of the folder it was ingested from (knowledge/VERSION). A folder
older than that changes nothing (the old image of a rolling deploy never removes what a newer one
indexed) unless `force` rolls the collection back; the same version with other articles is refused
(an edit whose version was not raised, or two folders that claim one version) unless forced.
On PostgreSQL, jobs take an advisory lock: a second one started meanwhile waits, then decides on
what the first one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sqlalchemy

from bot.knowledge.index import IngestReport, KnowledgeIndex
from bot.knowledge.published import PublishedKnowledge
from bot.knowledge.version import KnowledgeVersion, folder_digest, read_version
from bot.storage.db import create_engine

log = logging.getLogger(__name__)

INGEST_LOCK = 0x6B62696E67  # the PostgreSQL advisory lock key ingest jobs take ("kbing")


class Outcome(StrEnum):
    INGESTED = "ingested"
    OLDER = "older"  # the folder is older than the collection: nothing changed
    SAME_VERSION_CHANGED = "same_version_changed"  # refused: the version was not raised


@dataclass(frozen=True)
class JobResult:
    outcome: Outcome
    folder: KnowledgeVersion
    collection: KnowledgeVersion | None  # what the collection held before the job
    report: IngestReport | None = None

    def summary(self) -> str:
        held = f"version {self.collection}" if self.collection is not None else "no version"
        if self.outcome is Outcome.OLDER:
            return (
                f"the folder is version {self.folder}, older than the collection's version {self.collection}: "
                f"nothing changed (--force rolls the collection back to {self.folder})"
            )
        if self.outcome is Outcome.SAME_VERSION_CHANGED:
            return (
                f"refused: the folder is version {self.folder}, as the collection is, but its articles differ from "
                f"what version {self.folder} indexed; raise the version in VERSION (or --force to replace them)"
            )
        return f"the collection is version {self.folder} (was {held})"


async def ingest_job(
    index: KnowledgeIndex, published: PublishedKnowledge, root: Path, database_url: str, force: bool = False
) -> JobResult:
    """Ingest `root` unless the collection holds a newer version (or this one with other articles).

    Raises VersionError when `root`/VERSION is missing or bad."""
    folder = read_version(root)
    async with ingest_lock(database_url):
        before = await asyncio.to_thread(published.state)
        held = before.version if before is not None else None
        content = await asyncio.to_thread(folder_digest, root)
        if before is not None and not force:
            if folder < before.version:
                return JobResult(Outcome.OLDER, folder, held)
            if folder == before.version and content != before.content:
                return JobResult(Outcome.SAME_VERSION_CHANGED, folder, held)
        report = await index.ingest(root)
        await asyncio.to_thread(published.publish, folder, content, index.classifier)
        return JobResult(Outcome.INGESTED, folder, held, report)


@contextlib.asynccontextmanager
async def ingest_lock(database_url: str) -> AsyncIterator[None]:
    """Held while the job runs, when the database is PostgreSQL (a transaction-scoped lock: a killed job
    releases it with its connection); on SQLite, one machine, the admin runs one job at a time."""
    if not database_url.startswith("postgresql"):
        yield
        return
    engine = create_engine(database_url)
    try:
        async with engine.begin() as conn:
            key = {"key": INGEST_LOCK}
            if not (await conn.execute(sqlalchemy.text("SELECT pg_try_advisory_xact_lock(:key)"), key)).scalar():
                log.warning("knowledge: another ingest is running; waiting for it to finish")
                await conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), key)
            yield
    finally:
        await engine.dispose()
