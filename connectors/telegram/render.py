"""Markdown from the knowledge base (and operators) to Telegram HTML that Telegram always accepts.

Everything that is not markup is escaped, every tag the converter writes is closed in the same
block, and long texts are cut at paragraph boundaries (then lines, then words) so each message
stays under Telegram's 4096-character limit (counted, like Telegram does, in UTF-16 code units
of the visible text).
"""

from __future__ import annotations

import html
import re

LIMIT = 4096
_SAFE_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_INLINE = re.compile(
    r"(?P<code>`(?P<code_body>[^`\n]+)`)"
    r"|(?P<link>\[(?P<link_text>[^\]\n]+)\]\((?P<link_url>[^)\s]+)\))"
    r"|(?P<bold>\*\*(?P<bold_body>\S(?:.*?\S)?)\*\*)"
    r"|(?P<bold2>__(?P<bold2_body>\S(?:.*?\S)?)__)"
    r"|(?P<italic>(?<![\w*])\*(?P<italic_body>[^*\s](?:[^*]*?[^*\s])?)\*(?![\w*]))"
)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_TAGS = re.compile(r"<[^>]+>")


def escape(text: str) -> str:
    return html.escape(text, quote=False)


def inline(text: str) -> str:
    """One line of Markdown to HTML: `code`, [links](url), **bold**, __bold__, *italic*; the rest escaped."""
    out: list[str] = []
    pos = 0
    for match in _INLINE.finditer(text):
        out.append(escape(text[pos : match.start()]))
        pos = match.end()
        if match.group("code"):
            out.append(f"<code>{escape(match.group('code_body'))}</code>")
        elif match.group("link"):
            url = match.group("link_url")
            label = inline(match.group("link_text"))
            if url.lower().startswith(_SAFE_SCHEMES):
                out.append(f'<a href="{html.escape(url, quote=True)}">{label}</a>')
            else:
                out.append(f"{label} ({escape(url)})")
        elif match.group("bold"):
            out.append(f"<b>{inline(match.group('bold_body'))}</b>")
        elif match.group("bold2"):
            out.append(f"<b>{inline(match.group('bold2_body'))}</b>")
        else:
            out.append(f"<i>{inline(match.group('italic_body'))}</i>")
    out.append(escape(text[pos:]))
    return "".join(out)


def _table_row(line: str, header: bool) -> str:
    cells = [inline(cell.strip()) for cell in line.strip().strip("|").split("|")]
    row = " — ".join(cell for cell in cells if cell)
    return f"<b>{row}</b>" if header else f"• {row}"


def block_to_html(block: str) -> str:
    """One paragraph (or fenced code block) of Markdown; every tag opened here is closed here."""
    lines = block.split("\n")
    if lines and lines[0].lstrip().startswith("```"):
        body = "\n".join(line for line in lines[1:] if not line.strip().startswith("```"))
        return f"<pre>{escape(body)}</pre>" if body.strip() else ""
    lines = [line.rstrip() for line in lines]
    out: list[str] = []
    in_table = False
    for index, line in enumerate(lines):
        if _TABLE_RULE.match(line) and "|" in line:
            continue
        if line.strip().startswith("|"):
            following = lines[index + 1] if index + 1 < len(lines) else ""
            out.append(_table_row(line, header=not in_table and bool(_TABLE_RULE.match(following))))
            in_table = True
            continue
        in_table = False
        if heading := _HEADING.match(line):
            out.append(f"<b>{inline(heading.group(1))}</b>")
        elif bullet := _BULLET.match(line):
            out.append(f"{bullet.group(1)}• {inline(bullet.group(2))}")
        elif line.startswith(">"):
            out.append(f"<i>{inline(line.lstrip('> '))}</i>")
        else:
            out.append(inline(line))
    return "\n".join(out)


def visible_length(markup: str) -> int:
    """What Telegram counts: UTF-16 code units of the text once tags and entities are resolved."""
    text = html.unescape(_TAGS.sub("", markup))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def plain(markup: str) -> str:
    """The visible text of our HTML: the fallback when Telegram refuses it anyway."""
    return html.unescape(_TAGS.sub("", markup))


def blocks(text: str) -> list[str]:
    """Paragraphs separated by blank lines; a fenced code block stays one block."""
    out: list[str] = []
    current: list[str] = []
    fenced = False
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line.strip().startswith("```"):
            fenced = not fenced
        if not line.strip() and not fenced:
            if current:
                out.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        out.append("\n".join(current))
    return out


def _pieces(block: str, limit: int) -> list[str]:
    """A block too long for one message: cut at lines, then sentences/words, then anywhere."""
    if visible_length(block_to_html(block)) <= limit:
        return [block]
    for separator in ("\n", ". ", " "):
        parts = block.split(separator)
        if len(parts) > 1:
            out: list[str] = []
            current = ""
            for index, part in enumerate(parts):
                piece = part + (separator if index < len(parts) - 1 else "")
                candidate = current + piece
                if current and visible_length(block_to_html(candidate.strip())) > limit:
                    out.extend(_pieces(current.strip(), limit))
                    current = piece
                else:
                    current = candidate
            if current.strip():
                out.extend(_pieces(current.strip(), limit))
            return [p for p in out if p]
    # no separator at all: a hard cut (by code points, so a character is never split in two)
    cut, units = 0, 0
    for char in block:
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit - 8:  # a little room for what rendering adds ("• ")
            break
        cut += 1
    cut = max(cut, 1)
    return [block[:cut], *_pieces(block[cut:], limit)] if cut < len(block) else [block]


def render(text: str, limit: int = LIMIT) -> list[str]:
    """Markdown → HTML messages, each at most `limit` visible characters, split between paragraphs."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for block in blocks(text):
        for piece in _pieces(block, limit):
            markup = block_to_html(piece)
            if not markup.strip():
                continue
            length = visible_length(markup)
            joiner = 2 if current else 0
            if current and size + joiner + length > limit:
                messages.append("\n\n".join(current))
                current, size, joiner = [], 0, 0
            current.append(markup)
            size += joiner + length
    if current:
        messages.append("\n\n".join(current))
    return messages
