"""Offline quality scoring of an operator's reply: structure, clarity and empathy, each 0-100.

Pure and deterministic rules for Russian and English (the marker lists cover both scripts, so a
mixed reply needs no special case). Each dimension starts at a neutral 50 and moves by the signals
found; the strongest signal becomes the dimension's one-line reason. The score is advice shown to
the operator, never a gate: it is cheap enough to run on every reply.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.brain.sentiment import NEGATIVE_THRESHOLD

DIMENSIONS = ("structure", "clarity", "empathy")
GOOD, OK = 70, 40  # band edges: good >= 70, ok >= 40, poor below

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?…\n]+")
_STEPS = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.MULTILINE)
_ACRONYM = re.compile(r"\b[A-ZА-ЯЁ0-9]{2,5}\b")


def _markers(*patterns: str) -> re.Pattern[str]:
    return re.compile(r"(?:^|(?<=\W))(?:" + "|".join(patterns) + r")", re.IGNORECASE | re.UNICODE)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_GREETING = _markers(
    r"hi\b", r"hello\b", r"hey\b", r"good (?:morning|afternoon|evening)", r"dear\b",
    r"здравствуй", r"добр(?:ый|ое|ого) (?:день|вечер|утро|времени)", r"привет",
)  # fmt: skip
_CLOSING = _markers(
    r"have a (?:great|nice|good) day", r"best regards", r"kind regards", r"regards\b", r"let me know",
    r"feel free", r"happy to help", r"any (?:other|more) questions", r"thanks? (?:you )?for",
    r"хорошего (?:дня|вечера)", r"с уважением", r"обращайтесь", r"если (?:будут|останутся) вопросы",
    r"спасибо за", r"всего доброго",
)  # fmt: skip
_APOLOGY = _markers(
    r"sorry", r"apologi[sz]", r"my apologies", r"извин", r"простите", r"прошу прощения", r"жаль", r"сожале",
)  # fmt: skip
_THANKS = _markers(r"thank", r"appreciate", r"спасибо", r"благодар")
_EMPATHY = _markers(
    r"understand", r"frustrat", r"i can imagine", r"must be", r"worr(?:y|ied)", r"concern", r"inconvenien",
    r"unfortunately", r"patience", r"should not have happened", r"понима", r"неприятн", r"беспоко",
    r"неудобств", r"к сожалению", r"терпени", r"так быть не должно",
)  # fmt: skip
_PLEASE = _markers(r"please", r"пожалуйста")
_NEXT_STEP = _markers(
    r"open\b", r"press", r"click", r"tap\b", r"go to", r"send", r"reply", r"update", r"check\b", r"i will",
    r"i'll", r"i have", r"i've", r"you can", r"within", r"today", r"tomorrow", r"will (?:get|arrive|be)",
    r"откройте", r"нажмите", r"перейдите", r"пришлите", r"напишите", r"отправьте", r"обновите",
    r"проверьте", r"отнесите", r"я (?:оформл|провер|верн|передам|напишу|записал|попросил)", r"можно",
    r"в течение", r"сегодня", r"завтра", r"придёт", r"придет", r"поступ",
)  # fmt: skip
_JARGON = _words(
    "api sku sla eta wms crm backend config fulfilment fulfillment incoterm dap ddp 3pl consignment "
    "фулфилмент кросс докинга инкотермс"
)
_STOPWORDS = _words(
    "a an the i me my we you your it its is are was be been do does did to of in on at for and or but "
    "can could how what when where why which who this that there with from have has not no yes so it's "
    "s t about just any will would should please hi hello "
    "я мы вы ты он она оно они мой мне меня вас вам ваш в на с со к по за из у о об а и но или не да нет "
    "как что где когда почему это то так же ли уже ещё еще можно мой моя моё мои свой"
)


@dataclass(frozen=True)
class QualityScore:
    structure: int
    clarity: int
    empathy: int
    reasons: dict[str, str] = field(default_factory=dict)  # dimension -> one line
    scorer: str = "offline"  # offline (these rules) | llm (bot.brain.llm.judge)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def band(score: int) -> str:
        return "good" if score >= GOOD else "ok" if score >= OK else "poor"

    def summary(self) -> str:
        return describe(self.as_dict())


def describe(quality: Mapping[str, Any]) -> str:
    """A stored score (`QualityScore.as_dict()`) as one line per dimension, for the operator who replied."""
    reasons = quality.get("reasons") or {}
    by = "; scored by the AI" if quality.get("scorer") == "llm" else ""  # an AI verdict reads differently from rules
    return f"Reply quality (visible only to you{by}):\n" + "\n".join(
        f"• {name}: {int(quality.get(name, 0))}/100 ({QualityScore.band(int(quality.get(name, 0)))}) — "
        f"{reasons.get(name, '')}"
        for name in DIMENSIONS
    )


class _Dimension:
    """A running score: starts at 50; the signal that moved it most is the reason."""

    def __init__(self, neutral_reason: str) -> None:
        self.value = 50
        self._reason, self._weight = neutral_reason, 0

    def add(self, delta: int, reason: str) -> None:
        self.value += delta
        if abs(delta) > self._weight:
            self._reason, self._weight = reason, abs(delta)

    def result(self) -> tuple[int, str]:
        return max(0, min(100, self.value)), self._reason


def _stems(text: str) -> set[str]:
    stems = set()
    for word in _WORD.findall(text.lower()):
        if word in _STOPWORDS or (len(word) < 3 and not word.isdigit()):
            continue
        size = 5 if re.match(r"[\u0400-\u04ff]", word) else 4
        stems.add(word[:size])
    return stems


def _relevance(reply: str, question: str) -> float | None:
    """The share of the question's content words (by stem) that the reply takes up; None: no question."""
    asked = _stems(question)
    if not asked:
        return None
    return len(asked & _stems(reply)) / len(asked)


def _shouting(reply: str) -> bool:
    letters = [c for c in reply if c.isalpha()]
    return len(letters) >= 8 and sum(c.isupper() for c in letters) / len(letters) > 0.6


def score_reply(reply: str, question: str, customer_sentiment: float, language: str) -> QualityScore:
    """Score `reply` (the operator's text) against `question` (the customer's last message).

    `customer_sentiment` is -1 … 1 (as in bot.brain.sentiment); `language` is "ru" or "en" and only
    documents intent: the markers of both languages are applied to every reply.
    """
    del language  # both lexicons apply to every text; kept in the signature for callers and LLM parity
    words = _WORD.findall(reply)
    n = len(words)
    sentences = [s for s in (_SENTENCE.findall(reply)) if _WORD.search(s)]
    longest = max((len(_WORD.findall(s)) for s in sentences), default=0)
    average = n / max(1, len(sentences))
    shouting = _shouting(reply)
    has_steps = bool(_STEPS.search(reply)) or "\n\n" in reply.strip()
    greeting, closing = bool(_GREETING.search(reply)), bool(_CLOSING.search(reply))
    angry = customer_sentiment <= NEGATIVE_THRESHOLD

    structure = _Dimension("plain but acceptable shape")
    if greeting:
        structure.add(15, "greets the customer")
    if closing:
        structure.add(15, "ends with a proper closing")
    if n < 6:
        structure.add(-25 if n >= 3 else -40, "too short to be a complete answer")
    elif n < 12:
        structure.add(-5, "rather short")
    elif n <= 150:
        structure.add(10, "sane length")
    else:
        structure.add(-20 if n <= 250 else -30, "too long for a chat message")
    if n > 80:
        structure.add(15 if has_steps else -20, "long answer split into steps" if has_steps else "long wall of text")
    elif has_steps:
        structure.add(10, "clear steps")
    if longest > 35:
        structure.add(-25, "one run-on sentence")
    if shouting:
        structure.add(-15, "written in capitals")
    stripped = reply.strip()
    if stripped and (stripped[0].islower() or stripped[-1].isalnum()) and n < 12:
        structure.add(-10, "sloppy: no capital letter or final punctuation")

    clarity = _Dimension("readable")
    relevance = _relevance(reply, question)
    if relevance is not None:
        if relevance >= 0.5:
            clarity.add(20, "answers what was asked")
        elif relevance >= 0.25:
            clarity.add(10, "partly addresses the question")
        elif relevance == 0:
            clarity.add(-30, "does not address the customer's question")
    if _NEXT_STEP.search(reply):
        clarity.add(15, "gives a concrete next step")
    if any(c.isdigit() for c in reply):
        clarity.add(5, "specific (numbers, times)")
    if n < 4:
        clarity.add(-25, "too short to explain anything")
    elif n < 10:
        clarity.add(-10, "very brief")
    if average > 25:
        clarity.add(-20, "sentences are too long to read easily")
    if longest > 40:
        clarity.add(-10, "a sentence over 40 words")
    asked_acronyms = set(_ACRONYM.findall(question))
    jargon = {w.lower() for w in words if w.lower() in _JARGON} | {
        a for a in _ACRONYM.findall(reply) if not a.isdigit() and a not in asked_acronyms and not shouting
    }
    if jargon:
        clarity.add(-min(25, 8 * len(jargon)), "jargon: " + ", ".join(sorted(jargon)[:3]))
    if shouting:
        clarity.add(-20, "ALL CAPS is hard to read")

    empathy = _Dimension("neutral tone")
    if _APOLOGY.search(reply):
        empathy.add(20, "apologises")
    if _EMPATHY.search(reply):
        empathy.add(20, "acknowledges the customer's feelings")
    if _THANKS.search(reply):
        empathy.add(15, "thanks the customer")
    if _PLEASE.search(reply):
        empathy.add(5, "polite")
    if greeting:
        empathy.add(5, "friendly greeting")
    if angry:
        if not (_APOLOGY.search(reply) or _EMPATHY.search(reply)):
            empathy.add(-25, "an upset customer gets no apology or acknowledgement")
        if n < 8:
            empathy.add(-30, "curt reply to an upset customer")
    elif n < 4:
        empathy.add(-30, "curt")
    if shouting:
        empathy.add(-30, "shouting (ALL CAPS)")

    (s, s_why), (c, c_why), (e, e_why) = structure.result(), clarity.result(), empathy.result()
    return QualityScore(s, c, e, {"structure": s_why, "clarity": c_why, "empathy": e_why})
