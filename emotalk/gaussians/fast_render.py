"""Fast rendering of one identity frame after frame: what does not change between frames is computed once.

`TalkingGaussians.render` is the plain path and the definition (training and evaluation use it). Rendering
a stream, most of its per-frame work repeats, and at batch 1 its ~200 small kernel launches and host syncs
cost 3-5x the rasterizer itself. `FastRenderer` keeps
  - per identity: the fields' spatial caches (tri-plane sampling), sigmoid(opacity), the SH stacks, the
    mouth's exp(scales);
  - per emotion (`Request`, memoised by (valence, arousal, gain) and the model's switches): the emotion
    field's deltas × gain [1,N,13] (with its lip lock and mouth mask), the emotion embedding's rows of
    each speech field's condition matrix, the lip-code offset;
and per frame runs only the speech / upper-face encoders, one matmul + MLP per branch, SH colours and the
rasterizer, with no host sync before the rasterizer. Optionally the per-frame deformation is compiled
(torch.compile) and/or replayed as a CUDA graph per batch size (`render_graph`); gsplat never is.
The arithmetic is the plain path's, op for op, so images agree with it to float rounding
(tests/test_render_fast_path.py).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from emotalk.errors import InputError
from emotalk.gaussians import fused_kernels
from emotalk.gaussians.emotion_warp import warp_active
from emotalk.gaussians.fields import SpatialCache
from emotalk.gaussians.model import BRANCHES, Frames, RenderOut, TalkingGaussians
from emotalk.gaussians.raster import eval_sh, rasterize, resolve_backend
from emotalk.gaussians.render_graph import DeformGraph
from emotalk.lips import scale_opening
from emotalk.lips.emotion import open_lips


@dataclass(frozen=True)
class FastSettings:
    """How the fast path runs the per-frame deformation (the rasterizer is always called eagerly)."""

    graphs: bool = False  # replay the deformation as a CUDA graph per batch size (CUDA only; a batch
    # smaller than the captured one is padded); batches whose frames have different emotions run eagerly
    compile: str | None = None  # torch.compile backend of the deformation ("inductor" on a GPU host,
    # "eager" in tests); None: plain eager PyTorch
    fused: bool = False  # each field's per-frame MLP and the final composite + uint8 as one Triton kernel
    # each (emotalk.gaussians.fused_kernels; CUDA with Triton, else their PyTorch references), and both
    # layers drawn by one rasterizer call (`render_u8`; padding Gaussians at opacity 0 are culled)


PATHS: dict[str, FastSettings | None] = {  # render paths by name; None: the plain `TalkingGaussians.render`
    "plain": None,
    "fast": FastSettings(),
    "graphs": FastSettings(graphs=True),
    "compile": FastSettings(compile="inductor"),
    "graphs+compile": FastSettings(graphs=True, compile="inductor"),
    "fused": FastSettings(fused=True),
    "graphs+fused": FastSettings(graphs=True, fused=True),
}
ENV = "EMOTALK_RENDER_PATH"  # chooses the render path of `render_frames` when the caller names none
DEFAULT_PATH = "graphs+fused"  # measured on an H200 (BENCHMARKS.md, issue 18): batch 1 at 512² 312 (plain)
# -> 914 (graphs) -> 1,312 FPS, batch 64 6,362 -> 8,555 -> 11,860, frames within 1 grey level of plain;
# on a CPU it runs eagerly with the PyTorch forms (the same frames as "fast")
MEMO = 64  # emotions remembered per renderer (a ramp between two emotions makes one per frame)


def path_settings(name: str | None = None) -> FastSettings | None:
    """Settings of a named render path (None: $EMOTALK_RENDER_PATH, else DEFAULT_PATH); None for 'plain'."""
    name = name or os.environ.get(ENV) or DEFAULT_PATH
    if name not in PATHS:
        where = "$" + ENV if ENV in os.environ else "the caller"
        raise InputError(f"Unknown render path {name!r} (from {where}); use one of {', '.join(PATHS)}.")
    return PATHS[name]


@dataclass
class Request:
    """What one emotion adds to every frame; R rows: 1 (the whole batch has this emotion) or B (per frame)."""

    rows: dict[str, Tensor]  # per branch: [R,De,H] the emotion embedding's rows of the condition matrix M
    # of its field (see `DeformField.forward`)
    delta: Tensor | None  # [R,N,13] emotion field's deltas × gain (face); None: no field, or neutral
    lip_off: Tensor | None  # [R,M] emotion's lip-code offset (switch lip_offset); None: none
    mouth_delta: Tensor | None = None  # [R,Nm,3] the mouth warp's motion of the inside of the mouth × gain
    opening: Tensor | None = None  # [R,M] emotion's dropped jaw (switch jaw_drop); None: none


def fingerprint(model: TalkingGaussians) -> tuple:
    """Changes whenever a parameter or buffer of the model is replaced, moved or changed in place."""
    return tuple((n, t.data_ptr(), t._version, tuple(t.shape), t.device.type)
                 for n, t in (*model.named_parameters(), *model.named_buffers()))


def fast_renderer(model: TalkingGaussians, settings: FastSettings | None = None) -> FastRenderer:
    """The model's renderer for these settings, built once and rebuilt when the model has changed."""
    settings = settings or FastSettings()
    store = model.__dict__.setdefault("_fast_renderers", {})
    r = store.get(settings)
    if r is None or r.fingerprint != fingerprint(model):
        r = store[settings] = FastRenderer(model, settings)
    return r


class FastRenderer:
    """Renders frames of one identity like `TalkingGaussians.render`, with the repeated work done once."""

    def __init__(self, model: TalkingGaussians, settings: FastSettings | None = None):
        self.model, self.settings = model, settings or FastSettings()
        self.fingerprint = fingerprint(model)
        self._lock = threading.RLock()  # graphs' static buffers and the memo are shared by callers
        self._memo: OrderedDict[tuple, Request] = OrderedDict()
        self._graphs: dict[tuple, DeformGraph] = {}
        self._zero: dict[tuple, Tensor] = {}
        with torch.no_grad():
            self.caches: dict[str, SpatialCache] = {b: model.precompute(b) for b in BRANCHES}
            p = model.branches
            self.opac = {b: torch.sigmoid(p[b]["opacities"]) for b in BRANCHES}  # [N]
            self.sh = {b: torch.cat([p[b]["sh0"], p[b]["shN"]], 1) for b in BRANCHES}  # [N,K,3]
            self.mouth_scales = torch.exp(p["mouth"]["scales"])  # [N,3] linear
        self.n_layer = {b: int(self.opac[b].shape[0]) for b in BRANCHES}  # Gaussians per branch
        core = self._core_stacked if self.settings.fused else self._core
        if self.settings.compile:
            core = torch.compile(core, backend=self.settings.compile, dynamic=False)
        self.core = core

    # -- per emotion ----------------------------------------------------------------------------
    def request(self, emo: np.ndarray) -> Request:
        """Terms of emotion rows emo [R,3] (valence, arousal, gain), R = 1 or B (see `Request`)."""
        m = self.model
        dev = self.opac["face"].device
        em = torch.as_tensor(np.ascontiguousarray(emo[:, :2]), dtype=torch.float32, device=dev)  # [R,2]
        g = torch.as_tensor(np.ascontiguousarray(emo[:, 2]), dtype=torch.float32, device=dev)  # [R]
        legacy = (em * g[:, None]).clamp(-1, 1)  # as `TalkingGaussians.deform`
        e = m.emo_enc(legacy if m.emotion_field is None else torch.zeros_like(em))  # [R,De]
        rows = {b: e[:, :, None] * m.fields[b].cond[-1].weight.t()[None] for b in BRANCHES}  # [R,De,H]
        va, gain = emo[:, :2].astype(np.float32), emo[:, 2].astype(np.float32)
        delta = mouth_delta = None
        if m.emotion_field is not None and bool(np.any(np.clip(va * gain[:, None], -1, 1) != 0)):
            delta = m.emotion_delta(self.caches["face"].emotion, em) * g[:, None, None]  # [R,N,13]
            w = m.mouth_warp(em, "mouth")  # [R,Nm,3]
            mouth_delta = None if w is None else w * g[:, None, None]
        lip_off = None
        if (m.settings.lip_code and m.switches.lip_offset
                and bool(np.any((va != 0).any(-1) & (gain != 0)))):
            from emotalk.lips.emotion import emotion_lip_offset

            lip_off = emotion_lip_offset(em, g).float()  # [R,M]
        opening = None
        if m.settings.lip_code and m.switches.jaw_drop:
            from emotalk.lips.emotion import emotion_opening

            opening = emotion_opening(em, g).float()  # [R,M]
            opening = opening if bool((opening != 0).any()) else None
        return Request(rows, delta, lip_off, mouth_delta, opening)

    def _request_for(self, emo: np.ndarray) -> tuple[Request, bool]:
        """The request of a batch's emotion rows [B,3] -> (request, whether it has one row for all)."""
        if len(emo) and bool(np.all(emo == emo[:1])):
            sw = self.model.switches
            key = (*(float(x) for x in emo[0]), sw.lip_offset, sw.mouth_mask, sw.mouth_warp, sw.warp_stretch,
                   sw.jaw_drop)
            with self._lock:
                req = self._memo.get(key)
                if req is None:
                    req = self._memo[key] = self.request(emo[:1])
                    while len(self._memo) > MEMO:
                        self._memo.popitem(last=False)
                self._memo.move_to_end(key)
            return req, True
        return self.request(emo), False

    # -- per frame ------------------------------------------------------------------------------
    def _core(self, speech_in: Tensor, upper: Tensor, viewmats: Tensor, rows_face: Tensor, rows_mouth: Tensor,
              delta: Tensor | None, lip_off: Tensor | None, mouth_delta: Tensor | None,
              opening: Tensor | None, from_lips: bool) -> tuple[Tensor, ...]:
        """Deformed Gaussians of both branches for B frames -> (means, quats, scales, opacities, colors) of
        the face, then of the mouth (shapes as `TalkingGaussians.deform`). speech_in: audio [B,W,C], or
        the lip code [B,M] when from_lips; upper [B,U]; viewmats [B,4,4]; the rest from a `Request`."""
        m = self.model
        B = viewmats.shape[0]
        if m.settings.lip_code:
            lips = speech_in if from_lips else torch.minimum(torch.maximum(m.lip_driver(speech_in), m.lip_lo),
                                                             m.lip_hi)
            if not m.training and m.settings.lip_open_gain != 1.0:  # as TalkingGaussians.lips
                lips = scale_opening(lips, m.opening_floor(), m.settings.lip_open_gain)
            if opening is not None:  # as emotion.dropped_jaw (a zero opening leaves lips as they are)
                lips = open_lips(lips, opening, m.lip_lo, m.lip_hi)
            if lip_off is not None:  # as emotion.emotional_lips (a zero offset leaves lips as they are)
                moved = torch.minimum(torch.maximum(lips + lip_off, m.lip_lo), m.lip_hi)
                lips = torch.where(lip_off != 0, moved, lips)
            a = m.lip_enc(lips)  # [B,A]
        else:
            a = m.audio_enc(speech_in)
        u = m.upper_enc(upper if m.upper_dim else upper.new_zeros(B, 1))  # [B,Du]
        R, t = viewmats[:, :3, :3], viewmats[:, :3, 3]
        campos = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # [B,3] camera centre in the head frame
        p = m.branches
        d = self._field("face", [a, u], rows_face, B)  # [B,N,10]
        dcol = None
        if delta is not None:
            d, dcol = d + delta[..., :10], delta[..., 10:]
        fm = p["face"]["means"][None] + d[..., :3]
        fq = p["face"]["quats"][None] + d[..., 3:7]
        fs = torch.exp(p["face"]["scales"][None] + d[..., 7:10])
        face = (fm, fq, fs, self.opac["face"][None].expand(B, -1), self._colors("face", fm, campos, dcol))
        mm = p["mouth"]["means"][None] + self._field("mouth", [a], rows_mouth, B)  # [B,Nm,3]
        if mouth_delta is not None:
            mm = mm + mouth_delta
        mouth = (mm, p["mouth"]["quats"][None].expand(B, -1, -1), self.mouth_scales[None].expand(B, -1, -1),
                 self.opac["mouth"][None].expand(B, -1), self._colors("mouth", mm, campos, None))
        return face + mouth

    def _core_stacked(self, *args) -> tuple[Tensor, ...]:
        """`_core`, with both branches stacked as 2B images of max(N_face, N_mouth) Gaussians (the shorter
        padded with copies of its first Gaussian at opacity 0, which the rasterizer culls), so one gsplat
        call draws both layers: (means [2B,N,3], quats, scales, opacities [2B,N], colors [2B,N,3])."""
        out = self._core(*args)
        n = max(self.n_layer.values())
        stacked = []
        for k, (f, m) in enumerate(zip(out[:5], out[5:])):
            parts = []
            for x in (f, m):
                if x.shape[1] < n:
                    fill = (x.new_zeros(x.shape[0], n - x.shape[1]) if k == 3
                            else x[:, :1].expand(-1, n - x.shape[1], *x.shape[2:]))
                    x = torch.cat([x, fill], 1)
                parts.append(x)
            stacked.append(torch.cat(parts, 0))
        return tuple(stacked)

    def _split(self, out: tuple[Tensor, ...], B: int) -> dict[str, tuple[Tensor, ...]]:
        """Per-branch Gaussians (views) from the core's output, stacked or not."""
        if not self.settings.fused:
            return {"face": out[:5], "mouth": out[5:]}
        nf, nm = self.n_layer["face"], self.n_layer["mouth"]
        return {"face": tuple(x[:B, :nf] for x in out), "mouth": tuple(x[B:, :nm] for x in out)}

    def _field(self, b: str, conds: list[Tensor], rows: Tensor, B: int) -> Tensor:
        """`DeformField.forward` of branch b; the emotion embedding's rows [R,De,H] (its last condition)
        are given."""
        f, c = self.model.fields[b], self.caches[b]
        M = torch.cat([x[:, :, None] * lin.weight.t()[None] for x, lin in zip(conds, f.cond)]
                      + [rows.expand(B, -1, -1)], 1)  # [B,D,H]
        if self.settings.fused and fused_kernels.available(M):
            l1, l2 = f.mlp[1], f.mlp[3]  # mlp = ReLU, Linear, ReLU, Linear
            return fused_kernels.field_mlp(c.att_all, c.base, M, l1.weight, l1.bias, l2.weight, l2.bias)
        return f.mlp(torch.matmul(c.att_all[None], M) + c.base[None])

    def _colors(self, b: str, means: Tensor, campos: Tensor, dcol: Tensor | None) -> Tensor:
        B = means.shape[0]
        cols = eval_sh(self.sh[b][None].expand(B, -1, -1, -1), means - campos[:, None],
                       self.model.settings.sh_degree)
        return cols if dcol is None else cols + dcol

    def deform(self, fr: Frames, emotion: np.ndarray | None = None) -> dict[str, tuple[Tensor, ...]]:
        """Deformed Gaussians per branch for B frames, as `TalkingGaussians.deform` gives them. emotion:
        the frames' (valence, arousal, gain) [B,3] on the host (None: read from fr, one device->host copy).
        With graphs the tensors are the graph's buffers: use them before the next call."""
        return self._split(self._deformed(fr, emotion), fr.viewmats.shape[0])

    def _deformed(self, fr: Frames, emotion: np.ndarray | None = None) -> tuple[Tensor, ...]:
        """The core's output for B frames (see `_core`, `_core_stacked`)."""
        emo = _host_emotion(fr) if emotion is None else np.asarray(emotion, np.float32).reshape(-1, 3)
        if emo.shape[0] != fr.viewmats.shape[0]:
            raise ValueError(f"{emo.shape[0]} emotion rows for {fr.viewmats.shape[0]} frames")
        from_lips = bool(self.model.settings.lip_code and fr.lips is not None)
        speech_in = fr.lips if from_lips else fr.audio
        with torch.no_grad():
            req, shared = self._request_for(emo)
            args = (speech_in, fr.upper, fr.viewmats, req.rows["face"], req.rows["mouth"], req.delta,
                    req.lip_off, req.mouth_delta, req.opening)
            if self.settings.graphs and fr.viewmats.is_cuda and shared:
                out = self._graph_call(args, from_lips)
            else:
                out = self.core(*args, from_lips)
        return out

    def _graph_call(self, args: tuple, from_lips: bool) -> tuple[Tensor, ...]:
        """Replay (capturing first) the graph of the next batch size up; absent request terms become zeros
        (d + 0 and colours + 0 are exact), so one graph serves every emotion."""
        m = self.model
        B = args[2].shape[0]
        has_delta, has_off = m.emotion_field is not None, bool(m.settings.lip_code and m.switches.lip_offset)
        has_warp = has_delta and warp_active(m)
        has_open = bool(m.settings.lip_code and m.switches.jaw_drop)
        key = (_bucket(B), from_lips, has_delta, has_off, has_warp, has_open)
        per_frame, req = list(args[:3]), list(args[3:])
        if has_delta and req[2] is None:
            req[2] = self._zeros((1, len(self.opac["face"]), 13))
        if has_off and req[3] is None:
            req[3] = self._zeros((1, int(m.lip_lo.numel())))
        if has_warp and req[4] is None:
            req[4] = self._zeros((1, self.n_layer["mouth"], 3))
        if has_open and req[5] is None:
            req[5] = self._zeros((1, int(m.lip_lo.numel())))
        g = self._graphs.get(key)
        if g is None:
            pad = [torch.cat([x, x[-1:].expand(key[0] - B, *x.shape[1:])]) for x in per_frame]
            g = self._graphs[key] = DeformGraph(lambda *xs: self.core(*xs, from_lips), pad, req,
                                                blocks=2 if self.settings.fused else 1)
        return g(per_frame, req)

    def _zeros(self, shape: tuple[int, ...]) -> Tensor:
        """One zero tensor per shape (the same object each time: graphs copy a request input only when it
        is another tensor)."""
        z = self._zero.get(shape)
        if z is None:
            z = self._zero[shape] = self.opac["face"].new_zeros(shape)
        return z

    def render(self, fr: Frames, width: int, height: int, body: Tensor, backend: str = "auto",
               emotion: np.ndarray | None = None) -> RenderOut:
        """`TalkingGaussians.render` of B frames (body [B,H,W,3] float in [0,1]); emotion as in `deform`."""
        with self._lock if self.settings.graphs else _NoLock():
            g = self.deform(fr, emotion)
            with torch.no_grad():
                layers = {b: rasterize(*g[b], fr.viewmats, fr.Ks, width, height, backend=backend)
                          for b in BRANCHES}
        f, mo = layers["face"], layers["mouth"]
        rgb = f.rgb + (1 - f.alpha) * (mo.rgb + (1 - mo.alpha) * body)
        return RenderOut(rgb, f, mo)

    def render_u8(self, fr: Frames, width: int, height: int, body_u8: Tensor, backend: str = "auto",
                  emotion: np.ndarray | None = None, one_call: bool | None = None) -> Tensor:
        """The frames as `render` composites them, rounded to uint8 [B,H,W,3] (what a video gets), from
        body frames [B,H,W,3] uint8; with `fused` the composite and rounding are one kernel, and both
        layers one rasterizer call (one_call; None: where gsplat draws, whose fixed cost per call dominates
        at batch 1 and which culls the padding; the PyTorch rasterizers would draw it)."""
        B = fr.viewmats.shape[0]
        if one_call is None:
            one_call = resolve_backend(backend, fr.viewmats.is_cuda) == "gsplat"
        one_call = self.settings.fused and one_call
        with self._lock if self.settings.graphs else _NoLock():
            out = self._deformed(fr, emotion)
            with torch.no_grad():
                if one_call:  # both layers in one rasterizer call: 2B images
                    two = rasterize(*out, torch.cat([fr.viewmats, fr.viewmats]), torch.cat([fr.Ks, fr.Ks]),
                                    width, height, backend=backend)
                    layers = (two.rgb[:B], two.alpha[:B], two.rgb[B:], two.alpha[B:], body_u8)
                    if fused_kernels.available(*layers):
                        return fused_kernels.composite_u8(*layers)
                else:
                    g = self._split(out, B)
                    f, mo = (rasterize(*g[b], fr.viewmats, fr.Ks, width, height, backend=backend)
                             for b in BRANCHES)
                    layers = (f.rgb, f.alpha, mo.rgb, mo.alpha, body_u8)
                return fused_kernels.composite_u8_reference(*layers)


def _bucket(B: int) -> int:
    """Captured batch size for B frames: B itself up to 8, else the next power of two (padding is cheap)."""
    return B if B <= 8 else 1 << (B - 1).bit_length()


def _host_emotion(fr: Frames) -> np.ndarray:
    """(valence, arousal, gain) [B,3] of the frames on the host."""
    g = fr.gain if fr.gain is not None else torch.ones_like(fr.emotion[:, 0])
    return torch.cat([fr.emotion.float(), g.float()[:, None]], 1).cpu().numpy()


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
