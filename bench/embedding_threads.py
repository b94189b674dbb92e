"""The local embedder's OpenMP threads: one thread for a question against the whole team.

    .venv/bin/python bench/embedding_threads.py [--quick] [--questions N]

The product's LocalEmbedder embeds a single question on one thread and everything else on the team
(bot/knowledge/embeddings.py). Here the same embedder object takes each question twice in a row, once per
setting, interleaved so that both see the same machine; then batches of 8 passages (an article's
records) both ways. A short pause between questions stands for a live desk, where the team's
threads have gone to sleep before the next message comes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from common import bench_settings, header, percentile, synthetic_queries

from bot.knowledge.embeddings import LocalEmbedder, create_embedder

PAUSE_S = 0.005
PASSAGE = (
    "Delivery takes three to five working days depending on the region and the carrier chosen at checkout; "
    "the tracking number arrives by email as soon as the parcel leaves the warehouse. "
)


async def main(questions: int, batches: int) -> None:
    header("local embedder: threads per call")
    embedder = create_embedder(bench_settings(Path("/tmp"), kb=Path("/tmp")).embeddings)
    if not isinstance(embedder, LocalEmbedder) or embedder.threads[1] < 2:
        print("the local model, its OpenMP runtime or a second core is missing here: nothing to compare")
        return
    product, team = embedder.threads
    print(f"product: one question on {product} thread(s), anything else on {team}; baseline: the team for all")
    texts = synthetic_queries(1000, questions)  # customer-like questions, English and Russian
    await embedder.queries(texts[:1])  # the model's first call warms its buffers
    timings: dict[str, list[float]] = {"one thread (product)": [], f"{team} threads (baseline)": []}
    cpu: dict[str, float] = dict.fromkeys(timings, 0.0)  # the process's CPU time: what the other core gets back
    for text in texts:
        for name, threads in zip(timings, (product, team), strict=True):
            embedder.threads = (threads, team)
            started, used = time.perf_counter(), time.process_time()
            await embedder.queries([text])
            timings[name].append((time.perf_counter() - started) * 1000)
            cpu[name] += time.process_time() - used
            await asyncio.sleep(PAUSE_S)
    print(f"\none question ({len(texts)} questions, {PAUSE_S * 1000:.0f} ms apart), ms:")
    for name, values in timings.items():
        print(
            f"  {name:28} p50 {percentile(values, 50):6.1f}  p90 {percentile(values, 90):6.1f}  "
            f"p99 {percentile(values, 99):6.1f}   CPU time {cpu[name] / len(values) * 1000:5.1f} per question"
        )
    passages = [f"{i}. {PASSAGE * 3}" for i in range(8)]
    per_batch: dict[int, list[float]] = {1: [], team: []}
    for _ in range(batches):
        for threads in per_batch:
            embedder.threads = (product, threads)
            started = time.perf_counter()
            await embedder.documents(passages)
            per_batch[threads].append((time.perf_counter() - started) * 1000)
    print(f"\n8 passages ({batches} batches), ms per batch:")
    for threads, values in per_batch.items():
        role = "product" if threads == team else "baseline"
        print(f"  {threads} thread(s) ({role}){'':14} p50 {percentile(values, 50):6.0f}")
    embedder.threads = (product, team)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 questions, 3 batches")
    parser.add_argument("--questions", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(60 if args.quick else args.questions, 3 if args.quick else 10))
