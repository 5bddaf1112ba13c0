"""The concept probe: a small CNN that maps an image to one probability per concept (references: probe).

It is an oracle: trained on rendered images of *every* class, the held-out one included, over a range
of concept signals and with the paper's full nuisance variation, so it can read the held-out
composition off generated images. `pixel_probe` is a transparent, rule-based reader used by the tests
to check the CNN. Used by: every diffusion chapter, through `evaluate`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DataConfig, ProbeConfig
from .data import dataset_for


class ConceptProbe(nn.Module):
    """Conv trunk, global max and mean pooling, one 2-way head per concept."""

    def __init__(self, n_concepts: int, width: int = 32):
        super().__init__()
        w = width
        self.trunk = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1), nn.GELU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU())
        self.head = nn.Sequential(nn.Linear(4 * w, 2 * w), nn.GELU(), nn.Linear(2 * w, 2 * n_concepts))
        self.n_concepts = n_concepts
        self.key = ""  # set by evaluate.load_probe: which data and settings trained it

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits (N, n_concepts, 2) for images in [0, 1]."""
        h = self.trunk(images * 2 - 1)
        h = torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1)
        return self.head(h).view(-1, self.n_concepts, 2)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        """P(value 1) per image and concept, e.g. (P(blue), P(small)): coordinates in concept space."""
        param = next(self.parameters())
        out = [F.softmax(self(b.to(param.device, param.dtype)).float(), dim=-1)[..., 1].cpu()
               for b in images.split(batch_size)]
        return torch.cat(out)


def probe_data(data: DataConfig, probe: ProbeConfig, n: int, generator: torch.Generator, chunk: int = 128):
    """Images of all classes and their labels: rendered, each chunk of `chunk` images at its own concept
    signals; CelebA: real images of every attribute combination, balanced."""
    return dataset_for(data).probe_training_images(probe, n, generator, chunk)


def train_probe(data: DataConfig, probe: ProbeConfig, device: torch.device | str = "cpu") -> ConceptProbe:
    """Train the oracle probe for the concepts and resolution of `data` (cpu profile: ≈ 3.5 min on one core)."""
    g = torch.Generator().manual_seed(probe.seed)
    torch.manual_seed(probe.seed)
    model = ConceptProbe(len(data.concepts), probe.width).to(device)
    images, labels = probe_data(data, probe, probe.steps * probe.batch_size // 4, g)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    for _ in range(probe.steps):
        idx = torch.randint(len(images), (probe.batch_size,), generator=g)
        x = images[idx] + 0.02 * torch.randn(probe.batch_size, *images.shape[1:], generator=g)
        logits = model(x.clamp(0, 1).to(device))
        loss = F.cross_entropy(logits.reshape(-1, 2), labels[idx].reshape(-1).to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval()


def probe_accuracy(model: ConceptProbe, data: DataConfig, n_per_class: int = 256, seed: int = 999,
                   jitter: bool = True) -> dict[str, float]:
    """Accuracy per concept on fresh rendered images of every class at `data`'s signals
    (CelebA: a fresh draw of real images of every attribute combination)."""
    images, classes = dataset_for(data).probe_test_images(n_per_class, seed, jitter)
    pred = (model.probabilities(images) > 0.5).long()
    return {c: float((pred[:, i] == classes[:, i]).float().mean()) for i, c in enumerate(data.concepts)}


def pixel_probe(images: torch.Tensor, data: DataConfig) -> torch.Tensor:
    """A rule-based reader: color from the disc's mean blue-minus-red, size from its area.

    The background is the border's median color; each pixel's deviation from it, relative to the
    largest deviation, estimates the (blurred) disc mask, whose sum is the disc's area (blur and
    pooling preserve it). Size is small when the area is below that of radius 0.45, halfway between
    the two size ranges. Returns hard 0/1 values (N, n_concepts). A test oracle for clean images with
    the disc inside the canvas, not a reader of generated samples.
    """
    n, _, r, _ = images.shape
    border = torch.cat([images[:, :, 0], images[:, :, -1], images[:, :, :, 0], images[:, :, :, -1]], dim=2)
    bg = border.median(dim=2).values  # (N, 3)
    dev = (images - bg[:, :, None, None]).abs().amax(dim=1)  # (N, R, R)
    mask = dev / dev.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    out = []
    for concept in data.concepts:
        if concept == "color":
            diff = (images[:, 2] - images[:, 0]) * mask
            out.append((diff.sum(dim=(1, 2)) > 0).float())
        elif concept == "size":
            area = mask.sum(dim=(1, 2)) * (2 / r) ** 2  # the canvas is [-1, 1]², 4 units²
            out.append((area < torch.pi * 0.45 ** 2).float())
        else:
            out.append((bg.mean(dim=1) < 0.5).float())
    return torch.stack(out, dim=1)
