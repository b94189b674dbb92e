"""The knowledge base as an admin edits it: article files, chunks, and what ingest does with them.

Ingest runs into a real embedded Chroma store with the hashing embedder (instant, deterministic).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from bot.config import KnowledgeSettings
from bot.knowledge.articles import (
    ArticleError,
    article_files,
    chunk_text,
    decode_article,
    parse_article,
    read_article,
)
from bot.knowledge.embeddings import HashingEmbedder
from bot.knowledge.index import CASE, CHUNK, QUESTION, QUESTION_PASSAGE, TITLE, KnowledgeIndex, open_collection

GOOD = """---
id: returns-policy
title: Returning an item
lang: en
tags: [returns, orders]
questions:
  - How do I return an item?
  - Can I send my order back?
---
You can return any item within 30 days.

Bring it to a pickup point.
"""


def article_text(
    article_id: str,
    title: str,
    questions: list[str],
    body: str,
    lang: str = "en",
    tags: str = "[test]",
) -> str:
    qs = "".join(f"  - {q}\n" for q in questions)
    return f"---\nid: {article_id}\ntitle: {title}\nlang: {lang}\ntags: {tags}\nquestions:\n{qs}---\n{body}\n"


def put(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# -- parse_article ----------------------------------------------------------------------------------


def test_parse_article_reads_every_field() -> None:
    article = parse_article(GOOD, "en/returns.md")
    assert article.id == "returns-policy"
    assert article.title == "Returning an item"
    assert article.lang == "en"
    assert article.tags == ("returns", "orders")
    assert article.questions == ("How do I return an item?", "Can I send my order back?")
    assert article.body == "You can return any item within 30 days.\n\nBring it to a pickup point."
    assert article.path == "en/returns.md"


def test_optional_fields_may_be_left_out() -> None:
    article = parse_article("---\nid: a\ntitle: A\nlang: RU\n---\nТекст.")
    assert (article.lang, article.tags, article.questions) == ("ru", (), ())


def test_a_single_tag_may_be_written_without_brackets() -> None:
    assert parse_article(GOOD.replace("tags: [returns, orders]", "tags: returns")).tags == ("returns",)


def test_norwegian_and_yes_no_questions_stay_text() -> None:
    """YAML 1.1 would read `no` as False and `- Yes` as True."""
    article = parse_article("---\nid: a\ntitle: Ja\nlang: no\nquestions:\n  - Yes\n  - off\n---\nTekst.")
    assert article.lang == "no"
    assert article.questions == ("Yes", "off")


def test_byte_order_mark_is_ignored() -> None:
    assert parse_article("\ufeff" + GOOD).id == "returns-policy"
    assert decode_article(("\ufeff" + GOOD).encode("utf-8")).id == "returns-policy"


def test_windows_line_endings_leave_no_carriage_returns() -> None:
    article = parse_article(GOOD.replace("\n", "\r\n"))
    assert article.id == "returns-policy"
    assert article.questions == ("How do I return an item?", "Can I send my order back?")
    assert "\r" not in article.body
    assert article.body == "You can return any item within 30 days.\n\nBring it to a pickup point."
    assert len(chunk_text(article.body, 200)) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Just some text without front matter.\n", "no front matter"),
        ("---\nid: a\ntitle: A\nlang: en\nNo closing line\n", "no front matter"),
        ("---\nid: [unclosed\ntitle: A\n---\nBody.", "bad front matter"),
        ("---\n- a\n- b\n---\nBody.", "bad front matter"),
        ("---\n---\nBody.", "bad front matter"),
        ("---\ntitle: A\nlang: en\n---\nBody.", "missing id"),
        ("---\nid: ''\ntitle: A\nlang: en\n---\nBody.", "missing id"),
        ("---\nid: returns policy\ntitle: A\nlang: en\n---\nBody.", "bad id 'returns policy'"),
        ("---\nid: ../etc\ntitle: A\nlang: en\n---\nBody.", "bad id"),
        ("---\nid: a\nlang: en\n---\nBody.", "missing title"),
        ("---\nid: a\ntitle: [A, B]\nlang: en\n---\nBody.", "title must be text"),
        ("---\nid: a\ntitle: A\n---\nBody.", "missing or bad lang"),
        ("---\nid: a\ntitle: A\nlang: english\n---\nBody.", "missing or bad lang 'english'"),
        ("---\nid: a\ntitle: A\nlang: en\n---\n", "empty body"),
        ("---\nid: a\ntitle: A\nlang: en\n---\n   \n\n", "empty body"),
        ("---\nid: a\ntitle: A\nlang: en\nquestions: {how: now}\n---\nBody.", "questions must be a list"),
        ("---\nid: a\ntitle: A\nlang: en\nquestions: How do I return?\n---\nBody.", "questions must be a list"),
        ("---\nid: a\ntitle: A\nlang: en\nquestions:\n  - [nested]\n---\nBody.", "questions must be a list"),
        ("---\nid: a\ntitle: A\nlang: en\ntags: {a: b}\n---\nBody.", "tags must be a list"),
        ("---\nid: a\ntitle: A\nlang: en\n---\nBo\x00dy.", "binary content"),
    ],
)
def test_bad_articles_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ArticleError, match=re.escape(reason)):
        parse_article(text)


def test_questions_folded_into_one_line_are_refused() -> None:
    """Forgetting the dashes makes YAML fold the questions into one string: say so, don't merge them."""
    text = "---\nid: a\ntitle: A\nlang: en\nquestions:\n  How do I return?\n  Can I send it back?\n---\nBody."
    with pytest.raises(ArticleError, match="questions must be a list"):
        parse_article(text)


def test_non_utf8_file_is_reported() -> None:
    with pytest.raises(ArticleError, match="not UTF-8"):
        decode_article(GOOD.replace("item", "itém").encode("cp1252"))


def test_binary_file_is_reported(tmp_path: Path) -> None:
    path = put(tmp_path, "image.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ArticleError):
        read_article(path, tmp_path)


def test_read_article_records_the_path_relative_to_the_folder(tmp_path: Path) -> None:
    path = put(tmp_path, "en/returns.md", GOOD)
    assert read_article(path, tmp_path).path == "en/returns.md"


def test_article_files_skip_readme_hidden_and_draft_folders(tmp_path: Path) -> None:
    for rel in ["en/a.md", "ru/b.MD", "README.md", "en/.hidden.md", "_drafts/c.md", ".git/d.md", "en/notes.txt"]:
        put(tmp_path, rel, GOOD)
    assert [str(p.relative_to(tmp_path)) for p in article_files(tmp_path)] == ["en/a.md", "ru/b.MD"]


# -- chunk_text -------------------------------------------------------------------------------------


def long_article(sections: int = 8, paragraphs: int = 3) -> str:
    parts = ["Intro paragraph that says what this article is about."]
    n = 0
    for s in range(sections):
        parts.append(f"## Section {s}")
        for p in range(paragraphs):
            sentences = []
            for _ in range(4):
                n += 1
                sentences.append(f"Sentence w{n}a w{n}b w{n}c about section {s} paragraph {p}.")
            parts.append(" ".join(sentences))
    return "\n\n".join(parts)


def test_short_body_is_one_chunk() -> None:
    assert chunk_text("Just one line.", 1200) == ["Just one line."]


@pytest.mark.parametrize("limit", [200, 350, 600, 1200])
def test_every_word_lands_in_exactly_one_chunk_in_order(limit: int) -> None:
    body = long_article()
    chunks = chunk_text(body, limit)
    assert len(chunks) > 1
    assert " ".join(chunks).split() == body.split()
    assert all(0 < len(c) <= limit for c in chunks)


def test_paragraphs_that_fit_are_never_cut() -> None:
    body = long_article()
    chunks = chunk_text(body, 600)
    for paragraph in body.split("\n\n"):
        assert any(paragraph in c for c in chunks), paragraph[:40]


def test_sections_start_chunks_and_headings_keep_their_text() -> None:
    body = long_article(sections=6, paragraphs=2)
    chunks = chunk_text(body, 600)
    headings = re.findall(r"^## .*$", body, re.M)
    starts = [c.splitlines()[0] for c in chunks]
    assert sum(s.startswith("## ") for s in starts) >= len(headings) - 1
    for chunk in chunks:
        assert not re.search(r"(^|\n)## [^\n]*$", chunk), f"chunk ends with a bare heading: {chunk[-60:]!r}"


def test_heading_without_a_blank_line_still_splits() -> None:
    body = "A" * 150 + " words.\n## Next\n" + "B " * 80
    chunks = chunk_text(body, 200)
    assert chunks[1].startswith("## Next")


def test_heading_moves_to_the_chunk_with_its_text() -> None:
    first = "First paragraph " + "x " * 40  # ~100 characters
    heading = "## Delivery"
    long_paragraph = "Parcels travel " + "far " * 40  # ~175 characters
    chunks = chunk_text(f"{first}\n\n{heading}\n\n{long_paragraph}", 200)
    assert chunks[0].strip() == first.strip()
    assert chunks[1].startswith(heading) and "Parcels travel" in chunks[1]


def test_one_giant_paragraph_is_cut_at_sentence_ends() -> None:
    body = " ".join(f"Sentence number {i} says something useful." for i in range(200))
    chunks = chunk_text(body, 300)
    assert len(chunks) > 10
    assert all(len(c) <= 300 for c in chunks)
    assert all(c.endswith(".") for c in chunks)
    assert " ".join(chunks).split() == body.split()


def test_giant_paragraph_without_sentences_is_cut_between_words() -> None:
    words = [f"word{i}" for i in range(600)]
    chunks = chunk_text(" ".join(words), 250)
    assert all(len(c) <= 250 for c in chunks)
    assert " ".join(chunks).split() == words


def test_a_word_longer_than_the_limit_is_the_only_thing_cut() -> None:
    url = "https://example.com/" + "a" * 500
    body = f"See {url} for details."
    chunks = chunk_text(body, 200)
    assert all(len(c) <= 200 for c in chunks)
    assert "".join(chunks).replace(" ", "") == body.replace(" ", "")
    assert chunks[0] == "See"  # the URL is not glued to a neighbour and cut in the middle needlessly


def test_giant_paragraph_between_small_ones_keeps_order() -> None:
    body = "Before.\n\n" + " ".join(f"w{i}" for i in range(400)) + "\n\nAfter."
    chunks = chunk_text(body, 200)
    assert chunks[0].startswith("Before.")
    assert chunks[-1].endswith("After.")
    assert " ".join(chunks).split() == body.split()


# -- ingest -----------------------------------------------------------------------------------------

KB = {
    "en/returns.md": article_text(
        "returns-policy",
        "Returning an item",
        ["How do I return an item?", "Can I send my order back?"],
        "You can return any item within 30 days. Bring it to a pickup point.",
    ),
    "ru/returns.md": article_text(
        "returns-policy",
        "Возврат товара",
        ["Как вернуть товар?", "Можно ли вернуть заказ?"],
        "Вернуть товар можно в течение 30 дней.",
        lang="ru",
    ),
    "en/tracking.md": article_text(
        "order-tracking",
        "Tracking your order",
        ["Where is my order?", "How can I track my parcel?"],
        "Open My orders and press Track.",
        tags="[orders, delivery]",
    ),
    "en/payment.md": article_text(
        "payment-methods",
        "Ways to pay",
        ["Which payment methods do you accept?"],
        "We accept bank cards and cash on delivery.",
    ),
}


def records_in(kb: dict[str, str], chunk_chars: int = 1200) -> int:
    total = 0
    for text in kb.values():
        article = parse_article(text)
        # the title, each question twice (as a query and as a passage), the body's chunks
        total += 1 + 2 * len(article.questions) + len(chunk_text(article.body, chunk_chars))
    return total


class Desk:
    """A knowledge folder, its Chroma collection and the index over them."""

    def __init__(self, tmp_path: Path, kb: dict[str, str] | None = None, chunk_chars: int = 1200) -> None:
        self.root = tmp_path / "knowledge"
        self.root.mkdir()
        for rel, text in (KB if kb is None else kb).items():
            put(self.root, rel, text)
        self.embedder = HashingEmbedder()
        self.collection = open_collection(KnowledgeSettings(store=tmp_path / "chroma"), self.embedder.name)
        self.index = KnowledgeIndex(self.collection, self.embedder, chunk_chars)

    def records(self, **where: Any) -> list[tuple[dict[str, Any], str]]:
        clause: dict[str, Any] = (
            {"$and": [{k: v} for k, v in where.items()]} if len(where) > 1 else where if where else {}
        )
        got = self.collection.get(where=clause or None, include=["metadatas", "documents"])
        return list(zip(got["metadatas"], got["documents"], strict=True))

    async def top(self, question: str) -> str:
        hits = await self.index.search(question, 5)
        return hits[0].article_id


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path)


async def test_first_ingest_indexes_everything(desk: Desk) -> None:
    report = await desk.index.ingest(desk.root)
    assert (report.added, report.updated, report.removed, report.unchanged) == (4, 0, 0, 0)
    assert report.errors == []
    assert report.records == records_in(KB) == desk.index.count()
    assert await desk.top("Where is my order?") == "order-tracking"
    assert await desk.top("Which payment methods do you accept?") == "payment-methods"


async def test_every_record_carries_article_title_lang_and_tags(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    records = desk.records()
    assert records
    for meta, document in records:
        assert {"article_id", "title", "lang", "tags", "kind"} <= set(meta)
        assert document
    tracking = desk.records(article_id="order-tracking")
    assert {m["tags"] for m, _ in tracking} == {"orders,delivery"}
    assert {m["title"] for m, _ in tracking} == {"Tracking your order"}
    assert {m["kind"] for m, _ in tracking} == {TITLE, QUESTION, QUESTION_PASSAGE, CHUNK}
    assert {m["lang"] for m, _ in desk.records(article_id="returns-policy")} == {"en", "ru"}


async def test_reingest_of_an_unchanged_folder_touches_nothing(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    before = desk.records()
    report = await desk.index.ingest(desk.root)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 0, 0, 4)
    assert report.errors == []
    assert desk.records() == before


async def test_edited_article_answers_its_new_question_and_forgets_the_old(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    put(
        desk.root,
        "en/payment.md",
        article_text("payment-methods", "Ways to pay", ["Can I pay with cryptocurrency?"], "Bitcoin is welcome."),
    )
    report = await desk.index.ingest(desk.root)
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 1, 0, 3)
    assert await desk.top("Can I pay with cryptocurrency?") == "payment-methods"
    questions = [doc for _, doc in desk.records(article_id="payment-methods", kind=QUESTION)]
    assert questions == ["Can I pay with cryptocurrency?"]
    chunks = [doc for _, doc in desk.records(article_id="payment-methods", kind=CHUNK)]
    assert chunks == ["Bitcoin is welcome."]
    assert report.records == desk.index.count()


async def test_an_answered_article_shows_its_edit_and_its_deletion_after_reingest(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    before = desk.index.article("payment-methods", ["en"])  # read once: now held in memory
    assert before is not None and desk.index.article("payment-methods", ["en"]) == before
    put(desk.root, "en/payment.md", article_text("payment-methods", "Ways to pay", ["Crypto?"], "Bitcoin is welcome."))
    await desk.index.ingest(desk.root)
    after = desk.index.article("payment-methods", ["en"])
    assert after is not None and (after.title, after.body) == ("Ways to pay", "Bitcoin is welcome.")
    (desk.root / "en/payment.md").unlink()
    await desk.index.ingest(desk.root)
    assert desk.index.article("payment-methods", ["en"]) is None


async def test_deleted_file_stops_answering(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    (desk.root / "en/tracking.md").unlink()
    report = await desk.index.ingest(desk.root)
    assert (report.added, report.updated, report.removed) == (0, 0, 1)
    assert desk.records(article_id="order-tracking") == []
    hits = await desk.index.search("Where is my order?", 10)
    assert "order-tracking" not in {h.article_id for h in hits}


async def test_moved_file_keeps_answering(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    (desk.root / "en/tracking.md").rename(desk.root / "en/orders-tracking.md")
    report = await desk.index.ingest(desk.root)
    assert (report.added, report.removed, report.errors) == (1, 1, [])
    assert {m["path"] for m, _ in desk.records(article_id="order-tracking")} == {"en/orders-tracking.md"}
    assert await desk.top("Where is my order?") == "order-tracking"


async def test_malformed_file_is_reported_and_the_rest_indexed(desk: Desk) -> None:
    put(desk.root, "en/broken.md", "---\nid: broken\ntitle: Broken\n---\nNo language.")
    put(desk.root, "en/latin1.md", GOOD.replace("item", "itém").replace("returns-policy", "x").encode("cp1252"))
    report = await desk.index.ingest(desk.root)
    assert report.added == 4
    errors = dict(report.errors)
    assert set(errors) == {"en/broken.md", "en/latin1.md"}
    assert "lang" in errors["en/broken.md"]
    assert "UTF-8" in errors["en/latin1.md"]
    assert desk.records(article_id="broken") == []
    again = await desk.index.ingest(desk.root)  # still reported, every time, until fixed
    assert {path for path, _ in again.errors} == {"en/broken.md", "en/latin1.md"}


async def test_malformed_file_is_logged(desk: Desk, caplog: pytest.LogCaptureFixture) -> None:
    put(desk.root, "en/broken.md", "no front matter")
    await desk.index.ingest(desk.root)
    assert any("en/broken.md" in r.getMessage() and "front matter" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("lang: en\n", "", "missing or bad lang"),
        # the file's own line numbers: the bracket opens on line 3, YAML notices on line 4
        ("title: Tracking your order\n", "title: [Tracking your order\n", "bad front matter: line 4, column 5: "),
    ],
)
async def test_previously_good_file_that_breaks_keeps_its_last_good_version(
    desk: Desk, old: str, new: str, reason: str
) -> None:
    await desk.index.ingest(desk.root)
    before = desk.records(article_id="order-tracking")
    assert await desk.top("Where is my order?") == "order-tracking"
    assert old in KB["en/tracking.md"]
    put(desk.root, "en/tracking.md", KB["en/tracking.md"].replace(old, new))
    for _ in range(2):  # said every time, until fixed
        report = await desk.index.ingest(desk.root)
        [(path, said)] = report.errors
        assert path == "en/tracking.md" and reason in said and "its last good version still answers" in said
        assert report.removed == 0 and desk.records(article_id="order-tracking") == before
        assert await desk.top("Where is my order?") == "order-tracking"
    put(desk.root, "en/tracking.md", KB["en/tracking.md"].replace("Where is my order?", "Where is my parcel?"))
    fixed = await desk.index.ingest(desk.root)
    assert fixed.errors == [] and fixed.updated == 1
    assert await desk.top("Where is my parcel?") == "order-tracking"
    (desk.root / "en/tracking.md").write_text("broken again", encoding="utf-8")
    await desk.index.ingest(desk.root)
    (desk.root / "en/tracking.md").unlink()  # deleting a broken file removes its last good version too
    gone = await desk.index.ingest(desk.root)
    assert gone.removed == 1 and desk.records(article_id="order-tracking") == []


async def test_an_edit_that_loses_its_id_to_a_new_file_leaves_nothing_of_the_old_version(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    put(desk.root, "en/a-tracking.md", article_text("order-tracking", "Parcels", ["Where is my parcel?"], "New."))
    put(desk.root, "en/tracking.md", KB["en/tracking.md"].replace("Open My orders", "Open the app"))
    report = await desk.index.ingest(desk.root)  # the new file comes first and takes the id
    [(path, reason)] = report.errors
    assert path == "en/tracking.md" and "duplicate id" in reason and "last good version" not in reason
    assert desk.records(path="en/tracking.md") == []  # no half of the old version mixed into the new
    assert {d for m, d in desk.records(article_id="order-tracking", kind=QUESTION)} == {"Where is my parcel?"}


async def test_unknown_keys_and_languages_are_indexed_with_a_warning_naming_the_file_and_the_key(desk: Desk) -> None:
    put(
        desk.root, "en/typo.md", "---\nid: gift\ntitle: Gift wrap\nlang: en\nquestons:\n  - Can you wrap it?\n---\nYes."
    )
    put(desk.root, "de/gift.md", "---\nid: gift\ntitle: Geschenk\nlang: de\n---\nJa.")
    report = await desk.index.ingest(desk.root)
    assert report.errors == [] and report.added == 6
    assert sorted(report.warnings) == [
        ("de/gift.md", "lang 'de' is not a language the desk detects (en, ru)"),
        ("en/typo.md", "unknown key 'questons' ignored; the keys are id, title, lang, tags, questions, tool"),
    ]


async def test_duplicate_id_is_reported_and_skipped(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    put(
        desk.root,
        "en/zz-copy.md",
        article_text("order-tracking", "Copy", ["Is a copy answering?"], "Copied text that must not answer."),
    )
    report = await desk.index.ingest(desk.root)
    assert len(report.errors) == 1
    path, reason = report.errors[0]
    assert path == "en/zz-copy.md"
    assert "duplicate id 'order-tracking'" in reason and "en/tracking.md" in reason
    assert {m["path"] for m, _ in desk.records(article_id="order-tracking")} == {"en/tracking.md"}
    assert "Copied text that must not answer." not in [d for _, d in desk.records()]


async def test_duplicate_in_a_fresh_folder_keeps_the_first_file(tmp_path: Path) -> None:
    kb = {
        "a.md": article_text("same", "First", ["First question?"], "First body."),
        "b.md": article_text("same", "Second", ["Second question?"], "Second body."),
    }
    desk = Desk(tmp_path, kb)
    report = await desk.index.ingest(desk.root)
    assert report.added == 1 and [p for p, _ in report.errors] == ["b.md"]
    assert {m["title"] for m, _ in desk.records(article_id="same")} == {"First"}


async def test_deleting_the_original_lets_the_duplicate_take_over(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    put(desk.root, "en/zz-copy.md", article_text("order-tracking", "Copy", ["Copy?"], "Copy body."))
    await desk.index.ingest(desk.root)
    (desk.root / "en/tracking.md").unlink()
    report = await desk.index.ingest(desk.root)
    assert report.errors == []
    assert {m["path"] for m, _ in desk.records(article_id="order-tracking")} == {"en/zz-copy.md"}


async def test_translations_share_an_id_and_are_all_indexed(desk: Desk) -> None:
    report = await desk.index.ingest(desk.root)
    assert report.errors == []
    assert await desk.top("Как вернуть товар?") == "returns-policy"
    ru = desk.index.article("returns-policy", ["ru"])
    en = desk.index.article("returns-policy", ["en"])
    assert ru is not None and en is not None
    assert (ru.lang, ru.title, ru.body) == ("ru", "Возврат товара", "Вернуть товар можно в течение 30 дней.")
    assert (en.lang, en.title) == ("en", "Returning an item")


async def test_article_falls_back_to_another_language(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    tracking = desk.index.article("order-tracking", ["ru"])  # only in English
    assert tracking is not None
    assert (tracking.lang, tracking.title, tracking.body) == (
        "en",
        "Tracking your order",
        "Open My orders and press Track.",
    )
    preferred = desk.index.article("returns-policy", ["de", "ru", "en"])
    assert preferred is not None and preferred.lang == "ru"
    assert desk.index.article("no-such-article", ["en"]) is None


@pytest.mark.parametrize("copies", [1, 8])  # 8: more chunks than are fetched by record id
async def test_long_article_comes_back_whole_in_order(tmp_path: Path, copies: int) -> None:
    body = "\n\n".join([long_article()] * copies)
    desk = Desk(tmp_path, {"long.md": article_text("long", "Long", ["Long?"], body)}, chunk_chars=300)
    await desk.index.ingest(desk.root)
    text = desk.index.article("long", ["en"])
    assert text is not None and len(text.chunks) > 5 * copies
    assert text.body.split() == body.split()


async def test_changing_the_chunk_size_rechunks_on_next_ingest(tmp_path: Path) -> None:
    body = long_article()
    desk = Desk(tmp_path, {"long.md": article_text("long", "Long", ["Long?"], body)}, chunk_chars=1200)
    await desk.index.ingest(desk.root)
    coarse = len(desk.records(kind=CHUNK))
    smaller = KnowledgeIndex(desk.collection, desk.embedder, chunk_chars=300)
    report = await smaller.ingest(desk.root)
    assert report.updated == 1
    assert len(desk.records(kind=CHUNK)) == len(chunk_text(body, 300)) > coarse


async def test_resolved_cases_are_found_with_their_reusable_flag(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    await desk.index.add_case("41", "My parcel arrived damaged, what now?", "We will send a new one.", "en", True)
    await desk.index.add_case("42", "Can I change the delivery address?", "Write to us before dispatch.", "en", False)
    damaged = (await desk.index.search("My parcel arrived damaged, what now?", 3))[0]
    assert (damaged.article_id, damaged.kind, damaged.reusable) == ("case-41", CASE, True)
    address = (await desk.index.search("Can I change the delivery address?", 3))[0]
    assert (address.article_id, address.kind, address.reusable) == ("case-42", CASE, False)
    answer = desk.index.article("case-42", ["en"])
    assert answer is not None and answer.body == "Write to us before dispatch."
    assert desk.index.article("case-404", ["en"]) is None


async def test_cases_survive_reingest_and_can_be_updated(desk: Desk) -> None:
    await desk.index.ingest(desk.root)
    await desk.index.add_case("7", "Do you ship to Iceland?", "Not yet.", "en", False)
    await desk.index.add_case("7", "Do you ship to Iceland?", "Yes, since May.", "en", True)
    report = await desk.index.ingest(desk.root)
    assert report.removed == 0
    hit = (await desk.index.search("Do you ship to Iceland?", 3))[0]
    assert (hit.article_id, hit.reusable) == ("case-7", True)
    answer = desk.index.article("case-7", ["en"])
    assert answer is not None and answer.body == "Yes, since May."


async def test_search_scores_and_an_empty_index(tmp_path: Path) -> None:
    desk = Desk(tmp_path, {})
    assert await desk.index.search("anything", 5) == []
    put(desk.root, "a.md", KB["en/tracking.md"])
    await desk.index.ingest(desk.root)
    hits = await desk.index.search("Where is my order?", 50)  # more than there are records
    assert len(hits) == desk.index.count()
    assert hits[0].kind == QUESTION and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)


async def test_missing_knowledge_folder_is_a_clear_error(tmp_path: Path) -> None:
    desk = Desk(tmp_path, {})
    with pytest.raises(FileNotFoundError, match=r"knowledge folder not found: .*nowhere"):
        await desk.index.ingest(tmp_path / "nowhere")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
async def test_unreadable_file_is_reported_not_fatal(desk: Desk) -> None:
    path = put(desk.root, "en/secret.md", GOOD.replace("returns-policy", "secret"))
    path.chmod(0)
    try:
        report = await desk.index.ingest(desk.root)
    finally:
        path.chmod(0o644)
    assert [p for p, _ in report.errors] == ["en/secret.md"]
    assert report.added == 4


async def test_collection_names_are_valid_for_any_model_name(tmp_path: Path) -> None:
    settings = KnowledgeSettings(store=tmp_path / "chroma")
    for name in ["openai:text-embedding-3-small", "x" * 59 + "-" + "y" * 10, "a/b_", "hf:org/model@main"]:
        collection = open_collection(settings, name)
        assert collection.name.startswith("kb-")
