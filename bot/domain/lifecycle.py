"""Who owns a conversation, and how long a draft lives: the two state tables every change goes through.

```
            hand_off               claim / reply             resolve
    bot ────────────► waiting_operator ────────► operator ────────────► resolved
     ▲  ◄──────────── (any but bot) return_to_bot                           │
     │  ◄──────────────────────────────────────────────── reopen (customer) │
     └── helped (customer's button under a bot answer): bot → resolved ─────┘
```

A draft (a handoff's suggested reply) is open until its question is settled: sent, discarded, or expired
when the conversation is resolved, returned to the bot or answered in the operator's own words.
"""

from __future__ import annotations

from enum import StrEnum

from bot.domain.types import State


class Move(StrEnum):
    """What happens to a conversation."""

    HAND_OFF = "hand_off"  # the desk hands a message to people
    REOPEN = "reopen"  # a customer writes again after a resolution
    CLAIM = "claim"  # an operator takes it (Claim, or a reply)
    RESOLVE = "resolve"
    RETURN_TO_BOT = "return_to_bot"
    HELPED = "helped"  # the customer's "helped" press under a bot answer: solved by the bot alone


_B, _W, _O, _R = State.BOT, State.WAITING_OPERATOR, State.OPERATOR, State.RESOLVED

TRANSITIONS: dict[tuple[State, Move], State] = {
    (_B, Move.HAND_OFF): _W,
    (_R, Move.REOPEN): _B,
    **{(state, Move.CLAIM): _O for state in State},  # an operator may answer at any time, and owns it then
    **{(state, Move.RESOLVE): _R for state in (_B, _W, _O)},
    **{(state, Move.RETURN_TO_BOT): _B for state in (_W, _O, _R)},
    (_B, Move.HELPED): _R,
}
"""(state, move) → the next state; a pair not in the table is refused."""


class Refused(Exception):
    """A move the conversation's state does not allow."""

    def __init__(self, state: State, move: Move) -> None:
        super().__init__(f"{move} is not allowed while the conversation is {state}")
        self.state = state
        self.move = move


def advance(state: State | str, move: Move) -> State:
    """The state after `move`, or `Refused`."""
    current = State(state)
    following = TRANSITIONS.get((current, move))
    if following is None:
        raise Refused(current, move)
    return following


def allowed(state: State | str, move: Move) -> bool:
    return (State(state), move) in TRANSITIONS


def may_claim(owner: str | None, operator: str) -> bool:
    """The claim's guard: a conversation another operator owns is not taken from them."""
    return owner in (None, operator)


class Draft(StrEnum):
    """A handoff's draft: open → sent | discarded | expired."""

    OPEN = "open"
    SENT = "sent"
    DISCARDED = "discarded"
    EXPIRED = "expired"


DRAFT_TRANSITIONS: dict[Draft, frozenset[Draft]] = {
    Draft.OPEN: frozenset({Draft.SENT, Draft.DISCARDED, Draft.EXPIRED}),
    Draft.SENT: frozenset(),
    Draft.DISCARDED: frozenset(),
    Draft.EXPIRED: frozenset(),
}

EXPIRE_DRAFTS = frozenset({Move.RESOLVE, Move.RETURN_TO_BOT, Move.HELPED})
"""Moves that settle a draft's question (so do the operator's own words: a reply expires the other drafts)."""


def settle_draft(status: Draft | str, to: Draft) -> Draft:
    """The draft's next status, or `ValueError` when it is settled already."""
    current = Draft(status)
    if to not in DRAFT_TRANSITIONS[current]:
        raise ValueError(f"a {current} draft cannot become {to}")
    return to
