"""The topic classifier after an edit: re-training only the touched articles vs training everything again.

    .venv/bin/python bench/classifier_update.py           # BANKING77 (real data) and the 10,000-article store
    .venv/bin/python bench/classifier_update.py --quick   # BANKING77 with 20 intents, the 10k part skipped
    .venv/bin/python bench/classifier_update.py --part banking77|synthetic

Both sides get the same training rows, made as the index makes them (each question embedded as a
query and as a passage, the title as a query) with the local embedder, and the same edit:
  BANKING77   77 intents, 10 questions each (bench/banking77.py's KB); 3 intents (the 5% an update
              may touch) get their next 10 training utterances instead: the phrasing an admin
              rewrote. Scored on test.csv: top-1 accuracy overall and on the edited intents.
  10k store   the synthetic store of bench/ingest.py (the large-KB regime: each example against its
              nearest articles); 10 articles marked as changed with their training rows as they were
              (the update's own drift: a real edit of their questions would also move the rows; an
              edit of the body alone no longer re-trains anything). Scored on 2,000 paraphrased questions.
Baseline: TopicClassifier.fit without the previous model (what every edit cost before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from banking77 import DATA, KB_QUESTIONS, article_id, embed, read_csv
from common import bench_settings, cached_store_ready, header, synthetic_labelled_queries, synthetic_store

from bot.app import build_index
from bot.embeddings import Embedder, create_embedder
from bot.knowledge.classifier import MAX_UPDATE_SHARE, TopicClassifier, fingerprint
from bot.knowledge.index import KnowledgeIndex, article_versions

EDITED_ARTICLES = 10


def top1(model: TopicClassifier, vectors: np.ndarray, expected: list[str]) -> float:
    return float(np.mean([model.probabilities(v)[0][0] == e for v, e in zip(vectors, expected, strict=True)]))


def compare(
    label: str,
    before: TopicClassifier,
    x: np.ndarray,
    labels: list[str],
    versions: dict[str, str],
    test: tuple[np.ndarray, list[str]],
    edited: set[str],
) -> None:
    started = time.perf_counter()
    updated = TopicClassifier.fit(x, labels, versions, previous=before)
    update_s = time.perf_counter() - started
    started = time.perf_counter()
    full = TopicClassifier.fit(x, labels, versions)
    full_s = time.perf_counter() - started
    vectors, expected = test
    mine = [i for i, e in enumerate(expected) if e in edited]
    print(f"\n{label}: {len(set(labels)):,} articles, {len(labels):,} training rows, {len(edited)} edited")
    print(f"  {'':34} {'seconds':>9} {'top-1 all':>10} {'top-1 edited':>13}")
    for name, model, seconds in (
        ("update: the edited rows (new)", updated, update_s),
        ("full retrain (baseline)", full, full_s),
    ):
        print(
            f"  {name:34} {seconds:9.2f} {top1(model, vectors, expected):10.4f} "
            f"{top1(model, vectors[mine], [expected[i] for i in mine]):13.4f}"
        )
    print(
        f"  {'before the edit (stale model)':34} {'':>9} {top1(before, vectors, expected):10.4f} "
        f"{top1(before, vectors[mine], [expected[i] for i in mine]):13.4f}"
    )
    print(f"  → the update takes {update_s / full_s:.1%} of a full retrain's time")


def rows_of(
    kb: dict[str, list[str]],
    asked: dict[str, np.ndarray],
    passages: dict[str, np.ndarray],
    titles: dict[str, np.ndarray],
) -> tuple[np.ndarray, list[str]]:
    x, labels = [], []
    for article in kb:
        x += [asked[article], passages[article], titles[article]]
        labels += [article] * (len(asked[article]) + len(passages[article]) + 1)
    return np.vstack(x), labels


async def banking(embedder: Embedder, intents: list[str]) -> None:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in read_csv(DATA / "train.csv"):
        by_intent[intent].append(text)
    count = max(1, int(MAX_UPDATE_SHARE * len(intents)))
    edited = intents[:: len(intents) // count][:count]
    started = time.perf_counter()

    async def embedded(questions: dict[str, list[str]]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        asked = {a: await embed(embedder, q) for a, q in questions.items()}
        passages = {a: await embedder.documents(q) for a, q in questions.items()}
        return asked, passages

    original = {article_id(i): by_intent[i][:KB_QUESTIONS] for i in intents}
    rewritten = {article_id(i): by_intent[i][KB_QUESTIONS : 2 * KB_QUESTIONS] for i in edited}
    titles = {article_id(i): await embed(embedder, [i.replace("_", " ")]) for i in intents}
    asked, passages = await embedded(original)
    new_asked, new_passages = await embedded(rewritten)
    test = [(t, article_id(i)) for t, i in read_csv(DATA / "test.csv") if i in intents]
    test_vectors = await embed(embedder, [t for t, _ in test])
    print(f"  embedded in {time.perf_counter() - started:.0f} s")

    x, labels = rows_of(original, asked, passages, titles)
    before = TopicClassifier.fit(x, labels, dict.fromkeys(original, "v1"))
    x, labels = rows_of(original, asked | new_asked, passages | new_passages, titles)
    versions = dict.fromkeys(original, "v1") | dict.fromkeys(rewritten, "v2")
    compare(
        "BANKING77 (full softmax)", before, x, labels, versions, (test_vectors, [e for _, e in test]), set(rewritten)
    )


async def synthetic(embedder: Embedder, n: int) -> None:
    if cached_store_ready(n) is None:
        print(f"\n10k store: none at {synthetic_store(n)} (bench/ingest.py builds it). Skipped.")
        return
    with tempfile.TemporaryDirectory(prefix="relaydesk-bench-") as tmp:
        settings = bench_settings(Path(tmp), kb=Path(tmp), store=synthetic_store(n), provider="local")
        index: KnowledgeIndex = build_index(settings)
        started = time.perf_counter()
        x, labels = await asyncio.to_thread(index._training_rows)
        versions = article_versions(await asyncio.to_thread(index._indexed_files))
        print(
            f"\n  read {len(labels):,} training rows from {synthetic_store(n)} in {time.perf_counter() - started:.1f} s"
        )
    ids = sorted(set(labels))
    before = TopicClassifier.load(synthetic_store(n) / f"{index._collection.name}.classifier.npz")
    if before is None or before.fingerprint != fingerprint(versions):
        started = time.perf_counter()
        before = TopicClassifier.fit(x, labels, versions)
        print(f"  no saved classifier of this store: trained one in {time.perf_counter() - started:.0f} s")
    queries = synthetic_labelled_queries(n, 2000, seed=11)
    edited = set(ids[:: len(ids) // EDITED_ARTICLES][:EDITED_ARTICLES])
    queries += [(q, a) for q, a in synthetic_labelled_queries(n, 20000, seed=12) if a in edited][:200]
    vectors = await embed(embedder, [q for q, _ in queries])
    new_versions = versions | dict.fromkeys(edited, "edited")
    compare(
        f"synthetic KB, {n:,} articles (nearest candidates)",
        before,
        x,
        labels,
        new_versions,
        (vectors, [a for _, a in queries]),
        edited,
    )


async def main(quick: bool, part: str) -> None:
    header("classifier update after an edit")
    embedder = create_embedder(bench_settings(Path(tempfile.gettempdir()), kb=Path(".")).embeddings)
    intents = json.loads((DATA / "categories.json").read_text())
    if part in ("banking77", "both"):
        await banking(embedder, intents[:20] if quick else intents)
    if part in ("synthetic", "both") and not quick:
        await synthetic(embedder, 10_000)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 BANKING77 intents, no 10k part")
    parser.add_argument("--part", choices=("banking77", "synthetic", "both"), default="both")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.part))
