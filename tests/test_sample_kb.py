"""The shipped help centre and its evaluation cases stay consistent as admins edit them."""

from __future__ import annotations

import json
from collections import Counter

from bot.knowledge.articles import article_files, read_article
from tests.conftest import REPO

KB = REPO / "knowledge"


def test_every_article_parses_and_exists_in_russian_and_english() -> None:
    articles = [read_article(path, KB) for path in article_files(KB)]
    languages = Counter(a.id for a in articles)
    assert len(languages) >= 30
    assert all(count == 2 for count in languages.values()), languages
    assert {a.lang for a in articles} == {"en", "ru"}
    assert all(len(a.questions) >= 3 for a in articles)


def test_eval_cases_point_at_real_articles() -> None:
    ids = {read_article(path, KB).id for path in article_files(KB)}
    cases = [json.loads(line) for line in (REPO / "eval" / "sample.jsonl").read_text().splitlines() if line.strip()]
    expected = [c["expected"] for c in cases]
    assert set(expected) - {None} <= ids
    assert expected.count(None) >= 20
