"""Thresholds that hold on new traffic: the open-set gate tuned against out-of-scope questions it never saw.

A deployment's tuning cases are mostly questions the knowledge base answers; tuned on them alone, the
thresholds say nothing about the messages no article covers. So `relaydesk tune` makes such messages
from the knowledge base itself: it holds out a fifth of the articles at a time, trains the classifier
without them, and scores their questions and tuning cases as the desk would. Each of those is an answer
that would be wrong: pseudo out-of-scope traffic, weighted to a share of all traffic. The thresholds
(confidence, margin, similarity) are the ones with the most correct answers whose precision, as a
Wilson lower bound, stays at or above the target (bench/README.md, triage).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bot.brain.retrieval import off_topic_wins, rank_topics
from bot.knowledge.classifier import TopicClassifier
from bot.knowledge.index import OFF_TOPIC, QUESTION, TITLE

FOLDS = 5
SEED = 0
MARGINS = (0.0, 0.05, 0.1, 0.2, 0.3)
SIMILARITY_STEPS = 40  # candidate similarity thresholds: quantiles of the right answers' (each encoder has its scale)


@dataclass(frozen=True)
class Scores:
    """What the thresholds read of one message."""

    confidence: float
    margin: float
    similarity: float
    off_topic: bool = False


@dataclass(frozen=True)
class Thresholds:
    min_confidence: float
    min_margin: float = 0.0
    min_similarity: float = 0.0

    def admit(self, scores: Scores) -> bool:
        return (
            not scores.off_topic
            and scores.confidence >= self.min_confidence
            and scores.margin >= self.min_margin
            and scores.similarity >= self.min_similarity
        )


@dataclass(frozen=True)
class Judged:
    """A tuning message as the thresholds see it: its scores, whether the answer is right, and its weight."""

    scores: Scores
    correct: bool
    weight: float = 1.0
    in_scope: bool = True


def wilson_lower(correct: float, total: float, z: float) -> float:
    """The Wilson score interval's lower end for a proportion (z = 0: the proportion itself)."""
    if total <= 0:
        return 0.0
    p = correct / total
    if z == 0:
        return p
    spread = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return (p + z * z / (2 * total) - spread) / (1 + z * z / total)


def choose(judged: Sequence[Judged], target: float, z: float) -> tuple[Thresholds, float]:
    """The thresholds with the most correct in-scope answers whose precision bound reaches `target`.

    Returns them and the share of in-scope messages they answer correctly; answering nothing always qualifies."""
    if not judged:
        return Thresholds(1.0), 0.0
    confidence = np.asarray([j.scores.confidence for j in judged])
    margin = np.asarray([j.scores.margin for j in judged])
    similarity = np.asarray([j.scores.similarity for j in judged])
    allowed = ~np.asarray([j.scores.off_topic for j in judged])
    weight = np.asarray([j.weight for j in judged])
    right = np.asarray([j.correct and j.in_scope for j in judged]) * weight
    in_scope = float(sum(j.weight for j in judged if j.in_scope)) or 1.0
    best, best_rate = Thresholds(1.0), 0.0
    candidates = np.unique(np.concatenate([[0.0], np.round(confidence[right > 0], 4)]))
    similarities = _similarities(similarity[right > 0])
    for min_margin in MARGINS:
        for min_similarity in similarities:
            base = allowed & (margin >= min_margin) & (similarity >= min_similarity)
            for min_confidence in candidates:
                admitted = base & (confidence >= min_confidence)
                correct = float(right[admitted].sum())
                if correct / in_scope <= best_rate:
                    break  # confidences only rise from here: nothing better down this line
                if wilson_lower(correct, float(weight[admitted].sum()), z) >= target:
                    best, best_rate = Thresholds(float(min_confidence), min_margin, min_similarity), correct / in_scope
    return best, best_rate


def _similarities(right: np.ndarray) -> list[float]:
    """0 and the right answers' similarities up to their 60th percentile: a gate above that costs too much."""
    if not len(right):
        return [0.0]
    steps = np.quantile(right, np.linspace(0, 0.6, SIMILARITY_STEPS))
    return [0.0, *sorted({round(float(v), 4) for v in steps})]


def held_out_scores(
    vectors: np.ndarray,
    labels: Sequence[str],
    kinds: Sequence[str],
    probes: Sequence[tuple[np.ndarray, str]],
    folds: int = FOLDS,
) -> list[Scores]:
    """Scores of messages about articles the classifier never learned: pseudo out-of-scope traffic.

    `vectors`, `labels`, `kinds`: the classifier's training rows (KnowledgeIndex.training_set); `probes`:
    tuning messages with the article they are about. Each fold holds out a fifth of the articles; their
    probes and their own questions are scored by a classifier trained on the rest."""
    labels_ = np.asarray(labels)
    kinds_ = np.asarray(kinds)
    articles = sorted(set(labels) - {OFF_TOPIC})
    if len(articles) < 2 * folds:
        return []  # too few articles to hold any out and keep a knowledge base
    order = np.random.default_rng(SEED).permutation(len(articles))
    scores: list[Scores] = []
    off_topic = vectors[labels_ == OFF_TOPIC]
    for fold in np.array_split(order, folds):
        held = {articles[i] for i in fold}
        keep = ~np.isin(labels_, list(held))
        classifier = TopicClassifier.fit(vectors[keep], list(labels_[keep]), {})
        asked = keep & np.isin(kinds_, [QUESTION, TITLE])
        questions = {a: vectors[asked & (labels_ == a)] for a in articles if a not in held}
        held_questions = vectors[np.isin(labels_, list(held)) & (kinds_ == QUESTION)]
        messages = [v for v, article in probes if article in held] + list(held_questions)
        scores += [_score(classifier, questions, off_topic, v) for v in messages]
    return scores


def _score(
    classifier: TopicClassifier, questions: dict[str, np.ndarray], off_topic: np.ndarray, vector: np.ndarray
) -> Scores:
    """As the analyzer scores a message (bot.brain.analyzer), from the classifier and the questions."""
    probabilities = classifier.probabilities(vector)
    matches, confidence, margin = rank_topics([], probabilities)
    top = matches[0].article_id
    near = float((questions[top] @ vector).max()) if len(questions.get(top, ())) else 0.0
    nearest_example = float((off_topic @ vector).max()) if len(off_topic) else -1.0
    return Scores(confidence, margin, near, off_topic_wins(probabilities, matches, near, nearest_example))
