"""The talking head: canonical 3D Gaussians (face and inside-mouth branches) in the head frame,
deformed per frame by audio / upper-face / emotion conditioned fields, rendered and composited
as inside-mouth under face over the body frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from emotalk.gaussians.emotion import (
    EmotionSwitches,
    dropped_jaw,
    emotional_lips,
    keep_from_lip_lock,
    lip_lock,
)
from emotalk.gaussians.fields import AudioEncoder, DeformField, FieldSettings, SpatialCache
from emotalk.gaussians.raster import RasterOut, eval_sh, rasterize, sh_dim
from emotalk.gaussians.seeding import seed_points
from emotalk.lips import scale_opening

BRANCHES = ("face", "mouth")
LIP_CLASSES = (11, 12, 13)  # CelebAMask-HQ classes of the lips and the mouth interior (training's lip loss)
C0 = 0.28209479177387814  # SH band-0 constant: colour = C0·sh0 + 0.5
EMOTION_PLANE_CH = 4  # the emotion field's tri-plane channels (emotion changes are smoother than speech)


@dataclass
class ModelSettings:
    """Shapes of the model (stored in the checkpoint, so loading can rebuild it)."""

    n_face_init: int = 20000  # face Gaussians seeded from the dataset
    n_mouth_init: int = 2000  # inside-mouth Gaussians seeded from the dataset
    sh_degree: int = 1  # view-dependent colour: SH degree (0..2)
    init_opacity: float = 0.3  # opacity of seeded Gaussians
    field: FieldSettings = field(default_factory=FieldSettings)
    emotion_field: bool = False  # an additive emotion field on the face (position, rotation, scale and
    # colour), exactly zero at (0, 0); added and trained by the emotion stage (emotalk.emotion_train)
    emotion_mouth_mask: bool = False  # the emotion field carries a mouth mask (buffer emotion_keep [N,1],
    # 0 at the lips, 1 away from them; `set_mouth_mask`): the speech fields alone draw the lips
    emotion_mouth_warp: bool = False  # emotion's mouth is a smooth warp of the face Gaussians made from the
    # expression model (buffers emotion_face [478,3] head-frame landmarks, emotion_warp_gain [1];
    # `set_mouth_warp`, emotalk.gaussians.emotion_warp), acting where the mouth mask turns the field off
    emotion_category_gain: dict[str, float] = dataclasses.field(default_factory=dict)  # the mouth warp's
    # per-category factor on emotion_warp_gain (the generator's `category_gain` the targets were made with)
    emotion_warp_region: str = "mouth"  # what that warp carries: "mouth", the lower face's change where the
    # mouth mask turns the field off (the field draws the rest); "face", the whole face's, limited as the
    # generator limits it (brows, lids, cheeks: the field drew about half of its targets' geometry)
    emotion_field_colour_only: bool = False  # the emotion field recolours only (its position, rotation and
    # scale deltas are dropped): with the "face" warp drawing the geometry, the field adds shading alone
    lip_code: bool = False  # speech reaches the fields through the lip code (emotalk.lips): trained on the
    # tracked lip parameters, driven at render time by the speaker-independent LipDriver; False: the raw
    # audio code drives the fields directly (the first sessions' identities)
    lip_open_gain: float = 1.0  # lip-code models, when rendering (not training): the code's opening moved
    # this many times as far from a p/b/m closure (`emotalk.lips.scale_opening`, `opening_floor`), fitted
    # after training so rendered openings match the clip's (`emotalk.training.opening`); 1: as trained


@dataclass
class Frames:
    """Cameras and conditions of a batch of B frames (all tensors on one device)."""

    viewmats: Tensor  # [B,4,4] head frame -> camera (OpenCV)
    Ks: Tensor  # [B,3,3] intrinsics at the render size
    audio: Tensor  # [B,W,C] audio code windows
    upper: Tensor  # [B,U] upper-face code (blinks, brows)
    emotion: Tensor  # [B,2] valence, arousal in [-1,1]
    lips: Tensor | None = None  # [B,M] lip code (z-scores) to use instead of the driver's prediction
    # from `audio` (training feeds the tracked one); only read by lip-code models
    gain: Tensor | None = None  # [B] strength of the emotion (intensity, 0..1.5) scaling its effect
    # (the emotion field's deltas and the lip-code offset); None: 1


@dataclass
class RenderOut:
    """Composited frames and the branch layers they came from."""

    rgb: Tensor  # [B,H,W,3] final image in [0,1]
    face: RasterOut  # face layer (premultiplied rgb, alpha, means2d)
    mouth: RasterOut  # inside-mouth layer


def _inv_sigmoid(x: Tensor) -> Tensor:
    return torch.log(x / (1 - x))


class TalkingGaussians(nn.Module):
    """Two Gaussian branches + their deformation fields + condition encoders."""

    def __init__(self, settings: ModelSettings, n_face: int, n_mouth: int, audio_shape: tuple[int, int],
                 upper_dim: int, lo: Tensor, hi: Tensor):
        super().__init__()
        self.settings = settings
        s = settings.field
        K = sh_dim(settings.sh_degree)
        self.branches = nn.ModuleDict({b: nn.ParameterDict({
            "means": nn.Parameter(torch.zeros(n, 3)),  # [N,3] canonical centres (head frame)
            "quats": nn.Parameter(torch.tensor([1.0, 0, 0, 0]).repeat(n, 1)),  # [N,4] wxyz
            "scales": nn.Parameter(torch.zeros(n, 3)),  # [N,3] log scales
            "opacities": nn.Parameter(torch.zeros(n)),  # [N] logits
            "sh0": nn.Parameter(torch.zeros(n, 1, 3)),  # [N,1,3] SH band 0
            "shN": nn.Parameter(torch.zeros(n, K - 1, 3)),  # [N,K-1,3] higher bands
        }) for b, n in (("face", n_face), ("mouth", n_mouth))})
        W, C = audio_shape
        self.audio_shape, self.upper_dim = (W, C), upper_dim
        if settings.lip_code:
            from emotalk.lips import LIP_NAMES, LipDriver

            M = len(LIP_NAMES)
            self.lip_driver = LipDriver(W, C, M).requires_grad_(False)  # frozen: set by `build_model`
            self.lip_enc = nn.Sequential(nn.Linear(M, 32), nn.LeakyReLU(0.02), nn.Linear(32, s.audio_dim),
                                         nn.Tanh())
            self.register_buffer("lip_mean", torch.zeros(M))  # [M] this identity's raw lip parameters:
            self.register_buffer("lip_std", torch.ones(M))  # [M] mean and spread over its training frames
            self.register_buffer("lip_lo", torch.full((M,), -3.0))  # [M] range of its training lip code:
            self.register_buffer("lip_hi", torch.full((M,), 3.0))  # [M] predictions are clamped into it
            from emotalk.lips.phones import shipped_closure

            self.register_buffer("lip_closure", torch.tensor(shipped_closure()),
                                 persistent=False)  # [M] a spoken p/b/m closure (cross-speaker z-code)
        else:
            self.audio_enc = AudioEncoder(C, W, s.audio_dim)
        self.upper_enc = nn.Sequential(nn.Linear(max(upper_dim, 1), s.upper_dim), nn.Tanh())
        self.emo_enc = nn.Sequential(nn.Linear(2, s.emo_dim), nn.Tanh())
        # face: position (3), rotation (4), log-scale (3); mouth: position (3)
        self.fields = nn.ModuleDict({
            "face": DeformField(lo, hi, [s.audio_dim, s.upper_dim, s.emo_dim], 10, s),
            "mouth": DeformField(lo, hi, [s.audio_dim, s.emo_dim], 3, s),
        })
        self.emotion_field: DeformField | None = None
        self.emotion_enc: nn.Module | None = None
        self.switches = EmotionSwitches()  # render-time switches of the emotion parts (not saved)
        if settings.emotion_field:
            self.add_emotion_field()

    def add_emotion_field(self) -> None:
        """Give the face an additive emotion field (a no-op at (0,0) until trained; see `emotion_delta`)."""
        if self.emotion_field is not None:
            return
        tri = self.fields["face"].tri
        s = replace(self.settings.field, plane_ch=EMOTION_PLANE_CH)
        # position (3), rotation (4), log-scale (3), colour (3)
        self.emotion_field = DeformField(tri.lo, tri.hi, [s.emo_dim], 13, s).to(tri.lo.device)
        self.emotion_enc = nn.Sequential(nn.Linear(2, s.emo_dim), nn.Tanh()).to(tri.lo.device)
        # lip lock (see `set_lip_lock`): per face Gaussian weight [N,1] and the mouth's opening direction [3]
        self.register_buffer("emotion_lip", torch.zeros(self.n_gaussians("face"), 1, device=tri.lo.device))
        self.register_buffer("emotion_gap_dir", torch.tensor([0.0, 1.0, 0.0], device=tri.lo.device))
        if self.settings.emotion_mouth_mask:  # [N,1] share of the emotion field kept (see `set_mouth_mask`)
            self.set_mouth_mask(torch.ones(self.n_gaussians("face")))
        if self.settings.emotion_mouth_warp:  # placeholders, filled by loading or `set_mouth_warp`
            self.set_mouth_warp(torch.zeros(478, 3), 0.0)
        self.settings = replace(self.settings, emotion_field=True)

    def set_mouth_mask(self, keep: Tensor) -> None:
        """Scale the emotion field's deltas (position, rotation, scale, colour) of face Gaussians by keep [N]
        in [0,1] (0 at the lips): the speech fields alone draw the mouth, sharp, and the emotional mouth
        shape comes from the lip-code offset (`emotalk.lips.emotion`)."""
        self.add_emotion_field()
        self.register_buffer("emotion_keep", keep.reshape(-1, 1).float().to(self.emotion_lip.device))
        self.settings = replace(self.settings, emotion_mouth_mask=True)

    def set_mouth_warp(self, face: Tensor, gain: float) -> None:
        """Draw emotion's mouth by warping the face Gaussians (`emotalk.gaussians.emotion_warp`) through this
        identity's face landmarks face [478,3] (head frame, metres) at gain × the expression model's change
        (the generator gain its emotion targets were made with)."""
        self.add_emotion_field()
        dev = self.emotion_lip.device
        self.register_buffer("emotion_face", face.reshape(478, 3).float().to(dev))
        self.register_buffer("emotion_warp_gain", torch.tensor([float(gain)], device=dev))
        self._warps = {}
        self.settings = replace(self.settings, emotion_mouth_warp=True)

    def mouth_warp(self, emotion: Tensor, branch: str = "face") -> Tensor | None:
        """Emotion's mouth warp at emotion [B,2]: deltas [B,N,13] of the face (position, log-scale stretch)
        or [B,Nm,3] positions of the inside of the mouth; None without one (`emotion_warp.warp_deltas`)."""
        from emotalk.gaussians.emotion_warp import warp_deltas

        return warp_deltas(self, emotion, branch)

    def set_lip_lock(self, weight: Tensor, direction: Tensor) -> None:
        """Make the emotion field move the lips without opening or closing the mouth: for face Gaussians
        with weight [N] in [0,1] (near the inner lips), the motion along `direction` [3] (lower -> upper
        inner lip) is pulled to the weighted mean of that region, so upper and lower lip move together
        and the audio keeps the opening. Emotion can still move the mouth corners and the lips sideways."""
        self.add_emotion_field()
        self.emotion_lip = weight.reshape(-1, 1).float().to(self.emotion_lip.device)
        self.emotion_gap_dir = F.normalize(direction.float(), dim=0).to(self.emotion_lip.device)

    def emotion_delta(self, cache: SpatialCache | None, emotion: Tensor, warp: bool = True) -> Tensor:
        """Emotion field output at emotion [B,2] minus its output at (0,0) -> [B,N,13]: exactly zero
        for a neutral frame, so the emotion stage cannot change the neutral face; with `warp`, plus the
        emotion warp's deltas (False: the field's own, which the stage's shrink limit and measure judge)."""
        assert self.emotion_field is not None and self.emotion_enc is not None
        ec = cache if cache is not None else self.emotion_field.precompute(self.branches["face"]["means"])
        e = torch.cat([emotion, emotion.new_zeros(1, 2)])  # [B+1,2]
        out = self.emotion_field(ec, [self.emotion_enc(e)])  # [B+1,N,13]
        d = out[:-1] - out[-1:]  # [B,N,13]
        if self.settings.emotion_field_colour_only:
            d = torch.cat([torch.zeros_like(d[..., :10]), d[..., 10:]], -1)
        w = self.emotion_lip  # [N,1]
        if w.shape[0] == d.shape[1] and bool((w > 0).any()):
            d = lip_lock(d, w[:, 0], self.emotion_gap_dir)
        keep = getattr(self, "emotion_keep", None)  # [N,1]; identities from before the mask: the lip lock's
        if self.switches.mouth_mask and w.shape[0] == d.shape[1]:
            d = d * (keep if keep is not None and keep.shape[0] == d.shape[1] else keep_from_lip_lock(w))
        moved = self.mouth_warp(emotion) if warp else None
        return d if moved is None else d + moved.to(d)

    def train(self, mode: bool = True) -> TalkingGaussians:
        super().train(mode)
        if self.settings.lip_code:
            self.lip_driver.eval()  # frozen: no dropout while the rest trains
        return self

    # -- parameters -----------------------------------------------------------------------------
    def n_gaussians(self, branch: str | None = None) -> int:
        bs = BRANCHES if branch is None else (branch,)
        return sum(int(self.branches[b]["means"].shape[0]) for b in bs)

    def set_gaussians(self, branch: str, means: Tensor, colors: Tensor, scales: Tensor,
                      opacity: float) -> None:
        """Replace a branch with new Gaussians: means [N,3], colors [N,3] in [0,1], scales [N] (linear)."""
        n, K = means.shape[0], sh_dim(self.settings.sh_degree)
        dev = self.branches[branch]["means"].device
        p = self.branches[branch]
        p["means"] = nn.Parameter(means.float().to(dev))
        p["quats"] = nn.Parameter(torch.tensor([1.0, 0, 0, 0], device=dev).repeat(n, 1))
        p["scales"] = nn.Parameter(torch.log(scales.float().to(dev))[:, None].repeat(1, 3))
        p["opacities"] = nn.Parameter(_inv_sigmoid(torch.full((n,), opacity, device=dev)))
        p["sh0"] = nn.Parameter(((colors.float().to(dev) - 0.5) / C0)[:, None, :])
        p["shN"] = nn.Parameter(torch.zeros(n, K - 1, 3, device=dev))

    # -- deformation ----------------------------------------------------------------------------
    def lips(self, fr: Frames, emotional: bool = False) -> Tensor:
        """Lip code [B,M] of a lip-code model: the given one, else the driver's from the audio [B,W,C] clamped
        to the identity's trained range; emotional (the lips `render` draws): opened by
        `settings.lip_open_gain` outside training, then by emotion's dropped jaw (`switches.jaw_drop`), plus
        emotion's offset × gain (`switches.lip_offset`)."""
        if fr.lips is not None:
            lips = fr.lips
        else:
            with torch.no_grad():
                lips = torch.minimum(torch.maximum(self.lip_driver(fr.audio), self.lip_lo), self.lip_hi)
        if emotional and not self.training and self.settings.lip_open_gain != 1.0:
            lips = scale_opening(lips, self.opening_floor(), self.settings.lip_open_gain)
        if emotional and self.switches.jaw_drop:  # lifts open frames by a share of lip_hi, never closes
            lips = dropped_jaw(lips, fr.emotion, fr.gain, self.lip_lo, self.lip_hi)
        if emotional and self.switches.lip_offset:
            lips = emotional_lips(lips, fr.emotion, fr.gain, self.lip_lo, self.lip_hi)
        return lips

    def opening_floor(self) -> Tensor:
        """[M] the code below which the opening gain leaves the lips alone: a spoken p/b/m closure, or the
        identity's most closed trained code where that is more open."""
        return torch.maximum(self.lip_closure, self.lip_lo)

    def speech(self, fr: Frames) -> Tensor:
        """The speech condition of the fields [B,A]: embedded lip code, or embedded audio code."""
        if self.settings.lip_code:
            return self.lip_enc(self.lips(fr))
        return self.audio_enc(fr.audio)

    def precompute(self, branch: str) -> SpatialCache:
        """Frame-independent field terms for the current canonical Gaussians of a branch."""
        means = self.branches[branch]["means"]
        c = self.fields[branch].precompute(means)
        if branch == "face" and self.emotion_field is not None:
            c.emotion = self.emotion_field.precompute(means)
        return c

    def deform(self, branch: str, fr: Frames, cache: SpatialCache | None = None
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Deformed Gaussians of a branch for B frames.

        -> means [B,N,3], quats [B,N,4], scales [B,N,3] (linear), opacities [B,N], colors [B,N,3].
        """
        p = self.branches[branch]
        cache = cache if cache is not None else self.precompute(branch)
        dcol = None  # colour change from the emotion field (face only)
        a = self.speech(fr)
        # With an emotion field, the speech fields see the neutral emotion they were trained on (their
        # emotion input never saw anything else, so other values would move the face at random).
        g = fr.gain  # [B] emotion strength (None: 1)
        legacy = fr.emotion if g is None else (fr.emotion * g[:, None]).clamp(-1, 1)
        e = self.emo_enc(legacy if self.emotion_field is None else torch.zeros_like(fr.emotion))
        B = fr.viewmats.shape[0]
        if branch == "face":
            u = self.upper_enc(fr.upper if self.upper_dim else fr.upper.new_zeros(B, 1))
            d = self.fields["face"](cache, [a, u, e])  # [B,N,10]
            if self.emotion_field is not None and bool((legacy != 0).any()):
                de = self.emotion_delta(cache.emotion, fr.emotion)  # [B,N,13]
                de = de if g is None else de * g[:, None, None]
                d, dcol = d + de[..., :10], de[..., 10:]
            means = p["means"][None] + d[..., :3]
            quats = p["quats"][None] + d[..., 3:7]
            scales = torch.exp(p["scales"][None] + d[..., 7:10])
        else:
            d = self.fields["mouth"](cache, [a, e])  # [B,N,3]
            w = self.mouth_warp(fr.emotion, "mouth") if bool((legacy != 0).any()) else None
            if w is not None:  # the inside of the mouth follows the warped lips
                d = d + (w if g is None else w * g[:, None, None])
            means = p["means"][None] + d
            quats = p["quats"][None].expand(B, -1, -1)
            scales = torch.exp(p["scales"])[None].expand(B, -1, -1)
        opac = torch.sigmoid(p["opacities"])[None].expand(B, -1)
        R, t = fr.viewmats[:, :3, :3], fr.viewmats[:, :3, 3]
        campos = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # [B,3] camera centre in the head frame
        sh = torch.cat([p["sh0"], p["shN"]], 1)  # [N,K,3]
        colors = eval_sh(sh[None].expand(B, -1, -1, -1), means - campos[:, None], self.settings.sh_degree)
        if dcol is not None:
            colors = colors + dcol
        return means, quats, scales, opac, colors

    def render(self, fr: Frames, width: int, height: int, body: Tensor,
               caches: dict[str, SpatialCache] | None = None, backend: str = "auto") -> RenderOut:
        """Render B frames: inside-mouth under face over `body` [B,H,W,3] (float, [0,1])."""
        if self.settings.lip_code:  # the lips once for both branches: speech's, plus emotion's offset
            fr = replace(fr, lips=self.lips(fr, emotional=True))
        layers = {}
        for b in BRANCHES:
            g = self.deform(b, fr, None if caches is None else caches[b])
            layers[b] = rasterize(*g, fr.viewmats, fr.Ks, width, height, backend=backend)
        f, m = layers["face"], layers["mouth"]
        rgb = f.rgb + (1 - f.alpha) * (m.rgb + (1 - m.alpha) * body)
        return RenderOut(rgb, f, m)


# -- seeding from a dataset ---------------------------------------------------------------------

def build_model(ds, settings: ModelSettings, audio_shape: tuple[int, int], seed: int = 0,
                lip_driver=None) -> TalkingGaussians:
    """A model seeded from the dataset (see `seed_points`); fields span the seeded points' box + 15%.
    A lip-code model gets `lip_driver` (an emotalk.lips.LipDriver; None: the shipped one) and the
    dataset's lip statistics."""
    pts = seed_points(ds, settings.n_face_init, settings.n_mouth_init, seed)
    allp = np.concatenate([pts["face"][0], pts["mouth"][0]])
    lo, hi = allp.min(0), allp.max(0)
    pad = 0.15 * (hi - lo)
    torch.manual_seed(seed)
    lo_t, hi_t = torch.from_numpy(lo - pad), torch.from_numpy(hi + pad)
    model = TalkingGaussians(settings, len(pts["face"][0]), len(pts["mouth"][0]), audio_shape,
                             int(ds.upper_face.shape[1]), lo_t, hi_t)
    for b in BRANCHES:
        p, c, s = (torch.from_numpy(x) for x in pts[b])
        model.set_gaussians(b, p, c, s, settings.init_opacity)
    if settings.lip_code:
        from emotalk.errors import EmoTalkError
        from emotalk.lips import dataset_lips, load_driver

        d = lip_driver if lip_driver is not None else load_driver()
        if (d.window, d.channels) != tuple(audio_shape):
            raise EmoTalkError(f"The lip driver reads [{d.window}, {d.channels}] audio windows (Whisper), "
                               f"this training's audio code is {list(audio_shape)}: train with audio_kind "
                               f"'whisper' or with ModelSettings.lip_code off.")
        model.lip_driver.load_state_dict(d.state_dict())
        stats, code = dataset_lips(ds)
        seen = torch.as_tensor(code[np.asarray(ds.train_idx)])
        for name, v in (("lip_mean", stats.mean), ("lip_std", stats.std), ("lip_lo", seen.amin(0)),
                        ("lip_hi", seen.amax(0))):
            getattr(model, name).copy_(torch.as_tensor(v))
    return model
