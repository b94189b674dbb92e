"""The state tables: every (state, move) pair is either a named transition or refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import StatementError

from bot.domain.lifecycle import DRAFT_TRANSITIONS, Draft, Move, Refused, advance, allowed, may_claim, settle_draft
from bot.domain.types import State
from bot.storage.db import create_engine, migrate, sessions
from bot.storage.models import Conversation, Customer

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


async def test_states_are_stored_as_their_enum_and_nothing_outside_the_table_is_written(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'states.db'}")
    await migrate(engine)
    factory = sessions(engine)
    try:
        async with factory() as session, session.begin():
            customer = Customer(channel="telegram", chat_id="1")
            session.add(customer)
            await session.flush()
            conversation = Conversation(customer_id=customer.id or 0, state=State.OPERATOR)
            session.add(conversation)
        async with factory() as session:
            stored = await session.get(Conversation, conversation.id)
            assert stored is not None and stored.state is State.OPERATOR
        with pytest.raises(StatementError, match="'lost' is not a valid State"):
            async with factory() as session, session.begin():
                stored = await session.get(Conversation, conversation.id)
                assert stored is not None
                stored.state = "lost"  # type: ignore[assignment]
        async with factory() as session:
            stored = await session.get(Conversation, conversation.id)
            assert stored is not None and stored.state is State.OPERATOR
    finally:
        await engine.dispose()
