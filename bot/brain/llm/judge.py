"""The LLM judge of operator replies: structure, clarity and empathy, 0-100, a one-line reason each.

The same three dimensions as the offline scorer (bot.operators.quality), from one structured call, with the
reasons in the reply's language (the prompt in `prompts/judge.yaml` is chosen by it). The scores are
advice for the operator who replied, so the judge never stands in the reply's way: OperatorActions
calls it after the reply is stored and queued, it gets at most `llm.timeout_s` (and never more than a
customer message's `budget_s`), and any failure (timeout, 429, 5xx, malformed output) leaves the
offline score in place. The tokens it spent are returned even then: they were paid for.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.brain.llm.usage import TokenMeter
from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD
from bot.config import LLMSettings
from bot.domain.types import Usage
from bot.operators.quality import DIMENSIONS, QualityScore
from bot.prompts.loader import PromptStore

log = logging.getLogger(__name__)

MAX_TEXT = 4000
MAX_REASON = 200


class Verdict(BaseModel):
    """Your scores of the operator's reply: each 0-100, each with a one-line reason."""

    structure: float = Field(description="0-100: greeting, closing, length, steps")
    structure_reason: str = Field(description="one line, in the reply's language")
    clarity: float = Field(description="0-100: answers the question, a next step, plain words")
    clarity_reason: str = Field(description="one line, in the reply's language")
    empathy: float = Field(description="0-100: tone, apology or acknowledgement for an upset customer")
    empathy_reason: str = Field(description="one line, in the reply's language")


@dataclass(frozen=True)
class Judgement:
    score: QualityScore | None  # None: no usable verdict, the offline score stands
    usage: Usage


class ReplyJudge:
    def __init__(self, model: BaseChatModel, prompts: PromptStore, settings: LLMSettings) -> None:
        self._structured: Any = model.with_structured_output(Verdict, method="function_calling")
        self._prompts = prompts
        self._timeout_s = min(settings.timeout_s, settings.budget_s)

    async def judge(self, reply: str, question: str, customer_sentiment: float, language: str) -> Judgement:
        """Score `reply` to `question` (the customer's last message); the same inputs as `score_reply`."""
        meter = TokenMeter()
        try:
            async with asyncio.timeout(self._timeout_s):
                found = await self._structured.ainvoke(
                    self._messages(reply, question, customer_sentiment, language), config={"callbacks": [meter]}
                )
        except Exception as exc:  # timeout, 429, 5xx, a broken prompt, malformed output: the offline score stands
            log.warning("llm judge failed, keeping the offline score: %s", type(exc).__name__)
            return Judgement(None, meter.usage)
        if not isinstance(found, Verdict) or not all(math.isfinite(getattr(found, n)) for n in DIMENSIONS):
            return Judgement(None, meter.usage)
        return Judgement(to_score(found), meter.usage)

    def _messages(self, reply: str, question: str, customer_sentiment: float, language: str) -> list[Any]:
        prompts = self._prompts.judge
        label = (
            "negative"
            if customer_sentiment <= NEGATIVE_THRESHOLD
            else "positive"
            if customer_sentiment >= POSITIVE_THRESHOLD
            else "neutral"
        )
        mood = f"{label} ({customer_sentiment:+.2f} on a scale from -1 to 1)"
        system = prompts.render("instructions", language, sentiment=mood)
        review = prompts.render("review", language, question=question[:MAX_TEXT] or "-", reply=reply[:MAX_TEXT])
        return [SystemMessage(system), HumanMessage(review)]


def to_score(verdict: Verdict) -> QualityScore:
    """The model's verdict bounded by code: scores clamped to 0-100, each reason one short line."""
    values = verdict.model_dump()
    scores = {name: max(0, min(100, round(float(values[name])))) for name in DIMENSIONS}
    reasons = {name: _one_line(str(values[f"{name}_reason"])) for name in DIMENSIONS}
    return QualityScore(**scores, reasons=reasons, scorer="llm")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 1] + "…"
