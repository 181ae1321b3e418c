"""Shared test setup: offline Hub, the shared data folder, and skips with clear reasons."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # an offline Hub lookup would otherwise wait ~25 s
os.environ.setdefault("EMOTALK_NO_HUB", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EMOTALK_SHARED_DATA", REPO.parent / "shared" / "data"))


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
def may_dataset_64(tmp_path_factory):
    """The shared 5 s clip preprocessed once per session at 64 px (real tracking, parsing, body frames)."""
    import dataclasses

    from emotalk.dataset.build import PRESETS, preprocess

    clip = shared("clips/may_5s_512px_25fps.mp4")
    out = tmp_path_factory.mktemp("may64") / "ds"
    return preprocess(clip, out, dataclasses.replace(PRESETS["test"], size=64))


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
