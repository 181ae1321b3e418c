"""Text checks and normalisation shared by TTS and alignment: what may be spoken, sentence splits,
and written words -> dictionary words (numbers spelt out, punctuation dropped)."""

from __future__ import annotations

import re
import unicodedata

from emotalk.errors import InputError

MAX_CHARS = 2000  # longer text is refused (about 2-3 minutes of speech)
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}



def number_words(n: int) -> str:
    """An integer in words: 1984 -> 'one thousand nine hundred eighty four'."""
    if n < 0:
        return "minus " + number_words(-n)
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return f"{number_words(n // value)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)


def _spell_number(m: re.Match) -> str:
    s = m.group(0).replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        return f" {number_words(int(whole or 0))} point {' '.join(_ONES[int(c)] for c in frac)} "
    if len(s) > 12:  # a long digit string (phone number, code): read digit by digit
        return " " + " ".join(_ONES[int(c)] for c in s) + " "
    return " " + number_words(int(s)) + " "


def letter_count(text: str) -> tuple[int, int]:
    """(letters in a Latin script, letters in any other script) of `text`."""
    latin = other = 0
    for ch in text:
        if ch.isalpha():
            if unicodedata.name(ch, "").startswith("LATIN"):
                latin += 1
            else:
                other += 1
    return latin, other


def check_text(text: object, max_chars: int = MAX_CHARS, language: str = "en") -> str:
    """The text to speak, stripped; InputError if empty, not words, too long, or (for English) not in
    the Latin alphabet. Which engines speak which language is tts.py's business."""
    if not isinstance(text, str):
        raise InputError(f"The text to speak must be a string, not {type(text).__name__}.")
    t = unicodedata.normalize("NFC", text).strip()
    if not t:
        raise InputError("The text is empty. Type something for the avatar to say.")
    if len(t) > max_chars:
        raise InputError(f"The text has {len(t)} characters; the limit is {max_chars}. "
                         "Split it into shorter parts.")
    latin, other = letter_count(t)
    if latin + other == 0 and not re.search(r"\d", t):
        raise InputError("The text has no words in it (only symbols, emoji or punctuation). "
                         "Type words for the avatar to say.")
    english = language.split("-")[0].lower() == "en"
    if english and other > max(2, 0.2 * (latin + other)):
        raise InputError("The text is not in the Latin alphabet, but the language is English. The offline "
                         "voices and the lip aligner speak English only: type English text, pick a voice "
                         "of the text's language (online voices only), or upload a recording instead.")
    return t


def split_sentences(text: str, max_len: int = 400) -> list[str]:
    """Sentences of `text` (split after . ! ? ; and newlines); over-long ones are cut at commas/spaces."""
    parts = [p.strip() for p in re.split(r"(?<=[.!?;:])\s+|\n+", text) if p.strip()]
    out: list[str] = []
    for p in parts:
        while len(p) > max_len:
            cut = max(p.rfind(", ", 0, max_len), p.rfind(" ", 0, max_len))
            cut = cut if cut > 0 else max_len
            out.append(p[:cut + 1].strip())
            p = p[cut + 1:].strip()
        if p:
            out.append(p)
    return out


def spoken_words(text: str) -> list[str]:
    """Lower-case dictionary words of written text: numbers and symbols spelt out, punctuation dropped."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c))  # café -> cafe
    t = t.replace("’", "'").replace("‘", "'")
    for sym, word in _SYMBOLS.items():
        t = t.replace(sym, word)
    t = re.sub(r"\d+(?:,\d{3})*(?:\.\d+)?", _spell_number, t)
    t = re.sub(r"[^A-Za-z' ]+", " ", t).lower()
    words = [w.strip("'") for w in t.split()]
    return [w for w in words if w]
