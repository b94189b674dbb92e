"""Whether an answer may go out without a human. Code decides, from config; a brain only proposes."""

from __future__ import annotations

from bot.config import AutomationSettings
from bot.desk.pilot import Cohort, PilotCohort
from bot.domain.types import Analysis, Answer, OrderCheck, Reason


class HandoffPolicy:
    def __init__(self, settings: AutomationSettings) -> None:
        self._settings = settings
        self._pilot = PilotCohort(settings)

    def cohort(self, channel: str, chat_id: str) -> Cohort:
        """Whether the bot may answer this customer directly (pilot) or only draft for an operator."""
        return self._pilot.of(channel, chat_id)

    def reasons(
        self, analysis: Analysis, answer: Answer, repeats: int, cohort: Cohort = Cohort.PILOT
    ) -> tuple[Reason, ...]:
        """Every reason to hand this message to a person; empty means the bot may answer."""
        if analysis.small_talk is not None:
            return ()  # answered from texts, whatever the mode: operators never see "hi" or "thanks"
        s = self._settings
        order_failed = answer.order is not None and answer.order.check != OrderCheck.FOUND
        compensation = answer.offers_compensation
        checks = (
            (analysis.wants_human, Reason.ASKED_FOR_HUMAN),
            (analysis.escalation is not None, Reason.ESCALATION),
            (self.out_of_scope(analysis), Reason.OUT_OF_SCOPE),
            (not answer.text.strip() and not order_failed and not answer.withheld, Reason.NO_ANSWER),
            (answer.withheld, Reason.PROMISE_WITHHELD),
            (order_failed, Reason.ORDER_NOT_CHECKED),
            (compensation, Reason.COMPENSATION),
            (answer.needs_human and bool(answer.text.strip()) and not compensation, Reason.RESPONDER_REQUEST),
            (answer.confidence < s.min_confidence, Reason.LOW_CONFIDENCE),
            (analysis.margin < s.min_margin, Reason.SMALL_MARGIN),
            (analysis.sentiment_score <= s.negative_sentiment, Reason.NEGATIVE_SENTIMENT),
            (analysis.topic in s.human_only_topics, Reason.HUMAN_ONLY_TOPIC),
            (s.repeat_limit > 0 and repeats >= s.repeat_limit, Reason.REPEATED_QUESTION),
            (s.mode == "suggest", Reason.SUGGEST_MODE),
            (s.mode == "auto" and cohort == Cohort.COPILOT, Reason.COPILOT_COHORT),
        )
        return tuple(reason for failed, reason in checks if failed)

    def out_of_scope(self, analysis: Analysis) -> bool:
        """Far from every way the best topic is asked, or nearer an off-topic example (the open-set gate)."""
        s = self._settings
        return bool(analysis.matches) and (analysis.off_topic or analysis.similarity < s.min_similarity)

    def unsure(self, analysis: Analysis) -> bool:
        """The analysis found no topic it may answer on its own (no topic, out of scope, or too unsure)."""
        s = self._settings
        return not analysis.matches or self.out_of_scope(analysis) or analysis.confidence < s.min_confidence
