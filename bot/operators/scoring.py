"""How good an operator's reply was: scored offline with the reply, then by the LLM judge when there is one."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from bot.brain.language import detect_language
from bot.brain.sentiment import score_sentiment
from bot.delivery.journal import record_event
from bot.domain.types import Author, EventType
from bot.operators.quality import score_reply
from bot.storage.db import Transactions
from bot.storage.models import Event, Message
from bot.storage.reads import last_message

if TYPE_CHECKING:  # only the type: without an LLM, langchain is never imported
    from bot.brain.llm.judge import ReplyJudge

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asked:
    """What a reply is scored against: the customer's last message, their mood (-1 … 1), the language."""

    question: str
    sentiment: float
    language: str


def score_offline(session: Session, conversation_id: int, text: str, language: str) -> tuple[dict[str, Any], Asked]:
    """Score the reply offline against the customer's last message (its stored sentiment when the desk had one);
    also returns what it was scored against, for the LLM judge."""
    asked = last_message(session, conversation_id, Author.CUSTOMER)
    question = asked.text if asked else ""
    language = language or detect_language(question or text)
    stored = (asked.meta or {}).get("sentiment_score") if asked else None
    sentiment = float(stored) if isinstance(stored, int | float) else score_sentiment(question, language).score
    return score_reply(text, question, sentiment, language).as_dict(), Asked(question, sentiment, language)


class Judging:
    """The LLM judge's score of a stored reply, written over the offline one; the offline one on any failure."""

    def __init__(self, transactions: Transactions, judge: ReplyJudge) -> None:
        self._transactions = transactions
        self._judge = judge

    async def judged(
        self, conversation_id: int, message_id: int, event_id: int, text: str, asked: Asked, offline: dict[str, Any]
    ) -> dict[str, Any]:
        """Runs outside the reply's transaction (a slow model must not hold row locks or the delivery). The
        judge's tokens are logged as an `llm_usage` event, so the report's ROI counts them."""
        # The reasons come back in the reply's language (usually, not always, the customer's).
        verdict = await self._judge.judge(text, asked.question, asked.sentiment, detect_language(text, asked.language))
        quality = verdict.score.as_dict() if verdict.score is not None else offline
        spent = verdict.usage.as_data()
        if verdict.score is None and not spent:
            return offline
        scored = verdict.score is not None

        def store(session: Session) -> None:
            if scored:
                stored = session.get(Message, message_id)
                logged = session.get(Event, event_id)
                if stored is not None:
                    stored.meta = {**stored.meta, "quality": quality}  # a new dict: JSON columns track assignment
                if logged is not None:
                    logged.data = {**logged.data, "quality": quality}
            if spent:
                record_event(session, conversation_id, EventType.LLM_USAGE, purpose="judge", **spent)

        try:
            await self._transactions.run(store)
        except Exception:  # advice only: the reply is sent and keeps its offline score
            log.exception("operators: could not store the judge's score")
            return offline
        return quality
