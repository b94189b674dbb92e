"""Knowledge articles: Markdown files with YAML front matter (format in DESIGN.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from bot.brain.language import LANGUAGES
from bot.prompts.yamlerrors import describe

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: faster
_BOOL = "tag:yaml.org,2002:bool"


class _Loader(_BaseLoader):
    """Safe YAML where only true/false are booleans: `lang: no` is Norwegian, a question `- Yes` is text."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LANG = re.compile(r"^[a-z]{2,3}$")
_HEADING = re.compile(r"^#{1,6}\s")
KEYS = ("id", "title", "lang", "tags", "questions", "tool")


class ArticleTool(StrEnum):
    """What an article may opt in to with `tool:` in its front matter: the answer comes from a tool."""

    NONE = ""
    ORDER_STATUS = "order_status"  # the order's status from the CRM (bot.orders), when the customer gave a number


class ArticleError(ValueError):
    """An article that cannot be indexed; the message says why."""


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    lang: str
    body: str
    tags: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    path: str = ""
    tool: ArticleTool = ArticleTool.NONE
    warnings: tuple[str, ...] = field(default=(), compare=False)  # indexed all the same, but likely a mistake


def parse_article(text: str, path: str = "") -> Article:
    """Parse one article; raise ArticleError naming what is wrong."""
    if "\x00" in text:
        raise ArticleError("binary content")
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")  # BOM, Windows line endings
    match = re.match(r"^---[ \t]*\n(?:(.*?)\n)?---[ \t]*(?:\n|$)(.*)$", text, re.S)
    if not match:
        raise ArticleError("no front matter: the file must start with a '---' line and close it with '---'")
    try:
        meta = yaml.load(match.group(1) or "", Loader=_Loader)
    except yaml.YAMLError as exc:
        raise ArticleError(f"bad front matter: {describe(exc, first_line=2)}") from None  # after the '---' line
    if not isinstance(meta, dict):
        raise ArticleError("bad front matter: expected key: value pairs")
    article_id = _text(meta, "id")
    if not article_id:
        raise ArticleError("missing id")
    if not _ID.match(article_id):
        raise ArticleError(f"bad id {article_id!r}: use letters, digits, '.', '_' and '-'")
    lang = _text(meta, "lang").lower()
    if not _LANG.match(lang):
        raise ArticleError(f"missing or bad lang {meta.get('lang')!r}: expected a language code such as en or ru")
    title = _text(meta, "title")
    if not title:
        raise ArticleError("missing title")
    body = match.group(2).strip()
    if not body:
        raise ArticleError("empty body")
    warnings = [f"unknown key {key!r} ignored; the keys are {', '.join(KEYS)}" for key in meta if key not in KEYS]
    if lang not in LANGUAGES:
        warnings.append(f"lang {lang!r} is not a language the desk detects ({', '.join(LANGUAGES)})")
    tool = _text(meta, "tool")
    if tool not in set(ArticleTool):
        known = ", ".join(t.value for t in ArticleTool if t.value)
        raise ArticleError(f"unknown tool {tool!r}: expected one of {known}")
    return Article(
        id=article_id,
        title=title,
        lang=lang,
        body=body,
        tags=_strings(meta.get("tags"), "tags", single=True),
        questions=_strings(meta.get("questions"), "questions", single=False),
        path=path,
        tool=ArticleTool(tool),
        warnings=tuple(warnings),
    )


def _text(meta: dict[Any, Any], key: str) -> str:
    value = meta.get(key)
    if value is None:
        return ""
    if not isinstance(value, str | int | float):
        raise ArticleError(f"{key} must be text, got {type(value).__name__}")
    return str(value).strip()


def _strings(value: object, key: str, single: bool) -> tuple[str, ...]:
    """A YAML list of strings; `single` also takes one bare string (`tags: returns`)."""
    if value is None:
        return ()
    if single and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ArticleError(f"{key} must be a list of strings (one '- item' per line)")
    return tuple(s for s in (str(v).strip() for v in value) if s)


def read_article(path: Path, root: Path) -> Article:
    return decode_article(path.read_bytes(), str(path.relative_to(root)))


def decode_article(raw: bytes, path: str = "") -> Article:
    """An article from the bytes of its file (UTF-8, with or without a BOM)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArticleError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return parse_article(text, path)


def article_files(root: Path) -> list[Path]:
    """Markdown files under `root`, skipping README.md and anything hidden or under a `.`/`_` folder (drafts)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() == ".md"
        and p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(root).parts)
        and p.name.lower() != "readme.md"
    )


def chunk_text(body: str, limit: int) -> list[str]:
    """Split at headings and paragraphs so each chunk stays under `limit` characters and reads whole.

    Every word of `body` lands in exactly one chunk; a heading stays with the text that follows it;
    a paragraph longer than `limit` is cut at a sentence end, else at a space (a word is cut only
    when it alone is longer than `limit`).
    """
    blocks = [b.strip() for b in re.split(r"\n\s*\n|\n(?=#{1,6}\s)", body) if b.strip()]
    pieces = [piece for block in blocks for piece in _split_long(block, limit)]
    chunks: list[str] = []
    current: list[str] = []
    for piece in pieces:
        heading = bool(_HEADING.match(piece))
        size = _joined_len(current)
        if current and (size + 2 + len(piece) > limit or (heading and size > limit // 3)):
            carry = _trailing_headings(current)  # never end a chunk with a heading that lost its text
            if carry and len(carry) < len(current) and _joined_len([*carry, piece]) <= limit:
                current = current[: -len(carry)]
            else:
                carry = []
            chunks.append("\n\n".join(current))
            current = carry
        current.append(piece)
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _joined_len(parts: list[str]) -> int:
    return sum(len(p) for p in parts) + 2 * max(len(parts) - 1, 0)


def _trailing_headings(parts: list[str]) -> list[str]:
    n = 0
    while n < len(parts) and _HEADING.match(parts[-1 - n]):
        n += 1
    return parts[len(parts) - n :]


def _split_long(block: str, limit: int) -> list[str]:
    pieces: list[str] = []
    while len(block) > limit:
        sentence = max(block.rfind(f"{end} ", 0, limit) for end in ".!?")
        cut = sentence + 1 if sentence > limit // 2 else block.rfind(" ", 0, limit + 1)
        if cut <= 0:
            cut = limit  # one word longer than the limit: nothing else to do
        head, block = block[:cut].strip(), block[cut:].strip()
        pieces.append(head)
    if block:
        pieces.append(block)
    return pieces
