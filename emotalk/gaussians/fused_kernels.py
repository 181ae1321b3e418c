"""Fused GPU kernels (Triton) for the per-frame work of a stream, each beside its PyTorch reference.

- `field_mlp`: a deformation field's per-frame part, relu(att @ M + base) -> Linear -> ReLU -> Linear, for
  every (frame, Gaussian) in one kernel. The PyTorch form writes and re-reads four [B,N,H] float tensors
  (266 MB each for obama's face at batch 64, 512²); here each tile of Gaussians stays in registers and
  loops over the frames, so only att, base and the [B,N,O] offsets touch memory.
- `composite_u8`: face over mouth over body, clamped and rounded to uint8, in one pass (the PyTorch form
  is nine full-image kernels).

Both run only on CUDA tensors with Triton importable (`available`); callers use the references otherwise.
`fast_render` uses them when `FastSettings.fused` is on; tests/gpu compares them with the references, and
tests/test_fused_kernels.py runs them in Triton's CPU interpreter where Triton is installed.
"""

from __future__ import annotations

import functools
import logging
import os

import torch
from torch import Tensor

log = logging.getLogger("emotalk.gaussians.fused_kernels")
PRECISION = "tf32x3"  # tl.dot inputs: "tf32x3" (three TF32 tensor-core products: float32 accuracy, ~1e-6),
# "tf32" (one: ~1e-3 relative), "ieee" (no tensor cores: measured slower than the PyTorch form on an H200)
BLOCK_N = 128  # Gaussians per program (measured on an H200: 128 fastest at batch 64, all equal at batch 1)
FRAMES_PER_PROGRAM = 16  # frames each program loops over (its tile of att and base is loaded once)
_failed: dict[str, str] = {}  # kernel name -> why it could not run here (then the references are used)


@functools.lru_cache(maxsize=1)
def _triton():
    """(triton, triton.language) or None when Triton cannot be imported."""
    try:
        import triton
        import triton.language as tl
    except Exception:  # noqa: BLE001 - no Triton (CPU torch) or a broken install: use the references
        return None
    return triton, tl


def available(*tensors: Tensor) -> bool:
    """Whether the fused kernels can run on these tensors (CUDA, or Triton's interpreter, and Triton)."""
    if _triton() is None or _failed:
        return False
    return all(t.is_cuda for t in tensors) or os.environ.get("TRITON_INTERPRET") == "1"


# -- references ---------------------------------------------------------------------------------------
def to_uint8(rgb: Tensor) -> Tensor:
    """Frames in [0,1] (float) -> uint8, rounded: the one rounding every render goes through (plain
    renders, evaluation and benchmarks call it too)."""
    return (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


def field_mlp_reference(att: Tensor, base: Tensor, M: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                        b2: Tensor) -> Tensor:
    """att [N,D], base [N,H], M [B,D,H], w1 [H,H], b1 [H], w2 [O,H], b2 [O] -> [B,N,O]: as
    `DeformField.forward` (its mlp is ReLU, Linear, ReLU, Linear)."""
    h = torch.relu(torch.matmul(att[None], M) + base[None])
    h = torch.relu(torch.nn.functional.linear(h, w1, b1))
    return torch.nn.functional.linear(h, w2, b2)


def composite_u8_reference(face_rgb: Tensor, face_alpha: Tensor, mouth_rgb: Tensor, mouth_alpha: Tensor,
                           body_u8: Tensor) -> Tensor:
    """rgb [B,H,W,3], alpha [B,H,W,1] per layer, body [B,H,W,3] uint8 -> the frame [B,H,W,3] uint8, as
    `FastRenderer.render` composites and `render_frames` rounds."""
    body = body_u8.float() / 255
    rgb = face_rgb + (1 - face_alpha) * (mouth_rgb + (1 - mouth_alpha) * body)
    return to_uint8(rgb)


# -- kernels ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _kernels():
    triton, tl = _triton()

    # sizes are not specialised on (divisible by 16, equal to 1), so one compiled kernel serves both
    # branches and every batch size: a stream never waits for a compile after its first frame
    @triton.jit(do_not_specialize=["N", "D", "O", "B"])
    def field_kernel(att_ptr, base_ptr, m_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr, N, D, O, B,
                     B_PER: tl.constexpr, BLOCK_N: tl.constexpr, DP: tl.constexpr, H: tl.constexpr,
                     OP: tl.constexpr, PREC: tl.constexpr):
        rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
        rd = tl.arange(0, DP)
        rh = tl.arange(0, H)
        ro = tl.arange(0, OP)
        nm = rn < N
        att = tl.load(att_ptr + rn[:, None] * D + rd[None, :], mask=nm[:, None] & (rd[None, :] < D),
                      other=0.0)
        base = tl.load(base_ptr + rn[:, None] * H + rh[None, :], mask=nm[:, None], other=0.0)
        w1t = tl.load(w1_ptr + rh[None, :] * H + rh[:, None])  # [H_in, H_out] = w1ᵀ
        b1 = tl.load(b1_ptr + rh)
        w2t = tl.load(w2_ptr + ro[None, :] * H + rh[:, None], mask=ro[None, :] < O, other=0.0)  # [H, OP]
        b2 = tl.load(b2_ptr + ro, mask=ro < O, other=0.0)
        b0 = tl.program_id(1) * B_PER
        for i in range(0, B_PER):
            b = b0 + i
            mb = tl.load(m_ptr + b * D * H + rd[:, None] * H + rh[None, :], mask=(rd[:, None] < D) & (b < B),
                         other=0.0)
            h = tl.maximum(tl.dot(att, mb, input_precision=PREC) + base, 0.0)
            h = tl.maximum(tl.dot(h, w1t, input_precision=PREC) + b1[None, :], 0.0)
            o = tl.dot(h, w2t, input_precision=PREC) + b2[None, :]
            tl.store(out_ptr + b * N * O + rn[:, None] * O + ro[None, :], o,
                     mask=nm[:, None] & (ro[None, :] < O) & (b < B))

    @triton.jit(do_not_specialize=["n"])
    def composite_kernel(frgb_ptr, fa_ptr, mrgb_ptr, ma_ptr, body_ptr, out_ptr, n, BLOCK: tl.constexpr):
        e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # element of [B,H,W,3]
        m = e < n
        p = e // 3  # its pixel
        body = tl.load(body_ptr + e, mask=m, other=0).to(tl.float32) / 255
        fa = tl.load(fa_ptr + p, mask=m, other=0.0)
        ma = tl.load(ma_ptr + p, mask=m, other=0.0)
        rgb = tl.load(frgb_ptr + e, mask=m, other=0.0) + (1 - fa) * (
            tl.load(mrgb_ptr + e, mask=m, other=0.0) + (1 - ma) * body)
        rgb = tl.minimum(tl.maximum(rgb, 0.0), 1.0) * 255 + 0.5
        tl.store(out_ptr + e, rgb.to(tl.uint8), mask=m)

    return field_kernel, composite_kernel


def _pow2(x: int, lo: int = 16) -> int:
    return max(lo, 1 << (max(int(x), 1) - 1).bit_length())


def field_mlp(att: Tensor, base: Tensor, M: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
              precision: str | None = None, block_n: int | None = None,
              frames_per_program: int | None = None) -> Tensor:
    """`field_mlp_reference` in one Triton kernel (float32 in and out; defaults PRECISION, BLOCK_N,
    FRAMES_PER_PROGRAM). H must be a power of two >= 16 (the fields' hidden width). If the kernel cannot
    be built or run here (an older GPU without TF32), it says so once and the reference is used from
    then on."""
    precision, block_n = precision or PRECISION, block_n or BLOCK_N
    frames_per_program = frames_per_program or FRAMES_PER_PROGRAM
    N, D = att.shape
    B, H = M.shape[0], M.shape[2]
    O = w2.shape[0]
    if H != _pow2(H) or tuple(base.shape) != (N, H) or M.shape[1] != D or tuple(w1.shape) != (H, H):
        raise ValueError(f"field_mlp: shapes att {tuple(att.shape)}, base {tuple(base.shape)}, M "
                         f"{tuple(M.shape)}, w1 {tuple(w1.shape)} do not fit (H a power of two >= 16)")
    field_kernel, _ = _kernels()
    out = torch.empty((B, N, O), device=att.device, dtype=torch.float32)
    args = [t.contiguous().float() for t in (att, base, M, w1, b1, w2, b2)]
    per = max(1, min(frames_per_program, B))
    grid = (-(-N // block_n), -(-B // per))
    try:
        field_kernel[grid](*args, out, N, D, O, B, B_PER=per, BLOCK_N=block_n, DP=_pow2(D), H=H, OP=_pow2(O),
                           PREC=precision, num_warps=4)
    except Exception as e:  # noqa: BLE001 - compile or launch failure: fall back for the process
        _fail("field_mlp", e)
        return field_mlp_reference(att, base, M, w1, b1, w2, b2)
    return out


def composite_u8(face_rgb: Tensor, face_alpha: Tensor, mouth_rgb: Tensor, mouth_alpha: Tensor,
                 body_u8: Tensor, block: int = 1024) -> Tensor:
    """`composite_u8_reference` in one Triton kernel."""
    _, composite_kernel = _kernels()
    out = torch.empty(face_rgb.shape, device=face_rgb.device, dtype=torch.uint8)
    n = out.numel()
    try:
        composite_kernel[(-(-n // block),)](face_rgb.contiguous(), face_alpha.contiguous(),
                                            mouth_rgb.contiguous(), mouth_alpha.contiguous(),
                                            body_u8.contiguous(), out, n, BLOCK=block)
    except Exception as e:  # noqa: BLE001
        _fail("composite_u8", e)
        return composite_u8_reference(face_rgb, face_alpha, mouth_rgb, mouth_alpha, body_u8)
    return out


def _fail(name: str, e: BaseException) -> None:
    _failed[name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
    log.warning("fused kernel %s cannot run here (%s): using the PyTorch form from now on", name,
                _failed[name])


def failures() -> dict[str, str]:
    """Kernels that could not run in this process, and why (empty: all fine or never tried)."""
    return dict(_failed)
