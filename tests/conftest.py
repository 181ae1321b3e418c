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
