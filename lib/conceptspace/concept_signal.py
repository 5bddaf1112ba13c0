"""Concept signal sets the speed and order of learning (chapter 2; Park et al. 2024, §4.1, Figs. 3-4):
the paper's claims as rules over a sweep's learning times, every Δc and every seed.

Pure functions of the tables `dynamics.learning_times` and `dynamics.speeds` return (a censored run
learns at NEVER: speed 0), tested on hand-made tables where each rule holds and where it fails.
Used by: chapters 1 (HC1 across seeds) and 2.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .dynamics import first_above, flip_point

RHO_MIN = 0.9  # HC2: the paper's own T_color (Fig. 3, Δs 0.4) rank at ρ = 0.96 (4.4k and 4.5k swap)
JOINT_MIN = 0.8  # HC1: the held-out class is generated (the book's rule for "learned")


def spearman(x, y) -> float:
    """Spearman ρ with ties at their mean rank (NEVER, infinite, ranks last); NaN where either side is
    constant (all tied: no order to measure)."""
    rx, ry = stats.rankdata(np.asarray(x, float)), stats.rankdata(np.asarray(y, float))
    if len(rx) < 2 or np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def order_table(speeds: pd.DataFrame) -> pd.DataFrame:
    """Per Δc (one Δs, one threshold): each concept's mean learning time, its censored seeds and the
    concept learned first, by mean speed (a censored seed counts as speed 0: slower than any learner)."""
    wide = speeds.pivot_table(index="delta_color", columns="concept", values=["time", "speed", "censored"])
    sc, ss = wide["speed"]["color"], wide["speed"]["size"]
    return pd.DataFrame({
        "Δc": wide.index, "T color": wide["time"]["color"].values, "T size": wide["time"]["size"].values,
        "speed color": sc.values, "speed size": ss.values,
        "censored seeds (color / size)": [f"{int(a)} / {int(b)}" for a, b in
                                          zip(wide["censored"]["color"], wide["censored"]["size"])],
        "learned first": np.where(sc > ss, "color", np.where(ss > sc, "size", "tie"))})


def flip(order: pd.DataFrame) -> float | None:
    """The Δc where the learning order flips, on mean speeds (1 / speed: a time, +inf where censored)."""
    with np.errstate(divide="ignore"):
        return flip_point(order["Δc"].values, 1 / order["speed color"].values, 1 / order["speed size"].values)


def order_holds(order: pd.DataFrame) -> bool:
    """HC3's order: size first at the lowest Δc, color first at the highest."""
    return bool(len(order)) and order["learned first"].iloc[0] == "size" and order["learned first"].iloc[-1] == "color"


def flip_holds(flip_at: float | None, grid, paper_range) -> bool:
    """HC3's location: the flip lies within one median grid spacing of the middle of the paper's
    range (finer than a grid spacing cannot be resolved); no flip fails."""
    grid = np.sort(np.unique(np.asarray(grid, dtype=float)))
    if flip_at is None or len(grid) < 2:
        return False
    return bool(abs(flip_at - np.mean(paper_range)) <= np.median(np.diff(grid)))


def speed_rank(color_speeds: pd.DataFrame, x: str = "pixel_signal") -> dict:
    """HC2: Spearman ρ of color learning speed against signal over the grid (seeds averaged), and the
    highest ρ the censoring allows: signals censored in every seed tie at speed 0, however the
    learned ones are ordered."""
    s = color_speeds.sort_values(x)
    k = int((s.speed == 0).sum())
    best = np.r_[np.zeros(k), np.arange(1, len(s) - k + 1)]
    rho = spearman(s[x], s.speed)
    return {"rho": rho, "ceiling": spearman(s[x], best) if k < len(s) else float("nan"),
            "holds": bool(np.isfinite(rho) and rho >= RHO_MIN)}


def per_seed(times: pd.DataFrame, threshold: float, delta_size: float) -> pd.DataFrame:
    """ρ of color speed against Δc and the flip, seed by seed: how much of the seed-averaged verdict
    one draw carries."""
    t = times[(times.threshold == threshold) & (times.delta_size == delta_size)]
    rows = []
    for seed, g in t.groupby("seed"):
        w = g.pivot_table(index="delta_color", columns="concept", values="step", aggfunc="first").sort_index()
        rows.append({"seed": seed, "rho": spearman(w.index, 1 / w["color"].astype(float)),
                     "flip": flip_point(w.index.values, w["color"].values, w["size"].values)})
    return pd.DataFrame(rows, columns=["seed", "rho", "flip"])


def never_learned(color_speeds: pd.DataFrame, max_delta_color: float) -> dict:
    """HC4: every seed censored (color never learned) at Δc ≤ `max_delta_color`, none above. Needs Δc
    on both sides; the grid's Δc censored in every seed are listed."""
    weak = color_speeds[color_speeds.delta_color <= max_delta_color]
    strong = color_speeds[color_speeds.delta_color > max_delta_color]
    ok = (bool(len(weak) and len(strong)) and bool((weak.censored == weak.seeds).all())
          and bool((strong.censored == 0).all()))
    return {"never": color_speeds[color_speeds.censored == color_speeds.seeds].delta_color.tolist(), "holds": ok,
            "censored": dict(zip(color_speeds.delta_color, color_speeds.censored))}


def final_joint(cs: pd.DataFrame, prompt: str, delta_color: float, delta_size: float) -> dict:
    """HC1 across seeds: `prompt`'s joint accuracy at each run's last checkpoint at one (Δc, Δs), by
    seed, and the first checkpoint it reaches JOINT_MIN (NEVER if none); holds if every seed ends at
    or above JOINT_MIN."""
    at = cs[(cs.prompt == prompt) & np.isclose(cs.delta_color, delta_color) & np.isclose(cs.delta_size, delta_size)]
    at = at.sort_values("step")
    end = at[at.step == at.groupby("run").step.transform("max")]
    joint = dict(sorted(zip(end.seed, end.joint)))
    first = {seed: first_above(g.step, g.joint, JOINT_MIN).step for seed, g in at.groupby("seed")}
    return {"joint": joint, "first": first, "learned": sum(j >= JOINT_MIN for j in joint.values()),
            "seeds": len(joint), "holds": bool(joint) and all(j >= JOINT_MIN for j in joint.values())}
