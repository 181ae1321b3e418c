"""`python -m emotalk eval IDENTITY --dataset DIR`: the whole metric table on a tiny identity (CPU)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emotalk.emotion import FER_CLASSES
from emotalk.errors import DatasetError, InputError
from emotalk.evaluation.report import SECTIONS, longest_run
from emotalk.evaluation.tables import markdown


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


@pytest.fixture(scope="module")
def tiny_eval(tiny_identity, may_dataset_64, tmp_path_factory):
    from emotalk.__main__ import main

    out = tmp_path_factory.mktemp("eval") / "tiny.json"
    rc = main(["eval", str(tiny_identity), "--dataset", str(may_dataset_64.root), "--out", str(out),
               "--emotion-frames", "1", "--no-phones"])
    assert rc == 0
    return out


def test_eval_writes_every_section(tiny_eval):
    doc = json.loads(tiny_eval.read_text())  # valid JSON (no NaN: missing numbers are null)
    assert tiny_eval.with_suffix(".md").is_file()
    for s in SECTIONS:
        assert s in doc, s
    assert doc["header"]["commit"]
    assert doc["size"] == 64 and doc["heldout"]["frames"] >= 1
    img = doc["image"]
    for k in ("psnr", "ssim", "stlpips", "psnr_face", "ssim_face", "stlpips_face"):
        assert _finite(img[k]), k
    assert 5 < img["psnr"] < 60 and 0 < img["ssim"] <= 1
    lips, sync, emo = doc["lips"], doc["sync"], doc["emotion"]
    # every held-out render and real frame has a face: numbers that need one are finite
    n = doc["heldout"]["frames"]
    assert lips["faces_found_render"] == lips["faces_found_real"] == f"{n}/{n}"
    for k in ("lmd_px", "lmd_over_eye_distance", "mouth_open_corr", "mouth_open_mean_render"):
        assert _finite(lips[k]), k
    assert {"render", "real", "notes"} <= set(sync)
    assert sync["render"]["face_found"] == sync["real"]["face_found"] == 1.0
    assert _finite(sync["real"]["confidence"]) and isinstance(sync["real"]["offset"], int)
    assert isinstance(sync["render"]["offset"], int)
    # the emotion renders (one frame x 9 categories, each tracked on its own): every category is reported;
    # a face MediaPipe loses on this 40-step, 64 px model (2 of 9 with numpy 2.4 / scipy 1.17) is counted
    # and predicted as None, and the summary covers exactly the faces found
    found, total = (int(x) for x in emo["faces_found"].split("/"))
    assert total == 9 and found >= 5
    preds = emo["per_category_pred"]
    assert len(preds) == 7 and all(p is None or p in FER_CLASSES for p in preds.values())
    assert emo["summary"]["n"] == sum(p is not None for p in preds.values()) >= 3
    for k in ("accuracy", "v_rmse", "a_rmse", "v_sa", "a_sa"):
        assert _finite(emo["summary"][k]), k
    assert len(emo["lip_gap_mae"]) == found and all(_finite(v) for v in emo["lip_gap_mae"].values())
    assert "| PSNR |" in tiny_eval.with_suffix(".md").read_text()


def test_eval_sections_and_size(tiny_identity, may_dataset_64):
    from emotalk.evaluation.report import evaluate_identity

    stages = []
    res = evaluate_identity(tiny_identity, may_dataset_64.root, size=32, sections=("image",),
                            progress=lambda s, f: stages.append((s, f)))
    assert res["size"] == 32 and "image" in res and "lips" not in res and "emotion" not in res
    assert _finite(res["image"]["psnr"])
    assert stages[0][1] == 0 and stages[-1][1] == pytest.approx(1.0)
    assert "Image" in markdown(res)


def test_eval_bad_inputs(tiny_identity, may_dataset_64, tmp_path, capsys):
    from emotalk.__main__ import main
    from emotalk.evaluation.report import evaluate_identity

    with pytest.raises(InputError, match="No identity folder"):
        evaluate_identity(tmp_path / "nope", may_dataset_64.root)
    with pytest.raises(InputError, match="No dataset folder"):
        evaluate_identity(tiny_identity, tmp_path / "nope")
    with pytest.raises(DatasetError):  # a folder that is not a dataset
        evaluate_identity(tiny_identity, tmp_path)
    with pytest.raises(InputError, match="Unknown section"):
        evaluate_identity(tiny_identity, may_dataset_64.root, sections=("colour",))
    # a dataset of another clip
    import shutil

    other = tmp_path / "other"
    shutil.copytree(may_dataset_64.root, other)
    meta = json.loads((other / "meta.json").read_text())
    meta["source"]["sha256"] = "0" * 64
    (other / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="another clip"):
        evaluate_identity(tiny_identity, other)
    # the CLI turns these into one clear line and exit code 1
    assert main(["eval", str(tiny_identity)]) == 1
    assert "--dataset" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nope"), "--dataset", str(may_dataset_64.root)]) == 1
    assert "No identity folder" in capsys.readouterr().err
    assert main(["eval", str(tiny_identity), "--dataset", str(other)]) == 1
    assert "another clip" in capsys.readouterr().err


def test_longest_run():
    assert longest_run(np.array([9, 1, 2, 3, 7, 8])).tolist() == [1, 2, 3]
    assert longest_run(np.arange(5, 10)).tolist() == [5, 6, 7, 8, 9]
    assert longest_run(np.array([], np.int64)).tolist() == []
