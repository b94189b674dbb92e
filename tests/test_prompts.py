"""Prompt files: validated on load (file, prompt and reason named), hot-reloaded without a restart,
a broken edit kept out of use and reported, and `relaydesk prompts check` for CI."""

from __future__ import annotations

import asyncio
import io
import shutil
from pathlib import Path

import pytest

from bot.app import build_app
from bot.cli import main
from bot.domain.types import Inbound
from bot.prompts.loader import PromptStore, check_prompts
from bot.prompts.texts import PromptError
from connectors.console import ConsoleChat
from tests.conftest import REPO, Recorder, make_settings


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "prompts"
    shutil.copytree(REPO / "prompts", target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_shipped_prompts_are_valid() -> None:
    assert check_prompts(REPO / "prompts") == []


@pytest.mark.parametrize(
    ("file", "old", "new", "expected"),
    [
        (
            "texts.yaml",
            "crm_unavailable:\n  variables: [order_id]",
            "crm_unavailable:\n  variables: []",
            "texts.yaml: text 'crm_unavailable' (en): unknown variable {order_id}",
        ),
        ("texts.yaml", '  ru: "Подскажите', '  de: "Подскажите', "text 'ask_order_number': missing language ru"),
        ("texts.yaml", "order_late:\n", "order_lateness:\n", "texts.yaml: prompt 'order_late' is missing"),
        ("agent.yaml", "fallback:\n", "fallback_old:\n", "agent.yaml: prompt 'fallback' is missing"),
        ("agent.yaml", "tone:\n  variables: []", "tone:\n  variables: [] [", "agent.yaml: not valid YAML"),
        (
            "texts.yaml",
            "{operator} from",
            "{operatr} from",
            "texts.yaml: text 'operator_joined' (en): unknown variable {operatr}",
        ),
        ("texts.yaml", "\nresolved:\n", "\nresolved_old:\n", "texts.yaml: prompt 'resolved' is missing"),
        ("compensation.yaml", "max_percent: 20", "max_percent: 12", "rules.0.percent: 20 is above max_percent 12"),
        ("escalation.yaml", "priority: urgent", "priority: asap", "topic 'account_takeover': priority 'asap'"),
        ("escalation.yaml", "  label: Legal threat\n", "  labl: Legal threat\n", "topic 'legal_threat': unknown key"),
        ("escalation.yaml", "    ru:\n      - Я подам", "    de:\n      - Я подам", "topic 'legal_threat': missing"),
        ("off_topic.yaml", "sport:\n  en:", "sport:\n  en: []\n  xx:", "'sport' (en): expected a non-empty list"),
        ("off_topic.yaml", "weather:\n", "weather: [\n", "off_topic.yaml: not valid YAML"),
        (
            "texts.yaml",
            "variables: [order_id, percent, code, valid_days]\n  en: \"We're very sorry",
            "variables: [order_id, percent, code, valid_days, days_late]\n  en: \"{days_late} days: We're very sorry",
            "prompt 'compensation_lost' (en): unknown variable 'days_late'",
        ),
    ],
)
def test_a_broken_file_names_the_file_the_prompt_and_the_reason(
    folder: Path, file: str, old: str, new: str, expected: str
) -> None:
    edit(folder / file, old, new)
    problems = check_prompts(folder)
    assert len(problems) == 1 and expected in problems[0] and str(folder / file) in problems[0]
    with pytest.raises(PromptError):
        PromptStore.open(folder)


def test_an_edit_is_picked_up_and_a_broken_one_keeps_the_last_good_version(folder: Path) -> None:
    store = PromptStore.open(folder, interval_s=0)
    errors: list[str] = []
    reloaded: list[str] = []
    store.on_error(errors.append)
    store.on_reload(reloaded.append)
    texts = store.texts  # the object the desk holds
    edit(folder / "texts.yaml", "a person will reply here shortly", "a human will write back soon")
    store.refresh(force=True)
    assert "a human will write back soon" in texts.render("handoff", "en")
    assert reloaded == ["texts.yaml"] and store.errors() == {}

    edit(folder / "texts.yaml", "a human will write back soon.", "{who} will write back soon.")
    store.refresh(force=True)
    assert "a human will write back soon" in texts.render("handoff", "en")  # the last good version
    assert len(errors) == 1 and "texts.yaml: text 'handoff' (en): unknown variable {who}" in errors[0]
    assert "texts.yaml" in store.errors()

    edit(folder / "texts.yaml", "{who} will", "someone will")
    store.refresh(force=True)
    assert "someone will write back soon" in texts.render("handoff", "en") and store.errors() == {}


def test_agent_prompts_and_the_policy_reload_too(folder: Path) -> None:
    store = PromptStore.open(folder, interval_s=0)
    edit(folder / "agent.yaml", "Tone: warm, brief", "Tone: formal, brief")
    edit(folder / "compensation.yaml", "percent: 10", "percent: 5")
    store.refresh(force=True)
    assert store.agent.render("tone", "en").startswith("Tone: formal")
    assert [r.percent for r in store.compensation.rules] == [20, 15, 5]
    edit(folder / "compensation.yaml", "max_percent: 20", "max_percent: lots")
    store.refresh(force=True)
    assert store.compensation.max_percent == 20 and "compensation.yaml" in store.errors()


def test_reloads_are_rate_limited_to_a_stat_per_interval(folder: Path) -> None:
    store = PromptStore.open(folder, interval_s=3600)
    edit(folder / "agent.yaml", "Tone: warm, brief", "Tone: formal, brief")
    assert store.agent.render("tone", "en").startswith("Tone: warm")  # not checked again yet
    store.refresh(force=True)
    assert store.agent.render("tone", "en").startswith("Tone: formal")


async def test_an_async_error_hook_runs(folder: Path) -> None:
    store = PromptStore.open(folder, interval_s=0)
    seen: list[str] = []

    async def post_to_slack(message: str) -> None:
        seen.append(message)

    store.on_error(post_to_slack)
    edit(folder / "texts.yaml", "handoff:\n", "handoff: [\n")
    store.refresh(force=True)
    import asyncio

    await asyncio.sleep(0)
    assert len(seen) == 1 and "not valid YAML" in seen[0]


async def test_the_running_desk_speaks_the_edited_text_without_a_restart(tmp_path: Path, folder: Path) -> None:
    settings = make_settings(tmp_path)
    settings.prompts.path = folder
    app = await build_app(settings)
    assert app.prompts is not None
    app.prompts.interval_s = 0.01
    app.watch()
    try:
        customers = Recorder()
        app.outbox.register("test", customers)
        edit(folder / "texts.yaml", "a person will reply here shortly", "a colleague will answer in a moment")
        import asyncio

        await asyncio.sleep(0.1)
        await app.desk.receive(Inbound("test", "p1", "p1-1", "I want to talk to a person", name="Ann"))
        await app.outbox.deliver_due()
        assert "a colleague will answer in a moment" in customers.texts()[-1]
    finally:
        await app.close()


async def test_a_deleted_text_the_desk_needs_is_refused_and_the_chat_keeps_the_last_good_one(
    tmp_path: Path, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path)
    settings.prompts.path = folder
    app = await build_app(settings)
    try:
        assert app.prompts is not None
        errors: list[str] = []
        app.prompts.on_error(errors.append)
        out = io.StringIO()
        chat = ConsoleChat(app, out=out, operator="olga")
        await chat.handle("I want to talk to a person")
        texts = folder / "texts.yaml"
        texts.write_text(texts.read_text(encoding="utf-8").replace("\nresolved:\n", "\nresolved_old:\n"), "utf-8")
        app.prompts.refresh(force=True)
        await chat.handle("!resolve")
    finally:
        await app.close()
    assert "bot> Your request has been resolved." in out.getvalue() and "[ok] resolved" in out.getvalue()
    assert len(errors) == 1 and "texts.yaml: prompt 'resolved' is missing" in errors[0]
    config = tmp_path / "config.yaml"
    config.write_text(f"prompts:\n  path: {folder}\n", encoding="utf-8")
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["--config", str(config), "prompts", "check"]) == 1
    assert "texts.yaml: prompt 'resolved' is missing" in capsys.readouterr().out


def test_prompts_check_command(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("prompts:\n  path: prompts\n", encoding="utf-8")
    assert main(["--config", str(config), "prompts", "check"]) == 0
    assert "prompts OK" in capsys.readouterr().out
    edit(folder / "agent.yaml", "{company}.", "{company} and {brand}.")
    assert main(["--config", str(config), "prompts", "check"]) == 1
    out = capsys.readouterr().out
    assert "agent.yaml: text 'persona' (en): unknown variable {brand}" in out
    assert main(["--config", str(config), "prompts", "check", str(REPO / "prompts")]) == 0


def test_an_edited_escalation_file_is_picked_up_and_a_broken_one_keeps_the_last_good(folder: Path) -> None:
    store = PromptStore.open(folder, interval_s=0)
    first = store.escalations
    path = folder / "escalation.yaml"
    path.write_text(
        path.read_text(encoding="utf-8") + "\nrefund_abuse:\n  label: Refund abuse\n  priority: low\n"
        "  examples:\n    en: [I want a refund for nothing]\n    ru: [Верните деньги просто так]\n",
        encoding="utf-8",
    )
    assert "refund_abuse" in store.escalations.topics and store.escalations is not first
    good = store.escalations
    path.write_text("refund_abuse: [", encoding="utf-8")
    assert store.escalations is good and "escalation.yaml" in store.errors()
