"""The trained sentiment head over real multilingual-e5-small embeddings, and what the product makes of its
score: mood, priority and the handoff an operator sees, on the shipped help centre."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from bot.analytics.report import build_report
from bot.app import App, build_app
from bot.brain.sentiment import score_sentiment
from bot.brain.sentiment_model import HEAD, SentimentModel, SentimentModelError
from bot.brain.triage.smalltalk import SmallTalk
from bot.config import load_settings
from bot.domain.types import Decision, Inbound, Priority, Reason, Sentiment
from bot.knowledge.embeddings import cpu_has_avx2
from bot.storage.models import utcnow
from tests.conftest import REPO, Recorder, make_settings, on_shipped_kb
from tests.fakes.openai_server import FakeOpenAI
from tests.test_llm import Desk, analysis, final, llm_settings

HARM, ANGRY, PRESSING, PROBLEM, PRAISE, WARM_REQUEST = "harm", "angry", "pressing", "problem", "praise", "warm request"
MESSAGES = {  # text: what must come out
    # harm and anger the lexicon read as neutral: negative or urgent, and an operator soon
    "Someone got into my account last night, changed the email and password, and now I can't log in": HARM,
    "Your movers dropped the wardrobe and cracked the floor tiles in our hallway. Who pays for the repair?": HARM,
    "I was charged twice for order 5531 and my account is overdrawn, fix this today": HARM,
    "The operator I spoke to was rude, talked down to me and hung up": HARM,
    "Оператор нахамил мне и бросил трубку": HARM,
    "С карты списали деньги дважды, теперь счёт в минусе": HARM,
    "Вы издеваетесь? Третий раз пишу": HARM,
    # calm but pressing: a high priority whatever the mood
    "срочно": PRESSING,
    "I need this fixed today": PRESSING,
    # angry customers: the mood alone hands them to a person (automation.negative_sentiment)
    "Your support agent was extremely rude to me on the phone": ANGRY,
    "Это безобразие! Верните деньги немедленно!": ANGRY,
    "I'm very disappointed with your service": ANGRY,
    # a problem told calmly is negative, but no reason on its own to take the answer from the bot
    "My order hasn't arrived": PROBLEM,
    "Заказ не пришёл": PROBLEM,
    # thanks and praise
    "Thank you so much, the replacement arrived and works perfectly!": Sentiment.POSITIVE,
    "Спасибо большое, всё пришло вовремя, очень довольна": Sentiment.POSITIVE,
    "Great service, the courier was very polite": Sentiment.POSITIVE,
    # praise that asks for nothing: thanked by the bot, not put in front of an operator as out of scope
    "Спасибо вашему курьеру Ивану, он был очень вежлив и помог донести коробку": PRAISE,
    "Your delivery guy was super friendly, thanks!": PRAISE,
    "Огромное спасибо оператору Марине, она всё решила за пять минут": PRAISE,
    "The refund came through already, you are wonderful": PRAISE,
    # warm words around a question or a request: the request is what counts
    "Love your shop! I'd like to order 50 units wholesale, please contact me": WARM_REQUEST,
    "Отличный магазин! Хочу оформить оптовый заказ": WARM_REQUEST,
    "Спасибо! Подскажите ещё, как вернуть куртку": WARM_REQUEST,
    "Thanks, but the refund still hasn't arrived": WARM_REQUEST,
    # plain questions
    "How do I return an item?": Sentiment.NEUTRAL,
    "Где мой заказ?": Sentiment.NEUTRAL,
    "Can I pay by card?": Sentiment.NEUTRAL,
}
_chats = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shop(tmp_path_factory: pytest.TempPathFactory, shipped_kb_store: Path) -> AsyncIterator[App]:
    """The shipped help centre on the bundled model (so the trained head reads mood) and the shipped
    handoff policy, built once."""
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    settings = on_shipped_kb(make_settings(tmp_path_factory.mktemp("shop")), shipped_kb_store)
    settings.automation = load_settings(REPO / "config.yaml").automation  # the policy as shipped
    built = await build_app(settings)
    yield built
    await built.close()


@pytest.fixture(scope="module")
def model() -> SentimentModel:
    return SentimentModel.load()


def test_the_shipped_head_reads_the_bundled_embedder(model: SentimentModel) -> None:
    assert model.fits("multilingual-e5-small", 384)
    assert not model.fits("hashing-384", 384)  # same size, meaningless to the head: use the lexicon


async def first_message(app: App, text: str) -> tuple[Decision, Recorder]:
    """A new customer's first message through the desk; the operator queue it may reach."""
    queue = Recorder()
    app.outbox.register("test", Recorder())
    app.outbox.register(app.desk.queue_channel, queue)
    chat = f"mood-{next(_chats)}"
    decision = await app.desk.receive(Inbound("test", chat, chat, text))
    await app.outbox.deliver_due()
    return decision, queue


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("text", list(MESSAGES))
async def test_mood_priority_and_handoff_of_real_messages(shop: App, text: str) -> None:
    expected = MESSAGES[text]
    decision, queue = await first_message(shop, text)
    a = decision.analysis
    assert a is not None and -1.0 <= a.sentiment_score <= 1.0
    if expected in (HARM, ANGRY, PRESSING):
        assert a.priority in (Priority.HIGH, Priority.URGENT), a
    if expected in (HARM, ANGRY):
        assert a.sentiment is Sentiment.NEGATIVE or a.priority is Priority.URGENT, a
        assert decision.action == "handoff"  # an operator sees it, with its mood and priority
        card = queue.sent[-1].payload
        assert (card["sentiment"], card["priority"]) == (a.sentiment, a.priority)
    if expected == ANGRY:
        assert Reason.NEGATIVE_SENTIMENT in decision.reasons, (a.sentiment_score, decision.reasons)
    elif expected == PROBLEM:
        assert a.sentiment is Sentiment.NEGATIVE and Reason.NEGATIVE_SENTIMENT not in decision.reasons, a
    elif expected is Sentiment.POSITIVE:
        assert (a.sentiment, a.priority) == (Sentiment.POSITIVE, Priority.LOW), a
    elif expected is Sentiment.NEUTRAL:
        assert (a.sentiment, a.priority, decision.action) == (Sentiment.NEUTRAL, Priority.NORMAL, "answer"), a
    elif expected == PRAISE:
        assert (a.sentiment, a.small_talk, decision.action) == (Sentiment.POSITIVE, SmallTalk.PRAISE, "small_talk"), a
        assert decision.answer is not None and decision.answer.text == shop.texts.render("smalltalk_praise", a.language)
        assert not queue.sent  # no card
    elif expected == WARM_REQUEST:
        assert a.small_talk is None and decision.action in ("answer", "handoff"), a


@pytest.mark.asyncio(loop_scope="module")
async def test_praise_right_after_an_answer_confirms_that_it_helped(shop: App) -> None:
    """The report's confirmed automation counts a customer who says it helped in their own words."""
    since = utcnow() - timedelta(seconds=1)
    shop.outbox.register("test", Recorder())
    chat = f"mood-{next(_chats)}"
    asked = await shop.desk.receive(Inbound("test", chat, f"{chat}-1", "How do I return an item?"))
    praised = await shop.desk.receive(
        Inbound("test", chat, f"{chat}-2", "Perfect, that's exactly what I needed to know, you are wonderful")
    )
    assert (asked.action, praised.action) == ("answer", "small_talk")
    report = await build_report(shop.sessions, shop.settings.analytics, since, utcnow() + timedelta(seconds=1))
    assert report["automated_confirmed"] == 1


@pytest.mark.asyncio(loop_scope="module")
async def test_the_trained_head_reads_the_mood_not_the_lexicon(shop: App, model: SentimentModel) -> None:
    text = "Someone got into my account last night, changed the email and password, and now I can't log in"
    decision, _ = await first_message(shop, text)
    assert decision.analysis is not None
    expected = model.score(await shop.index.embed_query(text), text, "en")
    assert decision.analysis.sentiment_score == expected.score
    assert score_sentiment(text, "en").score > expected.score  # the lexicon reads it milder


async def test_with_the_llm_its_label_wins_and_the_trained_head_stands_in_when_it_fails(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    if not cpu_has_avx2():
        pytest.skip("the local model needs AVX2")
    text = "Your support agent was extremely rude to me on the phone"
    async with FakeOpenAI() as fake:
        settings = llm_settings(tmp_path, fake, analysis=True)
        settings.embeddings.provider = "local"
        settings.automation.negative_sentiment = -0.9
        app = await build_app(settings)
        try:
            mood = SentimentModel.load().score(await app.index.embed_query(text), text, "en")
            assert mood.label is Sentiment.NEGATIVE and mood.score <= -0.9
            desk = Desk(app)
            fake.script(analysis(None, "negative", 0.8, "high"), final("Sorry to hear that."))  # a careless score
            understood = (await desk.say(text, chat="llm-says")).analysis
            assert (understood.sentiment, understood.sentiment_score) == (Sentiment.NEGATIVE, mood.score)
            assert "llm analysis: sentiment negative with score 0.8" in caplog.text
            fake.fail(500, times=5, path="/v1/chat/completions")
            decision = await desk.say(text, chat="llm-down")
            assert decision.analysis is not None
            assert (decision.analysis.sentiment, decision.analysis.sentiment_score) == (Sentiment.NEGATIVE, mood.score)
            assert decision.action == "handoff" and Reason.NEGATIVE_SENTIMENT in decision.reasons
            assert desk.queue.sent[-1].payload["sentiment"] == Sentiment.NEGATIVE
        finally:
            await app.close()


def test_a_missing_or_damaged_head_is_named(tmp_path: Path) -> None:
    with pytest.raises(SentimentModelError, match=r"nowhere\.npz"):
        SentimentModel.load(tmp_path / "nowhere.npz")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(HEAD.read_bytes()[:300])
    with pytest.raises(SentimentModelError, match=r"damaged\.npz"):
        SentimentModel.load(damaged)
    wrong = tmp_path / "wrong.npz"
    with np.load(HEAD) as data:
        parts = dict(data)
    np.savez(wrong, **{**parts, "weights_0": parts["weights_0"][:10]})
    with pytest.raises(SentimentModelError, match="do not fit"):
        SentimentModel.load(wrong)
    last = int(parts["layers"]) - 1
    short = tmp_path / "short.npz"
    np.savez(
        short,
        **{**parts, f"weights_{last}": parts[f"weights_{last}"][:, :2], f"bias_{last}": parts[f"bias_{last}"][:2]},
    )
    with pytest.raises(SentimentModelError, match="labels"):
        SentimentModel.load(short)
