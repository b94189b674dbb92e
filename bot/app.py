"""The composition root: the one place that turns settings into a running desk."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.analyzer import Analyzer
from bot.config import Settings
from bot.desk import Desk
from bot.embeddings import create_embedder
from bot.knowledge.index import IngestReport, KnowledgeIndex, open_collection
from bot.operators import OperatorActions
from bot.outbox import Outbox
from bot.policy import HandoffPolicy
from bot.responders.offline import OfflineResponder
from bot.storage.db import create_engine, migrate, sessions
from bot.texts import Texts, load_texts

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    index: KnowledgeIndex
    texts: Texts
    outbox: Outbox
    desk: Desk
    operators: OperatorActions
    ingest_report: IngestReport | None = None

    async def close(self) -> None:
        await self.engine.dispose()


def build_index(settings: Settings) -> KnowledgeIndex:
    embedder = create_embedder(settings.embeddings)
    collection = open_collection(settings.knowledge, embedder.name)
    return KnowledgeIndex(collection, embedder, settings.knowledge.chunk_chars)


def queue_channel(settings: Settings) -> str:
    """Operators work in Slack when it is configured, otherwise in the terminal."""
    return "slack" if settings.slack.enabled else "console-queue"


async def build_app(settings: Settings, *, ingest: bool = True) -> App:
    texts = load_texts(settings.prompts.path / "texts.yaml")
    engine = create_engine(settings.database.url)
    await migrate(engine)
    session_factory = sessions(engine)
    index = build_index(settings)
    report = None
    if ingest and settings.knowledge.path.is_dir():
        report = await index.ingest(settings.knowledge.path)  # incremental: unchanged files cost a hash
    analyzer = Analyzer(index, settings.knowledge.top_k, texts.default_language)
    outbox = Outbox(session_factory, settings.outbox)
    channel = queue_channel(settings)
    desk = Desk(
        session_factory, analyzer, OfflineResponder(index), HandoffPolicy(settings.automation), texts, outbox, channel
    )
    operators = OperatorActions(session_factory, texts, outbox, channel, index)
    return App(settings, engine, session_factory, index, texts, outbox, desk, operators, report)
