"""The SIM task (Yang et al. 2024): learning the identity on Gaussian clusters set on coordinate axes.

Concept p's cluster sits at μ_p e_p with spread Var_p along its axis; the model is trained to output
its input, and tested at the held-out composition x̂ = Σ μ_p e_p. Theory predicts that concept p is
learned at rate a_p = μ_p²/K + Var_p (K clusters), so the order of learning follows a_p; the
one-layer linear model has a closed form, the symmetric two-layer model is integrated as an ODE.
"Var" is a variance, as in the official code (the paper's "σ"). Used by: chapter 5.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn


@dataclass(frozen=True)
class SimTask:
    """Clusters at μ_p e_p (and the origin) with variance Var_p along axis p, embedded in `dim` dims."""
    mu: tuple = (1.0, 2.0)
    var: tuple = (0.05, 0.05)
    n: int = 5000          # points per cluster
    dim: int = 64          # ambient dimension
    origin: bool = True    # the 2-concept official task trains on the origin cluster too
    rotate: bool = True    # embed by a random rotation (the official code); else the first axes
    seed: int = 2333

    def __post_init__(self):
        if len(self.mu) != len(self.var) or not self.mu:
            raise ValueError(f"mu = {self.mu} and var = {self.var} need one entry per concept")
        if any(m < 0 for m in self.mu) or any(v < 0 for v in self.var):
            raise ValueError(f"mu = {self.mu} and var = {self.var} must be ≥ 0")
        if self.dim < len(self.mu):
            raise ValueError(f"dim = {self.dim} must be ≥ the number of concepts ({len(self.mu)})")

    @property
    def concepts(self) -> int:
        return len(self.mu)

    @property
    def clusters(self) -> int:
        return self.concepts + int(self.origin)


def signal(task: SimTask) -> np.ndarray:
    """a_p = μ_p²/K + Var_p: the rate at which the theory says concept p is learned (spec §2.1)."""
    return np.asarray(task.mu) ** 2 / task.clusters + np.asarray(task.var)


def rotation(task: SimTask) -> torch.Tensor:
    """R (s × d): the concept axes inside the ambient space (rows orthonormal)."""
    if not task.rotate:
        return torch.eye(task.dim)[: task.concepts]
    g = torch.Generator().manual_seed(task.seed)
    q, _ = torch.linalg.qr(torch.randn(task.dim, task.dim, generator=g, dtype=torch.float64))
    return q[: task.concepts].float()


def make_data(task: SimTask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training points (N, d), the test point x̂ (d,), and the rotation R (s, d)."""
    g = torch.Generator().manual_seed(task.seed + 1)
    s = task.concepts
    std = torch.tensor(task.var).sqrt()
    means = [torch.tensor(task.mu) * torch.eye(s)[p] for p in range(s)]
    if task.origin:
        means.append(torch.zeros(s))
    points = torch.cat([m + std * torch.randn(task.n, s, generator=g) for m in means])
    r = rotation(task)
    return points[torch.randperm(len(points), generator=g)] @ r, torch.tensor(task.mu) @ r, r


class SymmetricTwoLayer(nn.Module):
    """f(x) = U Uᵀ x: the paper's symmetric two-layer linear model (W = UUᵀ stays PSD)."""

    def __init__(self, dim: int, width: int, init: float = 0.1, positive: bool = False):
        super().__init__()
        u = torch.rand(dim, width) * init if positive else torch.randn(dim, width) * init
        self.u = nn.Parameter(u)

    def forward(self, x):
        return x @ self.u @ self.u.T


def mlp(dim: int, depth: int = 1, width: int = 64, relu: bool = False, bias: bool = True) -> nn.Module:
    """`depth` linear layers (width `width` inside), optional ReLU between them; PyTorch's default init."""
    sizes = [dim] + [width] * (depth - 1) + [dim]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if relu and i < depth - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train_sgd(model: nn.Module, task: SimTask, lr: float = 0.1, batch: int = 128, epochs: int = 40,
              record_every: int = 10, seed: int = 0) -> dict:
    """Plain SGD on the mean-squared error (as the official code), recording f(x̂) along the way.

    Returns steps, outputs (T × s, f(x̂) in concept coordinates) and test_loss (½‖f(x̂) − x̂‖²).
    """
    x, x_hat, r = make_data(task)
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    steps, outputs, losses = [], [], []

    def record(step):
        with torch.no_grad():
            out = model(x_hat[None])[0]
        steps.append(step)
        outputs.append((out @ r.T).numpy())
        losses.append(0.5 * float(((out - x_hat) ** 2).sum()))

    step = 0
    record(0)
    for _ in range(epochs):
        for b in x.split(batch):  # the official code iterates the shuffled set in a fixed order
            loss = nn.functional.mse_loss(model(b), b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % record_every == 0:
                record(step)
    return {"steps": np.array(steps), "outputs": np.array(outputs), "test_loss": np.array(losses)}


def one_layer_theory(task: SimTask, w0: np.ndarray, steps, lr: float) -> np.ndarray:
    """Closed form of the one-layer linear model (Theorem 4.1) at x̂, in concept coordinates.

    Gradient flow Ẇ = −(W − I)A gives f(x̂)_k = (1 − e^{−a_k t}) μ_k + Σ_i e^{−a_i t} w_ki(0) μ_i, with
    w0 the initial weights in concept coordinates (s × s). SGD on the mean over d outputs moves time
    by t = 2·lr·step/d per step (spec §7.4).
    """
    a = signal(task)
    mu = np.asarray(task.mu)
    t = 2 * lr * np.asarray(steps, dtype=float)[:, None] / task.dim
    decay = np.exp(-a[None, :] * t)  # (T, s)
    return (1 - decay) * mu[None, :] + (decay * mu[None, :]) @ w0.T


def learning_time_theory(task: SimTask, lr: float, eps: float = 0.1) -> np.ndarray:
    """Steps until concept k reaches 1 − eps of its target, from the closed form: d ln(1/ε)/(2 η a_k)."""
    return task.dim * np.log(1 / eps) / (2 * lr * signal(task))


def symmetric_field(w: np.ndarray, a: np.ndarray, squared: bool = False) -> np.ndarray:
    """V(W) = WA + AW − ½(AW² + W²A + 2WAW) (Eq. 4.3); `squared` uses A∘A as the released figure code."""
    big_a = np.diag(a ** 2 if squared else a)
    w2 = w @ w
    return w @ big_a + big_a @ w - 0.5 * (big_a @ w2 + w2 @ big_a + 2 * w @ big_a @ w)


def two_layer_theory(a: np.ndarray, w0: np.ndarray, times, squared: bool = False) -> np.ndarray:
    """Integrate Ẇ = V(W) from W(0) = w0 (an ODE, never leaving the PSD cone the way a coarse discrete
    update can); returns W at `times` (T × s × s)."""
    s = len(a)
    sol = solve_ivp(lambda t, y: symmetric_field(y.reshape(s, s), a, squared).ravel(),
                    (0, float(times[-1])), w0.ravel(), t_eval=times, rtol=1e-8, atol=1e-10, method="LSODA")
    return sol.y.T.reshape(-1, s, s)


def test_loss_path(ws: np.ndarray, mu) -> np.ndarray:
    """½‖W x̂ − x̂‖² along a path of W, with x̂ = μ in concept coordinates."""
    mu = np.asarray(mu)
    return 0.5 * (((ws @ mu) - mu) ** 2).sum(axis=-1)


def bumps(loss: np.ndarray, min_height: float = 1e-3) -> list[float]:
    """Heights of the rises in a loss curve (each local minimum to the following local maximum)."""
    out, lo = [], loss[0]
    rising = False
    for prev, cur in zip(loss, loss[1:]):
        if cur > prev and not rising:
            lo, rising = prev, True
        elif cur < prev and rising:
            if prev - lo >= min_height:
                out.append(float(prev - lo))
            rising = False
    if rising and loss[-1] - lo >= min_height:
        out.append(float(loss[-1] - lo))
    return out
