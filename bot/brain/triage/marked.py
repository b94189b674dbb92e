"""Messages operators marked "always a person": escalation examples taught from the operator queue.

They live in a Chroma collection beside the knowledge base, vectors included, so every worker that
shares a Chroma server sees them and none re-embeds them; prompts/escalation.yaml stays the admin's
file, untouched by the desk. Each example names its escalation topic; a topic the admin later removes
from the YAML falls back to `MARKED`.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bot.domain.types import Priority

# What a marked message escalates as when no topic of prompts/escalation.yaml was named for it.
MARKED_TOPIC, MARKED_LABEL, MARKED_PRIORITY = "marked", "Marked by an operator: always a person", Priority.NORMAL
POLL_S = 30.0  # how often a worker looks for messages another worker's operators marked


@dataclass(frozen=True)
class MarkedMessage:
    id: str
    topic: str
    text: str
    operator: str
    marked_at: float  # unix time
    vector: np.ndarray


def marked_id(text: str) -> str:
    """One record per message however it was spaced or capitalised: marking it twice changes nothing."""
    return "marked:" + hashlib.sha256(" ".join(text.casefold().split()).encode()).hexdigest()[:24]


class MarkedMessages:
    """The marked messages of one knowledge base (one Chroma collection per embedding model)."""

    def __init__(self, collection: Any) -> None:
        self._collection = collection
        self._count = -1
        self._checked = 0.0

    def add(self, topic: str, text: str, operator: str, vector: np.ndarray) -> bool:
        """Store a marked message; False when it was marked before (under any topic)."""
        record = marked_id(text)
        if self._collection.get(ids=[record], include=[])["ids"]:
            return False
        meta = {"topic": topic, "operator": operator, "marked_at": time.time()}
        self._collection.add(ids=[record], embeddings=[vector], metadatas=[meta], documents=[text])
        return True

    def remove(self, record: str) -> bool:
        if not self._collection.get(ids=[record], include=[])["ids"]:
            return False
        self._collection.delete(ids=[record])
        return True

    def all(self) -> list[MarkedMessage]:
        got = self._collection.get(include=["embeddings", "metadatas", "documents"])
        found = [
            MarkedMessage(
                record,
                str(meta.get("topic") or MARKED_TOPIC),
                str(text),
                str(meta.get("operator") or ""),
                float(meta.get("marked_at") or 0.0),
                np.asarray(vector, np.float32),
            )
            for record, meta, text, vector in zip(
                got["ids"], got["metadatas"] or [], got["documents"] or [], got["embeddings"], strict=True
            )
        ]
        self._count, self._checked = len(found), time.monotonic()
        return sorted(found, key=lambda m: m.marked_at)

    def due(self, poll_s: float = POLL_S) -> bool:
        """Whether `changed` would ask Chroma now: never read, or last asked `poll_s` ago (no I/O)."""
        return self._count < 0 or time.monotonic() - self._checked >= poll_s

    def changed(self, poll_s: float = POLL_S) -> bool:
        """Whether the collection holds another number of messages than the last `all()` read (another
        worker marked or removed one); asked of Chroma at most every `poll_s`."""
        if not self.due(poll_s):
            return False
        self._checked = time.monotonic()
        return int(self._collection.count()) != self._count
