"""Alembic environment: runs on the connection relaydesk hands over (see bot.storage.db.migrate)."""

from alembic import context
from sqlmodel import SQLModel

import bot.storage.models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through relaydesk (bot.storage.db.migrate), not the alembic CLI")
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
