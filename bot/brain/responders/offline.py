"""The offline brain's answer: the best article, in the customer's language, quoted not invented.

An article with `tool: order_status` answers with the order's status from the CRM (bot.orders) when the
conversation carries an order number, and asks for the number when it doesn't."""

from __future__ import annotations

import asyncio

from bot.domain.types import Analysis, Answer
from bot.knowledge.articles import ArticleTool
from bot.knowledge.index import ArticleText, KnowledgeIndex
from bot.orders.status import OrderStatus

MAX_ANSWER_CHARS = 1500


class OfflineResponder:
    def __init__(self, index: KnowledgeIndex, orders: OrderStatus | None = None) -> None:
        """`orders`: the order-status tool for articles that opt in to it (None: articles only)."""
        self._index = index
        self._orders = orders

    async def respond(self, text: str, analysis: Analysis, history: list[tuple[str, str]]) -> Answer:
        if not analysis.matches:
            return Answer(text="", confidence=0.0, needs_human=True, reason="nothing in the knowledge base")
        best = analysis.matches[0]
        article = await asyncio.to_thread(self._index.article, best.article_id, [analysis.language])
        if article is None:
            return Answer(text="", confidence=0.0, needs_human=True, reason="article not found")
        source = best.article_id
        if best.kind == "case":
            # An operator's past reply: usable as a draft; sent alone only once an operator approved it.
            return Answer(
                text=article.body,
                confidence=analysis.confidence,
                sources=(source,),
                needs_human=not best.reusable,
                reason="" if best.reusable else "an operator's past reply, not approved for reuse",
            )
        if article.tool == ArticleTool.ORDER_STATUS and self._orders is not None:
            numbers = analysis.orders or analysis.slots.orders
            if numbers:
                return await self._orders.answer(numbers[-1], analysis.language, source, analysis.confidence)
            return self._orders.ask(analysis.language, source, analysis.confidence)
        return Answer(text=extract(article, best.chunk), confidence=analysis.confidence, sources=(source,))


def extract(article: ArticleText, chunk: int | None) -> str:
    """The chunk that matched (translations keep their sections in order) or the article's lead."""
    index = chunk if chunk is not None and chunk < len(article.chunks) else 0
    text = article.chunks[index]
    if index == 0 and not text.lstrip().startswith("#"):
        text = f"**{article.title}**\n\n{text}"
    if len(text) > MAX_ANSWER_CHARS:
        cut = text.rfind("\n\n", 0, MAX_ANSWER_CHARS)
        text = text[: cut if cut > MAX_ANSWER_CHARS // 2 else MAX_ANSWER_CHARS].rstrip() + " …"
    return text
