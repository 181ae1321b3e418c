"""Where identities live (shipped in checkpoints/, the user's folder, the Hugging Face Hub): lookup, cache."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from emotalk import assets
from emotalk.errors import InputError


@dataclass
class IdentityInfo:
    """An identity the app can pick."""

    name: str
    path: Path
    thumbnail: Path | None
    source: str  # "shipped" | "user" | "hub"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def validate_identity_name(name: str, shipped: set[str] | None = None) -> str:
    """A safe new identity name: letters, digits, '-' and '_', not a shipped identity's name."""
    n = (name or "").strip()
    if not _NAME.match(n):
        raise InputError(f"Identity name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                         "starting with a letter or digit (no spaces, dots or slashes).")
    if shipped is None:
        shipped = _shipped_names()
    if n.lower() in {s.lower() for s in shipped}:
        raise InputError(f"{n!r} is the name of a shipped identity; choose another name.")
    return n


def validate_repo_id(repo_id: str) -> str:
    """A Hugging Face repo id 'owner/name' (no URLs, no path tricks)."""
    r = (repo_id or "").strip()
    if r.startswith("hf:"):
        r = r[3:]
    if not _REPO.match(r) or ".." in r:
        raise InputError(f"{repo_id!r} is not a Hugging Face repo id; write it as owner/name.")
    return r


def _shipped_names() -> set[str]:
    root = Path(__file__).resolve().parents[2] / "checkpoints"
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


REPO_ROOT = Path(__file__).resolve().parents[2]


SHIPPED_DIR = REPO_ROOT / "checkpoints"  # identities that come with the project


def user_dir() -> Path:
    """Where fine-tuned and Hub identities live: $EMOTALK_HOME/identities (~/.local/share/emotalk)."""
    import os

    base = os.environ.get("EMOTALK_HOME") or str(Path.home() / ".local" / "share" / "emotalk")
    return Path(base) / "identities"


def identity_info(p: Path, source: str) -> IdentityInfo:
    thumb = p / "thumbnail.png"
    return IdentityInfo(p.name, p, thumb if thumb.is_file() else None, source)


def list_identities() -> list[IdentityInfo]:
    """Shipped identities first, then the user's (fine-tuned or loaded from the Hub)."""
    out = []
    for root, source in ((SHIPPED_DIR, "shipped"), (user_dir(), "user")):
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if (p / "identity.json").is_file():
                    src = "hub" if (p / ".hub_repo").is_file() else source
                    out.append(identity_info(p, src))
    return out


def resolve_identity(ref: str) -> Path:
    """An identity's folder from its name, a folder path, or 'hf:owner/repo'."""
    ref = (ref or "").strip()
    if ref.startswith("hf:"):
        return load_hub_identity(ref).path
    for info in list_identities():
        if info.name == ref:
            return info.path
    p = Path(ref).expanduser()
    if (p / "identity.json").is_file():
        return p
    names = ", ".join(i.name for i in list_identities()) or "none yet"
    raise InputError(f"No identity named {ref!r}. Available: {names}. Fine-tune one from a clip, or "
                     "load one from the Hub with hf:owner/repo.")


def load_hub_identity(repo_id: str, token: str | None = None) -> IdentityInfo:
    """Download an identity folder from a Hugging Face repo into the user's identities."""
    from emotalk.errors import AssetError

    rid = validate_repo_id(repo_id)
    dest = user_dir() / rid.replace("/", "__")
    if not assets.hub_reachable():
        if (dest / "identity.json").is_file():
            return identity_info(dest, "hub")
        raise AssetError(f"The Hugging Face Hub cannot be reached (offline, or HF_HUB_OFFLINE is set), so "
                         f"{rid} cannot be loaded. Use a shipped identity or fine-tune your own.")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(rid, local_dir=str(dest), token=token or None, etag_timeout=10,
                          allow_patterns=["identity.json", "model.safetensors", "body.mp4", "thumbnail.png",
                                          "phone_lips.json"])
    except Exception as e:  # the Hub library raises many types; the user needs one message
        raise AssetError(f"Could not download {rid} from the Hub ({type(e).__name__}: {e}). Check the repo "
                         "id, your token for private repos, and the connection.") from e
    (dest / ".hub_repo").write_text(rid)
    from emotalk.identity.checkpoint import load_identity

    load_identity(dest)  # validates version and shapes now, not at render time
    return identity_info(dest, "hub")


def push_identity(name: str, repo_id: str, token: str) -> str:
    """Upload a user identity folder to the user's own Hub repo; returns its URL."""
    from emotalk.errors import AssetError

    rid = validate_repo_id(repo_id)
    if not token:
        raise InputError("Pushing to the Hub needs your own write token.")
    path = resolve_identity(name)
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(rid, exist_ok=True, private=True)
        api.upload_folder(folder_path=str(path), repo_id=rid,
                          allow_patterns=["identity.json", "model.safetensors", "body.mp4", "thumbnail.png",
                                          "phone_lips.json"])
    except Exception as e:
        raise AssetError(f"Could not push {name} to {rid} ({type(e).__name__}: {e}).") from e
    return f"https://huggingface.co/{rid}"


_LOADED: dict[tuple[str, float, str], object] = {}  # (path, mtime, device) -> Identity; bounded below


def load_cached(path: Path, device: str):
    """Load an identity once per process (renders and previews reuse it)."""
    from emotalk.identity.checkpoint import load_identity

    key = (str(path.resolve()), (path / "model.safetensors").stat().st_mtime, device)
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_identity(path, device=device)
    return _LOADED[key]
