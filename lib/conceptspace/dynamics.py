"""Learning dynamics read off concept-space tables: learning times, emergence times, turns.

Pure functions of arrays and tables (no models), so they are tested on hand-made trajectories.
Checkpoints are spaced quadratically, so every time here is quantized to a checkpoint step.
Used by: chapters 1-4, 6.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.ndimage import binary_erosion, gaussian_filter1d


@dataclass(frozen=True)
class Crossing:
    """When a curve crossed a threshold for good; `step` is None (censored) if it never did."""
    step: int | None
    threshold: float

    @property
    def censored(self) -> bool:
        return self.step is None


def smooth(values, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the checkpoint index (the paper's gaussian_filter1d)."""
    values = np.asarray(values, dtype=float)
    return gaussian_filter1d(values, sigma, axis=0, mode="nearest") if sigma > 0 else values


def learning_time(steps, accuracy, threshold: float = 0.9, sigma: float = 1.5) -> Crossing:
    """The paper's learning time (spec §3.3): smooth accuracy over checkpoints (σ = 1.5), then the
    first checkpoint whose neighbours on both sides are also above `threshold` (a binary erosion
    with a width-3 structure; the first and last checkpoints cannot qualify). Censored if never.
    """
    steps = np.asarray(steps)
    above = smooth(accuracy, sigma) > threshold
    hits = np.flatnonzero(binary_erosion(above, structure=np.ones(3)))
    return Crossing(int(steps[hits[0]]) if len(hits) else None, threshold)


def emergence_time(steps, capability, threshold: float = 0.8, sigma: float = 1.0, run_length: int = 3) -> Crossing:
    """First checkpoint from which the smoothed capability stays ≥ threshold for `run_length`
    consecutive checkpoints (chapter 4's definition). Censored if never.
    """
    steps = np.asarray(steps)
    above = smooth(capability, sigma) >= threshold
    for i in range(len(above) - run_length + 1):
        if above[i:i + run_length].all():
            return Crossing(int(steps[i]), threshold)
    return Crossing(None, threshold)


def first_above(steps, values, threshold: float) -> Crossing:
    """The first checkpoint where the raw curve reaches `threshold` (no smoothing)."""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return Crossing(int(np.asarray(steps)[hits[0]]) if len(hits) else None, threshold)


def learning_times(cs: pd.DataFrame, concepts, prompt: str, thresholds=(0.9, 0.8), sigma: float = 1.5,
                   keys=("run",)) -> pd.DataFrame:
    """Learning time of each concept for one prompt (the held-out class), per run and threshold.

    `cs` is a concept-space table with a `run` column (and any other `keys`). Runs that never learn
    a concept keep `step` = NaN and `censored` = True, with `last_step` the end of their training.
    """
    rows = []
    for key, df in cs[cs["prompt"] == prompt].groupby(list(keys)):
        df = df.sort_values("step")
        key = key if isinstance(key, tuple) else (key,)
        for concept in concepts:
            for thr in thresholds:
                t = learning_time(df["step"], df[f"acc_{concept}"], thr, sigma)
                rows.append({**dict(zip(keys, key)), "concept": concept, "threshold": thr,
                             "step": np.nan if t.censored else t.step, "censored": t.censored,
                             "last_step": int(df["step"].max())})
    return pd.DataFrame(rows)


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-interval over seeds (wide for few seeds, as it should be)."""
    v = np.asarray(values, dtype=float)
    m = float(v.mean())
    if len(v) < 2:
        return m, m, m
    half = stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return m, m - half, m + half


def speeds(times: pd.DataFrame, by) -> pd.DataFrame:
    """Learning speed 1/T per group, averaged over seeds with a CI; a censored run counts as speed 0
    (it learned slower than 1/last_step), and the number of censored seeds is reported."""
    rows = []
    for key, df in times.groupby(list(by)):
        key = key if isinstance(key, tuple) else (key,)
        speed = np.where(df["censored"], 0.0, 1.0 / df["step"].fillna(np.inf))
        m, lo, hi = mean_ci(speed)
        steps = df["step"].fillna(df["last_step"])  # censored runs at their last step: a lower bound
        rows.append({**dict(zip(by, key)), "speed": m, "speed_lo": max(lo, 0.0), "speed_hi": hi,
                     "time": float(steps.mean()), "seeds": len(df), "censored": int(df["censored"].sum())})
    return pd.DataFrame(rows)


def flip_point(x, first, second) -> float | None:
    """Where `second − first` changes sign along x (linear interpolation between grid points);
    None if it never does. Used for the Δc at which the learning order of two concepts flips."""
    x, diff = np.asarray(x, dtype=float), np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    for i in range(len(x) - 1):
        if np.isnan(diff[i]) or np.isnan(diff[i + 1]) or np.sign(diff[i]) == np.sign(diff[i + 1]):
            continue
        if not (np.isfinite(diff[i]) and np.isfinite(diff[i + 1])):
            return float((x[i] + x[i + 1]) / 2)  # a censored side: only the interval is known
        return float(x[i] + (x[i + 1] - x[i]) * diff[i] / (diff[i] - diff[i + 1]))
    return None
