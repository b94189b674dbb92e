"""Russian/English language detection by script, cheap enough to run on every message."""

from __future__ import annotations

import re

LANGUAGES = ("en", "ru")  # what detect_language tells apart: the languages the desk speaks
# Telegram caps a message at 4096 characters; longer input is not worth scanning in full.
_MAX_CHARS = 5000

# Script-neutral noise: links, e-mails, @mentions, #hashtags/#order numbers and /commands.
_NOISE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+|[@#/]\w+", re.IGNORECASE)
_CYRILLIC = re.compile(r"[\u0400-\u052f]+")  # Russian, Ukrainian and other Cyrillic alphabets
_LATIN = re.compile(r"[A-Za-z\u00c0-\u024f\d]+")


def _is_name_like(word: str, sentence_start: bool) -> bool:
    """Brand names and codes (iPhone, DHL, PS5, Wildberries) appear in Russian messages too."""
    if any(c.isdigit() for c in word) or (len(word) > 1 and word.isupper()):
        return True
    if not word[1:].islower() and len(word) > 1:
        return True  # iPhone, WhatsApp
    return word[0].isupper() and not sentence_start


def _starts_sentence(text: str, index: int) -> bool:
    index -= 1
    while index >= 0 and text[index].isspace():
        index -= 1
    return index < 0 or text[index] in ".!?"


def detect_language(text: str, default: str = "en") -> str:
    """Return "ru" or "en" by the majority of letters; `default` when there are no letters at all.

    Links, mentions, commands and order numbers are ignored, and so are Latin brand names and
    codes when the message also has Cyrillic in it ("Заказ на Wildberries" is Russian).
    """
    if not text:
        return default
    sample = _NOISE.sub(" ", text[:_MAX_CHARS])
    cyrillic = sum(len(run) for run in _CYRILLIC.findall(sample))
    latin = 0
    for match in _LATIN.finditer(sample):
        word = match.group()
        letters = sum(c.isalpha() for c in word)
        if not letters:
            continue
        if not (cyrillic and _is_name_like(word, _starts_sentence(sample, match.start()))):
            latin += letters
    if not cyrillic:
        return "en" if latin else default
    # A tie goes to Russian: typing Cyrillic at all is a deliberate choice, Latin often is not.
    return "ru" if cyrillic >= latin else "en"
