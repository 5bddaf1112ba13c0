"""Learning dynamics read off concept-space tables: learning times, emergence times, turns.

Pure functions of arrays and tables (no models), so they are tested on hand-made trajectories.
Checkpoints are spaced quadratically, so every time here is quantized to a checkpoint step.
**Never learned** has one encoding everywhere: `NEVER` (+inf), a time after the end of any run, so
orders rank it last, ratios against it are infinite and speeds 1/T are 0; `censored` marks it.
Used by: chapters 1-4, 6 (chapter 3's per-run analysis is in `sudden_turns`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from scipy.ndimage import binary_erosion, gaussian_filter1d

NEVER = math.inf  # the step of something that never happened within the run


@dataclass(frozen=True)
class Crossing:
    """When a curve crossed a threshold for good; `step` is NEVER (censored) if it never did."""
    step: float
    threshold: float

    @property
    def censored(self) -> bool:
        return self.step == NEVER


def smooth(values, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the checkpoint index (the paper's gaussian_filter1d)."""
    values = np.asarray(values, dtype=float)
    return gaussian_filter1d(values, sigma, axis=0, mode="nearest") if sigma > 0 else values


def learning_time(steps, accuracy, threshold: float = 0.9, sigma: float = 1.5, for_good: bool = True) -> Crossing:
    """The paper's learning time (Park et al. 2024, §4.1; references: learning-time): smooth accuracy over
    checkpoints (σ = 1.5), then the first checkpoint whose neighbours on both sides are also above
    `threshold` (a binary erosion with a width-3 structure; the first and last checkpoints cannot
    qualify). Censored if never.

    `for_good` (our default) keeps only such checkpoints after the curve's last dip below the
    threshold. Why: the first checkpoints' samples are still blobs that the probe may read as either
    value of a concept (P(blue) ≈ 0.9 at step 150, then falling to 0.1 as the model memorizes red),
    and the paper's rule would call that a learning time. On curves that rise once, both agree.
    """
    steps = np.asarray(steps)
    above = smooth(accuracy, sigma) > threshold
    hits = np.flatnonzero(binary_erosion(above, structure=np.ones(3)))
    if for_good:
        below = np.flatnonzero(~above)
        hits = hits[hits > below[-1]] if len(below) else hits
    return Crossing(int(steps[hits[0]]) if len(hits) else NEVER, threshold)


def emergence_time(steps, capability, threshold: float = 0.8, sigma: float = 1.0, run_length: int = 3) -> Crossing:
    """First checkpoint from which the smoothed capability stays ≥ threshold for `run_length`
    consecutive checkpoints (chapter 4's definition). Censored if never.
    """
    steps = np.asarray(steps)
    above = smooth(capability, sigma) >= threshold
    for i in range(len(above) - run_length + 1):
        if above[i:i + run_length].all():
            return Crossing(int(steps[i]), threshold)
    return Crossing(NEVER, threshold)


def first_above(steps, values, threshold: float) -> Crossing:
    """The first checkpoint where the raw curve reaches `threshold` (no smoothing)."""
    hits = np.flatnonzero(np.asarray(values) >= threshold)
    return Crossing(int(np.asarray(steps)[hits[0]]) if len(hits) else NEVER, threshold)


def learning_times(cs: pd.DataFrame, concepts, prompt: str, thresholds=(0.9, 0.8), sigma: float = 1.5,
                   keys=("run",), for_good: bool = True) -> pd.DataFrame:
    """Learning time of each concept for one prompt (the held-out class), per run and threshold.

    `cs` is a concept-space table with a `run` column (and any other `keys`). Runs that never learn
    a concept keep `step` = NEVER and `censored` = True, with `last_step` the end of their training.
    """
    rows = []
    for key, df in cs[cs["prompt"] == prompt].groupby(list(keys)):
        df = df.sort_values("step")
        key = key if isinstance(key, tuple) else (key,)
        for concept in concepts:
            for thr in thresholds:
                t = learning_time(df["step"], df[f"acc_{concept}"], thr, sigma, for_good)
                rows.append({**dict(zip(keys, key)), "concept": concept, "threshold": thr,
                             "step": t.step, "censored": t.censored,
                             "last_step": int(df["step"].max())})
    return pd.DataFrame(rows)


def learning_order(times: pd.DataFrame, by: str = "class", step: str = "learned_step") -> pd.Series:
    """Median learning step per group, earliest first. A run that never learned counts as learning
    after its end (NEVER): dropping it would rank a class that half the runs never learn by its few
    fast runs. Groups not learned in at least half their runs tie at NEVER."""
    return times.assign(_t=times[step].astype(float)).groupby(by)["_t"].median().sort_values()


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
        speed = 1.0 / df["step"].astype(float)  # NEVER: speed 0
        m, lo, hi = mean_ci(speed)
        steps = df["step"].where(~df["censored"], df["last_step"])  # censored runs at their last step: a lower bound
        rows.append({**dict(zip(by, key)), "speed": m, "speed_lo": max(lo, 0.0), "speed_hi": hi,
                     "time": float(steps.mean()), "seeds": len(df), "censored": int(df["censored"].sum())})
    return pd.DataFrame(rows)


def flip_point(x, first, second) -> float | None:
    """Where `second − first` changes sign along x (linear interpolation between grid points);
    None if it never does. Used for the Δc at which the learning order of two concepts flips."""
    with np.errstate(invalid="ignore"):  # two censored sides: inf − inf, skipped below
        x, diff = np.asarray(x, dtype=float), np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    for i in range(len(x) - 1):
        if np.isnan(diff[i]) or np.isnan(diff[i + 1]) or np.sign(diff[i]) == np.sign(diff[i + 1]):
            continue
        if not (np.isfinite(diff[i]) and np.isfinite(diff[i + 1])):
            return float((x[i] + x[i + 1]) / 2)  # a censored side: only the interval is known
        return float(x[i] + (x[i + 1] - x[i]) * diff[i] / (diff[i] - diff[i + 1]))
    return None


@dataclass(frozen=True)
class Turn:
    """A sudden turn of a concept-space trajectory (chapter 3), or its absence (`step` None)."""
    step: int | None
    angle: float          # degrees between the directions before and after the turn
    heading: tuple | None  # the corner the trajectory was heading for before the turn
    fit_gain: float       # 1 − (two-segment residual / one-segment residual): how much a kink explains

    @property
    def found(self) -> bool:
        return self.step is not None


def _chord_residual(points: np.ndarray) -> float:
    """Squared distances of points from the chord joining the first and the last."""
    a, b = points[0], points[-1]
    d = b - a
    n = np.linalg.norm(d)
    if n < 1e-12:
        return float(((points - a) ** 2).sum())
    normal = np.array([-d[1], d[0]]) / n
    return float((((points - a) @ normal) ** 2).sum())


def _angle(u: np.ndarray, v: np.ndarray) -> float:
    cos = u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)
    return float(np.degrees(np.arccos(np.clip(cos, -1, 1))))


def detect_turn(steps, points, sigma: float = 1.0, min_angle: float = 45.0, min_travel: float = 0.15,
                min_gain: float = 0.5, corners=((0, 0), (0, 1), (1, 0), (1, 1))) -> Turn:
    """The break point of the best two-segment fit to the smoothed trajectory.

    The trajectory (checkpoints × 2, in concept space) is smoothed along the checkpoint index; every
    interior checkpoint k is tried as the vertex of a polyline start → p_k → end, and the one with the
    smallest squared distance of the points to their segment wins. It is a turn when both segments
    travel at least `min_travel`, they meet at `min_angle` degrees or more, and the kink removes at
    least `min_gain` of a straight line's residual; otherwise there is no turn (a straight or
    gently curving path). `heading` is the corner best aligned with the first segment.
    """
    steps = np.asarray(steps)
    p = smooth(np.asarray(points, dtype=float), sigma)
    if len(p) < 4:
        return Turn(None, 0.0, None, 0.0)
    straight = _chord_residual(p)
    best_k, best = None, np.inf
    for k in range(1, len(p) - 1):
        r = _chord_residual(p[: k + 1]) + _chord_residual(p[k:])
        if r < best:
            best_k, best = k, r
    before, after = p[best_k] - p[0], p[-1] - p[best_k]
    angle = _angle(before, after)
    gain = 1 - best / straight if straight > 1e-12 else 0.0
    if min(np.linalg.norm(before), np.linalg.norm(after)) < min_travel or angle < min_angle or gain < min_gain:
        return Turn(None, angle, None, gain)
    heading = min(corners, key=lambda c: _angle(before, np.asarray(c, float) - p[0]))
    return Turn(int(steps[best_k]), angle, tuple(heading), gain)


def speed_along(steps, points, sigma: float = 1.0) -> np.ndarray:
    """|dC/dt|: the speed of a trajectory through concept space per step (the paper's dC/dt)."""
    p = smooth(np.asarray(points, dtype=float), sigma)
    grad = np.gradient(p, np.asarray(steps, dtype=float), axis=0)
    return np.linalg.norm(grad, axis=1)


def saturation_step(steps, distances_sq, threshold: float = 0.01) -> Crossing:
    """Training saturation (references: turns): the first checkpoint where the mean squared distance of the
    training classes to their corners falls below `threshold`."""
    return first_above(steps, -np.asarray(distances_sq), -threshold)


def training_saturation(cs: pd.DataFrame, train_prompts, concepts, threshold: float = 0.01) -> Crossing:
    """`saturation_step` of one run's concept-space table: its training classes' mean squared distance
    to their corners, over checkpoints (the original code's marker of the turn; references: turns)."""
    tr = cs[cs.prompt.isin(list(train_prompts))]
    dist = sum((tr[f"p_{c}"] - tr[f"target_{c}"]) ** 2 for c in concepts).groupby(tr.step).mean()
    return saturation_step(dist.index, dist.values, threshold)


def capability(cs: pd.DataFrame, target: dict, keys=("run",)) -> pd.DataFrame:
    """The held-out class's capability under each prompting method, per checkpoint (references: over-prompting):
    the best of the method's prompts by `prod` (mean P(target value) multiplied over concepts).
    `target` maps each concept to the held-out class's value, e.g. {"color": 1, "size": 1}."""
    mask = np.logical_and.reduce([cs[f"target_{c}"] == v for c, v in target.items()])
    best = cs[mask].groupby([*keys, "step", "method"], as_index=False)["prod"].max()
    return best.rename(columns={"prod": "capability"})


def soft_accuracy(p, target) -> np.ndarray:
    """The paper's soft accuracy (references: soft-accuracy): sigmoid(0.1 / |target − p|); 0.8 ⇔
    |target − p| < 0.072."""
    gap = np.abs(np.asarray(target, dtype=float) - np.asarray(p, dtype=float))
    return 1 / (1 + np.exp(-0.1 / np.maximum(gap, 1e-9)))
