"""What the bot does with each kind of update: an aiogram Router with typed filters.

Everything a customer says goes to the desk (which stores it once, answers or hands off, and queues
the reply in the outbox); the connector's own notices (greeting, help, rate limit, "can't take a
poll") go through the core's notices (bot.delivery.notices), keyed by the update so a redelivered one queues them once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandStart, Filter
from aiogram.types import CallbackQuery, Message, TelegramObject

from bot.app import App
from bot.domain.types import FeedbackKind, Inbound
from connectors.telegram.inbound import CHANNEL, UNSUPPORTED, clean, content_of, language_of, name_of, to_inbound
from connectors.telegram.keyboards import ACTIONS, Press
from connectors.telegram.limits import RateLimiter, Verdict

log = logging.getLogger(__name__)

TYPING_EVERY_S = 4.0  # Telegram shows "typing…" for about 5 seconds
PRESS_MEMORY_S = 86_400.0  # a button press (callback id) is handled once within this time, by any worker
HUMAN = "/human"  # what the desk's analysis reads as "hand me to a person"


class Addressed(Filter):
    """Private chats always; in groups only a mention of the bot, a reply to it, or a command.

    Passes `addressed_text` (the text without the @mention) to the handler.
    """

    async def __call__(self, message: Message, bot: Bot) -> bool | dict[str, Any]:
        text = message.text or message.caption or ""
        if message.chat.type == "private":
            return {"addressed_text": text}
        me = await bot.me()
        mention = f"@{me.username}".lower() if me.username else None
        reply = message.reply_to_message
        addressed = bool(reply and reply.from_user and reply.from_user.id == me.id)
        for entity in message.entities or message.caption_entities or []:
            piece = entity.extract_from(text)
            if entity.type == "mention" and mention and piece.lower() == mention:
                addressed = True
                text = text.replace(piece, " ")
            elif entity.type == "text_mention" and entity.user and entity.user.id == me.id:
                addressed = True
            elif entity.type == "bot_command" and entity.offset == 0:
                addressed = "@" not in piece or bool(mention and piece.lower().endswith(mention))
        return {"addressed_text": " ".join(text.split())} if addressed else False


class RateLimit:
    """Inner middleware: a customer over the limit is told once per window; the extra messages are dropped."""

    def __init__(self, limiter: RateLimiter, notify: Callable[..., Awaitable[None]]) -> None:
        self._limiter = limiter
        self._notify = notify

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        assert isinstance(event, Message)
        verdict = await self._limiter.check(str(event.chat.id))
        if verdict is Verdict.PASS:
            return await handler(event, data)
        log.info("telegram: rate limit for a customer (%s)", verdict.value)
        if verdict is Verdict.NOTIFY:
            await self._notify(event, "rate_limited")
        return None


class CustomerHandlers:
    def __init__(self, app: App, bot: Bot, limiter: RateLimiter) -> None:
        self._app = app
        self._bot = bot
        self._limiter = limiter
        self._typing: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def router(self) -> Router:
        router = Router(name="relaydesk-customers")
        router.message.filter(Addressed())
        router.edited_message.filter(Addressed())
        limit = RateLimit(self._limiter, self.notify)
        router.message.middleware(limit)
        router.edited_message.middleware(limit)
        router.message.register(self.start, CommandStart())
        router.message.register(self.help, Command("help"))
        router.message.register(self.human, Command("human"))
        router.message.register(self.text, F.text)
        router.message.register(self.other)
        router.edited_message.register(self.edited)
        router.callback_query.register(self.press, Press.filter())
        router.callback_query.register(self.unknown_press)
        return router

    # -- messages ---------------------------------------------------------------------------------

    async def start(self, message: Message) -> None:
        name = name_of(message.from_user) or "there"
        await self.notify(message, "greeting", name=name)

    async def help(self, message: Message) -> None:
        await self.notify(message, "help")

    async def human(self, message: Message) -> None:
        await self._receive(to_inbound(message, text=HUMAN))

    async def text(self, message: Message, addressed_text: str) -> None:
        self.typing(message.chat.id)
        await self._receive(to_inbound(message, text=addressed_text))

    async def other(self, message: Message, addressed_text: str) -> None:
        inbound = to_inbound(message, text=addressed_text)
        if inbound is not None:
            await self._receive(inbound)
        elif (content := content_of(message)) in UNSUPPORTED:
            await self.notify(message, "unsupported", kind=content)

    async def edited(self, message: Message, addressed_text: str) -> None:
        await self._receive(to_inbound(message, text=addressed_text, edited=True))

    async def _receive(self, inbound: Inbound | None) -> None:
        if inbound is not None:
            await self._app.desk.receive(inbound)

    # -- buttons ----------------------------------------------------------------------------------

    async def press(self, query: CallbackQuery, callback_data: Press) -> None:
        language = language_of(query.from_user)
        chat_id = str(query.message.chat.id) if query.message else ""
        cid = callback_data.conversation_id
        valid = callback_data.action in ACTIONS and (callback_data.action != "csat" or 1 <= callback_data.value <= 5)
        if not chat_id or not valid or not await self._app.conversations.of_chat(cid, CHANNEL, chat_id):
            log.info("telegram: a stale or forged button press was refused")
            await self._answer(query, "stale_button", language)
            return
        if not await self._app.shared.first_time(f"telegram-press:{query.id}", PRESS_MEMORY_S):  # any worker's
            await self._answer(query, "stale_button", language)
            return
        if callback_data.action == "human":
            inbound = Inbound(
                CHANNEL, chat_id, f"{chat_id}:cb:{query.id}", HUMAN, name_of(query.from_user), language_hint=language
            )
            decision = await self._app.desk.receive(inbound)
            if decision.action != "duplicate":
                await self._app.operators.feedback(cid, FeedbackKind.NOT_HELPFUL)
            reply = "human_requested"
        elif callback_data.action == "helped":
            await self._app.operators.feedback(cid, FeedbackKind.HELPFUL)
            reply = "feedback_thanks"
        else:
            await self._app.operators.feedback(cid, FeedbackKind.CSAT, callback_data.value)
            reply = "csat_thanks"
        await self._answer(query, reply, language)
        if query.message is not None:  # the choice is made: take the buttons away
            with contextlib.suppress(Exception):
                await self._bot.edit_message_reply_markup(
                    chat_id=query.message.chat.id, message_id=query.message.message_id, reply_markup=None
                )

    async def unknown_press(self, query: CallbackQuery) -> None:
        await self._answer(query, "stale_button", language_of(query.from_user))

    async def _answer(self, query: CallbackQuery, text: str, language: str) -> None:
        with contextlib.suppress(Exception):  # an expired query can't be answered; nothing else depends on it
            await query.answer(self._app.texts.render(text, language))

    # -- what the connector says by itself --------------------------------------------------------

    async def notify(self, message: Message, text: str, **values: Any) -> None:
        """Queue one of prompts/texts.yaml's texts to this chat, once per incoming message."""
        key = f"{CHANNEL}:{message.chat.id}:{message.message_id}:{message.edit_date or 0}:{text}"
        language = language_of(message.from_user)
        await self._app.notices.tell(CHANNEL, str(message.chat.id), text, language, clean(key, 128), **values)

    def typing(self, chat_id: int) -> None:
        """Show "typing…" while the desk thinks; at most every few seconds per chat, never waited for."""
        now = time.monotonic()
        if now - self._typing.get(str(chat_id), -TYPING_EVERY_S) < TYPING_EVERY_S:
            return
        self._typing[str(chat_id)] = now
        if len(self._typing) > 10_000:
            self._typing = {k: v for k, v in self._typing.items() if now - v < TYPING_EVERY_S}
        task = asyncio.create_task(self._send_typing(chat_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_typing(self, chat_id: int) -> None:
        try:
            await self._bot.send_chat_action(chat_id=chat_id, action="typing")
        except Exception as exc:  # cosmetic: a failure here must not touch the message itself
            log.debug("telegram: typing indicator failed: %s", type(exc).__name__)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
