"""Sudden turns (chapter 3; Park et al. 2024, §4.2, Fig. 4): per run of chapter 2's sweep, where the
held-out class's trajectory turns, what it headed for before, and when, against training saturation;
and the paper's claims about them as rules over every run.

Pure functions of concept-space tables, tested on hand-made trajectories. No turn: None; never
learned or never saturated: `dynamics.NEVER`. Used by: chapter 3.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .dynamics import detect_turn, first_above, learning_time, mean_ci, smooth, speed_along, training_saturation

CORNER = {"color": (1, 0), "size": (0, 1)}  # the training class sharing that concept with small-blue
CORNER_NAME = {(1, 0): "large-blue", (0, 1): "small-red", (1, 1): "small-blue", (0, 0): "large-red"}
MEMORIZED = 0.5        # the other concept still on the training side (held-out accuracy below chance's 0.5)
NEAR_SATURATION = 0.3  # a turn "at" saturation: within ±30 % (the paper: turns 2.8k-3.9k, saturation 3.7k-3.9k)
RISE = 0.05            # an early error rise counts above this: the noise of a 16-sample concept-space point


def turn_table(cs: pd.DataFrame, held_out: str, train_prompts, concepts, signal: dict, sigma: float = 1.0,
               min_angle: float = 45.0) -> pd.DataFrame:
    """Per run of a two-concept sweep: the held-out trajectory's turn and heading, the heading
    concept memorization predicts (the training class sharing the concept with the stronger pixel
    signal, `signal[Δc][concept]`), the concept the run learned first, training saturation and the
    step the held-out class is generated (joint ≥ 0.8), and the held-out class's accuracy on the
    other concept when the first-learned one first reaches 0.9 (`other_when_first`: below MEMORIZED,
    it sat at the training class the two share, as concept memorization says)."""
    rows = []
    for (run_id, dc, ds, seed), df in cs.groupby(["run", "delta_color", "delta_size", "seed"]):
        ho = df[df.prompt == held_out].sort_values("step")
        turn = detect_turn(ho.step, ho[["p_color", "p_size"]].values, sigma=sigma, min_angle=min_angle)
        stronger = max(concepts, key=signal[dc].get)
        t = {k: learning_time(ho.step, ho[f"acc_{k}"], 0.9).step for k in concepts}
        first = min(concepts, key=t.get) if len(set(t.values())) > 1 else None
        other_when_first = float("nan")
        if first is not None:
            at = ho[ho[f"acc_{first}"] >= 0.9]
            other = next(k for k in concepts if k != first)
            other_when_first = float(at[f"acc_{other}"].iloc[0]) if len(at) else float("nan")
        rows.append({"run": run_id, "delta_color": dc, "delta_size": ds, "seed": seed, "turn_step": turn.step,
                     "angle": turn.angle, "heading": turn.heading, "fit_gain": turn.fit_gain,
                     "saturation_step": training_saturation(df, train_prompts, concepts, 0.01).step,
                     "learned_step": first_above(ho.step, ho.joint, 0.8).step, "stronger_signal": stronger,
                     "heading_expected": CORNER[stronger], "learned_first": first,
                     "heading_by_order": CORNER.get(first), "other_when_first": other_when_first})
    turns = pd.DataFrame(rows)
    return turns.assign(heading_name=[CORNER_NAME.get(h, "—") for h in turns.heading],
                        expected=[CORNER_NAME[h] for h in turns.heading_expected])


def _turned(turns: pd.DataFrame) -> pd.DataFrame:
    return turns[turns.turn_step.notna()]


def every_learned_turns(turns: pd.DataFrame) -> dict:
    """HC6's first half: every run whose held-out class is generated (joint ≥ 0.8) shows a turn.
    Fails when no run learns: a claim about learned runs cannot hold on none."""
    learned = turns[np.isfinite(turns.learned_step.astype(float))]
    turned = learned.turn_step.notna()
    return {"turned": int(turned.sum()), "learned": len(learned), "holds": bool(len(learned)) and bool(turned.all()),
            "by_run": dict(zip(learned.delta_color.astype(str) + "/" + learned.seed.astype(str), turned))}


def heading_by_delta_color(turns: pd.DataFrame, expected: str = "heading_expected") -> pd.Series:
    """HC5 per Δc: did every run with a turn head first for the class concept memorization predicts
    (`expected`: by pixel signal, or `heading_by_order`: by the concept the run learned first)?"""
    t = _turned(turns)
    return t.assign(ok=[h == e for h, e in zip(t.heading, t[expected])]).groupby("delta_color").ok.all()


def heading_match(turns: pd.DataFrame, expected: str = "heading_expected") -> float:
    """The fraction of turning runs whose pre-turn heading is the expected class (NaN without turns)."""
    t = _turned(turns)
    return float(np.mean([h == e for h, e in zip(t.heading, t[expected])])) if len(t) else float("nan")


def memorized(turns: pd.DataFrame, below: float = MEMORIZED) -> pd.DataFrame:
    """Why a pre-turn heading can be missing: per Δc, of the runs that learned one concept first,
    those whose held-out class sat at the training class sharing it (the other concept below
    `below` when the first reached 0.9), and of those, the ones that then turn after heading for
    that class. A class that learns both concepts together never sits at a corner: no heading to
    turn from."""
    known = turns[turns.other_when_first.notna()]
    sat = known.other_when_first < below
    headed = np.array([h == e for h, e in zip(known.heading, known.heading_by_order)], dtype=bool)
    turned = sat & known.turn_step.notna() & headed
    return (known.assign(memorized=sat, turned_from_it=turned).groupby("delta_color")
            .agg(runs=("memorized", "size"), memorized=("memorized", "sum"), turned_from_it=("turned_from_it", "sum"),
                 other_when_first=("other_when_first", "median")).reset_index())


def turn_vs_saturation(turns: pd.DataFrame, near: float = NEAR_SATURATION) -> dict:
    """HC6's second half: the turn comes when the training classes saturate. Per run with both a turn
    and a saturation, whether |turn / saturation − 1| ≤ `near`; and Pearson r of the two steps
    (NaN where fewer than three runs or no spread)."""
    both = turns[turns.turn_step.notna() & np.isfinite(turns.saturation_step.astype(float))]
    turn, sat = both.turn_step.astype(float), both.saturation_step.astype(float)
    close = (turn / sat - 1).abs() <= near
    spread = len(both) > 2 and turn.nunique() > 1 and sat.nunique() > 1
    return {"near": int(close.sum()), "runs": len(both), "holds": bool(len(both)) and bool(close.all()),
            "r": float(stats.pearsonr(turn, sat).statistic) if spread else float("nan")}


def step_summary(turns: pd.DataFrame, columns=("turn_step", "saturation_step")) -> pd.DataFrame:
    """Per Δc, the mean step of each column with a 95 % CI over the runs that have one."""
    rows = []
    for dc, g in turns.groupby("delta_color"):
        for what in columns:
            v = g[what].astype(float)
            v = v[np.isfinite(v)]  # no turn (NaN) or never (NEVER)
            if len(v):
                m, lo, hi = mean_ci(v)
                rows.append({"delta_color": dc, "what": what.replace("_", " "), "step": m, "lo": lo, "hi": hi,
                             "runs": len(v)})
    return pd.DataFrame(rows, columns=["delta_color", "what", "step", "lo", "hi", "runs"])


def turn_marks(cs: pd.DataFrame, turns: pd.DataFrame, held_out: str) -> pd.DataFrame:
    """The held-out class's concept-space point at each detected turn, labelled for a chart."""
    rows = []
    for r in _turned(turns).itertuples():
        pt = cs[(cs.run == r.run) & (cs.prompt == held_out) & (cs.step == r.turn_step)].iloc[0]
        rows.append({"p_color": pt.p_color, "p_size": pt.p_size,
                     "label": f"Δc {r.delta_color:g} seed {r.seed}: turn at {int(r.turn_step):,} ({r.angle:.0f}°)"})
    return pd.DataFrame(rows, columns=["p_color", "p_size", "label"])


def speed_table(cs: pd.DataFrame, prompt: str, sigma: float = 1.0, floor: float = 1e-6) -> pd.DataFrame:
    """|dC/dt| of `prompt`'s trajectory per run and checkpoint, floored at `floor` for a log axis."""
    rows = []
    for (_, dc, seed), df in cs[cs.prompt == prompt].groupby(["run", "delta_color", "seed"]):
        df = df.sort_values("step")
        v = speed_along(df.step, df[["p_color", "p_size"]].values, sigma=sigma)
        rows += [{"step": s, "speed": max(x, floor), "delta_color": dc, "seed": seed,
                  "prompt": f"Δc {dc:g} · seed {seed}"} for s, x in zip(df.step, v)]
    return pd.DataFrame(rows, columns=["step", "speed", "delta_color", "seed", "prompt"])


def speed_r2(cs: pd.DataFrame, prompt: str, sigma: float = 1.0) -> dict:
    """How much of the log speed |dC/dt| of `prompt`'s trajectory training time explains, against the
    color signal (the paper's appendix: R² 0.79 on log step, 0.01 on Δc). R² of a least-squares line."""
    v = speed_table(cs, prompt, sigma, floor=0)
    v = v[(v.step > 0) & (v.speed > 0)]
    if len(v) < 3:
        return {"log step": float("nan"), "Δc": float("nan")}
    return {"log step": _r2(np.log(v.step.astype(float)), np.log(v.speed)), "Δc": _r2(v.delta_color, np.log(v.speed))}


def _r2(x, y) -> float:
    return float(stats.pearsonr(x, y).statistic ** 2) if np.ptp(x) > 0 and np.ptp(y) > 0 else 0.0


def error_rise(steps, error, early: float = 0.5) -> float:
    """The largest rise of a concept-space error above its running minimum within the first `early`
    fraction of training (SIM's non-monotone swing-by; Yang et al. 2024, Fig. 6); 0 if it only falls."""
    steps, error = np.asarray(steps, dtype=float), np.asarray(error, dtype=float)
    e = error[steps <= steps.min() + early * (steps.max() - steps.min())]
    return float(np.max(e - np.minimum.accumulate(e))) if len(e) else 0.0


def error_curves(cs: pd.DataFrame, prompt: str, corner=(1, 1), sigma: float = 1.0) -> pd.DataFrame:
    """Per run and checkpoint: the squared distance of `prompt`'s smoothed point to its corner in
    concept space (the error SIM's Fig. 6 plots for a diffusion model)."""
    rows = []
    for (run_id, dc, seed), df in cs[cs.prompt == prompt].groupby(["run", "delta_color", "seed"]):
        df = df.sort_values("step")
        err = ((smooth(df[["p_color", "p_size"]].values, sigma) - np.asarray(corner)) ** 2).sum(axis=1)
        rows += [{"run": run_id, "delta_color": dc, "seed": seed, "step": s, "error": e,
                  "prompt": f"Δc {dc:g} · seed {seed}"} for s, e in zip(df.step, err)]
    return pd.DataFrame(rows, columns=["run", "delta_color", "seed", "step", "error", "prompt"])


def error_rises(cs: pd.DataFrame, prompt: str, corner=(1, 1), sigma: float = 1.0) -> pd.DataFrame:
    """Per run: the held-out class's early error rise (`error_rise` of its `error_curves`)."""
    curves = error_curves(cs, prompt, corner, sigma)
    return pd.DataFrame([{"run": r, "delta_color": dc, "seed": seed, "rise": error_rise(g.step, g.error)}
                         for (r, dc, seed), g in curves.groupby(["run", "delta_color", "seed"])],
                        columns=["run", "delta_color", "seed", "rise"])


def rising_delta_colors(rises: pd.DataFrame, min_rise: float = RISE) -> list[float]:
    """SIM7 as a rule: the Δc at which the error rises early (≥ `min_rise`) in every seed."""
    every = rises.assign(up=rises.rise >= min_rise).groupby("delta_color").up.all()
    return [float(dc) for dc in every[every].index]
