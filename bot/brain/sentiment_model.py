"""Sentiment read from the message's e5 query embedding by a small trained head (numpy only).

The analyzer already embeds every message (multilingual-e5-small, query side) to find its topic; a small
net over that vector, plus the lexicon's score as a few extra features (one hidden ReLU layer; a single
layer is a multinomial logistic regression), gives three probabilities (negative, neutral, positive).
The score is p(positive) - p(negative), the expected mood in -1 … 1; the label comes from that score
against the thresholds stored with the weights, so label and score never disagree. No second encoder
pass; two small matrix products.

The weights (`sentiment_head.npz`) are retrained by `bench/sentiment.py` from public data; which
sources and their licences are listed in `sentiment_head.md` beside them, the figures in
bench/README.md. The head only reads vectors of the embedder it was trained on (`fits`): with any
other embedder (hashing fallback, an OpenAI model) use the lexicon, `score_sentiment`."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, SentimentResult, score_sentiment
from bot.domain.types import Sentiment

HEAD = Path(__file__).with_name("sentiment_head.npz")
LABELS = (Sentiment.NEGATIVE, Sentiment.NEUTRAL, Sentiment.POSITIVE)  # the outputs of the last layer
LEXICON_FEATURES = 3


class SentimentModelError(RuntimeError):
    """The weights file is missing or unusable."""


def lexicon_features(text: str, language: str) -> np.ndarray:
    """What the lexicon says, as features beside the embedding: its score and whether it leans either way.

    The embedding misses some cues the lexicon's rules catch (negation, emoji, "charged twice"); the
    head learns how much to trust them."""
    score = score_sentiment(text, language).score
    return np.array([score, float(score <= NEGATIVE_THRESHOLD), float(score >= POSITIVE_THRESHOLD)], np.float32)


Layer = tuple[np.ndarray, np.ndarray]  # weights (inputs, outputs), bias (outputs,)


def batch_probabilities(layers: tuple[Layer, ...], x: np.ndarray) -> np.ndarray:
    """The head's forward pass over rows of inputs (vector, then lexicon features): (n, 3) probabilities."""
    for i, (weights, bias) in enumerate(layers):
        x = x @ weights + bias
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    x = x - x.max(1, keepdims=True)
    exp = np.exp(x)
    return exp / exp.sum(1, keepdims=True)


@dataclass(frozen=True)
class SentimentModel:
    layers: tuple[Layer, ...]  # a ReLU between consecutive layers; the first has standardisation folded in
    embedder: str  # the embedder whose vectors the head was trained on
    dimensions: int
    lexicon: bool  # lexicon features follow the vector
    negative_at: float = NEGATIVE_THRESHOLD  # score at or below: negative
    positive_at: float = POSITIVE_THRESHOLD  # score at or above: positive

    @classmethod
    def load(cls, path: Path = HEAD) -> SentimentModel:
        try:
            with np.load(path, allow_pickle=False) as data:
                count = int(data["layers"])
                layers = tuple(
                    (np.asarray(data[f"weights_{i}"], np.float32), np.asarray(data[f"bias_{i}"], np.float32))
                    for i in range(count)
                )
                embedder = str(data["embedder"])
                dimensions = int(data["dimensions"])
                lexicon = bool(data["lexicon"])
                negative_at, positive_at = (float(x) for x in data["thresholds"])
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise SentimentModelError(f"sentiment head {path}: cannot be read ({exc})") from exc
        width = dimensions + (LEXICON_FEATURES if lexicon else 0)
        for weights, bias in layers:
            if weights.ndim != 2 or weights.shape[0] != width or bias.shape != weights.shape[1:]:
                raise SentimentModelError(f"sentiment head {path}: weights {weights.shape} do not fit {width} inputs")
            if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
                raise SentimentModelError(f"sentiment head {path}: weights are not finite")
            width = weights.shape[1]
        if not layers or width != len(LABELS):
            raise SentimentModelError(f"sentiment head {path}: {len(layers)} layers do not end in {len(LABELS)} labels")
        return cls(layers, embedder, dimensions, lexicon, negative_at, positive_at)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {
            "layers": np.array(len(self.layers)),
            "embedder": np.array(self.embedder),
            "dimensions": np.array(self.dimensions),
            "lexicon": np.array(self.lexicon),
            "thresholds": np.array([self.negative_at, self.positive_at], np.float32),
        }
        for i, (weights, bias) in enumerate(self.layers):
            arrays[f"weights_{i}"], arrays[f"bias_{i}"] = weights.astype(np.float32), bias.astype(np.float32)
        np.savez(path, **arrays)

    def fits(self, embedder_name: str, dimensions: int) -> bool:
        """True when vectors of this embedder are what the head was trained to read."""
        return embedder_name == self.embedder and dimensions == self.dimensions

    def probabilities(self, vector: np.ndarray, text: str, language: str) -> np.ndarray:
        """p(negative), p(neutral), p(positive)."""
        x = np.asarray(vector, dtype=np.float32)
        if self.lexicon:
            x = np.concatenate([x, lexicon_features(text, language)])
        return batch_probabilities(self.layers, x[None, :])[0]

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
