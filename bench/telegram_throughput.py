"""Telegram channel throughput and latency, against the fake Bot API on loopback.

    .venv/bin/python -m bench.telegram_throughput [--messages 300] [--rate 0]

Three measurements in one run, on the same machine and the same questions (taken from the
repository's knowledge/ folder, one question per customer so every message gets exactly one reply):

  brain     the offline brain called directly: Desk.receive() for each message, no Telegram
  relaydesk the full Telegram path: update in (getUpdates) → router → desk → outbox → sendMessage out
  echo      a bare aiogram echo bot (start_polling + message.answer) on the same fake server

Throughput is messages answered per second with all messages sent at once (a burst); latency is
per message, from the moment the update is available to the moment sendMessage reaches the fake
Telegram (p50/p99 over the burst, so it includes queueing; `--rate N` paces the updates instead).
The goal: relaydesk keeps >= 80% of the brain's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from aiogram import Bot, Dispatcher  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from aiogram.types import Message  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import build_app  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.domain.types import Inbound  # noqa: E402
from connectors.telegram import TelegramConnector  # noqa: E402
from tests.fakes.telegram_api import Call, FakeTelegram  # noqa: E402

FIRST_CHAT = 10_000
RUN = time.strftime("%Y%m%d-%H%M%S")


@dataclass
class Result:
    name: str
    messages: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds

    def line(self) -> str:
        lat = sorted(self.latencies)
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return (
            f"{self.name:10} {self.messages:5d} msgs in {self.seconds:6.2f}s  "
            f"{self.throughput:8.1f} msg/s   p50 {p50:8.1f} ms   p99 {p99:8.1f} ms"
        )


def median_of(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.throughput)[len(results) // 2]


def questions(limit: int) -> list[str]:
    found: list[str] = []
    for path in sorted((REPO / "knowledge").rglob("*.md")):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---", 2)[1])
        found.extend(front.get("questions") or [])
    return [found[i % len(found)] for i in range(limit)]


def settings_for(work: Path, name: str) -> Settings:
    settings = Settings()
    settings.embeddings.provider = "local"
    settings.knowledge.path = REPO / "knowledge"
    settings.knowledge.store = work / "chroma"  # shared: indexed once
    settings.prompts.path = REPO / "prompts"
    settings.database.url = f"sqlite+aiosqlite:///{work}/{name}-{RUN}.db"  # fresh: old ids would be duplicates
    return settings


async def push_all(fake: FakeTelegram, texts: list[str], rate: float) -> dict[str, float]:
    """Make the updates available (all at once, or `rate` per second); returns chat → time made available."""
    pushed: dict[str, float] = {}
    for index, text in enumerate(texts):
        chat = FIRST_CHAT + index
        pushed[str(chat)] = time.perf_counter()
        fake.push_message(chat, text)
        if rate:
            await asyncio.sleep(1 / rate)
    return pushed


async def measure_replies(fake: FakeTelegram, texts: list[str], rate: float, name: str) -> Result:
    replied: dict[str, float] = {}

    def on_call(call: Call) -> None:
        if call.method == "sendmessage":
            replied.setdefault(str(call.params["chat_id"]), time.perf_counter())

    fake.on_call(on_call)
    start = time.perf_counter()
    pushed = await push_all(fake, texts, rate)
    await fake.wait_for(lambda: len(replied) >= len(texts), timeout=600)
    seconds = max(replied.values()) - start
    return Result(name, len(texts), seconds, [replied[chat] - pushed[chat] for chat in pushed])


async def bench_brain(work: Path, texts: list[str], concurrency: int, round_: int) -> Result:
    app = await build_app(settings_for(work, f"brain{round_}"))
    try:
        await app.desk.receive(Inbound("bench", "warmup", "warmup", "hello"))
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def one(index: int, text: str) -> None:
            async with gate:
                begun = time.perf_counter()
                await app.desk.receive(Inbound("bench", str(FIRST_CHAT + index), f"m{index}", text, name="Ann"))
                latencies.append(time.perf_counter() - begun)

        start = time.perf_counter()
        await asyncio.gather(*(one(i, t) for i, t in enumerate(texts)))
        return Result("brain", len(texts), time.perf_counter() - start, latencies)
    finally:
        await app.close()


async def bench_relaydesk(work: Path, texts: list[str], rate: float, round_: int, batch: int) -> Result:
    async with FakeTelegram() as fake:
        settings = settings_for(work, f"relaydesk{round_}")
        settings.telegram.token = fake.token
        settings.telegram.api_base = fake.base_url
        settings.telegram.rate_limit_messages = 0
        app = await build_app(settings)
        connector = TelegramConnector(app)
        connector.batch = batch
        await connector.start(web.Application())
        outbox = asyncio.create_task(app.outbox.run())
        try:
            await app.desk.receive(Inbound("bench", "warmup", "warmup", "hello"))
            return await measure_replies(fake, texts, rate, "relaydesk")
        finally:
            await connector.stop()
            outbox.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbox
            await app.close()


async def bench_echo(texts: list[str], rate: float) -> Result:
    async with FakeTelegram() as fake:
        session = AiohttpSession(api=TelegramAPIServer.from_base(fake.base_url))
        bot = Bot(token=fake.token, session=session)
        dispatcher = Dispatcher()

        @dispatcher.message()
        async def echo(message: Message) -> None:
            await message.answer(message.text or "?")

        polling = asyncio.create_task(dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1))
        try:
            return await measure_replies(fake, texts, rate, "echo")
        finally:
            await dispatcher.stop_polling()
            with contextlib.suppress(asyncio.CancelledError):
                await polling


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.0, help="updates per second (0: all at once)")
    parser.add_argument("--rounds", type=int, default=3, help="brain and relaydesk alternate; medians reported")
    parser.add_argument("--batch", type=int, default=100, help="updates per getUpdates call")
    parser.add_argument("--work", type=Path, help="folder for the index and databases (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    texts = questions(args.messages)
    with tempfile.TemporaryDirectory(prefix="relaydesk-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        app = await build_app(settings_for(work, "index"))  # index the knowledge base once, outside the timings
        records = app.index.count()
        await app.close()
        print(f"knowledge/: {records} records indexed with the local embedder in {time.perf_counter() - began:.1f}s")
        brains: list[Result] = []
        relaydesks: list[Result] = []
        for round_ in range(args.rounds):  # alternate, so a noisy neighbour hurts both alike
            brains.append(await bench_brain(work, texts, args.batch, round_))
            relaydesks.append(await bench_relaydesk(work, texts, args.rate, round_, args.batch))
            print(f"round {round_ + 1}:\n  {brains[-1].line()}\n  {relaydesks[-1].line()}", flush=True)
        echo = await bench_echo(texts, args.rate)
    brain = median_of(brains)
    relaydesk = median_of(relaydesks)
    pace = "burst" if not args.rate else f"{args.rate}/s"
    print(f"\n{args.messages} customer questions, one per customer, {pace}; median of {args.rounds} rounds:")
    for result in (brain, relaydesk, echo):
        print(result.line())
    share = relaydesk.throughput / brain.throughput
    print(f"relaydesk keeps {share:.0%} of the brain's throughput (goal >= 80%): {'OK' if share >= 0.8 else 'BELOW'}")
    print(f"the Telegram path alone (echo bot) handles {echo.throughput:.0f} msg/s on this machine")


if __name__ == "__main__":
    asyncio.run(main())
