"""Lexicon-based, negation-aware sentiment for Russian and English customer messages.

Words are matched by whole word or, for entries ending in "*", by stem, which is how Russian
morphology is handled ("ужас*" covers ужасно, ужасный, ужасная). The two lexicons are disjoint
by script, so both are applied to every message: mixed-language text needs no special case.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from bot.domain.types import Sentiment

NEGATIVE_THRESHOLD = -0.25  # score at or below: negative ("the parcel is late" is about -0.33)
POSITIVE_THRESHOLD = 0.25  # score at or above: positive

_ALPHA = 8.0  # squashing constant of score = raw / sqrt(raw² + α); one mild word gives ±0.33
_MAX_CHARS = 5000  # Telegram caps a message at 4096 characters
_NEGATION_SCOPE = 3  # words after "not"/"never"/"нет" that the negation still reaches
_PARTICLES = frozenset({"не", "ни"})  # Russian particles negate the very next word only
_TRAILING_NEGATORS = frozenset({"нет", "нету", "никакой", "никакое", "никакая", "никакие"})
_BOOST_SCOPE = 2  # words after "very"/"очень" that the intensifier still reaches
_NEGATED_NEGATIVE = -0.6  # "not bad" is mildly positive, not the mirror of "bad"
_CAPS = 1.5  # a sentiment word in CAPITALS
_QUESTION = 0.5  # positive words inside a question ("is it good?") are mostly not praise
_EXCLAMATION = 0.3  # extra magnitude per "!", up to four
_SHOUT = 0.3  # extra magnitude per capitalised word, up to three
_BARE_SHOUT = -0.5  # shouting with no other cue ("WHERE IS MY ORDER!!!") reads as impatience


@dataclass(frozen=True)
class SentimentResult:
    label: Sentiment
    score: float  # -1 … 1


class _Kind(Enum):
    WORD = 1  # carries a weight of its own
    FLIP = 2  # neutral alone, negative when negated: "never received", "не работает"
    NEGATOR = 3  # may also carry a weight ("can't")
    BOOST = 4  # multiplies the next sentiment word: "very", "очень", "slightly"
    CLAUSE = 5  # ends a negation's reach: "but", "но"


_EN_WORDS = (
    (
        -3.0,
        "worst horrendous atrocious disgust* furious outrag* scam* fraud* idiot* moron* fuck* fck* "
        "shit* bullshit bastard* asshole* wtf",
    ),
    (
        -2.5,
        "terribl* horribl* awful hate hated hates hating nightmare thief thieves steal* stole stolen "
        "cheat* liar* unacceptable pathetic incompetent unprofessional disgrace* angry pissed crap* sue "
        "suing lawsuit lawyer* attorney* stupid",
    ),
    (-2.2, "useless worthless"),
    (
        -2.0,
        "worse ridiculous absurd insult* rude* upset* unhappy dissatisf* unsatisf* disappoint* "
        "frustrat* garbage trash junk rubbish ruin* waste* wasted shame shameful lied lying sucks suck "
        "sucked unreliable unusable overcharg* chargeback court police damn* dumb",
    ),
    (-1.8, "annoy* irritat* ignor*"),
    (-1.5, "bad badly poor* mad joke mess messed broken damag* defect* faulty crash* complain* stink* hell"),
    (-1.2, "wrong missing lost broke fail* overdue crack* dirty sad sick glitch* ripped torn soaked"),
    (-1.0, "late delay* delayed stuck slow* scratch* tired worried impossible"),
    (-0.8, "error* bug bugs buggy problem* unfortunately sadly confus*"),
    (-0.6, "unable issue issues hard difficult"),
    (
        2.5,
        "excellent awesome amazing fantastic wonderful brilliant superb outstanding terrific fabulous "
        "delight* lifesaver",
    ),
    (
        2.0,
        "thanks thank great perfect* love loved lovely loving happy best appreciat* grateful "
        "gratitude kudos impressed impressive",
    ),
    (1.8, "glad pleased helpful"),
    (1.5, "thx thanx tnx pleasant* satisf* friendly polite nice enjoy* wow yay bless*"),
    (1.2, "good cool smooth*"),
    (1.0, "cheers recommend* solved resolved fixed prompt promptly"),
    (0.8, "easy"),
    (0.6, "quick fast quickly"),
    (0.5, "fine better"),
    (0.4, "ok okay"),
)
_EN_FLIPS = (
    (1.5, "receiv* arriv* deliver*"),
    (1.5, "like liked likes"),
    (1.2, "work* respon* repl* answer* help helped helping refund* hear* heard solve* expect*"),
    (0.8, "come came get got load* open* turn* show* match* fit fits update* sign* log* pay* access*"),
    (0.6, "find found"),
)
_EN_NEGATORS = (
    (
        0.0,
        "not no never nobody nothing none neither nor without hardly dont didnt doesnt isnt wasnt "
        "arent werent havent hasnt wont",
    ),
    (-0.6, "can't cannot couldn't cant couldnt"),
)
_EN_BOOSTS = (
    (1.8, "extremely"),
    (1.7, "incredibly utterly insanely"),
    (1.6, "absolutely"),
    (1.5, "very totally completely deeply super"),
    (1.4, "really so truly highly seriously"),
    (1.3, "too such most"),
    (1.2, "quite pretty"),
    (0.8, "rather fairly"),
    (0.6, "somewhat bit little"),
    (0.5, "slightly mildly"),
)
_EN_CLAUSES = ((0.5, "but however"), (1.0, "although though"))  # "but": what came before counts less

_RU_WORDS = (
    (
        -3.0,
        "отвратит* омерзит* мошен* бля* хуй* хуе* нахуй пизд* ебан* ебат* заеб* уеб* ебуч* выеб* "
        "сука суки сучка мудак* мудил* ублюд* засуд* ярост* худш*",
    ),
    (
        -2.5,
        "ужас* кошмар* безобраз* позор* возмут* возмущ* бесит бесят бесишь взбес* бешен* обман* "
        "развод разводят развели разводите разводилово кидал* кинули ворье воры вор украл* издева* "
        "хамств* хамит хамят хамил* нахам* хамск* хамло некомпетент* непрофессионал* безответствен* "
        "наглост* наглые наглый нагло отстой* неприемлем* недопустим* дебил* идиот* придур* кретин* "
        "твар* тупой тупая тупые тупо тупит говн* дерьм* сволоч* скотин* лохотрон суд суда суде судом "
        "судебн* прокуратур* роспотребнадзор*",
    ),
    (
        -2.0,
        "неуважени* хуж* разочаров* недовол* раздраж* злюсь злой злая зла злит зол бред* бардак халтур* "
        "херн* херов* хрен* фигн* груб* невежлив* капец абсурд* надоел* задолбал* "
        "пожалуюсь юрист* адвокат* полици* дурак* дура козел козлы урод* гад гады огорч*",
    ),
    (-1.8, "расстро* бракован* испорч* испорт* игнор* проигнор*"),
    (
        -1.5,
        "плох* обидн* неприятн* жалоб* претензи* отписк* отмаз* ерунд* жесть дичь треш трэш "
        "брак слом* разбит* поврежд* порван* порвал* дефект* неисправ* нерабоч* глюч* глюк* вылета* "
        "воня* вонюч* замучил* недостач* недовлож*",
    ),
    (
        -1.2,
        "располз* развалил* развалива* промок промокла промокли промокло печаль* грустн* устал* "
        "потерял* потерян* потеря* пропал* просроч* неудобн* грязн* треснул* трещин* тормоз* виснет "
        "зависает зависло сбой сбои сбоем",
    ),
    (
        -1.0,
        "зря прождал* задерж* опозд* опазд* ошибк* ошибоч* ошиблись ошибся жаль неправильн* некорректн* "
        "невозможн* царапин* блин увы опять",
    ),
    (-0.8, "проблем* медленн* верните"),
    (-0.6, "долго долгая долгий долгое долгие сложно трудно"),
    (2.5, "великолепн* превосход* потрясающ* восхит* восторг* изумительн*"),
    (
        2.0,
        "спасибо благодар* отличн* прекрасн* замечательн* чудесн* шикарн* идеальн* безупречн* супер "
        "доволен довольна довольны довольный довольная довольные люблю обожаю лучший лучшая лучшие "
        "лучшее лучшим молодц* умниц*",
    ),
    (
        1.5,
        "спс сенкс класс классн* круто крутой клево клевый клевая здорово кайф* рад рада рады "
        "радует обрадов* порадов* приятн* нрав* понрав* помог помогла помогли помогло вежлив* "
        "профессионал* доброжелат* отзывчив* любезн* ура",
    ),
    (1.2, "хорош* оперативн* качественн* внимательн*"),
    (1.0, "неплох* удобн* рекоменд* советую помогаете решилась решилось решена решено любим*"),
    (0.6, "вовремя"),
    (0.5, "быстр* лучше норм нормально"),
    (0.4, "ок окей понятно ясно"),
    (-0.8, "непонятн*"),
)
_RU_FLIPS = (
    (1.5, "получ* приш* пришл* дош* дошл* достав* привез* привоз* приех* приед*"),
    (1.2, "работа* работ* ответ* отвеча* верн* возвращ* помога* соответств* качеств*"),
    (1.0, "реш* открыва* открыл* загруж* включа* звон* обновл* отслежива* предупред* сообщ*"),
    (0.8, "подход* подошл* подошел"),
    (0.6, "могу можем могут можете смог* удает* удалось"),
)
_RU_NEGATORS = (
    (
        0.0,
        "не ни нет нету никогда никак ничего ничем никто никого никому никакой никакого никакие "
        "никаких никакая нисколько без отнюдь",
    ),
)
_RU_BOOSTS = (
    (1.8, "крайне"),
    (1.7, "безумно невероятно"),
    (1.6, "совершенно абсолютно жутко дико"),
    (1.5, "очень совсем полностью страшно максимально огромное"),
    (1.4, "вообще настолько сильно самый самая самое самые"),
    (1.3, "слишком так такой такая такое такие весьма реально большое"),
    (1.2, "просто прям прямо"),
    (1.1, "довольно"),
    (0.6, "немного немножко чуть"),
    (0.5, "слегка"),
)
_RU_CLAUSES = ((0.5, "но однако зато"), (1.0, "а хотя"))

_EMOJI = (
    (-3.0, "😡 🤬 🖕"),
    (-2.5, "😠"),
    (-2.0, "😤 😭 👎 💩"),
    (-1.5, "😢 😞 😒 🤦 😩 😫 :( :-( (("),
    (-1.2, "😔 🙁 ☹"),
    (2.5, "😍 🥰"),
    (2.0, "❤ 💖 💕"),
    (1.5, "👍 🙏 😊 😀 😃 😄 😁 👏 🤗 😘 ☺ 🎉 💯"),
    (1.0, "🙂 🔥 💪 ⭐ :) :-) :d ))"),
)

# Multi-word cues, matched before words (their words are then not scored again). Weight 0 means
# "not sentiment": greetings and set phrases whose words would otherwise mislead.
_PHRASES = (
    (3.0, r"thank(?:s| you)(?: (?:so|very) much| a lot| a million| a bunch)|many thanks"),
    (3.0, r"(?:спасибо|благодарю)(?: вам)? (?:большое|огромное)|(?:огромное|большое)(?: вам)? спасибо"),
    (0.5, r"thanks? (?:you )?in advance|заранее (?:спасибо|благодар\w*)|спасибо заранее"),
    (1.2, r"no (?:problems?|issues?|worries)|(?:никаких|нет|без) проблем"),
    (2.0, r"(?:well|nicely) done|(?:good|great|nice) job|так держать"),
    (0.5, r"ничего страшного|не за что"),
    (
        0.0,
        r"good (?:morning|afternoon|evening|day|night)|добр(?:ый|ое|ого) (?:день|вечер|утро|времени)"
        r"|доброго времени суток|(?:best|kind|warm) regards|all the best|с уважением|(?:would|'d) love to"
        r"|not only|не только|будьте любезны|по ошибке|by (?:mistake|accident)",
    ),
    (-1.5, r"(?:want|need|give me)(?: back)? (?:my|our|the) money(?: back)?"),
    (-2.0, r"(?:верните|вернуть|отдайте|верните мне)(?: мне)?(?: мои| наши)? (?:деньги|средства|бабки)"),
    (-2.0, r"never again|never (?:buy|order|use|shop)\w* (?:\w+ ){0,3}again|больше никогда|никогда больше"),
    (-2.0, r"sick (?:and tired )?of|fed up|is this a joke|are you (?:kidding|serious|joking)"),
    (-2.0, r"сколько можно|что за (?:бардак|безобразие|дела)|(?:меня|нас) (?:уже )?(?:достали|достал)"),
    (
        -1.5,
        r"(?:second|third|fourth|fifth|\d+(?:st|nd|rd|th)) time|(?:второй|третий|четв[её]ртый|пятый"
        r"|десятый|который|\d+-?й) раз",
    ),
    (
        -1.5,
        r"charged (?:me )?twice|double charged|rip[- ]?off|(?:take|took|taking) (?:forever|ages)"
        r"|(?:списали|сняли)(?: \w+)? дважды|двойное списание|fell apart|falls apart"
        r"|expected (?:much |a lot |way )?better|ожидал\w* (?:большего|лучшего)",
    ),
    (
        -1.0,
        r"still (?:no|not|nothing|haven't|hasn't|waiting)|(?:waiting|waited) (?:for )?(?:\w+ )?(?:weeks|months)"
        r"|for ages"
        r"|до сих пор|(?:жду|ждем|ждать) (?:уже )?(?:\w+ )?(?:недел\w*|месяц\w*|дн\w*|дней)",
    ),
    (-1.2, r"not what i (?:ordered|paid for|expected)|не (?:тот|та|те|то) (?:товар|размер|цвет|заказ|модел\w*)"),
    (
        -2.5,
        r"legal action|small claims|consumer protection|report you|(?:подам|обращусь|пойду) в суд"
        r"|защит\w* прав потребител\w*",
    ),
    (-0.8, r"к сожалению"),
)


def _split(groups: Iterable[tuple[float, str]]) -> Iterable[tuple[str, float]]:
    for weight, entries in groups:
        for entry in entries.split():
            yield entry, weight


def _build_lexicon() -> tuple[dict[str, tuple[_Kind, float]], dict[str, tuple[_Kind, float]]]:
    """Whole words and stems ("stem*") of every kind, keyed for O(1) lookups."""
    exact: dict[str, tuple[_Kind, float]] = {}
    stems: dict[str, tuple[_Kind, float]] = {}
    tables = (
        (_Kind.WORD, _EN_WORDS + _RU_WORDS),
        (_Kind.FLIP, _EN_FLIPS + _RU_FLIPS),
        (_Kind.NEGATOR, _EN_NEGATORS + _RU_NEGATORS),
        (_Kind.BOOST, _EN_BOOSTS + _RU_BOOSTS),
        (_Kind.CLAUSE, _EN_CLAUSES + _RU_CLAUSES),
    )
    for kind, groups in tables:
        for entry, weight in _split(groups):
            if entry.endswith("*"):
                stems.setdefault(entry[:-1], (kind, weight))
            else:
                exact.setdefault(entry, (kind, weight))
    return exact, stems


_EXACT, _STEMS = _build_lexicon()
_STEM_LENGTHS = sorted({len(stem) for stem in _STEMS}, reverse=True)
_EMOJI_WEIGHTS = dict(_split(_EMOJI))
_PHRASE_WEIGHTS = {f"p{i}": weight for i, (weight, _) in enumerate(_PHRASES)}
# One scanner: phrases are tried first at each word, so they stay in order with the words
# around them (a question or a "but" discounts them like any word). It reads lower-cased text,
# which is faster than IGNORECASE; the any-case twin serves text whose length lower() changes.
_SCANNER_PATTERN = (
    "|".join(rf"(?P<p{i}>\b(?:{pattern})\b)" for i, (_, pattern) in enumerate(_PHRASES))
    + r"|(?P<word>[^\W\d_]+(?:'[^\W\d_]+)?)"
    + r"|(?P<emoji>"
    + "|".join(re.escape(e) for e in sorted(_EMOJI_WEIGHTS, key=len, reverse=True))
    + ")"
    + r"|(?P<end>[.!?…]+)"
    + r"|(?P<pause>[,;:()\-—]+)"
)
_SCANNER = re.compile(_SCANNER_PATTERN)
_SCANNER_ANY_CASE = re.compile(_SCANNER_PATTERN, re.IGNORECASE)


def _lookup(word: str) -> tuple[_Kind, float] | None:
    entry = _EXACT.get(word)
    if entry is not None:
        return entry
    for length in _STEM_LENGTHS:  # the longest stem wins, so a specific stem refines a general one
        if length <= len(word):
            entry = _STEMS.get(word[:length])
            if entry is not None:
                return entry
    if word.endswith("n't"):
        return (_Kind.NEGATOR, 0.0)
    return None


def _negated(kind: _Kind, value: float) -> float:
    if kind is _Kind.FLIP:
        return -value
    return -value if value > 0 else value * _NEGATED_NEGATIVE


class _Reader:
    """Reads one message token by token, keeping the sums and the reach of "not" and "very"."""

    def __init__(self) -> None:
        self.total = 0.0
        self.positive = 0.0  # of the current sentence
        self.negative = 0.0
        self.negation = 0  # words the last negator still reaches
        self.boost = 1.0
        self.boost_left = 0
        self.previous: tuple[float, float] | None = None  # last word's weight as read, and negated
        self.exclamations = 0
        self.shouts = 0
        self.long_words = 0

    def add(self, weight: float) -> None:
        if weight > 0:
            self.positive += weight
        else:
            self.negative += weight

    def phrase(self, text: str, weight: float) -> None:
        self.add(weight * (_CAPS if text.isupper() else 1.0))
        self.negation = self.boost_left = 0
        self.previous = None

    def punctuation(self, text: str, sentence_end: bool) -> None:
        if sentence_end:
            self.exclamations += text.count("!")
            question = "?" in text and "!" not in text
            self.total += self.negative + self.positive * (_QUESTION if question else 1.0)
            self.positive = self.negative = 0.0
        self.negation = self.boost_left = 0
        self.previous = None

    def word(self, text: str) -> None:
        if len(text) > 2:
            self.long_words += 1
            self.shouts += text.isupper()
        word = text.lower()
        entry = _lookup(word)
        if entry is None:
            self.negation = max(self.negation - 1, 0)
            self.boost_left = max(self.boost_left - 1, 0)
            self.previous = None
            return
        kind, value = entry
        if kind is _Kind.NEGATOR:
            if word in _TRAILING_NEGATORS and self.previous is not None:
                as_read, negated = self.previous  # "претензий нет": the negation follows the word
                self.add(-as_read)
                self.add(negated)
            self.add(value)
            self.negation = 1 if word in _PARTICLES else _NEGATION_SCOPE
            self.previous = None
            return
        if kind is _Kind.CLAUSE:
            self.positive *= value
            self.negative *= value
            self.negation = self.boost_left = 0
            self.previous = None
            return
        if kind is _Kind.BOOST:
            self.boost, self.boost_left = value, _BOOST_SCOPE
            return
        caps = _CAPS if len(text) > 1 and text.isupper() else 1.0
        if self.negation:
            self.add(_negated(kind, value) * caps)
            self.negation = 0
            self.previous = None
            return
        weight = 0.0 if kind is _Kind.FLIP else value * caps
        if self.boost_left:
            weight *= self.boost
            self.boost_left = 0
        self.add(weight)
        self.previous = (weight, _negated(kind, value) * caps)

    def score(self) -> float:
        raw = self.total + self.negative + self.positive
        shouting = self.shouts >= 2 and 2 * self.shouts >= self.long_words
        if not raw and (self.exclamations >= 3 or shouting):
            raw = _BARE_SHOUT
        if raw:
            emphasis = _EXCLAMATION * min(self.exclamations, 4) + _SHOUT * min(self.shouts, 3)
            raw += math.copysign(emphasis, raw)
        return raw / math.sqrt(raw * raw + _ALPHA)


def _label(score: float) -> Sentiment:
    if score <= NEGATIVE_THRESHOLD:
        return Sentiment.NEGATIVE
    if score >= POSITIVE_THRESHOLD:
        return Sentiment.POSITIVE
    return Sentiment.NEUTRAL


def score_sentiment(text: str, language: str) -> SentimentResult:
    """Score a message from -1 (furious) to 1 (delighted), with its label.

    `language` ("ru", "en", ...) is accepted for the interface's sake: both lexicons always
    apply, and emojis and punctuation work for any language.
    """
    sample = text[:_MAX_CHARS].replace("ё", "е").replace("Ё", "Е").replace("’", "'")
    reader = _Reader()
    lowered, scanner = sample.lower(), _SCANNER
    if len(lowered) != len(sample):  # a few letters ("İ") change length when lower-cased
        lowered, scanner = sample, _SCANNER_ANY_CASE
    for match in scanner.finditer(lowered):
        group = match.lastgroup or ""
        token = sample[match.start() : match.end()]  # the original, whose capitals count
        if group == "word":
            reader.word(token)
        elif group == "emoji":
            reader.add(_EMOJI_WEIGHTS[token.lower()])
            reader.previous = None
        elif group in ("end", "pause"):
            reader.punctuation(token, sentence_end=group == "end")
        else:
            reader.phrase(token, _PHRASE_WEIGHTS[group])
    score = reader.score()
    return SentimentResult(label=_label(score), score=round(score, 4))
