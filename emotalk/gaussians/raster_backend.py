"""Which rasterizer draws CUDA tensors: gsplat when its kernels load and agree with the reference,
else the vectorised PyTorch rasterizer on the same GPU, so rendering always runs.

Decided once per process (and per value of EMOTALK_RASTER), logged once when it falls back; the app
and the CLI show `BackendStatus.notice`. The check itself lives in `raster.py` (it renders a tiny scene).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass

from emotalk.errors import InputError

ENV = "EMOTALK_RASTER"  # auto (default): gsplat if it works; torch: force the fallback; gsplat: no check
CHOICES = ("auto", "gsplat", "torch")
log = logging.getLogger("emotalk.gaussians.raster")

@dataclass(frozen=True)
class BackendStatus:
    """The rasterizer in use and why."""

    backend: str  # "gsplat" or "torch": what draws CUDA tensors (CPU tensors always use "torch")
    device: str  # "cuda" or "cpu": where rendering runs
    reason: str  # why this backend, in words
    forced: bool  # chosen by EMOTALK_RASTER rather than detected
    fallback: bool  # on a GPU without gsplat: rendering works but is slower

    @property
    def torch_path(self) -> str:
        """The PyTorch rasterizer that draws what gsplat does not: "fast" on a GPU, "reference" on the CPU."""
        return torch_path(self.device == "cuda")

    @property
    def notice(self) -> str | None:
        """A line for users when the GPU renders without gsplat; None otherwise."""
        if not self.fallback:
            return None
        return (f"Rendering uses the vectorised PyTorch rasterizer on the GPU ({self.reason}); it is "
                "slower than gsplat. See README's GPU section to get gsplat's kernels built.")

    def as_dict(self) -> dict:
        return {**asdict(self), "torch_path": self.torch_path, "notice": self.notice}


def torch_path(cuda: bool) -> str:
    """The PyTorch rasterizer for a device: 'fast' (vectorised, no Python loops) on a GPU, 'reference'
    on the CPU, where its early termination beats evaluating every (tile, Gaussian) pair (3x at 256²)."""
    return "fast" if cuda else "reference"


_lock = threading.Lock()
_cache: dict[tuple[str, bool], BackendStatus] = {}  # (EMOTALK_RASTER, CUDA available) -> decision


def requested() -> str:
    """The EMOTALK_RASTER setting ('auto' when unset); InputError for any other value."""
    choice = os.environ.get(ENV, "").strip().lower() or "auto"
    if choice not in CHOICES:
        raise InputError(f"{ENV} is {os.environ.get(ENV)!r}; set it to one of {', '.join(CHOICES)} "
                         "(or unset it to pick gsplat when it works).")
    return choice


def explain(err: BaseException) -> str:
    """Why gsplat cannot render, in words, from the error its check raised."""
    msg = (str(err).strip().splitlines() or [""])[0][:200]
    if isinstance(err, ImportError):
        return f"gsplat cannot be imported: {msg or type(err).__name__}"
    if isinstance(err, AttributeError) and "NoneType" in msg:
        return "gsplat found no CUDA toolkit (nvcc) to build its kernels"
    return f"gsplat's CUDA kernels failed to build or run: {type(err).__name__}: {msg}"


def decide(check: Callable[[], None], cuda: bool) -> BackendStatus:
    """The backend for this process; `check()` must raise when gsplat cannot render correctly.

    Runs `check` at most once per EMOTALK_RASTER value (a failed gsplat build is not retried).
    """
    key = (requested(), cuda)
    if key in _cache:
        return _cache[key]
    with _lock:
        if key not in _cache:
            _cache[key] = _detect(key[0], cuda, check)
    return _cache[key]


def _detect(choice: str, cuda: bool, check: Callable[[], None]) -> BackendStatus:
    if not cuda:
        return BackendStatus("torch", "cpu", "no CUDA GPU: the PyTorch rasterizer renders on the CPU",
                             forced=False, fallback=False)
    if choice == "torch":
        st = BackendStatus("torch", "cuda", f"{ENV}=torch forces it", forced=True, fallback=True)
    elif choice == "gsplat":
        return BackendStatus("gsplat", "cuda", f"{ENV}=gsplat: gsplat is used without a check",
                             forced=True, fallback=False)
    else:
        try:
            check()
        except Exception as e:  # noqa: BLE001 - any failure of gsplat means: render without it
            st = BackendStatus("torch", "cuda", explain(e), forced=False, fallback=True)
        else:
            st = BackendStatus("gsplat", "cuda", "gsplat's CUDA kernels loaded and agree with the reference",
                               forced=False, fallback=False)
            log.info("rasterizer: gsplat (%s)", st.reason)
            return st
    log.warning("rasterizer: vectorised PyTorch rasterizer on the GPU, not gsplat (%s)", st.reason)
    return st


def forget() -> None:
    """Drop the decision (tests; after installing gsplat's kernels in a running process)."""
    with _lock:
        _cache.clear()
