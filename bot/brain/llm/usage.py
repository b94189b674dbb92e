"""Token accounting: a callback that sums `AIMessage.usage_metadata` over every model call of one run.

langchain-openai fills `usage_metadata` from the OpenAI `usage` field. One meter is passed in the
`callbacks` of one piece of work (a message's analysis, its agent run, one judgement); a call that
completed before a timeout or a parse failure still counts, since its tokens were paid for.
langchain_core's `get_usage_metadata_callback` is not used: it registers a global hook per call.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, LLMResult

from bot.domain.types import Usage


class TokenMeter(AsyncCallbackHandler):
    """Input and output tokens of every chat model call made with this handler in `callbacks`."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens_in = 0
        self.tokens_out = 0

    async def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
        for generations in response.generations:
            for generation in generations[:1]:  # n > 1 choices share one usage record
                message = generation.message if isinstance(generation, ChatGeneration) else None
                usage = message.usage_metadata if isinstance(message, AIMessage) else None
                if usage:
                    self.tokens_in += int(usage.get("input_tokens") or 0)
                    self.tokens_out += int(usage.get("output_tokens") or 0)

    @property
    def usage(self) -> Usage:
        return Usage(self.tokens_in, self.tokens_out)
