"""Ways of asking the model for a class: naive prompts, over-prompts, latent edits, guidance (Park et al.
2024, §5; references: interventions).

A prompt is data (hashable, stored with its evaluations); `evaluate` turns it into samples. The
held-out class's capability under a method is the best of that method's prompts at a checkpoint.
Used by: every diffusion chapter (naive prompts), chapter 4 (the interventions), chapter 7 (underspecified
prompts and the interventions).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import DataConfig, EvalConfig, stable_hash, to_dict
from .data import COND_SLOTS, NULL_VALUE, all_classes, class_name, class_prompt, concept_slots, value_name

# The paper's five over-prompts: colors pushed past the training range, radius 0.3 (references: over-prompting).
OVER_PROMPT_COLORS = ((0.40, 0.40, 0.60), (0.35, 0.35, 0.65), (0.25, 0.25, 0.75), (0.15, 0.15, 0.85),
                      (0.05, 0.05, 0.95))
OVER_PROMPT_RADIUS = 0.3
# Pushing the other concept: radii below the small class's mean (the lagging concept at strong color).
SIZE_PUSH_RADII = (0.15, 0.1)


@dataclass(frozen=True)
class Prompt:
    """A conditioning vector for a target class, optionally guided or with its embedding edited."""
    name: str
    target: tuple          # the class the prompt asks for (value index per concept)
    cond: tuple            # the 11-value conditioning vector
    n: int                 # samples
    method: str = "naive"  # naive | over-prompt | latent | guidance
    guidance: float | None = None
    intervention: tuple = ()  # e.g. ("linear", "blue", α, "large", β): see interventions.py

    def key(self) -> str:
        """What the samples depend on (not the display name): the cache key of its evaluations."""
        return stable_hash(to_dict(dataclasses.replace(self, name="")))


def class_prompts(data: DataConfig, ev: EvalConfig) -> list[Prompt]:
    """The naive prompt of every class: its mean conditioning vector (the held-out one included)."""
    out = []
    for cls in all_classes(data):
        n = ev.samples_held_out if cls in data.held_out else ev.samples_per_class
        out.append(Prompt(class_name(data, cls), cls, tuple(class_prompt(data, cls).tolist()), n))
    return out


def over_prompts(data: DataConfig, target, n: int) -> list[Prompt]:
    """The paper's five color over-prompts at radius 0.3, then the size pushes (class-mean color)."""
    base = class_prompt(data, target)
    out = []
    for rgb in OVER_PROMPT_COLORS:
        h = base.clone()
        h[COND_SLOTS["color"]] = h.new_tensor(rgb)
        h[COND_SLOTS["size"]] = OVER_PROMPT_RADIUS
        out.append(Prompt(f"over-prompt blue {rgb[2]:.2f}", tuple(target), tuple(h.tolist()), n, "over-prompt"))
    for radius in SIZE_PUSH_RADII:
        h = base.clone()
        h[COND_SLOTS["size"]] = radius
        out.append(Prompt(f"over-prompt radius {radius:.2f}", tuple(target), tuple(h.tolist()), n, "over-prompt"))
    return out


def latent_prompts(data: DataConfig, target, n: int, alphas, beta: float) -> list[Prompt]:
    """The naive prompt with the linear latent edit: amplify blue by α, suppress large by β (references:
    latent-intervention), and the mirror edit for the other concept: amplify small, suppress red."""
    cond = tuple(class_prompt(data, target).tolist())
    out = []
    for amplify, suppress in (("blue", "large"), ("small", "red")):
        for a in alphas:
            out.append(Prompt(f"latent +{amplify} α={a:g}", tuple(target), cond, n, "latent",
                              intervention=("linear", amplify, float(a), suppress, float(beta))))
    return out


def guidance_prompts(data: DataConfig, target, n: int, weights) -> list[Prompt]:
    """The naive prompt sampled with classifier-free guidance weight w (w = 1: plain conditional)."""
    cond = tuple(class_prompt(data, target).tolist())
    return [Prompt(f"guidance w={w:g}", tuple(target), cond, n, "guidance", guidance=float(w)) for w in weights]


def underspecified_prompt(data: DataConfig, cls, concept: str, n: int) -> Prompt:
    """A class's naive prompt with `concept` left out (its slots at the null value), as the prompts of a masked
    training class read (chapter 7; references: underspecification). Its target is the class it was drawn from."""
    h = class_prompt(data, cls)
    h[concept_slots(data, concept)] = NULL_VALUE
    others = [value_name(c, v) for c, v in zip(data.concepts, cls) if c != concept]
    return Prompt(f"{' '.join(others)}, {concept} left out", tuple(cls), tuple(h.tolist()), n, "underspecified")
