"""The database: one async engine, migrated with Alembic to the current schema on start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy
from alembic import command
from alembic.config import Config
from sqlalchemy import Insert, event
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and ":memory:" not in path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args=SQLITE_CONNECT)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


SQLITE_CONNECT = {"timeout": 30}  # seconds a writer waits for another's lock before it fails


class Transactions:
    """Runs a transaction written as a plain function of a Session, committed when it returns.

    On a SQLite file the function runs in one worker thread of its own on the synchronous driver:
    one thread hop per transaction, where the async driver makes several per statement (on the
    desk's path that was most of its cost beyond the model). Transactions there run one at a time,
    as SQLite writes do anyway; once started, one finishes even if its caller is cancelled.
    Elsewhere it runs on the async engine through SQLAlchemy's `run_sync`, so the same function
    serves PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = sessions(engine)
        self._engine: sqlalchemy.Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database and ":memory:" not in url.database:
            self._engine = sqlalchemy.create_engine(url.set(drivername="sqlite"), connect_args=SQLITE_CONNECT)
            event.listen(self._engine, "connect", _sqlite_pragmas)
            self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")

    async def run(self, work: Callable[[Session], T]) -> T:
        if self._engine is None:
            async with self._sessions() as session, session.begin():
                return await session.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, work)

    def _in_thread(self, work: Callable[[Session], T]) -> T:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            return work(session)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None and self._engine is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._engine.dispose)
            thread.shutdown(wait=False)


def insert_row(session: Session, statement: Insert, row: dict[str, Any]) -> int:
    """Insert one row with a prepared statement; its new id (the driver's last row id on SQLite, which needs
    no RETURNING)."""
    key = cast(CursorResult[Any], session.execute(statement, row)).inserted_primary_key
    assert key is not None  # a single-row insert always has one
    return int(key[0])


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the outbox worker read while the desk writes; NORMAL sync is durable across app crashes.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


MIGRATION_LOCK = 0x72656C6179  # the PostgreSQL advisory lock key workers migrate under ("relay")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent).

    On PostgreSQL, under a transaction-scoped advisory lock: workers started at once migrate one after
    another, and those that follow find the schema at head (two at once both created alembic_version)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.run_sync(_upgrade)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
