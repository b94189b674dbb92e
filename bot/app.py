"""The composition root: the one place that turns settings into a running desk."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.analytics.report import build_report
from bot.brain.analyzer import Analyzer
from bot.brain.responders.offline import OfflineResponder
from bot.brain.sentiment_model import SentimentModel
from bot.brain.triage.examples import TriageExamples
from bot.brain.triage.marked import MarkedMessages
from bot.config import Settings
from bot.delivery.notices import CustomerNotices
from bot.delivery.outbox import Outbox
from bot.desk.desk import Desk
from bot.desk.hours import BusinessHours
from bot.desk.policy import HandoffPolicy
from bot.knowledge.classifier import ClassifierFile
from bot.knowledge.embeddings import create_embedder
from bot.knowledge.follow import KnowledgeFollower
from bot.knowledge.index import ClassifierStore, IngestReport, KnowledgeIndex, open_collection
from bot.knowledge.published import open_published
from bot.knowledge.watch import KnowledgeWatcher
from bot.operators.actions import OperatorActions
from bot.operators.conversations import Conversations
from bot.operators.queue import OperatorQueue
from bot.operators.replies import OperatorReplies
from bot.orders.status import OrderStatus
from bot.ports import Responder
from bot.prompts.loader import PromptStore
from bot.prompts.texts import Texts
from bot.shared import SharedState
from bot.storage.db import Transactions, create_engine, migrate, sessions
from connectors.crm import create_crm

if TYPE_CHECKING:
    from bot.brain.llm.judge import ReplyJudge

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    transactions: Transactions
    index: KnowledgeIndex
    texts: Texts
    outbox: Outbox
    desk: Desk
    operators: OperatorActions
    ingest_report: IngestReport | None = None
    prompts: PromptStore | None = None  # hot reload; `prompts.on_error(hook)` reports refused edits

    # Hot reload: of the folder (embedded Chroma), or of what `kb ingest` published (a Chroma server);
    # `knowledge.on_error(hook)` reports skipped files or a failed reload.
    knowledge: KnowledgeWatcher | KnowledgeFollower | None = None
    shared: SharedState = field(default_factory=SharedState)  # what workers share (Redis), or this process
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # What connectors call besides the desk and the operator actions (built from the fields above):
    conversations: Conversations = field(init=False)  # the read model of what they render
    replies: OperatorReplies = field(init=False)  # the rules of an operator's reply
    queue: OperatorQueue = field(init=False)  # the operator queue: attach an OperatorConsole
    notices: CustomerNotices = field(init=False)  # a channel's own texts to a customer

    def __post_init__(self) -> None:
        channel = self.desk.queue_channel
        self.conversations = Conversations(self.transactions)
        self.queue = OperatorQueue(self.transactions, self.conversations, self.outbox, channel)
        self.replies = OperatorReplies(self.operators, self.conversations, self.texts, channel, self.settings.slack)
        self.notices = CustomerNotices(self.outbox, self.texts)

    async def report(self, since: datetime) -> dict[str, Any]:
        """`relaydesk report`'s figures since `since` (what `/relaydesk stats` shows of today)."""
        return await build_report(self.sessions, self.settings.analytics, since)

    def watch(self) -> None:
        """Pick up prompt and knowledge edits without a restart (`relaydesk run` calls this; tests need not)."""
        if self.prompts is not None:
            self._tasks.append(asyncio.create_task(self.prompts.watch()))
        if self.knowledge is not None:
            self._tasks.append(asyncio.create_task(self.knowledge.watch()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.shared.close()
        await self.transactions.close()
        await self.engine.dispose()
        await self.index.close()


def build_index(settings: Settings, writer: bool = False) -> KnowledgeIndex:
    """The knowledge index; on a Chroma server its classifier is the one the ingest job (the `writer`) trained."""
    embedder = create_embedder(settings.embeddings)
    collection = open_collection(settings.knowledge, embedder.name)
    classifiers: ClassifierStore
    if settings.knowledge.chroma_url:
        classifiers = open_published(settings.knowledge, embedder.name, writer)
    else:
        classifiers = ClassifierFile(settings.knowledge.store / f"{collection.name}.classifier.npz")
    return KnowledgeIndex(collection, embedder, settings.knowledge.chunk_chars, classifiers)


async def build_ingest_index(settings: Settings) -> KnowledgeIndex:
    """The index `relaydesk kb ingest` writes, its classifier trained with the off-topic class workers use."""
    index = build_index(settings, writer=True)
    prompts = PromptStore.open(settings.prompts.path, agent=False)
    await TriageExamples(prompts, index).refresh(train=False)
    return index


def marked_messages(settings: Settings, index: KnowledgeIndex) -> MarkedMessages:
    """The messages operators marked "always a person", in the same Chroma as the index, per embedding model."""
    return MarkedMessages(open_collection(settings.knowledge, index.embedder.name, prefix="marked"))


def sentiment_model(index: KnowledgeIndex) -> SentimentModel | None:
    """The trained sentiment head when it was trained on this index's embeddings; else the lexicon reads mood."""
    model = SentimentModel.load()
    return model if model.fits(index.embedder.name, index.embedder.dimensions) else None


def queue_channel(settings: Settings) -> str:
    """Operators work in Slack when it is configured, otherwise in the terminal."""
    return "slack" if settings.slack.enabled else "console-queue"


def build_orders(settings: Settings, prompts: PromptStore) -> OrderStatus | None:
    """The order-status tool over the configured CRM (demo or http), shared by both brains and the desk;
    None when the CRM can't be set up (logged): articles then answer as written and the LLM brain is off."""
    try:
        crm = create_crm(settings.crm)
    except Exception:
        log.exception("app: the CRM could not be set up; order numbers are not looked up")
        return None
    return OrderStatus(crm, prompts.texts, lambda: prompts.compensation, settings.crm.timeout_s)


def build_brain(
    settings: Settings,
    index: KnowledgeIndex,
    analyzer: Analyzer,
    prompts: PromptStore,
    examples: TriageExamples,
    orders: OrderStatus | None,
) -> tuple[Analyzer, Responder]:
    """The LLM agent when `llm.provider: openai`, else (or when it can't be built) the offline brain."""
    offline = OfflineResponder(index, orders)
    if settings.llm.provider != "openai":
        return analyzer, offline
    try:  # imported here: without an LLM, langchain is never loaded
        prompts.load_agent()  # a broken agent.yaml at start-up: logged, and the offline brain answers
        from bot.brain.llm.analysis import LLMAnalyzer
        from bot.brain.llm.model import create_chat_model
        from bot.brain.responders.llm import LLMResponder

        if orders is None:
            raise ValueError("the LLM agent needs the CRM (see the error above)")
        model = create_chat_model(settings.llm)
        crm = orders.crm
        responder = LLMResponder(model, index, crm, prompts, settings.llm, offline, settings.crm.timeout_s)
        if settings.llm.analysis:
            analyzer = LLMAnalyzer(
                index,
                model,
                prompts,
                settings.llm,
                settings.knowledge.top_k,
                prompts.texts.default_language,
                examples,
                analyzer.sentiment,
            )
        return analyzer, responder
    except Exception:
        log.exception("app: the LLM brain could not be built; answering with the offline brain")
        return analyzer, offline


def build_judge(settings: Settings, prompts: PromptStore) -> ReplyJudge | None:
    """The LLM judge of operator replies (`llm.judge`), or None: the offline scorer alone, as without an LLM."""
    if settings.llm.provider != "openai" or not settings.llm.judge:
        return None
    try:
        prompts.load_judge()  # a broken judge.yaml at start-up: logged, and replies are scored offline
        from bot.brain.llm.judge import ReplyJudge
        from bot.brain.llm.model import create_chat_model

        return ReplyJudge(create_chat_model(settings.llm), prompts, settings.llm)
    except Exception:
        log.exception("app: the reply judge could not be built; scoring operator replies offline")
        return None


async def build_app(settings: Settings, *, ingest: bool = True) -> App:
    prompts = PromptStore.open(settings.prompts.path, agent=False)
    texts = prompts.texts
    engine = create_engine(settings.database.url)
    await migrate(engine)
    session_factory = sessions(engine)
    transactions = Transactions(engine)
    index = build_index(settings)
    marked = marked_messages(settings, index)
    examples = TriageExamples(prompts, index, settings.automation.escalation_similarity, marked)
    if not index.embedder.semantic:
        log.warning(
            "app: the %s embedder has no notion of meaning: off-topic and escalation examples are off",
            index.embedder.name,
        )
    await examples.refresh(train=False)  # before the ingest, which trains the classifier with its off-topic class
    report = None
    watcher: KnowledgeWatcher | KnowledgeFollower | None = None
    if settings.knowledge.chroma_url:  # the `kb ingest` job writes the shared collection; workers follow it
        follower = KnowledgeFollower(
            index,
            open_published(settings.knowledge, index.embedder.name),
            settings.knowledge.path,
            settings.knowledge.reload_s,
        )
        await follower.start()
        watcher = follower if settings.knowledge.reload_s else None
    elif ingest and settings.knowledge.path.is_dir():
        if settings.knowledge.reload_s:  # its snapshot comes first: an edit made during the ingest is seen
            watcher = KnowledgeWatcher(index, settings.knowledge.path, settings.knowledge.reload_s)
        report = await index.ingest(settings.knowledge.path)  # incremental: unchanged files cost a hash
    else:
        await index.prepare_classifier()
    analyzer = Analyzer(
        index,
        settings.knowledge.top_k,
        texts.default_language,
        examples,
        sentiment_model(index),
    )
    outbox = Outbox(transactions, settings.outbox)
    channel = queue_channel(settings)
    orders = build_orders(settings, prompts)
    analyzer, responder = build_brain(settings, index, analyzer, prompts, examples, orders)
    policy = HandoffPolicy(settings.automation)
    hours = BusinessHours(settings.business_hours)
    desk = Desk(
        transactions,
        analyzer,
        responder,
        policy,
        texts,
        outbox,
        channel,
        hours,
        orders,
        settings.automation.analysis_chars,
    )
    operators = OperatorActions(transactions, texts, outbox, channel, index, build_judge(settings, prompts), examples)
    return App(
        settings,
        engine,
        session_factory,
        transactions,
        index,
        texts,
        outbox,
        desk,
        operators,
        report,
        prompts,
        watcher,
        shared=SharedState(settings.redis.url),
    )
