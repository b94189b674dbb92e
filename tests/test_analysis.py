"""The offline analysis as a customer's message meets it: language, sentiment, intent signals."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.brain.intent import priority, wants_human
from bot.brain.language import detect_language
from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, score_sentiment
from bot.domain.types import Priority, Sentiment

HOLDOUT = Path(__file__).parent / "data" / "sentiment_holdout.jsonl"
ODD_TEXTS = (
    "",
    "   \n\t ",
    "😡😡😡",
    "\x00\x01\x1b[31m заказ \x7f",
    "broken \ud800 surrogate \udfff",
    "!!!???...",
    "((((",
    "ё" * 50,
)


def sentiment(text: str) -> tuple[Sentiment, float]:
    result = score_sentiment(text, detect_language(text))
    return result.label, result.score


# --- language -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Где мой заказ #12345?", "ru"),
        ("Здравствуйте! Хочу вернуть товар", "ru"),
        ("Where is my order #12345?", "en"),
        ("Hi, заказ 123 where?", "en"),  # 7 Latin letters against 5 Cyrillic
        ("Привет, where is my order???", "en"),
        ("Привет, my order где???", "ru"),  # 9 Cyrillic letters against 7 Latin
        ("Мой iPhone 15 Pro не включается", "ru"),  # brand names don't outvote Russian
        ("Заказ на Wildberries", "ru"),
        ("Посмотрите https://example.com/orders/12345/track?id=abc пожалуйста", "ru"),
        ("Привіт, де моє замовлення?", "ru"),  # other Cyrillic: acceptable as "ru"
        ("ГДЕ МОЙ ЗАКАЗ", "ru"),
        ("WHERE IS MY ORDER", "en"),
        ("спасибо 🙏", "ru"),
    ],
)
def test_detect_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize("text", ["", "12345", "😊👍", "/human", "https://example.com", "  !!! "])
def test_detect_language_falls_back_to_the_default_without_letters(text: str) -> None:
    assert detect_language(text) == "en"
    assert detect_language(text, default="ru") == "ru"


# --- sentiment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "How do I return an item?",
        "Где мой заказ?",
        "What payment methods do you accept?",
        "Можно ли оплатить картой при получении?",
        "Good morning, I want to change my delivery address.",
        "Добрый день, подскажите статус заказа 48213",
        "Is it good quality?",  # a positive word in a question is not praise
        "When will I get my money back?",
        "Где ввести промокод?",  # "промок(нуть)" must not match a promo code
        "Заказала по ошибке, отмените, пожалуйста",
        "Best regards, John",
    ],
)
def test_plain_support_questions_are_neutral(text: str) -> None:
    label, score = sentiment(text)
    assert label is Sentiment.NEUTRAL, score


@pytest.mark.parametrize("text", ["the parcel is late", "посылка задерживается", "My promo code isn't working"])
def test_a_mild_complaint_is_mildly_negative(text: str) -> None:
    label, score = sentiment(text)
    assert -0.45 <= score <= -0.2
    assert label is Sentiment.NEGATIVE


@pytest.mark.parametrize(
    "text",
    [
        "This is the WORST service ever, I want my money back NOW!!!",
        "Вы что, издеваетесь?! Третий раз пишу, верните деньги!",
        "You people are scammers, I'm furious",
        "Это просто отвратительно, больше никогда у вас ничего не куплю",
        "Я в бешенстве, ваш курьер нахамил мне",
    ],
)
def test_a_furious_complaint_is_strongly_negative(text: str) -> None:
    label, score = sentiment(text)
    assert label is Sentiment.NEGATIVE
    assert score <= -0.6


@pytest.mark.parametrize(
    "text",
    [
        "I will sue you, my lawyer will contact you",
        "Подам жалобу в роспотребнадзор",
        "Я подаю на вас в суд",
        "what the fuck is this",
        "Вы там совсем дебилы?",
    ],
)
def test_threats_and_insults_are_strongly_negative(text: str) -> None:
    assert sentiment(text)[1] <= -0.6


@pytest.mark.parametrize(
    "text",
    ["Thanks!", "thank you so much", "Спасибо", "Спасибо большое, всё получил!", "Благодарю за помощь"],
)
def test_thanks_are_positive(text: str) -> None:
    assert sentiment(text)[0] is Sentiment.POSITIVE


def test_more_thanks_and_more_anger_score_further() -> None:
    assert sentiment("thank you so much")[1] > sentiment("thanks")[1]
    assert sentiment("Это крайне плохо")[1] < sentiment("Это плохо")[1]
    assert sentiment("This is BAD!!!")[1] < sentiment("This is bad")[1]
    assert sentiment("WHERE IS MY ORDER!!!")[1] < sentiment("Where is my order")[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'm not happy with this", Sentiment.NEGATIVE),
        ("not bad at all", Sentiment.POSITIVE),
        ("I never received my order", Sentiment.NEGATIVE),
        ("It doesn't work", Sentiment.NEGATIVE),
        ("I don't like how you handled my return", Sentiment.NEGATIVE),
        ("я не доволен", Sentiment.NEGATIVE),
        ("недоволен качеством", Sentiment.NEGATIVE),
        ("не плохо", Sentiment.POSITIVE),
        ("ничего хорошего", Sentiment.NEGATIVE),
        ("никаких проблем, всё отлично", Sentiment.POSITIVE),
        ("Всё пришло, претензий нет, спасибо", Sentiment.POSITIVE),  # the negation follows
        ("ответа нет", Sentiment.NEGATIVE),
        ("Курьер так и не приехал", Sentiment.NEGATIVE),
        ("Не очень хорошо", Sentiment.NEGATIVE),
        # "не" reaches the next word only: the delay is still bad news
        ("Никто не предупредил о задержке", Sentiment.NEGATIVE),
    ],
)
def test_negation(text: str, expected: Sentiment) -> None:
    assert sentiment(text)[0] is expected


def test_what_follows_but_counts_more() -> None:
    label, _ = sentiment("I was worried it would take ages but it was super fast, thank you")
    assert label is Sentiment.POSITIVE


@pytest.mark.parametrize(
    "stem_form",
    ["ужасно", "ужасный", "Ужасная", "УЖАСНОЕ", "отвратительный", "разочарована", "бесит", "обманули"],
)
def test_russian_word_forms_match_by_stem(stem_form: str) -> None:
    assert sentiment(f"Это {stem_form}")[0] is Sentiment.NEGATIVE


def test_yo_is_read_as_ye() -> None:
    assert sentiment("Всё ещё не пришёл заказ")[1] == sentiment("Все еще не пришел заказ")[1] < 0


@pytest.mark.parametrize(
    ("emoji", "expected"),
    [
        ("😡", Sentiment.NEGATIVE),
        ("😠", Sentiment.NEGATIVE),
        ("🤬🤬", Sentiment.NEGATIVE),
        ("👍", Sentiment.POSITIVE),
        ("🙏", Sentiment.POSITIVE),
        ("❤️", Sentiment.POSITIVE),
        ("😊", Sentiment.POSITIVE),
        ("🙂", Sentiment.POSITIVE),
        ("🤔", Sentiment.NEUTRAL),
    ],
)
def test_emoji_only_messages(emoji: str, expected: Sentiment) -> None:
    assert sentiment(emoji)[0] is expected


def test_mixed_language_message_uses_both_lexicons() -> None:
    assert sentiment("Hi, заказ не пришёл, this is terrible")[0] is Sentiment.NEGATIVE
    assert sentiment("Thanks, всё отлично!")[0] is Sentiment.POSITIVE


def test_labels_follow_the_thresholds() -> None:
    for text in ["Спасибо", "the parcel is late", "Где мой заказ?", "Ужасно", "not bad", "ok"]:
        result = score_sentiment(text, "en")
        assert -1.0 <= result.score <= 1.0
        if result.score <= NEGATIVE_THRESHOLD:
            assert result.label is Sentiment.NEGATIVE
        elif result.score >= POSITIVE_THRESHOLD:
            assert result.label is Sentiment.POSITIVE
        else:
            assert result.label is Sentiment.NEUTRAL


def test_holdout_macro_f1() -> None:
    rows = [json.loads(line) for line in HOLDOUT.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) == 60
    predicted = [score_sentiment(r["text"], detect_language(r["text"])).label.value for r in rows]
    gold = [r["sentiment"] for r in rows]

    def f1(label: str) -> float:
        tp = sum(p == g == label for p, g in zip(predicted, gold, strict=True))
        fp = sum(p == label != g for p, g in zip(predicted, gold, strict=True))
        fn = sum(g == label != p for p, g in zip(predicted, gold, strict=True))
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    assert (f1("negative") + f1("positive")) / 2 >= 0.75


# --- wants_human --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I want to talk to a person",
        "human please",
        "real agent",
        "connect me to an operator",
        "Can I speak with someone?",
        "Stop sending me bot answers, I need a human agent",
        "/human",
        "позовите оператора",
        "хочу поговорить с человеком",
        "соедините с живым человеком",
        "менеджера дайте",
        "Переведите на оператора",
        "Мне нужен оператор",
        "оператор!",
        "Не понимаю, позовите оператора",  # a "не" in another clause is no refusal
    ],
)
def test_wants_human(text: str) -> None:
    assert wants_human(text)


@pytest.mark.parametrize(
    "text",
    [
        "the courier person was rude",
        "your operator was helpful",
        "The agent told me to wait",
        "I want to know if a person can pick up my order",
        "I don't want to talk to a human, just tell me the status",
        "Ваш оператор Марина была очень вежлива",
        "Не надо оператора, я сам разберусь",
        "Можно отправить посылку другому человеку?",
        "Мой менеджер сказал, что заказ отправлен",
        "Где мой заказ?",
        "",
    ],
)
def test_mentions_of_people_are_not_requests(text: str) -> None:
    assert not wants_human(text)


# --- priority -----------------------------------------------------------------------------


def analysed_priority(text: str) -> Priority:
    score = score_sentiment(text, detect_language(text)).score
    return priority(score, text, wants_human(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("This is the WORST service ever, I want my money back NOW!!!", Priority.URGENT),
        ("I'm going to sue you, my lawyer will contact you", Priority.URGENT),
        ("Срочно! Заказ не пришёл, это ужасно, подам в суд", Priority.URGENT),
        ("Срочно нужна помощь с оплатой", Priority.HIGH),
        ("Вы что, издеваетесь?! Третий раз пишу, верните деньги!", Priority.HIGH),
        ("Отвратительно, позовите оператора", Priority.HIGH),
        ("Where is my order?", Priority.NORMAL),
        ("the parcel is late", Priority.NORMAL),
        ("Позовите оператора", Priority.NORMAL),
        ("Thanks! Where is my order?", Priority.NORMAL),  # a question still needs an answer
        ("Спасибо большое!", Priority.LOW),
        ("Great service, thank you 👍", Priority.LOW),
    ],
)
def test_priority(text: str, expected: Priority) -> None:
    assert analysed_priority(text) is expected


def test_priority_from_scores_alone() -> None:
    assert priority(-0.9, "немедленно", False) is Priority.URGENT
    assert priority(-0.9, "", False) is Priority.HIGH
    assert priority(0.0, "please help immediately", False) is Priority.HIGH
    assert priority(-0.3, "", True) is Priority.HIGH
    assert priority(0.8, "", True) is Priority.NORMAL
    assert priority(0.8, "", False) is Priority.LOW


# --- robustness and cost ------------------------------------------------------------------


@pytest.mark.parametrize("text", ODD_TEXTS)
def test_odd_input_does_not_crash(text: str) -> None:
    language = detect_language(text)
    result = score_sentiment(text, language)
    assert -1.0 <= result.score <= 1.0
    assert isinstance(wants_human(text), bool)
    assert isinstance(priority(result.score, text, False), Priority)


def test_empty_text_is_neutral_and_normal() -> None:
    assert score_sentiment("", "en").label is Sentiment.NEUTRAL
    assert not wants_human("")
    assert priority(0.0, "", False) is Priority.NORMAL


def test_very_long_text_is_handled() -> None:
    # Speed is measured by hand (bench/); this only guards against runaway regex backtracking.
    text = ("Заказ не пришёл, ужасный сервис! Where is my order? " * 200)[:10_000]
    assert len(text) == 10_000
    start = time.perf_counter()
    result = score_sentiment(text, detect_language(text))
    wants_human(text)
    assert time.perf_counter() - start < 1.0
    assert result.label is Sentiment.NEGATIVE


@pytest.mark.parametrize(
    ("text", "expected"),
    [  # a calm score (0.0): the cues alone raise the priority
        ("I need this fixed today", Priority.HIGH),
        ("срочно", Priority.HIGH),
        ("My account is overdrawn", Priority.HIGH),
        ("Списали деньги дважды", Priority.HIGH),
        ("Someone logged into my account and changed the password", Priority.HIGH),
        ("The courier damaged our fence; who pays for the repair?", Priority.HIGH),
        ("Вы издеваетесь? Третий раз пишу", Priority.HIGH),  # writing again: waited already
        ("This is the third time I'm writing to you about my refund", Priority.HIGH),
        ("I have asked you twice already", Priority.HIGH),
        ("Can I return an item today?", Priority.NORMAL),  # "today" in a question is no deadline
        ("The refund arrived today", Priority.NORMAL),  # nor in a report of what happened
        ("Третий раз заказываю у вас", Priority.NORMAL),  # a returning customer, not a repeated request
        ("Где мой заказ?", Priority.NORMAL),
    ],
)
def test_harm_and_deadlines_count_without_angry_words(text: str, expected: Priority) -> None:
    assert priority(0.0, text, False) is expected


def test_harm_with_any_negativity_is_urgent() -> None:
    assert priority(-0.3, "I was charged twice and my account is overdrawn", False) is Priority.URGENT
    assert priority(0.0, "Charged twice, account overdrawn, fix this today", False) is Priority.URGENT
    assert priority(-0.3, "Кто-то зашёл в мой аккаунт и вывел деньги", False) is Priority.URGENT
