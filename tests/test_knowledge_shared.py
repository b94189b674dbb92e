"""One knowledge base for all workers, on a real Chroma server: `relaydesk kb ingest` is the one writer.

A rolling deploy runs workers (and jobs) of an older and a newer image side by side: an older folder
never removes what a newer one indexed, workers take a new ingest without a restart, `--force` rolls
back, two jobs at once do not interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import chromadb
import pytest

from bot.app import App, build_app
from bot.cli import main
from bot.config import Settings, load_settings
from bot.knowledge import published as published_module
from bot.knowledge.job import INGEST_LOCK
from bot.knowledge.published import open_published
from tests.conftest import PG_ADMIN, REPO, write_kb

GIFT = (
    "---\nid: gift-wrapping\ntitle: Gift wrapping\nlang: en\ntags: [gifts]\n"
    "questions:\n  - Can you gift wrap my order?\n  - Do you offer gift packaging?\n---\n"
    "Yes, gift wrapping costs 3 EUR per parcel.\n"
)
GIFT_QUESTION = "Can you gift wrap my order?"


def folder(root: Path, version: str | None, gift: bool = False) -> Path:
    """A knowledge folder: the sample articles, the gift-wrapping one if `gift`, and VERSION."""
    write_kb(root)
    if gift:
        (root / "en" / "gift-wrapping.md").write_text(GIFT, encoding="utf-8")
    if version is not None:
        (root / "VERSION").write_text(f"{version}\n", encoding="utf-8")
    return root


@pytest.fixture
def chroma(chroma_server: str) -> Iterator[str]:
    """The session's Chroma server, emptied for this test."""
    host, port = chroma_server.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    for collection in client.list_collections():
        client.delete_collection(collection.name)
    yield chroma_server


@pytest.fixture
def config(tmp_path: Path, chroma: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """config.yaml of a deployment on the Chroma server and PostgreSQL; knowledge/ is version 1."""
    folder(tmp_path / "knowledge", "1")
    path = tmp_path / "config.yaml"
    path.write_text(
        json.dumps(
            {
                "embeddings": {"provider": "hashing"},
                "automation": {"min_confidence": 0.3},
                "prompts": {"path": str(REPO / "prompts")},
                "knowledge": {"chroma_url": chroma, "reload_s": 0.05, "store": str(tmp_path / "local")},
                "database": {"url": postgres_url},
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("RELAYDESK_CONFIG", str(path))
    return path


async def kb_ingest(*args: str) -> int:
    """`relaydesk kb ingest ARGS` as an admin runs it (in a thread: it runs its own event loop)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return await asyncio.to_thread(main, ["kb", "ingest", *args])
    finally:  # the command sets up its own logging; the test's capture stays
        root.handlers[:], root.level = handlers, level


@pytest.fixture
async def worker(config: Path) -> AsyncIterator[App]:
    """A worker of the image whose knowledge folder is version 1 (started after the job ran)."""
    assert await kb_ingest() == 0
    app = await build_app(load_settings(str(config)))
    app.watch()
    yield app
    await app.close()


async def topic(app: App, question: str) -> str | None:
    decision = await app.desk.preview(question)
    return decision.analysis.topic if decision.analysis else None


async def eventually(app: App, question: str, wanted: Callable[[str | None], bool], timeout: float = 10.0) -> None:
    """Until the worker's topic for `question` is `wanted` (its poll runs on its own)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not wanted(found := await topic(app, question)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{question!r} still goes to {found}")
        await asyncio.sleep(0.05)


def gift(found: str | None) -> bool:
    return found == "gift-wrapping"


async def test_a_worker_takes_a_new_ingest_and_its_classifier_without_a_restart(
    worker: App, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(published_module, "PIECE_BYTES", 4096)  # the classifier travels in several pieces
    assert await topic(worker, GIFT_QUESTION) != "gift-wrapping"
    newer = folder(tmp_path / "v2", "2", gift=True)
    assert await kb_ingest(str(newer)) == 0
    assert "the collection is version 2 (was version 1)" in capsys.readouterr().out
    await eventually(worker, GIFT_QUESTION, gift)
    assert "3 EUR" in (await worker.desk.preview(GIFT_QUESTION)).answer.text  # type: ignore[union-attr]
    follower = worker.knowledge
    assert follower is not None and follower.published is not None  # type: ignore[union-attr]
    assert worker.index.classifier is not None
    assert worker.index.classifier.fingerprint.startswith(follower.published.classifier)  # type: ignore[union-attr]
    stored = open_published(worker.settings.knowledge, worker.index.embedder.name).load()
    assert stored is not None and stored.to_bytes() == worker.index.classifier.to_bytes()


async def test_an_older_folder_never_removes_newer_articles_until_forced_back(
    worker: App, tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    newer = folder(tmp_path / "v2", "2", gift=True)
    assert await kb_ingest(str(newer)) == 0
    await eventually(worker, GIFT_QUESTION, gift)

    # The old image's job runs again (a rolling deploy): nothing changes, and it says why.
    capsys.readouterr()
    assert await kb_ingest() == 0
    out = capsys.readouterr().out
    assert "version 1, older than the collection's version 2: nothing changed" in out
    assert "added" not in out
    assert await kb_ingest("--json") == 0
    assert json.loads(capsys.readouterr().out) == {"outcome": "older", "version": "1", "collection": "2"}
    # And a worker of the old image started meanwhile answers from version 2, saying its folder is older.
    with caplog.at_level(logging.WARNING):
        old_worker = await build_app(load_settings(str(config)))
    try:
        assert "this worker's folder is version 1, older than the collection's version 2" in caplog.text
        assert await topic(old_worker, GIFT_QUESTION) == "gift-wrapping"
    finally:
        await old_worker.close()
    await asyncio.sleep(0.2)  # polls of the running worker
    assert await topic(worker, GIFT_QUESTION) == "gift-wrapping"

    assert await kb_ingest("--force") == 0  # a rollback, on purpose
    assert "1 removed" in capsys.readouterr().out
    await eventually(worker, GIFT_QUESTION, lambda found: not gift(found))
    assert worker.index.article("gift-wrapping", ["en"]) is None


async def test_the_same_version_with_other_articles_is_refused(
    worker: App, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = folder(tmp_path / "edited", "1", gift=True)
    capsys.readouterr()
    assert await kb_ingest(str(edited)) == 1
    assert "refused: the folder is version 1, as the collection is, but its articles differ" in capsys.readouterr().out
    assert await topic(worker, GIFT_QUESTION) != "gift-wrapping"
    assert await kb_ingest(str(tmp_path / "knowledge")) == 0  # the same folder again: nothing to refuse


async def test_a_folder_without_version_is_an_error_on_a_chroma_server(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unversioned = folder(tmp_path / "plain", None)
    assert await kb_ingest(str(unversioned)) == 2
    assert f"{unversioned / 'VERSION'} is missing: write the knowledge folder's version" in capsys.readouterr().err


async def test_a_worker_on_an_empty_collection_says_so(config: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = await build_app(load_settings(str(config)))
    try:
        assert "the collection is empty: run `relaydesk kb ingest`" in caplog.text
        assert app.index.count() == 0  # the worker did not index its own folder
        assert await topic(app, "How do I return an item?") is None
    finally:
        await app.close()


async def test_an_ingest_waits_for_the_one_running(
    config: Path, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings: Settings = load_settings(str(config))
    database = postgres_url.rsplit("/", 1)[1]
    holder = await asyncpg.connect(f"{PG_ADMIN.rsplit('/', 1)[0]}/{database}")
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", INGEST_LOCK)  # as a running job holds it
        job = asyncio.create_task(kb_ingest())
        await asyncio.sleep(2)
        assert not job.done()
        assert "another ingest is running; waiting for it to finish" in capsys.readouterr().err
        app = await build_app(settings)
        try:
            assert app.index.count() == 0  # nothing written while it waits
        finally:
            await app.close()
        await holder.execute("SELECT pg_advisory_unlock($1)", INGEST_LOCK)
        assert await job == 0
    finally:
        await holder.close()


async def test_two_ingests_at_once_leave_the_newer_version_whole(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = folder(tmp_path / "v2", "2", gift=True)
    shutil.rmtree(newer / "ru")  # the newer version drops the Russian articles
    codes = await asyncio.gather(kb_ingest(), kb_ingest(str(newer)))
    assert codes == [0, 0]
    app = await build_app(load_settings(str(config)))
    try:
        assert app.knowledge is not None and app.knowledge.published is not None  # type: ignore[union-attr]
        assert str(app.knowledge.published.version) == "2"  # type: ignore[union-attr]
        assert await topic(app, GIFT_QUESTION) == "gift-wrapping"
        returns = app.index.article("returns-policy", ["ru", "en"])
        assert returns is not None and returns.lang == "en"  # version 2's articles, none of version 1's left
    finally:
        await app.close()
