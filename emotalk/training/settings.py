"""Training settings: typed dataclasses, one comment per field, and every preset in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from emotalk.gaussians.model import (
    ModelSettings,
)

Progress = Callable[[str, float], None]  # (stage, fraction of the whole run done)


STAGES = ("face", "mouth", "fuse")


@dataclass
class TrainSettings:
    """Everything that shapes a training run (saved in the identity)."""

    steps: int = 6000  # optimisation steps over all stages
    stage_frac: tuple[float, float, float] = (0.4, 0.15, 0.45)  # share of steps for face, mouth, fuse
    batch: int = 4  # frames per step
    size: int | None = None  # train / render side in px (None: the dataset's)
    audio_kind: str = "whisper"  # audio code kind (emotalk.speech.features)
    model: ModelSettings = field(default_factory=lambda: ModelSettings(lip_code=True))
    lip_driver: str | None = None  # lip-code models: the LipDriver file (None: the shipped one)
    lip_adapt_steps: int = 100  # lip-code models: steps fitting the driver to this speaker first (0: none)
    lr_means: float = 1.6e-4  # position learning rate, times the head size
    lr_scales: float = 5e-3  # log-scale learning rate
    lr_quats: float = 1e-3  # rotation learning rate
    lr_opacity: float = 2.5e-2  # opacity-logit learning rate
    lr_sh: float = 2.5e-3  # colour (SH band 0) learning rate; higher bands 1/20 of it
    lr_fields: float = 2e-3  # deformation networks and tri-planes
    ssim_weight: float = 0.2  # weight of D-SSIM against L1
    mouth_weight: float = 1.0  # extra L1 weight on lips and mouth interior
    lpips_weight: float = 0.05  # ST-LPIPS on the face box (fuse stage, after the warm-up)
    lpips_after: float = 0.3  # fraction of the fuse stage before ST-LPIPS switches on
    lpips_size: int = 128  # side of the face crop fed to ST-LPIPS
    alpha_weight: float = 0.05  # face transparency inside the mouth (face stage)
    densify_every: int = 100  # steps between densification rounds
    densify_from: int = 200  # first step that densifies
    densify_until: float = 0.7  # fraction of the steps after which the set is fixed
    grad_threshold: float = 2e-4  # mean screen-space gradient that triggers clone/split
    split_scale: float = 0.01  # Gaussians larger than this × head size are split, smaller cloned
    prune_opacity: float = 0.005  # Gaussians below this opacity are removed
    max_gaussians: int = 60000  # densification stops growing a branch's share beyond this total
    rare_upper_boost: float = 2.0  # unusual upper-face codes (blinks) are drawn up to 1+this as often
    respeak_prob: float = 0.3  # share of sampled frames driven by a re-spoken version of their words
    # (dataset's respoken/, `python -m emotalk sync --respeak DATASET`); 0 or none there: own voice only;
    # unused by lip-code models (their fields never see the audio code: the driver was trained on voices)
    respeak_from: float = 0.1  # fraction of the steps trained on the own voice before re-spoken codes mix in
    checkpoint_every: int = 500  # steps between resumable state saves
    seed: int = 0  # frame sampling, splitting and initialisation
    lpips: bool = True  # use ST-LPIPS at all (needs the alex_shift_tolerant.pth asset)


PRESETS: dict[str, TrainSettings] = {
    "fast": TrainSettings(steps=3000, batch=4, max_gaussians=40000,
                          model=ModelSettings(n_face_init=15000, n_mouth_init=1500, sh_degree=1,
                                              lip_code=True)),
    "quality": TrainSettings(steps=8000, batch=4, max_gaussians=60000,
                             model=ModelSettings(n_face_init=25000, n_mouth_init=2500, sh_degree=2,
                                                 lip_code=True)),
    "test": TrainSettings(steps=40, batch=2, size=64, max_gaussians=1500, densify_from=10, densify_every=10,
                          checkpoint_every=20, lpips=False, lr_fields=5e-3, audio_kind="mel",
                          model=ModelSettings(n_face_init=400, n_mouth_init=80, sh_degree=1)),
}


@dataclass
class TrainStatus:
    """One progress report for the CLI and app."""

    stage: str  # face | mouth | fuse | eval
    step: int  # steps done
    steps: int  # total steps
    loss: float  # current loss (smoothed)
    psnr: float  # PSNR of the current batch (dB)
    n_gaussians: int  # face + mouth
    eta_s: float  # seconds left (estimate)


def settings_from_dict(d: dict) -> TrainSettings:
    """Inverse of dataclasses.asdict for TrainSettings (used when loading an identity)."""
    from emotalk.gaussians.fields import FieldSettings

    md = dict(d.get("model", {}))
    fd = dict(md.pop("field", {}))
    if "plane_res" in fd:
        fd["plane_res"] = tuple(fd["plane_res"])
    model = ModelSettings(**md, field=FieldSettings(**fd))
    rest = {k: v for k, v in d.items() if k != "model"}
    if "stage_frac" in rest:
        rest["stage_frac"] = tuple(rest["stage_frac"])
    return replace(TrainSettings(**rest), model=model)
