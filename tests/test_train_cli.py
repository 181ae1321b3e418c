"""The train and render commands end to end on the shared clip (tiny sizes, CPU)."""

from __future__ import annotations

import json

import pytest

from emotalk.__main__ import main
from tests.conftest import shared


@pytest.mark.slow
def test_train_then_render_commands(may_dataset_64, tmp_path, capsys) -> None:
    out = tmp_path / "ident"
    rc = main(["train", str(may_dataset_64.root), "--out", str(out), "--preset", "test", "--steps", "6",
               "--device", "cpu", "--size", "48"])
    assert rc == 0
    meta = json.loads((out / "identity.json").read_text())
    assert meta["settings"]["steps"] == 6 and meta["model"]["size"] == 48
    assert (out / "thumbnail.png").is_file()
    # the emotion stage's fidelity to its targets is kept and reported
    assert set(meta["metrics"]["emotion_stage"]["fidelity"]["happy"]) == {"fidelity", "amplitude"}
    said = capsys.readouterr().out
    assert "emotional renders draw" in said
    # the opening gain and the phone table say what the identity got (a test-preset model has no lip code)
    assert "mouth opening: gain left at 1.0 (not a lip-code identity)" in said
    assert "phone lips: " in said and ("own phone targets" in said) == (out / "phone_lips.json").is_file()
    wav = shared("audio/speech_obama_5s.wav")
    video = tmp_path / "out.mp4"
    rc = main(["render", str(out), "--audio", str(wav), "--valence", "1.2", "--arousal", "0.5",
               "-o", str(video), "--device", "cpu"])
    assert rc == 0
    assert "outside the unit disc" in capsys.readouterr().err  # clamped with a notice, not an error
    from emotalk import media

    info = media.probe(video)
    assert info.has_video and info.width == 48
    assert abs(info.duration - 5.0) < 0.3


def test_opening_line_reports_the_fitted_gain() -> None:
    from emotalk.identity.report import opening_line

    rec = {"gain": 1.1, "ratio": {"1.0": 0.89, "1.1": 0.91, "1.2": 0.917}, "frames": 16}
    said = "mouth opening: gain 1.1 (renders open 0.91x as wide as the clip's open frames)"
    assert opening_line(rec) == said
    why = "no mouth measure: No module named 'mediapipe'"
    note = {"gain": 1.0, "ratio": {}, "frames": 0, "note": why}
    assert opening_line(note) == f"mouth opening: gain left at 1.0 ({why})"
    chosen = dict(rec, gain=1.2, fitted_gain=1.1, chosen="audio-driven renders opened too little")
    assert opening_line(chosen) == ("mouth opening: gain 1.2 (renders open 0.92x as wide as the clip's "
                                    "open frames); set over the fitted 1.1: audio-driven renders opened too "
                                    "little")


def test_render_refuses_a_nan_emotion(tmp_path, capsys) -> None:
    rc = main(["render", "obama", "--text", "hello", "--valence", "nan", "-o", str(tmp_path / "o.mp4")])
    assert rc == 1
    assert "finite" in capsys.readouterr().err


def test_train_command_runs_the_pipeline_recipe_with_its_flags(may_dataset_64, tmp_path, monkeypatch) -> None:
    """The train command goes through pipeline.fit_identity (the app's fine-tune code) with the preset's
    recipe and the flags applied; on a CPU, fast and quality skip their GPU-sized emotion stage."""
    from emotalk import pipeline
    from emotalk.identity.fit import FitResult

    calls = []

    def fake_fit(source, out, recipe, workdir=None, device=None, **kw):
        calls.append((str(source), recipe, device))
        out.mkdir(parents=True)
        (out / "identity.json").write_text("{}")
        summary = {"val_psnr": 30.0, "val_ssim": 0.9, "n_face": 1, "n_mouth": 1}
        return FitResult(out, summary, None)

    monkeypatch.setattr(pipeline, "fit_identity", fake_fit)
    ds = str(may_dataset_64.root)
    flags = ["--steps", "6", "--batch", "1", "--size", "48", "--seed", "3", "--emotion-steps", "5",
             "--device", "cpu"]
    assert main(["train", ds, "--out", str(tmp_path / "a"), "--preset", "test", *flags]) == 0
    src, r, dev = calls[-1]
    assert src == ds and dev == "cpu" and r.name == "test"
    assert (r.train.steps, r.train.batch, r.train.size, r.train.seed, r.emotion.steps) == (6, 1, 48, 3, 5)
    assert main(["train", ds, "--out", str(tmp_path / "b"), "--preset", "fast", "--device", "cpu"]) == 0
    assert calls[-1][1].name == "fast" and not calls[-1][1].emotions  # hours on a CPU: skipped
    assert main(["train", ds, "--out", str(tmp_path / "c"), "--preset", "cpu", "--device", "cpu"]) == 0
    assert calls[-1][1].emotions and calls[-1][1].size == 128
    assert (calls[-1][1].emotion.warp_region, calls[-1][1].emotion.colour_only) == ("mouth", False)
    assert main(["train", ds, "--out", str(tmp_path / "d"), "--preset", "test", "--steps", "0"]) == 1
    assert main(["train", ds, "--out", str(tmp_path / "e"), "--preset", "cpu", "--device", "cpu",
                 "--emotion-design", "face"]) == 0
    assert (calls[-1][1].emotion.warp_region, calls[-1][1].emotion.colour_only) == ("face", True)


def test_the_fit_report_says_quality_opening_phone_targets_and_emotions(tmp_path) -> None:
    """One report for the train CLI and the app: each line from identity.json's metrics, and a line that
    says so when there was no emotion stage (every emotion renders neutral)."""
    from emotalk.identity.report import fit_report

    fid = {"mean": {"amplitude": 0.64, "fidelity": 0.4}, "happy": {"amplitude": 0.7, "fidelity": 0.5},
           "angry": {"amplitude": 0.47, "fidelity": 0.3}}
    summary = {"val_psnr": 33.456, "val_ssim": 0.9512, "n_face": 10, "n_mouth": 2,
               "lip_opening": {"gain": 1.2, "ratio": {"1.2": 0.97}, "frames": 16},
               "emotion_stage": {"fidelity": fid}}
    lines = fit_report(summary, tmp_path)
    assert lines == ["held-out PSNR 33.46 dB, SSIM 0.951, 10 + 2 Gaussians",
                     "mouth opening: gain 1.2 (renders open 0.97x as wide as the clip's open frames)",
                     "phone lips: the cross-speaker table (this clip gave no own phone targets: they need "
                     "English speech and the aligner)",
                     "emotion stage: emotional renders draw 64 % of their targets' expression change on "
                     "average (weakest: angry, 47 %)"]
    (tmp_path / "phone_lips.json").write_text("{}")
    assert fit_report({"val_psnr": 30.0}, tmp_path) == [
        "held-out PSNR 30.00 dB", "mouth opening: gain left at 1.0 (not a lip-code identity)",
        "phone lips: this person's own phone targets (phone_lips.json)",
        "emotions: no emotion stage ran, so every emotion renders as neutral"]
    read = lambda b, c: {"base": {"accuracy": b}, "chosen": {"accuracy": c}}  # noqa: E731
    summary["emotion_stage"]["strengths"] = {"category_gain": {"happy": 1.8, "sad": 1.0, "fear": 1.0},
                                             "categories": {"happy": read(0.0, 0.83), "sad": read(1.0, 1.0),
                                                            "fear": read(0.17, 0.17)}}
    assert fit_report(summary, tmp_path)[-1] == (
        "emotion strengths: happy x1.8 (its targets read 0 -> 83 % of frames); the recogniser still rarely "
        "reads fear on this face")
    summary["emotion_stage"]["strengths"]["rest"] = {"reads": "happy", "share": 0.67, "factor": 0.5,
                                                     "p_others": [0.18, 0.27]}
    assert fit_report(summary, tmp_path)[-1] == (
        "emotion strengths: happy x1.8 (its targets read 0 -> 83 % of frames); this face rests looking happy "
        "(to the recogniser), so that is taken out at the other emotions (x0.5: they read p 0.18 -> 0.27); "
        "the recogniser still rarely reads fear on this face")


def test_an_unknown_emotion_design_is_refused_with_the_choices() -> None:
    from emotalk.errors import InputError
    from emotalk.training.settings import RECIPES, override

    with pytest.raises(InputError, match="mouth, face"):
        override(RECIPES["fast"], emotion_design="cheeks")
    assert override(RECIPES["fast"], emotion_steps=0, emotion_design="face").emotion is None  # none to set
