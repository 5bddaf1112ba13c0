"""Hidden capabilities (chapter 4; Park et al. 2024, §5, Fig. 5): which runs are probed, which prompts
they are asked, when each prompting method's capability emerges, and how that compares with naive
prompting and with the turn.

Pure functions of concept-space tables, apart from the run lists and the explorer's sampler. A method
that never emerges, or a run that never saturates, has `dynamics.NEVER`; a run without a turn (and a
guided run, which has neither turn nor saturation) has NaN. Used by: chapter 4.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import dynamics, evaluate, interventions, model, prompting, sweep
from .config import Experiment, RunConfig
from .results import every

NEAR = 0.3  # an onset "at" a marker step: within ±30 % of it


def runs_at(ex: Experiment, delta_color: float, seeds, **changes) -> list[RunConfig]:
    """A Δc's runs: long where the profile lists it (weak color turns toward blue after the usual length)."""
    cap = ex.capability
    base = ex.run if cap.steps == 0 else ex.run.with_changes(**{"train.steps": cap.steps})
    if delta_color in cap.long_delta_color:
        base = ex.run.with_changes(**{"train.steps": cap.long_steps, "train.checkpoints": cap.long_checkpoints})
    return sweep.grid(base.with_changes(**changes), **{"data.delta_color": [delta_color], "train.seed": seeds})


def run_lists(ex: Experiment) -> tuple[list[RunConfig], list[RunConfig]]:
    """The probed runs (chapter 2's where they exist) and the runs trained with conditioning dropout."""
    cap = ex.capability
    probed = ([c for dc in cap.delta_color for c in runs_at(ex, dc, cap.seeds)]
              + [c for dc in cap.long_delta_color for c in runs_at(ex, dc, cap.long_seeds or cap.seeds)])
    guided = [c for dc in cap.guidance_delta_color
              for c in runs_at(ex, dc, cap.guidance_seeds, **{"train.cond_dropout": cap.cond_dropout})]
    return probed, guided


def intervention_prompts(cfg: RunConfig, cap) -> list:
    """Over-prompts and latent edits of a run, all aimed at its held-out class."""
    target = cfg.data.held_out[0]
    return (prompting.over_prompts(cfg.data, target, cap.samples)
            + prompting.latent_prompts(cfg.data, target, cap.samples, cap.alphas, cap.beta))


def guidance_prompts(cfg: RunConfig, cap) -> list:
    return prompting.guidance_prompts(cfg.data, cfg.data.held_out[0], cap.samples, cap.guidance)


def emergence_table(curves: pd.DataFrame, table: pd.DataFrame, guided_runs, held_out: str, train_names,
                    concepts, threshold: float) -> pd.DataFrame:
    """Per run and method: the emergence step (NEVER if never), the run's turn (chapter 3's detector on
    the naive trajectory; NaN if none) and training saturation (NEVER if never); guided runs have NaN
    for both."""
    rows = []
    for (run_id, dc, seed), c in curves.groupby(["run", "delta_color", "seed"]):
        guided = run_id in set(guided_runs)
        turn = sat = np.nan
        if not guided:
            df = table[(table.run == run_id) & (table.prompt == held_out)].sort_values("step")
            turn = dynamics.detect_turn(df.step, df[["p_color", "p_size"]].values).step
            sat = dynamics.training_saturation(table[table.run == run_id], train_names, concepts).step
        for method, cm in c.groupby("method"):
            cm = cm.sort_values("step")
            e = dynamics.emergence_time(cm.step, cm.capability, threshold)
            rows.append({"run": run_id, "delta_color": dc, "seed": seed, "method": method,
                         "emergence": e.step, "turn": np.nan if turn is None else turn,
                         "saturation": sat, "last_step": int(cm.step.max())})
    return pd.DataFrame(rows)


def latent_edit_site(run: RunConfig) -> str:
    """Where this run's latent edit acts, beside the paper's (each res block's own projection)."""
    if run.model.recipe == "paper":
        return "every res block's own conditioning projection, as the paper"
    return "one shared conditioning embedding (diffusers recipe); the paper edits each block's own"


def near(step: float, mark: float) -> bool:
    """Within ±30 % of a marker step (never, where there is no marker or it never came)."""
    return bool(np.isfinite(mark) and abs(step - mark) <= NEAR * mark)


def ratio_table(emergence: pd.DataFrame) -> pd.DataFrame:
    """Per run and intervention that emerged: naive / intervention emergence step (naive's last step
    where it never emerges: a lower bound) and whether the onset is near the turn and the saturation."""
    out = []
    for (_, dc, seed), g in emergence.groupby(["run", "delta_color", "seed"]):
        g = g.set_index("method")
        if "naive" not in g.index:
            continue
        naive, last = g.loc["naive", "emergence"], g.loc["naive", "last_step"]
        for method in ("over-prompt", "latent"):
            if method not in g.index or not np.isfinite(g.loc[method, "emergence"]):
                continue
            m = float(g.loc[method, "emergence"])
            n = float(naive) if np.isfinite(naive) else float(last)
            turn, sat = g.loc[method, "turn"], g.loc[method, "saturation"]
            out.append({"delta_color": dc, "seed": seed, "method": method, "method step": m, "naive step": n,
                        "naive censored": not np.isfinite(naive), "ratio": n / m, "turn": turn,
                        "within 30% of turn": near(m, turn), "saturation": sat,
                        "within 30% of saturation": near(m, sat)})
    return pd.DataFrame(out)


def explorer_sampler(net, run, cond, oracle, beta: float, samples: int, sampler_steps: int):
    """The widget's callback: `(step, α) -> (images, caption)` for the latent edit at a checkpoint."""
    resolution = run.config.data.resolution

    def generate(step, alpha):
        net.load_state_dict(run.load_weights(step))
        with interventions.applied(net, [("linear", "blue", float(alpha), "large", beta)] * samples):
            x = model.sample(net, run.config, cond.expand(samples, -1), evaluate.fixed_noise(samples, resolution, 0),
                             steps=sampler_steps)
        p = oracle.probabilities(x).mean(0)
        return x, f"(P(blue), P(small)) = ({p[0]:.2f}, {p[1]:.2f})"
    return generate


def by_delta_color(ratios: pd.DataFrame, emergence: pd.DataFrame, ratio: float = 1.5) -> pd.DataFrame:
    """Per Δc: the fraction of its seeds where an intervention emerges ≥ `ratio`× before naive prompting
    and near the turn (best method), the same with saturation as the turn, and the median ratio."""
    rows = []
    for dc in sorted(emergence[emergence.method == "naive"].delta_color.unique()):  # every probed Δc
        g = ratios[ratios.delta_color == dc] if len(ratios) else ratios
        if not len(g):  # no intervention emerged in any seed
            rows.append({"delta_color": dc, "best method": "none", "fraction of seeds": 0.0,
                         "fraction of seeds, saturation as the turn": 0.0, "median ratio": np.nan})
            continue
        seeds = emergence[emergence.delta_color == dc].seed.nunique()
        fast = g.ratio >= ratio
        turn = (fast & g["within 30% of turn"]).groupby(g.method).sum() / seeds
        sat = (fast & g["within 30% of saturation"]).groupby(g.method).sum() / seeds
        rows.append({"delta_color": dc, "best method": turn.idxmax(), "fraction of seeds": float(turn.max()),
                     "fraction of seeds, saturation as the turn": float(sat.max()),
                     "median ratio": float(g.ratio.median())})
    return pd.DataFrame(rows, columns=["delta_color", "best method", "fraction of seeds",
                                       "fraction of seeds, saturation as the turn", "median ratio"])


def earlier_than_naive(emergence: pd.DataFrame) -> dict:
    """Per probed run: does an intervention emerge before naive prompting (never is after every step)?"""
    out = {}
    for run_id, g in emergence[emergence.method.isin(["naive", "over-prompt", "latent"])].groupby("run"):
        g = g.set_index("method")
        naive = g.loc["naive", "emergence"] if "naive" in g.index else dynamics.NEVER
        first = g.drop(index="naive", errors="ignore").emergence.min()
        out[run_id] = bool(np.isfinite(first) and first < naive)
    return out


def per_run(ratios: pd.DataFrame, ratio: float = 1.5) -> pd.DataFrame:
    """Per (Δc, seed) where an intervention emerged: each half of the strict rule, the first onset and
    its turn and saturation steps."""
    if not len(ratios):
        return pd.DataFrame(columns=["fast", "aligned", "first", "turn", "saturation"])
    return ratios.assign(fast=ratios.ratio >= ratio).groupby(["delta_color", "seed"]).agg(
        fast=("fast", "any"), aligned=("within 30% of turn", "any"), first=("method step", "min"),
        turn=("turn", "first"), saturation=("saturation", "first"))


def onset_ratio(runs: pd.DataFrame, marker: str) -> pd.Series:
    """Per (Δc, seed) of `per_run`: the first intervention's onset over the `marker` step ("turn" or
    "saturation"); runs without the marker (no turn, never saturated) are left out."""
    mark = runs[marker].astype(float)
    has = np.isfinite(mark)
    return runs["first"][has].astype(float) / mark[has]


def regime_rule(by_dc: pd.DataFrame, regime, column: str = "fraction of seeds", min_fraction: float = 1.0,
                inside: bool = True) -> dict:
    """HC8 at the paper's strength: `column` ≥ `min_fraction` at every probed Δc inside the paper's
    regime (`regime` = (lo, hi); or outside it, `inside=False`). Fails where no Δc was probed there."""
    at = by_dc[by_dc.delta_color.between(*regime) == inside] if len(by_dc) else by_dc
    values = dict(zip(at.delta_color, at[column])) if len(at) else {}
    return {"values": values, "holds": bool(values) and all(v >= min_fraction for v in values.values())}


def onset_rule(ratios: pd.Series, runs: int) -> dict:
    """HC8's onset at the marker, every probed run: the first intervention within ±NEAR of the marker
    step (`onset_ratio`) in each of `runs` runs; a run where nothing emerged, or without the marker,
    has no ratio and fails it."""
    near_runs = int(sum(near(v, 1.0) for v in ratios))  # a ratio to the marker: near 1
    return {"near": near_runs, "runs": runs, "holds": runs > 0 and near_runs == runs}


def latent_rule(ratios: dict) -> dict:
    """HC11: the latent edit emerges within ±NEAR of over-prompting (`latent_vs_overprompt`) in every
    probed run."""
    ok = {k: near(v, 1.0) for k, v in ratios.items()}
    return {"ok": ok, "holds": every(ok)}


def guidance_table(emergence: pd.DataFrame, curves: pd.DataFrame, ratio: float = 1.5) -> pd.DataFrame:
    """Per guided run: guidance and naive emergence and peaks; guidance removes the delay where it emerges
    ≥ `ratio`× before naive prompting (naive never: the run's last step, a lower bound)."""
    peak = curves.groupby(["run", "method"]).capability.max()
    rows = []
    for run_id in emergence[emergence.method == "guidance"].run.unique():
        g = emergence[emergence.run == run_id].set_index("method")
        ge, ne = g.loc["guidance", "emergence"], g.loc["naive (guidance run)", "emergence"]
        bound = ne if np.isfinite(ne) else g.loc["naive (guidance run)", "last_step"]
        rows.append({"seed": int(g.loc["guidance", "seed"]), "guidance": ge, "naive": ne,
                     "peak guidance": float(peak[run_id, "guidance"]),
                     "peak naive": float(peak[run_id, "naive (guidance run)"]),
                     "removes delay": bool(np.isfinite(ge) and ratio * ge <= bound)})
    return pd.DataFrame(rows, columns=["seed", "guidance", "naive", "peak guidance", "peak naive", "removes delay"])


def latent_vs_overprompt(emergence: pd.DataFrame) -> dict:
    """Per probed run: the latent edit's emergence over over-prompting's: +inf where only the latent
    edit never emerges, 0 where only over-prompting never does, NaN where neither does."""
    w = emergence[emergence.method.isin(["over-prompt", "latent"])].pivot_table(
        index=["delta_color", "seed"], columns="method", values="emergence", aggfunc="first", dropna=False)
    return {f"Δc {dc:g} seed {sd}": float(r.get("latent", np.nan) / r.get("over-prompt", np.nan))
            for (dc, sd), r in w.iterrows()}


def final_capability(curves: pd.DataFrame, methods=("over-prompt", "naive")) -> dict:
    """Median over probed runs of each method's capability at the run's last checkpoint."""
    last = curves[curves.step == curves.groupby("run").step.transform("max")]
    return {m: float(last[last.method == m].capability.median()) for m in methods}
