"""The outbox's Telegram channel: one delivery → one or more `sendMessage` calls.

Telegram's errors become the outbox's vocabulary: a 429 is `RetryLater(after_s=retry_after)`, 5xx,
network trouble and a proxy's HTML error page are `RetryLater`, a blocked bot (403) or a chat that
no longer exists is `Undeliverable`. A long answer goes out as several messages; when one of them
fails, the retry continues with the part that was not sent yet.
"""

from __future__ import annotations

import logging
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import InlineKeyboardMarkup, LinkPreviewOptions

from bot.domain.deliveries import Buttons, CustomerText, DeliveryKind, read
from bot.ports import Outgoing, RetryLater, Undeliverable
from bot.prompts.texts import Texts
from connectors.telegram.keyboards import csat_keyboard, feedback_keyboard
from connectors.telegram.render import plain, render

log = logging.getLogger(__name__)

_GONE = ("chat not found", "user is deactivated", "peer_id_invalid", "bot was kicked", "chat_write_forbidden")
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class TelegramSender:
    def __init__(self, bot: Bot, texts: Texts) -> None:
        self._bot = bot
        self._texts = texts
        self._progress: dict[int, int] = {}  # delivery id → parts already sent (a retry resumes there)

    def messages(self, payload: CustomerText, conversation_id: int | None) -> list[tuple[str, Any]]:
        """The HTML messages and the keyboard under the last one, as the customer will see them."""
        language = payload.language or self._texts.default_language
        text = payload.text
        keyboard: InlineKeyboardMarkup | None = None
        buttons = payload.buttons
        if buttons == Buttons.CSAT and conversation_id is not None:
            text = f"{text}\n\n{self._texts.render('csat_question', language)}".strip()
            keyboard = csat_keyboard(conversation_id)
        elif buttons == Buttons.FEEDBACK and conversation_id is not None:
            keyboard = feedback_keyboard(self._texts, language, conversation_id)
        parts = render(text)
        return [(part, keyboard if index == len(parts) - 1 else None) for index, part in enumerate(parts)]

    async def deliver(self, delivery: Outgoing) -> str | None:
        if delivery.kind != DeliveryKind.TEXT:
            log.warning("telegram: delivery %s of kind %s ignored", delivery.id, delivery.kind)
            return None
        payload = read(delivery.payload, CustomerText)
        chat_id = payload.chat_id
        parts = self.messages(payload, delivery.conversation_id)
        key = delivery.id or 0
        ref: str | None = None
        for index in range(self._progress.get(key, 0), len(parts)):
            html, keyboard = parts[index]
            ref = await self.send(chat_id, html, keyboard)
            self._progress[key] = index + 1
        self._progress.pop(key, None)
        return ref

    async def send(self, chat_id: str, html: str, keyboard: InlineKeyboardMarkup | None) -> str:
        try:
            try:
                message = await self._bot.send_message(
                    chat_id=chat_id,
                    text=html,
                    parse_mode="HTML",
                    reply_markup=keyboard,
                    link_preview_options=_NO_PREVIEW,
                )
            except TelegramBadRequest as exc:
                if "can't parse entities" not in exc.message.lower():
                    raise
                log.warning("telegram: HTML refused (%s); sending plain text", exc.message)
                message = await self._bot.send_message(chat_id=chat_id, text=plain(html), reply_markup=keyboard)
            except TelegramMigrateToChat as exc:  # a group became a supergroup: its new id
                message = await self._bot.send_message(
                    chat_id=exc.migrate_to_chat_id, text=html, parse_mode="HTML", reply_markup=keyboard
                )
        except TelegramRetryAfter as exc:
            raise RetryLater(f"telegram 429: {exc.message}", after_s=float(exc.retry_after)) from None
        except TelegramForbiddenError as exc:
            raise Undeliverable(f"telegram 403: {exc.message}") from None
        except TelegramBadRequest as exc:
            if any(reason in exc.message.lower() for reason in _GONE):
                raise Undeliverable(f"telegram 400: {exc.message}") from None
            raise
        except (TelegramServerError, TelegramNetworkError, ClientDecodeError, TelegramNotFound) as exc:
            raise RetryLater(f"telegram unavailable: {type(exc).__name__}: {exc}") from None
        except TelegramUnauthorizedError:
            raise RetryLater("telegram 401: the token was refused (revoked in @BotFather?)", after_s=60) from None
        return str(message.message_id)
