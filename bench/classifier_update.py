"""The topic classifier after an edit: re-training only the touched articles vs training everything again.

    .venv/bin/python bench/classifier_update.py           # BANKING77 (real data) and 10,000 synthetic articles
    .venv/bin/python bench/classifier_update.py --quick   # BANKING77 with 20 intents, the synthetic part skipped
    .venv/bin/python bench/classifier_update.py --part banking77|synthetic [--size N]

Both sides get the same training rows, made as the index makes them (each question embedded as a
query and as a passage, the title as a query) with the local embedder, and the same edit:
  BANKING77   77 intents, 10 questions each (bench/banking77.py's KB); 3 intents (the 5% an update
              may touch) get their next 10 training utterances instead: the phrasing an admin
              rewrote. Scored on test.csv: top-1 accuracy overall and on the edited intents.
  synthetic   the synthetic KB of bench/common.py, 10,000 articles by default (more than 2,000: the
              large-KB regime, each example against its nearest articles); their rows are embedded
              once and cached beside the other bench caches (bodies play no part: ~35 minutes at
              10,000 on 2 cores). 10 articles get new questions, up to three customers' paraphrases
              each. Scored on 2,000 paraphrased questions plus, about the edited articles, their
              former questions and whatever paraphrases of them are left (a few dozen in all).
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
from common import CACHE, GENERATOR_VERSION, bench_settings, header, synthetic_articles, synthetic_labelled_queries

from bot.knowledge.classifier import FULL_SOFTMAX_MAX, MAX_UPDATE_SHARE, TopicClassifier
from bot.knowledge.embeddings import Embedder, create_embedder

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
    print(f"  scored on {len(expected):,} questions, {len(mine)} of them about the edited articles")
    print(f"  {'':34} {'seconds':>9} {'top-1 all':>10} {'top-1 edited':>13} {'p(own), edited':>15}")
    for name, model, seconds in (
        ("update: the edited rows (new)", updated, f"{update_s:9.2f}"),
        ("full retrain (baseline)", full, f"{full_s:9.2f}"),
        ("before the edit (stale model)", before, f"{'':>9}"),
    ):
        own = np.mean([dict(model.probabilities(vectors[i])).get(expected[i], 0.0) for i in mine])
        print(
            f"  {name:34} {seconds} {top1(model, vectors, expected):10.4f} "
            f"{top1(model, vectors[mine], [expected[i] for i in mine]):13.4f} {own:15.4f}"
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


async def embedded(
    embedder: Embedder, questions: dict[str, list[str]]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Each article's questions embedded as queries and as passages, as the index embeds them."""
    asked = {a: await embed(embedder, q) for a, q in questions.items()}
    passages = {a: await embedder.documents(q) for a, q in questions.items()}
    return asked, passages


async def banking(embedder: Embedder, intents: list[str]) -> None:
    by_intent: dict[str, list[str]] = defaultdict(list)
    for text, intent in read_csv(DATA / "train.csv"):
        by_intent[intent].append(text)
    count = max(1, int(MAX_UPDATE_SHARE * len(intents)))
    edited = intents[:: len(intents) // count][:count]
    started = time.perf_counter()

    original = {article_id(i): by_intent[i][:KB_QUESTIONS] for i in intents}
    rewritten = {article_id(i): by_intent[i][KB_QUESTIONS : 2 * KB_QUESTIONS] for i in edited}
    titles = {article_id(i): await embed(embedder, [i.replace("_", " ")]) for i in intents}
    asked, passages = await embedded(embedder, original)
    new_asked, new_passages = await embedded(embedder, rewritten)
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
    articles = {a: (title, questions) for a, _lang, title, questions, _body in synthetic_articles(n)}
    ids = sorted(articles)
    edited = ids[:: len(ids) // EDITED_ARTICLES][:EDITED_ARTICLES]
    rewritten: dict[str, list[str]] = {a: [] for a in edited}  # customers' paraphrases become the new questions
    for text, article in synthetic_labelled_queries(n, 60_000, seed=21):
        if article in rewritten and len(rewritten[article]) < 3 and text not in rewritten[article]:
            rewritten[article].append(text)
    new_questions = {q for qs in rewritten.values() for q in qs}
    queries = [(q, a) for q, a in synthetic_labelled_queries(n, 2000, seed=11) if q not in new_questions]
    # Customers still ask the old way: the edited articles' former questions are held out for them
    # (the generator's paraphrases of an article are few, and the new questions took most of them).
    queries += [(q, a) for a in edited for q in articles[a][1]]
    about_edited = synthetic_labelled_queries(n, 30_000, seed=12)
    queries += [(q, a) for q, a in about_edited if a in rewritten and q not in new_questions][:200]

    started = time.perf_counter()
    cache = CACHE / f"classifier-rows-{n}-{GENERATOR_VERSION}-{embedder.name}.npz"
    if cache.exists():
        with np.load(cache) as saved:
            x, labels = saved["x"], [str(a) for a in saved["labels"]]
    else:  # the rows the index would make of these articles; their bodies play no part
        questions = {a: articles[a][1] for a in ids}
        titles = {a: await embed(embedder, [articles[a][0]]) for a in ids}
        x, labels = rows_of(questions, *await embedded(embedder, questions), titles)
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(cache, x=x, labels=np.asarray(labels))
    kept = np.asarray([a not in rewritten for a in labels])
    new_titles = {a: await embed(embedder, [articles[a][0]]) for a in edited}
    new_x, new_labels = rows_of(rewritten, *await embedded(embedder, rewritten), new_titles)
    vectors = await embed(embedder, [q for q, _ in queries])
    print(f"\n  {len(labels):,} training rows ready in {time.perf_counter() - started:.0f} s ({cache})")

    versions = dict.fromkeys(ids, "v1")
    started = time.perf_counter()
    before = TopicClassifier.fit(x, labels, versions)
    print(f"  trained the model before the edit in {time.perf_counter() - started:.0f} s")
    compare(
        f"synthetic KB, {n:,} articles ({'nearest candidates' if n > FULL_SOFTMAX_MAX else 'full softmax'})",
        before,
        np.vstack([x[kept], new_x]),
        [a for a, keep in zip(labels, kept, strict=True) if keep] + new_labels,
        versions | dict.fromkeys(edited, "v2"),
        (vectors, [a for _, a in queries]),
        set(edited),
    )


async def main(quick: bool, part: str, size: int) -> None:
    header("classifier update after an edit")
    embedder = create_embedder(bench_settings(Path(tempfile.gettempdir()), kb=Path(".")).embeddings)
    intents = json.loads((DATA / "categories.json").read_text())
    if part in ("banking77", "both"):
        await banking(embedder, intents[:20] if quick else intents)
    if part in ("synthetic", "both") and not quick:
        await synthetic(embedder, size)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 BANKING77 intents, no synthetic part")
    parser.add_argument("--size", type=int, default=10_000, help="synthetic articles, >= 100 (default 10,000)")
    parser.add_argument("--part", choices=("banking77", "synthetic", "both"), default="both")
    args = parser.parse_args()
    if args.size < 100:
        parser.error("--size: at least 100 articles (10 of them are edited)")
    asyncio.run(main(args.quick, args.part, args.size))
