"""The agent's tools. Each one reports facts to the model and records them in the run's `Turn`;
code, not the model, later decides what those facts allow (grounding, handoff, compensation)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import numpy as np
from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, tool

from bot.brain.llm.compensation import CompensationPolicy
from bot.brain.llm.turn import Turn
from bot.brain.retrieval import rank_topics
from bot.knowledge.index import ArticleText, KnowledgeIndex
from bot.ports import CRMUnavailable, OrderLookup

log = logging.getLogger(__name__)

ARTICLES_PER_SEARCH = 3
MAX_ARTICLE_CHARS = 1500
LIMIT = "Tool call limit reached: finish now with FinalAnswer."


def build_tools(
    index: KnowledgeIndex,
    crm: OrderLookup,
    policy: Callable[[], CompensationPolicy],
    max_calls: int,
    crm_timeout_s: float,
) -> list[BaseTool]:
    def spend(turn: Turn) -> bool:
        turn.tool_calls += 1
        return turn.tool_calls > max_calls

    @tool
    async def search_knowledge(query: str, runtime: ToolRuntime[Turn]) -> str:
        """Search the help centre articles. Returns the best articles as [id] title and text; cite the ids you use."""
        turn = runtime.context
        if spend(turn):
            return LIMIT
        vector = await index.embed_query(query[:2000])
        parts = []
        for article in await asyncio.to_thread(_best_articles, index, vector, turn.language):
            body = article.body[:MAX_ARTICLE_CHARS]
            turn.retrieved[article.id] = f"{article.title}\n{body}"
            parts.append(f"[{article.id}] {article.title}\n{body}")
        return "\n\n".join(parts) or "Nothing found in the knowledge base."

    @tool
    async def get_order_status(order_id: str, runtime: ToolRuntime[Turn]) -> str:
        """Look up an order in the CRM by the order number the customer gave."""
        turn = runtime.context
        if spend(turn):
            return LIMIT
        wanted = order_id.strip().lstrip("#№").upper()
        if wanted not in turn.mentioned_orders:
            return f"The customer has not given order number {wanted!r}. Ask them for their order number."
        try:
            async with asyncio.timeout(crm_timeout_s):
                order = await crm.order(wanted)
        except (CRMUnavailable, TimeoutError) as exc:
            log.warning("crm: lookup failed: %s", exc)
            turn.crm_failed = wanted
            return "The CRM can't be reached right now. Don't guess the status: tell the customer and request_human."
        if order is None:
            return f"There is no order {wanted}. Ask the customer to check the number."
        turn.orders[order.order_id] = order
        if not order.lateness_known:  # a CRM mapping gap, not "on time": the operator sees it on the card
            eligible = "unknown (the CRM sent no promised date); do not propose one"
        else:
            eligible = "yes" if policy().rule_for(order) is not None else "no"
        return f"{order.describe()}. Cite it as order:{order.order_id}. Compensation eligible: {eligible}."

    @tool
    async def propose_compensation(order_id: str, percent: int, runtime: ToolRuntime[Turn]) -> str:
        """Propose an apology promo code for a late or lost order (after get_order_status). An operator approves it."""
        turn = runtime.context
        if spend(turn):
            return LIMIT
        order = turn.orders.get(order_id.strip().lstrip("#№").upper())
        if order is None:
            return "Look the order up with get_order_status first."
        offer = policy().decide(order, percent)
        if offer is None:
            return "This order earns no compensation under the policy. Do not offer any."
        turn.offer = offer
        return (
            "Proposal recorded for an operator to approve. Do not mention any amount, percentage or code: "
            "the approved offer is added to your reply by the system."
        )

    @tool
    async def request_human(reason: str, runtime: ToolRuntime[Turn]) -> str:
        """Hand the conversation to a human support specialist, with the reason."""
        turn = runtime.context
        turn.human_requested = reason.strip()[:300] or "requested by the agent"
        return "A specialist will take over. Finish with FinalAnswer: a short draft reply, needs_human=true."

    return [search_knowledge, get_order_status, propose_compensation, request_human]


def _best_articles(index: KnowledgeIndex, vector: np.ndarray, language: str) -> list[ArticleText]:
    """Search and read the best articles in one trip to a worker thread (Chroma is synchronous)."""
    matches, _, _ = rank_topics(index.search_vector(vector, 30))
    found = (index.article(m.article_id, [language]) for m in matches if m.kind == "article")
    return [a for a in itertools.islice((a for a in found if a is not None), ARTICLES_PER_SEARCH)]
