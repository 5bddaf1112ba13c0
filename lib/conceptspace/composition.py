"""Chapter 6's three-concept analysis: pure functions of the concept-space table (one row per run,
class and checkpoint, with `p_<concept>` and `target_<concept>` columns).

A held-out class is *learned* at the first checkpoint where the soft accuracy (dynamics.soft_accuracy)
of every concept is ≥ 0.8; the training classes have *converged* at the first checkpoint where every
concept of every training class is ≥ 0.95 (the paper's 2×2×2 analysis, Park et al. 2024, appendix).
Never learned / never converged: dynamics.NEVER (+inf). Used by: chapter 6.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .dynamics import NEVER, first_above, soft_accuracy

MIN_POINTS = 4  # HC13: fewer learned classes than this cannot tell the paper's r from no correlation


def class_codes(table: pd.DataFrame, concepts) -> pd.Series:
    """Each row's class as a bit string in the concepts' order, e.g. '101'."""
    return table[[f"target_{c}" for c in concepts]].astype(int).astype(str).agg("".join, axis=1)


def hamming_to_training(code: str, train_codes) -> int:
    """Concept distance: the fewest concept changes from `code` to any training class."""
    return min(sum(a != b for a, b in zip(code, t)) for t in train_codes)


def with_soft_accuracy(table: pd.DataFrame, concepts) -> pd.DataFrame:
    """`table` plus soft_<concept> and soft_min (the worst concept of the row)."""
    out = table.copy()
    for c in concepts:
        out[f"soft_{c}"] = soft_accuracy(out[f"p_{c}"], out[f"target_{c}"])
    out["soft_min"] = out[[f"soft_{c}" for c in concepts]].min(axis=1)
    return out


def convergence_step(run: pd.DataFrame, train_codes, threshold: float = 0.95) -> float:
    """One run (with `class` and `soft_min`): the first checkpoint where every training class's worst
    concept is ≥ threshold; NEVER if none."""
    tr = run[run["class"].isin(list(train_codes))].groupby("step").soft_min.min().sort_index()
    return first_above(tr.index.values, tr.values, threshold).step


def held_out_table(table: pd.DataFrame, concepts, train_codes, held_codes, learned_at: float = 0.8,
                   converged_at: float = 0.95, keys=("run", "delta_color", "delta_background", "seed")) -> pd.DataFrame:
    """One row per run and held-out class: learned_step, converged_step (both NEVER if never), the
    distance of the class's concept-space point from its corner at convergence (at the run's last
    checkpoint if it never converged), and its concept (Hamming) distance from the training classes."""
    t = with_soft_accuracy(table, concepts)
    rows = []
    for key, run in t.groupby(list(keys)):
        converged = convergence_step(run, train_codes, converged_at)
        at = converged if np.isfinite(converged) else run.step.max()
        for cls in held_codes:
            h = run[run["class"] == cls].sort_values("step")
            point = h[h.step == at][[f"p_{c}" for c in concepts]].values[0]
            rows.append({**dict(zip(keys, key)), "class": cls,
                         "learned_step": first_above(h.step, h.soft_min, learned_at).step,
                         "converged_step": converged,
                         "distance_at_convergence": float(np.linalg.norm(point - np.array([int(b) for b in cls]))),
                         "concept_distance": hamming_to_training(cls, train_codes)})
    return pd.DataFrame(rows)


def distance_time_r(learned: pd.DataFrame) -> tuple[float, int]:
    """Pearson r of learned step against distance at convergence over the classes learned within
    their run, and the number of points; NaN with fewer than 3 points or no spread."""
    ok = learned[np.isfinite(learned.learned_step.astype(float))]
    if len(ok) < 3 or ok.learned_step.nunique() < 2 or ok.distance_at_convergence.nunique() < 2:
        return float("nan"), len(ok)
    return float(stats.pearsonr(ok.distance_at_convergence, ok.learned_step.astype(float)).statistic), len(ok)


def r_interval(r: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The sampling interval of a Pearson r of `r` measured on `n` points (Fisher's z, ±z_{α/2}/√(n−3)):
    how far an r from n points may fall from the paper's and still agree with it. (−1, 1) for n ≤ 3."""
    if n <= 3:
        return -1.0, 1.0
    half = stats.norm.ppf(0.5 + confidence / 2) / np.sqrt(n - 3)
    z = np.arctanh(r)
    return float(np.tanh(z - half)), float(np.tanh(z + half))


def distance_rule(learned: pd.DataFrame, paper_r: float) -> dict:
    """HC13: the Pearson r of learned step against distance at convergence lies inside the sampling
    interval of the paper's r for as many points, on at least MIN_POINTS learned classes."""
    r, n = distance_time_r(learned)
    lo, hi = r_interval(paper_r, n)
    return {"r": r, "n": n, "lo": lo, "hi": hi, "holds": bool(n >= MIN_POINTS and lo <= r <= hi)}


def learned_last(learned: pd.DataFrame, cls: str = "111", by: str = "seed") -> dict:
    """Per run (`by`): is `cls` learned strictly after every other held-out class? A tie (both NEVER,
    or the same checkpoint) is not 'last'; a run where `cls` is learned and another class is not is
    not either."""
    out = {}
    for key, df in learned.groupby(by):
        t = df.set_index("class").learned_step.astype(float)
        others = t.drop(cls)
        out[key] = bool(len(others) > 0 and (t[cls] > others).all())
    return out


def rise_time(steps, values, floor: float = 0.5) -> float:
    """Steps for a curve to go from 20% to 80% of its final value; NaN if it ends below `floor` (a curve
    that stays near zero has not risen, however its noise crosses 20% and 80% of that zero)."""
    s, v = np.asarray(steps), np.asarray(values, dtype=float)
    if v[-1] < floor:
        return float("nan")
    lo, hi = first_above(s, v, 0.2 * v[-1]).step, first_above(s, v, 0.8 * v[-1]).step
    return float(hi - lo) if np.isfinite(lo) and np.isfinite(hi) else float("nan")


def joint_rise_rule(joint: float, concepts: dict) -> dict:
    """The joint accuracy rises (`rise_time`) no slower than the slowest concept's; a curve that never
    rose (NaN) fails it."""
    finite = [v for v in concepts.values() if np.isfinite(v)]
    slowest = max(finite) if finite else float("nan")
    return {"joint": joint, "slowest concept": slowest,
            "holds": bool(np.isfinite(joint) and np.isfinite(slowest) and joint <= slowest)}


__all__ = ["MIN_POINTS", "NEVER", "class_codes", "convergence_step", "distance_rule", "distance_time_r",
           "hamming_to_training", "held_out_table", "joint_rise_rule", "learned_last", "r_interval", "rise_time",
           "with_soft_accuracy"]
