"""Which version of the knowledge folder this is: `knowledge/VERSION`, a dotted number the admin raises.

With a Chroma server the collection records the version its articles came from, so an ingest from an
older folder (a rolling deploy's old image) is refused instead of removing what a newer one indexed.
The folder's content digest tells an edit that forgot to raise the version from a re-run of the same one.
"""

from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path

from bot.knowledge.articles import article_files

VERSION_FILE = "VERSION"
_DOTTED = re.compile(r"^\d+(\.\d+)*$")


class VersionError(ValueError):
    """A VERSION file that is missing or unreadable; the message says what to write."""


@functools.total_ordering
class KnowledgeVersion:
    """A dotted version compared part by part as numbers: 1.10 > 1.9, and 2 == 2.0."""

    def __init__(self, text: str) -> None:
        text = text.strip()
        if not _DOTTED.match(text):
            raise VersionError(f"bad knowledge version {text!r}: expected a dotted number such as 1, 2 or 1.4")
        self.text = text
        parts = [int(part) for part in text.split(".")]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        self._key = tuple(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KnowledgeVersion) and self._key == other._key

    def __lt__(self, other: KnowledgeVersion) -> bool:
        return self._key < other._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"KnowledgeVersion({self.text!r})"


def read_version(root: Path) -> KnowledgeVersion:
    """The version in `root`/VERSION; VersionError naming the file when it is missing or bad."""
    path = root / VERSION_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VersionError(
            f"{path} is missing: write the knowledge folder's version in it (e.g. 1) and raise it with every change"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VersionError(f"{path} cannot be read: {exc}") from None
    try:
        return KnowledgeVersion(text)
    except VersionError as exc:
        raise VersionError(f"{path}: {exc}") from None


def folder_digest(root: Path) -> str:
    """What the folder's articles say: a hash of every article file's path and bytes (VERSION aside)."""
    digest = hashlib.sha256()
    for path in article_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:24]
