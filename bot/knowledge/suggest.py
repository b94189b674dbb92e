"""`relaydesk kb suggest`: frequent questions the knowledge base could not answer, as draft articles.

The learning loop's admin side. Over a window of the desk's history it takes the handed-off questions
the KB had no confident answer for (low confidence, a small margin, no answer, or only an operator's
unapproved past reply; a bare "a person, please" with no question in it is left out), embeds them
with the configured embedder, groups them by cosine similarity and proposes one article per group
asked at least `min_questions` times: a title (the group's most central question), example questions,
and the operators' best answers to them (the operator replies in those conversations after the
handoff, best stored quality score first, then the most recent).

Grouping is average-link agglomerative clustering of the distinct questions (deterministic): groups
merge while their questions are at least `similarity` alike on average. (A greedy nearest-centroid
pass chained the bundled model's answers, whose similarities all sit in 0.75-0.95, into one group.) Drafts are written
only where the admin says (`--write DIR`), never over an existing file and never where `kb ingest` would
pick them up unreviewed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from bot.brain.intent import only_asks_for_a_person
from bot.brain.language import detect_language
from bot.domain.types import Author, EventType, Reason
from bot.knowledge.embeddings import Embedder
from bot.storage.models import Event, Handoff, Message

# Why a question counts as one the KB could not answer. RESPONDER_REQUEST counts only when every
# source was a resolved case: the offline brain found an operator's old reply and no article.
UNANSWERED = {Reason.LOW_CONFIDENCE, Reason.SMALL_MARGIN, Reason.NO_ANSWER}
DEFAULT_SIMILARITY = 0.84  # for the bundled multilingual-e5-small (bench/learning_speed.py); tune per embedder
MAX_QUESTIONS_IN_DRAFT = 20
MAX_DISTINCT = 4000  # distinct questions grouped (the most asked): the similarity matrix is n^2 floats


class SuggestError(ValueError):
    """Something the admin can fix: a bad option, a file that already exists."""


@dataclass(frozen=True)
class OperatorAnswer:
    text: str
    operator: str
    language: str
    score: float  # mean of the stored quality dimensions (0-100); 0 when the reply was not scored
    at: datetime
    conversation_id: int
    message_id: int
    taught: bool = False  # an operator pressed "Teach the bot" on this very reply

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "operator": self.operator,
            "language": self.language,
            "quality": round(self.score, 1),
            "at": self.at.isoformat(),
            "conversation_id": self.conversation_id,
            "taught": self.taught,
        }


@dataclass
class Asked:
    """One handed-off question the KB could not answer, with what operators replied to it."""

    handoff_id: int
    conversation_id: int
    question: str
    reasons: list[str]
    at: datetime
    answers: list[OperatorAnswer] = field(default_factory=list)
    taught: bool = False


@dataclass(frozen=True)
class Suggestion:
    id: str
    title: str
    languages: tuple[str, ...]
    asked: int  # handoffs in the group
    conversations: int
    questions: tuple[str, ...]  # distinct, most central first
    answers: tuple[OperatorAnswer, ...]  # best first
    taught: bool  # some answer of the group was already taught to the bot
    first_asked: datetime
    last_asked: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "languages": list(self.languages),
            "asked": self.asked,
            "conversations": self.conversations,
            "questions": list(self.questions),
            "answers": [a.as_dict() for a in self.answers],
            "taught": self.taught,
            "first_asked": self.first_asked.isoformat(),
            "last_asked": self.last_asked.isoformat(),
        }


# -- reading the history -------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unanswered(reasons: Sequence[str], sources: Sequence[str]) -> bool:
    """Whether a handoff's reasons say the KB had no answer (not merely "a person, please" or anger)."""
    if any(r in UNANSWERED for r in reasons):
        return True
    only_cases = bool(sources) and all(s.startswith("case-") for s in sources)
    return Reason.RESPONDER_REQUEST in reasons and only_cases


def _quality_score(meta: dict[str, Any]) -> float:
    quality = meta.get("quality") or {}
    values = [quality.get(k) for k in ("structure", "clarity", "empathy")]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    return sum(numbers) / len(numbers) if numbers else 0.0


async def load_unanswered(sessions: async_sessionmaker[AsyncSession], since: datetime) -> list[Asked]:
    """Handoffs since `since` the KB could not answer, each with the operators' replies that followed it."""
    async with sessions() as session:
        handoffs = (
            (await session.execute(select(Handoff).where(col(Handoff.created_at) >= since).order_by(col(Handoff.id))))
            .scalars()
            .all()
        )
        in_window = select(Handoff.conversation_id).where(col(Handoff.created_at) >= since)
        # Every handoff of those conversations (also older ones): a reply belongs to the latest before it.
        boundaries = (
            await session.execute(
                select(Handoff.id, Handoff.conversation_id, Handoff.created_at).where(
                    col(Handoff.conversation_id).in_(in_window)
                )
            )
        ).all()
        replies = (
            (
                await session.execute(
                    select(Message)
                    .where(col(Message.conversation_id).in_(in_window))
                    .where(Message.author == Author.OPERATOR)
                    .order_by(col(Message.id))
                )
            )
            .scalars()
            .all()
        )
        taught = (
            (
                await session.execute(
                    select(Event).where(Event.type == EventType.TAUGHT).where(col(Event.conversation_id).in_(in_window))
                )
            )
            .scalars()
            .all()
        )
    taught_replies = {int(e.data["message_id"]) for e in taught if isinstance(e.data.get("message_id"), int)}
    taught_handoffs = {str(e.data.get("case")) for e in taught}
    by_conversation: dict[int, list[tuple[datetime, int]]] = {}
    for handoff_id, conversation_id, created in boundaries:
        by_conversation.setdefault(conversation_id, []).append((_utc(created), handoff_id))
    owner: dict[int, int] = {}  # operator message id -> the handoff it answered
    for reply in replies:
        earlier = [(at, h) for at, h in by_conversation.get(reply.conversation_id, []) if at <= _utc(reply.created_at)]
        if earlier:
            owner[reply.id or 0] = max(earlier)[1]
    answers: dict[int, list[OperatorAnswer]] = {}
    for reply in replies:
        handoff_id = owner.get(reply.id or 0)
        if handoff_id is None or not reply.text.strip():
            continue
        answers.setdefault(handoff_id, []).append(
            OperatorAnswer(
                text=reply.text.strip(),
                operator=reply.operator or "",
                language=detect_language(reply.text),
                score=_quality_score(reply.meta or {}),
                at=_utc(reply.created_at),
                conversation_id=reply.conversation_id,
                message_id=reply.id or 0,
                taught=reply.id in taught_replies,
            )
        )
    return [
        Asked(
            handoff_id=h.id or 0,
            conversation_id=h.conversation_id,
            question=h.question.strip(),
            reasons=list(h.reasons),
            at=_utc(h.created_at),
            answers=answers.get(h.id or 0, []),
            taught=str(h.id) in taught_handoffs,
        )
        for h in handoffs
        if h.question.strip() and unanswered(h.reasons, h.sources) and not only_asks_for_a_person(h.question)
    ]


# -- grouping ------------------------------------------------------------------------------------------


def _normalised(question: str) -> str:
    return " ".join(re.findall(r"\w+", question.lower().replace("ё", "е")))


def group_questions(vectors: np.ndarray, similarity: float) -> list[list[int]]:
    """Average-link agglomerative grouping of unit vectors: the two groups whose questions are the most
    alike on average merge, until no two groups are at least `similarity` alike on average.

    Deterministic (ties go to the lower row). Returns the groups as lists of row indexes, ordered by their
    first row. O(n^2) memory: the caller keeps n to MAX_DISTINCT.
    """
    n = len(vectors)
    if n == 0:
        return []
    sims = (vectors @ vectors.T).astype(np.float32)
    np.fill_diagonal(sims, -np.inf)
    sizes = np.ones(n, np.float32)
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    while len(members) > 1:
        flat = int(np.argmax(sims))
        i, j = divmod(flat, n)
        if float(sims[i, j]) < similarity:
            break
        i, j = min(i, j), max(i, j)
        merged = (sizes[i] * sims[i] + sizes[j] * sims[j]) / (sizes[i] + sizes[j])
        sims[i, :] = merged
        sims[:, i] = merged
        sims[j, :] = -np.inf
        sims[:, j] = -np.inf
        sims[i, i] = -np.inf
        sizes[i] += sizes[j]
        members[i] += members.pop(j)
    return [sorted(rows) for _, rows in sorted(members.items())]


async def suggest(
    asked: Sequence[Asked],
    embedder: Embedder,
    *,
    similarity: float = DEFAULT_SIMILARITY,
    min_questions: int = 3,
    max_answers: int = 3,
) -> list[Suggestion]:
    """Groups of at least `min_questions` handoffs, largest first, each as a proposed article."""
    if not 0 < similarity <= 1:
        raise SuggestError(f"--similarity: got {similarity}; expected a number in (0, 1]")
    if min_questions < 1:
        raise SuggestError(f"--min-questions: got {min_questions}; expected 1 or more")
    by_text: dict[str, list[Asked]] = {}
    for item in asked:
        by_text.setdefault(_normalised(item.question) or item.question, []).append(item)
    # Most asked first, then the earliest (also which ones are kept past MAX_DISTINCT).
    keys = sorted(by_text, key=lambda k: (-len(by_text[k]), by_text[k][0].handoff_id))[:MAX_DISTINCT]
    if not keys:
        return []
    texts = [by_text[k][0].question for k in keys]
    vectors = np.asarray(await embedder.queries(texts), np.float32)
    weights = [len(by_text[k]) for k in keys]
    suggestions = []
    for rows in group_questions(vectors, similarity):
        members = [a for r in rows for a in by_text[keys[r]]]
        if len(members) < min_questions:
            continue
        suggestions.append(_suggestion(rows, members, texts, vectors, weights, max_answers))
    suggestions.sort(key=lambda s: (-s.asked, -s.last_asked.timestamp(), s.title))
    used: Counter[str] = Counter()
    unique = []
    for s in suggestions:  # two groups may slug alike: number the later ones
        used[s.id] += 1
        unique.append(s if used[s.id] == 1 else _renamed(s, f"{s.id}-{used[s.id]}"))
    return unique


def _renamed(s: Suggestion, new_id: str) -> Suggestion:
    return Suggestion(
        new_id,
        s.title,
        s.languages,
        s.asked,
        s.conversations,
        s.questions,
        s.answers,
        s.taught,
        s.first_asked,
        s.last_asked,
    )


def _suggestion(
    rows: list[int],
    members: list[Asked],
    texts: list[str],
    vectors: np.ndarray,
    weights: list[int],
    max_answers: int,
) -> Suggestion:
    group = vectors[rows]
    w = np.asarray([weights[r] for r in rows], np.float32)
    # Centrality: the weighted mean similarity to the group's questions (asked more = counts more).
    centrality = (group @ group.T) @ w / w.sum()
    order = sorted(range(len(rows)), key=lambda i: (-round(float(centrality[i]), 6), -weights[rows[i]], rows[i]))
    questions = tuple(texts[rows[i]] for i in order)
    title = questions[0]
    answers = _best_answers([a for m in members for a in m.answers], max_answers)
    languages = sorted({detect_language(q) for q in questions})
    return Suggestion(
        id=slug(title),
        title=title,
        languages=tuple(languages),
        asked=len(members),
        conversations=len({m.conversation_id for m in members}),
        questions=questions,
        answers=tuple(answers),
        taught=any(m.taught for m in members) or any(a.taught for a in answers),
        first_asked=min(m.at for m in members),
        last_asked=max(m.at for m in members),
    )


def _best_answers(answers: list[OperatorAnswer], limit: int) -> list[OperatorAnswer]:
    """Best stored quality first, then the most recent; the same text given twice counts once."""
    ranked = sorted(answers, key=lambda a: (-a.score, -a.at.timestamp(), -a.message_id))
    seen: set[str] = set()
    best = []
    for answer in ranked:
        key = _normalised(answer.text)
        if key in seen:
            continue
        seen.add(key)
        best.append(answer)
    return best[:limit]


_TRANSLIT = dict(
    zip(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
        ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u",
         "f", "kh", "ts", "ch", "sh", "shch", "_", "y", "_", "e", "yu", "ya"],
        strict=True,
    )
)  # fmt: skip
_STOP = {
    "a", "an", "the", "i", "my", "me", "you", "your", "do", "does", "is", "are", "can", "to", "of", "for", "it",
    "in", "on", "and", "or", "how", "what", "we", "please", "hi", "hello",
    "ya", "mne", "u", "vas", "vy", "li", "mozhno", "kak", "eto", "na", "v", "s", "po", "dlya", "ne",
    "zdravstvuyte", "privet", "pozhaluysta",
}  # fmt: skip


def slug(text: str, words: int = 5) -> str:
    """An article id from a question: ASCII words (Cyrillic transliterated), stop words dropped."""
    latin = "".join(_TRANSLIT.get(c, c) for c in text.lower()).replace("_", "")
    tokens = [t for t in re.findall(r"[a-z0-9]+", latin) if t not in _STOP]
    return "-".join(tokens[:words]) or "suggested-article"


# -- output --------------------------------------------------------------------------------------------


def render_text(suggestions: Sequence[Suggestion], considered: int, since: datetime, examples: int = 6) -> str:
    head = (
        f"{len(suggestions)} suggested article(s) from {considered} handed-off question(s) the knowledge base "
        f"could not answer since {since:%Y-%m-%d %H:%M} UTC"
    )
    lines = [head]
    for n, s in enumerate(suggestions, 1):
        lines += [
            "",
            f"{n}. {s.title}",
            f"   id: {s.id}   languages: {', '.join(s.languages)}   asked {s.asked} times in "
            f"{s.conversations} conversation(s), {s.first_asked:%Y-%m-%d} – {s.last_asked:%Y-%m-%d}"
            + ("   (an answer was already taught to the bot)" if s.taught else ""),
            "   questions:",
            *(f"     - {q}" for q in s.questions[:examples]),
        ]
        if len(s.questions) > examples:
            lines.append(f"     … and {len(s.questions) - examples} more")
        if not s.answers:
            lines.append("   no operator answer yet")
        for i, a in enumerate(s.answers, 1):
            mark = ", taught" if a.taught else ""
            lines.append(f"   answer {i} ({a.operator or '?'}, quality {a.score:.0f}, {a.at:%Y-%m-%d}{mark}):")
            lines += [f"     {line}" for line in a.text.splitlines()]
    return "\n".join(lines)


def as_json(suggestions: Sequence[Suggestion], considered: int, since: datetime, similarity: float) -> dict[str, Any]:
    return {
        "since": since.isoformat(),
        "similarity": similarity,
        "considered": considered,
        "suggestions": [s.as_dict() for s in suggestions],
    }


def draft_files(s: Suggestion) -> dict[str, str]:
    """`<lang>/<id>.md` -> an article draft per language an operator answered in (the KB's layout).

    Each holds the questions asked in that language (all of them when none was) and the best answer
    in it; review notes (how often asked, the other answers) are YAML comments, which ingest ignores.
    """
    files: dict[str, str] = {}
    languages = list(dict.fromkeys(a.language for a in s.answers))
    for lang in languages:
        own = [q for q in s.questions if detect_language(q) == lang]
        questions = list(own or s.questions)[:MAX_QUESTIONS_IN_DRAFT]
        best = next(a for a in s.answers if a.language == lang)
        front = yaml.safe_dump(
            {"id": s.id, "title": _title(s.title, own), "lang": lang, "tags": ["suggested"], "questions": questions},
            allow_unicode=True,
            sort_keys=False,
            width=1000,
        )
        notes = [
            f"# Suggested by `relaydesk kb suggest`: asked {s.asked} times in {s.conversations} conversation(s) "
            f"between {s.first_asked:%Y-%m-%d} and {s.last_asked:%Y-%m-%d}.",
            "# Review and edit the answer below (it is an operator's reply: remove anything personal),",
            "# then move this file into the knowledge folder and run `relaydesk kb ingest`.",
            *(
                f"# Other answer ({a.operator or '?'}, quality {a.score:.0f}): {' '.join(a.text.split())}"
                for a in s.answers
                if a is not best and a.language == lang
            ),
        ]
        files[f"{lang}/{s.id}.md"] = "---\n" + "\n".join(notes) + "\n" + front + "---\n" + best.text.strip() + "\n"
    return files


def _title(title: str, own: list[str]) -> str:
    return (own[0] if own else title).rstrip("?!. ")[:200] or title


def write_drafts(suggestions: Sequence[Suggestion], folder: Path, knowledge: Path | None = None) -> list[Path]:
    """Write every suggestion with an answer; refuse to overwrite anything or to publish into the live KB."""
    if knowledge is not None and _inside(folder, knowledge):
        relative = folder.resolve().relative_to(knowledge.resolve())
        if not any(part.startswith((".", "_")) for part in relative.parts):
            raise SuggestError(
                f"--write {folder}: that is inside the live knowledge folder {knowledge}, where `kb ingest` "
                "would publish the drafts unreviewed; use a folder outside it (or one starting with '_')"
            )
    planned = {folder / rel: text for s in suggestions for rel, text in draft_files(s).items()}
    existing = [str(p) for p in planned if p.exists()]
    if existing:
        raise SuggestError(f"--write: refusing to overwrite {', '.join(sorted(existing))}")
    for path, text in planned.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:  # "x": never over a file that appeared meanwhile
            out.write(text)
    return list(planned)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True
