"""`python -m emotalk bench` on a CPU-only machine: runs small, writes JSON that says "no GPU"."""

from __future__ import annotations

import json

import pytest


def test_bench_cpu_writes_json(tiny_identity, may_dataset_64, tmp_path):
    import torch

    from emotalk.__main__ import main

    if torch.cuda.is_available():
        pytest.skip("this test covers the CPU fallback")
    rc = main(["bench", "--out", str(tmp_path), "--identity", str(tiny_identity),
               "--dataset", str(may_dataset_64.root), "--size", "32", "--seconds", "0.5"])
    assert rc == 0
    doc = json.loads((tmp_path / "bench.json").read_text())
    h = doc["header"]
    assert h["gpu"] == "no GPU" and h["no_gpu"] is True
    for k in ("machine", "torch", "commit", "date"):
        assert h[k]
    r = doc["results"]
    assert r["render"]["size"] == 32
    assert r["render"]["batch1"]["render_fps"] > 0
    e2e = r["e2e"]
    assert "error" not in e2e, e2e
    assert e2e["stages"]["render"]["frames"] >= 1 and e2e["total_s"] > 0
    enc = e2e["stages"]["encode"]
    assert enc["bytes"] > 0
    assert (enc["stand_in"] is None) == (h["ffmpeg_missing"] is None)  # a stand-in is flagged
    assert "skipped" in r["train"] and "skipped" in r["preprocess"]


def test_bench_bad_inputs_and_subcommands(tmp_path, capsys):
    from emotalk.__main__ import build_parser, main

    assert main(["bench", "--identity", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["bench", "--train"]) == 1
    assert "--dataset" in capsys.readouterr().err
    a = build_parser().parse_args(["bench", "model", "--out", "x", "--preset", "fast"])
    assert a.which == "model" and a.args == ["--out", "x", "--preset", "fast"]


def test_bench_subcommands_are_modules_of_the_package(capsys):
    """Each sub-command runs a module of emotalk.cli.bench (no file of bench/ is needed): its own --help,
    its own argument errors."""
    import importlib

    from emotalk.__main__ import main
    from emotalk.cli import bench

    assert set(bench.SCRIPTS) == {"model", "speech", "preprocess", "sync", "e2e", "latency", "finetune"}
    assert bench.NAMED == {"emotion-audio": "emotion_audio", "single-stream": "single_stream"}
    for name in bench.SCRIPTS + tuple(bench.NAMED):
        assert callable(importlib.import_module(f"emotalk.cli.bench.{bench.NAMED.get(name, name)}").main)
        assert main(["bench", name, "--help"]) == 0
        assert f"usage: python -m emotalk bench {name}" in capsys.readouterr().out
    assert main(["bench", "preprocess", "no-such-step"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_latency_playback_stalls_follow_a_real_player():
    """A stream stalls when a segment is ready after the previous one has finished playing; the player then
    waits, so later deadlines move with it."""
    from emotalk.cli.bench.latency import playback_stalls

    # ready faster than real time: no stall, each next segment 0.5 s early at worst
    assert playback_stalls([0.5, 0.9, 1.4], [1.0, 1.0, 1.0]) == dict(stalls=0, stalled_s=0.0, min_lead_s=0.6)
    # the second segment comes 0.3 s after the first has played out, the third is then in time again
    r = playback_stalls([1.0, 2.3, 2.8], [1.0, 1.0, 1.0])
    assert r["stalls"] == 1 and abs(r["stalled_s"] - 0.3) < 1e-9 and abs(r["min_lead_s"] + 0.3) < 1e-9
    assert playback_stalls([0.7], [0.4]) == dict(stalls=0, stalled_s=0.0, min_lead_s=None)
