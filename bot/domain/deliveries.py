"""What the outbox carries: each delivery kind with its payload as a type.

The core builds these models; connectors read them back from the stored row (`read`). The stored JSON and
the `kind` column keep their plain strings, so rows queued by an older version still parse: every field a
newer version added has a default, and keys a model does not know are ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

from bot.domain.types import Reason, State


class DeliveryKind(StrEnum):
    TEXT = "text"  # a message to a customer on their own channel
    HANDOFF = "handoff"  # the operator card of a handed-off question, with its draft
    CUSTOMER_MESSAGE = "customer_message"  # a customer's message while an operator owns the conversation
    STATE = "state"  # the conversation changed hands: the card shows it
    DRAFT_DONE = "draft_done"  # a draft was sent or discarded: its message in the queue says so
    NOTICE = "notice"  # a line for all operators (a refused prompt or knowledge edit)
    OPERATOR_EVENT = "operator_event"  # an operator's action the queue channel could not handle yet, replayed


class Buttons(StrEnum):
    """The keyboard under a customer message."""

    NONE = ""
    FEEDBACK = "feedback"  # Helped / Talk to a person, under a bot answer
    CSAT = "csat"  # 1-5 stars, after a resolution


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)
    KIND: ClassVar[DeliveryKind]

    def as_data(self) -> dict[str, Any]:
        """The stored JSON."""
        return self.model_dump(mode="json")


class CustomerText(Payload):
    KIND = DeliveryKind.TEXT
    chat_id: str
    text: str
    buttons: Buttons = Buttons.NONE
    language: str = ""
    operator: str | None = None  # who wrote it, when an operator did
    sources: list[str] = []


class HandoffCard(Payload):
    """A handed-off question as operators see it: the card, its reasons and the AI's draft."""

    KIND = DeliveryKind.HANDOFF
    handoff_id: int | None = None  # the draft's; None on a card shown without one
    conversation_id: int
    customer: str = ""
    channel: str = ""
    language: str = ""
    confidence: float = 0.0
    topic: str | None = None
    sentiment: str = "neutral"
    priority: str = "normal"
    reasons: list[str] = []  # Reason values (a newer version's unknown one is kept as written)
    summary: str = ""
    draft: str = ""
    sources: list[str] = []
    actions: list[dict[str, Any]] = []  # e.g. a compensation awaiting Send
    order: dict[str, Any] | None = None  # bot.domain.types.OrderFacts.as_data: the CRM's status of the order
    escalation: str | None = None  # the escalation topic's label
    last_messages: list[tuple[str, str]] = []  # (author, text), oldest first

    def reason_labels(self) -> list[str]:
        """Why a person, in words; an escalation names its topic."""
        labels = [Reason.label_of(r) for r in self.reasons]
        if self.escalation and Reason.ESCALATION in self.reasons:
            labels[self.reasons.index(Reason.ESCALATION)] = f"{self.escalation} (never answered by the bot alone)"
        return labels


class CustomerMessage(Payload):
    KIND = DeliveryKind.CUSTOMER_MESSAGE
    conversation_id: int
    thread: str | None = None
    text: str = ""
    kind: str = "text"  # the message's kind (photo, voice, …)
    attachments: list[dict[str, Any]] = []
    customer: str = ""


class StateChange(Payload):
    """The card must show where the conversation stands (read from the conversation when it is delivered)."""

    KIND = DeliveryKind.STATE
    conversation_id: int
    thread: str | None = None
    state: State | None = None
    operator: str | None = None


class DraftDone(Payload):
    KIND = DeliveryKind.DRAFT_DONE
    conversation_id: int | None = None
    channel: str  # where the draft message is, in the queue's own terms
    ts: str
    status: str  # sent | discarded
    operator: str
    text: str = ""
    edited: bool = False


class Notice(Payload):
    KIND = DeliveryKind.NOTICE
    text: str


P = TypeVar("P", bound=Payload)


def read(payload: dict[str, Any], model: type[P]) -> P:
    """A stored payload as its model (an old row's missing fields take their defaults)."""
    return model.model_validate(payload)
