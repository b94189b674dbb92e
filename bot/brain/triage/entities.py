"""Order numbers, phones, e-mails, amounts and dates: kept as slots, masked out of the text that is embedded.

"Где мой заказ? NW-4829173" must mean what "Где мой заказ?" means: a number the encoder has never seen
pulls the embedding away from every article. Each entity is cut out of the text the classifier reads
and kept on the analysis for the tools that need it (an order lookup).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MAX_CHARS = 5000
MAX_QUERY_CHARS = 2000  # the embedding model reads ~512 tokens; the rest would only cost time

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_URL = r"(?:https?://|www\.)\S+"
# +7 (999) 123-45-67, 8 999 123 45 67, +1 415-555-0100: ten digits or more in phone-like groups.
_PHONE = r"(?<![\w+])\+?\d[\d\s().-]{8,18}\d(?!\w)"
_CURRENCY = (
    r"(?:€|\$|£|₽|usd|eur|euros?|dollars?|bucks|pounds?|gbp|rub|руб(?:\.|л\w*)?|р\.|₴|грн|доллар\w*|евро|тенге|₸)"
)
_NUMBER = r"\d[\d\s]{0,12}(?:[.,]\d{1,2})?"
_AMOUNT = rf"(?:{_CURRENCY}\s?{_NUMBER}(?!\w)|(?<![\w-]){_NUMBER}\s?(?:k|тыс\.?\s?)?{_CURRENCY}(?!\w))"
_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?|январ\w*|феврал\w*|март\w*|апрел\w*|ма[яей]|июн\w*|июл\w*"
    r"|август\w*|сентябр\w*|октябр\w*|ноябр\w*|декабр\w*)"
)
_DATE = (
    r"(?:\d{4}-\d{2}-\d{2}|(?<![\d.])\d{1,2}[./]\d{1,2}(?:[./]\d{2,4})?(?![\d.])"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?(?:\s+of)?\s+{_MONTHS}(?:\s+\d{{4}})?|{_MONTHS}\s+\d{{1,2}}(?:st|nd|rd|th)?(?:,?\s+\d{{4}})?)"
)
# NW-4829173, #10234, №10234, order 10237, заказ 10237: a code with digits, or a bare number of 4+ digits.
_ORDER = r"(?:[#№]\s?\d{3,}|\b[A-Za-zА-Яа-я]{1,4}-?\d{4,}\b|(?<![\w.,])\d{4,12}(?![\w.,]))"

_ENTITY = re.compile(
    rf"(?P<email>{_EMAIL})|(?P<url>{_URL})|(?P<amount>{_AMOUNT})|(?P<date>{_DATE})|(?P<phone>{_PHONE})"
    rf"|(?P<order>{_ORDER})",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t]{2,}")
_DANGLING = re.compile(r"\s+([,.!?;:)])")


@dataclass(frozen=True)
class Slots:
    """What a message named, by kind, in the order it was written."""

    orders: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    amounts: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return any((self.orders, self.phones, self.emails, self.amounts, self.dates))

    def as_data(self) -> dict[str, list[str]]:
        """The non-empty kinds, for a message's stored meta."""
        return {k: list(v) for k, v in vars(self).items() if v}


@dataclass
class _Found:
    orders: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    amounts: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)


def extract(text: str) -> tuple[str, Slots]:
    """The text with its entities cut out, and the entities as slots."""
    found = _Found()

    def cut(match: re.Match[str]) -> str:
        kind = match.lastgroup or ""
        value = match.group().strip()
        if kind == "order":
            found.orders.append(value.lstrip("#№ ").upper())
        elif kind == "phone":
            found.phones.append(re.sub(r"[^\d+]", "", value))
        elif kind != "url":
            getattr(found, kind + "s").append(value)
        return " "

    masked = _ENTITY.sub(cut, text[:_MAX_CHARS]) + text[_MAX_CHARS:]
    masked = _DANGLING.sub(r"\1", _SPACES.sub(" ", masked)).strip()
    slots = Slots(*(tuple(dict.fromkeys(v)) for v in vars(found).values()))
    return masked, slots


def query_text(text: str) -> str:
    """What of a message is embedded as a query: entities cut out, the first MAX_QUERY_CHARS characters
    (a message that is nothing but entities is embedded whole, cut)."""
    return (extract(text)[0] or text)[:MAX_QUERY_CHARS]
