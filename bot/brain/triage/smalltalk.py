"""Small talk: greetings, thanks, acknowledgements, goodbyes and "are you a bot?", in Russian and English.

A message is small talk only when nothing else is left once its small-talk phrases are taken out:
"thanks!" is, "thanks, but my order never came" is not. Small talk is answered from `prompts/` texts
and never handed off: operators should not see "hi" and "👍".

Praise is the one kind read from meaning: a statement the trained sentiment head finds strongly positive
that asks for nothing ("your courier Ivan was so polite", "the refund came through, thank you so much")
says more than any phrase list holds, and without this it went to an operator as out of scope.
"""

from __future__ import annotations

import re
from enum import StrEnum

SMALL_TALK_KINDS = frozenset({"sticker"})  # kinds of message with no text that are small talk


class SmallTalk(StrEnum):
    GREETING = "greeting"
    THANKS = "thanks"
    ACK = "ack"
    GOODBYE = "goodbye"
    BOT = "bot"  # "are you a bot?"
    PRAISE = "praise"  # a strongly positive statement that asks for nothing (`is_praise`)

    @property
    def text_name(self) -> str:
        """The entry in prompts/texts.yaml that answers it."""
        return f"smalltalk_{self.value}"


# Longer phrases first within each kind; the kinds are tried in this order and the first found names the
# message ("hi, thanks!" is thanks: a reply to thanks also fits a greeting, not the other way round).
_PHRASES: dict[SmallTalk, str] = {
    SmallTalk.BOT: (
        r"(?:are|r) (?:you|u) (?:a |an )?(?:real )?(?:bot|robot|ai|machine|human|person|real)"
        r"|(?:is this|is it|am i (?:talking|speaking|chatting) (?:to|with)) (?:a |an )?(?:real )?"
        r"(?:bot|robot|ai|machine|human|person)"
        r"|(?:ты|вы|это) (?:что )?(?:бот|робот|человек|живой человек|нейросеть|ии|искусственный интеллект)"
        r"|(?:я )?(?:говорю|разговариваю|общаюсь|переписываюсь) с (?:ботом|роботом|человеком)"
        r"|с кем я (?:говорю|разговариваю|общаюсь)|кто (?:ты|вы)|who (?:are you|am i talking to)"
    ),
    SmallTalk.THANKS: (
        r"(?:thank(?:s| you)(?: (?:so|very) much| a lot| a million| again| kindly)?(?: for (?:the |your )?"
        r"(?:help|answer|info(?:rmation)?|quick (?:reply|response|answer)|(?:your )?time))?"
        r"|thx|tnx|ty|tysm|many thanks|much appreciated|(?:i )?appreciate (?:it|that|your help)|cheers"
        r"|(?:большое |огромное )?спасибо(?: (?:большое|огромное|вам|тебе|ещё раз|еще раз))*"
        r"(?: за (?:помощь|ответ|информацию|быстрый ответ|консультацию))?"
        r"|спс|пасиб\w*|благодарю(?: вас)?(?: за помощь)?|мерси"
        r"|(?:you(?:'re| are) )?(?:the best|awesome|great|amazing|a star)|молодц\w*|вы лучшие)"
    ),
    SmallTalk.GREETING: (
        r"(?:hi|hello|hey|hiya|howdy|yo|greetings|good (?:morning|afternoon|evening|day)"
        r"|привет\w*|здравствуй(?:те)?|здрасте|здрасьте|добрый (?:день|вечер)|доброе утро|доброй ночи"
        r"|доброго (?:времени суток|дня|вечера|утра)|приветствую|хай|салют|алло|ку)"
        r"(?: (?:there|all|everyone|team|guys|bot|support|бот|всем|ребята|друзья|поддержка))?"
        r"|how are you(?: doing)?|how's it going|как (?:дела|поживаете|ты|вы)"
    ),
    SmallTalk.GOODBYE: (
        r"(?:good ?bye|bye(?: bye)?|see (?:you|ya)(?: later| soon)?"
        r"|have a (?:nice|good|great) (?:day|one|evening|weekend)"
        r"|take care|до свидания|до свиданья|пока(?: пока)?|всего (?:доброго|хорошего)|хорошего (?:дня|вечера)"
        r"|до встречи|удачи|that'?s all(?: for (?:now|today))?|это вс[её]|больше ничего|на этом вс[её]"
        r"|no (?:more )?questions|вопросов (?:больше )?нет|nothing else)"
    ),
    SmallTalk.ACK: (
        r"(?:ok(?:ay|ey)?|k+|kk|got it|understood|i see|i understand|makes sense|clear|all clear|noted|sure"
        r"|(?:all ?)?right|alright|fine|good|great|cool|nice|perfect|excellent|awesome|wonderful|super|lovely"
        r"|that (?:helps|helped|works)|it (?:helped|works)|(?:that'?s|it'?s) (?:fine|great|good|perfect|clear)"
        r"|yes|yeah|yep|yup|sounds good|will do|no problem|np"
        r"|ок(?:ей|ей)?|оке|окей|ладно|хорошо|понятно|понял[аи]?|ясно|ясненько|отлично|супер|класс|круто|норм(?:ально)?"
        r"|договорились|принято|ага|угу|да|всё (?:понятно|ясно|хорошо|ок)|все (?:понятно|ясно|хорошо|ок)"
        r"|вс[её] понял[аи]?|помогло|это помогло|разобрался|разобралась|теперь понятно)"
    ),
}
_FILLER = (
    r"(?:please|pls|then|so|very|much|again|and|oh|ah|wow|well|a lot|really|just"
    r"|ну|и|а|вот|очень|тогда|ещё|еще|всё|все|теперь)"
)
_EMOJI = re.compile(r"[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B50\u2764\ufe0f\u200d]")
_POSITIVE_EMOJI = re.compile(r"[👍👌🙏😊🙂😀😃😄😁☺🤝👏💪❤💙💚💛🧡💜🖤🤍♥😍🥰😘✅✔✨🌟⭐🔥👋🎉]")
_PATTERNS = {kind: re.compile(rf"\b(?:{phrases})\b", re.IGNORECASE) for kind, phrases in _PHRASES.items()}
_FILLERS = re.compile(rf"\b{_FILLER}\b", re.IGNORECASE)
_REST = re.compile(r"[\W_]+")
_MAX_CHARS = 200  # small talk is short; anything longer carries a question


def small_talk(text: str, kind: str = "text") -> SmallTalk | None:
    """Which kind of small talk the whole message is, or None when it says anything more."""
    if kind in SMALL_TALK_KINDS:
        return SmallTalk.ACK
    if kind != "text" or len(text) > _MAX_CHARS:
        return None
    sample = text.lower()
    found: SmallTalk | None = None
    for talk, pattern in _PATTERNS.items():
        sample, count = pattern.subn(" ", sample)
        if count and found is None:
            found = talk
    emoji = _EMOJI.findall(sample)
    sample = _EMOJI.sub(" ", sample)
    if _REST.sub("", _FILLERS.sub(" ", sample)):
        return None  # words are left: a question or a statement, not small talk
    if found is not None:
        return found
    if emoji and all(_POSITIVE_EMOJI.match(e) or e in "\ufe0f\u200d" for e in emoji):
        return SmallTalk.ACK  # 👍, 🙏, 😊: an acknowledgement; an angry face is not
    return None


PRAISE_AT = 0.8  # the sentiment head's score (p(positive) - p(negative)) from which a statement may be praise
_PRAISE_MAX_CHARS = 300
# A question or a request keeps a message out of praise, however warm: "love your shop, I'd like to order
# wholesale" needs a person or an answer, not thanks.
_REQUEST = re.compile(
    r"\?|\b(?:please|pls|plz|i'?d like|i would like|i want|i need|we need|need to|can (?:you|i|we)"
    r"|could (?:you|i|we)|would you|will you|tell me|let me know|help me|send me|how (?:do|can|to|long|much|many)"
    r"|where (?:is|are|can|do)|when (?:will|is|do|can)|why"
    r"|пожалуйста|прошу|хочу|хотел[аи]?|хотим|нужн[оаы]?|надо|можно|могу ли|можете|подскажите|скажите"
    r"|помогите|пришлите|отправьте|верните|объясните|уточните|как (?:мне|можно|сделать|вернуть|получить)"
    r"|где|когда|почему|зачем|сколько)\b",
    re.IGNORECASE,
)


def is_praise(text: str, score: float) -> bool:
    """Thanks for a solved problem, praise of a courier or an operator, good news: strongly positive (`score`,
    the trained head's) and no question or request in it. Answered with thanks, not handed off."""
    return score >= PRAISE_AT and len(text) <= _PRAISE_MAX_CHARS and not _REQUEST.search(text)
