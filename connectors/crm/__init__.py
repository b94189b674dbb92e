"""CRM connectors: `demo` (embedded SQLite with sample orders, the default) and `http` (a JSON API)."""

from __future__ import annotations

from bot.config import CRMSettings
from bot.ports import OrderLookup
from connectors.crm.demo import DemoCRM
from connectors.crm.http import HttpCRM


def create_crm(settings: CRMSettings) -> OrderLookup:
    if settings.provider == "http":
        return HttpCRM(settings)
    return DemoCRM(settings.demo_path or ":memory:")


__all__ = ["DemoCRM", "HttpCRM", "create_crm"]
