"""What a channel tells a customer by itself (a greeting, help, "slow down", "can't take a poll"): one of
prompts/texts.yaml's texts, queued through the outbox once per incoming message (`key`), so a redelivered
update queues it once."""

from __future__ import annotations

from typing import Any

from bot.delivery.outbox import Outbox
from bot.domain.deliveries import CustomerText, DeliveryKind
from bot.prompts.texts import Texts


class CustomerNotices:
    def __init__(self, outbox: Outbox, texts: Texts) -> None:
        self._outbox = outbox
        self._texts = texts

    async def tell(self, channel: str, chat_id: str, text: str, language: str, key: str, **values: Any) -> None:
        """Queue the text named `text` to the chat, in `language` (the default one when unknown)."""
        language = language or self._texts.default_language
        payload = CustomerText(chat_id=chat_id, text=self._texts.render(text, language, **values), language=language)
        await self._outbox.later(channel, DeliveryKind.TEXT, payload, dedup_key=key)
