"""BANKING77-OOS: does the bot know what it does not know? (/work/shared/data/banking77-oos/README.md)

    .venv/bin/python bench/banking77_oos.py                       # both protocols, all cases
    .venv/bin/python bench/banking77_oos.py --quick               # a fifth of the test cases: a smoke check
    .venv/bin/python bench/banking77_oos.py --only operations     # one protocol

Knowledge base: one article per in-scope intent (50) whose questions are its first 10 train.csv utterances.
Test set (both protocols): test.csv + id-oos-test.csv + ood-oos-valid.csv; out-of-scope cases are
`expected: null`. The product tunes its thresholds (bot.analytics.evaluation.tune: held-out articles as pseudo
out-of-scope traffic, Wilson bound) at precision 0.95 and is scored on the test cases:

- cold start: tuned on valid.csv alone, with the built-in off-topic examples (prompts/off_topic.yaml);
- after operations: the id-oos-valid.csv messages (questions operators were handed) are added to the
  off-topic examples, as an admin would after reviewing handoffs, and tuned on valid.csv + id-oos-valid.csv.

Baseline in the same run: the previous method, thresholds on confidence and margin alone, tuned on the
same cases without held-out articles or bound. Also printed: the ceiling, thresholds fitted on the test
set itself (what any thresholds on these scores could reach).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from banking77 import article_id
from common import REPO, bench_settings, header, stopwatch, write_article

from bot.analytics.evaluation import Case, Outcome, Run, run_cases, score, tune
from bot.brain.triage.calibration import Thresholds

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "banking77-oos"
KB_QUESTIONS = 10
TARGET = 0.95
GOALS = {"cold start": (0.92, 0.85, 0.45), "after operations": (0.95, 0.90, 0.40)}  # precision, recall, automation


def read_csv(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        return [(row["text"], row["category"]) for row in csv.DictReader(f)]


def cases(rows: list[tuple[str, str]]) -> list[Case]:
    return [Case(text, None if category == "oos" else article_id(category)) for text, category in rows]


def build_kb(folder: Path) -> None:
    folder.mkdir()
    by_intent: dict[str, list[str]] = {}
    for text, intent in read_csv("train.csv"):
        by_intent.setdefault(intent, []).append(text)
    for intent, texts in by_intent.items():
        title = intent.replace("_", " ")
        body = f"This article answers questions about {title}."
        write_article(folder, article_id(intent), "en", title, texts[:KB_QUESTIONS], body)


def figures(outcomes: list[Outcome], thresholds: Thresholds) -> dict[str, Any]:
    result = score(outcomes, thresholds)
    in_scope = sum(1 for o in outcomes if o.case.expected is not None)
    result["in_scope_automation"] = round(result["correct"] / in_scope, 4)
    return result


async def protocol(name: str, tmp: Path, kb: Path, tuning: list[Case], test: list[Case], handed: list[str]) -> None:
    prompts = tmp / f"prompts-{name.replace(' ', '-')}"
    shutil.copytree(REPO / "prompts", prompts)
    if handed:  # the questions operators were handed, added to the off-topic examples
        path = prompts / "off_topic.yaml"
        examples = yaml.safe_load(path.read_text(encoding="utf-8"))
        texts = [t.strip() for t in handed if t.strip()]
        examples["handed_to_operators"] = {"en": texts, "ru": list(texts)}
        path.write_text(yaml.safe_dump(examples, allow_unicode=True), encoding="utf-8")
    settings = bench_settings(tmp / name.replace(" ", "-"), kb=kb)
    settings.prompts.path = prompts
    (tmp / name.replace(" ", "-")).mkdir()
    with stopwatch() as took:
        run = await run_cases(settings, kb, [*tuning, *test], held_out=[c for c in tuning if c.expected])
    tuning_out, test_out = run.outcomes[: len(tuning)], run.outcomes[len(tuning) :]
    tuned = Thresholds(**tune(Run(tuning_out, run.held_out), TARGET)["settings"])
    old = tune(Run(tuning_out, []), TARGET, 0.0, 0.0)["settings"]
    previous = Thresholds(old["min_confidence"], old["min_margin"])
    ceiling = Thresholds(**tune(Run(test_out, []), TARGET, 0.0, 0.0)["settings"])
    loose = tune(Run(test_out, []), GOALS[name][0], 0.0, 0.0)["settings"]
    print(f"\n{name} ({took[0]:.0f} s; tuned on {len(tuning)} cases, {len(run.held_out)} held-out messages)")
    print(f"  {'':34} {'precision':>9} {'oos recall':>10} {'in-scope automation':>19}  thresholds")
    rows = {
        "relaydesk (tuned)": tuned,
        "baseline: confidence + margin": previous,
        f"ceiling at {TARGET} (fit on test)": ceiling,
        f"ceiling at {GOALS[name][0]} (fit on test)": Thresholds(**loose),
    }
    for label, thresholds in rows.items():
        f = figures(test_out, thresholds)
        print(
            f"  {label:34} {f['precision']:9.4f} {f['handoff_recall']:10.4f} {f['in_scope_automation']:19.4f}  "
            f"{thresholds.min_confidence:.3f} / {thresholds.min_margin:.2f} / {thresholds.min_similarity:.3f}"
        )
    f = figures(test_out, tuned)
    precision, recall, automation = GOALS[name]
    met = f["precision"] >= precision and f["handoff_recall"] >= recall and f["in_scope_automation"] >= automation
    goal = f"precision >= {precision}, recall >= {recall}, automation >= {automation}"
    print(f"  goal: {goal}: {'MET' if met else 'MISSED'}")


async def main(quick: bool, only: str) -> None:
    header(f"BANKING77-OOS{' (quick: a fifth of the test cases)' if quick else ''}")
    test = cases(read_csv("test.csv") + read_csv("id-oos-test.csv") + read_csv("ood-oos-valid.csv"))
    if quick:
        test = test[::5]
    valid, id_oos_valid = cases(read_csv("valid.csv")), cases(read_csv("id-oos-valid.csv"))
    with tempfile.TemporaryDirectory(prefix="relaydesk-b77oos-") as tmpdir:
        tmp = Path(tmpdir)
        build_kb(tmp / "kb")
        print(f"KB: 50 articles x {KB_QUESTIONS} questions; {len(test)} test cases")
        if only != "operations":
            await protocol("cold start", tmp, tmp / "kb", valid, test, [])
        if only != "cold":
            handed = [c.text for c in id_oos_valid]
            await protocol("after operations", tmp, tmp / "kb", valid + id_oos_valid, test, handed)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a fifth of the test cases")
    parser.add_argument("--only", choices=("cold", "operations"), default="", help="one protocol")
    args = parser.parse_args()
    asyncio.run(main(args.quick, args.only))
