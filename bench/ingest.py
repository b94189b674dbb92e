"""Ingest benchmark: the synthetic KB from scratch, re-ingest unchanged, re-ingest after editing 10 articles.

    .venv/bin/python bench/ingest.py            # 10,000 articles (the first run embeds them: tens of minutes)
    .venv/bin/python bench/ingest.py --quick    # 100 articles, a smoke check
    .venv/bin/python bench/ingest.py --rebuild  # measure the from-scratch ingest again even if the store is cached
    .venv/bin/python bench/ingest.py --no-hashing-baseline  # the re-ingests only, on the cached store

The from-scratch run with the local embedder builds the cached store under /tmp/relaydesk-bench/
(reused by bench/latency.py and by later runs of this script, which then print the recorded
from-scratch figures). Baselines measured in the same run: the same from-scratch ingest with the
hashing embedder (the index's own cost, nearly without embedding cost), reading + hashing every
file (the floor of an unchanged re-ingest), and embedding the 10 edited articles' texts directly
(the floor of the edit re-ingest).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    GENERATOR_VERSION,
    bench_settings,
    cached_store_ready,
    header,
    index_code_fingerprint,
    load_average,
    stopwatch,
    store_record,
    synthetic_kb,
    synthetic_store,
)

from bot.app import build_index
from bot.knowledge.articles import article_files, chunk_text, read_article
from bot.knowledge.index import IngestReport, KnowledgeIndex

EDITED = 10


def line(label: str, seconds: float, report: IngestReport | None = None) -> None:
    extra = ""
    if report is not None:
        rate = report.records / seconds if seconds and (report.added or report.updated) else 0.0
        extra = (
            f"  added {report.added}, updated {report.updated}, removed {report.removed}, "
            f"unchanged {report.unchanged}; {report.records} records"
            + (f"; {rate:,.0f} records/s" if rate else "")
            + (f"; {len(report.errors)} errors" if report.errors else "")
        )
    print(f"  {label:46} {seconds:9.2f} s{extra}")


async def timed_ingest(index: KnowledgeIndex, kb: Path, progress: bool = False) -> tuple[float, IngestReport]:
    watcher = asyncio.create_task(_progress(index)) if progress else None
    try:
        with stopwatch() as t:
            report = await index.ingest(kb)
    finally:
        if watcher:
            watcher.cancel()
    return t[0], report


async def _progress(index: KnowledgeIndex) -> None:
    started = time.perf_counter()
    while True:
        await asyncio.sleep(120)
        count = await asyncio.to_thread(index.count)
        print(f"    … {time.perf_counter() - started:7.0f} s: {count} records so far", flush=True)


async def from_scratch_local(n: int, kb: Path, rebuild: bool) -> dict[str, Any]:
    recorded = None if rebuild else cached_store_ready(n)
    if recorded is not None:
        print(f"  (the cached store was built from scratch on {recorded['date']}; its figures, not re-measured:)")
        if recorded.get("index_code") != index_code_fingerprint():
            print("  WARNING: bot/knowledge/index.py (or articles/embeddings) changed since: --rebuild to measure anew")
        print(
            f"  {'from scratch, local embedder (recorded)':46} {recorded['seconds']:9.2f} s  "
            f"{recorded['records']} records; {recorded['records'] / recorded['seconds']:,.0f} records/s"
        )
        return recorded
    store = synthetic_store(n)
    record = store_record(n)
    record.unlink(missing_ok=True)
    if store.exists():
        shutil.rmtree(store)
    with tempfile.TemporaryDirectory(prefix="relaydesk-bench-") as tmp:
        settings = bench_settings(Path(tmp), kb=kb, store=store, provider="local")
        index = build_index(settings)
        seconds, report = await timed_ingest(index, kb, progress=True)
    line("from scratch, local embedder", seconds, report)
    data = {
        "generator": GENERATOR_VERSION,
        "complete": not report.errors and report.added == n,
        "seconds": seconds,
        "records": report.records,
        "articles": report.added,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load_average": load_average(),
        "index_code": index_code_fingerprint(),
    }
    record.write_text(json.dumps(data))
    return data


async def main(n: int, rebuild: bool, baseline: bool) -> None:
    header(f"ingest: synthetic KB of {n:,} articles")
    with stopwatch() as t:
        kb = synthetic_kb(n)
    files = article_files(kb)
    print(f"  KB folder {kb} ({len(files)} files; ready in {t[0]:.1f} s)")

    print("\nfrom scratch")
    local = await from_scratch_local(n, kb, rebuild)
    hashing_s = hashing_records = None
    if baseline:
        with tempfile.TemporaryDirectory(prefix="relaydesk-bench-") as tmp:
            settings = bench_settings(Path(tmp), kb=kb, provider="hashing")
            hashing_s, hashing_report = await timed_ingest(build_index(settings), kb)
        hashing_records = hashing_report.records
        line("from scratch, hashing embedder (baseline)", hashing_s, hashing_report)
        embed_share = max(0.0, local["seconds"] - hashing_s)
        print(
            f"  → the index's own cost (hashing run) is {hashing_s / local['seconds']:.1%} of the local run; "
            f"embedding ≈ {embed_share:.0f} s ({embed_share / local['seconds']:.1%})"
        )

    with tempfile.TemporaryDirectory(prefix="relaydesk-bench-") as tmp:
        settings = bench_settings(Path(tmp), kb=kb, store=synthetic_store(n), provider="local")
        index = build_index(settings)

        print("\nre-ingest, nothing changed (goal < 5 s)")
        unchanged_s, unchanged_report = await timed_ingest(index, kb)
        line("re-ingest unchanged", unchanged_s, unchanged_report)
        with stopwatch() as floor:
            for file in article_files(kb):
                hashlib.sha256(b"chunk_chars=1200\n" + file.read_bytes()).hexdigest()
        line("baseline: list + read + sha256 every file", floor[0])
        verdict = "MET" if unchanged_s < 5 else "MISSED"
        print(f"  → goal < 5 s {verdict}; overhead over the floor {unchanged_s - floor[0]:.2f} s")

        print(f"\nre-ingest after editing {EDITED} articles")
        step = max(1, len(files) // EDITED)
        edited = files[::step][:EDITED]
        originals = {f: f.read_bytes() for f in edited}
        try:
            for f in edited:
                f.write_text(f.read_text(encoding="utf-8").rstrip() + "\n\nUpdated: this rule changed recently.\n")
            edit_s, edit_report = await timed_ingest(index, kb)
            line(f"re-ingest, {EDITED} edited", edit_s, edit_report)
            # the floor: embedding exactly what those articles hold, as the index does
            embedder = index._embedder
            with stopwatch() as embed:
                for f in edited:
                    article = read_article(f, kb)
                    # as KnowledgeIndex._replace does today: title + questions as queries, questions as
                    # passages too, body chunks as passages
                    await embedder.queries([article.title, *article.questions])
                    chunks = chunk_text(article.body, settings.knowledge.chunk_chars)
                    await embedder.documents([*article.questions, *(f"{article.title}\n\n{c}" for c in chunks)])
            line(f"baseline: embed the {EDITED} articles' texts alone", embed[0])
            print(
                f"  → edit re-ingest = unchanged check {unchanged_s:.2f} s + embedding {embed[0]:.2f} s "
                f"+ rest (Chroma writes, classifier retraining) {edit_s - unchanged_s - embed[0]:.2f} s"
            )
        finally:
            for f, raw in originals.items():
                f.write_bytes(raw)
            restore_s, restore_report = await timed_ingest(index, kb)
            line("re-ingest, edits reverted (restores the cache)", restore_s, restore_report)

    print("\nsummary")
    print(f"  from scratch (local):     {local['seconds']:.1f} s, {local['records'] / local['seconds']:,.0f} records/s")
    if hashing_s is not None and hashing_records is not None:
        print(f"  from scratch (hashing):   {hashing_s:.1f} s, {hashing_records / hashing_s:,.0f} records/s")
    print(f"  re-ingest unchanged:      {unchanged_s:.2f} s (goal < 5 s: {verdict})")
    print(f"  re-ingest 10 edited:      {edit_s:.2f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 articles: a smoke check in about a minute")
    parser.add_argument("--size", type=int, help="number of synthetic articles (default 10000, quick 100)")
    parser.add_argument("--rebuild", action="store_true", help="re-measure from scratch even if the store is cached")
    parser.add_argument(
        "--no-hashing-baseline", action="store_true", help="skip the from-scratch hashing run (~15 min at 10,000)"
    )
    args = parser.parse_args()
    asyncio.run(main(args.size or (100 if args.quick else 10_000), args.rebuild, not args.no_hashing_baseline))
