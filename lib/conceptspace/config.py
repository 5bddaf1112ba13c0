"""Every setting of an experiment, validated into frozen dataclasses before any compute.

Defaults are the paper's sizes and sweep grids (Park et al. 2024, §3, as the official code runs them;
references: data, model) with the diffusers recipe; `model.recipe: paper` brings the paper's own
(RECIPE_DEFAULTS), and `paper.deviations` lists every difference. A profile (`profiles/<name>.yaml`)
changes sizes and choices, never logic. Bad input raises `ConfigError`
naming the setting, the value and what is allowed, so a typo in a notebook's parameters cell fails in
its first cell, not an hour later.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"
CONCEPTS = ("color", "size", "background")
# The largest signal of each concept: RGB and grey separations in [0, 1]; radii stay inside the image.
COLOR = dict(lo=0, lo_open=True, hi=1)       # Δc
SIZE = dict(lo=0, lo_open=True, hi=0.6)        # Δs
BACKGROUND = dict(lo=0, lo_open=True, hi=1)  # Δb
# The 40 attributes of CelebA's list_attr_celeba.txt, usable as concepts of real faces (chapter 6).
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips", "Big_Nose",
    "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses",
    "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache",
    "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick",
    "Wearing_Necklace", "Wearing_Necktie", "Young")


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range."""


def check_seeds(seeds, name: str = "seeds") -> tuple:
    """A chapter's list of training seeds, refused by name unless it is non-empty whole numbers ≥ 0."""
    if (isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__") or not seeds
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds)):
        raise ConfigError(f"{name} = {seeds!r}; allowed: a non-empty list of whole numbers ≥ 0")
    return tuple(seeds)


def _knob(default, *, lo=None, hi=None, lo_open=False, hi_open=False, choices=None, doc="", added=False, item=None,
          aliases=None, ids=None):
    """A dataclass field with its allowed range, checked on construction. `added`: a setting that came
    after runs were stored; at its default it is left out of run ids, so those runs keep their names.
    `item`: for a list that may be empty (its default is), an example entry giving the entries' type.
    `aliases`: for a choice of names, older values that still mean one of them ({True: "auto"});
    `ids`: how a value is spelled in run ids where an older spelling named runs already stored."""
    meta = dict(lo=lo, hi=hi, lo_open=lo_open, hi_open=hi_open, choices=choices, doc=doc, added=added, item=item,
                aliases=aliases or {}, ids=ids or {})
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


class _Validated:
    """Every section checks its own values on construction, however it was built (a profile, a
    notebook's overrides, `dataclasses.replace`, or by hand): a bad value never reaches compute."""
    _prefix = ""

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            object.__setattr__(self, f.name, _coerce(value, default, f.metadata, f"{self._prefix}{f.name}"))
        self._check(self._prefix)

    def _check(self, prefix: str) -> None:
        """Constraints between this section's settings (each value's own range is checked above)."""


class _ShapesRules:
    """What data.dataset = 'shapes' allows: the renderer's concepts, at its 32 pixels or pooled below."""
    concepts = CONCEPTS

    def check(self, data, prefix: str) -> None:
        if data.resolution > 32:
            raise ConfigError(f"{prefix}resolution = {data.resolution}: the shapes are rendered at 32 pixels; "
                              f"allowed: one of [8, 16, 32]")


class _CelebARules:
    """What data.dataset = 'celeba' allows: two of CelebA's attributes, read from a folder."""
    concepts = CELEBA_ATTRIBUTES

    def check(self, data, prefix: str) -> None:
        if len(data.concepts) != 2:
            raise ConfigError(f"{prefix}concepts = {list(data.concepts)}: CelebA runs take two attributes")
        if not data.folder or not Path(data.folder).is_dir():
            raise ConfigError(f"{prefix}folder = {data.folder!r} is not a folder; data.dataset = 'celeba' needs "
                              f"the folder holding img_align_celeba/ and list_attr_celeba.txt")


# What each data.dataset allows, checked here without torch so bad settings fail before any import of it;
# how each makes its images and prompts: data.DATASETS.
DATASET_RULES = {"shapes": _ShapesRules(), "celeba": _CelebARules()}


@dataclass(frozen=True)
class DataConfig(_Validated):
    """The image generator (references: data-renderer): one blurred disc on a light background."""
    _prefix = "data."
    dataset: str = _knob("shapes", choices=tuple(DATASET_RULES), doc="rendered discs, or real faces from a folder",
                         added=True)
    folder: str = _knob("", doc="celeba: the folder holding img_align_celeba/ and list_attr_celeba.txt", added=True)
    concepts: tuple = _knob(("color", "size"),  # allowed values depend on data.dataset: _check
                            doc="concepts, in class-index order (celeba: two attribute names)")
    delta_color: float = _knob(0.4, **COLOR, doc="Δc: RGB separation of red and blue")
    delta_size: float = _knob(0.4, **SIZE, doc="Δs: radius separation of large and small")
    delta_background: float = _knob(0.3, **BACKGROUND, doc="Δb: grey separation of light and dark")
    held_out: tuple = _knob(((1, 1),), doc="classes never shown in training (value index per concept)")
    resolution: int = _knob(32, choices=(8, 16, 32, 64), doc="pixels per side (shapes: rendered at 32, then pooled)")
    nuisance: float = _knob(1.0, lo=0, hi=1, doc="fraction of the paper's position and background variation")
    samples_per_class: int = _knob(2048, lo=8, hi=1_000_000, doc="training images per training class")
    mask: tuple = _knob((), item=0.0, lo=0, hi=1, added=True,
                        doc="underspecification (chapter 7): per concept of data.concepts, in order, the probability "
                            "that a training prompt leaves it out (its conditioning slots take the null value, its "
                            "image is unchanged); [] or all zeros: every prompt fully specified")
    mask_classes: tuple = _knob((), item=(0, 1), added=True,
                                doc="training classes whose prompts data.mask applies to ([]: every training class)")

    def _check(self, prefix: str) -> None:
        n = len(self.concepts)
        rules = DATASET_RULES[self.dataset]
        bad = [c for c in self.concepts if c not in rules.concepts]
        if bad:
            raise ConfigError(f"{prefix}concepts has {bad[0]!r}, not a concept of data.dataset = "
                              f"{self.dataset!r}; allowed: {list(rules.concepts)}")
        rules.check(self, prefix)
        if len(set(self.concepts)) != n:
            raise ConfigError(f"{prefix}concepts = {list(self.concepts)} repeats a concept")
        self._check_mask(prefix, n)
        classes = 2 ** n
        for cls_ in self.held_out:
            if len(cls_) != n or any(v not in (0, 1) for v in cls_):
                raise ConfigError(f"{prefix}held_out has {list(cls_)}; each held-out class needs {n} value "
                                  f"indices in {{0, 1}}, one per concept in {list(self.concepts)}")
        if len(set(self.held_out)) != len(self.held_out):
            raise ConfigError(f"{prefix}held_out = {to_dict(self.held_out)} lists a class twice")
        if len(self.held_out) >= classes:
            raise ConfigError(f"{prefix}held_out holds out all {classes} classes; at least one must be trained on")
        train = [c for c in _all_classes(n) if c not in self.held_out]
        for i, concept in enumerate(self.concepts):
            if len({c[i] for c in train}) < 2:
                raise ConfigError(f"{prefix}held_out = {to_dict(self.held_out)} leaves only one value of "
                                  f"{concept!r} in training; every value must be seen in some training class")

    def _check_mask(self, prefix: str, n: int) -> None:
        """data.mask and data.mask_classes (each probability's range is checked by its knob). A mask of zeros
        masks nothing and is stored as no mask, so such a run keeps the unmasked run's id."""
        if self.mask_classes and not self.mask:
            raise ConfigError(f"{prefix}mask_classes = {to_dict(self.mask_classes)} without {prefix}mask: set "
                              f"{prefix}mask to the probability of leaving each concept out")
        if not self.mask:
            return
        if len(self.mask) != n:
            raise ConfigError(f"{prefix}mask = {list(self.mask)} has {len(self.mask)} values; allowed: one probability "
                              f"0 ≤ p ≤ 1 per concept of {prefix}concepts = {list(self.concepts)}, or [] for none")
        train = [c for c in _all_classes(n) if c not in self.held_out]
        for cls_ in self.mask_classes:
            if tuple(cls_) not in train:
                raise ConfigError(f"{prefix}mask_classes has {list(cls_)}, not a training class; allowed: "
                                  f"{[list(c) for c in train]}")
        if not any(self.mask):
            object.__setattr__(self, "mask", ())
            object.__setattr__(self, "mask_classes", ())


@dataclass(frozen=True)
class ModelConfig(_Validated):
    """The network and its diffusion formulation, chosen together by `recipe`."""
    _prefix = "model."
    recipe: str = _knob("diffusers", choices=("diffusers", "paper"), added=True,
                        doc="diffusers: DDPM ε-prediction, a diffusers UNet2DModel with the conditioning added to "
                            "its time embedding; paper: the original's VDM with a learned schedule and its network "
                            "with separate time and conditioning MLPs in every res block (vdm.py, paper_unet.py)")
    channels: tuple = _knob((64, 128, 256), doc="channels per resolution level")
    layers_per_block: int = _knob(2, lo=1, hi=4,
                                  doc="res blocks per level (diffusers recipe: the decoder has one more)")
    attention: bool = _knob(True, doc="self-attention in the mid block")
    attention_last_level: bool = _knob(False, doc="self-attention in the lowest-resolution level too", added=True)
    norm_groups: int = _knob(8, lo=1, hi=64, doc="GroupNorm groups; must divide every channel count")
    resampling: str = _knob("conv", choices=("conv", "transpose"), added=True,
                            doc="conv: diffusers' 3x3 stride-2 conv down, nearest + 3x3 conv up; transpose: "
                                "the original network's 2x2 stride-2 conv down and 2x2 transposed conv up")
    dropout: float = _knob(0.0, lo=0, hi=0.5, hi_open=True, doc="dropout inside res blocks")

    def _check(self, prefix: str) -> None:
        if self.recipe == "paper" and self.attention_last_level:
            raise ConfigError(f"{prefix}attention_last_level = True: the paper's network has attention in its mid "
                              f"block only; allowed with {prefix}recipe = 'paper': false")
        if min(self.channels) < 1:
            raise ConfigError(f"{prefix}channels = {list(self.channels)}: every level needs at least 1 channel")
        bad = [c for c in self.channels if c % self.norm_groups]
        if bad:
            raise ConfigError(f"{prefix}norm_groups = {self.norm_groups} must divide every channel count "
                              f"in {prefix}channels = {list(self.channels)}")
        if not 2 <= len(self.channels) <= 4:
            raise ConfigError(f"{prefix}channels = {list(self.channels)} must list 2 to 4 levels")


@dataclass(frozen=True)
class TrainConfig(_Validated):
    """Optimization and checkpoints (references: train-optimizer, train-checkpoints), for either recipe."""
    _prefix = "train."
    steps: int = _knob(20_000, lo=1, hi=10_000_000, doc="optimizer steps")
    batch_size: int = _knob(64, lo=1, hi=4096, doc="images per step")
    learning_rate: float = _knob(1e-3, lo=0, hi=1, lo_open=True, doc="AdamW learning rate")
    weight_decay: float = _knob(0.01, lo=0, hi=1, doc="AdamW weight decay")
    grad_clip: float = _knob(1.0, lo=0, hi=1e6, lo_open=True, doc="max global gradient norm")
    ema_decay: float = _knob(0.995, lo=0, hi=1, hi_open=True, doc="EMA of weights used for sampling")
    checkpoints: int = _knob(60, lo=2, hi=1000, doc="number of checkpoints, spaced quadratically")
    first_checkpoint: int = _knob(500, lo=1, hi=10_000_000, doc="step of the first checkpoint")
    cond_dropout: float = _knob(0.0, lo=0, hi=1, hi_open=True, doc="P(null conditioning), for guidance")
    timesteps: int = _knob(1000, lo=10, hi=10_000, doc="diffusion timesteps of the training schedule")
    seed: int = _knob(0, lo=0, hi=2**31 - 1, doc="seeds data, initialization and batches")
    bf16: str = _knob("auto", choices=("auto", "always", "never"), added=True,
                      aliases={True: "auto", False: "never"}, ids={"never": False},  # its values were true/false
                      doc="bf16 autocast, training and sampling: auto: where the hardware has bf16 arithmetic "
                          "(CUDA with bf16 support, a CPU with AVX512-BF16 or AMX-BF16), fp32 elsewhere; always: "
                          "bf16 on every device (emulated, slowly, on other CPUs); never: fp32. "
                          "true and false mean auto and never. A bf16 run has its own run id (RunConfig.run_id)")
    compile: str = _knob("cuda", choices=("cuda", "always", "never"), added=True,
                         doc="torch.compile the training forward pass: on CUDA only (CPU stays eager), "
                             "on every device, or never")
    fused_adamw: str = _knob("cuda", choices=("cuda", "always"), added=True,
                             doc="AdamW as one fused kernel per step (torch's fused=True): on CUDA only, or on every "
                                 "device (the same update, other rounding; on CPU it saves the unfused step's "
                                 "per-parameter launches: book/rerun.md, \"What it costs\")")
    cuda_graphs: bool = _knob(True, added=True,
                              doc="replay the compiled forward and backward as CUDA graphs (torch.compile's "
                                  "reduce-overhead mode; CUDA only): a small model's step is bound by kernel launches")


@dataclass(frozen=True)
class EvalConfig(_Validated):
    """Concept-space evaluation at each checkpoint (references: concept-space): fixed noise, every class prompt."""
    _prefix = "eval."
    sampler_steps: int = _knob(50, lo=1, hi=1000, doc="sampler steps per sample (DDIM or ancestral, by recipe)")
    samples_per_class: int = _knob(32, lo=1, hi=4096, doc="samples per training-class prompt")
    samples_held_out: int = _knob(32, lo=1, hi=4096, doc="samples per held-out prompt")
    batch_size: int = _knob(512, lo=1, hi=65536, doc="images per sampling batch (bounds memory)")
    noise_seed: int = _knob(1234, lo=0, hi=2**31 - 1, doc="the same noise at every checkpoint")
    keep_images: int = _knob(8, lo=0, hi=64, doc="images per prompt and checkpoint kept for display")


@dataclass(frozen=True)
class ProbeConfig(_Validated):
    """The oracle concept classifier (references: probe): trained on all classes over a range of signals."""
    _prefix = "probe."
    steps: int = _knob(1500, lo=1, hi=1_000_000, doc="training steps")
    batch_size: int = _knob(128, lo=8, hi=4096, doc="images per step")
    width: int = _knob(32, lo=4, hi=256, doc="channels of the first conv layer")
    delta_color_range: tuple = _knob((0.1, 0.9), **COLOR, doc="Δc drawn uniformly from this range [lo, hi]")
    delta_size_range: tuple = _knob((0.2, 0.4), **SIZE, doc="Δs drawn uniformly from this range [lo, hi]")
    delta_background_range: tuple = _knob((0.1, 0.6), **BACKGROUND, doc="Δb drawn uniformly from this range [lo, hi]")
    seed: int = _knob(0, lo=0, hi=2**31 - 1, doc="seeds the probe's data and weights")

    def _check(self, prefix: str) -> None:
        for name in ("delta_color_range", "delta_size_range", "delta_background_range"):
            pair = getattr(self, name)
            if len(pair) != 2 or pair[0] > pair[1]:
                raise ConfigError(f"{prefix}{name} = {list(pair)}; allowed: [lo, hi] with lo ≤ hi")


@dataclass(frozen=True)
class SweepConfig(_Validated):
    """A grid of runs around the profile's run (chapter 2): every combination of these values."""
    _prefix = "sweep."
    delta_color: tuple = _knob((0.1, 0.137, 0.174, 0.211, 0.247, 0.284, 0.321, 0.358, 0.395, 0.432, 0.468,
                                0.505, 0.542, 0.579, 0.616, 0.653, 0.689, 0.726, 0.763, 0.8), **COLOR,
                               doc="Δc values (the paper's col_sweep: 20 values from 0.1 to 0.8)")
    delta_size: tuple = _knob((0.4,), **SIZE, doc="Δs values")
    seeds: tuple = _knob((0, 100, 200, 300, 400), doc="training seeds")
    workers: int = _knob(0, lo=0, hi=1024, doc="parallel runs (0: one per CPU core; on CUDA, 4 per GPU)")
    threads: int = _knob(0, lo=0, hi=1024, doc="torch threads per run (0: cores / workers)")


@dataclass(frozen=True)
class CapabilityConfig(_Validated):
    """Chapter 4's runs and interventions (Park et al. 2024, §5; references: interventions). Defaults: the
    paper's prompting sweep."""
    _prefix = "capability."
    delta_color: tuple = _knob((0.175, 0.2, 0.225, 0.25, 0.275, 0.3), **COLOR, doc="Δc values of the runs probed")
    seeds: tuple = _knob((0, 100, 200, 300, 400), doc="training seeds")
    steps: int = _knob(15000, lo=0, hi=10_000_000, doc="run length (0: the profile's, reusing chapter 2's runs)")
    long_delta_color: tuple = _knob((), item=0.3, **COLOR,
                                    doc="more Δc values, probed in their own longer runs: a weak color signal "
                                        "turns toward blue only after the profile's run length")
    long_steps: int = _knob(4000, lo=1, hi=10_000_000, doc="run length of the long_delta_color runs")
    long_checkpoints: int = _knob(20, lo=2, hi=1000, doc="checkpoints per long_delta_color run")
    long_seeds: tuple = _knob((), item=0, doc="seeds of the long_delta_color runs (empty: seeds)")
    samples: int = _knob(64, lo=1, hi=4096, doc="samples per intervention prompt")
    alphas: tuple = _knob((0.1, 1.0, 2.0), doc="latent edit strengths α")
    beta: float = _knob(0.1, lo=0, hi=10, doc="latent edit suppression β")
    guidance: tuple = _knob((0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0), doc="classifier-free guidance weights")
    guidance_delta_color: tuple = _knob((0.2,), **COLOR, doc="Δc of the runs trained with conditioning dropout")
    guidance_seeds: tuple = _knob((0, 100, 200, 300, 400), doc="seeds of the guidance runs")
    cond_dropout: float = _knob(0.1, lo=0, hi=1, lo_open=True, hi_open=True, doc="P(null prompt) in guidance runs")

    def _check(self, prefix: str) -> None:
        twice = sorted(set(self.long_delta_color) & set(self.delta_color))
        if twice:
            raise ConfigError(f"{prefix}long_delta_color has {twice[0]}, which {prefix}delta_color also has; "
                              f"allowed: values not in {prefix}delta_color = {list(self.delta_color)}")


@dataclass(frozen=True)
class SimConfig(_Validated):
    """Chapter 5's SIM experiments (Yang et al. 2024, App. F.1; references: sim-code): SGD on the identity
    task, and the theory."""
    _prefix = "sim."
    n: int = _knob(5000, lo=10, hi=1_000_000, doc="points per cluster")
    dim: int = _knob(64, lo=2, hi=4096, doc="ambient dimension")
    epochs: int = _knob(40, lo=1, hi=10_000, doc="SGD epochs")
    lr: float = _knob(0.1, lo=0, hi=10, lo_open=True, doc="SGD learning rate (one-layer runs)")
    batch: int = _knob(128, lo=1, hi=100_000, doc="SGD batch size")
    seeds: int = _knob(20, lo=1, hi=10_000, doc="seeds for the non-monotone test loss statistics")
    var_sweep: tuple = _knob((0.05, 0.1, 0.5, 1.0, 2.0), doc="Var of the weak concept (paper's Fig. 2b)")
    mu_sweep: tuple = _knob((1.0, 2.0, 3.0), doc="μ₁ with μ₂ = 2 (paper's Fig. 2a)")


@dataclass(frozen=True)
class MultiConfig(_Validated):
    """Chapter 6's three-concept runs (references: data-multi): color, size and background on a 2×2×2 grid."""
    _prefix = "multi."
    delta_color: tuple = _knob((0.2, 0.4, 0.6), **COLOR, doc="Δc values")
    delta_size: float = _knob(0.35, **SIZE, doc="Δs")
    delta_background: tuple = _knob((0.1, 0.2, 0.3), **BACKGROUND, doc="Δb values")
    seeds: tuple = _knob((0, 100, 200, 300, 400), doc="training seeds")
    steps: int = _knob(40000, lo=1, hi=10_000_000, doc="run length (the paper's 2×2×2 runs: 40k)")
    checkpoints: int = _knob(120, lo=2, hi=1000, doc="checkpoints per run")


@dataclass(frozen=True)
class CelebAConfig(_Validated):
    """Chapter 6's real-data run (Park et al. 2024, §6; references: celeba): two CelebA attributes, one
    combination held out."""
    _prefix = "celeba."
    folder: str = _knob("", doc="folder with img_align_celeba/ and list_attr_celeba.txt ('' = $CONCEPTSPACE_CELEBA)")
    attributes: tuple = _knob(("Male", "Smiling"), choices=CELEBA_ATTRIBUTES, doc="the two concepts")
    held_out: tuple = _knob(((0, 1),), doc="held-out combination: female and smiling")
    per_class: int = _knob(30000, lo=1, hi=1_000_000, doc="training images per training class")
    resolution: int = _knob(64, choices=(8, 16, 32, 64), doc="pixels per side")
    channels: tuple = _knob((64, 128, 256), doc="UNet channels")
    layers_per_block: int = _knob(2, lo=1, hi=4, doc="res blocks per level")
    norm_groups: int = _knob(4, lo=1, hi=64, doc="GroupNorm groups")
    steps: int = _knob(150_000, lo=1, hi=10_000_000, doc="steps (the paper evaluated up to ≈ 141.5k)")
    checkpoints: int = _knob(16, lo=2, hi=1000, doc="checkpoints")
    weight_decay: float = _knob(1e-5, lo=0, hi=1, doc="AdamW weight decay (the paper's CelebA value)")
    probe_steps: int = _knob(10_000, lo=1, hi=1_000_000, doc="probe training steps")


@dataclass(frozen=True)
class UnderspecConfig(_Validated):
    """Chapter 7's runs (Park et al. 2024, Fig. 2's mixing function and its underspecification experiment;
    references: underspecification): one concept of the held-out class left out of a fraction p of the
    training prompts of the class that shares the held-out class's other value (our reconstruction)."""
    _prefix = "underspec."
    concept: str = _knob("color", choices=("color", "size"), doc="the concept the prompts leave out")
    fractions: tuple = _knob((0.0, 0.25, 0.5, 0.75, 1.0), lo=0, hi=1,
                             doc="p: the fraction of that class's training prompts that leave the concept out")
    seeds: tuple = _knob((0, 100, 200, 300, 400), doc="training seeds")
    delta_color: float = _knob(0.0, lo=0, hi=1, doc="Δc of the runs (0: the profile's run's)")
    celeba_concept: str = _knob("", choices=("",) + CELEBA_ATTRIBUTES,
                                doc="CelebA (where a folder is given): the attribute the prompts leave out ('': the "
                                    "first of celeba.attributes)")
    celeba_fractions: tuple = _knob((0.0, 1.0), lo=0, hi=1,
                                    doc="CelebA: the fractions p, at chapter 6's run's seed (p = 0 is its run)")

    def _check(self, prefix: str) -> None:
        for name in ("fractions", "celeba_fractions"):
            values = getattr(self, name)
            if len(set(values)) != len(values) or not {0.0, 1.0} <= set(values):
                raise ConfigError(f"{prefix}{name} = {list(values)}; allowed: distinct values in [0, 1] that "
                                  f"include 0 (the fully specified control) and 1 (every such prompt masked)")


@dataclass(frozen=True)
class RunConfig(_Validated):
    """What defines a trained run; its hash names the run in the store."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def _check(self, prefix: str) -> None:
        levels = len(self.model.channels)
        if self.data.resolution % 2 ** (levels - 1) or self.data.resolution // 2 ** (levels - 1) < 2:
            raise ConfigError(f"data.resolution = {self.data.resolution} cannot pass through "
                              f"{levels} UNet levels (model.channels = {list(self.model.channels)}); "
                              f"it must be divisible by {2 ** (levels - 1)} and leave at least 2 pixels")
        if self.model.recipe == "paper" and self.train.timesteps != TrainConfig.timesteps:
            raise ConfigError(f"train.timesteps = {self.train.timesteps}: model.recipe = 'paper' trains in continuous "
                              f"time, so a number of timesteps has no meaning; leave it at {TrainConfig.timesteps}")
        if self.train.first_checkpoint > self.train.steps:
            raise ConfigError(f"train.first_checkpoint = {self.train.first_checkpoint} is after the last step "
                              f"(train.steps = {self.train.steps}); allowed: 1 ≤ train.first_checkpoint ≤ train.steps")

    def run_id(self, precision: str | None = None) -> str:
        """The run's name in the store: the hash of its settings and, for a run trained in bf16, of its
        precision, so bf16 and fp32 runs never share a folder (fp32 runs keep the ids they had before
        precision was a setting). `precision`: "bf16" or "fp32", as `model.precision` resolves `train.bf16`
        on the training device; by default on the device `train` picks (CUDA where there is one)."""
        if precision is None:
            from .model import default_precision  # imports torch: config stays importable without it

            precision = default_precision(self.train)
        return stable_hash(identity(self, precision))

    def with_changes(self, **dotted) -> "RunConfig":
        """A copy with settings replaced by dotted name, validated: `with_changes(**{"data.delta_color": .2})`.
        A change of `model.recipe` brings that recipe's defaults (RECIPE_DEFAULTS) under the other changes."""
        base = to_dict(self)
        recipe = dotted.get("model.recipe", self.model.recipe)
        if recipe != self.model.recipe:
            base = merge(base, RECIPE_DEFAULTS.get(recipe, {}))
        return build(RunConfig, merge(base, _undot(dotted)))


# What a recipe sets besides its formulation and network, under a profile's and the overrides' values:
# the paper's optimizer details (dropout 0.1, clipping at 0.01, no EMA: the raw weights sample) and
# the diffusers recipe's own. Why: `model.recipe: paper` alone must give the paper's recipe.
RECIPE_DEFAULTS = {
    "diffusers": {"model": {"dropout": ModelConfig.dropout},
                  "train": {"grad_clip": TrainConfig.grad_clip, "ema_decay": TrainConfig.ema_decay}},
    "paper": {"model": {"dropout": 0.1}, "train": {"grad_clip": 0.01, "ema_decay": 0.0}},
}

SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig, "probe": ProbeConfig,
            "sweep": SweepConfig, "capability": CapabilityConfig, "sim": SimConfig, "multi": MultiConfig,
            "celeba": CelebAConfig, "underspec": UnderspecConfig}


@dataclass(frozen=True)
class Experiment:
    """A profile plus overrides, validated: the run to train, how to evaluate it, each chapter's settings."""
    profile: str
    run: RunConfig
    eval: EvalConfig
    probe: ProbeConfig
    sweep: SweepConfig
    capability: CapabilityConfig
    sim: SimConfig
    multi: MultiConfig
    celeba: CelebAConfig
    underspec: UnderspecConfig


PRECISIONS = ("fp32", "bf16")


def identity(run: RunConfig, precision: str) -> dict:
    """What a run id hashes: the run's settings (`_identity`), plus {"precision": "bf16"} when it trains in
    bf16 (fp32 adds nothing: the ids of runs stored before keep their names)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision = {precision!r} is unknown; allowed: {list(PRECISIONS)}")
    out = _identity(run)
    if precision == "bf16":
        out["precision"] = "bf16"
    return out


def _identity(obj) -> Any:
    """to_dict without the `added` settings that are at their defaults (see _knob)."""
    if not dataclasses.is_dataclass(obj):
        return to_dict(obj)
    out = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if f.metadata.get("added") and value == default:
            continue
        ids = f.metadata.get("ids") or {}
        out[f.name] = ids[value] if not dataclasses.is_dataclass(value) and value in ids else _identity(value)
    return out


def to_dict(obj) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def stable_hash(obj) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def parse_setting(text: str):
    """A `--set` value as YAML reads it (0.2, true, [1, 2]), but `2e-3` is a number: YAML 1.1 reads it as text."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _undot(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


def _describe(meta, name) -> str:
    if meta["choices"] is not None:
        return f"one of {list(meta['choices'])}"
    lo, hi = meta["lo"], meta["hi"]
    left = f"{lo} {'<' if meta['lo_open'] else '≤'} " if lo is not None else ""
    right = f" {'<' if meta['hi_open'] else '≤'} {hi}" if hi is not None else ""
    return f"{left}{name}{right}"


def _check_number(value, kind, meta, name):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} = {value!r} must be a number ({kind.__name__}); allowed: {_describe(meta, name)}")
    if kind is int and not float(value).is_integer():
        raise ConfigError(f"{name} = {value!r} must be a whole number; allowed: {_describe(meta, name)}")
    given, value = value, kind(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} = {given!r} must be finite; allowed: {_describe(meta, name)}")
    lo, hi = meta["lo"], meta["hi"]
    bad_lo = lo is not None and (value <= lo if meta["lo_open"] else value < lo)
    bad_hi = hi is not None and (value >= hi if meta["hi_open"] else value > hi)
    if bad_lo or bad_hi or (meta["choices"] is not None and value not in meta["choices"]):
        raise ConfigError(f"{name} = {given!r} is out of range; allowed: {_describe(meta, name)}")
    return value


def _coerce(value, default, meta, name):
    """Check one value against the type of its default and its allowed range."""
    if isinstance(default, str):
        aliases = meta.get("aliases") or {}
        also = "".join(f", or {_yaml(k)} (= {v!r})" for k, v in aliases.items())
        if isinstance(value, bool) and value in aliases:
            return aliases[value]
        if not isinstance(value, str):
            allowed = f"; allowed: {list(meta['choices'])}{also}" if meta["choices"] is not None else ""
            raise ConfigError(f"{name} = {value!r} must be text{allowed}")
        if meta["choices"] is not None and value not in meta["choices"]:
            raise ConfigError(f"{name} = {value!r} is unknown; allowed: {list(meta['choices'])}{also}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} = {value!r} must be true or false")
        return value
    if isinstance(default, (int, float)):
        return _check_number(value, type(default), meta, name)
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or (len(value) == 0 and default):
            if not default:  # a list that may be empty: its example entry shows the entries' type
                raise ConfigError(f"{name} = {value!r} must be a list like {[to_dict(meta['item'])]}")
            raise ConfigError(f"{name} = {value!r} must be a non-empty list like {list(to_dict(default))}")
        sample = default[0] if default else meta["item"]
        if isinstance(sample, (list, tuple)):
            return tuple(tuple(_coerce(v, sample[0], {**meta, "lo": 0, "hi": None}, f"{name}[{i}]")
                               for v in _as_list(item, name)) for i, item in enumerate(value))
        if isinstance(sample, str):
            for v in value:
                if not isinstance(v, str):
                    raise ConfigError(f"{name} has {v!r}; allowed: names (strings)")
                if meta["choices"] is not None and v not in meta["choices"]:
                    raise ConfigError(f"{name} has {v!r}; allowed: {list(meta['choices'])}")
            return tuple(value)
        entry = {**meta, "choices": None}
        if meta["lo"] is None:  # a list's entries are ≥ 0 unless its knob states a range
            entry.update(lo=0, lo_open=False)
        return tuple(_check_number(v, type(sample), entry, f"{name}[{i}]") for i, v in enumerate(value))
    raise ConfigError(f"{name}: unsupported setting type {type(default).__name__}")


def _yaml(value) -> str:
    """A value as a profile or `--set` spells it (true, not True)."""
    return json.dumps(value) if isinstance(value, bool) else repr(value)


def _as_list(item, name):
    if not isinstance(item, (list, tuple)):
        raise ConfigError(f"{name} = {item!r}: each entry must be a list of value indices, e.g. [1, 1]")
    return item


def build(cls, values: dict | None, prefix: str = ""):
    """Validate a (nested) dict into dataclass `cls`, naming any unknown or bad setting."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} = {values!r} must be a mapping of settings")
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = prefix.rstrip(".") or "config"
        raise ConfigError(f"unknown setting {prefix}{unknown[0]!s} in {where}; allowed: {sorted(known)}")
    kwargs = {}
    for name, f in known.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if name not in values:
            kwargs[name] = default
        elif dataclasses.is_dataclass(default):
            kwargs[name] = build(type(default), values[name], f"{prefix}{name}.")
        else:
            kwargs[name] = values[name]
    return cls(**kwargs)  # each section validates itself in __post_init__


def _all_classes(n):
    return [tuple((i >> (n - 1 - k)) & 1 for k in range(n)) for i in range(2 ** n)]


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name: str) -> dict:
    """The settings of a profile file, parsed with YAML's safe loader."""
    if not isinstance(name, str) or name not in profile_names():
        raise ConfigError(f"profile = {name!r} is unknown; allowed: {profile_names()}")
    with open(PROFILES_DIR / f"{name}.yaml") as f:
        return yaml.safe_load(f) or {}


def experiment(profile: str = "cpu", overrides: dict | None = None) -> Experiment:
    """Load a profile, apply overrides by dotted name ("data.delta_color": 0.2), validate everything."""
    if overrides is not None and not isinstance(overrides, dict):
        raise ConfigError(f"overrides = {overrides!r} must be a mapping of dotted names to values")
    settings = merge(load_profile(profile), _undot(overrides or {}))
    model = settings.get("model")
    recipe = model.get("recipe", ModelConfig.recipe) if isinstance(model, dict) else ModelConfig.recipe
    if recipe in RECIPE_DEFAULTS:  # an unknown recipe is reported by name when the model section is built
        settings = merge(RECIPE_DEFAULTS[recipe], settings)
    unknown = sorted(set(settings) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}: settings are named section.name; sections: {list(SECTIONS)}")
    run = build(RunConfig, {k: settings.get(k, {}) for k in ("data", "model", "train")})
    ex = Experiment(profile=profile, run=run,
                    eval=build(EvalConfig, settings.get("eval"), "eval."),
                    probe=build(ProbeConfig, settings.get("probe"), "probe."),
                    sweep=build(SweepConfig, settings.get("sweep"), "sweep."),
                    capability=build(CapabilityConfig, settings.get("capability"), "capability."),
                    sim=build(SimConfig, settings.get("sim"), "sim."),
                    multi=build(MultiConfig, settings.get("multi"), "multi."),
                    celeba=build(CelebAConfig, settings.get("celeba"), "celeba."),
                    underspec=build(UnderspecConfig, settings.get("underspec"), "underspec."))
    if ex.underspec.celeba_concept and ex.underspec.celeba_concept not in ex.celeba.attributes:
        raise ConfigError(f"underspec.celeba_concept = {ex.underspec.celeba_concept!r} is not a concept of the CelebA "
                          f"run; allowed: one of celeba.attributes = {list(ex.celeba.attributes)}")
    return ex
