"""Step 3 of a message: language, topic with confidence, sentiment, priority, a wish for a human."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.analysis.intent import priority, wants_human
from bot.analysis.language import detect_language
from bot.analysis.sentiment import score_sentiment
from bot.domain import Analysis
from bot.knowledge.index import Hit, KnowledgeIndex
from bot.retrieval import rank_topics

MAX_QUERY_CHARS = 2000  # the embedding model reads ~512 tokens; the rest would only cost time


class Analyzer:
    def __init__(self, index: KnowledgeIndex, top_k: int = 30, default_language: str = "en") -> None:
        self._index = index
        self._top_k = top_k
        self._default_language = default_language

    async def analyse(self, text: str, language_hint: str = "") -> Analysis:
        language = detect_language(text, default=language_hint or self._default_language)
        vector = await self._index.embed_query(text[:MAX_QUERY_CHARS])
        hits = await asyncio.to_thread(self._index.search_vector, vector, self._top_k)
        probabilities = self._index.topic_probabilities(vector, [hit.article_id for hit in hits])
        return self.conclude(text, language, hits, probabilities)

    def conclude(
        self, text: str, language: str, hits: Sequence[Hit], probabilities: Sequence[tuple[str, float]] = ()
    ) -> Analysis:
        matches, confidence, margin = rank_topics(hits, probabilities)
        sentiment = score_sentiment(text, language)
        human = wants_human(text)
        return Analysis(
            language=language,
            topic=matches[0].article_id if matches else None,
            confidence=confidence,
            margin=margin,
            sentiment=sentiment.label,
            sentiment_score=sentiment.score,
            priority=priority(sentiment.score, text, human),
            wants_human=human,
            matches=tuple(matches[:5]),
        )
