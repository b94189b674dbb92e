"""Fairness under a flood: what huge messages from a few customers cost everyone else's answers.

    .venv/bin/python bench/flood.py                        # 3 rounds of each scenario
    .venv/bin/python bench/flood.py --rounds 1             # a smoke check
    .venv/bin/python bench/flood.py --analysis-chars 4096  # as if messages were analysed whole

Desk.receive on the sample KB (knowledge/, the configured embedder, SQLite), as a webhook worker calls
it. In every round 40 ordinary customers each ask one question from knowledge/, arriving at a steady
pace (`--rate` per second); their time to answer is Desk.receive's, from arrival to the decision.
Three scenarios, interleaved round by round so that a load spike from other processes hits all alike:

  quiet     the ordinary customers alone (the baseline)
  ten       ten flooders, each sending one message of 4,096 emoji as the ordinary customers start
  one       one customer sending 30 such messages at once

Printed: the ordinary customers' p50/p99 per scenario and its ratio to quiet's, and how long the
flood itself took to be answered (every flood message is answered: nothing is dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import CACHE, REPO, bench_settings, fresh_store, header, summary
from telegram_throughput import questions

from bot.app import App, build_app
from bot.domain.types import Inbound

ORDINARY = 40
HUGE = "🙂" * 4096  # Telegram's longest message; one token per emoji
SCENARIOS: dict[str, list[tuple[str, int]]] = {  # (flooder, messages it sends)
    "quiet": [],
    "ten": [(f"flooder-{n}", 1) for n in range(10)],
    "one": [("flooder", 30)],
}


class Round:
    def __init__(self, app: App, label: str) -> None:
        self.app = app
        self.label = label

    async def send(self, chat: str, n: int, text: str) -> float:
        """Seconds from arrival to the decision."""
        started = time.perf_counter()
        inbound = Inbound("bench", f"{self.label}-{chat}", f"{self.label}-{chat}-{n}", text, name="Bench")
        decision = await self.app.desk.receive(inbound)
        assert decision.action != "duplicate", decision
        return time.perf_counter() - started

    async def ordinary(self, texts: list[str], rate: float) -> list[float]:
        tasks = []
        for n, text in enumerate(texts):
            tasks.append(asyncio.create_task(self.send(f"customer-{n}", 0, text)))
            await asyncio.sleep(1 / rate)
        return list(await asyncio.gather(*tasks))

    async def run(self, flood: list[tuple[str, int]], texts: list[str], rate: float) -> tuple[list[float], float]:
        """(the ordinary customers' times, seconds until the last flood message was answered)."""
        started = time.perf_counter()
        flooding = [asyncio.create_task(self.send(chat, n, HUGE)) for chat, count in flood for n in range(count)]
        times = await self.ordinary(texts, rate)
        await asyncio.gather(*flooding)
        return times, (time.perf_counter() - started if flooding else 0.0)


async def main(rounds: int, rate: float, analysis_chars: int | None) -> None:
    header("flood: ordinary customers' time to answer while a few send huge messages (Desk.receive, SQLite)")
    texts = questions(ORDINARY)
    times: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    flood_s: dict[str, list[float]] = {name: [] for name in SCENARIOS}
    with tempfile.TemporaryDirectory(prefix="relaydesk-flood-") as tmp:
        settings = bench_settings(Path(tmp), kb=REPO / "knowledge", store=fresh_store(CACHE / "chroma-flood"))
        if analysis_chars is not None:
            settings.automation.analysis_chars = analysis_chars
        app = await build_app(settings)
        try:
            print(
                f"embedder {app.index.embedder.name}; analysis_chars {settings.automation.analysis_chars}; "
                f"{ORDINARY} ordinary customers at {rate:g}/s; {rounds} rounds"
            )
            await Round(app, "warmup").run([], texts[:5], rate)
            for r in range(rounds):
                for name, flood in SCENARIOS.items():
                    got, took = await Round(app, f"r{r}-{name}").run(flood, texts, rate)
                    times[name].extend(got)
                    flood_s[name].append(took)
        finally:
            await app.close()
    quiet = summary(times["quiet"])
    print(f"\n{'scenario':8} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'p50 x':>7} {'p99 x':>7}  flood answered in (s)")
    for name, values in times.items():
        s = summary(values)
        answered = " ".join(f"{t:.1f}" for t in flood_s[name]) if name != "quiet" else "-"
        print(
            f"{name:8} {s['n']:4.0f} {s['p50'] * 1000:9.1f} {s['p99'] * 1000:9.1f} "
            f"{s['p50'] / quiet['p50']:7.2f} {s['p99'] / quiet['p99']:7.2f}  {answered}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=20.0, help="ordinary customers arriving per second")
    parser.add_argument("--analysis-chars", type=int, help="override automation.analysis_chars")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.rate, args.analysis_chars))
