"""Read the variables of a CTranslate2 `model.bin` into numpy arrays, without ctranslate2.

Why: the Whisper encoder is re-implemented in PyTorch (runs the same on CPU and CUDA, where no
ctranslate2 build exists), and its weights come from the registry's CTranslate2 model folder.
Layout (binary versions 3..6, little-endian): u32 version, str spec name, u32 revision, u32 count,
then per variable: str name, u8 rank, u32 dims[rank], u8 dtype id, u32 nbytes, raw bytes;
then u32 alias count and (alias, target) string pairs. A str is u16 length (with NUL) + bytes.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from emotalk.errors import AssetError

# dtype ids of CTranslate2's DataType enum, in order
_DTYPES = (np.float32, np.int8, np.int16, np.int32, np.float16, None)  # 5 = bfloat16
_BFLOAT16 = 5


def read_ct2_variables(path: str | Path, prefix: str = "") -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin whose name starts with `prefix` (float16 kept as is)."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise AssetError(f"Cannot read the CTranslate2 model file {path} ({e}).") from e
    off = 0

    def take(fmt: str):
        nonlocal off
        vals = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return vals[0]

    def string() -> str:
        nonlocal off
        n = take("H")
        s = buf[off:off + n - 1].decode("utf-8")
        off += n
        return s

    out: dict[str, np.ndarray] = {}
    try:
        version = take("I")
        if not 3 <= version <= 6:
            raise AssetError(f"{path}: unsupported CTranslate2 binary version {version} (expected 3..6).")
        string()  # spec name
        take("I")  # spec revision
        for _ in range(take("I")):
            name = string()
            shape = tuple(take("I") for _ in range(take("B")))
            dtype_id = take("B")
            nbytes = take("I")
            if name.startswith(prefix):
                raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=off)
                if dtype_id == _BFLOAT16:
                    arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
                else:
                    arr = raw.view(_DTYPES[dtype_id])
                out[name] = arr.reshape(shape).copy()
            off += nbytes
    except (struct.error, IndexError, ValueError) as e:
        raise AssetError(f"{path} is not a readable CTranslate2 model ({e}); fetch it again.") from e
    return out


def write_ct2_variables(path: str | Path, variables: dict[str, np.ndarray], spec: str = "WhisperSpec",
                        revision: int = 3) -> Path:
    """Write variables in the same binary layout (version 6, no aliases), e.g. an encoder-only subset
    small enough to carry to a GPU host. Atomic."""
    ids = {np.dtype(d): i for i, d in enumerate(_DTYPES) if d is not None}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def string(s: str) -> bytes:
        b = s.encode("utf-8")
        return struct.pack("<H", len(b) + 1) + b + b"\0"

    parts = [struct.pack("<I", 6), string(spec), struct.pack("<II", revision, len(variables))]
    for name, arr in variables.items():
        a = np.asarray(arr)  # (ascontiguousarray would make scalars 1-D)
        parts += [string(name), struct.pack("<B", a.ndim), struct.pack(f"<{a.ndim}I", *a.shape),
                  struct.pack("<BI", ids[a.dtype], a.nbytes), a.tobytes()]
    parts.append(struct.pack("<I", 0))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(path)
    return path
