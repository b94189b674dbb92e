"""Soak: `relaydesk run` workers as separate processes behind a load balancer, on PostgreSQL, Redis and a
Chroma server, under faults; every customer message must be stored and answered exactly once.

    .venv/bin/python bench/soak.py [--messages 10000] [--customers 1000] [--active 48] [--quick]

The topology of docker-compose.yml without Docker: PostgreSQL and Redis of this machine (a fresh database,
Redis db 15 behind a TCP relay the run can cut), `chroma run` on a free port fed by one `relaydesk kb
ingest` job, the Telegram Bot API and Slack Web API fakes of tests/fakes; Telegram's webhook requests are
spread over the live workers as nginx would (the next one on a refused connection), from the sender itself
so that the measuring process spends no second HTTP hop of this 2-core machine's CPU.
Customers behave like people: each asks questions of different articles of knowledge/ one after another,
waiting for each answer; some ask for a person instead (one Slack card each). Telegram's side is played as
Telegram does it: an update is re-sent until a worker answers 2xx, at most `--active` at once.

Phases in one run, after a warm-up of both workers:
  one worker    the first share of the customers, the balancer sending to worker 1 only
  two workers   as many customers again, both workers: the ratio of the two rates is the scaling figure
  faults        the rest, both workers, while it kills -9 a worker (and restarts it), cuts Redis for a
                while, and injects Telegram 429s and Slack 5xx throughout

It prints messages sent, stored, answered exactly once, lost and duplicated, handoff cards, and p50/p99
of the time to answer (post of the update to the reply reaching Telegram) per phase, with the cores each
part used meanwhile (/proc): the workers, PostgreSQL, the Chroma server, this process (the fakes and the
customers) and the rest of the machine, which tells whether a second worker had a core to run on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import aiohttp
import asyncpg
import redis
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, header, percentile
from tests.fakes.slack_api import QUEUE, FakeSlack
from tests.fakes.telegram_api import TOKEN, Call, FakeTelegram

PG_ADMIN = os.environ.get("RELAYDESK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = ("127.0.0.1", 6379)
REDIS_DB = 15  # a database of its own, flushed at the start
SECRET = "soak-webhook-secret"
BIN = Path(sys.executable).parent
ANSWER_TIMEOUT_S = 120.0  # a customer waits this long for an answer before the next question
PERSON = {"en": "I want to talk to a person, please", "ru": "Позовите, пожалуйста, живого оператора"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the parts -------------------------------------------------------------------------------------


class RedisRelay:
    """A TCP relay in front of Redis that the run can cut: open connections drop, new ones are refused."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self, seconds: float) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._links):
            writer.close()
        await asyncio.sleep(seconds)
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._links):
            writer.close()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*REDIS)
        except OSError:
            writer.close()
            return
        self._links |= {writer, up_writer}

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._links -= {writer, up_writer}


@dataclass
class Worker:
    """One `relaydesk run` process (webhook mode) with its own HTTP port and log file."""

    name: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    core: int | None = None  # the one CPU it may run on (a worker per core), or any

    def start(self) -> None:
        env = {**self.env, "RELAYDESK__SERVER__PORT": str(self.port)}
        pin = None if self.core is None else partial(os.sched_setaffinity, 0, {self.core})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "relaydesk"), "run"], env=env, stdout=out, stderr=out, preexec_fn=pin
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            await asyncio.to_thread(self.process.wait, 30)

    async def ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"worker {self.name} exited ({self.process.returncode}); see {self.log}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{self.port}/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.5)
        raise RuntimeError(f"worker {self.name} not ready after {timeout:.0f}s; see {self.log}")


# -- where the CPU went ---------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its threads so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15 of proc(5)


def machine_cpu_s() -> float:
    """CPU seconds the whole machine was busy (every core, not idle or waiting on I/O) since boot."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / CLOCK_TICKS  # guest time is counted in user already


def postgres_pids() -> list[int]:
    pids = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "postgres":
                pids.append(int(comm.parent.name))
    return pids


class CpuMeter:
    """Cores used by each part of the run between `start` and `stop`; a process that started or died meanwhile
    is left out (so a phase that kills a worker undercounts the workers)."""

    def __init__(self, parts: dict[str, list[int]]) -> None:
        self._parts = {name: list(pids) for name, pids in parts.items()}
        self._before: dict[int, float] = {}
        self._machine = self._began = 0.0

    def start(self) -> None:
        self._before = {pid: process_cpu_s(pid) for pids in self._parts.values() for pid in pids}
        self._machine, self._began = machine_cpu_s(), time.monotonic()

    def stop(self) -> dict[str, float]:
        seconds = time.monotonic() - self._began
        cores = {}
        for name, pids in self._parts.items():
            spent = ((process_cpu_s(pid), self._before[pid]) for pid in pids)
            cores[name] = sum(after - before for after, before in spent if after >= before) / seconds
        machine = (machine_cpu_s() - self._machine) / seconds
        cores |= {"rest of the machine": machine - sum(cores.values()), "machine": machine}
        return {name: round(value, 2) for name, value in cores.items()}


# -- customers -------------------------------------------------------------------------------------


def questions_by_article() -> dict[str, dict[str, list[str]]]:
    """article id -> language -> the customer questions of knowledge/'s articles."""
    found: dict[str, dict[str, list[str]]] = {}
    for path in sorted((REPO / "knowledge").rglob("*.md")):
        front = yaml.safe_load(path.read_text(encoding="utf-8").split("---")[1])
        found.setdefault(front["id"], {}).setdefault(front.get("lang", "en"), []).extend(front.get("questions") or [])
    return found


@dataclass
class Customer:
    chat: int
    language: str
    texts: list[str]
    wants_person: bool = False

    @property
    def name(self) -> str:
        return f"Soak{self.chat}"


def make_customers(count: int, messages: int, first_chat: int, rng: random.Random) -> list[Customer]:
    """Customers who ask `messages` questions in all (each of other articles), one in twenty asking for a person."""
    articles = questions_by_article()
    customers: list[Customer] = []
    chats = itertools.count(first_chat)
    left = messages
    per = max(1, messages // count)
    while left > 0:
        language = rng.choice(("en", "ru"))
        chat = next(chats)
        if chat % 20 == 0:
            customers.append(Customer(chat, language, [PERSON[language]], wants_person=True))
            left -= 1
            continue
        ids = [a for a, by_lang in articles.items() if by_lang.get(language)]
        chosen = rng.sample(ids, min(per, left, len(ids)))
        customers.append(Customer(chat, language, [rng.choice(articles[a][language]) for a in chosen]))
        left -= len(chosen)
    return customers


@dataclass
class Ledger:
    """What each customer saw: replies in their Telegram chat, and their messages reaching the operators' Slack
    (the handoff card, or a later message posted in its thread)."""

    replies: dict[int, list[float]] = field(default_factory=dict)  # chat -> times a sendMessage succeeded
    cards: Counter[int] = field(default_factory=Counter)  # chat -> handoff cards posted for it
    forwarded: Counter[str] = field(default_factory=Counter)  # "SoakN: text" -> posts in the card's thread
    arrived: dict[int, asyncio.Event] = field(default_factory=dict)
    posted: dict[int, list[float]] = field(default_factory=dict)  # chat -> when each message was first posted
    texts: dict[int, list[str]] = field(default_factory=dict)  # chat -> the replies it got, for the examples
    webhook_statuses: Counter[int] = field(default_factory=Counter)
    began: float = field(default_factory=time.monotonic)  # the clock of the examples and the fault log

    def on_call(self, call: Call) -> None:
        if call.method == "sendmessage" and call.status == 200:
            chat = int(call.params["chat_id"])
            self.replies.setdefault(chat, []).append(time.monotonic())
            self.texts.setdefault(chat, []).append(str(call.params.get("text", ""))[:80])
            self._woken(chat)

    async def watch_slack(self, slack: FakeSlack) -> None:
        """Attribute what the fake Slack receives: "SoakN needs a person ..." cards, "SoakN: text" thread posts."""
        read = 0
        while True:
            for post in slack.messages[read:]:
                if post.thread_ts is None and " needs a person" in post.text:
                    head = post.text.split(" needs a person")[0]
                    self.cards[int(head[4:])] += 1
                elif post.thread_ts is not None and post.text.startswith("Soak") and ": " in post.text:
                    head = post.text.split(": ")[0]
                    self.forwarded[post.text] += 1
                    self._woken(int(head[4:]))
            read = len(slack.messages)
            await asyncio.sleep(0.05)

    def _woken(self, chat: int) -> None:
        self.arrived.setdefault(chat, asyncio.Event()).set()

    def outcome(self, customer: Customer, index: int) -> tuple[int, int, float | None]:
        """Telegram replies between a message's post and the customer's next one, posts of it in its Slack
        thread, and how long the first reply took."""
        posted = self.posted[customer.chat]
        start, end = posted[index], posted[index + 1] if index + 1 < len(posted) else float("inf")
        replies = [t for t in self.replies.get(customer.chat, []) if start <= t < end]
        forwards = self.forwarded[f"{customer.name}: {customer.texts[index]}"]
        return len(replies), forwards, replies[0] - start if replies else None

    def answers(self, customer: Customer) -> int:
        return len(self.replies.get(customer.chat, [])) + sum(
            self.forwarded[f"{customer.name}: {text}"] for text in customer.texts
        )


class Traffic:
    """Plays Telegram and the load balancer: posts customers' updates to the live workers in turn (the next
    one on a refused connection, as nginx's proxy_next_upstream), re-sent until a worker answers 2xx."""

    def __init__(self, fake: FakeTelegram, ledger: Ledger, active: int) -> None:
        self.live: list[Worker] = []
        self._turn = itertools.count()
        self._fake = fake
        self._ledger = ledger
        self._slots = asyncio.Semaphore(active)
        self._updates = itertools.count(1)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Traffic:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=70))
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._http is not None:
            await self._http.close()

    async def run(self, customers: list[Customer]) -> float:
        began = time.monotonic()
        await asyncio.gather(*(self._customer(c) for c in customers))
        return time.monotonic() - began

    async def _customer(self, customer: Customer) -> None:
        async with self._slots:
            arrived = self._ledger.arrived.setdefault(customer.chat, asyncio.Event())
            for message_id, text in enumerate(customer.texts, start=1):
                seen = self._ledger.answers(customer)
                arrived.clear()
                body = self._fake.message(
                    customer.chat,
                    text,
                    first_name=customer.name,
                    language_code=customer.language,
                    message_id=message_id,
                )
                self._ledger.posted.setdefault(customer.chat, []).append(time.monotonic())
                await self._post({"update_id": next(self._updates), "message": body})
                deadline = time.monotonic() + ANSWER_TIMEOUT_S
                while self._ledger.answers(customer) <= seen and time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(arrived.wait(), deadline - time.monotonic())
                    arrived.clear()

    async def _post(self, update: dict[str, object]) -> None:
        assert self._http is not None
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
        while True:  # Telegram re-sends an update until the bot answers 2xx
            start = next(self._turn)
            for step in range(len(self.live)):
                worker = self.live[(start + step) % len(self.live)]
                url = f"http://127.0.0.1:{worker.port}/telegram/webhook"
                try:
                    async with self._http.post(url, data=json.dumps(update), headers=headers) as response:
                        self._ledger.webhook_statuses[response.status] += 1
                        if 200 <= response.status < 300:
                            return
                        break
                except aiohttp.ClientConnectionError:
                    self._ledger.webhook_statuses[0] += 1  # refused: the next worker at once
                except TimeoutError:
                    self._ledger.webhook_statuses[0] += 1
                    break
            await asyncio.sleep(0.5)


# -- the run ---------------------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    customers: list[Customer]
    seconds: float = 0.0
    cores: dict[str, float] = field(default_factory=dict)  # used meanwhile, by part (CpuMeter)

    @property
    def messages(self) -> int:
        return sum(len(c.texts) for c in self.customers)


async def admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def stored_messages(database_url: str) -> Counter[str]:
    """Every stored customer message, with how often it was stored."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT external_id FROM message WHERE author = 'customer' AND channel = 'telegram'")
    finally:
        await conn.close()
    return Counter(str(r["external_id"]) for r in rows)  # Telegram's "<chat>:<message id>"


async def drained(database_url: str, timeout: float = 180.0) -> None:
    """Until the outbox holds nothing pending (then a moment for the watcher of Slack), or the timeout."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await conn.fetchval("SELECT count(*) FROM delivery WHERE status = 'pending'"):
                break
            await asyncio.sleep(1)
    finally:
        await conn.close()
    await asyncio.sleep(1)


async def stages(database_url: str, phases: list[Phase]) -> dict[str, object]:
    """Where each phase's answers spent their time, from the rows' own clocks: the desk (customer message
    stored → reply queued) and the outbox (queued → Telegram took it), p50/p99 in seconds."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT c.chat_id, extract(epoch FROM d.created_at - m.created_at) AS desk, "
            "extract(epoch FROM d.sent_at - d.created_at) AS outbox FROM delivery d "
            "JOIN conversation v ON v.id = d.conversation_id JOIN customer c ON c.id = v.customer_id "
            "JOIN LATERAL (SELECT created_at FROM message WHERE conversation_id = d.conversation_id "
            "AND author = 'customer' AND created_at <= d.created_at ORDER BY created_at DESC LIMIT 1) m ON true "
            "WHERE d.channel = 'telegram' AND d.status = 'sent'"
        )
    finally:
        await conn.close()
    found: dict[str, object] = {}
    for phase in phases:
        chats = {str(c.chat) for c in phase.customers}
        mine = [r for r in rows if r["chat_id"] in chats]
        found[phase.name] = {
            stage: f"{percentile(v, 50):.3f} / {percentile(v, 99):.3f}"
            for stage in ("desk", "outbox")
            if (v := [float(r[stage]) for r in mine])
        }
    return found


async def explain(database_url: str, keys: list[str]) -> dict[str, object]:
    """For a few lost messages: the conversation's state and its deliveries (kind, status, attempts, error)."""
    conn = await asyncpg.connect(database_url, timeout=5)
    try:
        found: dict[str, object] = {}
        for key in keys:
            row = await conn.fetchrow(
                "SELECT c.id, c.state FROM message m JOIN conversation c ON c.id = m.conversation_id "
                "WHERE m.external_id = $1",
                key,
            )
            if row is None:
                found[key] = "not stored"
                continue
            deliveries = await conn.fetch(
                "SELECT id, channel, kind, status, attempts, left(last_error, 80) AS error FROM delivery "
                "WHERE conversation_id = $1 ORDER BY id",
                row["id"],
            )
            found[key] = {"state": row["state"], "deliveries": [tuple(d.values()) for d in deliveries][-6:]}
        return found
    finally:
        await conn.close()


async def faults(
    workers: list[Worker],
    relay: RedisRelay,
    fake: FakeTelegram,
    slack: FakeSlack,
    stop: asyncio.Event,
    log: list[str],
    began: float,
) -> None:
    """Kill -9 a worker and bring it back, cut Redis, and sprinkle Telegram 429s and Slack 5xx."""

    def note(what: str) -> None:
        log.append(f"{time.monotonic() - began:6.1f}s {what}")

    async def sprinkle() -> None:  # Slack gets far fewer posts than Telegram: one 5xx in ten seconds
        for n in itertools.count():
            if stop.is_set():
                return
            fake.fail("sendMessage", 429, times=3, retry_after=1)
            if n % 2 == 0:
                slack.fail("chat.postMessage", 503)
            await asyncio.sleep(5)

    sprinkler = asyncio.create_task(sprinkle())
    try:
        await asyncio.sleep(15)
        victim = workers[1]
        victim.kill()  # the balancer finds out on its own, from refused connections
        note(f"kill -9 {victim.name}")
        await asyncio.sleep(5)
        victim.start()
        await victim.ready()
        note(f"{victim.name} restarted and ready")
        if not stop.is_set():
            await asyncio.sleep(10)
            note("Redis cut for 15 s")
            await relay.cut(15)
            note("Redis back")
    finally:
        sprinkler.cancel()


def report(phases: list[Phase], ledger: Ledger, stored: Counter[str]) -> tuple[dict[str, object], list[str]]:
    """The figures, and the first few messages ("<chat>:<message id>") lost, without their card or with two, to
    explain."""
    customers = [c for p in phases for c in p.customers]
    sent = sum(len(c.texts) for c in customers)
    stored_once = sum(1 for c in customers for n in range(1, len(c.texts) + 1) if stored[f"{c.chat}:{n}"] == 1)
    stored_twice = sum(1 for count in stored.values() if count > 1)
    outcomes = {(c.chat, i): ledger.outcome(c, i) for c in customers for i in range(len(c.texts))}
    # One answer a message: a reply in Telegram, or (once a person owns the conversation) a post in its Slack
    # thread; a handoff is both the customer's notice and the card.
    lost = [key for key, (replies, forwards, _) in outcomes.items() if replies == forwards == 0]
    doubled = [key for key, (replies, forwards, _) in outcomes.items() if replies > 1 or forwards > 1]
    wanting = [c for c in customers if c.wants_person]
    figures: dict[str, object] = {
        "sent": sent,
        "stored once": stored_once,
        "stored twice": stored_twice,
        "answered exactly once": len(outcomes) - len(lost) - len(doubled),
        "lost": len(lost),
        "duplicated": len(doubled),
        "asked for a person": len(wanting),
        "their handoff cards": sum(ledger.cards[c.chat] for c in wanting),
        "customers with two cards": sum(1 for n in ledger.cards.values() if n > 1),
        "other customers handed off": sum(1 for c in customers if ledger.cards[c.chat] and not c.wants_person),
        "examples (chat, message: replies, forwards)": [
            f"{chat}, {index + 1}: {outcomes[(chat, index)][:2]} at "
            f"{[round(t - ledger.began, 1) for t in ledger.replies.get(chat, [])[-3:]]} s: "
            f"{ledger.texts.get(chat, [])[-3:]}"
            for chat, index in (lost + doubled)[:10]
        ],
    }
    for phase in phases:
        waits = [w for c in phase.customers for i in range(len(c.texts)) if (w := outcomes[(c.chat, i)][2]) is not None]
        figures[phase.name] = {
            "messages": phase.messages,
            "seconds": round(phase.seconds, 1),
            "answered per s": round(len(waits) / phase.seconds, 2) if phase.seconds else 0,
            "p50 s": round(percentile(waits, 50), 3) if waits else None,
            "p99 s": round(percentile(waits, 99), 3) if waits else None,
            "cores used": phase.cores,
        }
    uncarded = [f"{c.chat}:1" for c in wanting if not ledger.cards[c.chat]]
    carded_twice = [f"{chat}:1" for chat, n in ledger.cards.items() if n > 1]
    return figures, [f"{chat}:{index + 1}" for chat, index in lost[:5]] + uncarded[:5] + carded_twice[:5]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="customer messages in all (default 10,000)")
    parser.add_argument("--customers", type=int, default=1_000, help="customers they come from")
    parser.add_argument("--active", type=int, default=48, help="customers writing at once (Telegram's connections)")
    parser.add_argument("--scaling-share", type=float, default=0.15, help="share of messages in each scaling phase")
    parser.add_argument("--quick", action="store_true", help="600 messages from 60 customers: a smoke run")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--pin",
        action="store_true",
        help="a worker per core: worker n runs on CPU n-1 only (one worker alone uses more than a core otherwise)",
    )
    args = parser.parse_args()
    if args.quick:
        args.messages, args.customers = 600, 60
    rng = random.Random(args.seed)
    header("soak: workers behind webhooks on PostgreSQL, Redis and a Chroma server")

    work = Path(tempfile.mkdtemp(prefix="relaydesk-soak-"))
    database = f"relaydesk_soak_{uuid.uuid4().hex[:8]}"
    await admin(f'CREATE DATABASE "{database}"')
    database_url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{database}"
    redis.Redis(host=REDIS[0], port=REDIS[1], db=REDIS_DB).flushdb()

    chroma_port = free_port()
    with (work / "chroma.log").open("wb") as out:
        chroma = subprocess.Popen(
            [str(BIN / "chroma"), "run", "--path", str(work / "chroma"), "--port", str(chroma_port)],
            stdout=out,
            stderr=out,
        )
    fake, slack, relay = FakeTelegram(), FakeSlack(), RedisRelay()
    await fake.start()
    await slack.start()
    await relay.start()
    ledger = Ledger()
    fake.on_call(ledger.on_call)
    watcher = asyncio.create_task(ledger.watch_slack(slack))

    env = {
        **os.environ,
        "OMP_WAIT_POLICY": "PASSIVE",
        "RELAYDESK_CONFIG": str(REPO / "config.yaml"),
        "RELAYDESK__DATABASE__URL": database_url.replace("postgresql://", "postgresql+asyncpg://"),
        "RELAYDESK__REDIS__URL": f"redis://127.0.0.1:{relay.port}/{REDIS_DB}",
        "RELAYDESK__KNOWLEDGE__CHROMA_URL": f"http://127.0.0.1:{chroma_port}",
        "RELAYDESK__TELEGRAM__TOKEN": TOKEN,
        "RELAYDESK__TELEGRAM__API_BASE": fake.base_url,
        "RELAYDESK__TELEGRAM__MODE": "webhook",
        "RELAYDESK__TELEGRAM__WEBHOOK_SECRET": SECRET,
        "RELAYDESK__TELEGRAM__RATE_LIMIT_MESSAGES": "1000",  # never reached, but asked of Redis each message
        "RELAYDESK__SLACK__BOT_TOKEN": slack.token,
        "RELAYDESK__SLACK__APP_TOKEN": "",
        "RELAYDESK__SLACK__SIGNING_SECRET": "soak-signing-secret",
        "RELAYDESK__SLACK__API_BASE": slack.base_url,
        "RELAYDESK__SLACK__QUEUE_CHANNEL": QUEUE,
    }
    cores = sorted(os.sched_getaffinity(0))
    workers = [
        Worker(f"worker-{n}", env, work / f"worker-{n}.log", core=cores[(n - 1) % len(cores)] if args.pin else None)
        for n in (1, 2)
    ]
    for worker in workers:
        worker.env = {**env, "RELAYDESK__TELEGRAM__WEBHOOK_URL": f"http://127.0.0.1:{worker.port}/telegram/webhook"}
    try:
        began = time.monotonic()
        ingest = await asyncio.create_subprocess_exec(
            str(BIN / "relaydesk"), "kb", "ingest", env=workers[0].env, stdout=subprocess.DEVNULL
        )
        if await ingest.wait() != 0:
            raise RuntimeError("relaydesk kb ingest failed")
        for worker in workers:  # one after another: the second finds the schema migrated
            worker.start()
        await asyncio.gather(*(w.ready() for w in workers))
        print(f"ingest job and two workers up in {time.monotonic() - began:.0f}s ({work})")

        customers = make_customers(args.customers, args.messages, 1000, rng)
        share = int(len(customers) * args.scaling_share)
        warm = max(2, share // 10)  # each worker's first questions (lazy loads, caches) stay out of the rates
        phases = [
            Phase("warm-up", customers[:warm]),
            Phase("one worker", customers[warm:share]),
            Phase("two workers", customers[share : 2 * share]),
            Phase("faults", customers[2 * share :]),
        ]
        fault_log: list[str] = []
        async with Traffic(fake, ledger, args.active) as traffic:
            for phase, live in zip(phases, (workers, workers[:1], workers, workers), strict=True):
                print(f"{time.monotonic() - ledger.began:6.1f}s {phase.name}: {phase.messages} messages", flush=True)
                traffic.live = list(live)
                stop = asyncio.Event()
                chaos = phase.name == "faults" and asyncio.create_task(
                    faults(workers, relay, fake, slack, stop, fault_log, ledger.began)
                )
                meter = CpuMeter(
                    {
                        "workers": [w.process.pid for w in workers if w.process is not None],
                        "postgres": postgres_pids(),
                        "chroma server": [chroma.pid],
                        "fakes and customers": [os.getpid()],
                    }
                )
                meter.start()
                phase.seconds = await traffic.run(phase.customers)
                phase.cores = meter.stop()
                stop.set()
                if chaos:
                    await chaos
        await drained(database_url)  # deliveries still under way (a Slack card retried after a 5xx) land
        figures, lost = report(phases, ledger, await stored_messages(database_url))
        figures["what became of the lost and the odd cards"] = await explain(database_url, lost)
        figures["where the time went (p50 / p99 s)"] = await stages(database_url, phases)
        one, two = (figures[p.name] for p in phases[1:3])
        assert isinstance(one, dict) and isinstance(two, dict)
        figures["two workers / one"] = round(two["answered per s"] / one["answered per s"], 2)
        figures["faults"] = fault_log
        figures["webhook answers"] = dict(ledger.webhook_statuses)
        print(json.dumps(figures, indent=2, ensure_ascii=False))
    finally:
        watcher.cancel()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
        chroma.terminate()
        await relay.close()
        await slack.close()
        await fake.stop()
        await admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
