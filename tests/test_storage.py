"""Storage: migrations build the schema on SQLite and PostgreSQL, and the models never drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from bot.storage.db import create_engine, migrate, sessions
from bot.storage.models import Conversation, Customer, Message

TABLES = {"customer", "conversation", "message", "handoff", "feedback", "event", "delivery"}


async def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate(engine)
        await migrate(engine)  # a second start finds nothing to do
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
            drift = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), SQLModel.metadata))
        assert tables >= TABLES
        assert drift == [], f"models changed without a migration: {drift}"

        factory = sessions(engine)
        async with factory() as session, session.begin():
            customer = Customer(channel="telegram", chat_id="1", name="Anna")
            session.add(customer)
            await session.flush()
            conversation = Conversation(customer_id=customer.id or 0)
            session.add(conversation)
            await session.flush()
            session.add(
                Message(
                    conversation_id=conversation.id or 0,
                    author="customer",
                    channel="telegram",
                    external_id="1:1",
                    text="привет",
                    meta={"attachments": [{"kind": "photo"}]},
                )
            )
        async with factory() as session:
            message = await session.get(Message, 1)
            assert message is not None and message.meta["attachments"][0]["kind"] == "photo"
            assert message.created_at.tzinfo is not None
        with pytest.raises(IntegrityError):  # the idempotency key of inbound messages
            async with factory() as session, session.begin():
                session.add(Message(conversation_id=1, author="customer", channel="telegram", external_id="1:1"))
    finally:
        await engine.dispose()


async def test_sqlite_schema(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path}/nested/dir/desk.db")


async def test_postgresql_schema(postgres_url: str) -> None:
    await _check(postgres_url)
