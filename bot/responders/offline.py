"""The offline brain's answer: the best article, in the customer's language, quoted not invented."""

from __future__ import annotations

import asyncio

from bot.domain import Analysis, Answer
from bot.knowledge.index import ArticleText, KnowledgeIndex

MAX_ANSWER_CHARS = 1500


class OfflineResponder:
    def __init__(self, index: KnowledgeIndex) -> None:
        self._index = index

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
