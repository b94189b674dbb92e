"""The knowledge index: articles (questions, title, body chunks) and resolved cases in one Chroma collection.

One collection per embedding model, so switching models never mixes vectors. Every record carries
the article id, title, lang, tags and the hash of the file it came from (with the chunk size):
re-ingest compares hashes and touches only what changed. An article's title record also carries the
hash of what the topic classifier learns from it (title and questions): a body-only edit leaves the
classifier as it is. An edit that cannot be indexed (a broken front matter, say) is reported and the
file's last good version keeps answering, as a broken prompt edit does; deleting the file removes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import chromadb
import numpy as np

from bot.brain.triage.entities import query_text
from bot.config import KnowledgeSettings
from bot.knowledge.articles import Article, ArticleError, ArticleTool, article_files, chunk_text, decode_article
from bot.knowledge.classifier import TopicClassifier, fingerprint
from bot.knowledge.embeddings import Embedder

log = logging.getLogger(__name__)

QUESTION, TITLE, CHUNK, CASE = "question", "title", "chunk", "case"
QUESTION_PASSAGE = "question_passage"  # a question embedded as a passage: more ways to say the same topic
TRAINING_KINDS = [QUESTION, QUESTION_PASSAGE, TITLE]
INDEX_FORMAT = "format=2"  # bump when the records an article makes change
CACHED_ARTICLES = 2048  # article texts kept in memory: a Chroma get costs milliseconds per answer
CHUNKS_BY_ID = 32  # an article's chunks fetched by record id (~38,000 characters at the default size)
# The classifier's class of off-topic examples (prompts/off_topic.yaml): a message it wins is out of scope.
# No article id can take this name (ids are letters, digits, '.', '_' and '-').
OFF_TOPIC = "~off-topic"
SIMILARITY_KINDS = (QUESTION, TITLE, CASE)  # said the way a customer asks: comparable with a question


@dataclass(frozen=True)
class Hit:
    article_id: str
    kind: str
    lang: str
    title: str
    similarity: float
    n: int = 0  # the record's position within its kind (which question, which chunk)
    reusable: bool = True  # False for a resolved case no operator has approved for automatic use
    answer_key: str = ""  # a resolved case's answer, normalised and hashed: cases that teach one reply share it


@dataclass(frozen=True)
class ArticleText:
    id: str
    lang: str
    title: str
    chunks: tuple[str, ...]
    tool: ArticleTool = ArticleTool.NONE

    @property
    def body(self) -> str:
        return "\n\n".join(self.chunks)


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    records: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # (file, what looks wrong): indexed all the same


def answer_key(answer: str) -> str:
    """The same reply however it was typed (case, spacing, punctuation): taught answers to one topic pool."""
    words = re.findall(r"\w+", answer.casefold())
    return hashlib.sha256(" ".join(words).encode()).hexdigest()[:16]


class IndexedFile(NamedTuple):
    hash: str  # of the file's bytes and the index format
    article_id: str
    lang: str
    learned: str  # of what the topic classifier learns from it: the title and the questions


def learned_digest(article: Article) -> str:
    # The index format too: a new way of making these records must re-train the classifier.
    return hashlib.sha256(repr((INDEX_FORMAT, article.title, article.questions)).encode()).hexdigest()[:16]


def article_versions(indexed: dict[str, IndexedFile]) -> dict[str, str]:
    """Each article id's version for the classifier: what it learns from each translation."""
    held: dict[str, list[tuple[str, str]]] = {}
    for file in indexed.values():
        held.setdefault(file.article_id, []).append((file.lang, file.learned))
    return {article: hashlib.sha256(repr(sorted(of)).encode()).hexdigest()[:16] for article, of in held.items()}


def open_collection(settings: KnowledgeSettings, embedder_name: str, prefix: str = "kb") -> Any:
    """The collection `prefix`-`embedder_name` of the configured Chroma (embedded or server)."""
    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        client: Any = chromadb.HttpClient(
            host=url.hostname or "localhost", port=url.port or 8000, ssl=url.scheme == "https"
        )
    else:
        settings.store.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(
            path=str(settings.store), settings=chromadb.Settings(anonymized_telemetry=False)
        )
    # Chroma wants 3-512 of [A-Za-z0-9._-], starting and ending with a letter or digit.
    name = (f"{prefix}-" + re.sub(r"[^A-Za-z0-9._-]+", "-", embedder_name))[:63].rstrip("-._")
    return client.get_or_create_collection(name, embedding_function=None, metadata={"hnsw:space": "cosine"})


class ClassifierStore(Protocol):
    """Where the trained topic classifier is kept between processes (a file, or a Chroma server's side collection)."""

    def load(self) -> TopicClassifier | None: ...

    def save(self, classifier: TopicClassifier) -> None: ...


class KnowledgeIndex:
    def __init__(
        self, collection: Any, embedder: Embedder, chunk_chars: int = 1200, classifiers: ClassifierStore | None = None
    ) -> None:
        self._collection = collection
        self._embedder = embedder
        self._chunk_chars = chunk_chars
        self._classifiers = classifiers
        self._classifier: TopicClassifier | None = None
        self._off_topic_vectors = np.zeros((0, 0), np.float32)
        self._off_topic_version = ""
        # Articles change only through ingest or reload (which clear this); lru_cache is safe across threads.
        self._cached_article = lru_cache(maxsize=CACHED_ARTICLES)(self._fetch_article)

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    # -- ingest -----------------------------------------------------------------------------------

    async def ingest(self, root: Path) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport()
        if not root.is_dir():
            raise FileNotFoundError(f"knowledge folder not found: {root}")
        try:
            return await self._ingest(root, report, started)
        finally:
            self._cached_article.cache_clear()

    async def _ingest(self, root: Path, report: IngestReport, started: float) -> IngestReport:
        known = await asyncio.to_thread(self._indexed_files)
        seen_paths: set[str] = set()
        indexed_articles = {(file.article_id, file.lang) for file in known.values()}
        owners: dict[tuple[str, str], str] = {}  # (id, lang) -> path that holds it
        changed: list[tuple[str, str, Article]] = []  # (path, file hash, article)
        superseded: list[str] = []  # indexed files whose id another file took over meanwhile

        def refuse(rel: str, reason: str) -> None:
            previous = known.get(rel)
            if previous is not None:  # the last good version keeps its id and answers until the file is fixed
                if owners.setdefault((previous.article_id, previous.lang), rel) == rel:
                    reason += "; its last good version still answers"
                else:
                    superseded.append(rel)
            report.errors.append((rel, reason))

        for file in article_files(root):
            rel = str(file.relative_to(root))
            seen_paths.add(rel)
            try:
                raw = file.read_bytes()
            except OSError as exc:
                refuse(rel, f"cannot read the file: {exc.strerror or exc}")
                continue
            # How a file was indexed is part of its hash: a new chunk size or record layout re-indexes everything.
            digest = hashlib.sha256(f"{INDEX_FORMAT} chunk_chars={self._chunk_chars}\n".encode() + raw).hexdigest()
            previous = known.get(rel)
            if previous and previous.hash == digest:
                owners.setdefault((previous.article_id, previous.lang), rel)
                report.unchanged += 1
                continue
            try:
                article = decode_article(raw, rel)
            except ArticleError as exc:
                refuse(rel, str(exc))
                continue
            report.warnings += [(rel, warning) for warning in article.warnings]
            changed.append((rel, digest, article))
        for rel, digest, article in changed:
            owner = owners.setdefault((article.id, article.lang), rel)
            if owner != rel:
                refuse(rel, f"duplicate id {article.id!r} ({article.lang}): already in {owner}")
                continue
            indexed_before = rel in known or (article.id, article.lang) in indexed_articles
            await self._replace(rel, digest, article, indexed_before)
            if rel in known:
                report.updated += 1
            else:
                report.added += 1
        for rel in (set(known) - seen_paths) | set(superseded):
            await asyncio.to_thread(self._collection.delete, where={"path": rel})
            report.removed += 1
        report.records = await asyncio.to_thread(self._collection.count)
        untouched = not (report.added or report.updated or report.removed)
        await self.prepare_classifier(known if untouched else None)  # nothing written: no second scan
        report.seconds = time.perf_counter() - started
        for path, reason in report.errors:
            log.warning("knowledge: skipped %s: %s", path, reason)
        for path, warning in report.warnings:
            log.warning("knowledge: %s: %s", path, warning)
        return report

    def _indexed_files(self) -> dict[str, IndexedFile]:
        known: dict[str, IndexedFile] = {}
        page, offset = 5000, 0
        while True:
            batch = self._collection.get(where={"kind": TITLE}, include=["metadatas"], limit=page, offset=offset)
            for meta in batch["metadatas"] or []:
                digest = str(meta["hash"])
                learned = str(meta.get("learned", digest))  # a store indexed before the field: the file's hash
                known[str(meta["path"])] = IndexedFile(digest, str(meta["article_id"]), str(meta["lang"]), learned)
            if len(batch["ids"]) < page:
                return known
            offset += page

    async def _replace(self, path: str, digest: str, article: Article, indexed_before: bool) -> None:
        base = {
            "article_id": article.id,
            "lang": article.lang,
            "title": article.title,
            "tags": ",".join(article.tags),
            "path": path,
            "hash": digest,
            "tool": str(article.tool),
        }
        asked = [article.title, *article.questions]  # said the way a customer asks: embedded as queries
        chunks = chunk_text(article.body, self._chunk_chars)
        ids = [f"{article.id}:{article.lang}:{TITLE}"]
        ids += [f"{article.id}:{article.lang}:{QUESTION}:{i}" for i in range(len(article.questions))]
        ids += [f"{article.id}:{article.lang}:{QUESTION_PASSAGE}:{i}" for i in range(len(article.questions))]
        ids += [f"{article.id}:{article.lang}:{CHUNK}:{i}" for i in range(len(chunks))]
        metas = [{**base, "kind": TITLE, "n": 0, "learned": learned_digest(article)}]
        metas += [{**base, "kind": QUESTION, "n": i} for i in range(len(article.questions))]
        metas += [{**base, "kind": QUESTION_PASSAGE, "n": i} for i in range(len(article.questions))]
        metas += [{**base, "kind": CHUNK, "n": i} for i in range(len(chunks))]
        vectors = np.vstack(
            [
                await self._embedder.queries(asked),
                await self._embedder.documents([*article.questions, *(f"{article.title}\n\n{c}" for c in chunks)]),
            ]
        )
        documents = [*asked, *article.questions, *chunks]

        def write() -> None:
            if indexed_before:  # deleting costs tens of ms even when nothing matches: only when needed
                self._collection.delete(where={"path": path})
                self._collection.delete(ids=ids)  # the same article may have moved to another file
            self._collection.add(ids=ids, embeddings=vectors, metadatas=metas, documents=documents)

        await asyncio.to_thread(write)

    # -- the topic classifier --------------------------------------------------------------------

    def use_off_topic(self, vectors: np.ndarray, version: str) -> bool:
        """Off-topic examples, one more class for the classifier from its next preparation; True if they changed."""
        if version == self._off_topic_version:
            return False
        self._off_topic_vectors, self._off_topic_version = np.asarray(vectors, np.float32), version
        return True

    async def prepare_classifier(self, indexed: dict[str, IndexedFile] | None = None) -> None:
        """Load the classifier trained on this exact KB, or train it (after an edit: the edited articles).

        `indexed` is what `_indexed_files()` would return now, when the caller already has it."""
        if indexed is None:
            indexed = await asyncio.to_thread(self._indexed_files)
        versions = article_versions(indexed)
        if len(self._off_topic_vectors):
            versions[OFF_TOPIC] = self._off_topic_version
        wanted = fingerprint(versions)
        previous = self._classifier
        if (previous is None or previous.fingerprint != wanted) and self._classifiers is not None:
            # Trained by an earlier run, or by another process (a `kb ingest` job): loaded, not trained again.
            stored = await asyncio.to_thread(self._classifiers.load)
            if stored is not None and (previous is None or stored.fingerprint == wanted):
                previous = stored
        if previous is not None and previous.fingerprint == wanted:
            self._classifier = previous
            return
        vectors, labels, _ = await asyncio.to_thread(self.training_set)
        if not labels:
            self._classifier = None
            return
        self._classifier = await asyncio.to_thread(TopicClassifier.fit, vectors, labels, versions, previous)
        if self._classifiers is not None:
            await asyncio.to_thread(self._classifiers.save, self._classifier)

    @property
    def classifier(self) -> TopicClassifier | None:
        """The topic classifier in use; None before any article is indexed."""
        return self._classifier

    async def reload(self) -> None:
        """Another process changed the collection (a `kb ingest` job): forget cached articles, take its classifier."""
        self._cached_article.cache_clear()
        await self.prepare_classifier()

    def training_set(self) -> tuple[np.ndarray, list[str], list[str]]:
        """What the classifier learns from: vectors, their article ids and record kinds (the off-topic
        examples after the articles' rows, when there are articles)."""
        rows: list[np.ndarray] = []
        labels: list[str] = []
        kinds: list[str] = []
        page, offset = 5000, 0
        while True:
            batch = self._collection.get(
                where={"kind": {"$in": TRAINING_KINDS}}, include=["embeddings", "metadatas"], limit=page, offset=offset
            )
            if len(batch["ids"]):
                rows.append(np.asarray(batch["embeddings"], np.float32))
                labels += [str(meta["article_id"]) for meta in batch["metadatas"]]
                kinds += [str(meta["kind"]) for meta in batch["metadatas"]]
            if len(batch["ids"]) < page:
                break
            offset += page
        if rows and len(self._off_topic_vectors):
            rows.append(self._off_topic_vectors)
            labels += [OFF_TOPIC] * len(self._off_topic_vectors)
            kinds += [OFF_TOPIC] * len(self._off_topic_vectors)
        return (np.vstack(rows) if rows else np.zeros((0, 0), np.float32)), labels, kinds

    def topic_probabilities(self, vector: np.ndarray, near: Sequence[str]) -> list[tuple[str, float]]:
        """Articles best first with the classifier's probability; empty before any article is indexed."""
        return self._classifier.probabilities(vector, near) if self._classifier is not None else []

    # -- resolved cases ---------------------------------------------------------------------------

    async def add_case(self, case_id: str, question: str, answer: str, lang: str, reusable: bool) -> None:
        """A question an operator answered: retrieved as a draft, or as an answer once marked reusable.
        Embedded as the analyzer embeds a message, so the customer's next question meets it on equal terms."""
        vector = await self._embedder.queries([query_text(question)])
        meta = {
            "article_id": f"case-{case_id}",
            "lang": lang,
            "title": question[:200],
            "tags": "",
            "path": "",
            "hash": "",
            "kind": CASE,
            "n": 0,
            "reusable": reusable,
            "answer_key": answer_key(answer),
        }
        await asyncio.to_thread(
            self._collection.upsert, ids=[f"case:{case_id}"], embeddings=vector, metadatas=[meta], documents=[answer]
        )

    # -- search -----------------------------------------------------------------------------------

    async def embed_query(self, text: str) -> np.ndarray:
        return (await self._embedder.queries([text]))[0]

    def search_vector(self, vector: np.ndarray, k: int) -> list[Hit]:
        result = self._collection.query(query_embeddings=[vector], n_results=k, include=["metadatas", "distances"])
        hits = []
        for meta, distance in zip(result["metadatas"][0], result["distances"][0], strict=True):
            hits.append(
                Hit(
                    article_id=str(meta["article_id"]),
                    kind=str(meta["kind"]),
                    lang=str(meta["lang"]),
                    title=str(meta["title"]),
                    similarity=1.0 - float(distance),
                    n=int(meta.get("n", 0)),
                    reusable=bool(meta.get("reusable", True)),
                    answer_key=str(meta.get("answer_key", "")),
                )
            )
        return hits

    async def search(self, text: str, k: int) -> list[Hit]:
        vector = await self.embed_query(text)
        return await asyncio.to_thread(self.search_vector, vector, k)

    def article(self, article_id: str, languages: Sequence[str]) -> ArticleText | None:
        """The article in the first of `languages` it exists in (translations share the id)."""
        if article_id.startswith("case-"):  # cases change outside ingest (teach): always read them
            got = self._collection.get(ids=[f"case:{article_id[5:]}"], include=["metadatas", "documents"])
            if not got["ids"]:
                return None
            meta = got["metadatas"][0]
            return ArticleText(article_id, str(meta["lang"]), str(meta["title"]), (str(got["documents"][0]),))
        return self._cached_article(article_id, tuple(languages))

    def _fetch_article(self, article_id: str, languages: tuple[str, ...]) -> ArticleText | None:
        # By record id first, an indexed lookup; a metadata filter scans the collection (bench/README.md,
        # "Latency"), so it is only the way to another language or to an article longer than the ids asked for.
        ids = [f"{article_id}:{lang}:{CHUNK}:{n}" for lang in languages for n in range(CHUNKS_BY_ID)]
        by_lang = _chunks_by_lang(self._collection.get(ids=ids, include=["metadatas", "documents"])) if ids else {}
        if not by_lang or any(len(parts) == CHUNKS_BY_ID for parts in by_lang.values()):
            where = {"$and": [{"article_id": article_id}, {"kind": CHUNK}]}
            by_lang = _chunks_by_lang(self._collection.get(where=where, include=["metadatas", "documents"]))
        for lang in [*languages, *sorted(by_lang)]:
            if lang in by_lang:
                parts = sorted(by_lang[lang])
                tool = ArticleTool(parts[0][3]) if parts[0][3] in set(ArticleTool) else ArticleTool.NONE
                return ArticleText(article_id, lang, parts[0][1], tuple(p[2] for p in parts), tool)
        return None

    async def close(self) -> None:
        await self._embedder.close()

    def count(self) -> int:
        return int(self._collection.count())


def _chunks_by_lang(got: Any) -> dict[str, list[tuple[int, str, str, str]]]:
    """A Chroma get of chunk records as {lang: [(n, title, text, tool)]}."""
    by_lang: dict[str, list[tuple[int, str, str, str]]] = {}
    for meta, doc in zip(got["metadatas"] or [], got["documents"] or [], strict=True):
        row = (int(meta["n"]), str(meta["title"]), str(doc), str(meta.get("tool", "")))
        by_lang.setdefault(str(meta["lang"]), []).append(row)
    return by_lang
