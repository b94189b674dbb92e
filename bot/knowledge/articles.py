"""Knowledge articles: Markdown files with YAML front matter (format in DESIGN.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: 10x faster
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_LANG = re.compile(r"^[a-z]{2,3}$")


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


def parse_article(text: str, path: str = "") -> Article:
    """Parse one article; raise ArticleError naming what is wrong."""
    if "\x00" in text:
        raise ArticleError("binary content")
    text = text.lstrip("\ufeff")
    match = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|$)(.*)$", text, re.S)
    if not match:
        raise ArticleError("no front matter: the file must start with a '---' line and close it with '---'")
    try:
        meta = yaml.load(match.group(1), Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        raise ArticleError(f"bad front matter: {' '.join(str(exc).split())}") from None
    if not isinstance(meta, dict):
        raise ArticleError("bad front matter: expected key: value pairs")
    article_id = str(meta.get("id") or "").strip()
    if not article_id:
        raise ArticleError("missing id")
    if not _ID.match(article_id):
        raise ArticleError(f"bad id {article_id!r}: use letters, digits, '.', '_' and '-'")
    lang = str(meta.get("lang") or "").strip().lower()
    if not _LANG.match(lang):
        raise ArticleError(f"missing or bad lang {meta.get('lang')!r}: expected a language code such as en or ru")
    title = str(meta.get("title") or "").strip()
    if not title:
        raise ArticleError("missing title")
    body = match.group(2).strip()
    if not body:
        raise ArticleError("empty body")
    return Article(
        id=article_id,
        title=title,
        lang=lang,
        body=body,
        tags=_strings(meta.get("tags"), "tags"),
        questions=_strings(meta.get("questions"), "questions"),
        path=path,
    )


def _strings(value: object, key: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ArticleError(f"{key} must be a list of strings")
    return tuple(s for s in (str(v).strip() for v in value) if s)


def read_article(path: Path, root: Path) -> Article:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ArticleError("not UTF-8 text") from None
    return parse_article(text, str(path.relative_to(root)))


def article_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*.md")
        if p.is_file() and not p.name.startswith((".", "_")) and p.name.lower() != "readme.md"
    )


def chunk_text(body: str, limit: int) -> list[str]:
    """Split at headings and paragraphs so each chunk stays under `limit` characters and reads whole."""
    blocks = [b.strip() for b in re.split(r"\n\s*\n|\n(?=#{1,6} )", body) if b.strip()]
    chunks: list[str] = []
    current = ""
    for block in blocks:
        while len(block) > limit:  # a single giant paragraph: cut at a sentence end or a space
            cut = max(block.rfind(". ", 0, limit), block.rfind(" ", 0, limit))
            cut = cut + 1 if cut > limit // 2 else limit
            block_head, block = block[:cut].strip(), block[cut:].strip()
            if current:
                chunks.append(current)
                current = ""
            chunks.append(block_head)
        starts_section = block.startswith("#")
        if current and (len(current) + len(block) + 2 > limit or (starts_section and len(current) > limit // 3)):
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{block}" if current else block
    if current:
        chunks.append(current)
    return chunks
