"""Learning speed: how many operator-resolved examples of a new topic until the bot answers it on its own.

    .venv/bin/python bench/learning_speed.py           # 5 new topics, k = 0, 1, 2, 3, 5, 8, all of eval/sample.jsonl
    .venv/bin/python bench/learning_speed.py --quick   # 3 topics, k = 0, 1, 3, 60 sample cases: a smoke check
    .venv/bin/python bench/learning_speed.py --silent-customers   # customers never press "Talk to a person"

Protocol. The sample KB (knowledge/) is ingested into a temp store; bench/data/learning_topics.json holds
topics absent from it (gift wrapping, corporate orders, pet allergies, engraving, student discount), each
with 20 customer questions in English and Russian and the answer operators give. The first 8 questions of
a topic are its teaching pool, the other 12 are held out. Teaching goes through the real desk API as a
deployment does it: a new customer asks (`Desk.receive`); when the desk hands off, an operator replies
with the topic's answer in the customer's language (`OperatorActions.reply`), resolves and presses
"Teach the bot" (`resolve`, `teach`). A pool question the desk answers wrongly (not with one of its topic's
taught cases) gets the customer's "Talk to a person" press, as the Telegram button does it (`/human` on the
same chat through `Desk.receive`, plus `feedback(..., "not_helpful")`), and the operator answers, resolves
and teaches that handoff the same way; with `--silent-customers` nobody presses and a wrongly answered
question is never taught (the loop as it was measured first). A pool question answered right is not taught. After
every topic got k examples (k = 0, 1, 2, 3, 5, 8; all topics are taught side by side, so they also
compete), every held-out question goes through `Desk.preview` (nothing stored). A held-out question is
*answered correctly* when the desk answers on its own with one of its topic's taught cases, *wrongly*
when it answers on its own with anything else; *right draft* counts the handoffs whose draft is a case of
the right topic (what an operator sees before teaching). The baseline is k = 0 (the KB without the
learning loop); the regression check scores eval/sample.jsonl (`bot.analytics.evaluation.score`) before any
teaching and after the last k. Thresholds are the repo's config.yaml `automation` section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import REPO, bench_settings, header, stopwatch

from bot.analytics.evaluation import Case, Outcome, read_cases, score
from bot.app import App, build_app
from bot.brain.language import detect_language
from bot.config import Settings
from bot.domain.types import Inbound
from bot.knowledge.embeddings import create_embedder
from bot.knowledge.suggest import DEFAULT_SIMILARITY, Asked, suggest

DATA = Path(__file__).resolve().parent / "data" / "learning_topics.json"
POOL = 8  # teaching questions per topic; the rest are held out
KS_FULL, KS_QUICK = (0, 1, 2, 3, 5, 8), (0, 1, 3)
GOAL = 0.80

# k, held-out counts per topic, taught, pool answered by the bot right, wrong, wrong then pressed
Row = tuple[int, dict[str, dict[str, int]], int, int, int, int]


@dataclass
class Topic:
    id: str
    answers: dict[str, str]
    pool: list[str]
    held_out: list[str]
    cases: set[str] = field(default_factory=set)  # "case-<handoff id>" of the answers taught so far
    seen: int = 0  # pool questions sent through the desk
    taught: int = 0
    auto_right: int = 0  # pool questions the desk already answered itself with this topic's case (not taught)
    auto_wrong: int = 0  # ... or with something else: the customer got a wrong answer
    pressed: int = 0  # wrong answers the customer pressed "Talk to a person" on (taught by the operator)


def load_topics(quick: bool) -> list[Topic]:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    topics = [Topic(t["id"], t["answers"], t["questions"][:POOL], t["questions"][POOL:]) for t in data["topics"]]
    if quick:
        topics = [Topic(t.id, t.answers, t.pool, t.held_out[:6]) for t in topics[:3]]
    return topics


async def teach_next(app: App, topic: Topic, chat: int, silent: bool) -> None:
    """One more customer asks a pool question; the operator answers, resolves and teaches when handed off.

    A wrong answer gets "Talk to a person" pressed under it (unless `silent`), which hands the chat off."""
    question = topic.pool[topic.seen]
    topic.seen += 1
    decision = await app.desk.receive(
        Inbound(channel="bench", chat_id=str(chat), message_id=f"learn-{chat}", text=question)
    )
    if decision.action != "handoff":
        source = decision.answer.sources[0] if decision.answer and decision.answer.sources else None
        if source in topic.cases:
            topic.auto_right += 1
            return
        topic.auto_wrong += 1
        if silent:
            return
        # What connectors/telegram/handlers.py does on the button: "/human" on the same chat, then the feedback.
        decision = await app.desk.receive(
            Inbound(channel="bench", chat_id=str(chat), message_id=f"learn-{chat}:human", text="/human")
        )
        assert decision.action == "handoff", decision.action
        assert (await app.operators.feedback(decision.conversation_id, "not_helpful")).ok
        topic.pressed += 1
    answer = topic.answers[detect_language(question)]
    for step in (
        app.operators.reply(decision.conversation_id, "olga", answer),
        app.operators.resolve(decision.conversation_id, "olga"),
        app.operators.teach(decision.conversation_id, "olga"),
    ):
        result = await step
        assert result.ok, result.message
    topic.cases.add(f"case-{decision.handoff_id}")
    topic.taught += 1


async def held_out(app: App, topics: list[Topic]) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for topic in topics:
        c = counts[topic.id] = defaultdict(int)
        for question in topic.held_out:
            decision = await app.desk.preview(question)
            source = decision.answer.sources[0] if decision.answer and decision.answer.sources else None
            right = source in topic.cases
            c["n"] += 1
            c["correct"] += decision.action == "answer" and right
            c["wrong"] += decision.action == "answer" and not right
            c["handoff"] += decision.action != "answer"
            c["right_draft"] += decision.action != "answer" and right
    return counts


async def sample_eval(app: App, cases: list[Case]) -> dict[str, Any]:
    outcomes = [Outcome(case, await app.desk.preview(case.text), 0.0) for case in cases]
    return score(outcomes)


async def grouping(settings: Settings, topics: list[Topic], similarities: list[float]) -> None:
    """`kb suggest`'s grouping (bot.knowledge.suggest.suggest) of every question of the new topics, as if each was
    handed off once: how pure the suggested groups are and how much of each topic its largest group holds."""
    embedder = create_embedder(settings.embeddings)
    now = datetime.now(UTC)
    truth: dict[str, str] = {}
    asked: list[Asked] = []
    for topic in topics:
        for question in [*topic.pool, *topic.held_out]:
            truth[question] = topic.id
            asked.append(Asked(len(asked) + 1, len(asked) + 1, question, ["low_confidence"], now))
    print(f"\nkb suggest grouping of the {len(asked)} questions (groups of >= 3; purity = majority topic's share):")
    print("| similarity | groups | purity | topic's largest group holds | topics found | questions in no group |")
    print("| --- | --- | --- | --- | --- | --- |")
    for similarity in similarities:
        found = await suggest(asked, embedder, similarity=similarity, min_questions=3)
        grouped = [Counter(truth[q] for q in s.questions) for s in found]
        majority = sum(c.most_common(1)[0][1] for c in grouped)
        members = sum(sum(c.values()) for c in grouped)
        best_share = [max((c[t.id] for c in grouped), default=0) / (len(t.pool) + len(t.held_out)) for t in topics]
        topics_found = len({c.most_common(1)[0][0] for c in grouped})
        mark = " (default)" if similarity == DEFAULT_SIMILARITY else ""
        print(
            f"| {similarity}{mark} | {len(found)} | {share(majority, members)} | "
            f"{sum(best_share) / len(best_share):.3f} | {topics_found} of {len(topics)} | {len(asked) - members} |"
        )


def share(part: int, whole: int) -> str:
    return f"{part / whole:.3f}" if whole else "-"


async def run(quick: bool, provider: str | None, silent: bool) -> None:
    ks = KS_QUICK if quick else KS_FULL
    topics = load_topics(quick)
    cases = read_cases(REPO / "eval" / "sample.jsonl")
    if quick:
        cases = cases[:60]
    customers = "silent customers" if silent else "customers press Talk to a person on a wrong answer"
    header(f"learning speed ({'quick' if quick else 'full'}; {customers})")
    with tempfile.TemporaryDirectory(prefix="relaydesk-learning-") as tmp:
        settings = bench_settings(Path(tmp), kb=REPO / "knowledge", provider=provider)
        auto = settings.automation
        print(
            f"embedder: {settings.embeddings.provider}; automation: min_confidence {auto.min_confidence}, "
            f"min_margin {auto.min_margin}, mode {auto.mode}"
        )
        with stopwatch() as took:
            app = await build_app(settings)
        print(f"sample KB ingested into a temp store: {app.index.count()} records, {took[0]:.1f} s")
        try:
            before = await sample_eval(app, cases)
            rows: list[Row] = []
            chat = 0
            for k in ks:
                for topic in topics:
                    while topic.seen < k:
                        chat += 1
                        await teach_next(app, topic, chat, silent)
                rows.append(
                    (
                        k,
                        await held_out(app, topics),
                        sum(t.taught for t in topics),
                        sum(t.auto_right for t in topics),
                        sum(t.auto_wrong for t in topics),
                        sum(t.pressed for t in topics),
                    )
                )
            after = await sample_eval(app, cases)
        finally:
            await app.close()
    report(topics, rows, before, after, len(cases))
    await grouping(settings, load_topics(quick=False), [0.8, 0.82, DEFAULT_SIMILARITY, 0.86, 0.88])


def report(
    topics: list[Topic],
    rows: list[Row],
    before: dict[str, Any],
    after: dict[str, Any],
    n_cases: int,
) -> None:
    held = sum(len(t.held_out) for t in topics)
    print(
        f"\n{len(topics)} new topics, {POOL} teaching questions and {held // len(topics)} held-out questions each "
        f"({held} held out, en + ru)"
    )
    print(
        "\n| k per topic | taught (pool answered by the bot: right/wrong; wrong then pressed) | answered correctly "
        "| answered wrongly "
        "| handed off | right draft |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for k, counts, taught, auto_right, auto_wrong, pressed in rows:
        total = {
            key: sum(c[key] for c in counts.values()) for key in ("n", "correct", "wrong", "handoff", "right_draft")
        }
        baseline = " (baseline: no teaching)" if k == 0 else ""
        print(
            f"| {k}{baseline} | {taught} ({auto_right}/{auto_wrong}; {pressed}) | "
            f"{share(total['correct'], total['n'])} | "
            f"{share(total['wrong'], total['n'])} | {share(total['handoff'], total['n'])} | "
            f"{share(total['right_draft'], total['n'])} |"
        )
    print("\nanswered correctly per topic:")
    print("| topic | " + " | ".join(f"k={k}" for k, *_ in rows) + f" | first k >= {GOAL:.0%} |")
    print("| --- |" + " --- |" * (len(rows) + 1))
    for topic in topics:
        shares = [(k, counts[topic.id]["correct"] / counts[topic.id]["n"]) for k, counts, *_ in rows]
        first = next((str(k) for k, s in shares if s >= GOAL), f"> {rows[-1][0]}")
        print(f"| {topic.id} | " + " | ".join(f"{s:.2f}" for _, s in shares) + f" | {first} |")
    overall = [
        (k, sum(c["correct"] for c in counts.values()) / sum(c["n"] for c in counts.values())) for k, counts, *_ in rows
    ]
    first_all = next((str(k) for k, s in overall if s >= GOAL), f"> {rows[-1][0]} (not reached)")
    print(f"\nk at which >= {GOAL:.0%} of held-out questions are answered correctly (all topics): {first_all}")
    print(f"\nregression on eval/sample.jsonl ({n_cases} cases), before teaching -> after k={rows[-1][0]}:")
    for key in ("precision", "automation_rate", "handoff_recall", "answered", "correct"):
        print(f"  {key:16} {before[key]} -> {after[key]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 topics, k = 0, 1, 3, 60 sample cases")
    parser.add_argument("--provider", choices=("local", "hashing"), help="embedder (default: config.yaml's, local)")
    parser.add_argument(
        "--silent-customers",
        action="store_true",
        help="customers never press Talk to a person: a wrong answer is never seen by an operator",
    )
    args = parser.parse_args()
    asyncio.run(run(args.quick, args.provider, args.silent_customers))


if __name__ == "__main__":
    main()
