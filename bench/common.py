"""Shared helpers for the benchmarks: settings, the synthetic knowledge base, timing and percentiles.

Everything here calls the product code (bot.*) as a deployment would; nothing re-implements it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ on the path, not the repo
    sys.path.insert(0, str(REPO))

from bot.config import Settings, load_settings  # noqa: E402
from bot.knowledge.embeddings import OPENMP_WAIT_POLICY  # noqa: E402

CACHE = Path(os.environ.get("RELAYDESK_BENCH_CACHE", "/tmp/relaydesk-bench"))
GENERATOR_VERSION = 1  # bump when the synthetic text changes: cached stores are then rebuilt


# -- settings ---------------------------------------------------------------------------------------


def bench_settings(tmp: Path, *, kb: Path, store: Path | None = None, provider: str | None = None) -> Settings:
    """The repo's config.yaml (plus RELAYDESK__* overrides from the environment), pointed at temp paths."""
    settings = load_settings(REPO / "config.yaml").model_copy(deep=True)
    settings.knowledge.path = kb
    settings.knowledge.store = store or tmp / "chroma"
    settings.knowledge.chroma_url = ""
    settings.database.url = f"sqlite+aiosqlite:///{tmp}/bench.db"
    settings.telegram.token = ""
    settings.slack.bot_token = ""
    if provider:
        settings.embeddings.provider = provider  # type: ignore[assignment]
    return settings


# -- figures ----------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 300 values is the 297th smallest)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * p // 100)))
    return ordered[int(rank) - 1]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else 0.0,
    }


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then t[0] is the elapsed seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def header(title: str) -> None:
    print(f"\n== {title} ==")
    print(
        f"machine: {machine()}; load average: {load_average()}; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', OPENMP_WAIT_POLICY)}; {time.strftime('%Y-%m-%d %H:%M')}"
    )


# -- the synthetic knowledge base ---------------------------------------------------------------------

# English: "<action> <a thing> <context>", e.g. "Returning a refurbished laptop bought with a gift card".
EN_ACTIONS = [
    ("Returning", "return"),
    ("Exchanging", "exchange"),
    ("Tracking", "track"),
    ("Cancelling", "cancel"),
    ("Repairing", "repair"),
    ("Paying for", "pay for"),
    ("Insuring", "insure"),
    ("Registering", "register"),
    ("Upgrading", "upgrade"),
    ("Reserving", "reserve"),
    ("Gift-wrapping", "gift-wrap"),
    ("Reselling", "resell"),
    ("Recycling", "recycle"),
    ("Assembling", "assemble"),
    ("Collecting", "collect"),
    ("Reviewing", "review"),
    ("Pre-ordering", "pre-order"),
    ("Renting", "rent"),
    ("Subscribing to", "subscribe to"),
    ("Activating", "activate"),
]
EN_ADJECTIVES = [
    "refurbished",
    "second-hand",
    "oversized",
    "fragile",
    "imported",
    "discounted",
    "personalised",
    "limited-edition",
    "wireless",
    "waterproof",
    "handmade",
    "vintage",
    "smart",
    "portable",
    "bulk",
]
EN_THINGS = [
    "laptop",
    "sofa",
    "bicycle",
    "washing machine",
    "phone case",
    "winter jacket",
    "gaming console",
    "coffee maker",
    "mattress",
    "pair of sneakers",
    "tablet",
    "camera lens",
    "desk lamp",
    "garden hose",
    "baby stroller",
    "smartwatch",
    "electric kettle",
    "bookshelf",
    "vacuum cleaner",
    "set of headphones",
    "printer",
    "tent",
    "air purifier",
    "blender",
    "office chair",
    "rug",
    "drone",
    "microwave",
    "guitar",
    "aquarium",
    "fridge",
    "monitor",
    "suitcase",
    "scooter",
    "dishwasher",
    "toaster",
    "keyboard",
    "projector",
    "treadmill",
    "sewing machine",
]
EN_CONTEXTS = [
    "bought with a gift card",
    "ordered from abroad",
    "delivered to a pickup point",
    "paid in instalments",
    "bought during a sale",
    "sent as a gift",
    "ordered for a company",
    "bought on a marketplace partner",
    "paid with bonus points",
    "delivered by courier at night",
    "ordered through the mobile app",
    "bought in a physical store",
    "shipped in several parcels",
    "ordered with express delivery",
    "covered by an extended warranty",
    "bought with a promo code",
    "delivered to the wrong address",
    "paid by bank transfer",
    "ordered more than a year ago",
    "bought for a child",
]
EN_QUESTIONS = [
    "How do I {verb} a {adj} {thing} {ctx}?",
    "can i {verb} my {adj} {thing} if it was {ctx}",
    "What are the rules to {verb} a {thing} {ctx}?",
    "Is it possible to {verb} the {adj} {thing} I have, it was {ctx}?",
    "need help: want to {verb} {adj} {thing}, {ctx}",
    "what does it cost to {verb} a {adj} {thing} {ctx}?",
]
EN_SENTENCES = [
    "To {verb} a {adj} {thing} {ctx}, open your order in the app and choose the matching option.",
    "We usually need {n} working days to process a request about a {thing}.",
    "Keep the receipt and the original packaging of the {thing}: the {team} will ask for them.",
    "A {adj} {thing} is checked by the {team} before anything else happens.",
    "If the {thing} was {ctx}, the {team} confirms the details with you by {channel}.",
    "The fee is {n} euros for a {adj} item and nothing for the others.",
    "You will get a message by {channel} as soon as the status of the request changes.",
    "Items {ctx} follow the same rules, except that the deadline is {n} days instead of 14.",
    "Our {team} answers questions about this every day from 9:00 to {n}:00.",
    "Please do not send the {thing} back before the {team} gives you a return label.",
    "For a {adj} {thing} we may ask for a photo of the serial number and of the box.",
    "Refunds go back to the original payment method within {n} days.",
    "When several items are involved, each {thing} is handled as a separate request.",
    "Questions about warranty repairs of a {thing} go to the {team} directly.",
]
EN_TEAMS = ["support team", "warehouse team", "returns desk", "service centre", "logistics team", "quality team"]
EN_CHANNELS = ["email", "SMS", "a push notification", "a phone call", "the chat"]

# Russian: "<action noun> <thing in genitive> <context>", e.g. "Возврат ноутбука, купленного в рассрочку".
RU_ACTIONS = [
    ("Возврат", "вернуть"),
    ("Обмен", "обменять"),
    ("Отслеживание", "отследить"),
    ("Отмена заказа", "отменить"),
    ("Ремонт", "отремонтировать"),
    ("Оплата", "оплатить"),
    ("Страхование", "застраховать"),
    ("Регистрация", "зарегистрировать"),
    ("Бронирование", "забронировать"),
    ("Сборка", "собрать"),
    ("Утилизация", "утилизировать"),
    ("Предзаказ", "предзаказать"),
    ("Аренда", "арендовать"),
    ("Активация", "активировать"),
    ("Получение", "получить"),
]
RU_ADJECTIVES = [  # (genitive masculine/neuter, accusative inanimate masculine)
    ("восстановленного", "восстановленный"),
    ("подержанного", "подержанный"),
    ("крупногабаритного", "крупногабаритный"),
    ("хрупкого", "хрупкий"),
    ("импортного", "импортный"),
    ("уценённого", "уценённый"),
    ("именного", "именной"),
    ("беспроводного", "беспроводной"),
    ("водонепроницаемого", "водонепроницаемый"),
    ("умного", "умный"),
    ("портативного", "портативный"),
    ("коллекционного", "коллекционный"),
]
RU_THINGS = [  # (genitive, accusative) of masculine inanimate nouns, so the adjectives agree
    ("ноутбука", "ноутбук"),
    ("дивана", "диван"),
    ("велосипеда", "велосипед"),
    ("холодильника", "холодильник"),
    ("чехла", "чехол"),
    ("пылесоса", "пылесос"),
    ("телевизора", "телевизор"),
    ("матраса", "матрас"),
    ("планшета", "планшет"),
    ("объектива", "объектив"),
    ("светильника", "светильник"),
    ("принтера", "принтер"),
    ("самоката", "самокат"),
    ("чайника", "чайник"),
    ("блендера", "блендер"),
    ("монитора", "монитор"),
    ("чемодана", "чемодан"),
    ("проектора", "проектор"),
    ("тостера", "тостер"),
    ("увлажнителя", "увлажнитель"),
    ("рюкзака", "рюкзак"),
    ("фотоаппарата", "фотоаппарат"),
    ("смартфона", "смартфон"),
    ("комода", "комод"),
    ("ковра", "ковёр"),
    ("квадрокоптера", "квадрокоптер"),
    ("микроволновки", "микроволновку"),
    ("стола", "стол"),
    ("шкафа", "шкаф"),
    ("кондиционера", "кондиционер"),
]
RU_CONTEXTS = [
    "купленного по подарочной карте",
    "заказанного из-за границы",
    "доставленного в пункт выдачи",
    "купленного в рассрочку",
    "купленного на распродаже",
    "отправленного в подарок",
    "заказанного на юрлицо",
    "оплаченного бонусами",
    "доставленного курьером ночью",
    "заказанного через приложение",
    "купленного в магазине",
    "пришедшего несколькими посылками",
    "с экспресс-доставкой",
    "с расширенной гарантией",
    "купленного по промокоду",
    "доставленного не по адресу",
    "оплаченного банковским переводом",
    "заказанного больше года назад",
]
RU_QUESTIONS = [
    "Как {verb} {adj} {thing}, {ctx_short}?",
    "можно ли {verb} {thing} если он {ctx_short}",
    "Какие правила, чтобы {verb} {adj} {thing}?",
    "хочу {verb} {thing}, он {ctx_short}, что делать",
    "сколько стоит {verb} {adj} {thing}?",
]
RU_SHORT = {  # the context as a predicate: "он куплен по подарочной карте"
    "купленного по подарочной карте": "куплен по подарочной карте",
    "заказанного из-за границы": "заказан из-за границы",
    "доставленного в пункт выдачи": "доставлен в пункт выдачи",
    "купленного в рассрочку": "куплен в рассрочку",
    "купленного на распродаже": "куплен на распродаже",
    "отправленного в подарок": "отправлен в подарок",
    "заказанного на юрлицо": "заказан на юрлицо",
    "оплаченного бонусами": "оплачен бонусами",
    "доставленного курьером ночью": "доставлен курьером ночью",
    "заказанного через приложение": "заказан через приложение",
    "купленного в магазине": "куплен в магазине",
    "пришедшего несколькими посылками": "пришёл несколькими посылками",
    "с экспресс-доставкой": "с экспресс-доставкой",
    "с расширенной гарантией": "с расширенной гарантией",
    "купленного по промокоду": "куплен по промокоду",
    "доставленного не по адресу": "доставлен не по адресу",
    "оплаченного банковским переводом": "оплачен банковским переводом",
    "заказанного больше года назад": "заказан больше года назад",
}
RU_SENTENCES = [
    "Чтобы {verb} {adj} {thing}, откройте заказ в приложении и выберите нужный вариант.",
    "Обычно на обработку заявки уходит {n} рабочих дня.",
    "Сохраните чек и оригинальную упаковку: их попросит {team}.",
    "Сначала товар проверяет {team}, и только потом принимается решение.",
    "Если товар {ctx_short}, {team} уточнит детали через {channel}.",
    "Стоимость услуги составляет {n} евро, для остальных товаров она бесплатна.",
    "Как только статус заявки изменится, вы получите уведомление через {channel}.",
    "Для таких товаров действуют те же правила, но срок составляет {n} дней вместо 14.",
    "На такие вопросы {team} отвечает каждый день с 9:00 до {n}:00.",
    "Не отправляйте товар обратно, пока {team} не пришлёт вам этикетку для возврата.",
    "Мы можем попросить фото серийного номера и коробки.",
    "Деньги возвращаются на исходный способ оплаты в течение {n} дней.",
    "Если товаров несколько, по каждому оформляется отдельная заявка.",
    "Вопросы о гарантийном ремонте решает {team} напрямую.",
]
RU_TEAMS = ["служба поддержки", "команда склада", "служба возвратов", "сервисный центр", "служба логистики"]
RU_CHANNELS = ["email", "СМС", "push-уведомление", "чат", "телефонный звонок"]


def _en_article(rng: random.Random, combo: tuple[int, int, int, int]) -> tuple[str, list[str], str]:
    a, j, t, c = combo
    action, verb = EN_ACTIONS[a]
    adj, thing, ctx = EN_ADJECTIVES[j], EN_THINGS[t], EN_CONTEXTS[c]
    article = "an" if adj[0] in "aeiou" else "a"
    title = f"{action} {article} {adj} {thing} {ctx}"
    fill = {"verb": verb, "adj": adj, "thing": thing, "ctx": ctx}
    questions = [
        q.format(**fill).replace(" a i", " an i").replace(" a o", " an o") for q in rng.sample(EN_QUESTIONS, 3)
    ]
    body = _body(rng, EN_SENTENCES, fill, EN_TEAMS, EN_CHANNELS)
    return title, questions, body


def _ru_article(rng: random.Random, combo: tuple[int, int, int, int]) -> tuple[str, list[str], str]:
    a, j, t, c = combo
    action, verb = RU_ACTIONS[a % len(RU_ACTIONS)]
    adj_gen, adj_acc = RU_ADJECTIVES[j % len(RU_ADJECTIVES)]
    thing_gen, thing_acc = RU_THINGS[t % len(RU_THINGS)]
    ctx = RU_CONTEXTS[c % len(RU_CONTEXTS)]
    title = f"{action} {adj_gen} {thing_gen} {ctx}"
    fill = {"verb": verb, "adj": adj_acc, "thing": thing_acc, "ctx_short": RU_SHORT[ctx]}
    questions = [q.format(**fill) for q in rng.sample(RU_QUESTIONS, 3)]
    body = _body(rng, RU_SENTENCES, fill, RU_TEAMS, RU_CHANNELS)
    return title, questions, body


def _body(rng: random.Random, sentences: list[str], fill: dict[str, str], teams: list[str], channels: list[str]) -> str:
    """60–120 words: sentences drawn from the templates, filled with this article's words."""
    target = rng.randint(60, 120)
    words: list[str] = []
    paragraphs: list[list[str]] = [[]]
    pool = sentences[:]
    rng.shuffle(pool)
    i = 0
    while len(words) < target:
        template = pool[i % len(pool)]
        i += 1
        sentence = template.format(
            **fill,
            n=rng.randint(2, 21),
            team=rng.choice(teams),
            channel=rng.choice(channels),
        ).replace("{ctx}", "")
        sentence = sentence[0].upper() + sentence[1:]
        if len(words) + len(sentence.split()) > 120:
            if len(words) >= 60:
                break
            continue
        words.extend(sentence.split())
        paragraphs[-1].append(sentence)
        if len(paragraphs[-1]) >= 3 and rng.random() < 0.5:
            paragraphs.append([])
    return "\n\n".join(" ".join(p) for p in paragraphs if p)


def _front_matter_list(items: list[str]) -> str:
    return "\n".join(f"  - {json.dumps(q, ensure_ascii=False)}" for q in items)


def synthetic_articles(n: int, seed: int = 77) -> Iterator[tuple[str, str, str, list[str], str]]:
    """(id, lang, title, questions, body) for `n` distinct articles; about one in three is Russian."""
    rng = random.Random(seed)
    seen: set[str] = set()
    count = 0
    while count < n:
        russian = rng.random() < 0.33
        if russian:
            combo = (
                rng.randrange(len(RU_ACTIONS)),
                rng.randrange(len(RU_ADJECTIVES)),
                rng.randrange(len(RU_THINGS)),
                rng.randrange(len(RU_CONTEXTS)),
            )
            title, questions, body = _ru_article(rng, combo)
        else:
            combo = (
                rng.randrange(len(EN_ACTIONS)),
                rng.randrange(len(EN_ADJECTIVES)),
                rng.randrange(len(EN_THINGS)),
                rng.randrange(len(EN_CONTEXTS)),
            )
            title, questions, body = _en_article(rng, combo)
        if title in seen:
            continue
        seen.add(title)
        lang = "ru" if russian else "en"
        yield f"syn-{count:05d}", lang, title, questions, body
        count += 1


def write_article(
    folder: Path, article_id: str, lang: str, title: str, questions: list[str], body: str, tags: list[str] | None = None
) -> Path:
    path = folder / f"{article_id}.md"
    tag_line = f"tags: [{', '.join(tags)}]\n" if tags else ""
    path.write_text(
        f"---\nid: {article_id}\ntitle: {json.dumps(title, ensure_ascii=False)}\nlang: {lang}\n{tag_line}"
        f"questions:\n{_front_matter_list(questions)}\n---\n{body}\n",
        encoding="utf-8",
    )
    return path


def synthetic_kb(n: int) -> Path:
    """The cached synthetic KB folder for `n` articles (generated once; deterministic)."""
    folder = CACHE / f"kb-{n}"
    marker = folder / ".complete"
    if marker.exists() and marker.read_text().strip() == str(GENERATOR_VERSION):
        return folder
    if folder.exists():
        shutil.rmtree(folder)
    for sub in ("en", "ru"):
        (folder / sub).mkdir(parents=True)
    for article_id, lang, title, questions, body in synthetic_articles(n):
        write_article(folder / lang, article_id, lang, title, questions, body)
    marker.write_text(str(GENERATOR_VERSION))
    return folder


def synthetic_store(n: int) -> Path:
    """Where the cached Chroma store of the `n`-article synthetic KB lives (built by bench/ingest.py)."""
    return CACHE / f"chroma-{n}"


def store_record(n: int) -> Path:
    """The JSON left by the from-scratch ingest that built the cached store (its figures, its date)."""
    return CACHE / f"chroma-{n}.json"


def index_code_fingerprint() -> str:
    """A hash of the code that decides what a store holds. The product's own file hashes do not cover
    its code (an index format change leaves old stores "unchanged"), so the bench checks this itself."""
    digest = hashlib.sha256()
    for name in ("bot/knowledge/index.py", "bot/knowledge/articles.py", "bot/knowledge/embeddings.py"):
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()[:16]


def fresh_store(store: Path) -> Path:
    """`store`, emptied first when it was written by other index code than the current one."""
    stamp = store.with_suffix(".code")
    if store.exists() and (not stamp.exists() or stamp.read_text() != index_code_fingerprint()):
        shutil.rmtree(store)
    store.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(index_code_fingerprint())
    return store


def cached_store_ready(n: int) -> dict[str, Any] | None:
    record = store_record(n)
    if not record.exists() or not synthetic_store(n).exists():
        return None
    data: dict[str, Any] = json.loads(record.read_text())
    if data.get("generator") != GENERATOR_VERSION or not data.get("complete"):
        return None
    return data


def synthetic_queries(n: int, count: int, seed: int = 5) -> list[str]:
    """Customer-like questions about the synthetic KB's topics, paraphrased (not copies of the questions)."""
    return [text for text, _ in synthetic_labelled_queries(n, count, seed)]


def synthetic_labelled_queries(n: int, count: int, seed: int = 5) -> list[tuple[str, str]]:
    """(question, the article it is about), as synthetic_queries words them."""
    rng = random.Random(seed)
    articles = list(synthetic_articles(n))
    out = []
    for _ in range(count):
        article_id, lang, title, questions, _body = rng.choice(articles)
        if lang == "ru":
            text = rng.choice(
                [
                    f"подскажите, {questions[0][0].lower()}{questions[0][1:]}",
                    f"{title.lower()} — как это сделать?",
                    f"вопрос: {questions[1]}",
                ]
            )
        else:
            text = rng.choice(
                [
                    f"hi, {questions[0][0].lower()}{questions[0][1:]}",
                    f"question about {title.lower()}",
                    f"{questions[1]} thanks",
                ]
            )
        out.append((text, article_id))
    return out
