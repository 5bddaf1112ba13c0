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
import pandas as pd
import torch
from scipy.integrate import solve_ivp
from torch import nn

# Chapter 5's tolerances (the book's: the papers state their results as equalities and figures)
CLOSED_FORM_MAX = 0.02  # SIM1: the closed form's largest deviation from SGD, as a fraction of ‖x̂‖
FLIP_TOL = 0.2          # SIM2: the simulated flip's distance from the paper's Var₁ = 1 (the grid's resolution there)
T_FORMULA_TOL = 0.05    # SIM3: SGD's steps to 90 % against the formula's, relative
MULTIPLE_RISES = 2      # SIM6: multiple descent is two or more rises of the test loss


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
    """a_p = μ_p²/K + Var_p: the rate at which the theory says concept p is learned (Yang et al. 2024, §4;
    references: sim-one-layer)."""
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
    by t = 2·lr·step/d per step (the mean over d outputs in PyTorch's MSE).
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
    with np.errstate(over="ignore", invalid="ignore"):
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


# ----------------------------------------------------------------------------------------------
# Chapter 5's experiments as pure functions (the chapter only calls them and tables their results).

NEVER = np.inf  # the same encoding of "never reached" as dynamics.NEVER


def small_init_one_layer(task: SimTask, scale: float = 0.01, seed: int = 0) -> nn.Module:
    """A bias-free one-layer linear model, PyTorch's default init scaled by `scale`: the theory's
    regime (no bias, small initial weights), unlike the official runs (biases, default init)."""
    torch.manual_seed(seed)
    m = mlp(task.dim, depth=1, bias=False)
    with torch.no_grad():
        m[0].weight.mul_(scale)
    return m


def one_layer_run(task: SimTask, lr: float, batch: int, epochs: int, record_every: int = 10, seed: int = 0,
                  scale: float = 0.01) -> dict:
    """SGD on the task from `small_init_one_layer`, and the closed form (Theorem 4.1) from the same
    initial weights at the same steps: `train_sgd`'s dict plus `theory` (T × s)."""
    model = small_init_one_layer(task, scale, seed)
    r = rotation(task)
    w0 = (r @ model[0].weight.detach() @ r.T).numpy()
    res = train_sgd(model, task, lr=lr, batch=batch, epochs=epochs, record_every=record_every, seed=seed)
    res["theory"] = one_layer_theory(task, w0, res["steps"], lr)
    return res


def reach_step(steps, values, target: float, frac: float = 0.9) -> float:
    """The first recorded step where `values` reach `frac` of `target`; NEVER (+inf) if they never do."""
    hit = np.flatnonzero(np.asarray(values) >= frac * target)
    return float(np.asarray(steps)[hit[0]]) if len(hit) else NEVER


def one_layer_summary(task: SimTask, res: dict, lr: float, frac: float = 0.9) -> dict:
    """One setting's row: signals a_p, steps to `frac` of each target in SGD and in the closed form,
    the formula's T_k (zero init), and the closed form's largest deviation from SGD (absolute and as
    a fraction of ‖x̂‖)."""
    a = signal(task)
    formula = learning_time_theory(task, lr, eps=1 - frac)
    row = {"a1": a[0], "a2": a[1]}
    for k in range(task.concepts):
        row[f"T{k + 1} SGD"] = reach_step(res["steps"], res["outputs"][:, k], task.mu[k], frac)
        row[f"T{k + 1} closed form"] = reach_step(res["steps"], res["theory"][:, k], task.mu[k], frac)
        row[f"T{k + 1} formula"] = float(formula[k])
    dev = float(np.abs(res["theory"] - res["outputs"]).max())
    row.update(deviation=dev, relative_deviation=dev / float(np.linalg.norm(task.mu)))
    return row


def order_follows_signal(order: pd.DataFrame, tie_tol: float = 0.05) -> pd.Series:
    """Per setting (rows with a1, a2, T1 SGD, T2 SGD): is the concept with the larger a_p learned
    first? Equal a_p (μ₁ = μ₂ and equal variances): both within `tie_tol` of each other. A setting
    where neither concept is reached counts as not following (it tells nothing in favour)."""
    out = []
    for _, r in order.iterrows():
        t1, t2 = r["T1 SGD"], r["T2 SGD"]
        if not (np.isfinite(t1) or np.isfinite(t2)):
            out.append(False)
        elif np.isclose(r["a1"], r["a2"]):
            out.append(bool(np.isfinite(t1) and np.isfinite(t2) and abs(t1 - t2) <= tie_tol * max(t1, t2)))
        else:
            out.append(bool((t1 < t2) == (r["a1"] > r["a2"])))
    return pd.Series(out, index=order.index, dtype=bool)


def flip_variance(order: pd.DataFrame, x: str = "value") -> float | None:
    """The Var₁ at which the simulated order flips (T2 − T1 changes sign, interpolated linearly between
    grid points; the interval's midpoint when one side is never reached); None if it never flips."""
    from .dynamics import flip_point
    o = order.sort_values(x)
    return flip_point(o[x].values, o["T1 SGD"].values, o["T2 SGD"].values)


def closed_form_holds(max_deviation: float) -> bool:
    """SIM1: the closed form follows one-layer SGD within CLOSED_FORM_MAX of ‖x̂‖ at every setting and step."""
    return bool(np.isfinite(max_deviation) and max_deviation < CLOSED_FORM_MAX)


def flip_holds(flip: float | None, paper_var: float) -> bool:
    """SIM2: the simulated order flips, within FLIP_TOL of the paper's Var₁."""
    return flip is not None and bool(abs(flip - paper_var) <= FLIP_TOL)


def t_formula_error(sgd: dict, formula: dict) -> float:
    """SIM3: the largest relative error of SGD's steps to 90 % against the formula's, over concepts
    (inf where SGD never reaches 90 %)."""
    return max(abs(sgd[k] / formula[k] - 1) for k in formula)


def t_formula_holds(error: float) -> bool:
    return bool(error <= T_FORMULA_TOL)


def multiple_descent(rises: int) -> bool:
    """SIM6: the test loss rises at least MULTIPLE_RISES times."""
    return bool(rises >= MULTIPLE_RISES)


def flip_variance_theory(mu, var2: float, clusters: int) -> float:
    """Var₁ where a₁ = a₂: μ₂²/K + Var₂ − μ₁²/K."""
    return (mu[1] ** 2 - mu[0] ** 2) / clusters + var2


def padded_signal(task: SimTask) -> np.ndarray:
    """a_p for the s concept axes, then 0 for the d − s axes without signal (length `dim`)."""
    return np.concatenate([signal(task), np.zeros(task.dim - task.concepts)])


def paper_init(dim: int, scale: float, seed: int) -> np.ndarray:
    """W(0) = UUᵀ with U (d × d) uniform in [0, scale), drawn as the official figure code does:
    torch's global generator seeded with `seed`, then torch.rand(d, d) · scale (float32)."""
    u = torch.rand(dim, dim, generator=torch.Generator().manual_seed(seed)) * scale
    return (u @ u.T).double().numpy()


def w_recurrence(a: np.ndarray, w0: np.ndarray, eta: float, iterations: int, squared: bool = False) -> np.ndarray:
    """The paper's discrete update W ← W + η V(W) (Fig. 5, Appendix D), returning W after each of the
    `iterations` updates (iterations × d × d), as the official figure code records it. `squared` uses
    A∘A in V as that code does; the paper's Eq. 4.3 has A."""
    w, out = np.array(w0, dtype=float), []
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run (it can leave the PSD cone) ends in inf/NaN
        for _ in range(iterations):
            w = w + eta * symmetric_field(w, a, squared)
            out.append(w)
    return np.array(out)


def train_loss_path(ws: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The population training loss ½‖(W − I)A^½‖²_F along a path of W (T × d × d)."""
    eye = np.eye(ws.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        return 0.5 * (((ws - eye) ** 2) * np.asarray(a)[None, None, :]).sum(axis=(1, 2))


def swing_by(test_loss: np.ndarray, train_loss: np.ndarray, min_height: float = 1e-3, rtol: float = 1e-9) -> dict:
    """Is there a swing-by? The held-out test loss rises (by ≥ `min_height`, `bumps`) while the training
    loss does not rise anywhere (monotone, up to `rtol` of its start): the swing-by of Yang et al. 2024, §4.2
    (references: sim-two-layer).
    A path that diverges (a loss not finite) is no swing-by."""
    test, train = np.asarray(test_loss, dtype=float), np.asarray(train_loss, dtype=float)
    diverged = not (np.isfinite(test).all() and np.isfinite(train).all())
    rises = [] if diverged else bumps(test, min_height)
    monotone = not diverged and bool((np.diff(train) <= rtol * max(abs(float(train[0])), 1.0)).all())
    return {"bump": max(rises) if rises else 0.0, "rises": len(rises), "train_monotone": monotone,
            "diverged": diverged, "swing": bool(rises) and monotone}


def swing_over_seeds(task: SimTask, init: float, eta: float, iterations: int, seeds, squared: bool = False,
                     min_height: float = 1e-3, ode: bool = False, points: int = 2000) -> pd.DataFrame:
    """`swing_by` of the two-layer dynamics for each initialization seed (W(0) from `paper_init`): one row
    per seed with its bump height, number of rises, whether the training loss stayed monotone, whether
    the path diverged, and swing. `ode`: integrate Ẇ = V(W) over the same time η·iterations
    (`two_layer_theory`, which stays in the PSD cone) instead of the discrete recurrence."""
    a = padded_signal(task)
    mu = np.concatenate([task.mu, np.zeros(task.dim - task.concepts)])
    rows = []
    for seed in seeds:
        w0 = paper_init(task.dim, init, seed)
        ws = (two_layer_theory(a, w0, np.linspace(0, eta * iterations, points), squared) if ode else
              w_recurrence(a, w0, eta, iterations, squared))
        rows.append({"seed": seed, **swing_by(test_loss_path(ws, mu), train_loss_path(ws, a), min_height)})
    return pd.DataFrame(rows)


def sgd_swing_over_seeds(task: SimTask, depth: int, width: int, lr: float, batch: int, epochs: int, seeds,
                         min_height: float = 0.05, record_every: int = 20) -> pd.DataFrame:
    """Deep linear SGD (biases, PyTorch's default init: the official runs) per seed: the largest rise of
    the test loss ½‖f(x̂) − x̂‖² (≥ `min_height` counts), the number of rises, and the final loss."""
    rows = []
    for seed in seeds:
        torch.manual_seed(1000 + seed)
        res = train_sgd(mlp(task.dim, depth=depth, width=width), task, lr=lr, batch=batch, epochs=epochs,
                        record_every=record_every, seed=seed)
        rises = bumps(res["test_loss"], min_height)
        rows.append({"seed": seed, "bump": max(rises) if rises else 0.0, "rises": len(rises),
                     "final loss": float(res["test_loss"][-1])})
    return pd.DataFrame(rows)


def closed_form_grid(mu1s, var1s, mu2: float, var2: float, dim: int, lr: float, steps) -> pd.DataFrame:
    """The closed-form path of f(x̂) from zero initial weights, as fractions of each target, for every
    (μ₁, Var₁) on a grid: rows mu1, var1, step, f1, f2, a1, a2."""
    rows = []
    for mu1 in mu1s:
        for v1 in var1s:
            task = SimTask(mu=(mu1, mu2), var=(v1, var2), dim=dim)
            out = one_layer_theory(task, np.zeros((2, 2)), steps, lr)
            a = signal(task)
            rows += [{"mu1": mu1, "var1": v1, "step": s, "f1": x / mu1, "f2": y / mu2, "a1": a[0], "a2": a[1]}
                     for s, (x, y) in zip(steps, out)]
    return pd.DataFrame(rows)


def pixel_signal(data_cfg, delta_colors, concepts=("color", "size")) -> pd.DataFrame:
    """SIM's a_p = μ_p²/K + Var_p measured on the book's images (K = 3 training classes), per Δc:
    μ_p the distance between the two cluster means, Var_p the within-class variance along it
    (`data.concept_statistics`), and the concept SIM predicts is learned first."""
    import dataclasses

    from . import data as data_
    rows = []
    for dc in delta_colors:
        d = dataclasses.replace(data_cfg, delta_color=dc, held_out=((1, 1),), concepts=tuple(concepts))
        st = {c: data_.concept_statistics(d, c) for c in concepts}
        a = {c: st[c]["distance"] ** 2 / 3 + st[c]["variance"] for c in concepts}
        rows.append({"Δc": dc, **{f"a {c}": a[c] for c in concepts}, "SIM predicts first": max(a, key=a.get)})
    return pd.DataFrame(rows)
