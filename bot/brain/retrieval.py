"""From nearest neighbours and the topic classifier to ranked topics with a confidence.

A question is compared with every way the KB says its topics (the questions admins wrote, titles,
body chunks, resolved cases). The articles are ranked by the classifier trained on the KB
(bot.knowledge.classifier) when there is one; a resolved case that is nearer than any article
record wins, since it is what an operator actually answered to this question. Resolved cases that
give the same answer (operators teaching one reply to several questions) count as one topic: the
probability of that answer is the sum of theirs. Confidence is the best topic's probability and the
margin its lead over the runner-up; thresholds on both come from config (`relaydesk tune` finds them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bot.domain.types import Match
from bot.knowledge.index import CASE, CHUNK, OFF_TOPIC, SIMILARITY_KINDS, Hit

# Body chunks are written as answers, not questions: their similarity to a question runs lower.
CHUNK_PENALTY = 0.03
# e5 similarities live in a narrow band (0.7–0.95); this temperature spreads them into probabilities.
TEMPERATURE = 0.02
NEIGHBOUR_WEIGHT = 0.25


def rank_topics(
    hits: Sequence[Hit], probabilities: Sequence[tuple[str, float]] = ()
) -> tuple[list[Match], float, float]:
    """Return topics best first, the best one's confidence and its margin over the runner-up."""
    neighbours = rank_neighbours(hits)
    nearest = max(hits, key=_similarity, default=None)
    if nearest is not None and nearest.kind == CASE:
        return _case_first(neighbours, nearest.article_id)
    # The off-topic class is the gate's, not a topic: the articles' confidences are among the articles.
    in_scope = [(a, p) for a, p in probabilities if a != OFF_TOPIC]
    total = sum(p for _, p in in_scope)
    probabilities = [(a, p / total) for a, p in in_scope] if total > 0 else in_scope
    if not probabilities:
        return neighbours
    titles: dict[str, str] = {}
    chunks: dict[str, int] = {}
    for hit in hits:  # best first
        titles.setdefault(hit.article_id, hit.title)
        if hit.kind == CHUNK:
            chunks.setdefault(hit.article_id, hit.n)
    matches = [Match(a, round(p, 4), titles.get(a, a), "article", chunks.get(a)) for a, p in probabilities[:10]]
    top = probabilities[0][1]
    return matches, top, top - (probabilities[1][1] if len(probabilities) > 1 else 0.0)


def similarity(hits: Sequence[Hit], topic: str | None) -> float:
    """How near the question is to the nearest way a customer asks `topic` (a question, the title or a case).

    The open-set gate thresholds it: a message far from everything the topic was asked as is out of scope
    however sure the classifier is among the topics it knows."""
    return max((h.similarity for h in hits if h.article_id == topic and h.kind in SIMILARITY_KINDS), default=0.0)


def off_topic_wins(
    probabilities: Sequence[tuple[str, float]], matches: Sequence[Match], near: float, nearest_example: float
) -> bool:
    """The classifier's off-topic class won, and an off-topic example (`nearest_example`) is as near as the
    nearest way of asking the best topic (`near`). Both must hold (bench/README.md, triage); an operator's
    taught case nearer than any article outranks both."""
    if not probabilities or probabilities[0][0] != OFF_TOPIC or (matches and matches[0].kind == "case"):
        return False
    return nearest_example >= near


def rank_neighbours(hits: Sequence[Hit]) -> tuple[list[Match], float, float]:
    """Topics by their nearest records alone: a softmax over each topic's best similarity.

    Resolved cases with the same answer (and the same approval) are one topic, named after the nearest."""
    best: dict[str, float] = {}
    support: dict[str, float] = {}
    titles: dict[str, str] = {}
    kinds: dict[str, str] = {}
    chunks: dict[str, int] = {}
    reusable: dict[str, bool] = {}
    groups: dict[str, str] = {}
    for hit in hits:
        if hit.kind == CHUNK:
            chunks.setdefault(hit.article_id, hit.n)  # hits come best first
        similarity = _similarity(hit)
        if similarity > best.get(hit.article_id, -1.0):
            best[hit.article_id] = similarity
            titles.setdefault(hit.article_id, hit.title)
            kinds[hit.article_id] = "case" if hit.kind == CASE else "article"
            reusable[hit.article_id] = hit.reusable
            groups[hit.article_id] = (
                f"answer:{hit.answer_key}:{hit.reusable}" if hit.kind == CASE and hit.answer_key else hit.article_id
            )
        support[hit.article_id] = support.get(hit.article_id, 0.0) + math.exp((similarity - 1.0) / TEMPERATURE)
    if not best:
        return [], 0.0, 0.0
    top = max(best.values())
    scores = {
        a: best[a] + NEIGHBOUR_WEIGHT * TEMPERATURE * math.log(support[a] / math.exp((best[a] - 1.0) / TEMPERATURE))
        for a in best
    }
    weights: dict[str, float] = {}
    named: dict[str, str] = {}  # group -> its nearest member, whose id and title the match carries
    for a in sorted(scores, key=lambda a: scores[a], reverse=True):
        weights[groups[a]] = weights.get(groups[a], 0.0) + math.exp((scores[a] - top) / TEMPERATURE)
        named.setdefault(groups[a], a)
    total = sum(weights.values())
    ranked = sorted(weights, key=lambda g: weights[g], reverse=True)
    probabilities = [weights[g] / total for g in ranked]
    matches = [
        Match(named[g], round(p, 4), titles[named[g]], kinds[named[g]], chunks.get(named[g]), reusable[named[g]])
        for g, p in zip(ranked, probabilities, strict=True)
    ]
    margin = probabilities[0] - (probabilities[1] if len(probabilities) > 1 else 0.0)
    return matches, probabilities[0], margin


def _similarity(hit: Hit) -> float:
    return hit.similarity - (CHUNK_PENALTY if hit.kind == CHUNK else 0.0)


def _case_first(neighbours: tuple[list[Match], float, float], case_id: str) -> tuple[list[Match], float, float]:
    """The nearest case's topic first. Its confidence stays its probability among the neighbours, so a case
    barely nearer than an article with more support leads by a negative margin rather than answering."""
    matches = neighbours[0]
    first = next((m for m in matches if m.article_id == case_id), matches[0])
    if first is matches[0]:
        return neighbours
    rest = [m for m in matches if m is not first]
    return [first, *rest], first.score, first.score - (rest[0].score if rest else 0.0)
