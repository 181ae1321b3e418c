"""The `eval` command: report sections, files written, and bad input."""

from __future__ import annotations

import json

import pytest

from emotalk.__main__ import main
from tests.conftest import shared


def test_eval_video_writes_report(tmp_path, capsys):
    clip = shared("emotion/mead_video/M030_front_happy_level3_001.mp4")
    rc = main(["eval", "--video", str(clip), "--emotion", "happy", "--max-frames", "40",
               "--out", str(tmp_path)])
    assert rc == 0
    rep = json.loads((tmp_path / "eval.json").read_text())
    v = rep["video"]
    assert v["frames"] == 40 and v["frames_with_face"] == 40 and v["target"] == "happy"
    assert v["clip_predicted"] == "happy" and v["frame_accuracy"] > 0.5
    assert abs(sum(v["mean_probs"].values()) - 1) < 1e-3
    assert "commit" in rep["header"] and (tmp_path / "eval.md").read_text().startswith("_")
    rows = (tmp_path / f"{clip.stem}_frames.csv").read_text().splitlines()
    assert len(rows) == 41 and rows[0].startswith("frame,angry")
    assert "happy" in capsys.readouterr().out


def test_eval_target_from_valence_arousal(tmp_path):
    clip = shared("emotion/mead_video/W011_front_sad_level3_001.mp4")
    rc = main(["eval", "--video", str(clip), "--valence", "-1.4", "--arousal", "-0.9", "--max-frames", "10",
               "--out", str(tmp_path)])
    assert rc == 0
    v = json.loads((tmp_path / "eval.json").read_text())["video"]
    assert v["target"] == "sad"  # nearest category to the clamped point
    assert any("outside the unit disc" in n for n in v["notes"])


@pytest.mark.parametrize("argv", [["eval"], ["eval", "--video", "x.mp4"],
                                  ["eval", "--video", "x.mp4", "--emotion", "calm"]])
def test_eval_bad_input_is_a_clear_error(argv, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:")
