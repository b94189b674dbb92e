"""Promises a model must not make: money, a refund, a credit, a discount, a replacement, a deadline.

Only the compensation policy makes offers (its text is added to a draft by code, and an operator sends
it); whatever the agent writes itself is checked here, in English and Russian, whatever the wording. A
cited article may state amounts and percentages (prices, delivery fees, "members save 5%"), so those
count only when no cited article states them; a refund, a credit, a replacement or a deadline counts
even when an article mentions one, since the article describes a procedure and the model would be
granting it to this customer.
"""

from __future__ import annotations

import re

from bot.brain.triage.entities import extract

_PERCENT = re.compile(r"(\d{1,3}(?:[.,]\d+)?)\s*(?:%|percent|per cent|процент\w*)", re.IGNORECASE)
_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")

# Always a promise, whatever the cited articles say: money back, credit, compensation, something for free,
# a replacement, a guarantee or a date committed to.
_ALWAYS = (
    r"refund\w*|reimburs\w*|money back|(?:return|give|send|pay)\w* (?:you )?(?:your |the |back )?money|cash ?back"
    r"|charge ?back|compensat\w*|store credit|credit(?:ed|ing)?\b|\bon us\b|free of charge|for free"
    r"|free (?:replacement|delivery|shipping)|at no (?:extra )?(?:cost|charge)|waive\w*|replac\w*"
    r"|(?:send|ship|give)\w* (?:you )?(?:a )?(?:new|another|second|fresh)\b"
    r"|re-?send\w*|re-?ship\w*|pay you|paid (?:back|to you)|reverse[ds]? the (?:charge|payment)|cancel\w* the charge"
    r"|guarantee\w*|i promise|we promise|(?:will|'ll|shall|going to)\b[^.!?\n]{0,60}?"
    r"\b(?:today|tonight|tomorrow|by (?:the end of|monday|tuesday|wednesday|thursday|friday|saturday|sunday|noon)"
    r"|within \d+|in \d+ (?:hours?|days?)|this week|next week)"
    r"|верн\w*\s+(?:вам\s+)?(?:деньг|средств|оплат|стоимост|сумм|полн)\w*|деньги\s+(?:\w+\s+)?(?:верн|возвращ|зачисл|перевед|поступ)\w*"
    r"|возврат\w*\s+(?:денег|средств|оплаты|стоимости|суммы)|полн\w* возврат\w*|возмест\w*|возмещ\w*|компенс\w*"
    r"|начисл\w*|зачисл\w*|переведём|переведем|перечисл\w*|бесплатн\w*|за наш сч[её]т|за сч[её]т магазина|замен\w*"
    r"|(?:отправ|вышл|пришл)\w* (?:вам )?(?:нов|друг|ещё|еще|повторн)\w*|повторн\w* (?:отправ|доставк)\w*|гарантир\w*"
    r"|обеща\w*|отмен\w* (?:списани|платеж|платёж)\w*"
    r"|(?:доставим|привез[её]м|отправим|получите|прид[её]т|будет (?:доставлен|у вас)\w*|решим|сделаем)"
    r"[^.!?\n]{0,60}?(?:сегодня|завтра|послезавтра|до (?:конца|понедельника|вторника|среды|четверга|пятницы|субботы)"
    r"|в течение|через \d+|на этой неделе|на следующей неделе)"
)
# An offer unless a cited article speaks of it (the promo-code article may explain how a code is entered).
_UNLESS_GROUNDED = (
    r"discount\w*|voucher\w*|coupon\w*|gift card\w*|promo ?code\w*|bonus\w*"
    r"|скидк\w*|промокод\w*|купон\w*|сертификат\w*|ваучер\w*|бонус\w*"
)
_PROMISE = re.compile(_ALWAYS, re.IGNORECASE)
_OFFER = re.compile(_UNLESS_GROUNDED, re.IGNORECASE)


def unapproved_promise(text: str, approved_percent: int = 0, grounded_in: str = "") -> str:
    """What `text` promises that only an operator may ('' when nothing).

    `approved_percent`: the policy's offer for this turn (its own text is added by code, not checked here);
    `grounded_in`: the cited articles' text, whose amounts and percentages are facts, not promises."""
    percents = {_number(m.group(1)) for m in _PERCENT.finditer(grounded_in)}
    for match in _PERCENT.finditer(text):
        value = _number(match.group(1))
        if value > approved_percent and value not in percents:
            return f"mentions {match.group(0)} while the policy allows {approved_percent}%"
    amounts = {n for amount in extract(grounded_in)[1].amounts for n in _DIGITS.findall(amount)}
    for amount in extract(text)[1].amounts:
        if not set(_DIGITS.findall(amount)) <= amounts:
            return f"names the amount {amount!r}"
    found = _PROMISE.search(text)
    if found:
        return f"promises {found.group(0)!r}, which only an operator may offer"
    grounded = {m.group(0).lower()[:5] for m in _OFFER.finditer(grounded_in)}
    for offer in _OFFER.finditer(text):
        if offer.group(0).lower()[:5] not in grounded:
            return f"offers {offer.group(0)!r}, which only an operator may offer"
    return ""


def _number(text: str) -> float:
    return float(text.replace(",", "."))
