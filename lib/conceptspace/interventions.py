"""Latent interventions: edit the model's internal representation of the prompt (spec §4.3).

The paper amplifies the component of each block's conditioning embedding along the "blue"
direction and suppresses a little of the "large" one, with directions computed from the model itself
(its embedding of pure-concept vectors). Our model has one conditioning embedding shared by all
blocks, so the edit acts there, at every sampler step, through a forward hook. Used by: chapter 4.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .config import RunConfig
from .data import COND_DIM, COND_SLOTS

# Pure-concept vectors: only one concept's slots set (spec §4.3).
PURE = {
    "blue": (COND_SLOTS["color"], (0.05, 0.05, 0.95)),
    "red": (COND_SLOTS["color"], (0.95, 0.05, 0.05)),
    "large": (COND_SLOTS["size"], (0.6,)),
    "small": (COND_SLOTS["size"], (0.1,)),
}


def pure_vector(name: str) -> torch.Tensor:
    if name not in PURE:
        raise ValueError(f"intervention direction {name!r} is unknown; allowed: {sorted(PURE)}")
    slot, values = PURE[name]
    h = torch.zeros(COND_DIM)
    h[slot] = torch.tensor(values)
    return h


@torch.no_grad()
def direction(model, name: str) -> torch.Tensor:
    """Unit vector of the model's embedding of a pure-concept vector."""
    param = next(model.parameters())
    return F.normalize(model.cond_embed(pure_vector(name).to(param.device)[None]), dim=-1)[0]


def linear_edit(model, amplify: str, alpha: float, suppress: str, beta: float):
    """e' = e + α (e·a) a, then e'' = e' − β (e'·s) s: the paper's "v2" edit, replacing e."""
    a, s = direction(model, amplify), direction(model, suppress)

    def edit(e):
        e = e + alpha * (e @ a)[:, None] * a
        return e - beta * (e @ s)[:, None] * s
    return edit


@contextlib.contextmanager
def applied(model, cfg: RunConfig, intervention: tuple):
    """Run the body with `intervention` active: () for none, ("linear", amplify, α, suppress, β)."""
    if not intervention:
        yield model
        return
    kind, *args = intervention
    if kind != "linear":
        raise ValueError(f"intervention kind {kind!r} is unknown; allowed: ['linear']")
    handle = model.cond_embed.register_forward_hook(lambda m, i, out, f=linear_edit(model, *args): f(out))
    try:
        yield model
    finally:
        handle.remove()
