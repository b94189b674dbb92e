"""LLM analysis: topic, sentiment, priority and a wish for a human from one structured call.

The offline analysis runs first (language, retrieval candidates; it is also the answer when the LLM
fails or runs out of time); the LLM refines it into the same `Analysis` type. The topic it picks must
be one of the retrieved candidates, so a model can't invent a topic the policy doesn't know.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.brain.analyzer import Analyzer
from bot.brain.llm import budget
from bot.brain.llm.usage import TokenMeter
from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD
from bot.brain.sentiment_model import SentimentModel
from bot.brain.triage.examples import TriageExamples
from bot.config import LLMSettings
from bot.domain.types import Analysis, Priority, Sentiment
from bot.knowledge.index import KnowledgeIndex
from bot.prompts.loader import PromptStore

log = logging.getLogger(__name__)

MAX_TEXT = 4000
ANALYSIS_SHARE = 1 / 3  # of the message's budget, at most: the rest is the agent's
_RANK = {p: i for i, p in enumerate(Priority)}
# The score range each label stands for, as the offline analysis draws them.
_BANDS = {
    Sentiment.NEGATIVE: (-1.0, NEGATIVE_THRESHOLD),
    Sentiment.NEUTRAL: (NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD),
    Sentiment.POSITIVE: (POSITIVE_THRESHOLD, 1.0),
}


class MessageAnalysis(BaseModel):
    """The classification of one customer message."""

    topic: str | None = Field(default=None, description="one of the listed topic ids, or null")
    sentiment: Literal["negative", "neutral", "positive"]
    # The bounds are shown to the model but not enforced here: an out-of-range score is corrected in
    # `merge` (and logged) instead of throwing the whole classification away.
    sentiment_score: float = Field(json_schema_extra={"minimum": -1, "maximum": 1})
    priority: Literal["low", "normal", "high", "urgent"]
    wants_human: bool = False


class LLMAnalyzer(Analyzer):
    def __init__(
        self,
        index: KnowledgeIndex,
        model: BaseChatModel,
        prompts: PromptStore,
        settings: LLMSettings,
        top_k: int = 30,
        default_language: str = "en",
        examples: TriageExamples | None = None,
        sentiment: SentimentModel | None = None,
    ) -> None:
        super().__init__(index, top_k, default_language, examples, sentiment)
        self._structured: Any = model.with_structured_output(MessageAnalysis, method="function_calling")
        self._prompts = prompts
        self._settings = settings

    async def analyse(self, text: str, language_hint: str = "", kind: str = "text") -> Analysis:
        budget.start(self._settings.budget_s)
        offline = await super().analyse(text, language_hint, kind)
        if offline.small_talk is not None:
            return offline  # "hi" and "thanks" need no model call
        meter = TokenMeter()  # tokens count even when the answer is unusable: they were paid for
        try:
            async with asyncio.timeout(min(self._settings.timeout_s, self._settings.budget_s * ANALYSIS_SHARE)):
                found = await self._structured.ainvoke(self._messages(text, offline), config={"callbacks": [meter]})
        except Exception as exc:  # timeout, 429, 5xx, malformed: the offline analysis stands
            log.warning("llm analysis failed, using the offline one: %s", type(exc).__name__)
            return replace(offline, usage=meter.usage)
        if not isinstance(found, MessageAnalysis):
            return replace(offline, usage=meter.usage)
        return replace(merge(offline, found), usage=meter.usage)

    def _messages(self, text: str, offline: Analysis) -> list[Any]:
        topics = ", ".join(f"{m.article_id} ({m.title})" for m in offline.matches) or "none"
        system = self._prompts.agent.render("analysis", offline.language, topics=topics)
        return [SystemMessage(system), HumanMessage(text[:MAX_TEXT])]


def merge(offline: Analysis, found: MessageAnalysis) -> Analysis:
    """The LLM's reading, bounded by what code knows: known topics only, and a wish for a human never lost."""
    known = {m.article_id for m in offline.matches}
    topic = found.topic if found.topic in known else offline.topic
    if found.topic is not None and found.topic not in known:  # invented, or not among this message's candidates
        log.warning("llm analysis: topic %r is not a candidate; keeping %r", found.topic[:80], offline.topic)
    matches = offline.matches
    if topic != offline.topic and topic is not None:  # the LLM's topic first, so the offline answer follows it
        matches = tuple(sorted(matches, key=lambda m: m.article_id != topic))
    wants_human = offline.wants_human or found.wants_human
    priority = Priority(found.priority)
    if _RANK[Priority(offline.priority)] > _RANK[priority] and offline.wants_human:
        priority = Priority(offline.priority)
    return replace(
        offline,
        topic=topic,
        matches=matches,
        sentiment=Sentiment(found.sentiment),
        sentiment_score=consistent_score(Sentiment(found.sentiment), found.sentiment_score, offline.sentiment_score),
        priority=priority,
        wants_human=wants_human,
    )


def consistent_score(label: Sentiment, score: float, offline: float) -> float:
    """The LLM's score, made to agree with its label: the label wins.

    A score outside its label's band ("negative" at +0.9), outside -1..1 or not a number is replaced
    by the offline score when that agrees with the label, else moved to the nearest end of the band;
    either way it is logged, since it means the model answered carelessly."""
    low, high = _BANDS[label]
    if math.isfinite(score) and low <= score <= high:
        return score
    fixed = offline if low <= offline <= high else min(max(score if math.isfinite(score) else 0.0, low), high)
    log.warning("llm analysis: sentiment %s with score %r; using %.2f", label, score, fixed)
    return fixed
