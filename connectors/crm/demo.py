"""The demo CRM: an embedded SQLite store seeded with sample customers and orders.

Dates are relative to today, so the late orders stay late and the delivered ones delivered
whenever the demo runs. Order numbers:

    10231 delivered on time      10234 in transit, 5 days late      10235 lost
    10232 delivered 4 days late  10236 processing, not due yet      10237 in transit, 9 days late
    10233 cancelled              10238 delivered on time
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta

from bot.orders.order import Order
from bot.ports import CRMUnavailable

# order id, customer, status, promised (days from today), delivered (days from today or None), total
SEED: tuple[tuple[str, str, str, int, int | None, float], ...] = (
    ("10231", "Anna Petrova", "delivered", -10, -11, 54.90),
    ("10232", "John Smith", "delivered", -8, -4, 129.00),
    ("10233", "Maria Garcia", "cancelled", -3, None, 18.50),
    ("10234", "Ivan Sokolov", "in_transit", -5, None, 76.40),
    ("10235", "Emma Brown", "lost", -12, None, 240.00),
    ("10236", "Oleg Kuznetsov", "processing", 4, None, 33.10),
    ("10237", "Liam Wilson", "in_transit", -9, None, 99.99),
    ("10238", "Olga Ivanova", "delivered", -2, -2, 12.00),
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS orders (
    id TEXT PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    status TEXT NOT NULL,
    promised TEXT,
    delivered TEXT,
    total REAL NOT NULL DEFAULT 0
);
"""


class DemoCRM:
    def __init__(self, path: str = ":memory:", today: date | None = None) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._seed(today or date.today())

    def _seed(self, today: date) -> None:
        with self._db:
            self._db.executescript(_SCHEMA)
            if self._db.execute("SELECT COUNT(*) FROM orders").fetchone()[0]:
                return
            for order_id, name, status, promised, delivered, total in SEED:
                self._db.execute("INSERT OR IGNORE INTO customers (name) VALUES (?)", (name,))
                (customer_id,) = self._db.execute("SELECT id FROM customers WHERE name = ?", (name,)).fetchone()
                self._db.execute(
                    "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        order_id,
                        customer_id,
                        status,
                        (today + timedelta(days=promised)).isoformat(),
                        None if delivered is None else (today + timedelta(days=delivered)).isoformat(),
                        total,
                    ),
                )

    async def order(self, order_id: str) -> Order | None:
        try:  # a primary-key read of a small local table: microseconds, cheaper than a thread hop
            row = self._row(order_id.strip().upper())
        except sqlite3.Error as exc:
            raise CRMUnavailable(f"demo CRM: {exc}") from exc
        if row is None:
            return None
        oid, status, promised, delivered, name, total = row
        return Order(
            order_id=oid,
            status=status,
            promised=date.fromisoformat(promised) if promised else None,
            delivered=date.fromisoformat(delivered) if delivered else None,
            customer=name,
            total=float(total),
        )

    def _row(self, order_id: str) -> tuple[str, str, str | None, str | None, str, float] | None:
        cursor = self._db.execute(
            "SELECT o.id, o.status, o.promised, o.delivered, c.name, o.total "
            "FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = ?",
            (order_id,),
        )
        row: tuple[str, str, str | None, str | None, str, float] | None = cursor.fetchone()
        return row

    def close(self) -> None:
        self._db.close()
