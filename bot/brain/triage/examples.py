"""Example sets matched by meaning: escalation topics (`prompts/escalation.yaml`) and off-topic messages
(`prompts/off_topic.yaml`).

Both files are lists of example messages per name and language, validated on load (a mistake names the
file, the entry and what is wrong) and hot-reloaded by the PromptStore like the other prompts. The
examples are embedded as customer questions are, once each (a reload embeds only new ones), and a
message is compared with every example: the nearest one names its set.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bot.brain.triage.entities import query_text
from bot.brain.triage.marked import MARKED_LABEL, MARKED_PRIORITY, MARKED_TOPIC, MarkedMessage, MarkedMessages
from bot.domain.types import Escalation, Priority
from bot.knowledge.embeddings import Embedder
from bot.prompts.texts import PromptError, read_yaml

if TYPE_CHECKING:
    from bot.knowledge.index import KnowledgeIndex
    from bot.prompts.loader import PromptStore

_TOPIC_KEYS = {"label", "priority", "examples"}


@dataclass(frozen=True)
class ExampleSet:
    """Named groups of example messages, each in one or more languages."""

    examples: Mapping[str, tuple[str, ...]]  # name -> examples, every language together

    def texts(self) -> list[tuple[str, str]]:
        return [(name, text) for name, texts in self.examples.items() for text in texts]


@dataclass(frozen=True)
class EscalationTopic:
    name: str
    label: str
    priority: Priority


_MARKED = EscalationTopic(MARKED_TOPIC, MARKED_LABEL, MARKED_PRIORITY)


@dataclass(frozen=True)
class Escalations(ExampleSet):
    topics: Mapping[str, EscalationTopic]


def _examples(where: str, value: Any, languages: Sequence[str]) -> tuple[str, ...]:
    if not isinstance(value, dict):
        raise PromptError(f"{where}: expected one list of examples per language ({', '.join(languages)})")
    missing = [lang for lang in languages if lang not in value]
    if missing:
        raise PromptError(f"{where}: missing language {', '.join(missing)}")
    found: list[str] = []
    for lang, texts in value.items():
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
            raise PromptError(f"{where} ({lang}): expected a non-empty list of example messages")
        found += [t.strip() for t in texts]
    return tuple(dict.fromkeys(found))


def _mapping(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not data:
        raise PromptError(f"{path}: expected a mapping of names to examples")
    return {str(k): v for k, v in data.items()}


def load_escalations(path: Path, languages: Sequence[str] = ("en", "ru")) -> Escalations:
    """`prompts/escalation.yaml`: topic -> label, priority, examples per language."""
    topics: dict[str, EscalationTopic] = {}
    examples: dict[str, tuple[str, ...]] = {}
    for name, spec in _mapping(path).items():
        where = f"{path}: topic {name!r}"
        if not isinstance(spec, dict):
            raise PromptError(f"{where}: expected label, priority and examples")
        unknown = sorted(set(spec) - _TOPIC_KEYS)
        if unknown:
            raise PromptError(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(sorted(_TOPIC_KEYS))}")
        label = spec.get("label", name)
        if not isinstance(label, str) or not label.strip():
            raise PromptError(f"{where}: 'label' must be a non-empty text")
        try:
            priority = Priority(str(spec.get("priority", "high")))
        except ValueError:
            choices = ", ".join(p.value for p in Priority)
            raise PromptError(f"{where}: priority {spec.get('priority')!r} is not one of {choices}") from None
        examples[name] = _examples(where, spec.get("examples"), languages)
        topics[name] = EscalationTopic(name, label.strip(), priority)
    return Escalations(examples, topics)


def load_off_topic(path: Path, languages: Sequence[str] = ("en", "ru")) -> ExampleSet:
    """`prompts/off_topic.yaml`: theme -> examples per language."""
    return ExampleSet({name: _examples(f"{path}: {name!r}", spec, languages) for name, spec in _mapping(path).items()})


@dataclass(frozen=True)
class Nearest:
    name: str | None
    similarity: float


class ExampleMatrix:
    """An example set's vectors, for the nearest example to a message."""

    def __init__(self, names: list[str], vectors: np.ndarray) -> None:
        self.names = names
        self.vectors = vectors

    def nearest(self, vector: np.ndarray) -> Nearest:
        if not self.names:
            return Nearest(None, 0.0)
        similarities = self.vectors @ np.asarray(vector, np.float32)
        best = int(np.argmax(similarities))
        return Nearest(self.names[best], float(similarities[best]))


class ExampleEmbeddings:
    """Embeds example sets with the desk's embedder, each text once for the life of the process."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._lock = asyncio.Lock()  # two messages at once after an edit embed the new examples once

    async def matrix(self, examples: ExampleSet) -> ExampleMatrix:
        """The set's matrix; only examples never embedded before cost an embedding."""
        async with self._lock:
            pairs = examples.texts()
            new = [text for _, text in pairs if text not in self._vectors]
            if new:
                for text, vector in zip(new, await self._embedder.queries(new), strict=True):
                    self._vectors[text] = vector
        vectors = np.stack([self._vectors[t] for _, t in pairs]) if pairs else np.zeros((0, 0), np.float32)
        return ExampleMatrix([name for name, _ in pairs], vectors.astype(np.float32))


class TriageExamples:
    """The live escalation topics and off-topic examples of a deployment, embedded.

    Off-topic examples become the topic classifier's off-topic class (an edit re-trains that class
    alone); escalation topics are matched by the nearest example, the messages operators marked "always
    a person" (bot.brain.triage.marked) among them. `refresh()` picks up edits of the prompt files and marks
    made by other workers; the first call happens before the knowledge base is indexed, so the classifier
    is trained once with its off-topic class."""

    def __init__(
        self,
        prompts: PromptStore,
        index: KnowledgeIndex,
        escalation_similarity: float = 1.0,
        marked: MarkedMessages | None = None,
    ) -> None:
        self._prompts = prompts
        self._index = index
        self._escalation_similarity = escalation_similarity
        self._embeddings = ExampleEmbeddings(index.embedder)
        self._escalations: Escalations | None = None
        self._escalation_matrix = ExampleMatrix([], np.zeros((0, 0), np.float32))
        self._marked = marked
        self._marked_messages: list[MarkedMessage] = []
        self._written_matrix = ExampleMatrix([], np.zeros((0, 0), np.float32))  # the YAML's examples alone
        self._off_topic: ExampleSet | None = None
        self._off_topic_matrix = ExampleMatrix([], np.zeros((0, 0), np.float32))

    async def refresh(self, train: bool = True) -> None:
        """Embed what changed; with `train`, re-train the classifier when the off-topic examples did."""
        if not self._index.embedder.semantic:
            return  # word hashing has no notion of meaning: nothing would be matched by it
        escalations, off_topic = self._prompts.escalations, self._prompts.off_topic
        written = escalations is not self._escalations
        if written:
            self._written_matrix = await self._embeddings.matrix(escalations)
            self._escalations = escalations
        # Chroma is asked (off the event loop) only when a poll is due: no thread hop for most messages.
        marked = self._marked is not None and self._marked.due() and await asyncio.to_thread(self._marked.changed)
        if marked:
            assert self._marked is not None
            self._marked_messages = await asyncio.to_thread(self._marked.all)
        if written or marked:
            self._join_marked()
        if off_topic is not self._off_topic:
            matrix = self._off_topic_matrix = await self._embeddings.matrix(off_topic)
            self._off_topic = off_topic
            version = hashlib.sha256(repr(sorted(off_topic.texts())).encode()).hexdigest()[:16]
            if self._index.use_off_topic(matrix.vectors, version) and train:
                await self._index.prepare_classifier()

    def _join_marked(self) -> None:
        """The escalation matrix: the YAML's examples, then the marked messages."""
        written, marked = self._written_matrix, self._marked_messages
        if not marked:
            self._escalation_matrix = written
            return
        vectors = [written.vectors] if written.vectors.size else []
        vectors.append(np.stack([m.vector for m in marked]))
        names = [*written.names, *(m.topic for m in marked)]
        self._escalation_matrix = ExampleMatrix(names, np.vstack(vectors).astype(np.float32))

    @property
    def learns(self) -> bool:
        """Whether operators can mark messages: a store for the marks and an encoder with a notion of meaning."""
        return self._marked is not None and self._index.embedder.semantic

    def topics(self) -> list[EscalationTopic]:
        """The topics a message can be marked with: the YAML's, then the operators' own."""
        written = list(self._escalations.topics.values()) if self._escalations is not None else []
        return [*written, *([] if MARKED_TOPIC in {t.name for t in written} else [_MARKED])]

    async def mark(self, text: str, operator: str, topic: str | None = None) -> EscalationTopic | None:
        """Messages like `text` go to a person from now on, as `topic` (default: marked by an operator).

        Returns the topic, or None when the message was marked before. Raises KeyError for a topic the
        escalation file does not name; only when `learns`."""
        assert self._marked is not None and self.learns
        chosen = next((t for t in self.topics() if t.name == (topic or MARKED_TOPIC)), None)
        if chosen is None:
            raise KeyError(topic)
        vector = (await self._index.embedder.queries([query_text(text)]))[0]  # as the analyzer embeds it
        if not await asyncio.to_thread(self._marked.add, chosen.name, text, operator, vector):
            return None
        self._marked_messages = await asyncio.to_thread(self._marked.all)
        self._join_marked()
        return chosen

    def off_topic(self, vector: np.ndarray) -> float:
        """The similarity of the nearest off-topic example."""
        return self._off_topic_matrix.nearest(vector).similarity

    def escalation(self, vector: np.ndarray, nearest_question: float) -> Escalation | None:
        """The escalation topic whose nearest example is at least `escalation_similarity` near and as near as the
        nearest question of the knowledge base (`nearest_question`), if any: e5 similarities crowd together,
        so an absolute threshold alone flags ordinary questions (bench/README.md, triage)."""
        nearest = self._escalation_matrix.nearest(vector)
        if nearest.name is None or self._escalations is None:
            return None
        if nearest.similarity < max(self._escalation_similarity, nearest_question):
            return None
        topic = self._escalations.topics.get(nearest.name, _MARKED)  # a marked message's topic may be gone
        return Escalation(topic.name, topic.label, topic.priority, round(nearest.similarity, 4))
