"""Retrain the sentiment head (bot/brain/sentiment_head.npz) and measure it against the lexicon.

Data: /work/shared/data/sentiment/{train,heldout}/<source>.jsonl (see its README). Each text is
embedded once as the analyzer embeds a message (`create_embedder(settings.embeddings)`, the query side,
entities cut out, the first 2,000 characters) and cached in /tmp/relaydesk-bench/sentiment-*.npz, so
only the first run pays the hour of embedding. Choices (the head's form and size, epochs,
regularisation, class weights, sources, lexicon features, thresholds) are made on a validation part
of train/ split off by a hash of the text; heldout/ is only reported (`--measure` reports a given head
without training).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, REPO, header, summary
from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD
from bot.brain.sentiment_model import HEAD, Layer, SentimentModel, batch_probabilities, lexicon_features
from bot.brain.triage.entities import query_text
from bot.config import load_settings
from bot.knowledge.embeddings import create_embedder

DATA = Path("/work/shared/data/sentiment")
EMBEDDER = "multilingual-e5-small"  # LocalEmbedder.name: the head reads only this model's vectors

BATCH = 64
# The order of embedding: the goal sources' held-out sets, then every training set (all a choice on
# validation needs), then the other held-out sets; within each, the goal sources first, then the others,
# most useful first.
SOURCES = (
    "sentirueval2015",
    "rusentitweet",
    "tweeteval_sentiment",
    "airline_tweets",
    "opensentimentcorpus",
    "rusentiment",
    "sst2",
    "uci_sentiment_sentences",
    "romip2012_news_quotes",
)
GOAL_SOURCES = SOURCES[:4]


def read(split: str, source: str) -> list[dict[str, str]]:
    with (DATA / split / f"{source}.jsonl").open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def cache_path(split: str, source: str, texts: list[str], embedder_name: str) -> Path:
    digest = hashlib.sha256("\n".join([embedder_name, *texts]).encode()).hexdigest()[:12]
    return CACHE / f"sentiment-{split}-{source}-{digest}.npz"


async def embed_all(embedder: object, texts: list[str]) -> np.ndarray:
    """Query embeddings in batches, shortest texts together (less padding), returned in input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), embedder.dimensions), dtype=np.float32)  # type: ignore[attr-defined]
    started = time.perf_counter()
    for start in range(0, len(order), BATCH):
        chunk = order[start : start + BATCH]
        vectors = await embedder.queries([texts[i] for i in chunk])  # type: ignore[attr-defined]
        out[chunk] = vectors
        if (start // BATCH) % 20 == 0:
            print(f"  {start + len(chunk)}/{len(texts)} in {time.perf_counter() - started:.0f} s", flush=True)
    return out


async def load_vectors(split: str, source: str, embedder: object) -> tuple[list[dict[str, str]], np.ndarray]:
    rows = read(split, source)
    texts = [query_text(row["text"]) for row in rows]
    path = cache_path(split, source, texts, embedder.name)  # type: ignore[attr-defined]
    if path.exists():
        return rows, np.load(path)["vectors"]
    print(f"embedding {split}/{source}: {len(texts)} texts -> {path}", flush=True)
    vectors = await embed_all(embedder, texts)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, vectors=vectors.astype(np.float32))
    tmp.replace(path)
    return rows, vectors


async def embed_everything() -> None:
    settings = load_settings(REPO / "config.yaml")
    embedder = create_embedder(settings.embeddings)
    others = [s for s in SOURCES if s not in GOAL_SOURCES]
    plan = [("heldout", s) for s in GOAL_SOURCES] + [("train", s) for s in SOURCES]  # every candidate for a choice
    plan += [("heldout", s) for s in others]
    try:
        for split, source in plan:
            await load_vectors(split, source, embedder)
    finally:
        await embedder.close()


# -- data -------------------------------------------------------------------------------------------

LABELS = ("negative", "neutral", "positive")
EXPLORE_EPOCHS = 15  # of each hidden-layer candidate, reported every third epoch
VALIDATION_PERCENT = 15  # of train/, by a hash of the text: every choice is made there, never on heldout/
OPEN_SOURCES = ("opensentimentcorpus",)  # CC BY-SA 3.0; the rest state no licence or a non-commercial one


@dataclass
class Part:
    """One source's rows of one split: vectors, lexicon features, labels."""

    source: str
    lang: str
    texts: list[str]
    vectors: np.ndarray
    lexicon: np.ndarray  # (n, 3): lexicon_features
    labels: np.ndarray  # indices into LABELS

    def take(self, mask: np.ndarray) -> Part:
        texts = [t for t, keep in zip(self.texts, mask, strict=True) if keep]
        return Part(self.source, self.lang, texts, self.vectors[mask], self.lexicon[mask], self.labels[mask])


def in_validation(text: str) -> bool:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % 100 < VALIDATION_PERCENT


async def load_parts(split: str, sources: tuple[str, ...], embed_missing: bool) -> dict[str, Part]:
    settings = load_settings(REPO / "config.yaml")
    embedder = create_embedder(settings.embeddings)
    parts = {}
    try:
        for source in sources:
            rows = read(split, source)
            texts = [row["text"] for row in rows]
            analyzed = [query_text(t) for t in texts]
            if not embed_missing and not cache_path(split, source, analyzed, embedder.name).exists():
                print(f"  {split}/{source}: not embedded yet, left out")
                continue
            _, vectors = await load_vectors(split, source, embedder)
            lexicon = np.stack([lexicon_features(t, row["lang"]) for t, row in zip(texts, rows, strict=True)])
            labels = np.array([LABELS.index(row["label"]) for row in rows])
            parts[source] = Part(source, rows[0]["lang"], texts, vectors, lexicon, labels)
    finally:
        await embedder.close()
    return parts


# -- the head ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    sources: tuple[str, ...]
    lexicon: bool = True
    # none | class: each class of a source weighs the same | source: each source weighs the same | source+class
    weighting: str = "source"
    scaled: tuple[tuple[str, float], ...] = ()  # (source, factor): a source weighing more or less than the rest
    l2: float = 1e-2
    hidden: int = 0  # 0: multinomial logistic regression; n: one hidden ReLU layer of n units
    epochs: int = 12  # of the hidden-layer head (mini-batch Adam)
    dropout: float = 0.0  # of the hidden units while training
    seeds: int = 1  # hidden-layer nets trained from different random starts, averaged
    thresholds: tuple[float, float] = (NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD)


def sample_weights(parts: list[Part], weighting: str, scaled: tuple[tuple[str, float], ...] = ()) -> np.ndarray:
    factors = dict(scaled)
    out = []
    for part in parts:
        counts = np.bincount(part.labels, minlength=3).astype(np.float64)
        if weighting == "none":
            w = np.ones(len(part.labels))
        elif weighting == "class":
            w = (len(part.labels) / (np.count_nonzero(counts) * counts))[part.labels]
        elif weighting == "source":
            w = np.full(len(part.labels), 1.0 / len(part.labels))
        else:
            w = (1.0 / (np.count_nonzero(counts) * counts))[part.labels]
        out.append(w * factors.get(part.source, 1.0))
    weights = np.concatenate(out)
    return weights / weights.mean()


def inputs(parts: list[Part], lexicon: bool) -> np.ndarray:
    x = np.concatenate([p.vectors for p in parts])
    return np.hstack([x, np.concatenate([p.lexicon for p in parts])]) if lexicon else x


class Adam:
    def __init__(self, params: list[np.ndarray], rate: float) -> None:
        self.params, self.rate, self.step = params, rate, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def update(self, grads: list[np.ndarray], beta1: float = 0.9, beta2: float = 0.999) -> None:
        self.step += 1
        for param, grad, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            param -= self.rate * (m / (1 - beta1**self.step)) / (np.sqrt(v / (1 - beta2**self.step)) + 1e-8)


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True)


def fold(mean: np.ndarray, std: np.ndarray, layers: list[Layer]) -> tuple[Layer, ...]:
    """Standardisation folded into the first layer, so the product feeds raw inputs."""
    w, b = layers[0]
    first = (w / std[:, None]).astype(np.float32)
    return ((first, (b - mean @ first).astype(np.float32)), *((w.copy(), b.copy()) for w, b in layers[1:]))


def fit_logistic(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float, steps: int = 400) -> tuple[Layer, ...]:
    """Weighted multinomial logistic regression, full-batch Adam on standardised inputs (deterministic:
    zero start, no sampling)."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = ((x - mean) / std).astype(np.float32)
    w, b = np.zeros((z.shape[1], 3), np.float32), np.zeros(3, np.float32)
    onehot = np.eye(3, dtype=np.float32)[y]
    share = (weights / weights.sum()).astype(np.float32)[:, None]
    adam = Adam([w, b], rate=0.05)
    for _ in range(steps):
        g = (softmax(z @ w + b) - onehot) * share
        adam.update([z.T @ g + l2 * w, g.sum(0)])
    return fold(mean, std, [(w, b)])


def fit_mlp(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, config: Config, batch: int = 256, seed: int = 0
) -> Iterator[tuple[Layer, ...]]:
    """One hidden ReLU layer, mini-batch Adam on standardised inputs, a fixed seed (reproducible); yields
    the head after each epoch, so the number of epochs can be chosen on validation."""
    rng = np.random.default_rng(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = ((x - mean) / std).astype(np.float32)
    n, d = z.shape
    w1 = (rng.standard_normal((d, config.hidden)) * np.sqrt(2 / d)).astype(np.float32)
    b1 = np.zeros(config.hidden, np.float32)
    w2 = (rng.standard_normal((config.hidden, 3)) * np.sqrt(1 / config.hidden)).astype(np.float32)
    b2 = np.zeros(3, np.float32)
    onehot = np.eye(3, dtype=np.float32)[y]
    share = (weights / weights.mean()).astype(np.float32)[:, None]
    adam = Adam([w1, b1, w2, b2], rate=1e-3)
    keep = 1.0 - config.dropout
    for _ in range(config.epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            zb = z[rows]
            h = np.maximum(zb @ w1 + b1, 0.0)
            if config.dropout:
                h *= (rng.random(h.shape) < keep).astype(np.float32) / keep
            g = (softmax(h @ w2 + b2) - onehot[rows]) * share[rows] / len(rows)
            gh = (g @ w2.T) * (h > 0)
            adam.update([zb.T @ gh + config.l2 * w1, gh.sum(0), h.T @ g + config.l2 * w2, g.sum(0)])
        yield fold(mean, std, [(w1, b1), (w2, b2)])


def merge(nets: tuple[tuple[Layer, ...], ...]) -> tuple[Layer, ...]:
    """Several one-hidden-layer nets as one wider net whose logits are their mean (an ensemble that loads
    and runs as a single head)."""
    hidden, out = zip(*nets, strict=True)
    return (
        (np.hstack([w for w, _ in hidden]), np.concatenate([b for _, b in hidden])),
        (np.vstack([w for w, _ in out]) / len(nets), np.mean([b for _, b in out], axis=0)),
    )


def heads(parts: dict[str, Part], config: Config) -> Iterator[SentimentModel]:
    """The head of this configuration (after each epoch, for a hidden layer)."""
    chosen = [parts[s] for s in config.sources if s in parts]
    x = inputs(chosen, config.lexicon)
    y = np.concatenate([p.labels for p in chosen])
    weights = sample_weights(chosen, config.weighting, config.scaled)
    if config.hidden:
        runs = [fit_mlp(x, y, weights, config, seed=seed) for seed in range(config.seeds)]
        fits: Iterator[tuple[Layer, ...]] = (merge(nets) for nets in zip(*runs, strict=True))
    else:
        fits = iter([fit_logistic(x, y, weights, config.l2)])
    dims = chosen[0].vectors.shape[1]
    for layers in fits:
        yield SentimentModel(layers, EMBEDDER, dims, config.lexicon, *config.thresholds)


def train(parts: dict[str, Part], config: Config) -> SentimentModel:
    *_, model = heads(parts, config)
    return model


def predict_scores(model: SentimentModel, part: Part) -> np.ndarray:
    """p(pos) - p(neg) for every row, as SentimentModel.score computes it (vectorised)."""
    x = np.hstack([part.vectors, part.lexicon]) if model.lexicon else part.vectors
    p = batch_probabilities(model.layers, x)
    return p[:, 2] - p[:, 0]


def to_labels(scores: np.ndarray, thresholds: tuple[float, float]) -> np.ndarray:
    return np.where(scores <= thresholds[0], 0, np.where(scores >= thresholds[1], 2, 1))


def official(labels: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """Macro-F1 of positive and negative (SentiRuEval's measure) and accuracy."""
    f1s = []
    for cls in (0, 2):
        tp = np.count_nonzero((predicted == cls) & (labels == cls))
        fp = np.count_nonzero((predicted == cls) & (labels != cls))
        fn = np.count_nonzero((predicted != cls) & (labels == cls))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(f1s) / 2, float(np.mean(labels == predicted))


def goal_f1(model: SentimentModel, parts: dict[str, Part], thresholds: tuple[float, float] | None = None) -> float:
    """The choice criterion: mean macro-F1 over the goal sources (Russian and English tweets) at hand."""
    cut = thresholds or (model.negative_at, model.positive_at)
    goal = [s for s in GOAL_SOURCES if s in parts]
    return float(np.mean([official(parts[s].labels, to_labels(predict_scores(model, parts[s]), cut))[0] for s in goal]))


def lexicon_labels(part: Part) -> np.ndarray:
    return to_labels(part.lexicon[:, 0], (NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD))


# -- choices on the validation part ------------------------------------------------------------------


def split_validation(parts: dict[str, Part]) -> tuple[dict[str, Part], dict[str, Part]]:
    fit_parts, val_parts = {}, {}
    for source, part in parts.items():
        mask = np.array([in_validation(t) for t in part.texts])
        fit_parts[source], val_parts[source] = part.take(~mask), part.take(mask)
    return fit_parts, val_parts


def report_line(name: str, model: SentimentModel, val: dict[str, Part]) -> float:
    per = {
        s: official(p.labels, to_labels(predict_scores(model, p), (model.negative_at, model.positive_at)))[0]
        for s, p in val.items()
    }
    goal = goal_f1(model, val)
    print(f"  {name:<44} goal {goal:.3f} | " + " ".join(f"{s[:10]} {f:.3f}" for s, f in per.items()), flush=True)
    return goal


EXTRA_SOURCES = ("rusentiment", "sst2", "uci_sentiment_sentences", "romip2012_news_quotes")


def explore(parts: dict[str, Part], what: list[str]) -> None:
    """One choice at a time, on the validation part of train/ (criterion: mean macro-F1 of the goal sources)."""
    fit_parts, val = split_validation(parts)
    print(f"validation: {sum(len(p.labels) for p in val.values())} rows of train/ ({VALIDATION_PERCENT}% by hash)")
    lex = {s: official(p.labels, lexicon_labels(p))[0] for s, p in val.items()}
    print(
        f"  {'lexicon':<44} goal {np.mean([lex[s] for s in GOAL_SOURCES if s in lex]):.3f} | "
        + " ".join(f"{s[:10]} {f:.3f}" for s, f in lex.items())
    )
    base = replace(CHOSEN, sources=tuple(s for s in CHOSEN.sources if s in parts))
    if "sources" in what:
        extra = [s for s in EXTRA_SOURCES if s in parts]
        without = tuple(s for s in base.sources if s not in EXTRA_SOURCES)
        candidates = [("the goal sources and opensentimentcorpus", replace(base, sources=without))]
        candidates += [(f"+ {s}", replace(base, sources=(*without, s))) for s in extra]
        if len(extra) > 1:
            candidates.append(("+ " + ", ".join(extra), replace(base, sources=(*without, *extra))))
            half = tuple((s, 0.5) for s in extra)
            candidates.append(("+ those at half weight", replace(base, sources=(*without, *extra), scaled=half)))
        for name, config in candidates:
            report_line(name, train(fit_parts, config), val)
    if "form" not in what:
        return
    candidates = [
        ("logistic regression (the previous head)", replace(base, hidden=0)),
        ("hidden 128, one seed", replace(base, hidden=128, seeds=1)),
        ("hidden 256, one seed", replace(base, seeds=1)),
        ("hidden 256, one seed, l2 0.1", replace(base, seeds=1, l2=0.1)),
        ("hidden 256, one seed, l2 0.001", replace(base, seeds=1, l2=1e-3)),
        ("hidden 256, one seed, dropout 0.3", replace(base, seeds=1, dropout=0.3)),
    ]
    for name, config in candidates:
        for epoch, model in enumerate(heads(fit_parts, replace(config, epochs=EXPLORE_EPOCHS)), 1):
            if not config.hidden or epoch % 3 == 0:
                report_line(name + (f", {epoch} epochs" if config.hidden else ""), model, val)
    model = train(fit_parts, base)
    report_line("chosen", model, val)
    print("  decision rule of the chosen head (score = p(pos) - p(neg)):")
    for cut in ((-0.25, 0.25), (-0.15, 0.15), (-0.2, 0.2), (-0.3, 0.3), (-0.35, 0.35), (-0.2, 0.3), (-0.3, 0.2)):
        print(f"    thresholds {cut}: goal {goal_f1(model, val, cut):.3f}")
    argmax = []
    for s in (s for s in GOAL_SOURCES if s in val):
        x = np.hstack([val[s].vectors, val[s].lexicon]) if model.lexicon else val[s].vectors
        argmax.append(official(val[s].labels, np.argmax(batch_probabilities(model.layers, x), 1))[0])
    print(f"    argmax of the probabilities: goal {np.mean(argmax):.3f}")


# -- the held-out report and the weights ------------------------------------------------------------

# Chosen on the validation part (bench/README.md has the figures): see explore().
CHOSEN = Config(
    sources=(*GOAL_SOURCES, "opensentimentcorpus"),
    lexicon=True,
    weighting="source",
    l2=0.01,
    hidden=256,
    epochs=12,
    seeds=3,
)


def heldout_report(model: SentimentModel, heldout: dict[str, Part]) -> None:
    print("\n| source | lang | n | head macro-F1 | lexicon macro-F1 | head accuracy | lexicon accuracy |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    by_lang: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for source, part in heldout.items():
        ours = to_labels(predict_scores(model, part), (model.negative_at, model.positive_at))
        theirs = lexicon_labels(part)
        (f_ours, a_ours), (f_lex, a_lex) = official(part.labels, ours), official(part.labels, theirs)
        goal = " (goal)" if source in GOAL_SOURCES else ""
        print(
            f"| {source}{goal} | {part.lang} | {len(part.labels)} | **{f_ours:.3f}** | {f_lex:.3f} | "
            f"{a_ours:.3f} | {a_lex:.3f} |"
        )
        by_lang.setdefault(part.lang, []).append((part.labels, ours, theirs))
    for lang, rows in by_lang.items():
        labels, ours, theirs = (np.concatenate(c) for c in zip(*rows, strict=True))
        (f_ours, a_ours), (f_lex, a_lex) = official(labels, ours), official(labels, theirs)
        print(f"| all {lang} | {lang} | {len(labels)} | {f_ours:.3f} | {f_lex:.3f} | {a_ours:.3f} | {a_lex:.3f} |")


def latency(model: SentimentModel, part: Part, calls: int = 2000) -> None:
    """SentimentModel.score per message, as the analyzer will call it (the lexicon features included)."""
    texts, vectors = part.texts[:calls], part.vectors[:calls]
    times = []
    for text, vector in zip(texts, vectors, strict=True):
        started = time.perf_counter()
        model.score(vector, text, part.lang)
        times.append((time.perf_counter() - started) * 1000)
    s = summary(times)
    print(
        f"\nhead latency per message ({s['n']} {part.source} messages): p50 {s['p50']:.3f} ms, "
        f"p99 {s['p99']:.3f} ms, mean {s['mean']:.3f} ms"
    )


def save(model: SentimentModel, path: Path) -> None:
    model.save(path)
    print(f"\nwrote {path} ({path.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    parser.add_argument(
        "--explore",
        nargs="*",
        choices=("sources", "form"),
        help="print the choices on the validation part too: the sources, the head's form (default: both)",
    )
    parser.add_argument("--quick", action="store_true", help="only what is cached already; nothing is written")
    parser.add_argument("--out", type=Path, default=HEAD, help="where the weights go (default: the product's)")
    parser.add_argument("--measure", type=Path, help="report this head on the held-out sets instead of training")
    parser.add_argument("--heldout", nargs="+", default=SOURCES, help="the sources to report on (default: all)")
    args = parser.parse_args()
    header("sentiment head")
    if args.embed_only:
        asyncio.run(embed_everything())
        return
    heldout = asyncio.run(load_parts("heldout", tuple(args.heldout), embed_missing=not args.quick))
    if args.measure:
        model = SentimentModel.load(args.measure)
        print(f"\nthe head in {args.measure}, not retrained")
        heldout_report(model, heldout)
        latency(model, heldout.get("airline_tweets") or next(iter(heldout.values())))
        return
    parts = asyncio.run(load_parts("train", SOURCES if args.quick else CHOSEN.sources, embed_missing=not args.quick))
    if args.explore is not None:
        explore(parts, args.explore or ["sources", "form"])
    model = train(parts, CHOSEN)  # every row of train/, validation part included
    print(f"\ntrained on {', '.join(s for s in CHOSEN.sources if s in parts)}: {CHOSEN}")
    heldout_report(model, heldout)
    latency(model, heldout.get("airline_tweets") or next(iter(heldout.values())))
    if not args.quick:
        save(model, args.out)


if __name__ == "__main__":
    main()
