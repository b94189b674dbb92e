"""The state tables: every (state, move) pair is either a named transition or refused."""

from __future__ import annotations

import pytest

from bot.domain.lifecycle import DRAFT_TRANSITIONS, Draft, Move, Refused, advance, allowed, may_claim, settle_draft
from bot.domain.types import State

B, W, OP, R = State.BOT, State.WAITING_OPERATOR, State.OPERATOR, State.RESOLVED

EXPECTED = {
    (B, Move.HAND_OFF): W,
    (R, Move.REOPEN): B,
    (B, Move.CLAIM): OP,
    (W, Move.CLAIM): OP,
    (OP, Move.CLAIM): OP,
    (R, Move.CLAIM): OP,
    (B, Move.RESOLVE): R,
    (W, Move.RESOLVE): R,
    (OP, Move.RESOLVE): R,
    (W, Move.RETURN_TO_BOT): B,
    (OP, Move.RETURN_TO_BOT): B,
    (R, Move.RETURN_TO_BOT): B,
    (B, Move.HELPED): R,
}


@pytest.mark.parametrize(("state", "move"), [(state, move) for state in State for move in Move])
def test_every_pair_of_state_and_move_is_a_transition_or_refused(state: State, move: Move) -> None:
    if (state, move) in EXPECTED:
        assert allowed(state, move) and advance(state, move) == EXPECTED[(state, move)]
        assert advance(str(state), move) == EXPECTED[(state, move)]  # as the column stores it
    else:
        assert not allowed(state, move)
        with pytest.raises(Refused):
            advance(state, move)


def test_a_conversation_another_operator_owns_is_not_claimed() -> None:
    assert may_claim(None, "ann") and may_claim("ann", "ann") and not may_claim("bob", "ann")


@pytest.mark.parametrize(("status", "to"), [(status, to) for status in Draft for to in Draft])
def test_a_draft_is_settled_once(status: Draft, to: Draft) -> None:
    if status == Draft.OPEN and to != Draft.OPEN:
        assert settle_draft(status, to) == to and to in DRAFT_TRANSITIONS[status]
    else:
        with pytest.raises(ValueError):
            settle_draft(status, to)
