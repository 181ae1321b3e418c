"""When gsplat cannot run on a GPU, `rasterize` falls back to the vectorised PyTorch rasterizer, says why
once, and EMOTALK_RASTER can force the fallback. CUDA is simulated: these run on a CPU-only host."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

from emotalk.errors import InputError
from emotalk.gaussians import raster, raster_backend, raster_fast


class _LooksCuda(torch.Tensor):
    """A CPU tensor that claims to be on CUDA, so `rasterize` takes its GPU branch here."""

    @property
    def is_cuda(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv(raster_backend.ENV, raising=False)
    raster_backend.forget()
    yield
    raster_backend.forget()


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA 'available'; the GPU fallback (rasterize_fast) runs on plain CPU tensors and counts its calls."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    calls = []
    real = raster_fast.rasterize_fast

    def fast_spy(*args):
        calls.append(1)
        return real(*(a.as_subclass(torch.Tensor) if isinstance(a, torch.Tensor) else a for a in args))

    monkeypatch.setattr(raster_fast, "rasterize_fast", fast_spy)
    monkeypatch.setattr(raster, "rasterize_torch", _gsplat_must_not_run)  # the slow loop reference neither
    return calls


def _scene(n: int = 60, size: int = 24):
    g = torch.Generator().manual_seed(3)
    means = torch.randn(n, 3, generator=g) * 0.3 + torch.tensor([0.0, 0.0, 2.5])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.02
    opac = torch.rand(n, generator=g) * 0.8 + 0.1
    cols = torch.rand(n, 3, generator=g)
    vms = torch.eye(4)[None].repeat(2, 1, 1)
    vms[1, 0, 3] = 0.1
    K = torch.tensor([[size * 1.5, 0, size / 2], [0, size * 1.5, size / 2], [0, 0, 1.0]])
    Ks = K[None].repeat(2, 1, 1)
    return (means, quats, scales, opac, cols, vms, Ks, size, size)


def _gsplat_must_not_run(*args, **kwargs):
    raise AssertionError("gsplat (or the loop reference) was called although it should not run")


def test_import_failure_falls_back_to_the_reference(monkeypatch, fake_gpu):
    monkeypatch.setitem(sys.modules, "gsplat", None)  # `import gsplat` raises ImportError
    monkeypatch.setattr(raster, "rasterize_gsplat", _gsplat_must_not_run)
    scene = _scene()
    looks_cuda = [a.as_subclass(_LooksCuda) if isinstance(a, torch.Tensor) else a for a in scene]
    out = raster.rasterize(*looks_cuda)
    assert fake_gpu == [1]
    ref = raster_fast.rasterize_fast(*scene)
    assert ref.alpha.amax() > 0.5  # the scene is drawn, so equality below means something
    assert torch.equal(out.rgb, ref.rgb) and torch.equal(out.alpha, ref.alpha)
    st = raster.backend_status()
    assert (st["backend"], st["device"], st["fallback"], st["forced"]) == ("torch", "cuda", True, False)
    assert st["torch_path"] == "fast"
    assert "gsplat cannot be imported" in st["reason"]
    assert "PyTorch rasterizer on the GPU" in st["notice"] and st["reason"] in st["notice"]


def test_failed_check_runs_once_and_is_said_once(monkeypatch, fake_gpu, caplog):
    tries = []

    def broken() -> None:
        tries.append(1)
        raise RuntimeError("Error building extension 'gsplat_cuda': nvcc fatal")

    monkeypatch.setattr(raster, "_check_gsplat", broken)
    with caplog.at_level(logging.INFO, logger="emotalk.gaussians.raster"):
        states = [raster.backend_status() for _ in range(3)]
    assert tries == [1]  # a failed build is not retried on every render
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Error building extension" in warnings[0].getMessage()
    assert all(s == states[0] for s in states)
    assert states[0]["backend"] == "torch"
    assert "failed to build or run: RuntimeError: Error building extension" in states[0]["reason"]


@pytest.mark.parametrize("err, words", [
    (RuntimeError("Error building extension 'gsplat_cuda'"), "failed to build or run"),
    (AttributeError("'NoneType' object has no attribute 'projection_ewa_3dgs_fused_fwd'"),
     "no CUDA toolkit (nvcc)"),
    (RuntimeError("CUDA error: no kernel image is available for execution on the device"),
     "no kernel image is available"),
])
def test_kernel_failures_are_explained(monkeypatch, err, words):
    def failing(*args, **kwargs):
        raise err

    monkeypatch.setattr(raster, "rasterize_gsplat", failing)
    st = raster_backend.decide(lambda: raster._check_gsplat("cpu"), cuda=True)
    assert st.backend == "torch" and st.fallback
    assert words in st.reason


@pytest.mark.parametrize("gain, backend", [(1.0, "gsplat"), (1.5, "torch")])
def test_check_compares_gsplat_with_the_reference(monkeypatch, gain, backend):
    def fake_gsplat(*args, **kwargs):  # the reference, scaled: a kernel that draws wrong images
        out = raster.rasterize_torch(*args, **kwargs)
        return raster.RasterOut(out.rgb * gain, out.alpha, out.means2d, out.radii)

    monkeypatch.setattr(raster, "rasterize_gsplat", fake_gsplat)
    st = raster_backend.decide(lambda: raster._check_gsplat("cpu"), cuda=True)
    assert st.backend == backend
    assert ("differs from the reference" in st.reason) == (backend == "torch")


def test_env_switch_forces_the_fallback(monkeypatch, fake_gpu):
    tries = []
    monkeypatch.setattr(raster, "_check_gsplat", lambda: tries.append(1))  # gsplat would work
    monkeypatch.setattr(raster, "rasterize_gsplat", _gsplat_must_not_run)
    monkeypatch.setenv(raster_backend.ENV, "torch")
    st = raster.backend_status()
    assert (st["backend"], st["forced"], st["fallback"]) == ("torch", True, True)
    assert "EMOTALK_RASTER=torch" in st["reason"] and tries == []
    scene = _scene(size=16)
    raster.rasterize(*[a.as_subclass(_LooksCuda) if isinstance(a, torch.Tensor) else a for a in scene])
    assert fake_gpu == [1]

    monkeypatch.setenv(raster_backend.ENV, "auto")  # each value is decided on its own
    assert raster.backend_status()["backend"] == "gsplat" and tries == [1]
    monkeypatch.setenv(raster_backend.ENV, "gsplat")
    st = raster.backend_status()
    assert (st["backend"], st["forced"]) == ("gsplat", True) and tries == [1]
    monkeypatch.setenv(raster_backend.ENV, "fast")
    with pytest.raises(InputError, match="EMOTALK_RASTER is 'fast'"):
        raster.backend_status()


def test_cpu_tensors_never_touch_gsplat(monkeypatch):
    monkeypatch.setattr(raster, "_check_gsplat", _gsplat_must_not_run)
    monkeypatch.setattr(raster, "rasterize_gsplat", _gsplat_must_not_run)
    out = raster.rasterize(*_scene(size=16))
    assert out.rgb.shape == (2, 16, 16, 3)


def test_device_info_records_the_renderer(monkeypatch):
    from emotalk import pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    info = pipeline.device_info()
    assert info["device"] == "cpu" and info["renderer"]["backend"] == "torch"
    assert info["renderer"]["torch_path"] == "reference"  # the loop reference is the faster one on a CPU
    assert not info["renderer"]["fallback"] and "No GPU here" in info["notice"]

    raster_backend.forget()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "gsplat", None)
    info = pipeline.device_info()
    assert info["device"] == "cuda" and info["default_size"] == pipeline.SIZE_GPU
    assert info["renderer"]["backend"] == "torch" and info["renderer"]["fallback"]
    assert info["renderer"]["torch_path"] == "fast"
    assert info["notice"] == info["renderer"]["notice"] and "gsplat cannot be imported" in info["notice"]
