"""Structured logs: one JSON object per line on stderr. Message texts and names are never logged."""

from __future__ import annotations

import json
import logging
import sys


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


OWN_LOGGERS = ("bot", "connectors")


def own_or_warning(record: logging.LogRecord) -> bool:
    """Libraries speak only from WARNING up: in detail they log request bodies (the Slack and OpenAI clients
    do at DEBUG), with customer texts, names and tokens in them. Our own loggers never log those."""
    return record.levelno >= logging.WARNING or record.name.partition(".")[0] in OWN_LOGGERS


def setup_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(own_or_warning)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
