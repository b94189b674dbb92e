"""Block Kit for the operator queue: the root card, the draft in the thread, customer messages.

Every function is pure (payload in, `(text, blocks)` out) so the cards can be tested without Slack.
`text` is the notification / screen-reader fallback Slack shows where blocks are not rendered.
"""

from __future__ import annotations

from typing import Any

from bot.domain.deliveries import CustomerMessage, DraftDone, HandoffCard, read
from bot.operators.conversations import CardState
from bot.orders.card import order_fields
from connectors.slack.text import clip, escape, quote

Blocks = list[dict[str, Any]]

CLAIM, RESOLVE, RETURN = "relaydesk_claim", "relaydesk_resolve", "relaydesk_return"
TEACH, ALWAYS_A_PERSON = "relaydesk_teach", "relaydesk_always_a_person"
SEND, EDIT, DISCARD = "relaydesk_send", "relaydesk_edit", "relaydesk_discard"
EDIT_VIEW = "relaydesk_edit_draft"
EDIT_BLOCK, EDIT_INPUT = "draft", "text"

SENTIMENT = {"negative": "😠 negative", "neutral": "😐 neutral", "positive": "🙂 positive"}
PRIORITY = {"low": "low", "normal": "normal", "high": "❗ high", "urgent": "🔥 urgent"}
LAST_MESSAGES = 6


def _button(text: str, action_id: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text)}]}


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def status_line(state: CardState) -> str:
    who = escape(state.operator) if state.operator else "someone"
    line = {
        "waiting_operator": "⏳ *Waiting for an operator*",
        "operator": f"🙋 *Claimed by {who}*",
        "resolved": f"✅ *Resolved by {who}*",
        "bot": "🤖 *Back with the bot*",
    }.get(state.state, f"*{escape(state.state)}*")
    if state.first_response_s is not None:
        line += f" · first response in {duration(state.first_response_s)}"
    return line


def root_card(stored: HandoffCard | dict[str, Any], state: CardState | None = None) -> tuple[str, Blocks]:
    """The conversation's root message in the queue channel."""
    payload = stored if isinstance(stored, HandoffCard) else read(stored, HandoffCard)
    state = state or CardState()
    customer = payload.customer or "Anonymous customer"
    conversation_id = str(payload.conversation_id)
    reasons = ", ".join(payload.reason_labels()) or "—"
    fields = [
        f"*Customer*\n{escape(customer)}",
        f"*Channel · language*\n{escape(payload.channel or '?')} · {escape(payload.language or '?')}",
        f"*Topic*\n{escape(payload.topic or '—')}",
        f"*Sentiment*\n{SENTIMENT.get(payload.sentiment, payload.sentiment or '—')}",
        f"*Priority*\n{PRIORITY.get(payload.priority, payload.priority or '—')}",
        f"*Bot confidence*\n{payload.confidence:.2f}",
        *(f"*{label}*\n{escape(value)}" for label, value in order_fields(payload)),
    ]
    blocks: Blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"{customer} · #{conversation_id}", 150)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, 1900)} for f in fields]},
        _section(f"*Why a person:* {escape(reasons)}"),
    ]
    if payload.summary:
        blocks.append(_section(f"*Summary*\n{escape(payload.summary)}"))
    last = payload.last_messages
    if last:
        lines = [f"*{escape(str(author))}:* {escape(' '.join(str(text).split()))[:300]}" for author, text in last]
        blocks.append(_section("*Last messages*\n" + "\n".join(lines[-LAST_MESSAGES:])))
    blocks.append(context(status_line(state)))
    buttons = []
    if state.state == "waiting_operator":
        buttons.append(_button("Claim", CLAIM, conversation_id, "primary"))
    if state.state in ("waiting_operator", "operator"):
        buttons += [
            _button("Resolve", RESOLVE, conversation_id),
            _button("Return to bot", RETURN, conversation_id, "danger"),
            # The bot must never answer messages like this one alone: an escalation example from now on.
            _button("Always a person", ALWAYS_A_PERSON, conversation_id),
        ]
    if state.state == "resolved" and state.first_response_s is not None:
        # An operator answered: their reply may become an answer the bot sends on its own.
        buttons.append(_button("Teach the bot", TEACH, conversation_id))
    if buttons:
        blocks.append({"type": "actions", "block_id": "conversation", "elements": buttons})
    text = f"{customer} needs a person ({reasons}) — {status_line(state).replace('*', '')}"
    return text, blocks


def draft_message(payload: HandoffCard, note_prefix: str) -> tuple[str, Blocks]:
    """The AI's suggested reply, in the thread, with Send / Edit / Discard."""
    handoff_id = str(payload.handoff_id)
    draft = payload.draft.strip()
    sources = ", ".join(payload.sources)
    hint = f"Reply in this thread to answer the customer · start with `{note_prefix}` for an internal note"
    if not draft:
        blocks: Blocks = [
            _section("*No suggested reply* — write one in this thread, or use Write reply."),
            {"type": "actions", "block_id": "draft", "elements": [_button("Write reply", EDIT, handoff_id)]},
            context(hint),
        ]
        return "No suggested reply: answer in this thread", blocks
    blocks = [
        _section(f"*Suggested reply* (confidence {payload.confidence:.2f})\n{quote(clip(draft))}"),
    ]
    if sources:
        blocks.append(context(f"Sources: {escape(sources)}"))
    blocks.append(
        {
            "type": "actions",
            "block_id": "draft",
            "elements": [
                _button("Send", SEND, handoff_id, "primary"),
                _button("Edit", EDIT, handoff_id),
                _button("Discard", DISCARD, handoff_id, "danger"),
            ],
        }
    )
    blocks.append(context(hint))
    return f"Suggested reply: {clip(draft, 200)}", blocks


def draft_done(done: DraftDone) -> tuple[str, Blocks]:
    """The draft message after Send or Discard: what happened, by whom, no buttons left."""
    who = escape(done.operator)
    if done.status == "sent":
        head = f"✅ *Sent to the customer by {who}*" + (" (edited)" if done.edited else "")
        blocks: Blocks = [_section(f"{head}\n{quote(clip(done.text))}" if done.text else head)]
        return f"Sent to the customer by {done.operator}", blocks
    return f"Draft discarded by {done.operator}", [_section(f"🗑 *Draft discarded by {who}*")]


def customer_message(payload: CustomerMessage) -> tuple[str, Blocks]:
    """A customer's later message, posted in the conversation's thread."""
    name = payload.customer or "Customer"
    text = payload.text.strip()
    lines = [f"*{escape(name)}:* {escape(text)}" if text else f"*{escape(name)}* sent a {payload.kind or 'file'}"]
    for attachment in payload.attachments:
        label = attachment.get("name") or attachment.get("kind") or "file"
        url = attachment.get("url") or ""
        where = f"<{url}|{escape(label)}>" if url.startswith("http") else f"{escape(label)} (see the customer's app)"
        lines.append(f"📎 {where}")
    body = "\n".join(lines)
    return clip(f"{name}: {text or payload.kind or 'file'}", 300), [_section(body)]


def reopened(payload: HandoffCard) -> tuple[str, Blocks]:
    reasons = ", ".join(payload.reason_labels())
    text = f"🔁 *The customer needs a person again* ({escape(reasons)})"
    return "The customer needs a person again", [_section(text)]


def edit_view(handoff_id: int, draft: str, channel: str, message_ts: str) -> dict[str, Any]:
    """The modal behind Edit: the draft prefilled; submitting sends the edited text."""
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": EDIT_INPUT,
        "multiline": True,
        "max_length": 3000,
    }
    if draft:
        element["initial_value"] = draft[:3000]
    return {
        "type": "modal",
        "callback_id": EDIT_VIEW,
        "private_metadata": f"{handoff_id}|{channel}|{message_ts}",
        "title": {"type": "plain_text", "text": "Reply to the customer"},
        "submit": {"type": "plain_text", "text": "Send"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": EDIT_BLOCK,
                "label": {"type": "plain_text", "text": "Your reply"},
                "element": element,
            }
        ],
    }
