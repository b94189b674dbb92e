"""CRM connectors: the seeded demo store, the HTTP CRM against a real local server, order numbers in text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import pytest

from bot.config import CRMSettings
from bot.orders.order import find_order_numbers
from bot.ports import CRMUnavailable
from connectors.crm import DemoCRM, HttpCRM, create_crm
from tests.fakes.crm_api import FakeCRM

TODAY = date(2026, 5, 20)


async def test_the_demo_crm_is_seeded_with_late_delivered_and_lost_orders() -> None:
    crm = DemoCRM(today=TODAY)
    late, on_time, lost = await crm.order("10234"), await crm.order("10231"), await crm.order("10235")
    assert late is not None and late.status == "in_transit" and late.days_late(TODAY) == 5
    assert on_time is not None and on_time.status == "delivered" and on_time.days_late(TODAY) == 0
    assert lost is not None and lost.status == "lost"
    assert await crm.order("99999") is None
    assert "5 days late" in late.describe(TODAY) and "Ivan" not in late.describe(TODAY)  # no PII for the model
    crm.close()


async def test_the_demo_crm_keeps_its_file_and_does_not_reseed(tmp_path: Any) -> None:
    path = str(tmp_path / "crm.db")
    DemoCRM(path, today=TODAY).close()
    crm = DemoCRM(path, today=date(2030, 1, 1))
    order = await crm.order("10234")
    assert order is not None and order.promised == date(2026, 5, 15)
    assert isinstance(create_crm(CRMSettings()), DemoCRM)


@pytest.fixture
async def server() -> AsyncIterator[FakeCRM]:
    crm = await FakeCRM().start()
    crm.orders["A-77"] = {
        "number": "A-77",
        "state": "SHIPPED",
        "delivery": {"eta": "2026-05-12T10:00:00Z", "at": None},
        "client": {"name": "Jane"},
        "amount": "59.90",
    }
    yield crm
    await crm.stop()


def http_settings(server: FakeCRM, **extra: Any) -> CRMSettings:
    return CRMSettings(
        provider="http",
        base_url=server.url,
        timeout_s=0.5,
        auth_env="TEST_CRM_AUTH",
        fields={
            "order_id": "number",
            "status": "state",
            "promised": "delivery.eta",
            "delivered": "delivery.at",
            "customer": "client.name",
            "total": "amount",
        },
        statuses={"SHIPPED": "in_transit", "DONE": "delivered"},
        **extra,
    )


async def test_the_http_crm_maps_fields_and_statuses_and_sends_the_auth_header(server: FakeCRM) -> None:
    crm = HttpCRM(http_settings(server), environ={"TEST_CRM_AUTH": "Bearer s3cr3t"})
    order = await crm.order("A-77")
    assert order is not None
    assert (order.order_id, order.status, order.promised, order.customer, order.total) == (
        "A-77",
        "in_transit",
        date(2026, 5, 12),
        "Jane",
        59.9,
    )
    assert server.headers[-1]["Authorization"] == "Bearer s3cr3t"
    assert await crm.order("nope") is None
    assert isinstance(create_crm(http_settings(server)), HttpCRM)


async def test_without_the_environment_variable_no_auth_header_is_sent(server: FakeCRM) -> None:
    await HttpCRM(http_settings(server), environ={}).order("A-77")
    assert "Authorization" not in server.headers[-1]


@pytest.mark.parametrize(
    ("status", "body", "delay_s"),
    [
        pytest.param(500, None, 0.0, id="5xx"),
        pytest.param(401, None, 0.0, id="401"),
        pytest.param(200, "<html>oops", 0.0, id="not-json"),
        pytest.param(200, "[1, 2]", 0.0, id="not-an-object"),
        pytest.param(200, None, 2.0, id="timeout"),
    ],
)
async def test_http_crm_failures_raise_crm_unavailable(
    server: FakeCRM, status: int, body: str | None, delay_s: float
) -> None:
    server.status, server.body, server.delay_s = status, body, delay_s
    with pytest.raises(CRMUnavailable):
        await HttpCRM(http_settings(server), environ={}).order("A-77")


async def test_an_unmapped_status_or_a_bad_date_is_unavailable_not_a_guess(server: FakeCRM) -> None:
    server.orders["B-1"] = {"number": "B-1", "state": "WEIRD"}
    server.orders["B-2"] = {"number": "B-2", "state": "DONE", "delivery": {"eta": "someday"}}
    crm = HttpCRM(http_settings(server), environ={})
    for order_id in ("B-1", "B-2"):
        with pytest.raises(CRMUnavailable):
            await crm.order(order_id)


async def test_an_unreachable_crm_is_unavailable() -> None:
    crm = HttpCRM(CRMSettings(provider="http", base_url="http://127.0.0.1:1", timeout_s=0.5), environ={})
    with pytest.raises(CRMUnavailable):
        await crm.order("10234")


def test_http_crm_needs_a_base_url() -> None:
    with pytest.raises(ValueError, match=r"crm\.base_url"):
        HttpCRM(CRMSettings(provider="http"))


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("My order 10234 hasn't arrived", ["10234"]),
        ("where is order #A-5521?", ["A-5521"]),
        ("Order no. 12345 and order 12346", ["12345", "12346"]),
        ("Заказ №10234 не пришёл", ["10234"]),
        ("номер заказа: 77123", ["77123"]),
        ("мой заказ 55512 где?", ["55512"]),
        ("It's 10231", ["10231"]),
        ("I paid 1500 rubles for 2 items", []),
        ("call me at +79991234567", []),
        ("Where is my order?", []),
        ("Где мой заказ?", []),
    ],
)
def test_order_numbers_are_recognised_in_russian_and_english(text: str, numbers: list[str]) -> None:
    assert find_order_numbers(text) == numbers
