"""The conversation so far as chat messages: the recent turns verbatim, older ones in one summary line."""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from bot.domain.types import Author

MAX_TURN_CHARS = 1500
SUMMARY_QUOTE_CHARS = 120


def recent_messages(history: list[tuple[str, str]], keep: int) -> tuple[list[BaseMessage], str]:
    """The last `keep` turns as messages, and a short summary of what came before them ('' if nothing)."""
    turns = [(author, text) for author, text in history if text.strip() and author != Author.NOTE]
    older, recent = (turns[:-keep], turns[-keep:]) if keep else (turns, [])
    messages: list[BaseMessage] = []
    for author, text in recent:
        text = text[:MAX_TURN_CHARS]
        if author == Author.CUSTOMER:
            messages.append(HumanMessage(text))
        else:
            messages.append(AIMessage(f"(support specialist) {text}" if author == Author.OPERATOR else text))
    summary = "; ".join(f"{author}: «{_clip(text)}»" for author, text in older[-6:])
    if len(older) > 6:
        summary = f"({len(older) - 6} earlier messages) " + summary
    return messages, summary


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_QUOTE_CHARS else text[: SUMMARY_QUOTE_CHARS - 1] + "…"
