"""Transcripts with word times (faster-whisper) and forced phone alignment (pocketsphinx)."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.errors import InputError, MediaError
from emotalk.speech.align import align_phones, guess_pronunciation, transcribe
from emotalk.speech.textnorm import number_words, split_sentences, spoken_words
from tests.conftest import shared

ARPABET = set("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH T TH UH UW V W "
              "Y Z ZH SIL".split())


@pytest.fixture(scope="module")
def obama():
    from emotalk.speech.normalize import load_speech

    return load_speech(shared("audio/speech_obama_5s.wav"))


@pytest.fixture(scope="module")
def obama_transcript(obama):
    """Whisper's transcript of `obama`, made once for the tests that read it."""
    return transcribe(obama)


def test_text_helpers():
    assert number_words(1984) == "one thousand nine hundred eighty four"
    assert spoken_words("I paid $3.50 & left at 10%!") == [
        "i", "paid", "three", "point", "five", "zero", "and", "left", "at", "ten", "percent"]
    assert spoken_words("Café — don’t") == ["cafe", "don't"]
    assert split_sentences("One. Two! Three?\nFour") == ["One.", "Two!", "Three?", "Four"]
    long = "word " * 200
    assert all(len(s) <= 400 for s in split_sentences(long))
    assert guess_pronunciation("Bamm") == "B AE M"


def test_transcribe_real_speech(obama, obama_transcript):
    tr = obama_transcript
    text = tr.text.lower()
    assert "oil spill" in text and "shores" in text
    starts = [w.start for w in tr.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= len(obama) / 16000 + 0.1 for w in tr.words)
    assert np.mean([w.score for w in tr.words]) > 0.7


def test_forced_alignment_phones(obama, obama_transcript):
    text = "Think with you about the battle we're waging against an oil spill that is assaulting our shores."
    al = align_phones(obama, text)
    assert [w.text for w in al.words][:3] == ["think", "with", "you"]
    assert {p.phone for p in al.phones} <= ARPABET
    assert all(a.end <= b.start + 1e-6 for a, b in zip(al.phones, al.phones[1:]))
    # the labial closure of "spill" (P) sits inside the word "spill"
    spill = next(i for i, w in enumerate(al.words) if w.text == "spill")
    p = next(p for p in al.phones if p.word == spill and p.phone == "P")
    assert al.words[spill].start <= p.start < p.end <= al.words[spill].end
    # Whisper and pocketsphinx agree roughly on where "oil" is
    tr = obama_transcript
    w_oil = next(w for w in tr.words if "oil" in w.text.lower())
    a_oil = next(w for w in al.words if w.text == "oil")
    assert abs(w_oil.start - a_oil.start) < 0.3


def test_alignment_with_unknown_words(obama):
    al = align_phones(obama, "Think with you about the Zorblax 12 spill")
    assert "zorblax" in [w.text for w in al.words] and "twelve" in [w.text for w in al.words]


def test_written_words_keep_spelling():
    from emotalk.speech.align import Word, written_words

    names = ["i", "owe", "three", "point", "five"]
    spoken = [Word(w, round(i * 0.1, 3), round(i * 0.1 + 0.08, 3)) for i, w in enumerate(names)]
    got = written_words("I owe 3.5!", spoken)
    assert [(w.text, w.start, w.end) for w in got] == [
        ("I", 0.0, 0.08), ("owe", 0.1, 0.18), ("3.5!", 0.2, 0.48)]
    assert written_words("something else entirely", spoken) == spoken


def test_bad_input(obama):
    with pytest.raises(InputError, match="English"):
        transcribe(obama, language="fr")
    with pytest.raises(InputError, match="no words"):
        align_phones(obama, "?!")
    with pytest.raises(MediaError, match="No speech"):
        transcribe(np.zeros(16000, np.float32))
