"""Per-message latency of the offline pipeline: Desk.receive with storage on SQLite.

    .venv/bin/python bench/latency.py            # sample KB and the 10,000-article synthetic KB, 300 messages each
    .venv/bin/python bench/latency.py --quick    # 60 messages each: a smoke check
    .venv/bin/python bench/latency.py --kb sample|synthetic|both

Every message is a new customer's first question (a new chat), the outbox is not delivered. The
synthetic KB's Chroma store must exist (bench/ingest.py builds it once, ~tens of minutes); the sample
KB is ingested at start into /tmp/relaydesk-bench/chroma-sample by the product's own incremental
ingest (the first run embeds it, later runs only check hashes). SQLite is a fresh temp file each run.

Figures, all from the same run and the same objects:
  pipeline  Desk.receive(Inbound) end to end (analysis, retrieval, answer, policy, SQLite writes)
  bare      the app's own embedder.queries([q]) + its Chroma collection.query(n_results=top_k,
            include metadatas+distances, as the index asks) — the floor of any answer
  overhead  (pipeline - bare) / bare, at p50 and p99 (wall clock); also in process CPU time, which
            other processes on the machine disturb less
  breakdown the product's parts timed one by one from here with perf_counter, in pipeline order
Pipeline and bare calls are interleaved message by message, so a load spike from other processes
hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from common import (
    CACHE,
    REPO,
    bench_settings,
    cached_store_ready,
    fresh_store,
    header,
    index_code_fingerprint,
    summary,
    synthetic_queries,
    synthetic_store,
)

from bot.app import App, build_app
from bot.brain.intent import priority, wants_human
from bot.brain.language import detect_language
from bot.brain.retrieval import rank_topics
from bot.brain.sentiment import score_sentiment
from bot.brain.triage.entities import MAX_QUERY_CHARS, extract
from bot.brain.triage.smalltalk import small_talk
from bot.desk.desk import _context as read_context
from bot.domain.types import Inbound
from bot.storage.models import utcnow

GOAL_P99_MS = 50.0
GOAL_OVERHEAD = 0.25
SYNTHETIC_SIZE = 10_000
WARMUP = 5


def sample_questions() -> list[str]:
    texts: list[str] = []
    for name in ("sample.jsonl", "sentiment.jsonl"):
        for raw in (REPO / "eval" / name).read_text(encoding="utf-8").splitlines():
            if raw.strip():
                texts.append(json.loads(raw)["text"])
    return list(dict.fromkeys(texts))


def ms(seconds: float) -> float:
    return seconds * 1000


class Bench:
    def __init__(self, app: App, label: str) -> None:
        self.app = app
        self.label = label
        self.top_k = app.settings.knowledge.top_k
        self.embedder = app.index._embedder
        self.collection = app.index._collection
        self.counter = 0

    def inbound(self, text: str) -> Inbound:
        self.counter += 1
        return Inbound(
            channel="bench",
            chat_id=f"{self.label}-{time.time_ns()}-{self.counter}",
            message_id=f"{self.label}-{time.time_ns()}-{self.counter}",
            text=text,
            name="Bench",
        )

    async def pipeline(self, text: str) -> tuple[float, float, str]:
        """Wall-clock ms, process CPU ms (all threads), the decision."""
        inbound = self.inbound(text)
        cpu, started = time.process_time(), time.perf_counter()
        decision = await self.app.desk.receive(inbound)
        return ms(time.perf_counter() - started), ms(time.process_time() - cpu), decision.action

    async def bare(self, text: str) -> tuple[float, float]:
        cpu, started = time.process_time(), time.perf_counter()
        vectors = await self.embedder.queries([text])
        await asyncio.to_thread(
            self.collection.query, query_embeddings=vectors, n_results=self.top_k, include=["metadatas", "distances"]
        )
        return ms(time.perf_counter() - started), ms(time.process_time() - cpu)

    async def breakdown(self, text: str, parts: dict[str, list[float]]) -> None:
        """Desk.receive's steps called one by one, each timed; then the analysis' own steps, timed alone.

        Top-level steps (summed): reading the context, Analyzer.analyse as a whole (whatever it does
        today), the responder, the policy, writing the transaction. Inside the analysis, measured
        separately on the same text: language, embedding, Chroma query, ranking, the topic
        classifier when the index has one, sentiment.
        """
        desk, index = self.app.desk, self.app.index
        analyzer = desk._analyzer
        inbound = self.inbound(text)
        started = time.perf_counter()

        def lap(name: str, since: float) -> float:
            now = time.perf_counter()
            parts[name].append(ms(now - since))
            return now

        t = time.perf_counter()
        context = await self.app.transactions.run(partial(read_context, inbound))
        t = lap(STORAGE_READ, t)
        analysis = await analyzer.analyse(text, inbound.language_hint)
        lap(ANALYSIS, t)

        t = time.perf_counter()
        language = detect_language(text, default=analysis.language)
        t = lap(LANGUAGE, t)
        masked, _ = extract(text)
        small_talk(text, "text")
        t = lap(TRIAGE_TEXT, t)
        vector = await index.embed_query(masked[:MAX_QUERY_CHARS])
        t = lap(EMBEDDING, t)
        self.collection.query(query_embeddings=[vector], n_results=self.top_k, include=["metadatas", "distances"])
        t = lap(QUERY, t)
        hits = index.search_vector(vector, self.top_k)
        t = lap(SEARCH, t)
        probabilities = getattr(index, "topic_probabilities", None)
        if probabilities is not None:
            probabilities(vector, [hit.article_id for hit in hits])
            t = lap(CLASSIFIER, t)
        rank_topics(hits)
        t = lap(RANKING, t)
        if analyzer._examples is not None:
            analyzer._examples.off_topic(vector)
            analyzer._escalation(vector, hits)
            t = lap(TRIAGE_EXAMPLES, t)
        head = analyzer.sentiment
        sentiment = head.score(vector, text, language) if head is not None else score_sentiment(text, language)
        priority(sentiment.score, text, wants_human(text))
        lap(SENTIMENT, t)

        t = time.perf_counter()
        answer = await desk._respond(text, analysis, context.history)
        t = lap(ANSWER, t)
        desk._policy.reasons(analysis, answer, 0)
        t = lap(POLICY, t)
        await self.app.transactions.run(
            partial(desk._record, inbound, text, analysis, answer, None, context, utcnow(), started, False)
        )
        lap(STORAGE_WRITE, t)


STORAGE_READ = "storage: read context (SQLite)"
ANALYSIS = "analysis: Analyzer.analyse, all of it"
ANSWER = "answer: responder (article fetch from chroma + extract)"
POLICY = "policy"
STORAGE_WRITE = "storage: write (SQLite transaction)"
TOP_LEVEL = (STORAGE_READ, ANALYSIS, ANSWER, POLICY, STORAGE_WRITE)
LANGUAGE = "language detection"
EMBEDDING = "embedding (embed_query, incl. thread hop)"
QUERY = "chroma: query()"
SEARCH = "search_vector (query + hits), no thread"
CLASSIFIER = "topic classifier (index.topic_probabilities)"
RANKING = "ranking (rank_topics on the hits alone)"
SENTIMENT = "sentiment (the head, else lexicon) + wants_human + priority"
TRIAGE_TEXT = "triage: entities + small talk (regular expressions)"
TRIAGE_EXAMPLES = "triage: nearest off-topic and escalation examples"
INSIDE = (LANGUAGE, TRIAGE_TEXT, EMBEDDING, QUERY, SEARCH, CLASSIFIER, RANKING, TRIAGE_EXAMPLES, SENTIMENT)
# The open-set gate's own work: what triage adds to a message beyond embedding it and querying Chroma.
GATE = (TRIAGE_TEXT, CLASSIFIER, RANKING, TRIAGE_EXAMPLES)
GOAL_GATE = 0.10


async def measure(app: App, label: str, questions: list[str], messages: int) -> dict[str, Any]:
    bench = Bench(app, label)
    for q in questions[:WARMUP]:
        await bench.pipeline(q)
        await bench.bare(q)
    pipeline: list[float] = []
    bare: list[float] = []
    pipeline_cpu: list[float] = []
    bare_cpu: list[float] = []
    actions: dict[str, int] = defaultdict(int)
    for i in range(messages):
        q = questions[(WARMUP + i) % len(questions)]
        if i % 2:  # alternate the order so neither side always runs on a warmer cache
            b, bc = await bench.bare(q)
            p, pc, action = await bench.pipeline(q)
        else:
            p, pc, action = await bench.pipeline(q)
            b, bc = await bench.bare(q)
        pipeline.append(p)
        bare.append(b)
        pipeline_cpu.append(pc)
        bare_cpu.append(bc)
        actions[action] += 1
    parts: dict[str, list[float]] = defaultdict(list)
    for i in range(messages):
        await bench.breakdown(questions[(WARMUP + i) % len(questions)], parts)
    return {
        "pipeline": summary(pipeline),
        "bare": summary(bare),
        "pipeline_cpu": summary(pipeline_cpu),
        "bare_cpu": summary(bare_cpu),
        "actions": dict(actions),
        "parts": parts,
    }


def report(label: str, records: int, result: dict[str, Any]) -> dict[str, Any]:
    p, b = result["pipeline"], result["bare"]
    over50 = (p["p50"] - b["p50"]) / b["p50"]
    over99 = (p["p99"] - b["p99"]) / b["p99"]
    print(f"\n{label}: {records:,} records in the collection; {p['n']} messages; decisions {result['actions']}")
    print(f"  {'':44} {'p50':>8} {'p90':>8} {'p99':>8} {'mean':>8}  ms")
    rows = (
        ("pipeline (Desk.receive, SQLite)", p),
        ("bare: 1 query embedding + 1 chroma query", b),
        ("pipeline, process CPU time (all threads)", result["pipeline_cpu"]),
        ("bare, process CPU time (all threads)", result["bare_cpu"]),
    )
    for name, s in rows:
        print(f"  {name:44} {s['p50']:8.2f} {s['p90']:8.2f} {s['p99']:8.2f} {s['mean']:8.2f}")
    print(
        f"  overhead of the pipeline over the bare cost: p50 {over50:+.1%}, p99 {over99:+.1%} "
        f"(goal <= {GOAL_OVERHEAD:.0%})"
    )
    pc, bc = result["pipeline_cpu"], result["bare_cpu"]
    print(
        f"  the same in CPU time (less sensitive to other processes): p50 {(pc['p50'] - bc['p50']) / bc['p50']:+.1%}, "
        f"mean {(pc['mean'] - bc['mean']) / bc['mean']:+.1%}"
    )
    parts = result["parts"]
    mean = {name: statistics.fmean(values) for name, values in parts.items()}
    total = sum(mean[name] for name in TOP_LEVEL)
    print(f"  breakdown ({len(parts[ANALYSIS])} messages; each step timed alone; share of the summed means):")
    for name in TOP_LEVEL:
        s = summary(parts[name])
        print(
            f"    {name:56} p50 {s['p50']:7.2f}  p99 {s['p99']:7.2f}  mean {s['mean']:7.2f}  {s['mean'] / total:6.1%}"
        )
        if name == ANALYSIS:
            for inner in INSIDE:
                if inner in parts:
                    i = summary(parts[inner])
                    print(f"      {inner:54} p50 {i['p50']:7.2f}  p99 {i['p99']:7.2f}  mean {i['mean']:7.2f}")
    print(f"    {'sum of the steps (means)':56} {'':28} {total:7.2f}")
    # What the pipeline spends beyond the bare embedding + query, by part (means).
    beyond = {
        STORAGE_READ: mean[STORAGE_READ],
        STORAGE_WRITE: mean[STORAGE_WRITE],
        ANSWER: mean[ANSWER],
        POLICY: mean[POLICY],
        "analysis beyond embedding + chroma query": mean[ANALYSIS] - mean[EMBEDDING] - mean[QUERY],
    }
    gate = sum(statistics.median(parts[name]) for name in GATE if name in parts)
    gate_share = gate / b["p50"]
    print(
        f"  the triage gate (entities, small talk, classifier, ranking, nearest examples): {gate:.2f} ms at p50, "
        f"{gate_share:+.1%} of the bare p50 (goal <= {GOAL_GATE:.0%}: {'MET' if gate_share <= GOAL_GATE else 'MISSED'})"
    )
    worst = max(beyond, key=lambda k: beyond[k])
    ranked = sorted(beyond.items(), key=lambda kv: -kv[1])
    print("  beyond the bare embedding + chroma query (means): " + "; ".join(f"{k} {v:.2f} ms" for k, v in ranked))
    return {
        "label": label,
        "cpu_overhead_mean": (pc["mean"] - bc["mean"]) / bc["mean"],
        "p50": p["p50"],
        "p99": p["p99"],
        "bare_p50": b["p50"],
        "bare_p99": b["p99"],
        "overhead_p50": over50,
        "overhead_p99": over99,
        "worst": worst,
    }


async def run_sample(messages: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relaydesk-lat-") as tmp:
        # The store persists under the bench cache; build_app's own incremental ingest re-embeds only what changed.
        store = fresh_store(CACHE / "chroma-sample")  # rebuilt when the index code changed
        settings = bench_settings(Path(tmp), kb=REPO / "knowledge", store=store)
        started = time.perf_counter()
        app = await build_app(settings)
        ingest = app.ingest_report
        print(
            f"\nsample KB: build_app + incremental ingest into {settings.knowledge.store} in "
            f"{time.perf_counter() - started:.1f} s ({ingest.added if ingest else 0} added, "
            f"{ingest.updated if ingest else 0} updated, {ingest.unchanged if ingest else 0} unchanged)"
        )
        try:
            result = await measure(app, "sample", sample_questions(), messages)
            return report("sample KB (knowledge/)", app.index.count(), result)
        finally:
            await app.close()


async def run_synthetic(n: int, messages: int) -> dict[str, Any] | None:
    recorded = cached_store_ready(n)
    if recorded is not None and recorded.get("index_code") != index_code_fingerprint():
        print(f"\nWARNING: the index code changed since {synthetic_store(n)} was built: bench/ingest.py --rebuild")
    if recorded is None:
        print(f"\nsynthetic KB of {n:,}: no cached store at {synthetic_store(n)}; run bench/ingest.py first. Skipped.")
        return None
    with tempfile.TemporaryDirectory(prefix="relaydesk-lat-") as tmp:
        settings = bench_settings(Path(tmp), kb=Path(tmp) / "unused", store=synthetic_store(n))
        app = await build_app(settings, ingest=False)  # the cached store, as built by bench/ingest.py
        try:
            result = await measure(app, "synthetic", synthetic_queries(n, messages + WARMUP), messages)
            return report(f"synthetic KB ({n:,} articles)", app.index.count(), result)
        finally:
            await app.close()


async def main(which: str, messages: int) -> None:
    header("latency: Desk.receive per message (offline brain, SQLite)")
    rows = []
    if which in ("sample", "both"):
        rows.append(await run_sample(messages))
    if which in ("synthetic", "both"):
        row = await run_synthetic(SYNTHETIC_SIZE, messages)
        if row:
            rows.append(row)
    print("\nsummary")
    for row in rows:
        goal = ""
        if row["label"].startswith("synthetic"):
            goal = f"; p99 goal <= {GOAL_P99_MS:.0f} ms: {'MET' if row['p99'] <= GOAL_P99_MS else 'MISSED'}"
        verdict = "MET" if max(row["overhead_p50"], row["overhead_p99"]) <= GOAL_OVERHEAD else "MISSED"
        print(
            f"  {row['label']:32} p50 {row['p50']:7.2f} ms  p99 {row['p99']:7.2f} ms  "
            f"| bare p50 {row['bare_p50']:6.2f} "
            f"p99 {row['bare_p99']:6.2f} | overhead p50 {row['overhead_p50']:+.0%} p99 {row['overhead_p99']:+.0%} "
            f"(goal <= 25%: {verdict}); CPU-time overhead (mean) {row['cpu_overhead_mean']:+.0%}{goal}"
        )
        if verdict == "MISSED":
            print(f"    the largest part beyond embedding + chroma query: {row['worst']}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 messages per KB: a smoke check")
    parser.add_argument("--kb", choices=("sample", "synthetic", "both"), default="both")
    parser.add_argument("--messages", type=int, help="messages per KB (default 300, quick 60)")
    args = parser.parse_args()
    asyncio.run(main(args.kb, args.messages or (60 if args.quick else 300)))
