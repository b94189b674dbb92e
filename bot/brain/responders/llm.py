"""The LLM brain: a langchain v1 agent with tools, whose structured answer code then checks.

The agent (`create_agent`) may search the knowledge base, look an order up in the CRM, propose a
compensation and ask for a human; it ends with a `FinalAnswer`. Code decides what that answer may do:

- it goes out alone only when it cites something the agent actually retrieved (an article or a looked-up
  order) — otherwise it becomes a handoff with the answer as the draft; the confidence threshold is the
  desk policy's;
- a compensation is the policy's offer (prompts/compensation.yaml), rendered by code into the draft,
  carried in `Answer.actions`, and always needs an operator's Send;
- an answer that promises a refund or a bigger discount than the policy allows is never sent and never
  offered as a draft;
- a CRM failure tells the customer the status can't be checked now, and hands the case to a person;
- any LLM failure (timeout, 429, 5xx, malformed output) or an exhausted budget: the offline brain answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from datetime import date
from typing import Any

from langchain.agents import create_agent
from langchain.agents.structured_output import ToolStrategy
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

from bot.brain.llm import budget
from bot.brain.llm.compensation import Offer
from bot.brain.llm.history import recent_messages
from bot.brain.llm.promises import unapproved_promise
from bot.brain.llm.tools import build_tools
from bot.brain.llm.turn import Turn
from bot.brain.llm.usage import TokenMeter
from bot.config import LLMSettings
from bot.domain.types import Analysis, Answer, OrderCheck, OrderFacts
from bot.knowledge.index import KnowledgeIndex
from bot.orders.order import find_order_numbers
from bot.orders.status import facts_of
from bot.ports import OrderLookup, Responder
from bot.prompts.loader import LANGUAGES, PromptStore

log = logging.getLogger(__name__)

MAX_TEXT = 4000


class FinalAnswer(BaseModel):
    """Your final reply to the customer. Call this exactly once, at the end."""

    answer: str = Field(description="the reply to the customer, in their language")
    cited_article_ids: list[str] = Field(
        default_factory=list, description="ids of the articles (and order:<number>) the answer is based on"
    )
    # Shown to the model as 0..1 but not enforced here: a wrong value is replaced in `conclude` (and logged)
    # rather than failing the whole answer.
    confidence: float = Field(
        description="how sure you are the answer is right and complete", json_schema_extra={"minimum": 0, "maximum": 1}
    )
    needs_human: bool = Field(default=False, description="true when a person should handle this")
    reason: str = Field(default="", description="why a person is needed, if so")
    summary: str = Field(default="", description="one paragraph for the support operator")
    ask_order_number: bool = Field(default=False, description="true when you need the order number to go on")


class LLMResponder:
    def __init__(
        self,
        model: BaseChatModel,
        index: KnowledgeIndex,
        crm: OrderLookup,
        prompts: PromptStore,
        settings: LLMSettings,
        fallback: Responder,
        crm_timeout_s: float = 5.0,
    ) -> None:
        self._prompts = prompts
        self._settings = settings
        self._fallback = fallback
        tools = build_tools(index, crm, lambda: prompts.compensation, settings.max_tool_calls, crm_timeout_s)
        self._agent: Any = create_agent(
            model,
            tools,
            response_format=ToolStrategy(FinalAnswer, handle_errors=True),
            context_schema=Turn,
        )

    async def respond(self, text: str, analysis: Analysis, history: list[tuple[str, str]]) -> Answer:
        meter = TokenMeter()  # every model call of this run, including those before a failure
        answer = await self._run(text, analysis, history, meter)
        return replace(answer, usage=meter.usage)

    async def _run(self, text: str, analysis: Analysis, history: list[tuple[str, str]], meter: TokenMeter) -> Answer:
        left = budget.remaining(self._settings.budget_s)
        language = analysis.language
        customer_texts = [t for a, t in history if a == "customer"] + [text]
        mentioned = list(dict.fromkeys(n for t in customer_texts for n in find_order_numbers(t)))
        turn = Turn(language, mentioned, analysis.confidence)
        try:
            if left <= 0:
                raise TimeoutError("no time left in the budget")
            async with asyncio.timeout(left):
                result = await self._agent.ainvoke(
                    {"messages": self._messages(text, history, turn)},
                    context=turn,
                    config={"recursion_limit": 2 * self._settings.max_tool_calls + 6, "callbacks": [meter]},
                )
        except Exception as exc:  # timeout, 429, 5xx, malformed output, a loop: the offline brain answers
            log.warning("llm agent failed, answering offline: %s", type(exc).__name__)
            if turn.crm_failed:
                return self._crm_failed(turn, "", "")
            fallback = await self._fallback.respond(text, analysis, history)
            why = f"llm unavailable ({type(exc).__name__}); offline answer"
            return replace(fallback, reason="; ".join(r for r in (fallback.reason, why) if r))
        final = result.get("structured_response")
        if not isinstance(final, FinalAnswer):  # the model ended with plain text: a draft, not an answer
            last = next((m for m in reversed(result.get("messages", [])) if isinstance(m, AIMessage)), None)
            content = last.content if last is not None and isinstance(last.content, str) else ""
            final = FinalAnswer(answer=content, confidence=0.0, needs_human=True, reason="no structured answer")
        return self.conclude(turn, final)

    def _messages(self, text: str, history: list[tuple[str, str]], turn: Turn) -> list[BaseMessage]:
        agent = self._prompts.agent
        lang = turn.language
        parts = [
            agent.render("persona", lang, company=self._settings.company),
            agent.render("tone", lang),
            agent.render("rules", lang),
        ]
        recent, older = recent_messages(history, self._settings.history_messages)
        if older:
            parts.append(f"Earlier in this conversation (summarised): {older}")
        parts.append(
            "Order numbers the customer gave: "
            + (", ".join(turn.mentioned_orders) or "none")
            + f". The customer's language: {lang}."
        )
        return [SystemMessage("\n\n".join(parts)), *recent, HumanMessage(text[:MAX_TEXT])]

    def conclude(self, turn: Turn, final: FinalAnswer) -> Answer:
        """Code's verdict on the agent's answer: what may go out alone, what needs a person."""
        answer = self._verdict(turn, final)
        looked_up = next(iter(turn.orders.values()), None)
        if looked_up is None or answer.order is not None:
            return answer
        return replace(answer, order=facts_of(looked_up, date.today()))  # the card shows what the CRM said

    def _verdict(self, turn: Turn, final: FinalAnswer) -> Answer:
        lang = turn.language
        draft = final.answer.strip()
        summary = final.summary.strip()[:1000]
        if turn.crm_failed:
            return self._crm_failed(turn, draft, summary)
        if final.ask_order_number and not turn.mentioned_orders and not final.needs_human:
            ask = self._prompts.texts.render("ask_order_number", lang)
            return Answer(ask, 1.0, reason="asked for the order number", awaits_order=True)
        cited = [c for c in dict.fromkeys(final.cited_article_ids) if c in turn.retrieved]
        orders = [f"order:{o}" for o in turn.orders]
        sources = tuple(cited + orders)
        confidence = final.confidence
        if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
            log.warning(
                "llm answer: confidence %r outside 0..1; using the analysis's %.2f", confidence, turn.offline_confidence
            )
            confidence = turn.offline_confidence
        offer = turn.offer
        grounded_in = "\n".join(turn.retrieved[c] for c in cited)
        approved = offer.percent if offer else 0
        # What operators read is checked too: a summary claiming a refund nobody made is replaced by the desk's.
        offered = "\n".join(self._offer_text(offer, language) for language in LANGUAGES) if offer else ""
        known = f"{grounded_in}\n{offered}"  # a summary may speak of the policy's offer, in any language
        if summary and unapproved_promise(summary, approved, known):
            log.warning("llm summary replaced: %s", unapproved_promise(summary, approved, known))
            summary = ""
        unsafe = unapproved_promise(draft, approved, grounded_in)
        if unsafe:
            log.warning("llm answer refused: %s", unsafe)
            draft = self._offer_text(offer, lang) if offer else ""
            reason = f"the AI answer {unsafe}; it was withheld"
            actions = self._actions(offer)
            return Answer(draft, confidence, sources, actions, True, reason, summary, withheld=True)
        if offer is not None:
            text = f"{draft}\n\n{self._offer_text(offer, lang)}" if draft else self._offer_text(offer, lang)
            reason = "a compensation needs an operator's approval"
            return Answer(text, confidence, sources, self._actions(offer), True, reason, summary)
        reasons = []
        if final.needs_human or turn.human_requested:
            why = turn.human_requested or final.reason
            reasons.append(
                why if why and not unapproved_promise(why, approved, known) else "the agent asked for a person"
            )
        if not sources:
            reasons.append("the answer cites nothing the agent retrieved")
        return Answer(draft, confidence, sources, (), bool(reasons), "; ".join(reasons), summary)

    def _crm_failed(self, turn: Turn, draft: str, summary: str) -> Answer:
        order_id = turn.crm_failed or ""
        notice = self._prompts.texts.render("crm_unavailable", turn.language, order_id=order_id)
        summary = summary or f"The CRM could not be reached for order {order_id}; the status is unknown."
        facts = OrderFacts(order_id, OrderCheck.UNAVAILABLE)
        reason = f"CRM unavailable for order {order_id}"
        return Answer(draft, 0.0, (), (), True, reason, summary, notice=notice, order=facts)

    def _offer_text(self, offer: Offer, lang: str) -> str:
        return offer.text(self._prompts.texts, lang)

    @staticmethod
    def _actions(offer: Offer | None) -> tuple[dict[str, Any], ...]:
        return (offer.action(),) if offer else ()
