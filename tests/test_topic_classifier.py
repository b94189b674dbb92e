"""The topic classifier: an edit re-trains only the articles it touched, and answers as well as a full retrain."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bot.config import KnowledgeSettings
from bot.knowledge import classifier as classifier_module
from bot.knowledge.classifier import ClassifierFile, TopicClassifier
from bot.knowledge.embeddings import HashingEmbedder
from bot.knowledge.index import KnowledgeIndex, open_collection
from tests.test_knowledge import article_text, put

ARTICLES, PER_ARTICLE, DIM = 60, 7, 64


def topics(seed: int, count: int = ARTICLES) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)


def questions(centers: np.ndarray, labels: np.ndarray, seed: int, noise: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = centers[labels] + noise * rng.normal(size=(len(labels), DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def accuracy(model: TopicClassifier, x: np.ndarray, ids: list[str]) -> float:
    return float(np.mean([model.probabilities(v)[0][0] == i for v, i in zip(x, ids, strict=True)]))


@pytest.fixture(params=["full softmax", "nearest candidates"])
def regime(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "nearest candidates":  # the large-KB path, on a KB small enough for a test
        monkeypatch.setattr(classifier_module, "FULL_SOFTMAX_MAX", 20)
        monkeypatch.setattr(classifier_module, "HARD_NEGATIVES", 10)
        monkeypatch.setattr(classifier_module, "STEPS", 600)
        monkeypatch.setattr(classifier_module, "BATCH", 128)
    return str(request.param)


def test_an_edit_retrains_only_its_articles_and_answers_like_a_full_retrain(regime: str) -> None:
    centers = topics(1)
    labels = np.repeat(np.arange(ARTICLES), PER_ARTICLE)
    names = [f"article-{i:02d}" for i in range(ARTICLES)]
    versions = dict.fromkeys(names, "v1")
    before = TopicClassifier.fit(questions(centers, labels, 2), [names[i] for i in labels], versions)

    # One article now answers another topic, one is deleted, one is new.
    edited, deleted = 7, 30
    centers[edited] = topics(3, 1)[0]
    names[deleted] = "article-new"
    centers[deleted] = topics(4, 1)[0]
    versions = dict.fromkeys(names, "v1") | {names[edited]: "v2", "article-new": "v1"}
    x, ids = questions(centers, labels, 5), [names[i] for i in labels]
    after = TopicClassifier.fit(x, ids, versions, previous=before)
    full = TopicClassifier.fit(x, ids, versions)

    assert "article-30" not in after.ids and "article-new" in after.ids
    for article in set(names) - {names[edited], "article-new"}:  # untouched rows: exactly as they were
        old, new = before.ids.index(article), after.ids.index(article)
        assert np.array_equal(before._w[old], after._w[new]) and before._b[old] == after._b[new]
    held_out = np.repeat(np.arange(ARTICLES), 5)
    test_x, test_ids = questions(centers, held_out, 6), [names[i] for i in held_out]
    touched = np.isin(held_out, [edited, deleted])
    assert accuracy(after, test_x[touched], [i for i, t in zip(test_ids, touched, strict=True) if t]) >= 0.8
    assert accuracy(after, test_x, test_ids) >= accuracy(full, test_x, test_ids) - 0.05
    assert accuracy(before, test_x[touched], [i for i, t in zip(test_ids, touched, strict=True) if t]) < 0.5


def test_many_edits_train_every_row_again() -> None:
    centers = topics(1)
    labels = np.repeat(np.arange(ARTICLES), PER_ARTICLE)
    names = [f"article-{i:02d}" for i in range(ARTICLES)]
    before = TopicClassifier.fit(questions(centers, labels, 2), [names[i] for i in labels], dict.fromkeys(names, "1"))
    versions = dict.fromkeys(names, "1") | {name: "2" for name in names[:20]}  # a third of the KB
    after = TopicClassifier.fit(questions(centers, labels, 5), [names[i] for i in labels], versions, before)
    untouched = before.ids.index("article-59")
    assert not np.array_equal(before._w[untouched], after._w[untouched])


@pytest.fixture
def crowded(monkeypatch: pytest.MonkeyPatch) -> tuple[np.ndarray, list[str], np.ndarray]:
    """400 topics sharing one large direction, as real embeddings do; the large-KB regime, sized for a test.

    Returns their centres, names and the article of each of PER_ARTICLE questions per topic."""
    monkeypatch.setattr(classifier_module, "FULL_SOFTMAX_MAX", 50)
    monkeypatch.setattr(classifier_module, "HARD_NEGATIVES", 10)
    monkeypatch.setattr(classifier_module, "STEPS", 800)
    monkeypatch.setattr(classifier_module, "BATCH", 256)
    count = 400
    centers = np.random.default_rng(1).normal(size=(count, DIM)).astype(np.float32)
    centers += 8 * np.random.default_rng(2).normal(size=DIM).astype(np.float32)  # the shared direction
    names = [f"article-{i:03d}" for i in range(count)]
    return centers, names, np.repeat(np.arange(count), PER_ARTICLE)


def test_a_large_kb_tells_its_topics_apart_on_embeddings_that_share_a_direction(
    crowded: tuple[np.ndarray, list[str], np.ndarray],
) -> None:
    """Real embeddings share one large direction; the large-KB regime must still find the topic."""
    centers, names, labels = crowded
    model = TopicClassifier.fit(questions(centers, labels, 3, noise=1.2), [names[i] for i in labels], {})
    held_out = np.repeat(np.arange(len(names)), 3)
    assert accuracy(model, questions(centers, held_out, 4, noise=1.2), [names[i] for i in held_out]) >= 0.9


NOUNS = [
    "bicycle",
    "umbrella",
    "kettle",
    "lantern",
    "violin",
    "tractor",
    "saddle",
    "compass",
    "helmet",
    "blanket",
    "carpet",
    "ladder",
    "mirror",
    "parrot",
    "pillow",
    "scooter",
    "shovel",
    "teapot",
    "trumpet",
    "wallet",
    "anchor",
    "backpack",
    "candle",
    "chisel",
    "drone",
    "easel",
    "fountain",
    "glove",
    "hammock",
    "igloo",
    "jacket",
    "kite",
    "locket",
    "magnet",
    "necklace",
    "oven",
    "pendant",
    "quilt",
    "raft",
    "sandal",
    "telescope",
    "ukulele",
    "vase",
    "wagon",
    "yacht",
    "zipper",
    "apron",
    "barrel",
    "canoe",
    "dartboard",
    "bucket",
    "cushion",
    "doormat",
    "faucet",
    "goggles",
    "harp",
    "inkwell",
    "jigsaw",
    "keyboard",
    "ladle",
    "mitten",
    "notebook",
]


def test_re_training_an_article_whose_questions_did_not_change_leaves_its_answers_as_they_were(
    crowded: tuple[np.ndarray, list[str], np.ndarray],
) -> None:
    """An update follows a full training's schedule: re-trained on the same rows, a row ends where it was.

    (Trained on its own examples alone, densely, it drifted: a crowded large KB then recognised the
    edited articles' questions worse than a full retrain did.)"""
    centers, names, labels = crowded
    x, ids = questions(centers, labels, 3, noise=2.0), [names[i] for i in labels]
    before = TopicClassifier.fit(x, ids, dict.fromkeys(names, "v1"))
    touched = [0, 100, 200, 300]
    versions = dict.fromkeys(names, "v1") | {names[t]: "v2" for t in touched}
    after = TopicClassifier.fit(x, ids, versions, previous=before)

    held_out = np.repeat(touched, 100)
    test_x = questions(centers, held_out, 4, noise=2.0)

    def confidence(model: TopicClassifier) -> float:
        own = [dict(model.probabilities(v)).get(names[h], 0.0) for v, h in zip(test_x, held_out, strict=True)]
        return float(np.mean(own))

    assert confidence(after) == pytest.approx(confidence(before), rel=0.01)


async def test_a_restarted_index_updates_its_saved_classifier_after_an_edit(tmp_path: Path) -> None:
    root = tmp_path / "knowledge"
    for noun in NOUNS:
        put(
            root,
            f"{noun}.md",
            article_text(noun, f"The {noun}", [f"Where can I buy a {noun}?", f"How much is the {noun}?"], f"{noun}s."),
        )
    embedder, saved = HashingEmbedder(), tmp_path / "chroma" / "classifier.npz"

    def index() -> KnowledgeIndex:  # what a restart builds: the same store and classifier file
        collection = open_collection(KnowledgeSettings(store=tmp_path / "chroma"), embedder.name)
        return KnowledgeIndex(collection, embedder, classifiers=ClassifierFile(saved))

    await index().ingest(root)
    before = ClassifierFile(saved).load()
    assert before is not None and len(before.ids) == len(NOUNS)

    put(root, "umbrella.md", article_text("umbrella", "Rain capes", ["Do you sell waterproof ponchos?"], "Yes."))
    put(root, "kayak.md", article_text("kayak", "The kayak", ["Can I rent a kayak paddle?"], "Paddles for rent."))
    (root / "bicycle.md").unlink()
    restarted = index()
    await restarted.ingest(root)

    after = ClassifierFile(saved).load()
    assert after is not None and "bicycle" not in after.ids and "kayak" in after.ids
    for noun in set(NOUNS) - {"umbrella", "bicycle"}:
        assert np.array_equal(before._w[before.ids.index(noun)], after._w[after.ids.index(noun)])
    for question, article in (("Do you sell waterproof ponchos?", "umbrella"), ("Can I rent a kayak paddle?", "kayak")):
        vector = await restarted.embed_query(question)
        assert restarted.topic_probabilities(vector, [])[0][0] == article


async def test_an_edit_of_the_body_alone_leaves_the_classifier_as_it_was(tmp_path: Path) -> None:
    """The classifier learns an article's title and questions: a new body (or a new file name) keeps it."""
    root = tmp_path / "knowledge"
    for noun in NOUNS[:12]:
        put(root, f"{noun}.md", article_text(noun, f"The {noun}", [f"Where can I buy a {noun}?"], f"{noun}s."))
    embedder, saved = HashingEmbedder(), tmp_path / "chroma" / "classifier.npz"
    collection = open_collection(KnowledgeSettings(store=tmp_path / "chroma"), embedder.name)
    index = KnowledgeIndex(collection, embedder, classifiers=ClassifierFile(saved))
    await index.ingest(root)
    trained = saved.read_bytes()

    put(root, "violin.md", article_text("violin", "The violin", ["Where can I buy a violin?"], "Violins ship in May."))
    (root / "ladder.md").rename(root / "tools-ladder.md")
    report = await index.ingest(root)
    assert (report.updated, report.added, report.removed) == (1, 1, 1)
    assert saved.read_bytes() == trained  # neither trained nor written again
    violin = index.article("violin", ["en"])
    assert violin is not None and "Violins ship in May." in violin.body

    retitled = article_text("violin", "The violin", ["Do you tune violins by the hour?"], "Violins ship in May.")
    put(root, "violin.md", retitled)
    await index.ingest(root)
    assert saved.read_bytes() != trained
    vector = await index.embed_query("Do you tune violins by the hour?")
    assert index.topic_probabilities(vector, [])[0][0] == "violin"


async def test_a_store_indexed_before_the_classifier_kept_what_it_learned_is_trained_once(tmp_path: Path) -> None:
    root = tmp_path / "knowledge"
    for noun in NOUNS[:8]:
        put(root, f"{noun}.md", article_text(noun, f"The {noun}", [f"Where can I buy a {noun}?"], f"{noun}s."))
    embedder, saved = HashingEmbedder(), tmp_path / "chroma" / "classifier.npz"

    def index() -> KnowledgeIndex:  # what a restart builds
        collection = open_collection(KnowledgeSettings(store=tmp_path / "chroma"), embedder.name)
        return KnowledgeIndex(collection, embedder, classifiers=ClassifierFile(saved))

    first = index()
    await first.ingest(root)
    titles = first._collection.get(where={"kind": "title"})
    first._collection.update(ids=titles["ids"], metadatas=[{"learned": None}] * len(titles["ids"]))  # as indexed before
    trained = saved.read_bytes()

    upgraded = index()
    report = await upgraded.ingest(root)
    assert report.unchanged == 8 and report.updated == 0  # the files are not indexed again
    assert saved.read_bytes() != trained  # the classifier is, once
    vector = await upgraded.embed_query("Where can I buy a lantern?")
    assert upgraded.topic_probabilities(vector, [])[0][0] == "lantern"
    retrained = saved.read_bytes()
    await index().ingest(root)
    assert saved.read_bytes() == retrained  # and not again on the next start


async def test_a_classifier_file_of_an_older_format_is_trained_anew(tmp_path: Path) -> None:
    root = tmp_path / "knowledge"
    put(root, "kettle.md", article_text("kettle", "The kettle", ["Is the kettle electric?"], "Yes."))
    put(root, "saddle.md", article_text("saddle", "The saddle", ["Is the saddle leather?"], "Yes."))
    saved = tmp_path / "chroma" / "classifier.npz"
    saved.parent.mkdir()
    np.savez(saved, ids=np.asarray(["kettle"]), w=np.zeros((1, 3)), b=np.zeros(1), fingerprint=np.asarray("x"))
    embedder = HashingEmbedder()
    collection = open_collection(KnowledgeSettings(store=tmp_path / "chroma"), embedder.name)
    index = KnowledgeIndex(collection, embedder, classifiers=ClassifierFile(saved))
    await index.ingest(root)
    vector = await index.embed_query("Is the saddle leather?")
    assert index.topic_probabilities(vector, [])[0][0] == "saddle"
    reloaded = ClassifierFile(saved).load()
    assert reloaded is not None and sorted(reloaded.ids) == ["kettle", "saddle"]
