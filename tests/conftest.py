"""Shared test setup: offline Hub, the shared data folder, skips with clear reasons, and session fixtures
for the slow work many tests share (the shared clip tracked and preprocessed, a tiny identity): each is
done once per run, never once per test file."""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an offline Hub lookup would otherwise wait ~25 s
os.environ.setdefault("EMOTALK_NO_HUB", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOTALK_SHARED_DATA", REPO.parent / "shared" / "data"))
MAY = "clips/may_5s_512px_25fps.mp4"  # the 5 s, 25 fps, one-face clip most real-data tests start from

if TYPE_CHECKING:
    from emotalk.dataset.format import IdentityDataset
    from emotalk.face.tracking import RawTrack


def shared(rel: str) -> Path:
    """Path of a file in ../shared/data; skips the test with a clear reason if it is absent."""
    p = SHARED_DATA / rel
    if not p.exists():
        pytest.skip(f"shared test data not found: {p} (set EMOTALK_SHARED_DATA to the data folder)")
    return p


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data folder not found: {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU (run on a GPU host: pytest -m gpu tests/gpu)")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def may_track() -> RawTrack:
    """The face tracker's raw output on the whole shared 5 s clip at 25 fps (as preprocess runs it)."""
    from emotalk import media
    from emotalk.face import tracking

    return tracking.track_video(media.iter_frames(shared(MAY), fps=25.0), fps=25.0)


@dataclass
class PreprocessedClip:
    """A clip preprocessed once per session, with what the run reported on the way (so tests of those
    reports need not preprocess again)."""

    dataset: IdentityDataset  # the dataset folder, loaded
    progress: list[tuple[str, float]]  # every (message, fraction) progress call, in order
    warnings: list[str]  # the warnings preprocess gave, as text
    debug_dir: Path  # where settings.debug_dir made it write the parsing contact sheet


@pytest.fixture(scope="session")
def may_preprocessed_64(tmp_path_factory) -> PreprocessedClip:
    """The shared 5 s clip preprocessed once per session at 64 px (real tracking, parsing, body frames),
    with its progress calls, warnings and debug contact sheet recorded."""
    from emotalk.dataset.build import preprocess
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    clip = shared(MAY)
    root = tmp_path_factory.mktemp("may64")
    settings = dataclasses.replace(PRESETS["test"], size=64, debug_dir=str(root / "debug"))
    calls: list[tuple[str, float]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = preprocess(clip, root / "ds", settings, progress=lambda msg, f: calls.append((msg, f)))
    return PreprocessedClip(ds, calls, [str(w.message) for w in caught], root / "debug")


@pytest.fixture(scope="session")
def may_dataset_64(may_preprocessed_64) -> IdentityDataset:
    """The shared 5 s clip preprocessed once per session at 64 px (see `may_preprocessed_64`)."""
    return may_preprocessed_64.dataset


@pytest.fixture(scope="session")
def tiny_identity(may_dataset_64, tmp_path_factory):
    """A tiny real identity (a few hundred Gaussians, 40 CPU steps, mel audio code) saved as a folder."""
    from dataclasses import replace

    from emotalk.identity.checkpoint import save_identity
    from emotalk.training.loop import train
    from emotalk.training.settings import PRESETS

    ds = may_dataset_64
    s = replace(PRESETS["test"], audio_kind="mel")
    model, summary = train(ds, s, tmp_path_factory.mktemp("tiny-work"))
    return save_identity(tmp_path_factory.mktemp("identities") / "may-tiny", model, ds, s, summary,
                         name="may-tiny")


@pytest.fixture(scope="session")
def installed_identity(request, tmp_path_factory):
    """An identity the app can list: the first shipped/user one, else the tiny test identity installed
    into a session-private $EMOTALK_HOME (so app, browser and load tests always render for real)."""
    import shutil

    from emotalk import pipeline

    found = pipeline.list_identities()
    if found:
        return found[0]
    tiny = request.getfixturevalue("tiny_identity")
    os.environ["EMOTALK_HOME"] = str(tmp_path_factory.mktemp("emotalk-home"))
    shutil.copytree(tiny, pipeline.user_dir() / "may-tiny")
    return pipeline.list_identities()[0]


@pytest.fixture(scope="module")
def app_url(installed_identity):
    """The studio launched on localhost (queue of 8) for one test module; yields its URL."""
    import app

    demo = app.build()
    _, url, _ = app.launch(demo, queue_size=8, server_name="127.0.0.1", server_port=None,
                           prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()
