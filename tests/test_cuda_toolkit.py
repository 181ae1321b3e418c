"""The pip CUDA toolkit (a Space's nvcc) becomes a CUDA_HOME torch's extension builder can use."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from emotalk.gaussians import cuda_toolkit as ct


def fake_nvcc(path: Path, release: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho 'nvcc: NVIDIA (R) Cuda compiler driver'\n"
                    f"echo 'Cuda compilation tools, release {release}, V{release}.88'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


@pytest.fixture
def cu13_site(tmp_path):
    """site-packages as cuda-toolkit[nvcc,nvvm,crt,cudart,cccl]==13.0 leaves it: one merged nvidia/cu13."""
    site = tmp_path / "site"
    root = site / "nvidia" / "cu13"
    fake_nvcc(root / "bin" / "nvcc", "13.0")
    touch(root / "nvvm" / "bin" / "cicc")
    touch(root / "include" / "cuda_runtime.h")
    touch(root / "include" / "crt" / "host_config.h")
    touch(root / "lib" / "libcudart.so.13")
    return site


def test_pip_toolkit_becomes_a_cuda_home(cu13_site, tmp_path):
    env = {"PATH": str(tmp_path / "empty")}
    line = ct.use_pip_toolkit(env, cache=tmp_path / "cache", torch_cuda="13.0", paths=[str(cu13_site)])
    home = Path(env["CUDA_HOME"])
    assert line and "13.0" in line and str(home) in line
    assert ct.nvcc_release(home / "bin" / "nvcc") == "13.0"
    assert (home / "nvvm" / "bin" / "cicc").exists() and (home / "include" / "crt" / "host_config.h").exists()
    # torch links with -L$CUDA_HOME/lib64 -lcudart: the unversioned name must exist there
    want = (cu13_site / "nvidia/cu13/lib/libcudart.so.13").resolve()
    assert (home / "lib64" / "libcudart.so").resolve() == want
    # a second process finds the tree made
    env2 = {"PATH": env["PATH"]}
    ct.use_pip_toolkit(env2, cache=tmp_path / "cache", torch_cuda="13.0", paths=[str(cu13_site)])
    assert env2["CUDA_HOME"] == env["CUDA_HOME"]


def test_pip_toolkit_of_another_cuda_major_is_refused_in_words(cu13_site, tmp_path):
    env = {"PATH": str(tmp_path / "empty")}
    line = ct.use_pip_toolkit(env, cache=tmp_path / "cache", torch_cuda="12.8", paths=[str(cu13_site)])
    assert "CUDA_HOME" not in env
    assert "13.0" in line and "12.8" in line and "cuda-toolkit" in line


def test_a_configured_toolkit_is_left_alone(cu13_site, tmp_path):
    env = {"PATH": str(tmp_path / "empty"), "CUDA_HOME": "/opt/cuda"}
    assert ct.use_pip_toolkit(env, cache=tmp_path / "c", torch_cuda="13.0", paths=[str(cu13_site)]) is None
    assert env["CUDA_HOME"] == "/opt/cuda"
    fake_nvcc(tmp_path / "sysbin" / "nvcc", "13.0")
    env = {"PATH": str(tmp_path / "sysbin")}
    assert ct.use_pip_toolkit(env, cache=tmp_path / "c", torch_cuda="13.0", paths=[str(cu13_site)]) is None
    assert "CUDA_HOME" not in env
    # no toolkit wheels, or a CPU torch: nothing to do
    env = {"PATH": str(tmp_path / "empty")}
    assert ct.use_pip_toolkit(env, cache=tmp_path / "c", torch_cuda="13.0", paths=[str(tmp_path)]) is None
    assert ct.use_pip_toolkit(env, cache=tmp_path / "c", torch_cuda=None, paths=[str(cu13_site)]) is None


def test_cuda12_wheels_one_folder_per_part_are_merged(tmp_path):
    nv = tmp_path / "site" / "nvidia"
    fake_nvcc(nv / "cuda_nvcc" / "bin" / "nvcc", "12.8")
    touch(nv / "cuda_nvcc" / "nvvm" / "bin" / "cicc")
    touch(nv / "cuda_runtime" / "include" / "cuda_runtime.h")
    touch(nv / "cuda_runtime" / "lib" / "libcudart.so.12")
    touch(nv / "cuda_cccl" / "include" / "cub" / "cub.cuh")
    env = {"PATH": str(tmp_path / "empty")}
    ct.use_pip_toolkit(env, cache=tmp_path / "cache", torch_cuda="12.8", paths=[str(tmp_path / "site")])
    home = Path(env["CUDA_HOME"])
    for f in ("bin/nvcc", "nvvm/bin/cicc", "include/cuda_runtime.h", "include/cub/cub.cuh",
              "lib64/libcudart.so"):
        assert (home / f).exists(), f


def test_a_broken_nvcc_wheel_is_not_used(tmp_path):
    site = tmp_path / "site"
    bad = site / "nvidia" / "cu13" / "bin" / "nvcc"
    touch(bad)
    bad.chmod(bad.stat().st_mode | stat.S_IXUSR)  # not a program: exec fails
    assert ct.find_pip_toolkit([str(site)]) is None


def test_backend_status_reports_the_toolkit_choice():
    from emotalk.gaussians import raster

    st = raster.backend_status()
    assert "cuda_toolkit" in st and st["fused_kernel_failures"] == {}
