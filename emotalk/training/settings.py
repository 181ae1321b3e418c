"""Training settings as typed dataclasses, and every preset in one place: preprocessing, training, the
emotion stage, and the fine-tune recipes that combine the three (what the app and the train CLI run).

The dataset's own settings class lives in dataset/settings.py (an earlier layer); its presets live here
too, so one file says what "fast", "quality", "cpu" and "test" mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace

from emotalk.dataset.settings import PreprocessSettings
from emotalk.face.generator import GeneratorSettings
from emotalk.gaussians.model import ModelSettings

Progress = Callable[[str, float], None]  # (stage, fraction of the whole run done)


STAGES = ("face", "mouth", "fuse")


@dataclass
class LearningRates:
    """Adam learning rates, one per kind of parameter."""

    means: float = 1.6e-4  # Gaussian positions, times the head size
    scales: float = 5e-3  # log-scales
    quats: float = 1e-3  # rotations
    opacity: float = 2.5e-2  # opacity logits
    sh: float = 2.5e-3  # colour (SH band 0); the higher bands get 1/20 of it
    fields: float = 2e-3  # deformation networks and tri-planes


@dataclass
class LossSettings:
    """What the image loss weighs."""

    ssim_weight: float = 0.2  # weight of D-SSIM against L1
    mouth_weight: float = 1.0  # extra L1 weight on lips and mouth interior
    alpha_weight: float = 0.05  # face transparency inside the mouth (face stage)
    lpips: bool = True  # use ST-LPIPS at all (needs the alex_shift_tolerant.pth asset)
    lpips_weight: float = 0.05  # ST-LPIPS on the face box (fuse stage, after the warm-up)
    lpips_after: float = 0.3  # fraction of the fuse stage before ST-LPIPS switches on
    lpips_size: int = 128  # side of the face crop fed to ST-LPIPS


@dataclass
class DensifySettings:
    """When and how the Gaussian set grows and shrinks during training."""

    every: int = 100  # steps between densification rounds
    start: int = 200  # first step that densifies
    grow_until: float = 0.7  # fraction of the steps after which Gaussians are only pruned, not added
    stop_at: float = 0.9  # fraction of the steps after which the set is left as it is
    grad_threshold: float = 2e-4  # mean screen-space gradient that triggers clone/split
    split_scale: float = 0.01  # Gaussians larger than this × head size are split, smaller cloned
    prune_opacity: float = 0.005  # Gaussians below this opacity are removed
    max_gaussians: int = 60000  # densification stops growing a branch's share beyond this total


@dataclass
class CalibrationSettings:
    """Per-identity emotion strengths, chosen by the recogniser on the identity's own frames before the
    emotion stage makes its targets (emotalk.training.emotion_calibration)."""

    enabled: bool = True  # off: every category at the generator's own gain and texture
    gain_factors: tuple[float, ...] = (1.0, 1.4, 1.8)  # candidate factors on the generator's gain (obama:
    # happy read on 0/6 frames at 1, 5/6 at 1.8; beyond, the warp tears brows into the hair)
    texture_factors: tuple[float, ...] = (0.5, 1.0)  # candidate factors on its texture strength (obama:
    # more texture pulls every category towards sad)
    n_frames: int = 6  # training frames each candidate is made from (spread over the clip)
    identity_slack: float = 0.025  # a candidate may keep the person this much less (dlib similarity to its
    # original frame) than real MEAD actors' emotional faces keep theirs, per category
    min_lift: float = 0.08  # a candidate replaces the stage's own strength only if its mean p(category) is
    # this much higher (a smaller change wins a tie; obama's surprise gained 0.05 for 0.012 of identity)
    enough: float = 0.8  # a category that already reads on this share of the frames keeps its strength
    # (obama's sad read 6/6 at 1, and 1.4 cost 0.013 of identity for nothing a viewer would see)
    rest_factors: tuple[float, ...] = (0.25, 0.5)  # a face whose own frames read as an emotion (a news
    # anchor who rests smiling: happy on 4 of 6 frames) has that emotion's change taken out at the others, by
    # the factor of these that reads best (ExpressionModel.weights "rest_<category>"); () = never
    rest_share: float = 0.5  # ... when at least this share of its frames reads as that emotion


@dataclass
class EmotionStageSettings:
    """The emotion fine-tuning stage."""

    steps: int = 1500  # optimisation steps
    batch: int = 4  # frames per step (generated targets and originals)
    size: int | None = None  # side in px the stage renders and compares at (None: the training size);
    # the Gaussians do not depend on it, so a CPU can teach emotions at a smaller size than it trained
    neutral_share: float = 0.0  # fraction of each batch that is an original frame at (0, 0) (the emotion
    # field is zero there, so these only matter for models without one)
    n_frames: int = 24  # identity training frames warped into targets
    n_random: int = 4  # random disc points per frame, besides the 7 emotional categories and calm
    lr: float = 2e-3  # learning rate of the emotion field and its encoder
    face_weight: float = 4.0  # extra L1 weight inside the generator's face mask
    generator: GeneratorSettings = field(default_factory=lambda: GeneratorSettings(gain=2.5))  # targets:
    # a stronger warp than the generator's default reads better, and the lip lock keeps the opening
    lip_lock: bool = True  # upper and lower lip move together under emotion (the audio owns the opening)
    lip_lock_radius: float = 0.25  # reach of the lip lock around the inner lips, times the mouth width
    mouth_mask: bool = True  # the emotion field fades to 0 at the lips (TalkingGaussians.set_mouth_mask) and
    # the lips are left out of the loss: speech draws them, emotion reaches them through the lip code
    mouth_mask_inner: float = 0.25  # distance to the nearest lip landmark (mouth widths) up to which the
    # emotion field is off (0.1 before 2026-11-28: obama retrained that way blurred surprised's mouth to 0.53
    # of neutral sharpness; 0.25-0.7 kept it at 1.19, audio-driven renders, BENCHMARKS.md issue 17)
    mouth_mask_outer: float = 0.7  # distance from which it acts fully (smoothstep in between)
    mouth_warp: bool = True  # where the mask turns the field off, emotion's mouth is a smooth warp of the
    # Gaussians by the expression model's lower-face change at the generator's gain (smile, frown, press;
    # TalkingGaussians.set_mouth_warp): the field alone never reached the mouth corners, so no smile showed
    warp_region: str = "mouth"  # what the warp carries (ModelSettings.emotion_warp_region): "mouth", the
    # lower face where the mask turns the field off; "face", the whole face's change, limited as the
    # generator limits it, each eye moved as a block. Not the default: obama's happy stops reading with it,
    # and german_anchor's eyes narrow further than real actors' at angry (BENCHMARKS.md, eighteenth session)
    colour_only: bool = False  # the field recolours only (ModelSettings.emotion_field_colour_only), with
    # warp_region "face" drawing the geometry: sharper angry / disgusted mouths and the person kept (obama
    # 0.56 -> 0.79 of neutral); reagan reads 0.69 with both (0.61 without)
    colour_weight: float = 0.5  # penalty on the emotion field's colour change (mean square): shading only
    # where the targets insist
    colour_smooth_weight: float = 2.0  # penalty on colour changes differing from their 8 nearest
    # Gaussians' mean: smooth shading, not blotches
    shrink_weight: float = 20.0  # penalty on the field shrinking a face Gaussian (mean log-scale change over
    # its axes) by more than `shrink_allowance`: shrunk Gaussians open holes through the face, white eyes on
    # german_anchor (eye shrink -0.14 ... -0.54 without it; training.emotion_stage.eye_shrink); 0 = off
    shrink_allowance: float = 0.1  # log-scale shrink allowed free (about 10 % smaller)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)  # per-category strengths
    # of the targets, chosen on this identity's frames (skipped when `generator` already has them)
    seed: int = 0  # frame / emotion sampling


@dataclass
class OpeningSettings:
    """How the opening gain is fitted."""

    n_frames: int = 32  # training frames rendered and measured
    gains: tuple[float, ...] = (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6)  # candidates (1 = as trained); the
    # largest is the most the code's opening above a p/b/m closure is stretched
    open_share: float = 0.5  # the frames measured: the most open real ones, this share of them (the
    # closed ones say nothing about the opening)
    target: float = 0.95  # the smallest gain whose rendered / real opening reaches this is kept (obama:
    # 1.5, ratio 0.97; a ratio nearer 1 cost held-out PSNR with the frames' own lips; BENCHMARKS.md,
    # eleventh and twelfth sessions)
    min_slope: float = 0.1  # no gain reaches the target: stop where a larger gain adds less opening ratio
    # than this per unit of gain (0.01 per 0.1 step; reagan levels off after 1.1)
    min_found: int = 8  # fewer faces found on renders or frames than this: keep gain 1 (cannot tell)


@dataclass
class LipCodeSettings:
    """Lip-code models (ModelSettings.lip_code): the audio-to-lips driver they render with."""

    driver: str | None = None  # the LipDriver file (None: the shipped one)
    adapt_steps: int = 100  # steps fitting the driver to this speaker before training (0: none)


@dataclass
class RespeakSettings:
    """Re-spoken audio codes (dataset's respoken/, `python -m emotalk sync --respeak DATASET`); unused by
    lip-code models, whose fields never see the audio code (their driver was trained on many voices)."""

    prob: float = 0.3  # share of sampled frames driven by a re-spoken version of their words (0: own voice)
    start: float = 0.1  # fraction of the steps trained on the own voice before re-spoken codes mix in


@dataclass
class TrainSettings:
    """Everything that shapes a training run (saved in the identity's identity.json)."""

    steps: int = 6000  # optimisation steps over all stages
    stage_frac: tuple[float, float, float] = (0.4, 0.15, 0.45)  # share of steps for face, mouth, fuse
    batch: int = 4  # frames per step
    size: int | None = None  # train / render side in px (None: the dataset's)
    audio_kind: str = "whisper"  # audio code kind (emotalk.speech.features)
    seed: int = 0  # frame sampling, splitting and initialisation
    checkpoint_every: int = 500  # steps between resumable state saves
    rare_upper_boost: float = 2.0  # unusual upper-face codes (blinks) are drawn up to 1+this as often
    model: ModelSettings = field(default_factory=lambda: ModelSettings(lip_code=True))  # model shapes
    lr: LearningRates = field(default_factory=LearningRates)  # learning rates
    loss: LossSettings = field(default_factory=LossSettings)  # loss weights
    densify: DensifySettings = field(default_factory=DensifySettings)  # adaptive density control
    lips: LipCodeSettings = field(default_factory=LipCodeSettings)  # lip-code driver
    respeak: RespeakSettings = field(default_factory=RespeakSettings)  # re-spoken audio codes


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


# ---- presets --------------------------------------------------------------------------------------

PREPROCESS_PRESETS: dict[str, PreprocessSettings] = {
    "default": PreprocessSettings(),  # 512², for training
    "fast": PreprocessSettings(size=256),  # quicker previews
    "test": PreprocessSettings(size=96),  # unit tests: small crops (parsing still runs at 512²)
}

PRESETS: dict[str, TrainSettings] = {  # training presets
    "fast": TrainSettings(steps=3000, batch=4, densify=DensifySettings(max_gaussians=40000),
                          model=ModelSettings(n_face_init=15000, n_mouth_init=1500, sh_degree=1,
                                              lip_code=True)),
    # quality: the fast model trained 8000 steps. The earlier quality sizes (25k/2.5k Gaussians, SH degree
    # 2, up to 60k) drew green and magenta teeth and a dark blob in the open mouth, and parted closed lips
    # further (obama held out, tracked lips: opening 0.044 vs 0.028 here, real 0.014; BENCHMARKS.md,
    # thirteenth session)
    "quality": TrainSettings(steps=8000, batch=4, densify=DensifySettings(max_gaussians=40000),
                             model=ModelSettings(n_face_init=15000, n_mouth_init=1500, sh_degree=1,
                                                 lip_code=True)),
    "test": TrainSettings(steps=40, batch=2, size=64, checkpoint_every=20, audio_kind="mel",
                          densify=DensifySettings(max_gaussians=1500, start=10, every=10),
                          loss=LossSettings(lpips=False), lr=LearningRates(fields=5e-3),
                          model=ModelSettings(n_face_init=400, n_mouth_init=80, sh_degree=1)),
}

EMOTION_PRESETS: dict[str, EmotionStageSettings] = {
    "full": EmotionStageSettings(steps=3000, n_frames=12),  # a GPU identity (as the shipped ones)
    # a CPU preview: 8 frames x 10 emotions at 96 px; 33 s of the 2 min the "cpu" recipe takes for the 5 s
    # clip on the idle 2-core dev CPU (identity/fit.py SPEEDS): coarse but visible emotions
    "cpu": EmotionStageSettings(steps=300, batch=2, n_frames=8, n_random=2, size=96,
                                calibration=CalibrationSettings(n_frames=3)),
    "test": EmotionStageSettings(steps=2, batch=2, n_frames=1, n_random=0,
                                 calibration=CalibrationSettings(enabled=False)),  # tests: seconds
}

CPU_TRAIN = replace(PRESETS["fast"], size=128, steps=600, batch=2, loss=LossSettings(lpips=False),
                    model=replace(PRESETS["fast"].model, n_face_init=3000, n_mouth_init=400))


@dataclass
class Recipe:
    """A fine-tune recipe: how a clip is preprocessed, trained and taught emotions, and what comes out."""

    name: str  # its id (RECIPES key)
    preprocess: PreprocessSettings  # clip -> dataset
    train: TrainSettings  # dataset -> model
    emotion: EmotionStageSettings | None  # the emotion stage (None: none; the identity renders neutral)
    sample_every: int  # steps between held-out sample renders during training
    preview: bool  # a small preview (CPU, tests), not a full-quality identity

    @property
    def size(self) -> int:
        """The side in px the identity is trained and rendered at."""
        return int(self.train.size or self.preprocess.size)

    @property
    def emotions(self) -> bool:
        """Whether the identity gets an emotion field (else every emotion renders as the neutral face)."""
        return self.emotion is not None and self.emotion.steps > 0

    def describe(self) -> str:
        """One line for the user: what this recipe makes."""
        what = "a small preview" if self.preview else "a full identity"
        emo = (f"emotions from a {self.emotion.steps}-step emotion stage" if self.emotions
               else "no emotions (every emotion renders as the neutral face)")
        return f"{self.name}: {what} at {self.size} px, {self.train.steps} training steps, {emo}"

    def summary(self) -> dict:
        """What the app and identity.json state about the recipe."""
        return {"name": self.name, "preview": self.preview, "size": self.size, "emotions": self.emotions,
                "steps": self.train.steps, "emotion_steps": self.emotion.steps if self.emotions else 0,
                "description": self.describe()}


RECIPES: dict[str, Recipe] = {
    "fast": Recipe("fast", PREPROCESS_PRESETS["default"], PRESETS["fast"], EMOTION_PRESETS["full"], 300,
                   False),
    "quality": Recipe("quality", PREPROCESS_PRESETS["default"], PRESETS["quality"], EMOTION_PRESETS["full"],
                      500, False),
    "cpu": Recipe("cpu", PREPROCESS_PRESETS["fast"], CPU_TRAIN, EMOTION_PRESETS["cpu"], 100, True),
    "test": Recipe("test", replace(PREPROCESS_PRESETS["test"], size=64), PRESETS["test"],
                   EMOTION_PRESETS["test"], 10, True),
}
GPU_RECIPES = ("fast", "quality")  # recipes a CPU replaces with "cpu" in the app (hours otherwise)


def recipe_named(name: str) -> Recipe:
    """RECIPES[name], or an InputError naming the recipes there are."""
    if name not in RECIPES:
        from emotalk.errors import InputError

        raise InputError(f"Unknown recipe {name!r}; choose one of {', '.join(RECIPES)}.")
    return RECIPES[name]


def recipe_for(name: str, device: str) -> Recipe:
    """The recipe `name` as the app runs it on `device`: on a CPU the GPU recipes become the CPU preview."""
    r = recipe_named(name)
    return RECIPES["cpu"] if name in GPU_RECIPES and not str(device).startswith("cuda") else r


# how the emotion stage draws an emotion: "mouth", the warp draws the lower face and the field moves and
# shades the rest (the default); "face", the warp draws the whole face and the field only shades
# (sharper mouths, the person kept; reagan ships with it; obama's happy does not read with it)
EMOTION_DESIGNS: dict[str, dict] = {
    "mouth": {"warp_region": "mouth", "colour_only": False},
    "face": {"warp_region": "face", "colour_only": True},
}


def override(recipe: Recipe, steps: int | None = None, size: int | None = None, batch: int | None = None,
             seed: int | None = None, emotion_steps: int | None = None,
             emotion_design: str | None = None) -> Recipe:
    """The recipe with some numbers changed (CLI flags, tests); None leaves one as it is.
    emotion_steps 0 drops the emotion stage; emotion_design: an EMOTION_DESIGNS key."""
    t = recipe.train
    t = replace(t, **{k: v for k, v in (("steps", steps), ("size", size), ("batch", batch), ("seed", seed))
                      if v is not None})
    emo = recipe.emotion
    if emotion_steps is not None:
        emo = replace(emo or EMOTION_PRESETS["full"], steps=int(emotion_steps)) if emotion_steps > 0 else None
    if emotion_design is not None:
        if emotion_design not in EMOTION_DESIGNS:
            from emotalk.errors import InputError

            raise InputError(f"Unknown emotion design {emotion_design!r}; choose one of "
                             f"{', '.join(EMOTION_DESIGNS)}.")
        if emo is not None:
            emo = replace(emo, **EMOTION_DESIGNS[emotion_design])
    return replace(recipe, train=t, emotion=emo)


# ---- identity.json --------------------------------------------------------------------------------

# the flat names of TrainSettings before its fields were grouped (identities written then use them)
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "lip_driver": ("lips", "driver"), "lip_adapt_steps": ("lips", "adapt_steps"),
    **{f"lr_{k}": ("lr", k) for k in ("means", "scales", "quats", "opacity", "sh", "fields")},
    **{k: ("loss", k) for k in ("ssim_weight", "mouth_weight", "alpha_weight", "lpips", "lpips_weight",
                                "lpips_after", "lpips_size")},
    "densify_every": ("densify", "every"), "densify_from": ("densify", "start"),
    "densify_until": ("densify", "grow_until"),
    **{k: ("densify", k) for k in ("grad_threshold", "split_scale", "prune_opacity", "max_gaussians")},
    "respeak_prob": ("respeak", "prob"), "respeak_from": ("respeak", "start"),
}


def _from_dict(cls, d: dict):
    """A dataclass from its asdict form: nested dataclasses rebuilt, lists back to tuples where the
    default is one, unknown keys ignored (a later version's additions)."""
    kw = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)
        v = d[f.name]
        if is_dataclass(default) and isinstance(v, dict):
            v = _from_dict(type(default), v)
        elif isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        kw[f.name] = v
    return cls(**kw)


def settings_from_dict(d: dict) -> TrainSettings:
    """TrainSettings from identity.json's "settings": the grouped form, or the flat one of older
    identities (the shipped checkpoints), whose names FLAT_NAMES maps into the groups."""
    d = dict(d)
    for flat, (group, name) in FLAT_NAMES.items():
        if flat in d:
            d.setdefault(group, {})
            d[group] = {**d[group], name: d.pop(flat)}
    return _from_dict(TrainSettings, d)
