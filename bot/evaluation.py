"""`relaydesk eval` and `relaydesk tune`: how well the desk answers a set of cases, and which thresholds to use.

A case is `{"text": ..., "expected": "<article id>" | null}`; `expected: null` means the desk must hand
it to a person. A case may carry `"sentiment"`; one with no `expected` key counts for sentiment only.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import build_app
from bot.config import Settings
from bot.domain import Decision, Reason

NO_TOPIC = object()  # a case without an `expected` key: sentiment only
THRESHOLD_REASONS = {Reason.LOW_CONFIDENCE, Reason.SMALL_MARGIN}


class CasesError(ValueError):
    pass


@dataclass(frozen=True)
class Case:
    text: str
    expected: object  # article id, None (must hand off) or NO_TOPIC
    sentiment: str | None = None


@dataclass(frozen=True)
class Outcome:
    case: Case
    decision: Decision
    ms: float

    @property
    def top(self) -> str | None:
        answer = self.decision.answer
        return answer.sources[0] if answer and answer.sources else None


def read_cases(path: Path) -> list[Case]:
    cases = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CasesError(f"{path}: cannot read: {exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CasesError(f"{path}:{number}: not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise CasesError(f"{path}:{number}: expected an object with a string 'text'")
        sentiment = data.get("sentiment")
        if sentiment not in (None, "negative", "neutral", "positive"):
            raise CasesError(f"{path}:{number}: sentiment must be negative, neutral or positive")
        expected = data.get("expected", NO_TOPIC)
        if expected is not NO_TOPIC and expected is not None and not isinstance(expected, str):
            raise CasesError(f"{path}:{number}: expected must be an article id or null")
        cases.append(Case(data["text"], expected, sentiment))
    if not cases:
        raise CasesError(f"{path}: no cases")
    return cases


async def run_cases(settings: Settings, kb: Path, cases: list[Case]) -> list[Outcome]:
    """Ingest `kb` into a throwaway store and database, then put every case through the desk."""
    if not kb.is_dir():
        raise CasesError(f"{kb}: knowledge folder not found")
    with tempfile.TemporaryDirectory(prefix="relaydesk-eval-") as tmp:
        scratch = settings.model_copy(deep=True)
        scratch.knowledge.path = kb
        scratch.knowledge.store = Path(tmp) / "chroma"
        scratch.knowledge.chroma_url = ""
        scratch.database.url = f"sqlite+aiosqlite:///{tmp}/eval.db"
        app = await build_app(scratch)
        try:
            outcomes = []
            for case in cases:
                started = time.perf_counter()
                decision = await app.desk.preview(case.text)
                outcomes.append(Outcome(case, decision, (time.perf_counter() - started) * 1000))
            return outcomes
        finally:
            await app.close()


def answered(outcome: Outcome, min_confidence: float | None = None, min_margin: float | None = None) -> bool:
    """Would the desk answer on its own, with these thresholds instead of the configured ones?"""
    decision = outcome.decision
    reasons = set(decision.reasons)
    if min_confidence is None or decision.analysis is None:
        return not reasons
    analysis = decision.analysis
    return (
        not (reasons - THRESHOLD_REASONS)
        and analysis.confidence >= min_confidence
        and analysis.margin >= (min_margin or 0.0)
    )


def score(
    outcomes: Iterable[Outcome], min_confidence: float | None = None, min_margin: float | None = None
) -> dict[str, Any]:
    topical = [o for o in outcomes if o.case.expected is not NO_TOPIC]
    sent = [o for o in topical if answered(o, min_confidence, min_margin)]
    correct = sum(1 for o in sent if o.top == o.case.expected)
    must_handoff = [o for o in topical if o.case.expected is None]
    caught = sum(1 for o in must_handoff if not answered(o, min_confidence, min_margin))
    return {
        "cases": len(topical),
        "answered": len(sent),
        "correct": correct,
        "precision": round(correct / len(sent), 4) if sent else 0.0,
        "automation_rate": round(correct / len(topical), 4) if topical else 0.0,
        "handoff_recall": round(caught / len(must_handoff), 4) if must_handoff else None,
    }


def evaluate(outcomes: list[Outcome]) -> dict[str, Any]:
    report = score(outcomes)
    report["top1_accuracy"] = _top1(outcomes)
    latencies = sorted(o.ms for o in outcomes)
    report["latency_ms_p50"] = round(_percentile(latencies, 50), 2)
    report["latency_ms_p95"] = round(_percentile(latencies, 95), 2)
    report.update(sentiment_scores(outcomes))
    return report


def _top1(outcomes: list[Outcome]) -> float | None:
    known = [o for o in outcomes if isinstance(o.case.expected, str)]
    return round(sum(o.top == o.case.expected for o in known) / len(known), 4) if known else None


def sentiment_scores(outcomes: list[Outcome]) -> dict[str, float]:
    labelled = [
        (o.case.sentiment, str(o.decision.analysis.sentiment))
        for o in outcomes
        if o.case.sentiment and o.decision.analysis
    ]
    if not labelled:
        return {}
    accuracy = sum(t == p for t, p in labelled) / len(labelled)
    f1s = []
    for label in ("positive", "negative"):
        tp = sum(t == label and p == label for t, p in labelled)
        fp = sum(t != label and p == label for t, p in labelled)
        fn = sum(t == label and p != label for t, p in labelled)
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"sentiment_accuracy": round(accuracy, 4), "sentiment_macro_f1": round(sum(f1s) / 2, 4)}


def tune(outcomes: list[Outcome], target_precision: float) -> dict[str, Any]:
    """The thresholds with the highest automation rate whose precision reaches the target.

    For each margin, a sweep down the confidences (best first) sees every possible cut in one pass.
    """
    topical = [o for o in outcomes if o.case.expected is not NO_TOPIC and o.decision.analysis is not None]
    open_ = [o for o in topical if not set(o.decision.reasons) - THRESHOLD_REASONS]
    best = (0.0, 1.0, 0.0)  # automation, min_confidence, min_margin: answering nothing always qualifies
    for margin in [m / 100 for m in range(0, 100, 2)]:
        ranked = sorted(
            (o for o in open_ if o.decision.analysis and o.decision.analysis.margin >= margin),
            key=lambda o: -o.decision.analysis.confidence if o.decision.analysis else 0.0,
        )
        sent = correct = 0
        for i, outcome in enumerate(ranked):
            sent += 1
            correct += outcome.top == outcome.case.expected
            confidence = outcome.decision.analysis.confidence if outcome.decision.analysis else 1.0
            following = ranked[i + 1].decision.analysis if i + 1 < len(ranked) else None
            if following is not None and following.confidence == confidence:
                continue  # a threshold cannot split equal confidences
            automation = correct / len(topical)
            if correct / sent >= target_precision and automation > best[0]:
                best = (automation, confidence, margin)
    settings = {"min_confidence": best[1], "min_margin": best[2]}  # unrounded: the cut must stay exact
    return {"settings": settings, **score(outcomes, best[1], best[2])}


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[index]
