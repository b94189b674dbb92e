"""The terminal chat: you are the customer, and on a handoff you see and act as the operator.

The conversation lives in the database, so leaving and starting `relaydesk chat` again resumes it.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from bot.app import App
from bot.domain.deliveries import Buttons, CustomerMessage, CustomerText, DeliveryKind, HandoffCard, StateChange, read
from bot.domain.types import ActionResult, FeedbackKind, Inbound
from bot.operators.conversations import ConversationView
from bot.orders.card import order_fields
from bot.ports import Outgoing

CHANNEL, QUEUE = "console", "console-queue"
CHAT_ID = "local"
HELP = """Customer: type a message. /helped  /nothelped  /csat 1-5  /human  /quit
Operator: !send (the draft)  !edit TEXT (send your version)  !reply TEXT  !note TEXT
          !claim  !resolve  !bot (return to bot)  !discard (the draft)
          !teach (let the bot send your last answer to similar questions)
          !escalate [TOPIC] (always a person for messages like the handed-off one; !escalate ? lists topics)
          !help"""


class ConsoleCustomer:
    """Prints what the customer would receive."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    async def deliver(self, delivery: Outgoing) -> str | None:
        payload = read(delivery.payload, CustomerText)
        who = f"operator {payload.operator}" if payload.operator else "bot"
        self._write(f"{who}> " + _indent(payload.text))
        if payload.buttons == Buttons.FEEDBACK:
            self._write("      [/helped  /human]")
        elif payload.buttons == Buttons.CSAT:
            self._write("      How did we do? [/csat 1 … /csat 5]")
        return None


class ConsoleQueue:
    """Prints what an operator would see in the queue."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    async def deliver(self, delivery: Outgoing) -> str | None:
        if delivery.kind == DeliveryKind.HANDOFF:
            p = read(delivery.payload, HandoffCard)
            self._write(f"\n──── operator view · conversation #{p.conversation_id} handed off ────")
            self._write(
                f"customer: {p.customer or 'anonymous'} ({p.channel}, {p.language})   "
                f"topic: {p.topic or '-'}   sentiment: {p.sentiment}   priority: {p.priority}"
            )
            escalation = f" ({p.escalation})" if p.escalation else ""
            self._write(f"why:      {', '.join(p.reasons)}{escalation}")
            self._write(f"summary:  {p.summary}")
            for label, value in order_fields(p):
                self._write(f"{(label.lower() + ':').ljust(9)} {value}")
            sources = ", ".join(p.sources) or "-"
            self._write(f"draft (confidence {p.confidence}, sources: {sources}):")
            self._write("  " + _indent(p.draft or "(none — reply in your own words)", 2))
            self._write("actions:  !send  !edit TEXT  !reply TEXT  !claim  !resolve  !bot  !discard\n")
            return f"console-{p.conversation_id}"
        if delivery.kind == DeliveryKind.CUSTOMER_MESSAGE:
            message = read(delivery.payload, CustomerMessage)
            self._write(f"[queue] customer wrote in #{message.conversation_id}: {message.text or f'({message.kind})'}")
        elif delivery.kind == DeliveryKind.STATE:
            change = read(delivery.payload, StateChange)
            owner = f" by {change.operator}" if change.operator else ""
            self._write(f"[queue] conversation #{change.conversation_id} is now {change.state}{owner}")
        return None


class ConsoleChat:
    def __init__(self, app: App, out: TextIO = sys.stdout, operator: str | None = None) -> None:
        self._app = app
        self._out = out
        self._operator = operator or getpass.getuser() or "operator"
        app.outbox.register(CHANNEL, ConsoleCustomer(self._write))
        app.outbox.register(QUEUE, ConsoleQueue(self._write))

    def _write(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    async def run(self, lines: AsyncIterator[str] | None = None) -> None:
        self._write("relaydesk chat: you are the customer; handoffs show the operator view. " + HELP)
        await self._resume()
        async for line in lines or _stdin_lines():
            line = line.strip()
            if line in ("/quit", "/exit"):
                break
            if line:
                await self.handle(line)

    async def handle(self, line: str) -> None:
        if line.startswith("!"):
            result = await self._operator_command(line[1:])
            self._write(f"[{'ok' if result.ok else 'refused'}] {result.message}")
        elif line in ("/helped", "/nothelped") or line.startswith("/csat"):
            await self._feedback(line)
        elif line == "/help":
            self._write(HELP)
        else:
            await self._app.desk.receive(
                Inbound(CHANNEL, CHAT_ID, f"console-{time.time_ns()}", line, name="Terminal customer")
            )
        await self._app.outbox.deliver_due()

    async def _resume(self) -> None:
        conversation = await self._conversation()
        if conversation is not None:
            self._write(f"(resuming conversation #{conversation.id}, {conversation.state})")
            for author, text in await self._app.conversations.recent_messages(conversation.id, 6):
                self._write(f"  {author}: {_indent(text, 4)[:300]}")
        await self._app.outbox.deliver_due()  # anything left undelivered before a restart

    async def _operator_command(self, command: str) -> ActionResult:
        verb, _, text = command.partition(" ")
        conversation = await self._conversation()
        if conversation is None:
            return ActionResult(False, "no conversation yet")
        ops, cid, me = self._app.operators, conversation.id, self._operator
        draft = await self._app.conversations.latest_draft(cid)
        if verb in ("send", "edit", "discard"):
            if draft is None:
                return ActionResult(False, "no draft yet")
            if verb == "discard":
                return await ops.discard_draft(draft.handoff_id, me)
            return await ops.send_draft(draft.handoff_id, me, text if verb == "edit" else None)
        actions = {
            "reply": lambda: ops.reply(cid, me, text),
            "note": lambda: ops.note(cid, me, text),
            "claim": lambda: ops.claim(cid, me),
            "resolve": lambda: ops.resolve(cid, me),
            "bot": lambda: ops.return_to_bot(cid, me),
            "teach": lambda: ops.teach(cid, me),
            "escalate": lambda: ops.always_a_person(cid, me, text.strip() or None),
        }
        if verb not in actions:
            return ActionResult(False, f"unknown command !{verb}; try !help" if verb != "help" else HELP)
        return await actions[verb]()

    async def _feedback(self, line: str) -> None:
        conversation = await self._conversation()
        if conversation is None:
            return
        if line.startswith("/csat"):
            value = line.removeprefix("/csat").strip()
            if not value.isdigit():
                self._write("usage: /csat 1-5")
                return
            result = await self._app.operators.feedback(conversation.id, FeedbackKind.CSAT, int(value))
        else:
            kind = FeedbackKind.HELPFUL if line == "/helped" else FeedbackKind.NOT_HELPFUL
            result = await self._app.operators.feedback(conversation.id, kind)
        self._write(f"[{'ok' if result.ok else 'refused'}] {result.message}")

    async def _conversation(self) -> ConversationView | None:
        """The terminal customer's newest conversation."""
        return await self._app.conversations.latest_of_chat(CHANNEL, CHAT_ID)


def _indent(text: str, width: int = 5) -> str:
    return textwrap.indent(text, " " * width).lstrip()


async def _stdin_lines() -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    while True:
        try:
            line = await loop.run_in_executor(None, input, "you> ")
        except EOFError:
            return
        yield line
