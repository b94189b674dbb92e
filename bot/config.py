"""One validated settings object for a deployment, read from `config.yaml`.

`${VAR}` is replaced from the environment, any key can be overridden by
`RELAYDESK__SECTION__KEY`, and every mistake is reported as `key: got …; expected …`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "RELAYDESK__"
DEFAULT_CONFIG = "config.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PLACEHOLDER = re.compile(r"^(changeme|change-me|replace-?me|your[-_].*|xxx+|todo|<.*>|\.\.\.)$", re.I)


class ConfigError(Exception):
    """A configuration problem a person can fix; the message names the key and the value."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TelegramSettings(Section):
    token: str = ""
    api_base: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_secret: str = ""
    polling_timeout_s: int = Field(30, ge=0, le=50)
    request_timeout_s: float = Field(30.0, gt=0)
    rate_limit_messages: int = Field(20, ge=0)  # per customer per window; 0 = no limit
    rate_limit_window_s: float = Field(60.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.token)


class SlackSettings(Section):
    bot_token: str = ""
    app_token: str = ""
    signing_secret: str = ""
    api_base: str = "https://slack.com/api/"
    queue_channel: str = ""
    note_prefix: str = "//"
    routes: dict[str, str] = Field(default_factory=dict)  # topic -> channel; others go to queue_channel
    operator_group: str = ""  # a user group (S…) whose members may act besides the queue channel's members
    show_operator_name: bool = False  # tell the customer "<name> from the support team has joined"
    edit_window_s: float = Field(300.0, ge=0)  # an operator's edit within this window goes out as a correction

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)


class LLMSettings(Section):
    provider: Literal["none", "openai"] = "none"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(20.0, gt=0)
    max_retries: int = Field(1, ge=0)


class EmbeddingSettings(Section):
    provider: Literal["local", "openai", "hashing"] = "local"
    model: str = "multilingual-e5-small"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    dimensions: int = Field(384, ge=8)


class KnowledgeSettings(Section):
    path: Path = Path("knowledge")
    store: Path = Path("data/chroma")
    chroma_url: str = ""
    chunk_chars: int = Field(1200, ge=200)
    top_k: int = Field(30, ge=1, le=200)


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///data/relaydesk.db"


class CRMSettings(Section):
    provider: Literal["demo", "http"] = "demo"
    base_url: str = ""


class AutomationSettings(Section):
    mode: Literal["auto", "suggest"] = "auto"
    min_confidence: float = Field(0.5, ge=0, le=1)
    min_margin: float = Field(0.0, ge=0, le=1)
    negative_sentiment: float = Field(-0.6, ge=-1, le=0)
    human_only_topics: list[str] = Field(default_factory=list)
    repeat_limit: int = Field(1, ge=0)


class PromptSettings(Section):
    path: Path = Path("prompts")


class OutboxSettings(Section):
    max_attempts: int = Field(12, ge=1)
    backoff_s: float = Field(1.0, gt=0)
    max_backoff_s: float = Field(300.0, gt=0)


class Settings(Section):
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    embeddings: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    knowledge: KnowledgeSettings = Field(default_factory=KnowledgeSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    crm: CRMSettings = Field(default_factory=CRMSettings)
    automation: AutomationSettings = Field(default_factory=AutomationSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)

    def resolve_paths(self, base: Path) -> Settings:
        """Relative paths in the file are relative to the file, not to the working directory."""
        self.knowledge.path = _under(base, self.knowledge.path)
        self.knowledge.store = _under(base, self.knowledge.store)
        self.prompts.path = _under(base, self.prompts.path)
        prefix = "sqlite+aiosqlite:///"
        url = self.database.url
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            self.database.url = prefix + str(_under(base, Path(url[len(prefix) :])))
        return self


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, substitute, override and validate; raise ConfigError with a precise message."""
    env = dict(os.environ if environ is None else environ)
    file = Path(path or env.get("RELAYDESK_CONFIG") or DEFAULT_CONFIG)
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
            loaded = _substitute(yaml.safe_load(text), env, file)
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections, got {type(loaded).__name__}")
        raw = loaded or {}
    elif path is not None or "RELAYDESK_CONFIG" in env:
        raise ConfigError(f"{file}: config file not found")
    _apply_overrides(raw, env)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file)) from None
    _refuse_placeholders(settings)
    return settings.resolve_paths(file.resolve().parent)


def _substitute(node: Any, env: dict[str, str], file: Path) -> Any:
    """Replace ${VAR} and ${VAR:-default} in string values (after parsing, so comments never count)."""
    if isinstance(node, dict):
        return {key: _substitute(value, env, file) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, env, file) for value in node]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{file}: ${{{name}}} is used but the environment variable {name} is not set")

    return _VAR.sub(replace, node)


def _apply_overrides(raw: dict[str, Any], env: dict[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if len(keys) < 2:
            raise ConfigError(f"{name}: expected RELAYDESK__SECTION__KEY")
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {key} is not a section")
            node = child
        node[keys[-1]] = _scalar(value)


def _scalar(value: str) -> Any:
    """Environment values are read as YAML scalars ("0.7", "true", "[a, b]"); an empty one stays ''."""
    if value == "":
        return ""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _describe(exc: ValidationError, file: Path) -> str:
    lines = [f"{file}: invalid configuration"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
        else:
            lines.append(f"  {key}: got {err.get('input')!r}; expected {err['msg'].lower()}")
    return "\n".join(lines)


def _refuse_placeholders(settings: Settings) -> None:
    checks = {
        "telegram": (
            settings.telegram.enabled,
            {"token": settings.telegram.token, "webhook_secret": settings.telegram.webhook_secret},
        ),
        "slack": (
            settings.slack.enabled,
            {
                "bot_token": settings.slack.bot_token,
                "app_token": settings.slack.app_token,
                "signing_secret": settings.slack.signing_secret,
            },
        ),
        "llm": (settings.llm.provider != "none", {"api_key": settings.llm.api_key}),
    }
    for section, (enabled, secrets) in checks.items():
        for key, value in secrets.items():
            if enabled and _PLACEHOLDER.match(value.strip()):
                raise ConfigError(
                    f"{section}.{key}: got placeholder {value!r}; expected a real secret "
                    f"(set it, e.g. RELAYDESK__{section.upper()}__{key.upper()}, or leave it empty to disable)"
                )
