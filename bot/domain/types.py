"""The desk's vocabulary: what comes in, what the brain concludes, what goes out."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypedDict

from bot.brain.triage.entities import Slots
from bot.brain.triage.smalltalk import SmallTalk


class State(StrEnum):
    """A conversation's owner: bot → waiting_operator → operator → resolved (→ bot)."""

    BOT = "bot"
    WAITING_OPERATOR = "waiting_operator"
    OPERATOR = "operator"
    RESOLVED = "resolved"


class FeedbackKind(StrEnum):
    """What a customer said of an answer or a conversation (a stored feedback row's kind)."""

    HELPFUL = "helpful"  # the Helped button under a bot answer: solved by the bot alone
    NOT_HELPFUL = "not_helpful"  # the "Talk to a person" button under a bot answer
    CSAT = "csat"  # 1-5 stars after a resolution
    THANKS = "thanks"  # thanks or praise in the customer's own words right after a bot answer


class EventType(StrEnum):
    """What the event log records (the analytics are computed from it)."""

    MESSAGE_IN = "message_in"
    BOT_ANSWER = "bot_answer"
    SMALL_TALK = "small_talk"
    HANDOFF = "handoff"
    REOPENED = "reopened"
    CLAIMED = "claimed"
    OPERATOR_REPLY = "operator_reply"
    DRAFT_SENT = "draft_sent"
    DRAFT_DISCARDED = "draft_discarded"
    RESOLVED = "resolved"
    RETURNED_TO_BOT = "returned_to_bot"
    FEEDBACK = "feedback"
    TAUGHT = "taught"
    MARKED = "marked"  # an operator's "always a person"
    LLM_USAGE = "llm_usage"  # tokens spent outside a message's own answer (e.g. judging a reply)


class Author(StrEnum):
    CUSTOMER = "customer"
    BOT = "bot"
    OPERATOR = "operator"
    NOTE = "note"  # operators' internal note, never shown to the customer


class Sentiment(StrEnum):
    NEGATIVE = "negative"
    NEUTRAL = "neutral"
    POSITIVE = "positive"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Reason(StrEnum):
    """Why a message went to a human."""

    ASKED_FOR_HUMAN = "asked_for_human"
    LOW_CONFIDENCE = "low_confidence"
    SMALL_MARGIN = "small_margin"
    NO_ANSWER = "no_answer"
    NEGATIVE_SENTIMENT = "negative_sentiment"
    HUMAN_ONLY_TOPIC = "human_only_topic"
    REPEATED_QUESTION = "repeated_question"
    NOT_TEXT = "not_text"
    RESPONDER_REQUEST = "responder_request"
    OUT_OF_SCOPE = "out_of_scope"  # far from everything the knowledge base covers, or nearer an off-topic example
    ESCALATION = "escalation"  # an escalation topic (prompts/escalation.yaml): never answered alone
    SUGGEST_MODE = "suggest_mode"  # automation.mode: suggest — every answer goes out through an operator
    COPILOT_COHORT = "copilot_cohort"  # mode auto, but the customer is outside the pilot cohort (bot/desk/pilot.py)
    ORDER_NOT_CHECKED = "order_not_checked"  # the CRM does not know the order, or could not be asked
    COMPENSATION = "compensation"  # the policy allows a compensation: only an operator may send it
    PROMISE_WITHHELD = "promise_withheld"  # the AI's reply promised money, a refund, a deadline…: not used

    @property
    def label(self) -> str:
        """What an operator reads on a card."""
        return _REASON_LABELS[self]

    @staticmethod
    def label_of(value: str) -> str:
        """A stored reason in words; one this version does not know (a newer version's) as written."""
        return Reason(value).label if value in Reason.__members__.values() else value.replace("_", " ")


_REASON_LABELS = {
    Reason.ASKED_FOR_HUMAN: "asked for a person",
    Reason.LOW_CONFIDENCE: "the bot is not sure",
    Reason.SMALL_MARGIN: "two answers look alike",
    Reason.NO_ANSWER: "no answer in the knowledge base",
    Reason.NEGATIVE_SENTIMENT: "upset customer",
    Reason.HUMAN_ONLY_TOPIC: "a topic only people handle",
    Reason.REPEATED_QUESTION: "asked again after the bot's answer",
    Reason.NOT_TEXT: "sent a file, photo or voice",
    Reason.RESPONDER_REQUEST: "the AI asked for a person",
    Reason.OUT_OF_SCOPE: "not something the knowledge base covers",
    Reason.ESCALATION: "never answered by the bot alone",
    Reason.SUGGEST_MODE: "suggest mode: every answer goes through an operator",
    Reason.COPILOT_COHORT: "customer outside the pilot: every answer goes through an operator",
    Reason.ORDER_NOT_CHECKED: "the order could not be checked in the CRM",
    Reason.COMPENSATION: "a compensation awaits an operator's approval",
    Reason.PROMISE_WITHHELD: "the AI promised what only a person may (money, refund, deadline): withheld",
}


@dataclass(frozen=True)
class Attachment:
    kind: str  # photo, document, voice, sticker, location, ...
    file_id: str = ""
    name: str = ""
    url: str = ""


@dataclass(frozen=True)
class Inbound:
    """One customer message as a channel hands it to the desk."""

    channel: str  # "console", "telegram", ...
    chat_id: str  # the customer's address on that channel
    message_id: str  # unique per channel; the desk is idempotent on (channel, message_id)
    text: str
    name: str = ""
    kind: str = "text"
    attachments: tuple[Attachment, ...] = ()
    language_hint: str = ""


@dataclass(frozen=True)
class Match:
    """One candidate article (or resolved case) for a question."""

    article_id: str
    score: float
    title: str = ""
    kind: str = "article"  # article | case
    chunk: int | None = None  # the body chunk closest to the question, when one was among the hits
    reusable: bool = True  # False: an operator's past reply nobody approved for automatic use yet


class TokenFields(TypedDict, total=False):
    """LLM usage as event data: what `relaydesk report` sums for the ROI's LLM spend."""

    tokens_in: int
    tokens_out: int


@dataclass(frozen=True)
class Usage:
    """LLM tokens spent on one piece of work, summed over its model calls (the offline brain spends none)."""

    tokens_in: int = 0
    tokens_out: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.tokens_in + other.tokens_in, self.tokens_out + other.tokens_out)

    def as_data(self) -> TokenFields:
        """The event fields; none when nothing was spent (the offline brain's events stay as they were)."""
        if not (self.tokens_in or self.tokens_out):
            return {}
        return {"tokens_in": self.tokens_in, "tokens_out": self.tokens_out}


def spent(*parts: Analysis | Answer | None) -> TokenFields:
    """What the analysis and the answer of one message cost together, as event fields."""
    return sum((p.usage for p in parts if p is not None), Usage()).as_data()


@dataclass(frozen=True)
class Escalation:
    """An escalation topic a message matched: its name, what operators read, how urgent it is."""

    name: str
    label: str
    priority: Priority
    similarity: float


@dataclass(frozen=True)
class Analysis:
    language: str
    topic: str | None
    confidence: float
    margin: float
    sentiment: Sentiment
    sentiment_score: float  # -1 … 1
    priority: Priority
    wants_human: bool
    matches: tuple[Match, ...] = ()
    usage: Usage = Usage()  # the LLM analysis's tokens
    # Triage (bot.brain.triage): what the open-set gate, the escalation topics and the small-talk replies read.
    similarity: float = 0.0  # to the nearest question (or title, or taught case) of the best topic
    off_topic: bool = False  # the classifier put an off-topic example's class above every article
    escalation: Escalation | None = None
    small_talk: SmallTalk | None = None
    slots: Slots = field(default_factory=Slots)
    orders: tuple[str, ...] = ()  # the conversation's order numbers since it was last resolved, the latest last


class OrderCheck(StrEnum):
    """What asking the CRM about an order came to."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "crm_unavailable"  # down, slow or an answer it could not read


@dataclass(frozen=True)
class OrderFacts:
    """What the CRM said about an order the conversation mentions, as an operator's card shows it."""

    order_id: str
    check: OrderCheck
    status: str = ""  # processing | in_transit | delivered | lost | cancelled (when found)
    days_late: int | None = None  # None: not known (not found, CRM down, or no promised date in its answer)
    note: str = ""  # a setup problem an admin can fix, e.g. "lateness unknown: map crm.fields.promised"

    def as_data(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "check": str(self.check),
            "status": self.status,
            "days_late": self.days_late,
            "note": self.note,
        }


@dataclass(frozen=True)
class Answer:
    text: str
    confidence: float
    sources: tuple[str, ...] = ()
    actions: tuple[dict[str, Any], ...] = ()
    needs_human: bool = False
    reason: str = ""
    summary: str = ""  # a brain's own paragraph for the operator card ('' = the desk writes one)
    notice: str = ""  # on a handoff, what the customer is told instead of the generic handoff text
    usage: Usage = Usage()  # every model call the brain made for this answer
    order: OrderFacts | None = None  # the order the answer looked up in the CRM
    awaits_order: bool = False  # the reply asks for an order number: the next message with one continues the topic
    withheld: bool = False  # the brain's reply promised what only an operator may: neither sent nor drafted

    @property
    def offers_compensation(self) -> bool:
        return any(action.get("type") == "compensation" for action in self.actions)


@dataclass(frozen=True)
class Decision:
    """What the desk did with one message."""

    action: str  # answer | handoff | forwarded | duplicate | ignored
    conversation_id: int
    analysis: Analysis | None = None
    answer: Answer | None = None
    reasons: tuple[Reason, ...] = ()
    handoff_id: int | None = None


@dataclass(frozen=True)
class ActionResult:
    """What an operator's (or a customer's button's) action came to, as the console that asked shows it."""

    ok: bool
    message: str
    conversation_id: int | None = None
    quality: dict[str, Any] | None = None  # a sent reply's score (bot.operators.quality), shown to its operator only
