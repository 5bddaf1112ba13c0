"""CelebA: real faces with two binary attributes as the concepts (Park et al. 2024, §6;
references: celeba; chapter 6).

Reads the standard on-disk layout (`img_align_celeba/*.jpg` and `list_attr_celeba.txt` in one
folder), which cannot be downloaded here: the user points `data.folder` at it. Images are resized to
the run's resolution without keeping the aspect ratio and augmented as in the paper (color jitter
±0.1 on brightness, contrast, saturation and hue; horizontal flips). The conditioning is the paper's
4-value vector, one-hot per attribute.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import CELEBA_ATTRIBUTES, ConfigError, DataConfig

IMAGES = "img_align_celeba"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
NICE = {"Male": ("female", "male"), "Smiling": ("not-smiling", "smiling"), "Eyeglasses": ("no-glasses", "glasses"),
        "Black_Hair": ("not-black-hair", "black-hair"), "Wearing_Hat": ("no-hat", "hat")}


class CelebAFormatError(ValueError):
    """The folder is not in CelebA's standard layout; the message names the file and what is wrong."""


def value_names(attribute: str) -> tuple[str, str]:
    return NICE.get(attribute, (f"no-{attribute.lower()}", attribute.lower()))


def read_attributes(folder: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(attribute names, image file names, N × 40 matrix of 0/1) from list_attr_celeba.txt."""
    folder = Path(folder)
    path = folder / ATTRIBUTES_FILE
    if not (folder / IMAGES).is_dir():
        raise CelebAFormatError(f"{folder / IMAGES} is missing: expected CelebA's aligned images folder")
    if not path.is_file():
        raise CelebAFormatError(f"{path} is missing: expected CelebA's attribute list")
    lines = path.read_text().splitlines()
    if not lines or not lines[0].strip().isdigit():
        raise CelebAFormatError(f"{path}: line 1 must hold the number of images")
    names = lines[1].split() if len(lines) > 1 else []
    if names != list(CELEBA_ATTRIBUTES):
        raise CelebAFormatError(f"{path}: line 2 must list CelebA's 40 attribute names in order, found {names[:3]}…")
    files, rows = [], []
    for i, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 41 or any(v not in ("1", "-1") for v in parts[1:]):
            raise CelebAFormatError(f"{path}: line {i} must be a file name and 40 values of 1 or -1")
        files.append(parts[0])
        rows.append([v == "1" for v in parts[1:]])
    if len(files) != int(lines[0]):
        raise CelebAFormatError(f"{path}: line 1 says {lines[0].strip()} images, the file lists {len(files)}")
    return names, files, np.array(rows, dtype=np.int64)


def _load_images(folder: Path, files: list[str], resolution: int) -> torch.Tensor:
    out = np.empty((len(files), resolution, resolution, 3), dtype=np.uint8)
    for i, name in enumerate(files):
        path = folder / IMAGES / name
        if not path.is_file():
            raise CelebAFormatError(f"{path} is listed in {ATTRIBUTES_FILE} but missing")
        with Image.open(path) as im:
            out[i] = np.asarray(im.convert("RGB").resize((resolution, resolution), Image.BILINEAR))
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def labelled_images(data: DataConfig, classes, per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `per_class` images (uint8, N×3×R×R) of each given class, and their labels (N × 2)."""
    names, files, attrs = read_attributes(data.folder)
    cols = [names.index(c) for c in data.concepts]
    rng = np.random.default_rng(seed)
    picked, labels = [], []
    for cls in classes:
        idx = np.flatnonzero((attrs[:, cols] == np.asarray(cls)).all(axis=1))
        if len(idx) == 0:
            raise CelebAFormatError(f"{Path(data.folder) / ATTRIBUTES_FILE}: no image has "
                                    f"{dict(zip(data.concepts, cls))}")
        idx = rng.permutation(idx)[:per_class]
        picked += [files[i] for i in idx]
        labels += [cls] * len(idx)
    return _load_images(Path(data.folder), picked, data.resolution), torch.tensor(labels)


def conditioning(labels: torch.Tensor) -> torch.Tensor:
    """The paper's 4-value conditioning: [one_hot(attribute 1), one_hot(attribute 2)]."""
    return torch.cat([torch.nn.functional.one_hot(labels[:, i], 2) for i in range(labels.shape[1])], dim=1).float()


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """uint8 images → [0, 1] floats with the paper's jitter (±0.1) and random horizontal flips.

    Hue is shifted by rotating the chroma plane in YIQ space, a close stand-in for torchvision's HSV
    shift (torchvision does not install beside this torch build)."""
    x = images.float() / 255
    n, device = x.shape[0], x.device
    def u():
        return (torch.rand(n, 1, 1, 1, generator=generator, device=device) * 2 - 1) * 0.1
    x = x * (1 + u())                                                    # brightness
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + u()) + mean                                    # contrast
    grey = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = (x - grey) * (1 + u()) + grey                                    # saturation
    yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    angle = u().view(n) * 2 * np.pi                                      # hue: ±0.1 of a turn
    cos, sin = angle.cos(), angle.sin()
    rot = torch.zeros(n, 3, 3, device=device)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(yiq) @ rot @ yiq                                # per image, RGB → RGB
    x = torch.einsum("nij,njhw->nihw", m, x)
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(-1), x)
    return x.clamp(0, 1)


def run_config(base, cfg, folder: str):
    """The CelebA run of chapter 6: the profile's training settings, CelebA data and model sizes."""
    return base.with_changes(**{
        "data.dataset": "celeba", "data.folder": str(folder), "data.concepts": list(cfg.attributes),
        "data.held_out": [list(c) for c in cfg.held_out], "data.resolution": cfg.resolution,
        "data.samples_per_class": cfg.per_class, "model.channels": list(cfg.channels),
        "model.layers_per_block": cfg.layers_per_block, "model.norm_groups": cfg.norm_groups,
        "train.steps": cfg.steps, "train.checkpoints": cfg.checkpoints, "train.weight_decay": cfg.weight_decay,
        "train.first_checkpoint": min(base.train.first_checkpoint, cfg.steps)})


def folder(given, cfg) -> str:
    """The CelebA folder of chapter 6: `given` (its `celeba_folder` parameter), else `celeba.folder`, else
    `$CONCEPTSPACE_CELEBA`; '' where none is given. Raises ConfigError if it is not text or not a folder."""
    found = given or cfg.folder or os.environ.get("CONCEPTSPACE_CELEBA", "")
    if not isinstance(found, str):
        raise ConfigError(f"celeba_folder = {found!r} must be a folder path (text)")
    if found and not Path(found).is_dir():
        raise ConfigError(f"celeba_folder = {found!r} is not a folder; allowed: '' or a folder holding "
                          f"{IMAGES}/ and {ATTRIBUTES_FILE}")
    return found


def probe_config(probe, cfg):
    """The oracle probe of the CelebA run: the profile's probe, trained for `celeba.probe_steps`."""
    return dataclasses.replace(probe, steps=cfg.probe_steps)
