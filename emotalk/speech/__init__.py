"""Speech: from a user's recording or typed text to 16 kHz speech, its timings and the audio code.

- features.py    `compute_audio_code` (per-frame Whisper or mel windows), `code_dims`
- normalize.py   `load_speech`: any file/array -> checked, 16 kHz mono, loudness-normalised
- tts.py         `text_to_speech`: Piper -> espeak-ng (offline), or the chosen online voice first
- align.py       `transcribe` (Whisper word times), `align_phones` (pocketsphinx ARPAbet phones)
"""

from emotalk.speech.align import Phone, Transcript, Word, align_phones, transcribe
from emotalk.speech.features import SR, ChunkSettings, code_dims, compute_audio_code
from emotalk.speech.normalize import SpeechSettings, load_speech
from emotalk.speech.tts import TTSResult, TTSSettings, text_to_speech

__all__ = [
    "SR", "ChunkSettings", "Phone", "SpeechSettings", "TTSResult", "TTSSettings", "Transcript", "Word",
    "align_phones", "code_dims", "compute_audio_code", "load_speech", "text_to_speech", "transcribe",
]
