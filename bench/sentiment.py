"""Retrain the sentiment head (bot/analysis/sentiment_head.npz) and measure it against the lexicon.

Data: /work/shared/data/sentiment/{train,heldout}/<source>.jsonl (see its README). Each text is
embedded once with the product's embedder (`create_embedder(settings.embeddings)`, the query side,
capped at the analyzer's 2,000 characters) and cached in /tmp/relaydesk-bench/sentiment-*.npz, so
only the first run pays the ~40 minutes of embedding. Choices (regularisation, class weights,
sources, lexicon features) are made on a validation part of train/ split off by a hash of the text;
heldout/ is only reported.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CACHE, REPO, header, summary
from bot.analysis.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD
from bot.analysis.sentiment_model import HEAD, SentimentModel, lexicon_features
from bot.config import load_settings
from bot.embeddings import create_embedder

DATA = Path("/work/shared/data/sentiment")
EMBEDDER = "multilingual-e5-small"  # LocalEmbedder.name: the head reads only this model's vectors
MAX_QUERY_CHARS = 2000  # as bot/analyzer.py embeds a message
BATCH = 64
# The order of embedding: the goal sources' held-out sets and training sets first, so a partial cache
# already answers the main question.
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
        vectors = await embedder.queries([texts[i][:MAX_QUERY_CHARS] for i in chunk])  # type: ignore[attr-defined]
        out[chunk] = vectors
        if (start // BATCH) % 20 == 0:
            print(f"  {start + len(chunk)}/{len(texts)} in {time.perf_counter() - started:.0f} s", flush=True)
    return out


async def load_vectors(split: str, source: str, embedder: object) -> tuple[list[dict[str, str]], np.ndarray]:
    rows = read(split, source)
    texts = [row["text"] for row in rows]
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
    plan = [("heldout", s) for s in GOAL_SOURCES] + [("train", s) for s in GOAL_SOURCES]
    plan += [("train", others[0])] + [("heldout", s) for s in others] + [("train", s) for s in others[1:]]
    try:
        for split, source in plan:
            await load_vectors(split, source, embedder)
    finally:
        await embedder.close()


# -- data -------------------------------------------------------------------------------------------

LABELS = ("negative", "neutral", "positive")
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
            if not embed_missing and not cache_path(split, source, texts, embedder.name).exists():
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
    weighting: str = "source+class"
    l2: float = 1e-3
    thresholds: tuple[float, float] = (NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD)


def sample_weights(parts: list[Part], weighting: str) -> np.ndarray:
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
        out.append(w)
    weights = np.concatenate(out)
    return weights / weights.mean()


def inputs(parts: list[Part], lexicon: bool) -> np.ndarray:
    x = np.concatenate([p.vectors for p in parts])
    return np.hstack([x, np.concatenate([p.lexicon for p in parts])]) if lexicon else x


def fit(
    x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float, steps: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted multinomial logistic regression, full-batch Adam on standardised inputs (deterministic:
    zero start, no sampling). The standardisation is folded into the returned weights."""
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = ((x - mean) / std).astype(np.float32)
    w = np.zeros((z.shape[1], 3), np.float32)
    b = np.zeros(3, np.float32)
    onehot = np.eye(3, dtype=np.float32)[y]
    share = (weights / weights.sum()).astype(np.float32)[:, None]
    m = [np.zeros_like(w), np.zeros_like(b)]
    v = [np.zeros_like(w), np.zeros_like(b)]
    rate, beta1, beta2 = 0.05, 0.9, 0.999
    for step in range(1, steps + 1):
        logits = z @ w + b
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(1, keepdims=True)
        g = (p - onehot) * share
        grads = [z.T @ g + l2 * w, g.sum(0)]
        for i, (param, grad) in enumerate(zip((w, b), grads, strict=True)):
            m[i] = beta1 * m[i] + (1 - beta1) * grad
            v[i] = beta2 * v[i] + (1 - beta2) * grad * grad
            param -= rate * (m[i] / (1 - beta1**step)) / (np.sqrt(v[i] / (1 - beta2**step)) + 1e-8)
    weights_out = (w / std[:, None]).astype(np.float32)
    return weights_out, (b - mean @ weights_out).astype(np.float32)


def train(parts: dict[str, Part], config: Config) -> SentimentModel:
    chosen = [parts[s] for s in config.sources if s in parts]
    x = inputs(chosen, config.lexicon)
    y = np.concatenate([p.labels for p in chosen])
    w, b = fit(x, y, sample_weights(chosen, config.weighting), config.l2)
    dims = chosen[0].vectors.shape[1]
    return SentimentModel(w, b, EMBEDDER, dims, config.lexicon, *config.thresholds)


def predict_scores(model: SentimentModel, part: Part) -> np.ndarray:
    """p(pos) - p(neg) for every row, as SentimentModel.score computes it (vectorised)."""
    x = np.hstack([part.vectors, part.lexicon]) if model.lexicon else part.vectors
    logits = x @ model.weights + model.bias
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
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


def explore(parts: dict[str, Part]) -> None:
    """Greedy, one choice at a time, on the validation part of train/ (mean macro-F1 of the goal sources)."""
    fit_parts, val = split_validation(parts)
    print(f"validation: {sum(len(p.labels) for p in val.values())} rows of train/ ({VALIDATION_PERCENT}% by hash)")
    lex = {s: official(p.labels, lexicon_labels(p))[0] for s, p in val.items()}
    print(
        "  lexicon                                      goal "
        f"{np.mean([lex[s] for s in GOAL_SOURCES if s in lex]):.3f} | "
        + " ".join(f"{s[:10]} {f:.3f}" for s, f in lex.items())
    )
    base = replace(CHOSEN, sources=tuple(parts))
    for l2 in (1e-4, 1e-3, 1e-2, 3e-2):
        report_line(f"l2={l2:g}", train(fit_parts, replace(base, l2=l2)), val)
    for weighting in ("none", "class", "source", "source+class"):
        report_line(f"weighting={weighting}", train(fit_parts, replace(base, weighting=weighting)), val)
    report_line("no lexicon features", train(fit_parts, replace(base, lexicon=False)), val)
    report_line("goal sources only", train(fit_parts, replace(base, sources=GOAL_SOURCES)), val)
    for source in parts:
        if len(parts) > 1:
            rest = tuple(s for s in parts if s != source)
            report_line(f"without {source}", train(fit_parts, replace(base, sources=rest)), val)
    model = train(fit_parts, CHOSEN)
    report_line("chosen", model, val)
    print("  decision rule of the chosen head (score = p(pos) - p(neg)):")
    for cut in ((-0.25, 0.25), (-0.1, 0.1), (-0.15, 0.15), (-0.2, 0.2), (-0.3, 0.3), (-0.35, 0.35), (-0.2, 0.3)):
        print(f"    thresholds {cut}: goal {goal_f1(model, val, cut):.3f}")
    argmax = []
    for s in (s for s in GOAL_SOURCES if s in val):
        x = np.hstack([val[s].vectors, val[s].lexicon]) if model.lexicon else val[s].vectors
        argmax.append(official(val[s].labels, np.argmax(x @ model.weights + model.bias, 1))[0])
    print(f"    argmax of the probabilities: goal {np.mean(argmax):.3f}")
    no_letters = {s: np.array([not re.search(r"[^\W\d_]", t) for t in p.texts]) for s, p in val.items()}
    print(f"  texts without letters in validation: {sum(int(m.sum()) for m in no_letters.values())}")
    for s in (s for s in GOAL_SOURCES if s in val):
        m = no_letters[s]
        if m.any():
            ours = to_labels(predict_scores(model, val[s].take(m)), (model.negative_at, model.positive_at))
            print(
                f"    {s}: {int(m.sum())} rows, head right {np.mean(ours == val[s].labels[m]):.2f}, "
                f"lexicon right {np.mean(lexicon_labels(val[s].take(m)) == val[s].labels[m]):.2f}"
            )


# -- the held-out report and the weights ------------------------------------------------------------

# Chosen on the validation part (bench/README.md has the figures): see explore().
CHOSEN = Config(sources=(*GOAL_SOURCES, "opensentimentcorpus"), lexicon=True, weighting="source", l2=0.01)


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
    np.savez(
        path,
        weights=model.weights.astype(np.float32),
        bias=model.bias.astype(np.float32),
        embedder=np.array(model.embedder),
        dimensions=np.array(model.dimensions),
        lexicon=np.array(model.lexicon),
        thresholds=np.array([model.negative_at, model.positive_at], np.float32),
    )
    print(f"\nwrote {path} ({path.stat().st_size} bytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    parser.add_argument("--explore", action="store_true", help="print the choices on the validation part too")
    parser.add_argument("--quick", action="store_true", help="only what is cached already; nothing is written")
    parser.add_argument("--out", type=Path, default=HEAD, help="where the weights go (default: the product's)")
    parser.add_argument("--heldout", nargs="+", default=SOURCES, help="the sources to report on (default: all)")
    args = parser.parse_args()
    header("sentiment head")
    if args.embed_only:
        asyncio.run(embed_everything())
        return
    parts = asyncio.run(load_parts("train", SOURCES if args.quick else CHOSEN.sources, embed_missing=not args.quick))
    heldout = asyncio.run(load_parts("heldout", tuple(args.heldout), embed_missing=not args.quick))
    if args.explore:
        explore(parts)
    model = train(parts, CHOSEN)  # every row of train/, validation part included
    print(f"\ntrained on {', '.join(s for s in CHOSEN.sources if s in parts)}: {CHOSEN}")
    heldout_report(model, heldout)
    latency(model, heldout.get("airline_tweets") or next(iter(heldout.values())))
    if not args.quick:
        save(model, args.out)


if __name__ == "__main__":
    main()
