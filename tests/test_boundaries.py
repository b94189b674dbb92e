"""Connectors only translate: none of them reaches past the core's ports into storage, the outbox or the desk."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

FORBIDDEN = ("bot.storage", "bot.delivery.outbox", "bot.delivery.journal", "bot.desk", "sqlalchemy", "sqlmodel")


def imported(source: str) -> set[str]:
    """Every module a piece of Python imports, wherever the import is (top level, a function, TYPE_CHECKING)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from bot import storage`
    return found


def forbidden(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == f or m.startswith(f"{f}.") for f in FORBIDDEN)}


def test_the_check_sees_every_way_of_importing() -> None:
    source = (
        "from bot import storage\nimport sqlalchemy.exc\n"
        "def f():\n    from bot.delivery.outbox import enqueue\n"
        "from bot.domain.deliveries import read\nimport bot.desking\n"
    )
    assert forbidden(imported(source)) == {
        "bot.storage",
        "sqlalchemy.exc",
        "bot.delivery.outbox",
        "bot.delivery.outbox.enqueue",
    }


def test_no_connector_imports_storage_the_outbox_the_journal_the_desk_or_sqlalchemy() -> None:
    files = sorted((REPO / "connectors").rglob("*.py"))
    assert len(files) > 10
    crossing = {
        str(path.relative_to(REPO)): sorted(found)
        for path in files
        if (found := forbidden(imported(Path(path).read_text(encoding="utf-8"))))
    }
    assert crossing == {}
