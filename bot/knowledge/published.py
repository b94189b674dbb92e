"""What a `relaydesk kb ingest` job published on a Chroma server, for every worker to read.

Beside the articles' collection, a side collection (`published-<embedder>`) holds:
- one state record: the version of the knowledge folder the articles came from, a digest of that folder's
  articles, and which trained classifier goes with them. The job writes it last; workers poll it.
- the trained topic classifier in pieces of PIECE_BYTES, keyed by its fingerprint: a worker loads it
  instead of training its own. A new ingest writes new pieces beside the old ones and removes the
  generation before last only, so a worker reading the previous state still finds all of its pieces.
The pieces are base64 text in metadata: Chroma indexes documents for full-text search, which costs
seconds per megabyte, metadata milliseconds.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.config import KnowledgeSettings
from bot.knowledge.classifier import TopicClassifier
from bot.knowledge.index import open_collection
from bot.knowledge.version import KnowledgeVersion

log = logging.getLogger(__name__)

PIECE_BYTES = 2 * 1024 * 1024  # of the classifier's file per record: HTTP requests of a few megabytes
STATE = "state"
PIECE = "classifier"
NOWHERE = [0.0]  # records of this collection are fetched by id, never searched: every one sits at one point


@dataclass(frozen=True)
class Published:
    version: KnowledgeVersion
    content: str  # version.folder_digest of the folder that was ingested
    classifier: str  # the key of the classifier's pieces; "" when no article was indexed
    pieces: int
    at: float  # unix time of the ingest: a second run of the same version is a change too


class PublishedKnowledge:
    """The side collection; only a `writer` (the ingest job) changes it."""

    def __init__(self, collection: Any, writer: bool = False) -> None:
        self._collection = collection
        self._writer = writer

    def state(self) -> Published | None:
        """What the last ingest job published; None before the first one."""
        got = self._collection.get(ids=[STATE], include=["metadatas"])
        if not got["ids"]:
            return None
        meta = got["metadatas"][0]
        return Published(
            KnowledgeVersion(str(meta["version"])),
            str(meta["content"]),
            str(meta["classifier"]),
            int(meta["pieces"]),
            float(meta["at"]),
        )

    # -- the classifier, as a ClassifierStore of the index ------------------------------------------

    def load(self) -> TopicClassifier | None:
        """The classifier the published state names; None without one (or when its pieces are gone)."""
        state = self.state()
        if state is None or not state.classifier:
            return None
        ids = [_piece_id(state.classifier, n) for n in range(state.pieces)]
        got = self._collection.get(ids=ids, include=["metadatas"])
        pieces = {record: str(meta["piece"]) for record, meta in zip(got["ids"], got["metadatas"] or [], strict=True)}
        if len(pieces) != len(ids):  # removed by two ingests since the state was read: the next poll reads anew
            log.warning("knowledge: the published classifier %s is incomplete", state.classifier)
            return None
        return TopicClassifier.from_bytes(b"".join(base64.b64decode(pieces[record]) for record in ids))

    def save(self, classifier: TopicClassifier) -> None:
        """Write the classifier's pieces (the ingest job alone); `publish` makes them the live ones."""
        if not self._writer:
            return  # a worker trained its own (its off-topic examples differ): kept in memory, never published
        key = _key(classifier)
        data = classifier.to_bytes()
        for n, start in enumerate(range(0, len(data), PIECE_BYTES)):  # one request each: a few megabytes at most
            piece = base64.b64encode(data[start : start + PIECE_BYTES]).decode("ascii")
            self._collection.upsert(
                ids=[_piece_id(key, n)], embeddings=[NOWHERE], metadatas=[{"kind": PIECE, "key": key, "piece": piece}]
            )

    # -- the state ----------------------------------------------------------------------------------

    def publish(self, version: KnowledgeVersion, content: str, classifier: TopicClassifier | None) -> Published:
        """Record what the collection now holds; workers take it at their next poll."""
        assert self._writer, "only the ingest job publishes"
        before = self.state()
        key = _key(classifier) if classifier is not None else ""
        pieces = -(-len(classifier.to_bytes()) // PIECE_BYTES) if classifier is not None else 0
        state = Published(version, content, key, pieces, time.time())
        meta = {"version": version.text, "content": content, "classifier": key, "pieces": pieces, "at": state.at}
        self._collection.upsert(ids=[STATE], embeddings=[NOWHERE], metadatas=[meta])
        kept = [key, before.classifier if before is not None else ""]
        self._collection.delete(where={"$and": [{"kind": PIECE}, {"key": {"$nin": kept}}]})
        return state


def open_published(settings: KnowledgeSettings, embedder_name: str, writer: bool = False) -> PublishedKnowledge:
    return PublishedKnowledge(open_collection(settings, embedder_name, prefix="published"), writer)


def _key(classifier: TopicClassifier) -> str:
    return classifier.fingerprint[:24]


def _piece_id(key: str, n: int) -> str:
    return f"{PIECE}:{key}:{n}"
