"""Rule-based signals: does the customer ask for a person, and how soon must someone look."""

from __future__ import annotations

import re

from bot.brain.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD
from bot.domain.types import Priority

STRONG_NEGATIVE = -0.6  # sentiment score at or below which a message is "strongly negative"

_MAX_CHARS = 5000

_EN_PERSON = (
    r"(?:human|humans|(?:real |live |actual )?(?:person|people)|agent|operator|representative|rep|manager"
    r"|supervisor|someone|somebody|staff|employee|customer (?:service|support)|support team)"
)
_EN_STAFF = r"(?:human|agent|operator|representative|rep|manager|supervisor)"  # never ambiguous
_EN_ARTICLES = r"(?:(?:a|an|the|some|your|one of your|real|live|actual|human)\s+){0,3}"
# Russian requests use the accusative/instrumental/genitive ("позовите оператора", "с человеком")
# or "к" + dative; a mere mention ("оператор был вежлив") has no request verb near it.
_RU_PERSON = (
    r"(?:оператор(?:а|ом|ы)?|человек(?:а|ом)|менеджер(?:а|ом)?|сотрудник(?:а|ом)|специалист(?:а|ом)?"
    r"|консультант(?:а|ом)?|администратор(?:а|ом)?|людьми|поддержк(?:ой|у)"
    r"|к\s+(?:живому\s+)?(?:оператору|человеку|менеджеру|сотруднику|специалисту|консультанту))"
)
_RU_VERB = (
    r"(?:позов\w*|зов\w*|позвать|соедин\w*|переключ\w*|перевед\w*|перевест\w*|дайте|дай|хочу|нужен|нужна"
    r"|нужно|надо|можно|свяж\w*|связат\w*|подключ\w*|пригласи\w*|вызов\w*|вызвать|поговорить|пообщаться"
    r"|общаться|говорить|обрат\w*|требую|давайте)"
)
_RU_WINDOW = r"(?:[^\w.!?]+\w+){0,4}?[^\w.!?]+"  # up to four words, within one sentence
_RU_ABOUT = r"(?<!на )(?<!про )(?<!\bо )(?<!об )"  # "пожаловаться на оператора" is not a request
_WANTS_HUMAN = re.compile(
    r"(?:^|\s)/(?:human|operator|agent|оператор)\b"  # bot commands
    rf"|\b(?:talk|speak|chat)(?:ing)?\s+(?:to|with)\s+{_EN_ARTICLES}{_EN_PERSON}\b"
    rf"|\b(?:connect|transfer|put|pass|escalate|switch|forward)\w*\s+(?:(?:me|us|this|it)\s+)?"
    rf"(?:(?:through|over)\s+)?(?:to|with)\s+{_EN_ARTICLES}{_EN_PERSON}\b"
    rf"|\b(?:want|need|get|give|bring|call|let me have|can i have)(?:\s+me)?\s+{_EN_ARTICLES}{_EN_STAFF}\b"
    r"|\b(?:human|person|someone|somebody|agent) (?:i|we) can (?:talk|speak|chat)\b"
    r"|\b(?:real|live|actual) (?:human|person|agent|people|operator)\b"
    r"|\b(?:human|person|agent|operator|representative) (?:please|pls|plz)\b"
    rf"|\b{_RU_VERB}{_RU_WINDOW}{_RU_ABOUT}{_RU_PERSON}\b"
    rf"|\b{_RU_PERSON}[^\w.!?]+(?:\w+[^\w.!?]+)?(?:позов\w*|зов\w*|дайте|дай|пожалуйста|please|мне|сюда)\b"
    r"|\b(?:перевед|перевест|переключ)\w*(?:\s+\w+)?\s+на\s+(?:живого\s+)?"
    r"(?:оператора|человека|менеджера|сотрудника|специалиста)\b"
    r"|\bживо(?:й|го|м|му) человек\w*|\bчеловек\w*,? а не бот\w*|\bне с ботом\b",
    re.IGNORECASE,
)
# A whole message that is just the name of a person ("Оператор!", "human", "менеджера").
_ONLY_PERSON = re.compile(
    r"\W*(?:human|operator|agent|representative|person|оператор\w*|человек\w*|менеджер\w*|живой человек)"
    r"\W*(?:please|pls|пожалуйста)?\W*",
    re.IGNORECASE,
)
# "I don't want to talk to a human", "не надо оператора": a negation just before the request.
_REFUSAL = re.compile(r"\b(?:don't|do not|dont|no need to|not|never|не|нет|без)\s+(?:\w+\s+){0,2}$", re.IGNORECASE)

_URGENCY = re.compile(
    r"\b(?:urgent\w*|asap|immediately|right now|right away|emergency|срочн\w*|немедленно|сейчас же"
    r"|как можно (?:скорее|быстрее)|безотлагательно|сегодня же|до конца (?:дня|сегодняшнего дня))\b"
    # a deadline the customer sets: "I need this fixed today", "fix this today", "нужно решить сегодня"
    r"|\b(?:need|needs|must|have to|has to|got to|fix|sort|resolve|solve|unblock|unlock|refund (?:me|it|this|my))\b"
    r"[^.!?\n]{0,40}?"
    r"\b(?:today|tonight|by tomorrow|by the end of (?:the )?day)\b"
    r"|\b(?:нужно|надо|необходимо|требую|прошу|должны|решите|исправьте|верните|разблокируйте)\b[^.!?\n]{0,40}?"
    r"\b(?:сегодня|до завтра|к вечеру)\b",
    re.IGNORECASE,
)
# A customer who says they have written or asked before has waited already ("третий раз пишу", "I've asked
# three times", "this is the second time I'm contacting you"): someone should look soon.
_ORDINAL = (
    r"(?:second|third|fourth|fifth|tenth|\d+(?:st|nd|rd|th)|второй|третий|четв[её]ртый|пятый|десятый|который"
    r"|\d+-?й)"
)
_EN_CONTACT = (
    r"(?:writ\w*|wrote|ask\w*|contact\w*|call\w*|email\w*|e-mail\w*|messag\w*|chat\w*|reach\w* out|complain\w*)"
)
_RU_CONTACT = r"(?:пиш\w*|писа\w*|напис\w*|обраща\w*|обращусь|звон\w*|спрашива\w*|прошу|жалу\w*)"
_TIMES = r"(?:twice|three times|four times|several times|many times|multiple times|\d+ times)"
_RU_TIMES = r"(?:два|три|четыре|пять|несколько|много|\d+) раза?"
_REPEATED_CONTACT = re.compile(
    rf"\b{_ORDINAL} time (?:(?:i'm|i am|i've been|i have been|we're|we are|that i|i) )?{_EN_CONTACT}"
    rf"|\b{_EN_CONTACT} (?:(?:to )?you |(?:to )?(?:your )?support )?(?:for )?the {_ORDINAL} time"
    rf"|\b(?:i've|i have|we've|we have|i) (?:already )?{_EN_CONTACT} (?:(?:to )?you |(?:to )?(?:your )?support )?"
    rf"(?:about (?:this|it) )?(?:already )?{_TIMES}"
    rf"|\b(?:в )?{_ORDINAL} раз (?:уже )?(?:вам )?{_RU_CONTACT}"
    rf"|\b{_RU_CONTACT} (?:вам )?(?:уже )?(?:вам )?(?:в )?(?:{_ORDINAL} раз|{_RU_TIMES})"
    rf"|\b(?:уже )?{_RU_TIMES} (?:вам )?{_RU_CONTACT}",
    re.IGNORECASE,
)
_SHOUTED_NOW = re.compile(r"\b(?:NOW|СЕЙЧАС|ASAP)\b")  # case matters: a shouted "now" is a demand
# Harm already done, however calmly told: money taken or missing, an account in someone else's hands,
# property damaged, someone hurt. These need a person soon even without angry words.
_HARM = re.compile(
    r"\b(?:charged (?:me )?(?:twice|double|two times|three times|again)|double[- ]?charged"
    r"|(?:double|duplicate) (?:charge|payment|transaction)s?|overdrawn|overdraft|unauthori[sz]ed|fraud\w*"
    r"|scam(?:med|mer|mers|s)?|stolen|stole|hack(?:ed|er|ers)?|identity theft"
    r"|(?:someone|somebody|a stranger)(?: else)? (?:has )?(?:logged|signed|got|broke) (?:in|into)"
    r"|(?:taken over|took over|compromised|hijacked) (?:my )?account|account (?:was |has been |got |is )?"
    r"(?:taken over|compromised|hijacked)|locked (?:me )?out of my account"
    r"|(?:money|funds|payment|balance) (?:is |was |has )?(?:gone|missing|disappeared|vanished)"
    r"|(?:damag|broke|ruin|destroy|flood|scratch|dent)(?:ed|ing)? (?:my|our|it|them)|water damage|flooded|flooding"
    r"|property damage|(?:pay|pays|paying|cover|covers) for (?:the )?(?:repairs?|damages?)|возмест\w* (?:ущерб|ремонт)"
    r"|injur\w*|hurt (?:me|my)|caught fire|burn(?:ed|t) (?:my|the)"
    r"|списа\w*(?: \w+){0,3} (?:дважды|два раза|повторно|ещ[её] раз)|(?:дважды|два раза|повторно) списа\w*"
    r"|двойн\w* (?:списани|оплат|платеж)\w*|в минус\w*|овердрафт\w*|минус на (?:карте|сч[её]те)"
    r"|мошен\w*|взлом\w*|украл\w*|украден\w*|похитил\w*|похищен\w*|несанкционирован\w*"
    r"|(?:кто-то|посторонн\w*|чужой|чужие) (?:вош[её]л|зашл?[иа]?|заш[её]л|получил\w* доступ)"
    r"|(?:деньги|средства|баланс) (?:пропал\w*|исчез\w*|ушл?[иа]?)|пропали деньги|исчезли деньги"
    r"|повредил\w*|испортил\w* (?:мо|наш)\w*|затопил\w*|залил\w*|ущерб\w*|травм\w*)\b",
    re.IGNORECASE,
)
_THREAT = re.compile(
    r"\b(?:sue|suing|lawsuit|lawyer\w*|attorney\w*|court|police|legal action|chargeback|суд|суда|суде"
    r"|судом|судебн\w*|засуж\w*|юрист\w*|адвокат\w*|полици\w*|прокуратур\w*|роспотребнадзор\w*"
    r"|защит\w* прав потребител\w*)\b",
    re.IGNORECASE,
)


def wants_human(text: str) -> bool:
    """True when the customer explicitly asks for a person (not when one is merely mentioned)."""
    sample = text[:_MAX_CHARS]
    if _ONLY_PERSON.fullmatch(sample):
        return True
    return any(not _REFUSAL.search(sample, 0, match.start()) for match in _WANTS_HUMAN.finditer(sample))


_FILLER = {
    "want", "need", "would", "like", "please", "can", "could", "you", "your", "talk", "speak", "with", "have",
    "get", "give", "some", "one", "hello", "thanks",
    "хочу", "мне", "можно", "пожалуйста", "здравствуйте", "привет", "дайте", "нужен", "нужно", "надо", "спасибо",
}  # fmt: skip


def only_asks_for_a_person(question: str) -> bool:
    """A request with no question left in it: "I want to talk to a person", "позовите оператора"."""
    if not wants_human(question):
        return False
    rest = _WANTS_HUMAN.sub(" ", question).lower()
    return len([w for w in re.findall(r"\w{3,}", rest) if w not in _FILLER]) < 2


def harmed(text: str) -> bool:
    """True when the message reports harm already done: money taken twice or missing, an account in a
    stranger's hands, property damaged, someone hurt."""
    return bool(_HARM.search(text[:_MAX_CHARS]))


def priority(sentiment_score: float, text: str, wants_human: bool) -> Priority:
    """How soon an operator should look: harm, threats and urgent anger first, thanks last.

    The mood alone misses a calm report of harm ("my card was charged twice and my account is
    overdrawn"), a calm deadline ("I need this fixed today") or a customer writing again ("третий раз
    пишу"): those cues count on their own. Harm with any negativity or a deadline, and a deadline or a
    threat with strong negativity, are urgent."""
    sample = text[:_MAX_CHARS]
    pressing = bool(_URGENCY.search(sample) or _SHOUTED_NOW.search(sample) or _THREAT.search(sample))
    harm = harmed(sample)
    negative = sentiment_score <= NEGATIVE_THRESHOLD
    if (pressing and sentiment_score <= STRONG_NEGATIVE) or (harm and (pressing or negative)):
        return Priority.URGENT
    if pressing or harm or _REPEATED_CONTACT.search(sample) or sentiment_score <= STRONG_NEGATIVE:
        return Priority.HIGH
    if wants_human and negative:
        return Priority.HIGH
    if sentiment_score >= POSITIVE_THRESHOLD and not wants_human and "?" not in sample:
        return Priority.LOW  # thanks and small talk; a question still deserves a normal answer
    return Priority.NORMAL
