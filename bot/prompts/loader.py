"""Prompt files under `prompts/`, validated on load and hot-reloaded on change.

Every text file (`texts.yaml`, `agent.yaml`, ...) has one entry per prompt with `variables` and one
key per language; `compensation.yaml` is the compensation policy; `escalation.yaml` and `off_topic.yaml`
are example messages that triage matches by meaning (bot.brain.triage.examples). `PromptStore` keeps the last good
version of each file: a broken edit is logged, kept out of use and reported to the hooks registered
with `on_error` (the Slack connector shows it to operators); fixing the file clears it (`on_reload`).

Reloading swaps a `Texts` object's entries in place, so the desk and the operator actions, which
were handed that object once, see the new wording on their next message without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from bot.brain.language import LANGUAGES
from bot.brain.llm.compensation import CompensationPolicy, load_policy
from bot.brain.triage.examples import Escalations, ExampleSet, load_escalations, load_off_topic
from bot.brain.triage.smalltalk import SmallTalk
from bot.hooks import Hook, notify
from bot.prompts.texts import PromptError, Texts, load_texts

log = logging.getLogger(__name__)

TEXTS, AGENT, COMPENSATION, JUDGE = "texts.yaml", "agent.yaml", "compensation.yaml", "judge.yaml"
ESCALATION, OFF_TOPIC = "escalation.yaml", "off_topic.yaml"
KNOWN_FILES = (TEXTS, AGENT, COMPENSATION, JUDGE, ESCALATION, OFF_TOPIC)
# What the desk and the connectors render from texts.yaml, with the variables they pass.
TEXTS_PROMPTS: dict[str, set[str]] = {
    "handoff": set(),
    "not_text": {"kind"},
    "handoff_offline": {"time", "day", "zone", "utc_offset"},
    "offline_today": set(),
    "offline_tomorrow": set(),
    "offline_weekdays": set(),
    "operator_joined": {"operator"},
    "operator_correction": {"text"},
    "resolved": set(),
    "returned_to_bot": set(),
    "greeting": {"name"},
    "help": set(),
    "rate_limited": set(),
    "unsupported": {"kind"},
    "button_helped": set(),
    "button_human": set(),
    "csat_question": set(),
    "feedback_thanks": set(),
    "csat_thanks": set(),
    "human_requested": set(),
    "stale_button": set(),
    **{talk.text_name: set() for talk in SmallTalk},
}
# What the code renders from agent.yaml, with the variables it passes: a file that lacks one is refused.
AGENT_PROMPTS: dict[str, set[str]] = {
    "persona": {"company"},
    "tone": set(),
    "rules": set(),
    "analysis": {"topics"},
    "fallback": set(),
}
# What bot.orders renders from texts.yaml for both brains (order status, compensation), with its variables.
ORDER_TEXTS: dict[str, set[str]] = {
    "ask_order_number": set(),
    "order_processing": {"order_id"},
    "order_in_transit": {"order_id"},
    "order_delivered": {"order_id", "date"},
    "order_lost": {"order_id"},
    "order_cancelled": {"order_id"},
    "order_expected": {"date"},
    "order_late": {"days", "date"},
    "order_tracking": {"url"},
    "order_unknown": {"order_id"},
    "crm_unavailable": {"order_id"},
    "order_handoff": set(),
    "compensation_offer": {"order_id", "days_late", "percent", "code", "valid_days"},
    "compensation_lost": {"order_id", "percent", "code", "valid_days"},
}
# What bot.brain.llm.judge renders from judge.yaml (the LLM's scoring of operator replies).
JUDGE_PROMPTS: dict[str, set[str]] = {"instructions": {"sentiment"}, "review": {"question", "reply"}}
_T = TypeVar("_T")


def check_prompts(folder: Path) -> list[str]:
    """Every problem in the prompt folder (file, prompt and reason each); empty means all good."""
    problems = []
    for name in KNOWN_FILES:
        try:
            _load(folder / name)
        except PromptError as exc:
            problems.append(str(exc))
    for path in sorted(folder.glob("*.yaml")):
        if path.name not in KNOWN_FILES:
            try:
                load_texts(path, LANGUAGES)
            except PromptError as exc:
                problems.append(str(exc))
    return problems


Loaded = Texts | CompensationPolicy | ExampleSet


def _load(path: Path) -> Loaded:
    if path.name == COMPENSATION:
        return load_policy(path)
    if path.name == ESCALATION:
        return load_escalations(path, LANGUAGES)
    if path.name == OFF_TOPIC:
        return load_off_topic(path, LANGUAGES)
    texts = load_texts(path, LANGUAGES)
    required = {TEXTS: TEXTS_PROMPTS | ORDER_TEXTS, AGENT: AGENT_PROMPTS, JUDGE: JUDGE_PROMPTS}.get(path.name)
    if required:
        _require(path, texts, required)
    return texts


def _require(path: Path, texts: Texts, required: dict[str, set[str]]) -> None:
    for name, variables in required.items():
        if name not in texts.entries:
            raise PromptError(f"{path}: prompt {name!r} is missing")
        for lang, template in texts.entries[name].items():
            try:
                template.format(**dict.fromkeys(variables, ""))
            except (KeyError, IndexError, ValueError) as exc:
                raise PromptError(f"{path}: prompt {name!r} ({lang}): unknown variable {exc}") from None


@dataclass
class _Loaded:
    value: Loaded
    mtime: tuple[int, int]
    error: str = ""


@dataclass
class PromptStore:
    """The live prompt files of one deployment; `refresh()` picks up edits, at most every `interval_s`."""

    folder: Path
    interval_s: float = 1.0
    _files: dict[str, _Loaded] = field(default_factory=dict)
    _error_hooks: list[Hook] = field(default_factory=list)
    _reload_hooks: list[Hook] = field(default_factory=list)
    _checked: float = 0.0

    @classmethod
    def open(cls, folder: Path, interval_s: float = 1.0, agent: bool = True) -> PromptStore:
        """Load the files; a broken file at start-up is an error (there is no last good version yet)."""
        store = cls(folder, interval_s)
        for name in (TEXTS, COMPENSATION, ESCALATION, OFF_TOPIC):
            store._add(name)
        if agent:
            store.load_agent()
        return store

    def load_agent(self) -> None:
        """Load the LLM agent's file too (agent.yaml); PromptError when it is broken."""
        if AGENT not in self._files:
            self._add(AGENT)

    def load_judge(self) -> None:
        """Load the reply-quality judge's file (judge.yaml); PromptError when it is broken."""
        if JUDGE not in self._files:
            self._add(JUDGE)

    def _add(self, name: str) -> None:
        path = self.folder / name
        self._files[name] = _Loaded(_load(path), _mtime(path))
        self._checked = time.monotonic()

    # -- what the rest of the code reads ------------------------------------------------------------

    @property
    def texts(self) -> Texts:
        return self._get(TEXTS, Texts)

    @property
    def agent(self) -> Texts:
        return self._get(AGENT, Texts)

    @property
    def judge(self) -> Texts:
        return self._get(JUDGE, Texts)

    @property
    def escalations(self) -> Escalations:
        return self._get(ESCALATION, Escalations)

    @property
    def off_topic(self) -> ExampleSet:
        return self._get(OFF_TOPIC, ExampleSet)

    @property
    def compensation(self) -> CompensationPolicy:
        return self._get(COMPENSATION, CompensationPolicy)

    def errors(self) -> dict[str, str]:
        """The files whose last edit was refused, with the reason (what operators are shown)."""
        return {name: f.error for name, f in self._files.items() if f.error}

    def on_error(self, hook: Hook) -> None:
        """Call `hook(message)` when an edit is refused (message names file, prompt and reason)."""
        self._error_hooks.append(hook)

    def on_reload(self, hook: Hook) -> None:
        """Call `hook(file name)` when an edited file was taken into use."""
        self._reload_hooks.append(hook)

    # -- reloading ----------------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Reload files changed on disk; cheap (a stat per file) and rate-limited by `interval_s`."""
        now = time.monotonic()
        if not force and now - self._checked < self.interval_s:
            return
        self._checked = now
        for name, loaded in self._files.items():
            path = self.folder / name
            mtime = _mtime(path)
            if mtime == loaded.mtime:
                continue
            loaded.mtime = mtime
            try:
                fresh = _load(path)
            except PromptError as exc:
                loaded.error = str(exc)
                log.error("prompts: edit refused, keeping the last good version: %s", exc)
                notify(self._error_hooks, loaded.error)
                continue
            if isinstance(loaded.value, Texts) and isinstance(fresh, Texts):
                entries = loaded.value.entries
                entries.clear()  # the same object everyone holds: no await between clear and update
                entries.update(fresh.entries)
            else:
                loaded.value = fresh
            loaded.error = ""
            log.info("prompts: reloaded %s", path)
            notify(self._reload_hooks, name)

    async def watch(self) -> None:
        """Poll for edits until cancelled (for deployments where no message triggers `refresh`)."""
        while True:
            self.refresh(force=True)
            await asyncio.sleep(self.interval_s)

    def _get(self, name: str, kind: type[_T]) -> _T:
        self.refresh()
        value = self._files[name].value
        assert isinstance(value, kind)
        return value


def _mtime(path: Path) -> tuple[int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)
