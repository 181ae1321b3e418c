"""edge-tts (Microsoft Edge online voices): audio and word boundaries, with bounded network waits.

The network is checked first (DNS + TCP connect, in a thread, at most `connect_timeout_s`), so a
machine without network falls back at once; every later wait is bounded too.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.speech.align import Word

EDGE_HOST = "speech.platform.bing.com"  # the edge-tts websocket and voice-list host
TICKS_PER_S = 10_000_000  # edge-tts offsets/durations are in 100 ns ticks
FIRST_ANSWER_EXTRA_S = 3.0  # the first message may take this much longer than the connection

DEFAULT_VOICES = {  # a voice per language, used when none is named (online only)
    "en": "en-US-AriaNeural", "fr": "fr-FR-DeniseNeural", "de": "de-DE-KatjaNeural",
    "es": "es-ES-ElviraNeural", "it": "it-IT-ElsaNeural", "pt": "pt-BR-FranciscaNeural",
    "nl": "nl-NL-ColetteNeural", "pl": "pl-PL-ZofiaNeural", "ru": "ru-RU-SvetlanaNeural",
    "zh": "zh-CN-XiaoxiaoNeural", "ja": "ja-JP-NanamiNeural", "ko": "ko-KR-SunHiNeural",
    "hi": "hi-IN-SwaraNeural", "ar": "ar-SA-ZariyahNeural", "tr": "tr-TR-EmelNeural",
}


class EdgeUnavailable(Exception):
    """edge-tts could not speak; the message is the reason shown to the user."""


@dataclass(frozen=True)
class EdgeSpeech:
    wav: np.ndarray  # [N] float32 16 kHz mono
    words: list[Word]  # from WordBoundary events


def network_reachable(host: str = EDGE_HOST, port: int = 443, timeout_s: float = 2.0) -> str | None:
    """None when `host:port` accepts a TCP connection within `timeout_s` (DNS included), else the reason."""
    result: list[str | None] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                result.append(None)
        except OSError as e:
            result.append(f"cannot reach {host} ({type(e).__name__}: {e})")

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout_s)
    if not result:
        return f"no answer from {host} within {timeout_s:.0f} s"
    return result[0]


def _signed(value: float, unit: str) -> str:
    v = int(round(value))
    return f"{'+' if v >= 0 else '-'}{abs(v)}{unit}"


async def _stream(text: str, voice: str, rate: float, pitch: float, connect_timeout_s: float,
                  receive_timeout_s: float) -> tuple[bytes, list[Word]]:
    import edge_tts

    comm = edge_tts.Communicate(text, voice, rate=_signed(rate, "%"), pitch=_signed(pitch, "Hz"),
                                boundary="WordBoundary", connect_timeout=max(1, int(connect_timeout_s)),
                                receive_timeout=max(1, int(receive_timeout_s)))
    audio = bytearray()
    words: list[Word] = []
    it = comm.stream().__aiter__()
    wait = min(receive_timeout_s, connect_timeout_s + FIRST_ANSWER_EXTRA_S)  # a hung handshake ends early
    while True:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), wait)
            wait = receive_timeout_s
        except StopAsyncIteration:
            break
        if chunk["type"] == "audio":
            audio += chunk["data"]
        elif chunk["type"] == "WordBoundary":
            s = chunk["offset"] / TICKS_PER_S
            words.append(Word(chunk["text"], round(s, 3), round(s + chunk["duration"] / TICKS_PER_S, 3)))
    return bytes(audio), words


def _run(coro):
    """Run a coroutine to completion, also when called from inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: dict = {}

    def target() -> None:
        try:
            out["v"] = asyncio.run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            out["e"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["v"]


def speak_edge(text: str, voice: str, rate: float = 0.0, pitch: float = 0.0, connect_timeout_s: float = 2.0,
               receive_timeout_s: float = 15.0) -> EdgeSpeech:
    """Speak one piece of text with an edge-tts voice; EdgeUnavailable says why it could not."""
    try:
        import edge_tts  # noqa: F401
    except ImportError as e:
        raise EdgeUnavailable("edge-tts is not installed") from e
    why = network_reachable(timeout_s=connect_timeout_s)
    if why:
        raise EdgeUnavailable(f"offline: {why}")
    try:
        mp3, words = _run(_stream(text, voice, rate, pitch, connect_timeout_s, receive_timeout_s))
    except TimeoutError as e:
        raise EdgeUnavailable("the online voice service stopped answering (timeout)") from e
    except Exception as e:  # aiohttp/websocket/edge-tts errors all mean "use another engine"
        raise EdgeUnavailable(f"the online voice service failed ({type(e).__name__}: {e})") from e
    if not mp3:
        raise EdgeUnavailable(f"the online voice service returned no audio (voice {voice!r} may not exist)")
    from emotalk.media import read_audio

    with tempfile.TemporaryDirectory(prefix="emotalk-edge-") as tmp:
        p = Path(tmp) / "speech.mp3"
        p.write_bytes(mp3)
        wav = read_audio(p, 16000)
    return EdgeSpeech(wav, words)


def list_voices(language: str | None = None, timeout_s: float = 5.0) -> list[str]:
    """Online voice names (optionally of one language, e.g. 'en'); the built-in defaults when offline."""
    fallback = sorted(v for k, v in DEFAULT_VOICES.items() if language is None or k == language.split("-")[0])
    if network_reachable(timeout_s=min(timeout_s, 2.0)):
        return fallback
    try:
        import edge_tts

        voices = _run(asyncio.wait_for(edge_tts.list_voices(), timeout_s))
    except Exception:
        return fallback
    names = sorted(v["ShortName"] for v in voices)
    if language:
        names = [n for n in names if n.lower().startswith(language.lower())]
    return names
