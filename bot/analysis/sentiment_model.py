"""Sentiment read from the message's e5 query embedding by a small trained head (numpy only).

The analyzer already embeds every message (multilingual-e5-small, query side) to find its topic; a
multinomial logistic regression over that vector, plus the lexicon's score as a few extra features,
gives three probabilities (negative, neutral, positive). The score is p(positive) - p(negative), the
expected mood in -1 … 1; the label comes from that score against the thresholds stored with the
weights, so label and score never disagree. No second encoder pass; one small matrix product.

The weights (`sentiment_head.npz`) are retrained by `bench/sentiment.py` from public data; which
sources and their licences are listed in `sentiment_head.md` beside them, the figures in
bench/README.md. The head only reads vectors of the embedder it was trained on (`fits`): with any
other embedder (hashing fallback, an OpenAI model) use the lexicon, `score_sentiment`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.analysis.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, SentimentResult, score_sentiment
from bot.domain import Sentiment

HEAD = Path(__file__).with_name("sentiment_head.npz")
LABELS = (Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE)  # the columns of the weights


class SentimentModelError(RuntimeError):
    """The weights file is missing or unusable."""


def lexicon_features(text: str, language: str) -> np.ndarray:
    """What the lexicon says, as features beside the embedding: its score and whether it leans either way.

    The embedding misses some cues the lexicon's rules catch (negation, emoji, "charged twice"); the
    head learns how much to trust them."""
    score = score_sentiment(text, language).score
    return np.array([score, float(score <= NEGATIVE_THRESHOLD), float(score >= POSITIVE_THRESHOLD)], np.float32)


@dataclass(frozen=True)
class SentimentModel:
    weights: np.ndarray  # (dimensions + lexicon features, 3), standardisation already folded in
    bias: np.ndarray  # (3,)
    embedder: str  # the embedder whose vectors the head was trained on
    dimensions: int
    lexicon: bool  # lexicon features follow the vector
    negative_at: float = NEGATIVE_THRESHOLD  # score at or below: negative
    positive_at: float = POSITIVE_THRESHOLD  # score at or above: positive

    @classmethod
    def load(cls, path: Path = HEAD) -> SentimentModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                weights = np.asarray(data["weights"], dtype=np.float32)
                bias = np.asarray(data["bias"], dtype=np.float32)
                embedder = str(data["embedder"])
                dimensions = int(data["dimensions"])
                lexicon = bool(data["lexicon"])
                negative_at, positive_at = (float(x) for x in data["thresholds"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise SentimentModelError(f"sentiment head {path}: cannot be read ({exc})") from exc
        inputs = dimensions + (3 if lexicon else 0)
        if weights.shape != (inputs, len(LABELS)) or bias.shape != (len(LABELS),):
            raise SentimentModelError(f"sentiment head {path}: weights {weights.shape} do not fit {inputs} inputs")
        if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
            raise SentimentModelError(f"sentiment head {path}: weights are not finite")
        return cls(weights, bias, embedder, dimensions, lexicon, negative_at, positive_at)

    def fits(self, embedder_name: str, dimensions: int) -> bool:
        """True when vectors of this embedder are what the head was trained to read."""
        return embedder_name == self.embedder and dimensions == self.dimensions

    def probabilities(self, vector: np.ndarray, text: str, language: str) -> np.ndarray:
        """p(negative), p(neutral), p(positive)."""
        logits = np.asarray(vector, dtype=np.float32) @ self.weights[: self.dimensions] + self.bias
        if self.lexicon:
            logits += lexicon_features(text, language) @ self.weights[self.dimensions :]
        logits -= logits.max()
        exp = np.exp(logits)
        return exp / exp.sum()

    def score(self, vector: np.ndarray, text: str, language: str) -> SentimentResult:
        """The message's mood from its query embedding (and text, for the lexicon features)."""
        p = self.probabilities(vector, text, language)
        score = float(p[2] - p[0])
        if score <= self.negative_at:
            label = Sentiment.NEGATIVE
        elif score >= self.positive_at:
            label = Sentiment.POSITIVE
        else:
            label = Sentiment.NEUTRAL
        return SentimentResult(label=label, score=round(score, 4))
