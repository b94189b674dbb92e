"""Rendering for Telegram (never a 400 for the knowledge base's Markdown) and the flood limiter."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.shared import SharedState
from connectors.telegram.limits import RateLimiter, Verdict
from connectors.telegram.render import LIMIT, render, visible_length
from tests.fakes.telegram_api import ApiError, parse_html, utf16_len

KNOWLEDGE = Path(__file__).resolve().parent.parent / "knowledge"


@pytest.mark.parametrize("article", sorted(KNOWLEDGE.rglob("*.md")), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_knowledge_article_renders_to_html_telegram_accepts(article: Path) -> None:
    body = article.read_text(encoding="utf-8").split("---", 2)[2]
    for message in render(body):
        visible = parse_html(message)  # raises like Telegram would (400 can't parse entities)
        assert 0 < utf16_len(visible) <= LIMIT
        assert "**" not in visible and "](" not in visible


def test_markdown_becomes_telegram_html_with_everything_else_escaped() -> None:
    (html,) = render(
        "# Returns\n\n**30 days** for *most* items, see [the form](https://x.example/?a=1&b=2).\n\n- one\n- two"
    )
    assert html == (
        "<b>Returns</b>\n\n<b>30 days</b> for <i>most</i> items, see "
        '<a href="https://x.example/?a=1&amp;b=2">the form</a>.\n\n• one\n• two'
    )
    (html,) = render("a < b && c > d <script>alert(1)</script> `x<y>` 2*3*4 snake_case_name [x](javascript:alert(1))")
    assert (
        parse_html(html)
        == "a < b && c > d <script>alert(1)</script> x<y> 2*3*4 snake_case_name x (javascript:alert(1))"
    )


def test_tables_and_code_blocks_are_readable_without_markdown() -> None:
    table = "| Category | Period |\n|---|---|\n| Clothes | 30 days |\n| Electronics | 14 days |"
    (html,) = render(table + "\n\n```\nif a < b:\n\n    print('x')\n```")
    assert parse_html(html) == (
        "Category — Period\n• Clothes — 30 days\n• Electronics — 14 days\n\nif a < b:\n\n    print('x')"
    )


def test_nothing_a_customer_or_operator_types_makes_telegram_refuse_the_html() -> None:
    rng = random.Random(7)
    alphabet = [*"*_`[]()<>&#|-!\\ \n\"'abcЖ😀", "**", "__", "](", "http://", "\n\n", "```"]
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60)))
        for message in render(text):
            try:
                parse_html(message)
            except ApiError as exc:  # pragma: no cover - the assertion message is the point
                raise AssertionError(f"{text!r} → {message!r}: {exc.description}") from None


def test_long_answers_are_split_between_paragraphs_under_the_limit() -> None:
    paragraphs = [f"Paragraph {n}: " + "lorem ipsum " * 100 for n in range(10)]
    messages = render("\n\n".join(paragraphs))
    assert len(messages) > 1
    assert all(visible_length(m) <= LIMIT for m in messages)
    for message in messages:
        assert message.startswith("Paragraph")  # every message begins at a paragraph
    assert "\n\n".join(messages) == "\n\n".join(p.strip() for p in paragraphs)


def test_a_single_endless_paragraph_or_word_is_still_cut_to_fit() -> None:
    for text in ("x" * 10_000, "😀" * 5_000, ("word " * 3_000).strip(), "line\n" * 3_000):
        messages = render(text)
        assert len(messages) >= 2
        assert all(0 < visible_length(m) <= LIMIT for m in messages)
        for message in messages:
            parse_html(message)


async def test_the_flood_limiter_tells_once_per_window() -> None:
    now = [0.0]
    shared = SharedState(clock=lambda: now[0])
    limiter = RateLimiter(shared, limit=2, window_s=10, clock=lambda: now[0])
    verdicts = [await limiter.check("a") for _ in range(5)]
    assert verdicts == [Verdict.PASS, Verdict.PASS, Verdict.NOTIFY, Verdict.DROP, Verdict.DROP]
    assert await limiter.check("b") is Verdict.PASS  # per customer
    now[0] = 10.0
    assert await limiter.check("a") is Verdict.PASS
    assert await RateLimiter(shared, limit=0, window_s=1).check("a") is Verdict.PASS  # 0 switches it off
