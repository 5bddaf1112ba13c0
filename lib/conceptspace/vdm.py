"""The paper's diffusion formulation (`model.recipe: paper`): a continuous-time variational diffusion
model (Kingma et al. 2021) as the original code trains it (the official `mltools/models/vdm_model.py`;
references: vdm-schedule, vdm-loss, vdm-sampler). Pixels are in [0, 1]; every formula is one small
function, tested against its closed form.

- Schedule: γ(t) = b + |w|·t on t ∈ [0, 1], **learned** (b and w are parameters, initialised at
  γ_min = −5 and γ_max − γ_min = 15); σ²_t = sigmoid(γ_t), α²_t = sigmoid(−γ_t), z_t = α_t x + σ_t ε.
- Loss: the full three-term variational bound in bits per dimension (diffusion, latent, reconstruction).
  Its reconstruction term pushes γ(0) far below −5 early in training; keeping the schedule learned and
  all three terms is what the paper's timing of transitions depends on.
- Times: antithetic (stratified) over the batch.
- Sampler: 50 ancestral steps on linspace(1, 0, 51), noise added at the last step too, and z_0 handed
  on unclipped (only display clips).
"""
from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

GAMMA_MIN, GAMMA_MAX = -5.0, 10.0  # the original's config constants: γ's initial range and the network's time scale
DATA_NOISE = 1e-3                   # σ of the reconstruction likelihood p(x | z_0)
MIN_BPD = math.log(2 * math.pi * DATA_NOISE ** 2) / (2 * math.log(2))  # the bound at perfect reconstruction: −8.64


class LinearSchedule(nn.Module):
    """γ(t) = b + |w|·t, with b and w learned (weight decay applies to them, as in the original)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.tensor(GAMMA_MIN))
        self.w = nn.Parameter(torch.tensor(GAMMA_MAX - GAMMA_MIN))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.b + self.w.abs() * t

    def slope(self) -> torch.Tensor:
        """γ'(t) = |w|: the derivative the original takes by autograd, in closed form (w gets the same gradient)."""
        return self.w.abs()


def alpha_sigma(gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """α_t = √sigmoid(−γ_t), σ_t = √sigmoid(γ_t): a variance-preserving pair, α² + σ² = 1."""
    return torch.sigmoid(-gamma).sqrt(), torch.sigmoid(gamma).sqrt()


def network_time(gamma: torch.Tensor) -> torch.Tensor:
    """The network's time input (γ − γ_min)/(γ_max − γ_min) with the *fixed* constants, not the learned
    values: once γ is learned it drifts outside [0, 1], as in the original."""
    return (gamma - GAMMA_MIN) / (GAMMA_MAX - GAMMA_MIN)


def antithetic_times(n: int, generator: torch.Generator, device) -> torch.Tensor:
    """t_i = t_0 + i/n with one t_0 ~ U(0, 1/n): the batch covers [0, 1) evenly (lower variance)."""
    t0 = torch.rand((), generator=generator, device=device) / n
    return t0 + torch.arange(n, device=device) / n


def bits_per_dim(x: torch.Tensor) -> float:
    return 1.0 / (x[0].numel() * math.log(2))


def diffusion_term(eps_hat: torch.Tensor, eps: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:
    """Per sample, in bits/dim: ½ γ'(t) ‖ε̂ − ε‖² (the continuous-time diffusion loss)."""
    return bits_per_dim(eps) * 0.5 * slope * (eps_hat - eps).pow(2).flatten(1).sum(1)


def latent_term(x: torch.Tensor, gamma_1: torch.Tensor) -> torch.Tensor:
    """Per sample, in bits/dim: KL(q(z_1 | x) ‖ N(0, I)) = Σ ½(σ₁² + α₁²x² − log σ₁² − 1), computed as
    Σ ½(α₁²(x² − 1) + softplus(−γ₁)) (σ₁² − 1 = −α₁², −log σ₁² = softplus(−γ₁)): in float32 the
    written form loses every digit at γ₁ = 10, where σ₁² is 1 − 5·10⁻⁵."""
    a2 = torch.sigmoid(-gamma_1)
    return bits_per_dim(x) * 0.5 * (a2 * (x.pow(2) - 1) + nn.functional.softplus(-gamma_1)).flatten(1).sum(1)


def reconstruction_term(x: torch.Tensor, gamma_0: torch.Tensor, eps_0: torch.Tensor) -> torch.Tensor:
    """Per sample, in bits/dim: −log N(x; z_0/α_0, DATA_NOISE²) with z_0 = α_0 x + σ_0 ε_0."""
    alpha, sigma = alpha_sigma(gamma_0)
    x_hat = (alpha * x + sigma * eps_0) / alpha
    nll = 0.5 * math.log(2 * math.pi * DATA_NOISE ** 2) + (x - x_hat).pow(2) / (2 * DATA_NOISE ** 2)
    return bits_per_dim(x) * nll.flatten(1).sum(1)


def loss_terms(eps_fn, schedule: LinearSchedule, x: torch.Tensor, cond: torch.Tensor,
               generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The three terms per sample for a batch x in [0, 1]; `eps_fn(z_t, t_n, cond)` is the network."""
    n, device = x.shape[0], x.device
    t = antithetic_times(n, generator, device)
    eps = torch.randn(x.shape, generator=generator, device=device)
    eps_0 = torch.randn(x.shape, generator=generator, device=device)
    gamma = schedule(t)
    alpha, sigma = (v.view(-1, 1, 1, 1) for v in alpha_sigma(gamma))
    eps_hat = eps_fn(alpha * x + sigma * eps, network_time(gamma), cond).float()
    t_0, t_1 = torch.zeros((), device=device), torch.ones((), device=device)
    return {"diffusion": diffusion_term(eps_hat, eps, schedule.slope()),
            "latent": latent_term(x, schedule(t_1)),
            "reconstruction": reconstruction_term(x, schedule(t_0), eps_0)}


def loss(eps_fn, schedule: LinearSchedule, x: torch.Tensor, cond: torch.Tensor,
         generator: torch.Generator) -> torch.Tensor:
    """The bound in bits/dim: the batch mean of the three terms' sum (the training objective)."""
    return sum(loss_terms(eps_fn, schedule, x, cond, generator).values()).mean()


def ancestral_step(z: torch.Tensor, eps_hat: torch.Tensor, gamma_t: torch.Tensor, gamma_s: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """One step t → s < t of the sampler: c = −expm1(γ_s − γ_t),
    z_s = (α_s/α_t)(z_t − c σ_t ε̂) + σ_s √c · noise."""
    a_t, s_t = alpha_sigma(gamma_t)
    a_s, s_s = alpha_sigma(gamma_s)
    c = -torch.expm1(gamma_s - gamma_t)
    return (a_s / a_t) * (z - c * s_t * eps_hat) + s_s * c.sqrt() * noise


def step_generators(noise: torch.Tensor) -> list[torch.Generator]:
    """One generator per sample, seeded by that sample's initial noise: the sampler's later noise is
    a function of the initial noise alone, whatever batch a sample is drawn in."""
    out = []
    for z in noise.detach().cpu():
        seed = int.from_bytes(hashlib.blake2b(z.numpy().tobytes(), digest_size=8).digest(), "little") >> 1
        out.append(torch.Generator().manual_seed(seed))
    return out


@torch.no_grad()
def sample(eps_fn, schedule: LinearSchedule, cond: torch.Tensor, noise: torch.Tensor, steps: int = 50) -> torch.Tensor:
    """z_0 from z_1 = `noise` by `steps` ancestral steps, unclipped. `eps_fn(z, t_n, cond)` may apply
    guidance; the per-step noise comes from `step_generators(noise)`."""
    gens = step_generators(noise)
    grid = torch.linspace(1, 0, steps + 1, device=noise.device)
    z = noise.clone()
    for t, s in zip(grid[:-1], grid[1:]):
        gamma_t, gamma_s = schedule(t), schedule(s)
        eps_hat = eps_fn(z, network_time(gamma_t).expand(z.shape[0]), cond).float()
        fresh = torch.stack([torch.randn(z.shape[1:], generator=g) for g in gens]).to(z.device)
        z = ancestral_step(z, eps_hat, gamma_t, gamma_s, fresh)
    return z
