"""Load on localhost: concurrent API users get their own, correct results; past the queue limit they get
a "busy, try again" answer and the server keeps serving.

It drives the cheap `speak` endpoint (offline TTS on the CPU), which shares the queue machinery with
`generate`; rendering itself is too slow on this 2-core CPU for a load test.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from emotalk import media
from tests.conftest import REPO

WORDS = "one two three four five six seven eight nine ten eleven twelve".split()


def _launch(max_size: int):
    import app

    demo = app.build()
    _, url, _ = app.launch(demo, queue_size=max_size, server_name="127.0.0.1", server_port=None,
                           prevent_thread_lock=True, quiet=True, warm_up=False)
    assert url.startswith("http://127.0.0.1:")  # never anything but localhost
    return demo, url


def _speak(url: str, text: str) -> tuple[str, str, float]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    t0 = time.perf_counter()
    wav, note = client.predict(text, "espeak", api_name="/speak")
    return wav, note, time.perf_counter() - t0


def test_eight_concurrent_users_get_their_own_speech():
    demo, url = _launch(max_size=16)
    try:
        texts = [" ".join(WORDS[: 2 + i]) + "." for i in range(8)]  # longer and longer
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda t: _speak(url, t), texts))
        wall = time.perf_counter() - t0
    finally:
        demo.close()
    wavs = [r[0] for r in results]
    assert len(set(wavs)) == 8 and len({Path(w).parent for w in wavs}) == 8  # distinct files and folders
    durations = [len(media.read_audio(w)) / 16000 for w in wavs]
    assert durations == sorted(durations) and durations[-1] > durations[0] + 1.0, durations
    assert all("espeak" in r[1] for r in results)
    lat = [r[2] for r in results]
    report = {"endpoint": "/speak (espeak)", "users": 8, "wall_s": round(wall, 2),
              "latency_s": {"min": round(min(lat), 2), "median": round(statistics.median(lat), 2),
                            "max": round(max(lat), 2)}}
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    (out / "load_test.json").write_text(json.dumps(report, indent=1))
    print(report)


def test_past_the_queue_limit_users_are_told_to_retry_and_the_server_survives():
    demo, url = _launch(max_size=2)
    try:
        with ThreadPoolExecutor(12) as pool:
            futures = [pool.submit(_speak, url, " ".join(WORDS[:6]) + f" {w}.") for w in WORDS]
            outcomes = []
            for f in futures:
                try:
                    outcomes.append(f.result(timeout=120))
                except Exception as e:  # noqa: BLE001 - the rejected ones
                    outcomes.append(e)
        errors = [o for o in outcomes if isinstance(o, Exception)]
        done = [o for o in outcomes if not isinstance(o, Exception)]
        assert errors and len(done) >= 2, outcomes
        assert all("Queue is full" in str(e) and "try again" in str(e) for e in errors), errors
        wav, note, _ = _speak(url, "Still here.")  # the server still serves
        assert Path(wav).is_file() and "espeak" in note
    finally:
        demo.close()
    print({"submitted": len(outcomes), "served": len(done), "told_busy": len(errors)})


@pytest.mark.slow
def test_eight_concurrent_previews_match_the_same_requests_made_alone(installed_identity):
    from gradio_client import Client
    from PIL import Image


    name = installed_identity.name
    demo, url = _launch(max_size=16)
    yaws = [-28 + 8 * i for i in range(8)]  # a different camera per user: every picture differs

    def call(yaw: float):
        client = Client(url, verbose=False)
        t0 = time.perf_counter()
        out = client.predict(name, 0.5, 0.2, 1.0, yaw, 0.0, api_name="/preview")
        return np.asarray(Image.open(out)), time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, yaws))
        alone = [call(yaws[0])[0], call(yaws[-1])[0]]
    finally:
        demo.close()
    imgs = [r[0] for r in results]
    for got, ref in ((imgs[0], alone[0]), (imgs[-1], alone[1])):  # no mix-up between users
        assert np.abs(got.astype(int) - ref).max() <= 2
    assert np.abs(imgs[0].astype(int) - imgs[-1]).mean() > 2  # the yaw shows
    lat = [r[1] for r in results]
    path = REPO / "out" / "load_test.json"
    report = json.loads(path.read_text()) if path.is_file() else {}
    report["preview"] = {"endpoint": "/preview", "identity": name, "users": 8,
                         "latency_s": {"min": round(min(lat), 2), "median": round(statistics.median(lat), 2),
                                       "max": round(max(lat), 2)}}
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    print(report["preview"])
