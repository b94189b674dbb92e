"""`relaydesk eval` and `relaydesk tune`: how well the desk answers a set of cases, and which thresholds to use.

A case is `{"text": ..., "expected": "<article id>" | null | "small-talk"}`; `expected: null` means the
desk must hand it to a person, "small-talk" that it must answer from its small-talk texts. A case may
carry `"sentiment"`; one with no `expected` key counts for sentiment only.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app import build_app
from bot.brain.triage.calibration import Judged, Scores, Thresholds, choose, held_out_scores
from bot.brain.triage.entities import extract
from bot.config import Settings
from bot.domain.types import Decision, Reason
from bot.knowledge.index import KnowledgeIndex

NO_TOPIC = object()  # a case without an `expected` key: sentiment only
SMALL_TALK = "small-talk"  # `expected` of a case the desk must answer from its small-talk texts
THRESHOLD_REASONS = {Reason.LOW_CONFIDENCE, Reason.SMALL_MARGIN, Reason.OUT_OF_SCOPE}
OUT_OF_SCOPE_SHARE = 0.2  # the share of traffic no article covers that tune assumes (held-out articles stand in)
WILSON_Z = 1.0  # precision's lower bound at about 84% one-sided confidence


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


@dataclass(frozen=True)
class Run:
    """The cases' outcomes, and what tune needs besides: pseudo out-of-scope scores (bot.brain.triage.calibration)."""

    outcomes: list[Outcome]
    held_out: list[Scores]


async def run_cases(settings: Settings, kb: Path, cases: list[Case], held_out: list[Case] | None = None) -> Run:
    """Ingest `kb` into a throwaway store and database, then put every case through the desk.

    `held_out`: tuning cases to score, with the KB's questions, with a fifth of the articles held out in turn."""
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
            return Run(outcomes, await _held_out(app.index, held_out) if held_out else [])
        finally:
            await app.close()


async def _held_out(index: KnowledgeIndex, cases: list[Case]) -> list[Scores]:
    topical = [c for c in cases if isinstance(c.expected, str)]
    masked = [extract(c.text)[0] or c.text for c in topical]
    vectors = await index.embedder.queries(masked)
    probes = [(vectors[i], str(c.expected)) for i, c in enumerate(topical)]
    rows, labels, kinds = await asyncio.to_thread(index.training_set)
    if not labels:
        return []
    return await asyncio.to_thread(held_out_scores, rows, labels, kinds, probes)


def scores_of(outcome: Outcome) -> Scores | None:
    analysis = outcome.decision.analysis
    if analysis is None or analysis.small_talk is not None:
        return None
    return Scores(analysis.confidence, analysis.margin, analysis.similarity, analysis.off_topic)


def answered(outcome: Outcome, thresholds: Thresholds | None = None) -> bool:
    """Would the desk answer on its own, with these thresholds instead of the configured ones?"""
    decision = outcome.decision
    if decision.action == "small_talk":
        return False  # a reply from texts, not an answer
    reasons = set(decision.reasons)
    scores = scores_of(outcome)
    if thresholds is None or scores is None:
        return not reasons
    return not (reasons - THRESHOLD_REASONS) and thresholds.admit(scores)


def score(outcomes: Iterable[Outcome], thresholds: Thresholds | None = None) -> dict[str, Any]:
    outcomes = list(outcomes)
    topical = [o for o in outcomes if o.case.expected is not NO_TOPIC and o.case.expected != SMALL_TALK]
    sent = [o for o in topical if answered(o, thresholds)]
    correct = sum(1 for o in sent if o.top == o.case.expected)
    must_handoff = [o for o in topical if o.case.expected is None]
    caught = sum(1 for o in must_handoff if not answered(o, thresholds))
    talk = [o for o in outcomes if o.case.expected == SMALL_TALK]
    report: dict[str, Any] = {
        "cases": len(topical),
        "answered": len(sent),
        "correct": correct,
        "precision": round(correct / len(sent), 4) if sent else 0.0,
        "automation_rate": round(correct / len(topical), 4) if topical else 0.0,
        "handoff_recall": round(caught / len(must_handoff), 4) if must_handoff else None,
    }
    if talk:
        report["small_talk_answered"] = round(sum(o.decision.action == "small_talk" for o in talk) / len(talk), 4)
    return report


def failures(outcomes: Iterable[Outcome], thresholds: Thresholds | None = None) -> list[dict[str, Any]]:
    """Each wrong answer, wrong handoff and missed small talk, with what the desk saw."""
    found = []
    for o in outcomes:
        expected = o.case.expected
        if expected is NO_TOPIC:
            continue
        went = "small_talk" if o.decision.action == "small_talk" else "answer" if answered(o, thresholds) else "handoff"
        if expected == SMALL_TALK:
            wrong = went != "small_talk"
        elif expected is None:
            wrong = went != "handoff"
        else:
            wrong = went == "small_talk" or (went == "answer" and o.top != expected) or went == "handoff"
        if not wrong:
            continue
        analysis = o.decision.analysis
        found.append(
            {
                "text": o.case.text,
                "expected": expected,
                "decision": went,
                "predicted": analysis.topic if analysis else None,
                "confidence": round(analysis.confidence, 4) if analysis else None,
                "margin": round(analysis.margin, 4) if analysis else None,
                "similarity": round(analysis.similarity, 4) if analysis else None,
                "escalation": analysis.escalation.name if analysis and analysis.escalation else None,
                "reasons": [str(r) for r in o.decision.reasons],
            }
        )
    return found


def evaluate(outcomes: list[Outcome]) -> dict[str, Any]:
    report = score(outcomes)
    report["top1_accuracy"] = _top1(outcomes)
    latencies = sorted(o.ms for o in outcomes)
    report["latency_ms_p50"] = round(_percentile(latencies, 50), 2)
    report["latency_ms_p95"] = round(_percentile(latencies, 95), 2)
    report.update(sentiment_scores(outcomes))
    return report


def _top1(outcomes: list[Outcome]) -> float | None:
    known = [o for o in outcomes if isinstance(o.case.expected, str) and o.case.expected != SMALL_TALK]
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


def tune(
    run: Run,
    target_precision: float,
    out_of_scope_share: float = OUT_OF_SCOPE_SHARE,
    z: float = WILSON_Z,
) -> dict[str, Any]:
    """The thresholds with the highest automation rate whose precision holds on new traffic.

    The tuning cases count as they are (an `expected: null` case answered is a wrong answer); the held-out
    scores of `run` (questions of articles the classifier did not learn) count as wrong answers weighing
    `out_of_scope_share` of the in-scope traffic besides them: the `expected: null` cases an admin writes are
    mostly far from the shop, the held-out articles stand for the near topics the KB does not cover yet.
    The precision's Wilson lower bound at `z` must reach the target."""
    judged: list[Judged] = []
    topical = [o for o in run.outcomes if o.case.expected is not NO_TOPIC and o.case.expected != SMALL_TALK]
    for outcome in topical:
        scores = scores_of(outcome)
        if scores is None or set(outcome.decision.reasons) - THRESHOLD_REASONS:
            continue  # handed off for another reason whatever the thresholds
        in_scope = outcome.case.expected is not None
        judged.append(Judged(scores, in_scope and outcome.top == outcome.case.expected, 1.0, in_scope))
    in_scope_count = sum(1 for o in topical if o.case.expected is not None)
    near = out_of_scope_share / (1 - out_of_scope_share) * in_scope_count
    if run.held_out and near > 0:
        judged += [Judged(s, False, near / len(run.held_out), False) for s in run.held_out]
    thresholds, _ = choose(judged, target_precision, z)
    return {
        "settings": vars(thresholds),
        "out_of_scope_share": out_of_scope_share,
        "held_out_messages": len(run.held_out),
        "wilson_z": z,
        **score(run.outcomes, thresholds),
    }


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    index = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return values[index]
