"""Latent interventions: edit the model's internal representation of the prompt (Park et al. 2024,
§5, Fig. 5; references: latent-intervention).

The paper amplifies the component of each res block's conditioning embedding along the "blue"
direction and suppresses a little of the "large" one, with each block's directions computed from that
block's own conditioning MLP applied to pure-concept vectors. The edit acts on every module
`model.cond_projections()` lists, at every sampler step, through forward hooks: the paper recipe's 14
per-block c-MLPs, or the diffusers recipe's one shared conditioning embedding. Used by: chapter 4.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from .data import COND_DIM, COND_SLOTS

# Pure-concept vectors: only one concept's slots set; blue and large are the original's, red and small
# this book's (references: latent-intervention).
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
def direction(projection: torch.nn.Module, name: str) -> torch.Tensor:
    """Unit vector of a conditioning projection's output for a pure-concept vector."""
    param = next(projection.parameters())
    return F.normalize(projection(pure_vector(name).to(param.device)[None]), dim=-1)[0]


def linear_edit(projection: torch.nn.Module, rows: list[tuple]):
    """Per sample i: e' = e + α_i (e·a_i) a_i, then e'' = e' − β_i (e'·s_i) s_i (the paper's "v2" edit,
    replacing e), with the directions of this projection. A row () is left as it is (α = β = 0), so
    edited and plain prompts share a batch."""
    param = next(projection.parameters())
    dim = projection(torch.zeros(1, COND_DIM, device=param.device)).shape[-1]
    a = torch.zeros(len(rows), dim, device=param.device)
    s = torch.zeros(len(rows), dim, device=param.device)
    alpha = torch.zeros(len(rows), 1, device=param.device)
    beta = torch.zeros(len(rows), 1, device=param.device)
    cache = {}
    for i, row in enumerate(rows):
        if not row:
            continue
        kind, amplify, al, suppress, be = row
        if kind != "linear":
            raise ValueError(f"intervention kind {kind!r} is unknown; allowed: ['linear']")
        for name in (amplify, suppress):
            if name not in cache:
                cache[name] = direction(projection, name)
        a[i], s[i], alpha[i], beta[i] = cache[amplify], cache[suppress], al, be

    def edit(e):
        e = e + alpha * (e * a).sum(-1, keepdim=True) * a
        return e - beta * (e * s).sum(-1, keepdim=True) * s
    return edit


def _replacing(edit):
    """A forward hook whose return value replaces the module's output."""
    def hook(module, inputs, output):
        return edit(output)
    return hook


@contextlib.contextmanager
def applied(model, rows: list[tuple]):
    """Run the body with one intervention per sample active: () for none, or
    ("linear", amplify, α, suppress, β). Nothing is hooked when no row asks for an edit."""
    if not any(rows):
        yield model
        return
    handles = [proj.register_forward_hook(_replacing(linear_edit(proj, rows))) for proj in model.cond_projections()]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()
