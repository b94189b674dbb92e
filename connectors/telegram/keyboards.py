"""Inline buttons under customer messages; their callback data carries the conversation id."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from bot.prompts.texts import Texts


class Press(CallbackData, prefix="rd"):
    """What a button does: `helped`, `human` (after an answer) or `csat` with a 1-5 value."""

    conversation_id: int
    action: str
    value: int = 0


ACTIONS = ("helped", "human", "csat")


def feedback_keyboard(texts: Texts, language: str, conversation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=texts.render("button_helped", language),
                    callback_data=Press(conversation_id=conversation_id, action="helped").pack(),
                ),
                InlineKeyboardButton(
                    text=texts.render("button_human", language),
                    callback_data=Press(conversation_id=conversation_id, action="human").pack(),
                ),
            ]
        ]
    )


def csat_keyboard(conversation_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=f"{value} ⭐",
                    callback_data=Press(conversation_id=conversation_id, action="csat", value=value).pack(),
                )
                for value in range(1, 6)
            ]
        ]
    )
