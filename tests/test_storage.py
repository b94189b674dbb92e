"""Storage: migrations build the schema on SQLite and PostgreSQL, and the models never drift from them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlmodel import SQLModel, select

from bot.storage.db import Transactions, create_engine, migrate, sessions
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
        await _check_transactions(Transactions(engine))
    finally:
        await engine.dispose()


async def _check_transactions(transactions: Transactions) -> None:
    """A transaction written as a function of a Session: committed whole, or not at all."""

    def add(text: str, external_id: str, fail: bool = False) -> Callable[[Session], int]:
        def work(session: Session) -> int:
            message = Message(conversation_id=1, author="bot", channel="telegram", external_id=external_id, text=text)
            session.add(message)
            session.flush()
            if fail:
                raise RuntimeError("the desk failed halfway")
            return message.id or 0

        return work

    def texts(session: Session) -> list[tuple[str, bool]]:
        rows = session.execute(select(Message).where(Message.author == "bot")).scalars().all()
        return [(m.text, m.created_at.tzinfo is not None) for m in rows]

    try:
        assert await transactions.run(add("answered", "2:1")) > 1
        with pytest.raises(RuntimeError):
            await transactions.run(add("half done", "2:2", fail=True))
        with pytest.raises(IntegrityError):
            await transactions.run(add("the same message again", "2:1"))
        assert await transactions.run(texts) == [("answered", True)]
    finally:
        await transactions.close()


async def test_sqlite_schema(tmp_path: Path) -> None:
    await _check(f"sqlite+aiosqlite:///{tmp_path}/nested/dir/desk.db")


async def test_postgresql_schema(postgres_url: str) -> None:
    await _check(postgres_url)


async def test_workers_started_at_once_all_migrate_a_fresh_postgresql_database(postgres_url: str) -> None:
    """Each worker has its own engine; all come up on one schema, and the schema was built once."""
    engines = [create_engine(postgres_url) for _ in range(6)]
    try:
        await asyncio.gather(*(migrate(engine) for engine in engines))
        async with engines[0].connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert len(versions) == 1
        assert tables >= TABLES
    finally:
        for engine in engines:
            await engine.dispose()
