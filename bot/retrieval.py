"""From nearest neighbours and the topic classifier to ranked topics with a confidence.

A question is compared with every way the KB says its topics (the questions admins wrote, titles,
body chunks, resolved cases). The articles are ranked by the classifier trained on the KB
(bot.knowledge.classifier) when there is one; a resolved case that is nearer than any article
record wins, since it is what an operator actually answered to this question. Confidence is the
best topic's probability and the margin its lead over the runner-up; thresholds on both come from
config (`relaydesk tune` finds them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bot.domain import Match
from bot.knowledge.index import CHUNK, Hit

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
    if not probabilities or (neighbours[0] and neighbours[0][0].kind == "case"):
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


def rank_neighbours(hits: Sequence[Hit]) -> tuple[list[Match], float, float]:
    """Topics by their nearest records alone: a softmax over each topic's best similarity."""
    best: dict[str, float] = {}
    support: dict[str, float] = {}
    titles: dict[str, str] = {}
    kinds: dict[str, str] = {}
    chunks: dict[str, int] = {}
    reusable: dict[str, bool] = {}
    for hit in hits:
        if hit.kind == CHUNK:
            chunks.setdefault(hit.article_id, hit.n)  # hits come best first
        similarity = hit.similarity - (CHUNK_PENALTY if hit.kind == CHUNK else 0.0)
        if similarity > best.get(hit.article_id, -1.0):
            best[hit.article_id] = similarity
            titles.setdefault(hit.article_id, hit.title)
            kinds[hit.article_id] = "case" if hit.kind == "case" else "article"
            reusable[hit.article_id] = hit.reusable
        support[hit.article_id] = support.get(hit.article_id, 0.0) + math.exp((similarity - 1.0) / TEMPERATURE)
    if not best:
        return [], 0.0, 0.0
    top = max(best.values())
    scores = {
        a: best[a] + NEIGHBOUR_WEIGHT * TEMPERATURE * math.log(support[a] / math.exp((best[a] - 1.0) / TEMPERATURE))
        for a in best
    }
    weights = {a: math.exp((s - top) / TEMPERATURE) for a, s in scores.items()}
    total = sum(weights.values())
    ranked = sorted(scores, key=lambda a: scores[a], reverse=True)
    probabilities = [weights[a] / total for a in ranked]
    matches = [
        Match(a, round(p, 4), titles[a], kinds[a], chunks.get(a), reusable[a])
        for a, p in zip(ranked, probabilities, strict=True)
    ]
    margin = probabilities[0] - (probabilities[1] if len(probabilities) > 1 else 0.0)
    return matches, probabilities[0], margin
