"""The concept-structured image generator (Park et al. 2024, §3; references: data) and concept signal in pixel space.

One disc with a blurred edge on a light background. Concepts are color (red/blue), size
(large/small) and, in the 3-concept setting, background (light/dark). The concept signal Δ of a
concept is the distance between its two values; the generator maps Δc and Δs to RGB and radius
exactly as the paper's code does. A training prompt may leave a concept out (`data.mask`: its slots take
the null value; chapter 7). `DATASETS` holds what differs for `data.dataset = 'celeba'`, real faces
(celeba.py): training images, prompts, augmentation and the probe's images. Used by: every diffusion chapter.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from . import celeba
from .config import DataConfig, ProbeConfig

VALUE_NAMES = {"color": ("red", "blue"), "size": ("large", "small"), "background": ("light", "dark")}
# The paper's 11-value conditioning vector: [shape(2) | x | y | color RGB(3) | radius | background RGB(3)].
COND_DIM = 11
COND_SLOTS = {"color": slice(4, 7), "size": slice(7, 8), "background": slice(8, 11)}
RENDER_SIZE = 32  # the paper's image; lower resolutions are average-pooled from it
BLUR_SIGMA_PX = 1.0
PIXEL_NOISE = 1e-3
GREY = 0.9  # mean background when background is not a concept
NULL_VALUE = -1.0  # the paper's null token (model.NULL_CONDITIONING): the slots of a concept a prompt leaves out


def all_classes(data: DataConfig) -> list[tuple[int, ...]]:
    """Every class as a tuple of value indices, one per concept, in class-index order."""
    return list(itertools.product((0, 1), repeat=len(data.concepts)))


def training_classes(data: DataConfig) -> list[tuple[int, ...]]:
    return [c for c in all_classes(data) if c not in data.held_out]


def value_name(concept: str, value: int) -> str:
    """'blue' for (color, 1); for CelebA attributes e.g. 'smiling' / 'not-smiling'."""
    if concept in VALUE_NAMES:
        return VALUE_NAMES[concept][value]
    return celeba.value_names(concept)[value]


def _concept_mean(data: DataConfig, concept: str, value: torch.Tensor) -> torch.Tensor:
    """Mean attribute of a concept value (references: data-concepts): RGB for color/background, radius for size."""
    v = value.float()[:, None]  # 0 or 1
    if concept == "color":
        h = data.delta_color / 2
        red = torch.tensor([0.5 + h, 0.5 - h, 0.5 - h])
        blue = torch.tensor([0.5 - h, 0.5 - h, 0.5 + h])
        return red * (1 - v) + blue * v
    if concept == "size":
        h = data.delta_size / 2
        return ((0.45 + h) * (1 - v) + (0.45 - h) * v)[:, 0]
    h = data.delta_background / 2
    return ((0.5 + h) * (1 - v) + (0.5 - h) * v).expand(-1, 3)


def attributes(data: DataConfig, classes: torch.Tensor, generator: torch.Generator, jitter: bool = True) -> dict:
    """Per-image attributes of the given classes (N × n_concepts value indices).

    With `jitter`, each image gets its own values inside the class's range (color ±Δc/8 per
    channel, radius ±3Δs/8 floored at 0.1, background ±Δb/8); without, the class means. Position
    and the grey background are nuisances, scaled by `data.nuisance` (1 = the paper's).
    """
    n = classes.shape[0]
    def u(*shape):
        return torch.rand(*shape, generator=generator)
    col = classes[:, data.concepts.index("color")] if "color" in data.concepts else torch.zeros(n, dtype=torch.long)
    siz = classes[:, data.concepts.index("size")] if "size" in data.concepts else torch.zeros(n, dtype=torch.long)
    color = _concept_mean(data, "color", col)
    radius = _concept_mean(data, "size", siz)
    position = (u(n, 2) * 2 - 1) * 0.5 * data.nuisance
    if "background" in data.concepts:
        background = _concept_mean(data, "background", classes[:, data.concepts.index("background")])
        bg_jitter = data.delta_background / 8 if jitter else 0.0
    else:
        background = torch.full((n, 3), GREY)
        bg_jitter = 0.1 * data.nuisance if jitter else 0.0
    background = background + (u(n, 3) * 2 - 1) * bg_jitter
    if jitter:
        color = color + (u(n, 3) * 2 - 1) * data.delta_color / 8
        half = 3 * data.delta_size / 8
        lo = torch.clamp(radius - half, min=0.1)
        radius = lo + u(n) * (radius + half - lo)
    return {"color": color, "radius": radius, "background": background, "position": position}


def _blur_kernel(device) -> torch.Tensor:
    x = torch.arange(-4, 5, dtype=torch.float32, device=device)  # truncate at 4σ, as scipy
    k = torch.exp(-0.5 * (x / BLUR_SIGMA_PX) ** 2)
    return k / k.sum()


def render(attrs: dict, resolution: int, generator: torch.Generator | None = None,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """Images (N, 3, R, R) in [0, 1]: a hard disc mask, blurred by σ = 1 px at 32 px, then pooled."""
    device = torch.device(device)
    a = {k: v.to(device) for k, v in attrs.items()}
    grid = torch.linspace(-1, 1, RENDER_SIZE, device=device)
    # Axis 0 is the paper's x coordinate (meshgrid indexing="ij").
    dx = grid[None, :, None] - a["position"][:, 0, None, None]
    dy = grid[None, None, :] - a["position"][:, 1, None, None]
    mask = ((dx ** 2 + dy ** 2).sqrt() < a["radius"][:, None, None]).float()[:, None]
    k = _blur_kernel(device)
    mask = F.conv2d(F.pad(mask, (4, 4, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    mask = F.conv2d(F.pad(mask, (0, 0, 4, 4), mode="reflect"), k.view(1, 1, -1, 1))
    img = mask * a["color"][:, :, None, None] + (1 - mask) * a["background"][:, :, None, None]
    noise = torch.randn(img.shape, generator=generator) if generator is not None else torch.randn(img.shape)
    img = (img + PIXEL_NOISE * noise.to(device)).clamp(0, 1)
    if resolution != RENDER_SIZE:
        img = F.avg_pool2d(img, RENDER_SIZE // resolution)
    return img


def conditioning(data: DataConfig, attrs: dict) -> torch.Tensor:
    """The 11-value conditioning vector holding each image's own attribute values (references: data-conditioning)."""
    n = attrs["radius"].shape[0]
    h = torch.zeros(n, COND_DIM)
    if "color" in data.concepts:
        h[:, COND_SLOTS["color"]] = attrs["color"]
    if "size" in data.concepts:
        h[:, COND_SLOTS["size"]] = attrs["radius"][:, None]
    if "background" in data.concepts:
        h[:, COND_SLOTS["background"]] = attrs["background"]
    return h


def prompt_masks(data: DataConfig, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
    """Which concepts each training prompt leaves out (N × n_concepts, bool): concept i of an image of a
    class in `data.mask_classes` (every training class if empty) with probability `data.mask[i]`, one draw
    per image and concept from `generator` (the mixing function M of Park et al. 2024, Fig. 2; references:
    underspecification). None without a mask: nothing is drawn."""
    if not data.mask:
        return None
    draws = torch.rand(labels.shape[0], len(data.concepts), generator=generator)
    chosen = torch.ones(labels.shape[0], dtype=torch.bool)
    if data.mask_classes:
        chosen = (labels[:, None, :] == torch.tensor(data.mask_classes)[None]).all(-1).any(-1)
    return (draws < torch.tensor(data.mask)) & chosen[:, None]


def mask_prompts(data: DataConfig, cond: torch.Tensor, masked: torch.Tensor | None) -> torch.Tensor:
    """The conditioning with each left-out concept's slots set to NULL_VALUE (its images are not touched)."""
    if masked is None:
        return cond
    cond = cond.clone()
    for i, concept in enumerate(data.concepts):
        cond[masked[:, i], concept_slots(data, concept)] = NULL_VALUE
    return cond


@dataclass(frozen=True)
class Shapes:
    """data.dataset = 'shapes': discs rendered by this module from each image's concept values."""
    data: DataConfig
    augment = None  # rendered once, in [0, 1]: batches are used as drawn

    def class_name(self, cls) -> str:
        order = [c for c in ("background", "size", "color") if c in self.data.concepts]
        return "-".join(VALUE_NAMES[c][cls[self.data.concepts.index(c)]] for c in order)

    def cond_dim(self) -> int:
        return COND_DIM

    def slots(self, concept: str) -> slice:
        return COND_SLOTS[concept]

    def class_prompt(self, cls) -> torch.Tensor:
        means = attributes(self.data, torch.tensor([cls]), torch.Generator().manual_seed(0), jitter=False)
        return conditioning(self.data, means)[0]

    def training_data(self, seed: int, device):
        g = torch.Generator().manual_seed(seed)
        train = torch.tensor(training_classes(self.data))
        labels = train.repeat_interleave(self.data.samples_per_class, dim=0)
        attrs = attributes(self.data, labels, g)
        images = render(attrs, self.data.resolution, g, device)
        cond = mask_prompts(self.data, conditioning(self.data, attrs), prompt_masks(self.data, labels, g))
        return images, cond.to(device), labels.to(device)

    def probe_training_images(self, probe: ProbeConfig, n: int, generator: torch.Generator, chunk: int):
        """The oracle's training images (probe.py): each chunk of `chunk` images draws its own concept signals
        from the probe's ranges, with the paper's full nuisance variation."""
        images, labels = [], []
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            u = torch.rand(3, generator=generator).tolist()
            (dc, ds, db) = (lo + x * (hi - lo) for (lo, hi), x in zip(
                (probe.delta_color_range, probe.delta_size_range, probe.delta_background_range), u))
            signals = replace(self.data, delta_color=dc, delta_size=ds, delta_background=db, nuisance=1.0)
            classes = torch.tensor(all_classes(self.data))
            cls = classes[torch.randint(len(classes), (m,), generator=generator)]
            images.append(render(attributes(signals, cls, generator), self.data.resolution, generator))
            labels.append(cls)
        return torch.cat(images), torch.cat(labels)

    def probe_test_images(self, n_per_class: int, seed: int, jitter: bool):
        g = torch.Generator().manual_seed(seed)
        classes = torch.tensor(all_classes(self.data)).repeat_interleave(n_per_class, dim=0)
        return render(attributes(self.data, classes, g, jitter=jitter), self.data.resolution, g), classes


@dataclass(frozen=True)
class CelebA:
    """data.dataset = 'celeba': real faces read from data.folder (celeba.py), kept as uint8 and augmented
    per batch; the probe trains and tests on real faces of every attribute combination, balanced."""
    data: DataConfig

    def class_name(self, cls) -> str:
        return "-".join(value_name(c, v) for c, v in zip(self.data.concepts, cls))

    def cond_dim(self) -> int:
        return 2 * len(self.data.concepts)

    def slots(self, concept: str) -> slice:
        i = self.data.concepts.index(concept)
        return slice(2 * i, 2 * i + 2)

    def class_prompt(self, cls) -> torch.Tensor:
        return celeba.conditioning(torch.tensor([cls]))[0]

    def training_data(self, seed: int, device):
        images, labels = celeba.labelled_images(self.data, training_classes(self.data), self.data.samples_per_class,
                                                seed)
        masked = prompt_masks(self.data, labels, torch.Generator().manual_seed(seed))  # the images are numpy's draw
        cond = mask_prompts(self.data, celeba.conditioning(labels), masked)
        return images.to(device), cond.to(device), labels.to(device)

    def augment(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return celeba.augment(images, generator)

    def probe_training_images(self, probe: ProbeConfig, n: int, generator: torch.Generator, chunk: int):
        return self._every_combination(max(1, n // 2 ** len(self.data.concepts)), int(generator.initial_seed()))

    def probe_test_images(self, n_per_class: int, seed: int, jitter: bool):
        return self._every_combination(n_per_class, seed)

    def _every_combination(self, per_class: int, seed: int):
        """Up to `per_class` real images of each attribute combination, in [0, 1], and their labels."""
        images, labels = celeba.labelled_images(self.data, all_classes(self.data), per_class, seed)
        return images.float() / 255, labels


# data.dataset → what differs between the datasets' images, prompts and probe data (what each allows:
# config.DATASET_RULES). Each answers class_name, cond_dim, slots, class_prompt, training_data, augment (None: no
# augmentation), probe_training_images and probe_test_images for the DataConfig it is bound to.
DATASETS = {"shapes": Shapes, "celeba": CelebA}


def dataset_for(data: DataConfig) -> Shapes | CelebA:
    return DATASETS[data.dataset](data)


def class_name(data: DataConfig, cls) -> str:
    """'small-blue' style names: shapes in the paper's reading order (background, size, color), CelebA's
    attributes in data.concepts order ('female-smiling')."""
    return dataset_for(data).class_name(cls)


def concept_slots(data: DataConfig, concept: str) -> slice:
    """Where a concept sits in the conditioning vector: the slots a prompt that leaves it out sets to NULL_VALUE."""
    return dataset_for(data).slots(concept)


def cond_dim(data: DataConfig) -> int:
    """Length of the conditioning vector: the paper's 11 values, or CelebA's one-hot pairs."""
    return dataset_for(data).cond_dim()


def class_prompt(data: DataConfig, cls) -> torch.Tensor:
    """The conditioning vector of a class's mean values: the naive prompt for that class (references: naive-prompt)."""
    return dataset_for(data).class_prompt(cls)


def make_dataset(data: DataConfig, seed: int, device: torch.device | str = "cpu"):
    """The training set: `samples_per_class` images of each training class, deterministic given seed.

    Random draws come from a CPU generator so every device sees the same data; rendering runs on
    `device`. Returns images (N,3,R,R) in [0,1] (CelebA: uint8, augmented per batch), conditioning
    (N, cond_dim) and class labels (N, n_concepts). With `data.mask` the prompts that leave a concept out
    are drawn last, from the same generator: a masked run trains on the unmasked run's images.
    """
    return dataset_for(data).training_data(seed, device)


PAPER_TRAIN_FRACTION = 0.85  # the original trains on 85 % of the generated images (5,222 of 6,144), validates on 15 %


class TrainingSet:
    """Batches of (x₀ in [-1, 1], conditioning) for the training loop.

    `train_fraction` < 1 keeps a seeded random subset (the paper recipe's 85/15 split; we never use the
    15 %). `epochs`: batches walk a fresh seeded permutation each epoch with a partial last batch (the
    original's shuffled loader, drop_last False); otherwise each batch draws indices with replacement
    from the trainer's generator. Epoch batches are a function of the step, so a resumed run continues
    the same epoch."""

    def __init__(self, data: DataConfig, seed: int, device, train_fraction: float = 1.0, epochs: bool = False):
        self.images, self.cond, _ = make_dataset(data, seed, device)
        if train_fraction < 1:
            keep = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))
            keep = keep[:int(train_fraction * len(self.images))].to(self.images.device)
            self.images, self.cond = self.images[keep], self.cond[keep]
        self.augment = dataset_for(data).augment
        if self.augment is None:
            self.images = self.images * 2 - 1
        self.seed, self.epochs = seed, epochs

    def __len__(self) -> int:
        return self.images.shape[0]

    def indices(self, step: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """The indices of the batch of training step `step` (0-based)."""
        device = self.images.device
        if not self.epochs:
            return torch.randint(len(self), (batch_size,), generator=generator, device=device)
        per_epoch = -(-len(self) // batch_size)
        epoch, k = divmod(step, per_epoch)
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        return order[k * batch_size:(k + 1) * batch_size].to(device)

    def batch(self, idx: torch.Tensor, generator: torch.Generator):
        x = self.images[idx]
        if self.augment is not None:
            x = self.augment(x, generator) * 2 - 1
        return x, self.cond[idx]


def mean_images(data: DataConfig, cls, n: int, seed: int) -> torch.Tensor:
    """n class-mean images of one class with positions and noise fixed by seed (shared across classes)."""
    g = torch.Generator().manual_seed(seed)
    attrs = attributes(data, torch.tensor([cls] * n), g, jitter=False)
    return render(attrs, data.resolution, g)


def concept_signal(data: DataConfig, concept: str, n: int = 128, seed: int = 42) -> float:
    """Pixel MSE between images that differ only in `concept` (the official `scripts/calc_mse_pix.py`;
    references: concept-signal).

    Both classes are drawn at their means with identical positions and background; the other
    concepts sit at value 0 (so color compares large-red with large-blue).
    """
    if concept not in data.concepts:
        raise ValueError(f"concept = {concept!r} is not among data.concepts = {list(data.concepts)}")
    base = [0] * len(data.concepts)
    other = list(base)
    other[data.concepts.index(concept)] = 1
    a = mean_images(data, tuple(base), n, seed)
    b = mean_images(data, tuple(other), n, seed)
    return float(((a - b) ** 2).mean())


def concept_statistics(data: DataConfig, concept: str, n: int = 512, seed: int = 42) -> dict:
    """A concept's signal and spread in pixel space, the quantities of the SIM theory (chapter 5).

    Two training clusters that differ only in `concept` (the other concepts at value 0) are drawn
    with the training jitter and nuisance. Along the unit direction u between their mean images:
    `distance` is ‖mean₁ − mean₀‖ (SIM's μ_p) and `variance` the within-class variance of the images'
    projections on u (SIM's Var_p).
    """
    if concept not in data.concepts:
        raise ValueError(f"concept = {concept!r} is not among data.concepts = {list(data.concepts)}")
    g = torch.Generator().manual_seed(seed)
    base = [0] * len(data.concepts)
    other = list(base)
    other[data.concepts.index(concept)] = 1
    a = render(attributes(data, torch.tensor([base] * n), g), data.resolution, g).flatten(1)
    b = render(attributes(data, torch.tensor([other] * n), g), data.resolution, g).flatten(1)
    diff = b.mean(0) - a.mean(0)
    distance = float(diff.norm())
    u = diff / distance
    variance = float(torch.cat([(a - a.mean(0)) @ u, (b - b.mean(0)) @ u]).var())
    return {"distance": distance, "variance": variance}
