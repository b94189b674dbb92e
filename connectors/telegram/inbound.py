"""A Telegram message as the desk's `Inbound`: text, kind, attachments with file ids, a stable id.

Message ids are unique per chat in Telegram, so the desk's id is `chat:message`; an edit gets its
own id (`chat:message:e<edit_date>`) so the corrected text is processed once as well.
"""

from __future__ import annotations

import re

from aiogram.types import Message, User

from bot.domain.types import Attachment, Inbound

CHANNEL = "telegram"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
# What customers send that the desk stores and passes to an operator; the attachment keeps the file id.
MEDIA = frozenset(
    {"photo", "document", "voice", "audio", "video", "video_note", "animation", "sticker"}
    | {"location", "venue", "contact"}
)
# Customer content the desk cannot use: the customer is told so instead of hearing nothing.
UNSUPPORTED = frozenset({"poll", "dice", "game", "story", "invoice", "giveaway", "paid_media", "checklist"})


def attachment(message: Message) -> Attachment:
    """The file (id and name) or place a media message carries."""
    m = message
    if m.photo:
        return Attachment("photo", m.photo[-1].file_id)  # the largest size
    if m.document:
        return Attachment("document", m.document.file_id, m.document.file_name or "")
    if m.sticker:
        return Attachment("sticker", m.sticker.file_id, m.sticker.emoji or "")
    if m.venue:
        place = m.venue.location
        return _place("venue", place.latitude, place.longitude, f"{m.venue.title}, {m.venue.address}")
    if m.location:
        return _place("location", m.location.latitude, m.location.longitude, "")
    if m.contact:
        c = m.contact
        return Attachment("contact", name=" ".join(p for p in (c.first_name, c.last_name, c.phone_number) if p))
    for kind in ("voice", "audio", "video", "video_note", "animation"):
        media = getattr(m, kind)
        if media is not None:
            return Attachment(kind, media.file_id, getattr(media, "file_name", None) or "")
    return Attachment(content_of(m))


def content_of(message: Message) -> str:
    """ "text", "photo", "poll", ... (aiogram's ContentType is a str enum; its str() is the member name)."""
    content = message.content_type
    return str(getattr(content, "value", content))


def _place(kind: str, latitude: float, longitude: float, name: str) -> Attachment:
    url = f"https://maps.google.com/?q={latitude},{longitude}"
    return Attachment(kind, name=name or f"{latitude:.6f},{longitude:.6f}", url=url)


def clean(text: str | None, limit: int = 20_000) -> str:
    """Control characters and lone surrogates out: they break storage and Telegram alike."""
    return _CONTROL.sub("", text or "")[:limit]


def language_of(user: User | None) -> str:
    return (user.language_code or "")[:2].lower() if user else ""


def name_of(user: User | None) -> str:
    if user is None:
        return ""
    return clean(" ".join(p for p in (user.first_name, user.last_name) if p), 200)


def message_id(message: Message, edited: bool = False) -> str:
    base = f"{message.chat.id}:{message.message_id}"
    return f"{base}:e{message.edit_date or 0}" if edited else base


def to_inbound(message: Message, text: str | None = None, edited: bool = False) -> Inbound | None:
    """None when the message carries nothing a customer meant for us (service messages)."""
    content = content_of(message)
    attachments: list[Attachment] = []
    if content == "text":
        kind = "text"
    elif content in MEDIA:
        kind = content
        attachments.append(attachment(message))
    else:
        return None
    body = clean(text if text is not None else (message.text or message.caption))
    reply = message.reply_to_message
    if reply is not None:
        quoted = clean(reply.text or reply.caption or f"({content_of(reply)})", 300)
        attachments.append(Attachment("reply", file_id=str(reply.message_id), name=quoted))
    if edited:
        attachments.append(Attachment("edited", file_id=str(message.message_id)))
    return Inbound(
        channel=CHANNEL,
        chat_id=str(message.chat.id),
        message_id=message_id(message, edited),
        text=body,
        name=name_of(message.from_user),
        kind=kind,
        attachments=tuple(attachments),
        language_hint=language_of(message.from_user),
    )
