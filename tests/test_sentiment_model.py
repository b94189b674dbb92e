"""The trained sentiment head over real multilingual-e5-small embeddings, and priority built on its score."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bot.analysis.intent import priority, wants_human
from bot.analysis.sentiment_model import HEAD, SentimentModel, SentimentModelError
from bot.config import EmbeddingSettings
from bot.domain import Priority, Sentiment
from bot.embeddings import LocalEmbedder, cpu_has_avx2, create_embedder

MESSAGES = {  # text: (language, what must come out)
    # harm and anger the lexicon read as neutral: negative or urgent, and an operator soon
    "Someone got into my account last night, changed the email and password, and now I can't log in": ("en", "harm"),
    "Your movers dropped the wardrobe and cracked the floor tiles in our hallway. Who pays for the repair?": (
        "en",
        "harm",
    ),
    "I was charged twice for order 5531 and my account is overdrawn, fix this today": ("en", "harm"),
    "The operator I spoke to was rude, talked down to me and hung up": ("en", "harm"),
    "Оператор нахамил мне и бросил трубку": ("ru", "harm"),
    "С карты списали деньги дважды, теперь счёт в минусе": ("ru", "harm"),
    # thanks and praise
    "Thank you so much, the replacement arrived and works perfectly!": ("en", Sentiment.POSITIVE),
    "Спасибо большое, всё пришло вовремя, очень довольна": ("ru", Sentiment.POSITIVE),
    # plain questions
    "How do I return an item?": ("en", Sentiment.NEUTRAL),
    "Где мой заказ?": ("ru", Sentiment.NEUTRAL),
}


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    """Each message embedded on its own, as the analyzer does (the query side, the bundled model)."""
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    embedder = create_embedder(EmbeddingSettings())
    assert isinstance(embedder, LocalEmbedder)

    async def embed() -> dict[str, np.ndarray]:
        try:
            return {text: (await embedder.queries([text]))[0] for text in MESSAGES}
        finally:
            await embedder.close()

    return asyncio.run(embed())


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    return SentimentModel.load()


def test_the_shipped_head_reads_the_bundled_embedder(model: SentimentModel) -> None:
    assert model.fits("multilingual-e5-small", 384)
    assert not model.fits("hashing-384", 384)  # same size, meaningless to the head: use the lexicon


@pytest.mark.parametrize("text", list(MESSAGES))
def test_mood_and_priority_of_real_messages(model: SentimentModel, vectors: dict[str, np.ndarray], text: str) -> None:
    language, expected = MESSAGES[text]
    result = model.score(vectors[text], text, language)
    assert -1.0 <= result.score <= 1.0
    urgency = priority(result.score, text, wants_human(text))
    if expected == "harm":
        assert urgency in (Priority.HIGH, Priority.URGENT), result
        assert result.label is Sentiment.NEGATIVE or urgency is Priority.URGENT, result
    else:
        assert result.label is expected, result


def test_a_missing_or_damaged_head_is_named(tmp_path: Path) -> None:
    with pytest.raises(SentimentModelError, match=r"nowhere\.npz"):
        SentimentModel.load(tmp_path / "nowhere.npz")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(HEAD.read_bytes()[:300])
    with pytest.raises(SentimentModelError, match=r"damaged\.npz"):
        SentimentModel.load(damaged)
    wrong = tmp_path / "wrong.npz"
    with np.load(HEAD) as data:
        parts = dict(data)
    np.savez(wrong, **{**parts, "weights_0": parts["weights_0"][:10]})
    with pytest.raises(SentimentModelError, match="do not fit"):
        SentimentModel.load(wrong)
    last = int(parts["layers"]) - 1
    short = tmp_path / "short.npz"
    np.savez(
        short,
        **{**parts, f"weights_{last}": parts[f"weights_{last}"][:, :2], f"bias_{last}": parts[f"bias_{last}"][:2]},
    )
    with pytest.raises(SentimentModelError, match="labels"):
        SentimentModel.load(short)
