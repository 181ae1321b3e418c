"""Identity similarity: the face-descriptor wrapper (dlib ResNet), its similarity helpers, the audio-driven
evaluation's identity rows and the report's table beside the real-actor bar."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from emotalk.face import identity_embedding as ie

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EMOTALK_SHARED_DATA", REPO.parent / "shared" / "data"))


def test_similarity_helpers():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 128))
    assert ie.identity_similarity(a, 3.0 * a) == pytest.approx(np.ones(4))
    assert ie.identity_similarity(a[0], -a[0]) == pytest.approx(-1.0)
    b = a.copy()
    b[1] = np.nan  # a face lost in one frame is left out, not counted as 0
    assert ie.mean_similarity(a, b, paired=True) == pytest.approx(1.0)
    # all pairs of a set against itself: the diagonal (identical frames) only with skip_same=False
    s_all, s_skip = ie.mean_similarity(a, a), ie.mean_similarity(a, a, skip_same=True)
    assert s_all == pytest.approx((s_skip * 12 + 4) / 16)
    assert np.isnan(ie.mean_similarity(b[1:2], a))
    with pytest.raises(Exception, match="as many rows"):
        ie.mean_similarity(a, a[:2], paired=True)
    assert list(ie.sample_indices(5, 8)) == [0, 1, 2, 3, 4]
    idx = ie.sample_indices(100, 8)
    assert len(idx) == 8 and idx[0] > 0 and idx[-1] < 99 and (np.diff(idx) > 0).all()


def test_box_from_landmarks_is_a_square_on_the_face_oval():
    from emotalk.face.landmarks import FACE_OVAL

    lmk = np.full((478, 2), 100.0)
    ang = np.linspace(0, 2 * np.pi, len(FACE_OVAL), endpoint=False)
    lmk[FACE_OVAL] = np.stack([100 + 40 * np.cos(ang), 110 + 50 * np.sin(ang)], 1)
    l, t, r, b = ie.box_from_landmarks(lmk)
    assert abs((r - l) - (b - t)) <= 1 and r - l == pytest.approx(ie.BOX_SIDE * 80, abs=1)
    assert (l + r) / 2 == pytest.approx(100 + ie.BOX_SHIFT_X * 80, abs=1)
    assert (t + b) / 2 == pytest.approx(110, abs=1)
    with pytest.raises(Exception, match="478"):
        ie.box_from_landmarks(np.zeros((68, 2)))


def _embedder_or_skip():
    try:
        import dlib  # noqa: F401
    except ImportError as e:
        pytest.skip(f"dlib is not installed ({e}); pip install -r requirements.txt")
    from emotalk.errors import AssetError

    try:
        return ie.default_embedder()
    except AssetError as e:
        pytest.skip(f"the dlib-face-recognition model files could not be fetched: {e}")


def _frames_and_landmarks(name: str, idx: list[int]) -> tuple[np.ndarray, np.ndarray]:
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.media import read_frames

    frames = read_frames(DATA / "clips" / name, fps=25.0, max_frames=max(idx) + 1)[idx]
    lmk, found = track_frames(frames, video=False)
    assert found.all(), f"MediaPipe lost the face in {name}"
    return frames, lmk


def test_same_person_is_closer_than_another_person():
    """Two frames 3 s apart of one real clip are more alike than the same frame against another person."""
    clips = ("obama_address_20s_450px_25fps.mp4", "reagan_address_26s_256px_30fps.mp4")
    missing = [c for c in clips if not (DATA / "clips" / c).is_file()]
    if missing:
        pytest.skip(f"shared clips missing: {', '.join(missing)} (expected in {DATA / 'clips'})")
    emb = _embedder_or_skip()
    fo, lo = _frames_and_landmarks(clips[0], [5, 80])
    fr, lr = _frames_and_landmarks(clips[1], [5])
    eo, er = emb.embed(fo, landmarks=lo), emb.embed(fr, landmarks=lr)
    assert eo.shape == (2, 128) and np.isfinite(eo).all()
    same, other = ie.identity_similarity(eo[0], eo[1]), ie.identity_similarity(eo[0], er[0])
    assert same > 0.95 and same > other + 0.08, (same, other)
    # dlib's own detector finds the same face: the box from landmarks matches what it would draw
    assert ie.identity_similarity(emb.embed(fo[:1])[0], eo[0]) > 0.99
    # a frame whose face was lost (NaN landmarks) gives a NaN row, not a descriptor of garbage
    lost = lo.copy()
    lost[1] = np.nan
    assert np.isnan(emb.embed(fo, landmarks=lost)[1]).all()


def test_identity_rows_aggregate_and_report_table(tmp_path):
    from emotalk.evaluation.audio_driven import aggregate, identity_vs_neutral
    from emotalk.evaluation.audio_driven_report import identity_table, load_identity_bar, report_markdown

    rng = np.random.default_rng(1)
    base = rng.normal(size=(4, 128))
    idx = np.array([3, 10, 17, 24])
    neutral = {"id_idx": idx, "id_emb": base}
    drifted = {"id_idx": idx, "id_emb": base + 0.8 * rng.normal(size=(4, 128))}
    r_neu = identity_vs_neutral(neutral, neutral, same=True)
    r_sad = identity_vs_neutral(drifted, neutral)
    assert r_neu["same_frames"] == pytest.approx(1.0) and r_neu["frames"] == 4
    assert r_sad["same_frames"] < 0.9 and r_sad["all_pairs"] is not None

    def render(ident):
        return {"sync": {"offset": 0, "peak_corr": 0.5}, "opening_mae": 0.0, "identity": ident}

    per_drive = [{"renders": {"neutral": render(r_neu), "sad": render(r_sad)}},
                 {"renders": {"neutral": render(r_neu), "sad": render({**r_sad, "same_frames": 0.5})}}]
    rows = aggregate(per_drive)["categories"]
    assert rows["sad"]["identity_same_frames"] == pytest.approx((r_sad["same_frames"] + 0.5) / 2)
    assert rows["neutral"]["identity_same_frames"] == pytest.approx(1.0)
    res = {"categories": rows, "per_drive": per_drive, "summary": None, "drives": []}
    md = identity_table("v", "obama", res, {"neutral": 0.99, "sad": 0.96})
    sad = next(line for line in md.splitlines() if line.startswith("| sad |"))
    cells = [c.strip() for c in sad.strip("|").split("|")]
    assert cells[1] == "2" and cells[4] == "0.960"
    assert float(cells[5]) == pytest.approx(rows["sad"]["identity_all_pairs"] - 0.96, abs=1e-3)
    assert identity_table("v", "obama", res, {}).count("| – |") == 2  # no bar: dashes, no crash
    assert "identity similarity" in report_markdown({"v": {"obama": res}})
    # measured without identity: no table, no definitions
    plain = {"categories": {c: {k: v for k, v in r.items() if not k.startswith("identity")}
                            for c, r in rows.items()}}
    assert identity_table("v", "obama", plain) == ""
    # the shipped bar has every recogniser category and sensible values
    bar = load_identity_bar()
    assert {"neutral", "happy", "sad", "angry", "surprised", "fear", "disgusted"} <= set(bar)
    assert all(0.8 < v <= 1.0 for v in bar.values()) and bar["neutral"] == max(bar.values())
    missing = tmp_path / "none.json"
    assert load_identity_bar(missing) == {}
    json.dumps(rows)  # the rows stay JSON-serialisable
