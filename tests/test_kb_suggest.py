"""`relaydesk kb suggest`: frequent questions the KB could not answer, grouped into draft articles.

The history is made the way a desk makes it: customers write through `Desk.receive`, operators reply,
resolve and teach through `OperatorActions`; storage is real SQLite, the index real Chroma (hashing
embedder). The KB answers only confident matches here (`min_confidence: 0.9`), so questions about
gift wrapping are handed off as `low_confidence`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select, update

from bot.app import App, build_app
from bot.cli import main
from bot.config import load_settings
from bot.domain.types import Inbound, Reason
from bot.knowledge.articles import read_article
from bot.knowledge.index import KnowledgeIndex
from bot.storage.models import Handoff
from tests.conftest import REPO, write_kb

SIMILARITY = "0.45"  # the hashing embedder's scale: shared words and 3-grams, not meaning

GIFT_EN = [
    "Do you offer gift wrapping for birthday orders?",
    "do you offer gift wrapping for birthday orders",  # the same question again: one example, asked twice
    "Do you offer gift wrapping for a birthday order?",
    "Do you offer gift wrapping?",
]
GIFT_RU = [
    "Есть ли у вас подарочная упаковка заказа?",
    "Есть ли подарочная упаковка для заказа?",
    "У вас есть подарочная упаковка заказов?",
]
BULK_EN = ["Can my company place a corporate bulk order?", "Can my company place corporate bulk orders?"]

TERSE = "yes"
GOOD = (
    'Hello! Yes, we offer gift wrapping: choose "Gift wrap" at checkout. It costs 150 RUB per order, '
    "and you can add a card with your message. Thank you for asking!"
)
GOOD_RU = "Здравствуйте! Да, подарочная упаковка есть: выберите её при оформлении заказа, она стоит 150 рублей."


def _config(tmp: Path) -> Path:
    write_kb(tmp / "knowledge")
    path = tmp / "config.yaml"
    path.write_text(
        f"embeddings:\n  provider: hashing\nautomation:\n  min_confidence: 0.9\nprompts:\n  path: {REPO / 'prompts'}\n",
        encoding="utf-8",
    )
    return path


class History:
    def __init__(self, app: App) -> None:
        self.app = app
        self.chats = 0

    async def ask(self, text: str) -> int:
        """A new customer asks `text`; returns the conversation, which must have been handed off."""
        self.chats += 1
        decision = await self.app.desk.receive(
            Inbound(channel="test", chat_id=str(self.chats), message_id=f"m{self.chats}", text=text)
        )
        assert decision.action == "handoff", (text, decision.action)
        return decision.conversation_id

    async def answer(self, text: str, reply: str | None, operator: str = "olga", teach: bool = False) -> int:
        cid = await self.ask(text)
        if reply is not None:
            assert (await self.app.operators.reply(cid, operator, reply)).ok
            assert (await self.app.operators.resolve(cid, operator)).ok
        if teach:
            assert (await self.app.operators.teach(cid, operator)).ok
        return cid


async def _make_history(config: Path) -> None:
    app = await build_app(load_settings(config))
    try:
        h = History(app)
        await h.answer(GIFT_EN[0], GOOD, "olga")  # the best answer is the oldest one: ranked by quality first
        await h.answer(GIFT_EN[1], TERSE, "ivan")
        await h.answer(GIFT_EN[2], None)  # handed off, never answered
        await h.answer(GIFT_EN[3], TERSE, "ivan")  # the same text again counts once among the answers
        await h.answer(GIFT_RU[0], "Да.", "ivan")
        await h.answer(GIFT_RU[1], GOOD_RU, "olga")
        await h.answer(GIFT_RU[2], GOOD_RU, "olga", teach=True)
        for text in BULK_EN:  # asked twice only: under --min-questions 3
            await h.answer(text, "Write to b2b@northwind.example, please.", "olga")
        # Handed off for other reasons while the KB did answer: not the KB's gap.
        for n, text in enumerate(["I want to talk to a person: how do I return an item?", "позовите оператора"]):
            cid = await h.ask(text)
            assert (await app.operators.reply(cid, "olga", f"Sure, I am here ({n}).")).ok
        # An old question outside the window.
        old = await h.answer("Do you offer gift wrapping for weddings?", GOOD, "olga")
        async with app.sessions() as session, session.begin():
            await session.execute(
                update(Handoff)
                .where(col(Handoff.conversation_id) == old)
                .values(created_at=datetime.now(UTC) - timedelta(days=60))
            )
            reasons = (await session.execute(select(Handoff.question, Handoff.reasons))).all()
    finally:
        await app.close()
    by_question = {q: r for q, r in reasons}
    # The premises of the tests below: what each kind of handoff was handed off for.
    assert by_question[GIFT_EN[0]] == [Reason.LOW_CONFIDENCE]
    assert by_question["I want to talk to a person: how do I return an item?"] == [Reason.ASKED_FOR_HUMAN]
    assert Reason.LOW_CONFIDENCE in by_question["позовите оператора"]  # no question in it: left out all the same
    assert Reason.RESPONDER_REQUEST in by_question[GIFT_EN[3]]  # the draft was an operator's earlier reply


@pytest.fixture
def history(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = _config(tmp_path)
    monkeypatch.setenv("RELAYDESK_CONFIG", str(config))
    asyncio.run(_make_history(config))
    return tmp_path


def _suggest(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["kb", "suggest", "--similarity", SIMILARITY, "--json", *extra]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def test_groups_unanswered_questions_largest_first_with_the_best_answer_first(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = _suggest(capsys)
    assert set(result) == {"since", "similarity", "considered", "suggestions"}
    assert result["considered"] == 9  # 4 + 3 gift wrapping, 2 bulk; not the requests for a person, not the old one
    en, ru = result["suggestions"]
    assert en["asked"] == 4 and en["conversations"] == 4 and en["languages"] == ["en"]
    assert sorted(en["questions"]) == sorted([GIFT_EN[0], GIFT_EN[2], GIFT_EN[3]])  # deduplicated
    assert en["title"] in en["questions"] and en["id"].startswith(("offer-gift-wrapping", "gift-wrapping"))
    assert [a["text"] for a in en["answers"]] == [GOOD, TERSE]  # best quality first; "yes" twice counts once
    assert en["answers"][0]["quality"] > en["answers"][1]["quality"]
    assert en["answers"][0]["operator"] == "olga" and not en["taught"]
    assert ru["asked"] == 3 and ru["languages"] == ["ru"] and ru["taught"]
    assert ru["answers"][0]["text"] == GOOD_RU and ru["answers"][-1]["text"] == "Да."
    assert ru["id"].isascii() and ru["id"]
    assert {"text", "operator", "language", "quality", "at", "conversation_id", "taught"} == set(ru["answers"][0])
    assert any(a["taught"] for a in ru["answers"])


def test_min_questions_and_the_window_decide_what_is_suggested(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = _suggest(capsys, "--min-questions", "2")["suggestions"]
    assert [g["asked"] for g in groups] == [4, 3, 2]
    assert groups[2]["questions"][0].startswith("Can my company place")
    everything = _suggest(capsys, "--since", "90d")
    assert everything["considered"] == 10
    assert "Do you offer gift wrapping for weddings?" in everything["suggestions"][0]["questions"]
    strict = _suggest(capsys, "--similarity", "0.99")  # the last --similarity wins: every question alone
    assert strict["suggestions"] == []


def test_text_listing_reads_as_a_review_list(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "suggest", "--similarity", SIMILARITY]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 suggested article(s) from 9 handed-off question(s)")
    assert "1. " in out and "asked 4 times in 4 conversation(s)" in out
    assert out.index(GOOD) < out.index("answer 2 (ivan")
    assert "(an answer was already taught to the bot)" in out


def test_write_makes_draft_articles_the_kb_ingest_accepts_and_never_overwrites(
    history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drafts = tmp_path / "drafts"
    result = _suggest(capsys, "--write", str(drafts))
    files = sorted(p.relative_to(drafts).as_posix() for p in drafts.rglob("*.md"))
    en, ru = result["suggestions"]
    assert files == sorted([f"en/{en['id']}.md", f"ru/{ru['id']}.md"])
    article = read_article(drafts / "en" / f"{en['id']}.md", drafts)
    assert (article.id, article.lang, article.tags) == (en["id"], "en", ("suggested",))
    assert article.body == GOOD and set(article.questions) == set(en["questions"])
    assert article.title == en["title"].rstrip("?")
    russian = read_article(drafts / "ru" / f"{ru['id']}.md", drafts)
    assert russian.body == GOOD_RU and set(russian.questions) == set(GIFT_RU)
    raw = (drafts / "en" / f"{en['id']}.md").read_text(encoding="utf-8")
    assert "# Other answer (ivan" in raw  # review notes live in YAML comments, not in the body

    async def ingest() -> tuple[int, list[tuple[str, str]]]:
        settings = load_settings(history / "config.yaml")
        from bot.app import build_index

        index: KnowledgeIndex = build_index(settings)
        report = await index.ingest(drafts)
        return report.added, report.errors

    assert asyncio.run(ingest()) == (2, [])

    before = (drafts / "en" / f"{en['id']}.md").read_text(encoding="utf-8")
    assert main(["kb", "suggest", "--similarity", SIMILARITY, "--write", str(drafts)]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite" in err and f"{en['id']}.md" in err
    assert (drafts / "en" / f"{en['id']}.md").read_text(encoding="utf-8") == before


def test_write_refuses_the_live_knowledge_folder_but_not_a_draft_folder_in_it(
    history: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    live = history / "knowledge"
    assert main(["kb", "suggest", "--similarity", SIMILARITY, "--write", str(live / "new")]) == 2
    assert "live knowledge folder" in capsys.readouterr().err
    assert not (live / "new").exists()
    assert main(["kb", "suggest", "--similarity", SIMILARITY, "--write", str(live / "_drafts")]) == 0
    assert len(list((live / "_drafts").rglob("*.md"))) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "last tuesday"], "--since: got 'last tuesday'"),
        (["--similarity", "1.5"], "--similarity: got 1.5"),
        (["--min-questions", "0"], "--min-questions: got 0"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    monkeypatch.setenv("RELAYDESK_CONFIG", str(_config(tmp_path)))
    assert main(["kb", "suggest", *args]) == 2
    assert message in capsys.readouterr().err


def test_an_empty_history_suggests_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RELAYDESK_CONFIG", str(_config(tmp_path)))
    assert main(["kb", "suggest", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["considered"] == 0 and result["suggestions"] == []
