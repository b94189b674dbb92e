"""The chat model: ChatOpenAI pointed at any OpenAI-compatible server (OpenAI, vLLM, Ollama, ...)."""

from __future__ import annotations

from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from bot.config import LLMSettings


def create_chat_model(settings: LLMSettings) -> ChatOpenAI:
    """Built once at start-up; nothing is sent until the first message (so no call when unused)."""
    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        # Local servers (Ollama, vLLM) accept any key but the client insists on one.
        api_key=SecretStr(settings.api_key or "not-needed"),
        timeout=min(settings.timeout_s, settings.budget_s),
        max_retries=settings.max_retries,
        temperature=settings.temperature,
    )
