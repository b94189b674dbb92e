"""The LLM agent path's own overhead per message, over the raw HTTP round trips it makes.

A fake OpenAI server (tests/fakes/openai_server.py) answers instantly with a small rule-based brain:
half the messages are knowledge questions (search_knowledge -> FinalAnswer), half are late-order
complaints (get_order_status -> propose_compensation -> FinalAnswer, against the demo CRM). For each
message we time the agent (`LLMResponder.respond`) and the LLM analysis call, then replay the exact
chat requests they sent with a bare httpx client; overhead = agent time - replayed HTTP time. The
tools' own work (Chroma search, the SQLite CRM) counts as overhead: it is part of the agent path.
The CPU-time line (process CPU of the agent minus that of the replay) is the same figure with the
machine's other load taken out: on a busy machine wall-clock waits for threads and the scheduler.

    .venv/bin/python bench/agent_overhead.py [--messages 200]

Goal (issue 5): overhead <= 15 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_app
from bot.brain.analyzer import Analyzer
from bot.brain.llm.analysis import LLMAnalyzer
from bot.brain.responders.llm import LLMResponder
from tests.conftest import make_settings
from tests.fakes.openai_server import FakeOpenAI, call_tools

QUESTIONS = ["How do I return an item?", "Можно оплатить картой?", "How can I track my parcel?", "Как вернуть товар?"]
COMPLAINTS = ["My order 10234 hasn't arrived", "Мой заказ 10237 до сих пор не пришёл", "Order 10235 never came"]


def brain(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    if any(t["function"]["name"] == "MessageAnalysis" for t in body.get("tools", [])):
        labels = {"topic": None, "sentiment": "neutral", "sentiment_score": 0.0, "priority": "normal"}
        return call_tools(("MessageAnalysis", labels))
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    results = [str(m["content"]) for m in messages[last_user + 1 :] if m["role"] == "tool"]
    given = re.search(r"Order numbers the customer gave: ([^.]+)\.", str(messages[0]["content"]))
    order = given.group(1).split(",")[0].strip() if given and given.group(1) != "none" else None
    if order and not results:
        return call_tools(("get_order_status", {"order_id": order}))
    if order and "Compensation eligible: yes" in results[-1]:
        return call_tools(("propose_compensation", {"order_id": order, "percent": 10}))
    if not order and not results:
        return call_tools(("search_knowledge", {"query": str(messages[last_user]["content"])}))
    cited = re.findall(r"^\[([\w-]+)\]", results[-1], re.M)[:1] or [f"order:{order}"]
    args: dict[str, Any] = {
        "answer": "Here is what I found.",
        "cited_article_ids": cited,
        "confidence": 0.9,
        "summary": "s",
    }
    return call_tools(("FinalAnswer", args))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def replay(client: httpx.AsyncClient, fake: FakeOpenAI, calls: list[Any]) -> float:
    started = time.perf_counter()
    for call in calls:
        response = await client.post(fake.base_url + "/chat/completions", json=call.body)
        response.raise_for_status()
    return time.perf_counter() - started


async def main(messages: int) -> None:
    async with FakeOpenAI() as fake:
        fake.chat_default = brain
        with tempfile.TemporaryDirectory() as tmp:
            settings = make_settings(Path(tmp))
            settings.llm.provider = "openai"
            settings.llm.base_url = fake.base_url
            settings.llm.api_key = "sk-bench"
            app = await build_app(settings)
            responder, analyzer = app.desk._responder, app.desk._analyzer
            assert isinstance(responder, LLMResponder) and isinstance(analyzer, LLMAnalyzer)
            offline = Analyzer(app.index, settings.knowledge.top_k)
            texts = [(QUESTIONS + COMPLAINTS)[i % 7] for i in range(messages + 20)]
            agent_over, agent_cpu, analysis_over, raw_total, rounds = [], [], [], [], []
            async with httpx.AsyncClient() as client:
                for i, text in enumerate(texts):
                    fake.calls.clear()
                    t0 = time.perf_counter()
                    analysis = await analyzer.analyse(text)
                    t1, c1 = time.perf_counter(), time.process_time()
                    answer = await responder.respond(text, analysis, [])
                    t2, c2 = time.perf_counter(), time.process_time()
                    assert "llm unavailable" not in answer.reason, answer.reason
                    calls = fake.called("/v1/chat/completions")
                    t3 = time.perf_counter()
                    await offline.analyse(text)
                    offline_s = time.perf_counter() - t3
                    raw_analysis = await replay(client, fake, calls[:1])
                    c3 = time.process_time()
                    raw_agent = await replay(client, fake, calls[1:])
                    c4 = time.process_time()
                    if i < 20:  # warm-up
                        continue
                    agent_over.append((t2 - t1 - raw_agent) * 1000)
                    agent_cpu.append(((c2 - c1) - (c4 - c3)) * 1000)
                    analysis_over.append((t1 - t0 - offline_s - raw_analysis) * 1000)
                    raw_total.append((raw_agent + raw_analysis) * 1000)
                    rounds.append(len(calls))
            await app.close()
    total = [a + b for a, b in zip(agent_over, analysis_over, strict=True)]
    print(f"messages: {messages}; chat round trips per message: {statistics.mean(rounds):.1f}")
    for name, values in (
        ("agent overhead (ms)", agent_over),
        ("agent overhead, CPU time (ms)", agent_cpu),
        ("LLM analysis overhead (ms)", analysis_over),
        ("agent + analysis overhead (ms)", total),
        ("raw HTTP round trips (ms)", raw_total),
    ):
        print(f"{name:32} p50 {pct(values, 50):7.2f}   p99 {pct(values, 99):7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    asyncio.run(main(parser.parse_args().messages))
