"""A CUDA toolkit for gsplat's first-use kernel build on machines that have none but pip has one.

A Hugging Face Space (gradio SDK) has no CUDA devel image: its nvcc comes from NVIDIA's wheels
(`cuda-toolkit[nvcc,nvvm,crt,cudart,cccl]`, space/requirements.txt). Those put nvcc, headers and libraries
under site-packages/nvidia/cu13 (CUDA 13; CUDA 12 wheels use one folder per part), where torch's extension
builder does not look, and without the unversioned libcudart.so it links against. `use_pip_toolkit`
points CUDA_HOME at a small symlink tree over them, before gsplat is first imported. It does nothing when
CUDA_HOME/CUDA_PATH is set or an nvcc is on PATH, and refuses a pip toolkit whose major version differs
from torch's CUDA (torch would refuse to build with it).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("emotalk.gaussians.cuda_toolkit")
PARTS = ("bin", "nvvm", "include", "lib")  # what a CUDA_HOME needs for torch's extension builder
_lock = threading.Lock()
_chosen: dict[str, str] = {}  # what use_pip_toolkit decided, for device_info


@dataclass(frozen=True)
class PipToolkit:
    """NVIDIA's CUDA wheels found in site-packages."""

    roots: tuple[Path, ...]  # folders with some of PARTS (the first holds bin/nvcc)
    version: str  # nvcc's release, e.g. "13.0"

    @property
    def major(self) -> str:
        return self.version.split(".")[0]


def nvidia_folders(paths: list[str] | None = None) -> list[Path]:
    """Every site-packages/nvidia folder on sys.path (NVIDIA's wheels share that namespace)."""
    out = []
    for p in paths if paths is not None else sys.path:
        d = Path(p or ".") / "nvidia"
        if d.is_dir() and d not in out:
            out.append(d)
    return out


def nvcc_release(nvcc: Path, timeout: float = 30.0) -> str | None:
    """'13.0' from `nvcc --version`, or None when it does not run."""
    try:
        r = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release (\d+\.\d+)", r.stdout)
    return m.group(1) if r.returncode == 0 and m else None


def find_pip_toolkit(paths: list[str] | None = None) -> PipToolkit | None:
    """The pip CUDA toolkit on sys.path: CUDA 13's merged nvidia/cuXX folder, or CUDA 12's nvidia/cuda_nvcc
    with its sibling parts (cuda_runtime, cuda_cccl, ...); None when no nvcc wheel is installed."""
    folders = nvidia_folders(paths)
    for nv in folders:
        merged = sorted((d for d in nv.glob("cu[0-9]*") if (d / "bin" / "nvcc").is_file()), reverse=True)
        for d in merged:
            if (v := nvcc_release(d / "bin" / "nvcc")):
                # the same cuXX folder in other site-packages (torch's cudart beside a --target install)
                twins = [o / d.name for o in folders if o != nv and (o / d.name).is_dir()]
                return PipToolkit((d, *twins), v)
        split = nv / "cuda_nvcc"
        if (split / "bin" / "nvcc").is_file() and (v := nvcc_release(split / "bin" / "nvcc")):
            others = sorted(d for d in nv.glob("cuda_*") if d != split and d.is_dir())
            return PipToolkit((split, *others), v)
    return None


def _link_merged(srcs: list[Path], dst: Path) -> None:
    """dst/ with a symlink per entry of every src (the first src wins a name clash)."""
    dst.mkdir(parents=True, exist_ok=True)
    for src in srcs:
        for e in sorted(src.iterdir()):
            if not (dst / e.name).exists():
                (dst / e.name).symlink_to(e)


def build_home(tk: PipToolkit, where: Path) -> Path:
    """A CUDA_HOME at `where` (symlinks over the toolkit's parts; lib64 with libcudart.so), made once and
    atomically (built beside it, then renamed)."""
    if (where / "bin" / "nvcc").exists() and (where / "lib64").is_dir():
        return where
    where.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=where.name + ".", dir=where.parent))
    for part in PARTS:
        srcs = [r / part for r in tk.roots if (r / part).is_dir()]
        if srcs:
            _link_merged(srcs, tmp / ("lib64" if part == "lib" else part))
    lib = tmp / "lib64"
    lib.mkdir(exist_ok=True)
    if not (lib / "libcudart.so").exists():
        versioned = sorted(lib.glob("libcudart.so.*"))
        if versioned:
            (lib / "libcudart.so").symlink_to(versioned[0].resolve())
    try:
        tmp.rename(where)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return where


def use_pip_toolkit(env: dict | None = None, cache: Path | None = None, torch_cuda: str | None = None,
                    paths: list[str] | None = None) -> str | None:
    """Point CUDA_HOME at the pip CUDA toolkit when nothing else gives torch one; returns what was done
    (a line for logs and device_info) or None when nothing was needed or nothing fits."""
    env = os.environ if env is None else env
    if env.get("CUDA_HOME") or env.get("CUDA_PATH") or shutil.which("nvcc", path=env.get("PATH")):
        return None
    if torch_cuda is None:
        import torch

        torch_cuda = torch.version.cuda
    if not torch_cuda:
        return None
    tk = find_pip_toolkit(paths)
    if tk is None:
        return None
    if tk.major != torch_cuda.split(".")[0]:
        line = (f"the pip CUDA toolkit is {tk.version} but torch was built for CUDA {torch_cuda}: torch will "
                f"not build gsplat with it; install cuda-toolkit[nvcc,nvvm,crt,cudart,cccl] matching torch")
        log.warning(line)
        return line
    if cache is None:
        from emotalk.assets import cache_dir

        cache = cache_dir()
    home = build_home(tk, cache / f"cuda-home-{tk.version}")
    env["CUDA_HOME"] = str(home)
    cpp = sys.modules.get("torch.utils.cpp_extension")
    if cpp is not None and env is os.environ:  # imported already: its CUDA_HOME was fixed at import
        cpp.CUDA_HOME = str(home)
    line = f"CUDA_HOME set to the pip CUDA toolkit {tk.version} ({home})"
    log.info(line)
    return line


def ensure_once() -> None:
    """`use_pip_toolkit` on the real environment, once per process (before the first `import gsplat`)."""
    with _lock:
        if "done" not in _chosen:
            try:
                _chosen["line"] = use_pip_toolkit() or ""
            except Exception as e:  # noqa: BLE001 - a broken pip toolkit must not stop the fallback
                _chosen["line"] = f"the pip CUDA toolkit could not be used: {type(e).__name__}: {e}"
                log.warning(_chosen["line"])
            _chosen["done"] = "1"


def chosen() -> str | None:
    """What `ensure_once` did (None: nothing, or not run)."""
    return _chosen.get("line") or None
