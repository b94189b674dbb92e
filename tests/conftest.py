"""Shared fixtures: a small bilingual knowledge base, settings on real SQLite/PostgreSQL and Chroma."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.app import App, build_app
from bot.config import Settings
from bot.storage.models import Delivery
from tests.fakes.slack_api import FakeSlack

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("RELAYDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")

ARTICLES = {
    ("returns-policy", "en"): (
        "Returning an item",
        ["How do I return an item?", "Can I send my order back?"],
        "You can return any item within 30 days. Pack it and bring it to a pickup point.",
    ),
    ("returns-policy", "ru"): (
        "Возврат товара",
        ["Как вернуть товар?", "Можно ли вернуть заказ?"],
        "Вернуть товар можно в течение 30 дней. Упакуйте его и отнесите в пункт выдачи.",
    ),
    ("order-tracking", "en"): (
        "Tracking your order",
        ["Where is my order?", "How can I track my parcel?"],
        "Open My orders and press Track to see where your parcel is.",
    ),
    ("order-tracking", "ru"): (
        "Где мой заказ",
        ["Где мой заказ?", "Как отследить посылку?"],
        "Откройте «Мои заказы» и нажмите «Отследить», чтобы увидеть, где посылка.",
    ),
    ("payment-methods", "en"): (
        "Ways to pay",
        ["Which payment methods do you accept?", "Can I pay by card?"],
        "We accept bank cards, Apple Pay and Google Pay, and cash on delivery.",
    ),
    ("payment-methods", "ru"): (
        "Способы оплаты",
        ["Какие способы оплаты есть?", "Можно оплатить картой?"],
        "Мы принимаем банковские карты, Apple Pay, Google Pay и наличные курьеру.",
    ),
}


def write_kb(root: Path, articles: dict = ARTICLES) -> Path:  # type: ignore[type-arg]
    for (article_id, lang), (title, questions, body) in articles.items():
        path = root / lang / f"{article_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        qs = "\n".join(f"  - {q}" for q in questions)
        path.write_text(
            f"---\nid: {article_id}\ntitle: {title}\nlang: {lang}\ntags: [test]\nquestions:\n{qs}\n---\n{body}\n",
            encoding="utf-8",
        )
    return root


def make_settings(tmp: Path, database_url: str | None = None) -> Settings:
    settings = Settings()
    settings.embeddings.provider = "hashing"
    settings.knowledge.path = write_kb(tmp / "knowledge")
    settings.knowledge.store = tmp / "chroma"
    settings.prompts.path = REPO / "prompts"
    settings.database.url = database_url or f"sqlite+aiosqlite:///{tmp}/desk.db"
    settings.automation.min_confidence = 0.3
    settings.outbox.backoff_s = 0.01
    return settings


@pytest.fixture(scope="session")
def shipped_kb_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One Chroma store for the shipped knowledge/ on the bundled model: embedded by the first test that
    builds an app on it; later apps only check file hashes and load the saved classifier."""
    return tmp_path_factory.mktemp("shipped-kb") / "chroma"


def on_shipped_kb(settings: Settings, store: Path) -> Settings:
    """`settings` on the shipped help centre and the bundled multilingual model."""
    settings.embeddings.provider = "local"
    settings.knowledge.path = REPO / "knowledge"
    settings.knowledge.store = store
    settings.automation.min_confidence = 0.35
    settings.automation.negative_sentiment = -0.9  # as config.yaml: a problem report is not an angry customer
    return settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (`chroma run`, which chromadb installs) on a free port; its URL."""
    data = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(data / "db")]
    with (data / "chroma.log").open("wb") as log:
        server = subprocess.Popen([*command, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"chroma run did not start; see {data / 'chroma.log'}")
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[App]:
    built = await build_app(settings)
    yield built
    await built.close()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A fake Slack Web API on a local port (tests/fakes/slack_api.py)."""
    fake = FakeSlack()
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after it); skipped where none runs."""
    import asyncio

    asyncpg = pytest.importorskip("asyncpg")
    name = f"relaydesk_test_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN, timeout=3)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not available at {PG_ADMIN}: {exc}")
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Recorder:
    """A channel that keeps what it was given; it can be told to fail first, the way real ones do."""

    def __init__(self) -> None:
        self.sent: list[Delivery] = []
        self.failures: list[Exception] = []

    async def deliver(self, delivery: Delivery) -> str | None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(delivery)
        return f"ref-{delivery.id}"

    def texts(self) -> list[str]:
        return [d.payload.get("text", "") for d in self.sent]

    def kinds(self) -> list[str]:
        return [d.kind for d in self.sent]


@pytest.fixture
def customers(app: App) -> Recorder:
    recorder = Recorder()
    app.outbox.register("test", recorder)
    return recorder


@pytest.fixture
def queue(app: App) -> Recorder:
    recorder = Recorder()
    app.outbox.register(app.desk.queue_channel, recorder)
    return recorder
