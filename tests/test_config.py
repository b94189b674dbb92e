"""config.yaml as an admin edits it: substitution, overrides, file selection, and the errors they see."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main as cli_main
from bot.config import ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **env: str) -> Settings:
    return load_settings(write(tmp_path / "config.yaml", text), environ=env)


def error(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, **env)
    return str(caught.value)


# -- the file ---------------------------------------------------------------------------------------


def test_repository_config_loads_with_nothing_enabled() -> None:
    settings = load_settings(REPO / "config.yaml", environ={})
    assert not settings.telegram.enabled and not settings.slack.enabled
    assert settings.knowledge.path == REPO / "knowledge"
    assert settings.prompts.path == REPO / "prompts"
    assert settings.embeddings.provider == "local"


def test_values_from_the_file_are_used(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
server:
  port: 9090
automation:
  min_confidence: 0.7
  human_only_topics: [refunds, legal]
slack:
  show_operator_name: true
""",
    )
    assert settings.server.port == 9090
    assert settings.automation.min_confidence == 0.7
    assert settings.automation.human_only_topics == ["refunds", "legal"]
    assert settings.slack.show_operator_name is True
    assert settings.telegram.mode == "polling"  # untouched keys keep their defaults


def test_empty_file_and_empty_section_mean_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "").server.port == 8080
    settings = load(tmp_path, "slack:\n  # bot_token: xoxb-...\nserver:\n  port: 81\n")
    assert settings.slack.bot_token == "" and settings.server.port == 81


def test_numeric_secret_in_the_file_is_text(tmp_path: Path) -> None:
    settings = load(tmp_path, "telegram:\n  webhook_secret: 123456\n")
    assert settings.telegram.webhook_secret == "123456"


# -- ${VAR} -----------------------------------------------------------------------------------------


def test_variables_are_substituted(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        """
telegram:
  token: ${TG_TOKEN}
  api_base: ${TG_API:-https://tg.example/api}
  webhook_url: https://${HOST}/telegram/webhook
server:
  port: ${PORT:-8081}
""",
        TG_TOKEN="123:real-token",
        HOST="desk.example.com",
    )
    assert settings.telegram.token == "123:real-token"
    assert settings.telegram.api_base == "https://tg.example/api"
    assert settings.telegram.webhook_url == "https://desk.example.com/telegram/webhook"
    assert settings.server.port == 8081


def test_a_default_applies_to_a_set_but_empty_variable_as_in_the_shell(tmp_path: Path) -> None:
    settings = load(tmp_path, "telegram:\n  api_base: ${TG_API:-https://tg.example}\n", TG_API="")
    assert settings.telegram.api_base == "https://tg.example"


def test_empty_default_leaves_the_channel_off(tmp_path: Path) -> None:
    settings = load(tmp_path, "telegram:\n  token: ${TG_TOKEN:-}\n")
    assert settings.telegram.token == "" and not settings.telegram.enabled


def test_variable_values_are_not_parsed_as_yaml(tmp_path: Path) -> None:
    settings = load(tmp_path, "slack:\n  signing_secret: ${SECRET}\n", SECRET="a: b # c")
    assert settings.slack.signing_secret == "a: b # c"


def test_variables_in_comments_are_ignored(tmp_path: Path) -> None:
    settings = load(tmp_path, "# token: ${NOT_SET}\nserver:\n  port: 81  # ${ALSO_NOT_SET}\n")
    assert settings.server.port == 81


def test_unset_variable_is_a_clear_error(tmp_path: Path) -> None:
    message = error(tmp_path, "telegram:\n  token: ${TELEGRAM_TOKEN}\n")
    assert "TELEGRAM_TOKEN" in message and "not set" in message
    assert "config.yaml" in message


# -- RELAYDESK__SECTION__KEY ------------------------------------------------------------------------


def test_overrides_read_numbers_booleans_and_lists(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "server:\n  port: 8080\n",
        RELAYDESK__SERVER__PORT="9000",
        RELAYDESK__AUTOMATION__MIN_CONFIDENCE="0.65",
        RELAYDESK__SLACK__SHOW_OPERATOR_NAME="true",
        RELAYDESK__AUTOMATION__HUMAN_ONLY_TOPICS="[refunds, legal]",
    )
    assert settings.server.port == 9000
    assert settings.automation.min_confidence == 0.65
    assert settings.slack.show_operator_name is True
    assert settings.automation.human_only_topics == ["refunds", "legal"]


def test_list_override_also_takes_commas_and_empty_means_none(tmp_path: Path) -> None:
    text = "automation:\n  human_only_topics: [legal]\n"
    topics = load(tmp_path, text, RELAYDESK__AUTOMATION__HUMAN_ONLY_TOPICS="refunds, legal")
    assert topics.automation.human_only_topics == ["refunds", "legal"]
    none = load(tmp_path, text, RELAYDESK__AUTOMATION__HUMAN_ONLY_TOPICS="")
    assert none.automation.human_only_topics == []


def test_override_wins_over_the_file_and_variables(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "telegram:\n  token: ${TG}\n",
        TG="from-variable",
        RELAYDESK__TELEGRAM__TOKEN="123:from-override",
    )
    assert settings.telegram.token == "123:from-override"


def test_empty_override_turns_a_channel_or_mode_off(tmp_path: Path) -> None:
    text = "slack:\n  bot_token: xoxb-1-real\n  app_token: xapp-1-real\n  signing_secret: s3cr3t-value\n"
    assert load(tmp_path, text).slack.app_token == "xapp-1-real"
    http_mode = load(tmp_path, text, RELAYDESK__SLACK__APP_TOKEN="")
    assert http_mode.slack.app_token == "" and http_mode.slack.enabled
    off = load(tmp_path, text, RELAYDESK__SLACK__BOT_TOKEN="")
    assert not off.slack.enabled


@pytest.mark.parametrize("value", ["123456", "off", "no", "null", "a #b", "0x1F", "12:30"])
def test_text_overrides_are_kept_exactly(tmp_path: Path, value: str) -> None:
    """A secret or channel name is never reinterpreted as a number, boolean, null or comment."""
    settings = load(tmp_path, "", RELAYDESK__TELEGRAM__WEBHOOK_SECRET=value, RELAYDESK__SLACK__QUEUE_CHANNEL=value)
    assert settings.telegram.webhook_secret == value
    assert settings.slack.queue_channel == value


def test_override_into_a_mapping_setting(tmp_path: Path) -> None:
    settings = load(tmp_path, "", RELAYDESK__SLACK__ROUTES__REFUNDS="C0REFUNDS")
    assert settings.slack.routes == {"refunds": "C0REFUNDS"}


def test_override_of_an_unknown_key_names_the_variable(tmp_path: Path) -> None:
    message = error(tmp_path, "", RELAYDESK__TELEGRAM__TOKN="x")
    assert "telegram.tokn" in message and "RELAYDESK__TELEGRAM__TOKN" in message and "unknown key" in message


def test_override_with_a_bad_value_names_key_value_and_expectation(tmp_path: Path) -> None:
    message = error(tmp_path, "", RELAYDESK__SERVER__PORT="eighty")
    assert "server.port" in message and "RELAYDESK__SERVER__PORT" in message
    assert "'eighty'" in message and "integer" in message


def test_override_without_a_key_is_refused(tmp_path: Path) -> None:
    assert "RELAYDESK__SECTION__KEY" in error(tmp_path, "", RELAYDESK__TELEGRAM="x")


# -- which file -------------------------------------------------------------------------------------


def test_explicit_path_beats_relaydesk_config(tmp_path: Path) -> None:
    chosen = write(tmp_path / "a.yaml", "server:\n  port: 1111\n")
    other = write(tmp_path / "b.yaml", "server:\n  port: 2222\n")
    assert load_settings(chosen, environ={"RELAYDESK_CONFIG": str(other)}).server.port == 1111
    assert load_settings(None, environ={"RELAYDESK_CONFIG": str(other)}).server.port == 2222


def test_default_is_config_yaml_in_the_working_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "config.yaml", "server:\n  port: 3333\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).server.port == 3333
    assert load_settings(environ={"RELAYDESK_CONFIG": ""}).server.port == 3333  # empty = not set


def test_no_default_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).server.port == 8080


def test_a_chosen_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_settings(missing, environ={})
    with pytest.raises(ConfigError, match=r"nope\.yaml: config file not found"):
        load_settings(None, environ={"RELAYDESK_CONFIG": str(missing)})


def test_a_folder_instead_of_a_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path, environ={})


def test_cli_reports_a_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing.yaml"
    assert cli_main(["--config", str(missing), "kb", "ingest"]) == 2
    err = capsys.readouterr().err
    assert "missing.yaml" in err and "not found" in err and "Traceback" not in err


# -- mistakes in the file ---------------------------------------------------------------------------


def test_bad_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    message = error(tmp_path, "server:\n  port: 80\n   host: x\n  - broken\n")
    assert "config.yaml" in message and "not valid YAML" in message and "line" in message


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_bytes("server:\n  host: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"config\.yaml"):
        load_settings(tmp_path / "config.yaml", environ={})


@pytest.mark.parametrize("text", ["- telegram\n- slack\n", "just words\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    assert "expected a mapping of sections" in error(tmp_path, text)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    message = error(tmp_path, "telegram:\n  tokn: abc\n")
    assert "telegram.tokn: unknown key" in message


def test_unknown_section_is_named(tmp_path: Path) -> None:
    assert "telegramm: unknown key" in error(tmp_path, "telegramm:\n  token: abc\n")


@pytest.mark.parametrize(
    ("text", "key", "value", "expected"),
    [
        ("server:\n  port: http\n", "server.port", "'http'", "integer"),
        ("server:\n  port: 70000\n", "server.port", "70000", "less than or equal to 65535"),
        ("telegram:\n  mode: hook\n", "telegram.mode", "'hook'", "'polling' or 'webhook'"),
        ("automation:\n  min_confidence: 1.5\n", "automation.min_confidence", "1.5", "less than or equal to 1"),
        ("automation:\n  human_only_topics: refunds\n", "automation.human_only_topics", "'refunds'", "list"),
        ("telegram: yes\n", "telegram", "True", "dictionary"),
    ],
)
def test_wrong_type_names_key_value_and_expectation(
    tmp_path: Path, text: str, key: str, value: str, expected: str
) -> None:
    message = error(tmp_path, text)
    line = next(line for line in message.splitlines() if line.strip().startswith(key + ":"))
    assert f"got {value}" in line and "expected" in line and expected in line


def test_every_mistake_is_listed_at_once(tmp_path: Path) -> None:
    message = error(tmp_path, "server:\n  port: x\ntelegram:\n  mode: y\n")
    assert "server.port" in message and "telegram.mode" in message


# -- placeholder secrets ----------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["changeme", "your-token", "YOUR_BOT_TOKEN", "<token>", "xxx"])
def test_placeholder_token_of_an_enabled_channel_is_refused(tmp_path: Path, placeholder: str) -> None:
    message = error(tmp_path, f"telegram:\n  token: '{placeholder}'\n")
    assert "telegram.token" in message and placeholder in message and "RELAYDESK__TELEGRAM__TOKEN" in message


def test_placeholder_secret_beside_a_real_token_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "slack:\n  bot_token: xoxb-1-real\n  signing_secret: changeme\n")
    assert "slack.signing_secret" in message and "changeme" in message


def test_placeholders_of_a_disabled_channel_are_fine(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "telegram:\n  token: ''\n  webhook_secret: changeme\n"
        "slack:\n  bot_token: ''\n  signing_secret: your-secret\n"
        "llm:\n  provider: none\n  api_key: changeme\n",
    )
    assert not settings.telegram.enabled and not settings.slack.enabled


def test_placeholder_in_the_environment_is_refused_too(tmp_path: Path) -> None:
    message = error(tmp_path, "telegram:\n  token: ${TG}\n", TG="changeme")
    assert "telegram.token" in message


def test_placeholder_api_key_refused_when_the_provider_is_used(tmp_path: Path) -> None:
    assert "llm.api_key" in error(tmp_path, "llm:\n  provider: openai\n  api_key: your-key\n")
    assert "embeddings.api_key" in error(tmp_path, "embeddings:\n  provider: openai\n  api_key: changeme\n")
    # A local OpenAI-compatible server needs no key at all.
    assert load(tmp_path, "llm:\n  provider: openai\n  base_url: http://127.0.0.1:11434/v1\n").llm.api_key == ""


def test_real_looking_secrets_are_accepted(tmp_path: Path) -> None:
    settings = load(tmp_path, "telegram:\n  token: '123456:AAH-your-real-token'\n")
    assert settings.telegram.enabled


# -- paths ------------------------------------------------------------------------------------------


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "deploy"
    file = write(
        folder / "config.yaml",
        "knowledge:\n  path: kb\n  store: state/chroma\nprompts:\n  path: ../shared/prompts\n"
        "database:\n  url: sqlite+aiosqlite:///state/desk.db\n",
    )
    monkeypatch.chdir(tmp_path)  # somewhere else
    settings = load_settings(Path("deploy/config.yaml"), environ={})
    assert settings.knowledge.path == file.parent.resolve() / "kb"
    assert settings.knowledge.store == file.parent.resolve() / "state/chroma"
    assert settings.prompts.path.resolve() == (tmp_path / "shared/prompts").resolve()
    assert settings.database.url == f"sqlite+aiosqlite:///{file.parent.resolve()}/state/desk.db"


def test_absolute_paths_and_other_databases_are_kept(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "knowledge:\n  path: /srv/kb\ndatabase:\n  url: postgresql+asyncpg://desk@db/desk\n",
    )
    assert settings.knowledge.path == Path("/srv/kb")
    assert settings.database.url == "postgresql+asyncpg://desk@db/desk"
    memory = load(tmp_path, "database:\n  url: 'sqlite+aiosqlite:///:memory:'\n")
    assert memory.database.url == "sqlite+aiosqlite:///:memory:"


def test_home_folder_in_a_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load(tmp_path, "knowledge:\n  path: ~/kb\n")
    assert settings.knowledge.path == tmp_path / "home" / "kb"
