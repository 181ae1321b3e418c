"""Speech benchmarks: audio-code speed (x real time, wall and CPU time) for every file in the shared
audio folder, transcription and TTS timings; `--gpudata` prepares the small files a GPU host needs
for tests/gpu/test_speech_gpu.py (.gpudata/, git-ignored).

  .venv/bin/python -m emotalk bench speech            # timings on this machine (or bench/bench_speech.py)
  .venv/bin/python -m emotalk bench speech --gpudata  # write .gpudata/whisper-tiny.en-encoder + speech.npy
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.identity.store import REPO_ROOT as REPO

SHARED = Path(os.environ.get("EMOTALK_SHARED_DATA", REPO.parent / "shared" / "data"))  # the real clips


def _timed(fn, *a, **k):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return out, time.perf_counter() - w0, time.process_time() - c0


def gpudata() -> None:
    from emotalk import assets
    from emotalk.speech.ct2_weights import read_ct2_variables, write_ct2_variables
    from emotalk.speech.tts import TTSSettings, text_to_speech

    src = assets.fetch("whisper-tiny.en") / "model.bin"
    out = REPO / ".gpudata" / "whisper-tiny.en-encoder" / "model.bin"
    write_ct2_variables(out, read_ct2_variables(src, prefix="encoder/"))
    speech = text_to_speech("The quick brown fox jumps over the lazy dog. She sells sea shells by the sea "
                            "shore.", TTSSettings(engines=("piper", "espeak"), align=False))
    np.save(REPO / ".gpudata" / "speech.npy", speech.wav)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and speech.npy ({speech.engine}, "
          f"{speech.duration:.1f} s)")


def bench(kinds: list[str]) -> None:
    import torch

    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    files = sorted((SHARED / "audio").glob("*.wav"))
    if not files:
        print(f"no shared audio in {SHARED / 'audio'}")
    compute_audio_code(np.zeros(16000, np.float32) + 1e-3, 16000)  # load weights once
    for kind in kinds:
        tot_d = tot_w = tot_c = 0.0
        for f in files:
            wav = load_speech(f)
            dur = len(wav) / 16000
            code, wall, cpu = _timed(compute_audio_code, wav, 16000, kind=kind)
            tot_d, tot_w, tot_c = tot_d + dur, tot_w + wall, tot_c + cpu
            print(f"{kind:8s} {f.name:28s} {dur:5.1f} s -> {code.shape}: wall {wall:.2f} s "
                  f"({wall / dur:.3f}x rt), cpu {cpu:.2f} s ({cpu / dur:.3f}x rt)")
        if files:
            print(f"{kind:8s} all {tot_d:.1f} s: wall {tot_w / tot_d:.3f}x rt, cpu {tot_c / tot_d:.3f}x rt")
    from emotalk.speech.features import FAST_CHUNKS

    for f in files:
        wav = load_speech(f)
        dur = len(wav) / 16000
        _, wall, cpu = _timed(compute_audio_code, wav, 16000, chunks=FAST_CHUNKS)
        print(f"whisper 10 s windows {f.name:28s}: wall {wall / dur:.3f}x rt, cpu {cpu / dur:.3f}x rt")
    if files:
        long = np.tile(load_speech(files[-1]), 10)[: 16000 * 120]
        _, wall, cpu = _timed(compute_audio_code, long, 16000)
        print(f"whisper  120 s of speech: wall {wall:.2f} s ({wall / 120:.3f}x rt), cpu {cpu / 120:.3f}x rt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotalk bench speech", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpudata", action="store_true", help="prepare .gpudata/ for the GPU test")
    p.add_argument("--kinds", nargs="+", default=["whisper", "mel"])
    args = p.parse_args(argv)
    if args.gpudata:
        gpudata()
    else:
        bench(args.kinds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
