"""Step 3 of a message: language, slots, small talk, topic with confidence, escalation, sentiment, priority.

Triage comes first (bot.brain.triage): small talk is recognised without the encoder; entities are cut out of
the text before it is embedded; then one embedding serves the topic classifier (with its off-topic
class), the open-set gate's similarity and the escalation topics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from bot.brain.intent import priority, wants_human
from bot.brain.language import detect_language
from bot.brain.retrieval import off_topic_wins, rank_topics, similarity
from bot.brain.sentiment import score_sentiment
from bot.brain.sentiment_model import SentimentModel
from bot.brain.triage.entities import MAX_QUERY_CHARS, Slots, extract
from bot.brain.triage.examples import TriageExamples
from bot.brain.triage.smalltalk import SmallTalk, is_praise, small_talk
from bot.domain.types import Analysis, Escalation, Priority, Sentiment
from bot.knowledge.index import QUESTION, TITLE, Hit, KnowledgeIndex

_RANK = {p: i for i, p in enumerate(Priority)}


class Analyzer:
    def __init__(
        self,
        index: KnowledgeIndex,
        top_k: int = 30,
        default_language: str = "en",
        examples: TriageExamples | None = None,
        sentiment: SentimentModel | None = None,
    ) -> None:
        """`sentiment`: the trained head over this index's embeddings (None: the lexicon alone)."""
        self._index = index
        self._top_k = top_k
        self._default_language = default_language
        self._examples = examples
        self._sentiment = sentiment

    @property
    def sentiment(self) -> SentimentModel | None:
        return self._sentiment

    async def analyse(self, text: str, language_hint: str = "", kind: str = "text") -> Analysis:
        """`language_hint`: the conversation's language, kept when the message has none of its own."""
        language = detect_language(text, default=language_hint or self._default_language)
        masked, slots = extract(text)
        talk = small_talk(text, kind)
        if talk is not None:
            return self._small_talk(talk, language, slots)
        if not masked:  # only a number, an e-mail, a date: nothing to classify
            return self.conclude(text, language, [], slots=slots)
        if self._examples is not None:
            await self._examples.refresh()
        vector = await self._index.embed_query(masked[:MAX_QUERY_CHARS])
        hits = await asyncio.to_thread(self._index.search_vector, vector, self._top_k)
        probabilities = self._index.topic_probabilities(vector, [hit.article_id for hit in hits])
        off_topic = self._examples.off_topic(vector) if self._examples is not None else 0.0
        escalation = self._escalation(vector, hits)
        return self.conclude(text, language, hits, probabilities, escalation, slots, off_topic, vector)

    def conclude(
        self,
        text: str,
        language: str,
        hits: Sequence[Hit],
        probabilities: Sequence[tuple[str, float]] = (),
        escalation: Escalation | None = None,
        slots: Slots | None = None,
        off_topic: float = 0.0,
        vector: np.ndarray | None = None,
    ) -> Analysis:
        """`off_topic`: the similarity of the nearest off-topic example (prompts/off_topic.yaml)."""
        matches, confidence, margin = rank_topics(hits, probabilities)
        topic = matches[0].article_id if matches else None
        near = similarity(hits, topic)
        if self._sentiment is not None and vector is not None:
            sentiment = self._sentiment.score(vector, text, language)
            may_praise = escalation is None  # read by the trained head only: the lexicon's scores are not on its scale
        else:
            sentiment, may_praise = score_sentiment(text, language), False
        human = wants_human(text)
        rank = priority(sentiment.score, text, human)
        if escalation is not None and _RANK[escalation.priority] > _RANK[rank]:
            rank = escalation.priority
        praise = may_praise and not human and is_praise(text, sentiment.score)
        return Analysis(
            language=language,
            topic=topic,
            confidence=confidence,
            margin=margin,
            sentiment=sentiment.label,
            sentiment_score=sentiment.score,
            priority=rank,
            wants_human=human,
            matches=tuple(matches[:5]),
            similarity=near,
            off_topic=off_topic_wins(probabilities, matches, near, off_topic),
            escalation=escalation,
            small_talk=SmallTalk.PRAISE if praise else None,
            slots=slots or Slots(),
        )

    def _escalation(self, vector: np.ndarray, hits: Sequence[Hit]) -> Escalation | None:
        if self._examples is None:
            return None
        nearest_question = max((h.similarity for h in hits if h.kind in (QUESTION, TITLE)), default=0.0)
        return self._examples.escalation(vector, nearest_question)

    @staticmethod
    def _small_talk(talk: SmallTalk, language: str, slots: Slots) -> Analysis:
        thanks = talk == SmallTalk.THANKS
        return Analysis(
            language=language,
            topic=None,
            confidence=1.0,
            margin=1.0,
            sentiment=Sentiment.POSITIVE if thanks else Sentiment.NEUTRAL,
            sentiment_score=0.6 if thanks else 0.0,
            priority=Priority.LOW,
            wants_human=False,
            small_talk=talk,
            slots=slots,
        )
