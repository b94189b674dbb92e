"""What operators do in Slack, turned into desk actions: thread replies, notes, edits, buttons, the modal.

Every listener acknowledges first (Slack wants an answer within 3 s) and does the work afterwards in
a tracked task (`drain()` waits for them: tests and shutdown). Only members of the queue channel (or
of `slack.operator_group`) may act; anyone else gets an ephemeral refusal and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, func, select

from bot.config import SlackSettings
from bot.deliveries import DeliveryKind, DraftDone, StateChange
from bot.domain import Author, State
from bot.journal import send_to_customer
from bot.operators import ActionResult, OperatorActions
from bot.outbox import Outbox, enqueue
from bot.quality import describe
from bot.shared import SharedState
from bot.storage.models import Conversation, Customer, Handoff, Message
from bot.texts import Texts
from connectors.slack import cards
from connectors.slack.access import DirectoryUnavailable, OperatorDirectory
from connectors.slack.sender import latest_handoff_at, split_ref, thread_ref
from connectors.slack.stats import HELP, USAGE, StatsCommand
from connectors.slack.stats import REFUSED as STATS_REFUSED
from connectors.slack.text import to_plain

log = logging.getLogger(__name__)

EVENT_MEMORY_S = 3600.0  # Slack retries an event for about an hour: each event id is handled once within it
REFUSED = "Only members of the support queue can act on customer conversations — nothing was sent."
REPLY_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
_LEARNED = {cards.TEACH: "🎓", cards.ALWAYS_A_PERSON: "🙋"}  # buttons that teach the bot and leave the card as is


class SlackHandlers:
    def __init__(
        self,
        actions: OperatorActions,
        sessions: async_sessionmaker[AsyncSession],
        texts: Texts,
        outbox: Outbox,
        client: AsyncWebClient,
        directory: OperatorDirectory,
        settings: SlackSettings,
        queue_channel: str,
        stats: StatsCommand | None = None,
        shared: SharedState | None = None,
    ) -> None:
        self._shared = shared or SharedState()
        self._actions = actions
        self.stats = stats
        self._sessions = sessions
        self._texts = texts
        self._outbox = outbox
        self._client = client
        self._directory = directory
        self._settings = settings
        self._queue = queue_channel
        self._tasks: set[asyncio.Task[None]] = set()
        self._conversation_buttons: dict[str, Callable[[int, str], Awaitable[ActionResult]]] = {
            cards.CLAIM: self._actions.claim,
            cards.RESOLVE: self._actions.resolve,
            cards.RETURN: self._actions.return_to_bot,
            cards.TEACH: self._actions.teach,
            cards.ALWAYS_A_PERSON: self._actions.always_a_person,
        }

    def register(self, app: AsyncApp) -> None:
        app.event("message")(self.on_message)
        for action_id in (*self._conversation_buttons, cards.SEND, cards.DISCARD, cards.EDIT):
            app.action(action_id)(self.on_button)
        app.view(cards.EDIT_VIEW)(self.on_edit_submitted)
        app.command("/relaydesk")(self.on_command)

    async def drain(self) -> None:
        """Wait until every piece of work started by a Slack request has finished."""
        for _ in range(100):
            await asyncio.sleep(0.01)  # let Bolt start listeners it has scheduled
            if not self._tasks:
                return
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _guard(work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except Exception:  # after the ack nobody is waiting for an answer: log, never crash the loop
            log.exception("slack: handling a request failed")

    async def _first_time(self, event_id: str | None) -> bool:
        """Slack redelivers an event it thinks we missed (same event_id): handle each once."""
        if not event_id:
            return True
        return await self._shared.first_time(f"slack-event:{event_id}", EVENT_MEMORY_S)  # by any worker

    # -- listeners: acknowledge, then work --------------------------------------------------------

    async def on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if await self._first_time(body.get("event_id")):  # Bolt has acknowledged events already
            self._spawn(self._or_later({"event": event}, f"{event.get('channel')}:{event.get('ts')}"))

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        user = (body.get("user") or {}).get("id")
        self._spawn(self._or_later({"body": body, "action": action}, f"{user}:{action.get('action_ts')}"))

    async def replay(self, payload: dict[str, Any]) -> None:
        """Handle an event or a button press kept by `_or_later` (raises DirectoryUnavailable while Slack can't say)."""
        if "event" in payload:
            await self._message(payload["event"])
        else:
            await self._button(payload["body"], payload["action"])

    async def _or_later(self, payload: dict[str, Any], key: str) -> None:
        """Handle it now, or, when Slack cannot say whether the operator may act, keep it in the outbox: it is
        handled (sent, or refused with a note the operator sees) once Slack answers again; never lost."""
        try:
            await self.replay(payload)
        except DirectoryUnavailable:
            await self._outbox.later(self._queue, DeliveryKind.OPERATOR_EVENT, payload, dedup_key=f"slack-later:{key}")
            log.warning("slack: could not check an operator's rights; their action waits in the outbox")

    async def on_edit_submitted(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = (view.get("state") or {}).get("values") or {}
        text = ((values.get(cards.EDIT_BLOCK) or {}).get(cards.EDIT_INPUT) or {}).get("value") or ""
        if not text.strip():
            await ack(response_action="errors", errors={cards.EDIT_BLOCK: "Write the reply to send."})
            return
        await ack()
        self._spawn(self._edited_draft(body, view, text))

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        """`/relaydesk [stats|help]`: the queue now (only you see it), today's summary (posted), the list."""
        words = str(command.get("text") or "").split()
        sub = words[0].lower() if words else ""
        if not sub:
            await ack(await self._queue_counts())
        elif sub == "help":
            await ack(HELP)
        elif sub == "stats" and self.stats is not None:
            await ack()  # the report reads the day's event log: answer Slack now, post when it is ready
            self._spawn(self._post_stats(str(command.get("user_id", "")), respond))
        else:
            await ack(f"Unknown subcommand `{sub[:40]}`. {USAGE}")

    async def _queue_counts(self) -> str:
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Conversation.state, func.count())
                    .where(col(Conversation.state).in_([State.WAITING_OPERATOR, State.OPERATOR]))
                    .group_by(Conversation.state)
                )
            ).all()
        counts = {str(state): int(n) for state, n in rows}
        return (
            f"{counts.get(State.WAITING_OPERATOR, 0)} waiting for a person, "
            f"{counts.get(State.OPERATOR, 0)} being handled."
        )

    async def _post_stats(self, user: str, respond: AsyncRespond) -> None:
        """Operators only (members of a queue channel or the operator group); posted via the response URL.

        The response URL answers in the channel the command was typed in, whether or not the bot is a
        member (a DM, a private channel), where chat.postMessage would fail with not_in_channel.
        """
        assert self.stats is not None
        queues = dict.fromkeys([self._settings.queue_channel, *self._settings.routes.values()])
        allowed = False
        for channel in queues:
            if channel and await self._directory.allowed(user, channel):
                allowed = True
                break
        if not allowed:
            await respond(STATS_REFUSED, response_type="ephemeral")
            return
        text, blocks = await self.stats.today()
        answer = await respond(text, blocks=blocks, response_type="in_channel")
        if answer.status_code != 200:
            log.warning("slack: posting /relaydesk stats failed: %s %s", answer.status_code, answer.body[:100])

    # -- thread messages --------------------------------------------------------------------------

    async def _message(self, event: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        if subtype == "message_changed":
            await self._changed(event)
        elif subtype == "message_deleted":
            await self._deleted(event)
        elif subtype in REPLY_SUBTYPES and not event.get("bot_id"):
            await self._reply(event)

    async def _reply(self, event: dict[str, Any]) -> None:
        channel, ts, thread_ts = str(event.get("channel", "")), str(event.get("ts", "")), event.get("thread_ts")
        if not thread_ts or thread_ts == ts:
            return  # a message in the channel, not in a conversation's thread
        conversation = await self._conversation(channel, str(thread_ts))
        if conversation is None or conversation.id is None:
            return
        user = str(event.get("user", ""))
        if not await self._directory.allowed(user, channel):
            await self._tell(channel, user, REFUSED, str(thread_ts))
            return
        operator = await self._directory.name(user)
        text = to_plain(str(event.get("text", "")))
        prefix = self._settings.note_prefix
        if prefix and text.startswith(prefix):
            await self._actions.note(conversation.id, operator, text[len(prefix) :].strip())
            return
        if event.get("files"):
            await self._tell(
                channel, user, "Files are not forwarded to the customer: paste a link instead.", str(thread_ts)
            )
        if not text:
            return
        await self._announce(conversation, operator)
        result = await self._actions.reply(conversation.id, operator, text, dedup_key=f"slack:{channel}:{ts}")
        await self._after_reply(result, conversation.id, channel, user, str(thread_ts))

    async def _changed(self, event: dict[str, Any]) -> None:
        """An operator edited a thread reply: within the window, the customer gets a correction."""
        message, previous = event.get("message") or {}, event.get("previous_message") or {}
        if message.get("bot_id") or previous.get("bot_id") or message.get("subtype") == "bot_message":
            return
        channel, ts, thread_ts = str(event.get("channel", "")), str(message.get("ts", "")), message.get("thread_ts")
        new, old = to_plain(str(message.get("text", ""))), to_plain(str(previous.get("text", "")))
        prefix = self._settings.note_prefix
        if not thread_ts or thread_ts == ts or new == old or (prefix and old.startswith(prefix)) or not new:
            return  # an unfurl, a note, or not a conversation reply
        conversation = await self._conversation(channel, str(thread_ts))
        if conversation is None or conversation.id is None:
            return
        user = str(message.get("user", ""))
        if not await self._directory.allowed(user, channel):
            return
        edited_ts = str((message.get("edited") or {}).get("ts") or event.get("ts") or ts)
        if float(edited_ts) - float(ts) > self._settings.edit_window_s:
            await self._tell(
                channel, user, "That edit was not sent: the customer has the original. Reply again instead.", thread_ts
            )
            return
        operator = await self._directory.name(user)
        correction = self._texts.render("operator_correction", await self._language(conversation), text=new)
        result = await self._actions.reply(
            conversation.id, operator, correction, dedup_key=f"slack-edit:{channel}:{ts}:{edited_ts}"
        )
        await self._after_reply(result, conversation.id, channel, user, str(thread_ts))

    async def _deleted(self, event: dict[str, Any]) -> None:
        """A customer cannot be made to unread a message: the operator is told so."""
        previous = event.get("previous_message") or {}
        thread_ts, user = previous.get("thread_ts"), str(previous.get("user", ""))
        channel = str(event.get("channel", ""))
        text = to_plain(str(previous.get("text", "")))
        prefix = self._settings.note_prefix
        if not thread_ts or previous.get("bot_id") or not user or (prefix and text.startswith(prefix)):
            return
        if await self._conversation(channel, str(thread_ts)) is None:
            return
        await self._tell(
            channel, user, "Deleting a reply here does not unsend it: the customer already has it.", thread_ts
        )

    async def _after_reply(
        self, result: ActionResult, conversation_id: int, channel: str, user: str, thread: str
    ) -> None:
        if not result.ok:
            if result.message != "already sent":  # a replayed event: quietly nothing
                await self._tell(channel, user, f"Not sent: {result.message}.", thread)
            return
        await self._refresh_on_first_response(conversation_id)
        if result.quality:  # coaching for the operator who replied; the customer never sees it
            await self._tell(channel, user, describe(result.quality), thread)

    # -- buttons ----------------------------------------------------------------------------------

    async def _button(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        container = body.get("container") or {}
        channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
        message_ts = str(container.get("message_ts") or "")
        thread_ts = container.get("thread_ts")
        action_id, value = str(action.get("action_id")), str(action.get("value", ""))
        if not value.isdigit():
            return
        on_conversation = action_id in self._conversation_buttons
        home = await self._home(int(value) if on_conversation else None, None if on_conversation else int(value))
        if not home or not await self._directory.allowed(user, home):
            await self._tell(channel, user, REFUSED, thread_ts)
            return
        if action_id == cards.EDIT:  # the trigger id lives 3 s: open the modal before anything else
            await self._open_editor(int(value), str(body.get("trigger_id", "")), channel, message_ts, user, thread_ts)
            return
        operator = await self._directory.name(user)
        if action_id in self._conversation_buttons:
            conversation_id = int(value)
            before = await self._load(conversation_id)
            result = await self._conversation_buttons[action_id](conversation_id, operator)
            if result.ok and action_id == cards.CLAIM and before is not None:
                await self._announce(before, operator)
            if result.ok and action_id in _LEARNED:  # nothing changes on the card: say it worked
                message = f"{_LEARNED[action_id]} {result.message[:1].upper()}{result.message[1:]}."
                await self._tell(channel, user, message, thread_ts)
        elif action_id == cards.SEND:
            result, sent = await self._send_draft(int(value), operator, None)
            if result.ok:
                await self._draft_done(result, channel, message_ts, "sent", operator, sent, edited=False)
        else:  # DISCARD
            result = await self._actions.discard_draft(int(value), operator)
            if result.ok:
                await self._draft_done(result, channel, message_ts, "discarded", operator, "", edited=False)
        if not result.ok:
            await self._tell(channel, user, f"Nothing done: {result.message}.", thread_ts)

    async def _send_draft(self, handoff_id: int, operator: str, text: str | None) -> tuple[ActionResult, str]:
        """Send the draft (or `text`, the operator's edit); returns the result and what was sent."""
        async with self._sessions() as session:
            handoff = await session.get(Handoff, handoff_id)
            conversation = await session.get(Conversation, handoff.conversation_id) if handoff else None
        if conversation is not None and handoff is not None and handoff.status == "open":
            await self._announce(conversation, operator)
        result = await self._actions.send_draft(handoff_id, operator, text)
        if result.ok and result.conversation_id is not None:
            await self._refresh_on_first_response(result.conversation_id)
        sent = text if text is not None else (handoff.draft if handoff else "")
        return result, sent.strip()

    async def _open_editor(
        self, handoff_id: int, trigger_id: str, channel: str, message_ts: str, user: str, thread_ts: str | None
    ) -> None:
        async with self._sessions() as session:
            handoff = await session.get(Handoff, handoff_id)
        refused = "the draft is gone" if handoff is None else await self._actions.draft_refusal(handoff_id)
        if handoff is None or refused:
            await self._tell(channel, user, f"Nothing done: {refused}.", thread_ts)
            return
        view = cards.edit_view(handoff_id, handoff.draft, channel, message_ts)
        try:
            await self._client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("slack: views.open failed: %s", exc.response.get("error"))
            await self._tell(channel, user, "Could not open the editor; reply in the thread instead.", thread_ts)

    async def _edited_draft(self, body: dict[str, Any], view: dict[str, Any], text: str) -> None:
        user = str((body.get("user") or {}).get("id", ""))
        handoff_id, _, rest = str(view.get("private_metadata", "")).partition("|")
        channel, _, message_ts = rest.partition("|")
        if not handoff_id.isdigit() or not channel:
            log.warning("slack: an edit modal came back without its draft reference")
            return
        home = await self._home(None, int(handoff_id))
        if not home or not await self._directory.allowed(user, home):
            await self._tell(channel, user, REFUSED, None)
            return
        operator = await self._directory.name(user)
        result, sent = await self._send_draft(int(handoff_id), operator, text.strip())
        if result.ok:
            await self._draft_done(result, channel, message_ts, "sent", operator, sent, edited=True)
        else:
            await self._tell(channel, user, f"Not sent: {result.message}.", await self._thread_of(result))

    # -- helpers ----------------------------------------------------------------------------------

    async def _draft_done(
        self, result: ActionResult, channel: str, ts: str, status: str, operator: str, text: str, edited: bool
    ) -> None:
        """Queue the update of the draft message (Sent by … / Discarded by …) behind the reply itself."""
        if not ts or result.conversation_id is None:
            return
        payload = DraftDone(
            conversation_id=result.conversation_id,
            channel=channel,
            ts=ts,
            status=status,
            operator=operator,
            text=text,
            edited=edited,
        )
        async with self._sessions() as session, session.begin():
            await session.run_sync(enqueue, self._queue, DeliveryKind.DRAFT_DONE, payload, result.conversation_id)
        self._outbox.wake()

    async def _refresh_on_first_response(self, conversation_id: int) -> None:
        """The card shows the first response time: refresh it when the first reply went out."""
        async with self._sessions() as session, session.begin():
            handoff_at = await latest_handoff_at(session, conversation_id)
            if handoff_at is None:
                return
            replies = (
                await session.execute(
                    select(func.count())
                    .select_from(Message)
                    .where(Message.conversation_id == conversation_id)
                    .where(Message.author == Author.OPERATOR)
                    .where(col(Message.created_at) >= handoff_at)
                )
            ).scalar()
            if replies != 1:
                return
            change = StateChange(conversation_id=conversation_id)
            await session.run_sync(enqueue, self._queue, DeliveryKind.STATE, change, conversation_id)
        self._outbox.wake()

    async def _announce(self, conversation: Conversation, operator: str) -> None:
        """With `show_operator_name`, the customer learns who took over (once per owner)."""
        if not self._settings.show_operator_name or conversation.id is None:
            return
        if conversation.state == State.OPERATOR and conversation.operator is not None:
            return  # already someone's: either this operator announced, or the action will be refused
        async with self._sessions() as session, session.begin():
            fresh = await session.get(Conversation, conversation.id)
            customer = await session.get(Customer, fresh.customer_id) if fresh else None
            if fresh is None or customer is None:
                return
            text = self._texts.render("operator_joined", customer.language, operator=operator)
            await session.run_sync(send_to_customer, customer, fresh.id, text, operator=operator)

    async def _conversation(self, channel: str, thread_ts: str) -> Conversation | None:
        async with self._sessions() as session:
            query = select(Conversation).where(Conversation.queue_thread == thread_ref(channel, thread_ts))
            return (await session.execute(query.limit(1))).scalars().first()

    async def _home(self, conversation_id: int | None, handoff_id: int | None) -> str:
        """The queue channel whose thread the conversation (or the handoff's) lives in; "" when none.

        A button or an edit is authorised against it, never against the channel the request names."""
        async with self._sessions() as session:
            handoff = await session.get(Handoff, handoff_id) if handoff_id is not None else None
            conversation_id = handoff.conversation_id if handoff is not None else conversation_id
            conversation = await session.get(Conversation, conversation_id) if conversation_id is not None else None
        return split_ref(conversation.queue_thread)[0] if conversation and conversation.queue_thread else ""

    async def _load(self, conversation_id: int) -> Conversation | None:
        async with self._sessions() as session:
            return await session.get(Conversation, conversation_id)

    async def _language(self, conversation: Conversation) -> str:
        async with self._sessions() as session:
            customer = await session.get(Customer, conversation.customer_id)
        return customer.language if customer else self._texts.default_language

    async def _thread_of(self, result: ActionResult) -> str | None:
        if result.conversation_id is None:
            return None
        conversation = await self._load(result.conversation_id)
        return split_ref(conversation.queue_thread)[1] if conversation and conversation.queue_thread else None

    async def _tell(self, channel: str, user: str, text: str, thread_ts: str | None) -> None:
        """An ephemeral note only `user` sees; best effort (it is advice, not a delivery)."""
        if not channel or not user:
            return
        kwargs: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            await self._client.chat_postEphemeral(channel=channel, user=user, text=text, **kwargs)
        except Exception as exc:  # a lost hint must not break the handler
            log.warning("slack: chat.postEphemeral failed: %s", exc)
