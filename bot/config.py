"""One validated settings object for a deployment, read from `config.yaml`.

`${VAR}` is replaced from the environment, any key can be overridden by
`RELAYDESK__SECTION__KEY`, and every mistake is reported as `key: got …; expected …`.
"""

from __future__ import annotations

import os
import re
import types
import zoneinfo
from datetime import date
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from bot.prompts.yamlerrors import describe

ENV_PREFIX = "RELAYDESK__"
DEFAULT_CONFIG = "config.yaml"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PASSWORD = re.compile(r"(://[^/:@\s]*:)[^/@\s]*@")  # user:password@ in a URL
DATABASE_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg")  # the async drivers relaydesk ships with
_PLACEHOLDER = re.compile(r"^(changeme|change-me|replace-?me|your[-_].*|xxx+|todo|<.*>|\.\.\.)$", re.I)


class ConfigError(Exception):
    """A configuration problem a person can fix; the message names the key and the value."""


class Section(BaseModel):
    # A secret such as `webhook_secret: 123456` is a string even when YAML reads it as a number.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


class TelegramSettings(Section):
    token: str = ""
    api_base: str = "https://api.telegram.org"
    mode: Literal["polling", "webhook"] = "polling"
    webhook_url: str = ""
    webhook_secret: str = ""
    polling_timeout_s: int = Field(default=30, ge=0, le=50)
    request_timeout_s: float = Field(default=30.0, gt=0)
    rate_limit_messages: int = Field(default=20, ge=0)  # per customer per window; 0 = no limit
    rate_limit_window_s: float = Field(default=60.0, gt=0)

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
    edit_window_s: float = Field(default=300.0, ge=0)  # an operator's edit within this window goes out as a correction

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token)


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)


class LLMSettings(Section):
    provider: Literal["none", "openai"] = "none"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(default=20.0, gt=0)  # per HTTP request to the model
    max_retries: int = Field(default=1, ge=0)
    budget_s: float = Field(default=25.0, gt=0)  # per customer message, analysis + agent; then offline brain
    temperature: float = Field(default=0.0, ge=0, le=2)
    analysis: bool = True  # topic, sentiment, priority from a structured LLM call (else the offline analyzer)
    judge: bool = True  # score operator replies with the LLM (else, and on any failure, the offline scorer)
    history_messages: int = Field(default=8, ge=0)  # recent turns the agent sees; older ones are summarised
    max_tool_calls: int = Field(default=6, ge=1)  # per message, so a confused model can't loop
    company: str = "Northwind Market"  # {company} in prompts/agent.yaml


class EmbeddingSettings(Section):
    # use: an optional extra, see bot/knowledge/embeddings.py
    provider: Literal["local", "openai", "hashing", "use"] = "local"
    model: str = "multilingual-e5-small"
    base_url: str = "https://api.openai.com/v1"
    api_key: str = ""
    dimensions: int = Field(default=384, ge=8)
    timeout_s: float = Field(default=30.0, gt=0)  # provider openai: per request, so an outage fails fast
    max_retries: int = Field(default=1, ge=0)


class KnowledgeSettings(Section):
    path: Path = Path("knowledge")
    store: Path = Path("data/chroma")
    chroma_url: str = ""
    chunk_chars: int = Field(default=1200, ge=200)
    top_k: int = Field(default=30, ge=1, le=200)
    # `relaydesk run` re-ingests edits this often (with chroma_url: takes a new `kb ingest`); 0 = on start only
    reload_s: float = Field(default=10.0, ge=0)


class DatabaseSettings(Section):
    url: str = "sqlite+aiosqlite:///data/relaydesk.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        scheme = value.partition("://")[0]
        if scheme not in DATABASE_SCHEMES:
            expected = " or ".join(f"{s}://…" for s in DATABASE_SCHEMES)
            raise PydanticCustomError("database_url", f"a URL of a supported database: {expected}")
        return value


class CRMSettings(Section):
    provider: Literal["demo", "http"] = "demo"
    base_url: str = ""  # http: GET {base_url}/orders/{id}
    timeout_s: float = Field(default=5.0, gt=0)
    auth_header: str = "Authorization"  # http: sent with the value of the environment variable auth_env
    auth_env: str = "RELAYDESK_CRM_AUTH"  # e.g. RELAYDESK_CRM_AUTH="Bearer s3cr3t"; unset = no header
    fields: dict[str, str] = Field(default_factory=dict)  # ours -> theirs: order_id, status, promised, delivered, ...
    statuses: dict[str, str] = Field(default_factory=dict)  # theirs -> ours (processing, in_transit, delivered, ...)
    demo_path: str = ""  # demo: the SQLite file; empty = in memory, seeded on start


class AutomationSettings(Section):
    mode: Literal["auto", "suggest"] = "auto"
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    min_margin: float = Field(default=0.0, ge=0, le=1)
    # The open-set gate: similarity of a message to the nearest way customers ask the best topic.
    min_similarity: float = Field(default=0.0, ge=0, le=1)
    # An escalation topic matches when its nearest example is at least this similar (prompts/escalation.yaml)
    # and about as near as the nearest question of the knowledge base.
    escalation_similarity: float = Field(default=0.88, ge=0, le=1)
    negative_sentiment: float = Field(default=-0.6, ge=-1, le=0)
    human_only_topics: list[str] = Field(default_factory=list)
    repeat_limit: int = Field(default=1, ge=0)
    # A message is analysed and answered from its first this many characters (stored and shown whole): one
    # customer's huge message must not hold the shared embedding thread (or the LLM budget) for everyone.
    analysis_chars: int = Field(default=1000, ge=50)
    # The pilot cohort (bot/desk/pilot.py): the share of customers, stable per customer, whom the bot may
    # answer directly in mode auto; everyone else gets copilot (an operator sends the bot's draft).
    pilot_percent: float = Field(default=100.0, ge=0, le=100)
    pilot_allowlist: list[str] = Field(default_factory=list)  # chat ids or channel:chat_id, always in the pilot

    @field_validator("pilot_allowlist")
    @classmethod
    def _no_blank_entries(cls, value: list[str]) -> list[str]:
        cleaned = [entry.strip() for entry in value]
        if any(not entry or entry.endswith(":") for entry in cleaned):
            raise PydanticCustomError("allowlist", "a list of chat ids or channel:chat_id, none of them empty")
        return cleaned


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = get_args(Day)  # Monday first, as date.weekday() counts
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$|^24:00$")


class BusinessHoursSettings(Section):
    """When operators work (bot/desk/hours.py). No `open`/`close` means always open."""

    timezone: str = "UTC"
    days: list[Day] = Field(default_factory=lambda: list(DAYS))
    open: str = ""  # "09:00"
    close: str = Field(default="", validate_default=True)  # "18:00"; "24:00" is the end of the day
    holidays: list[date] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return bool(self.open or self.close)

    @field_validator("open", "close", mode="before")
    @classmethod
    def _clock(cls, value: Any) -> Any:
        expected = "a time as HH:MM, e.g. '09:00' (24:00 = end of the day)"
        # YAML 1.1 reads an unquoted 18:00 as the base-60 number 1080: turn it back into the time it was.
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            clock = f"{value // 60:02d}:{value % 60:02d}"
            if not _CLOCK.match(clock):
                raise PydanticCustomError("clock", expected + f"; YAML read {clock} as the number {value}")
            return clock
        if isinstance(value, str) and value.strip() and not _CLOCK.match(value.strip()):
            raise PydanticCustomError("clock", expected)
        return value.strip() if isinstance(value, str) else value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError("timezone", "an IANA time zone name such as Europe/Moscow or UTC") from None
        return value

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: list[str]) -> list[str]:
        if not value:
            raise PydanticCustomError("days", "at least one of mon, tue, wed, thu, fri, sat, sun")
        return value

    @field_validator("close")
    @classmethod
    def _after_open(cls, value: str, info: ValidationInfo) -> str:
        opening = info.data.get("open")
        if opening is None:  # `open` itself was invalid; it is reported on its own
            return value
        if bool(opening) != bool(value):
            raise PydanticCustomError("close", "both open and close, or neither (always open)")
        if value and _minutes(value) <= _minutes(opening):
            expected = "a time after open ({open}); hours past midnight are not supported"
            raise PydanticCustomError("close", expected, {"open": opening})
        return value


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


class PromptSettings(Section):
    path: Path = Path("prompts")


class OutboxSettings(Section):
    max_attempts: int = Field(default=12, ge=1)
    backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=300.0, gt=0)
    lease_s: float = Field(
        default=10.0, gt=0
    )  # a claimed row's lease, renewed while it is sent; a dead worker's rows wait this long


class AnalyticsSettings(Section):
    """What `relaydesk report` needs to put a price on the desk's work (ROI)."""

    handling_minutes: float = Field(default=6.0, ge=0)  # an operator's time per conversation the bot took
    hourly_cost: float = Field(default=25.0, ge=0)  # an operator hour, fully loaded
    currency: str = "USD"
    price_input_per_1k: float = Field(default=0.00015, ge=0)  # LLM prompt tokens, per 1,000
    price_output_per_1k: float = Field(default=0.0006, ge=0)  # LLM completion tokens, per 1,000


class RedisSettings(Section):
    """Where workers share rate limits, caches and dedup keys; empty: each process keeps its own."""

    url: str = ""  # e.g. redis://redis:6379/0


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
    business_hours: BusinessHoursSettings = Field(default_factory=BusinessHoursSettings)
    prompts: PromptSettings = Field(default_factory=PromptSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)

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
    path = path.expanduser()
    return path if path.is_absolute() else base / path


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, substitute, override and validate; raise ConfigError with a precise message."""
    env = dict(os.environ if environ is None else environ)
    chosen = path or env.get("RELAYDESK_CONFIG")  # an empty RELAYDESK_CONFIG counts as not set
    file = Path(chosen or DEFAULT_CONFIG)
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
            loaded = _substitute(yaml.safe_load(text), env, file)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {describe(exc)}") from None
        except ValueError as exc:  # a bad date such as 2026-13-01
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read the config file: {exc.strerror or exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections, got {type(loaded).__name__}")
        # A section whose keys are all commented out (`slack:`) means "defaults", not an error.
        raw = {key: {} if value is None else value for key, value in (loaded or {}).items()}
    elif chosen:
        raise ConfigError(f"{file}: config file not found")
    sources = _apply_overrides(raw, env)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, sources)) from None
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
        if env.get(name):
            return env[name]
        if default is not None:  # as in the shell: the default also applies to a set but empty variable
            return default
        if name in env:
            return ""
        raise ConfigError(f"{file}: ${{{name}}} is used but the environment variable {name} is not set")

    return _VAR.sub(replace, node)


def _apply_overrides(raw: dict[str, Any], env: dict[str, str]) -> dict[tuple[str, ...], str]:
    """Apply RELAYDESK__SECTION__KEY variables; return which variable set which key (for messages)."""
    sources: dict[tuple[str, ...], str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if len(keys) < 2:
            raise ConfigError(f"{name}: expected RELAYDESK__SECTION__KEY")
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {key} is not a section")
            node = child
        node[keys[-1]] = _scalar(value, _annotation(keys))
        sources[tuple(keys)] = name
    return sources


def _annotation(keys: list[str]) -> Any:
    """The declared type of a settings key (None when the key is unknown)."""
    model: Any = Settings
    annotation: Any = None
    for key in keys:
        if get_origin(model) is dict:  # e.g. slack.routes.<topic>
            annotation = get_args(model)[1]
        elif isinstance(model, type) and issubclass(model, BaseModel) and key in model.model_fields:
            annotation = model.model_fields[key].annotation
        else:
            return None
        model = annotation
    return annotation


def _is_text(annotation: Any) -> bool:
    if annotation in (str, Path):
        return True
    if get_origin(annotation) is Literal:
        return all(isinstance(arg, str) for arg in get_args(annotation))
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_text(arg) for arg in get_args(annotation) if arg is not type(None))
    return False


def _scalar(value: str, annotation: Any = None) -> Any:
    """An environment value for a key of type `annotation`.

    Text keys (tokens, URLs, paths, modes) take the value as is, so `123456`, `off` or `a #b` stay strings.
    Other keys read it as a YAML scalar ("0.7", "true", "[a, b]"); a list key also takes "a, b" and
    reads an empty value as an empty list. Any other empty value stays '' (for a token: "off").
    """
    if _is_text(annotation):
        return value
    is_list = get_origin(annotation) is list
    if value.strip() == "":
        return [] if is_list else ""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    if is_list and isinstance(parsed, str):
        return [item.strip() for item in parsed.split(",") if item.strip()]
    return parsed


def _describe(exc: ValidationError, file: Path, sources: dict[tuple[str, ...], str] | None = None) -> str:
    lines = [f"{file}: invalid configuration"]
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc)
        origin = f" (from {sources[loc]})" if sources and loc in sources else ""
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}{origin}: unknown key")
        else:
            expected = re.sub(r"^input should be\s+", "", err["msg"][:1].lower() + err["msg"][1:])
            got = err.get("input")
            got = _PASSWORD.sub(r"\1***@", got) if isinstance(got, str) else got  # never echo a password
            lines.append(f"  {key}{origin}: got {got!r}; expected {expected}")
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
        "embeddings": (settings.embeddings.provider == "openai", {"api_key": settings.embeddings.api_key}),
    }
    for section, (enabled, secrets) in checks.items():
        for key, value in secrets.items():
            if enabled and _PLACEHOLDER.match(value.strip()):
                raise ConfigError(
                    f"{section}.{key}: got placeholder {value!r}; expected a real secret "
                    f"(set it, e.g. RELAYDESK__{section.upper()}__{key.upper()}, or leave it empty to disable)"
                )
