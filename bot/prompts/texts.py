"""Customer-facing texts from `prompts/texts.yaml`, per language, with declared variables."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.prompts.yamlerrors import describe

_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PromptError(ValueError):
    """A broken prompt file: the message names the file, the prompt and what is wrong."""


@dataclass(frozen=True)
class Texts:
    entries: dict[str, dict[str, str]]  # name -> language -> template
    default_language: str = "en"

    def render(self, name: str, language: str, /, **values: object) -> str:
        by_lang = self.entries[name]
        template = by_lang.get(language) or by_lang.get(self.default_language) or next(iter(by_lang.values()))
        return template.format(**values)


def read_yaml(path: Path) -> Any:
    """A prompt file's content, or a PromptError naming the file and what is wrong with it."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"{path}: file not found") from None
    except yaml.YAMLError as exc:
        raise PromptError(f"{path}: not valid YAML: {describe(exc)}") from None
    except UnicodeDecodeError as exc:
        raise PromptError(f"{path}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None


def load_texts(path: Path, languages: tuple[str, ...] = ("en", "ru")) -> Texts:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise PromptError(f"{path}: expected a mapping of text names")
    entries: dict[str, dict[str, str]] = {}
    for name, spec in data.items():
        where = f"{path}: text {name!r}"
        if not isinstance(spec, dict):
            raise PromptError(f"{where}: expected 'variables' and one key per language")
        declared = spec.get("variables") or []
        if not isinstance(declared, list) or not all(isinstance(v, str) and _FIELD.match(v) for v in declared):
            raise PromptError(f"{where}: 'variables' must be a list of names")
        by_lang = {k: v for k, v in spec.items() if k != "variables"}
        missing = [lang for lang in languages if lang not in by_lang]
        if missing:
            raise PromptError(f"{where}: missing language {', '.join(missing)}")
        for lang, template in by_lang.items():
            if not isinstance(template, str) or not template.strip():
                raise PromptError(f"{where} ({lang}): expected non-empty text")
            try:
                used = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
            except ValueError as exc:
                raise PromptError(f"{where} ({lang}): {exc}") from None
            unknown = sorted(used - set(declared))
            if unknown:
                raise PromptError(f"{where} ({lang}): unknown variable {{{unknown[0]}}}; declared: {declared}")
        entries[str(name)] = by_lang
    return Texts(entries)
