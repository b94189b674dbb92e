"""Callbacks that tell someone what happened (e.g. the Slack connector posts a refused edit to operators)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)

Hook = Callable[[str], object]  # sync, or async (then it runs in the background)
_background: set[asyncio.Future[object]] = set()


def notify(hooks: Iterable[Hook], message: str) -> None:
    """Call every hook with `message`; a failing hook is logged and never stops the caller."""
    for hook in hooks:
        try:
            result = hook(message)
            if inspect.isawaitable(result):
                _background.add(task := asyncio.ensure_future(result))
                task.add_done_callback(_background.discard)
        except Exception:
            log.exception("a hook failed")


class RepeatedFailure:
    """A failure a poll meets again and again, said once (logged with its traceback, told to the hooks)
    until it clears."""

    def __init__(self, logger: logging.Logger, subject: str, hooks: list[Hook]) -> None:
        self._log = logger
        self._subject = subject  # what the log line starts with
        self._hooks = hooks  # the owner's list: hooks added later are told too
        self.message: str | None = None  # the failure being said, None once it cleared

    def report(self, message: str) -> None:
        if message != self.message:
            self._log.exception("%s: %s", self._subject, message)
            notify(self._hooks, message)
        self.message = message

    def clear(self) -> None:
        self.message = None
