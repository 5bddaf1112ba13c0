"""Underspecification (chapter 7): prompts that leave a concept out delay and entangle its learning
(Park et al. 2024, Fig. 2's mixing function M and its underspecification experiment; references:
underspecification).

The paper's own text of the experiment could not be read, and its official code has none, so the setup
is this book's reconstruction: the held-out class is small-blue; the **masked class** is the training
class that shares the held-out class's other value (small-red, for color); in a fraction p of the masked
class's training prompts the **masked concept** (color) is left out: its conditioning slots take the null
value, its images are unchanged (`data.mask`, `data.mask_classes`). Only red ever goes with small in the
images, so a prompt that names small and no color is, in the data, a prompt for red.

Where a CelebA folder is given, the same masking on real faces: chapter 6's run with an attribute left
out of the prompts of the class sharing the held-out class's other attribute (`celeba_configs`).

Pure functions of concept-space tables, apart from the run lists and the prompts. A run that never learns
the held-out class has `dynamics.NEVER`. Used by: chapter 7.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import capability, celeba, dynamics, prompting
from .concept_signal import spearman
from .config import DataConfig, Experiment, RunConfig
from .data import class_name, value_name

RHO_MIN = 0.8  # "steps grow with p": Spearman ρ of the median steps over p at least this (5 values: one swap)


def masked_class(data: DataConfig, concept: str) -> tuple:
    """The training class that differs from the held-out class in `concept` only (small-red for color)."""
    cls = list(data.held_out[0])
    i = data.concepts.index(concept)
    cls[i] = 1 - cls[i]
    return tuple(cls)


def mask_changes(data: DataConfig, concept: str, fraction: float) -> dict:
    """The settings that leave `concept` out of a fraction of the masked class's prompts ({} at 0: the
    unmasked run, with its own id)."""
    if fraction == 0:
        return {}
    return {"data.mask": [float(fraction) if c == concept else 0.0 for c in data.concepts],
            "data.mask_classes": [list(masked_class(data, concept))]}


def underspec_configs(ex: Experiment) -> list[RunConfig]:
    """Chapter 7's runs: every masked fraction p × seed, around the profile's run (at `underspec.delta_color`
    where it is set). Its p = 0 runs are the unmasked runs of other chapters where they share Δc and seed."""
    u = ex.underspec
    base = ex.run if u.delta_color == 0 else ex.run.with_changes(**{"data.delta_color": u.delta_color})
    return [base.with_changes(**mask_changes(base.data, u.concept, p), **{"train.seed": seed})
            for p in u.fractions for seed in u.seeds]


def face_concept(ex: Experiment) -> str:
    """The CelebA attribute the masked prompts leave out: `underspec.celeba_concept`, else the first of
    `celeba.attributes` (Male: gender)."""
    return ex.underspec.celeba_concept or ex.celeba.attributes[0]


def celeba_configs(ex: Experiment, folder: str) -> list[RunConfig]:
    """The real-face analogue (where a CelebA folder is given): chapter 6's CelebA run with `face_concept`
    left out of a fraction p of the prompts of the class that shares the held-out class's other attribute
    (male-smiling, for Male), p in `underspec.celeba_fractions`, at chapter 6's seed only (each run is hours
    of GPU): p = 0 is chapter 6's run."""
    base = celeba.run_config(ex.run, ex.celeba, folder)
    return [base.with_changes(**mask_changes(base.data, face_concept(ex), p)) for p in ex.underspec.celeba_fractions]


def fraction_of(cfg: RunConfig, concept: str) -> float:
    """The fraction p of the masked class's prompts that leave `concept` out in this run."""
    return float(cfg.data.mask[cfg.data.concepts.index(concept)]) if cfg.data.mask else 0.0


def chapter_prompts(cfg: RunConfig, ex: Experiment) -> list:
    """What chapter 7 asks a run besides the class prompts: the masked class's prompt with the concept left
    out and, in the runs at p = 0 and p = 1, chapter 4's over-prompts and latent edits."""
    u, d = ex.underspec, cfg.data
    out = [prompting.underspecified_prompt(d, masked_class(d, u.concept), u.concept, ex.eval.samples_held_out)]
    if fraction_of(cfg, u.concept) in (0.0, 1.0):
        out += capability.intervention_prompts(cfg, ex.capability)
    return out


def celeba_prompts(cfg: RunConfig, ex: Experiment) -> list:
    """What the CelebA runs are asked besides the class prompts: the masked class's prompt with `face_concept`
    left out (the prompt those runs were trained on)."""
    concept, d = face_concept(ex), cfg.data
    return [prompting.underspecified_prompt(d, masked_class(d, concept), concept, ex.eval.samples_held_out)]


def with_fraction(table: pd.DataFrame, configs: list[RunConfig], concept: str) -> pd.DataFrame:
    """The concept-space table with each run's masked fraction p as a column `fraction`."""
    return table.assign(fraction=table.run.map({c.run_id(): fraction_of(c, concept) for c in configs}))


def steps_to_learn(table: pd.DataFrame, held_out: str, threshold: float = 0.8, sigma: float = 1.5) -> pd.DataFrame:
    """Per run: the first checkpoint from which the held-out prompt's joint accuracy stays above `threshold`
    for good (`dynamics.learning_time`), NEVER (censored) if it never does, and the run's last step."""
    rows = []
    naive = table[(table.prompt == held_out) & (table.method == "naive")]
    for (run, fraction, seed), df in naive.groupby(["run", "fraction", "seed"]):
        df = df.sort_values("step")
        t = dynamics.learning_time(df.step, df.joint, threshold, sigma)
        rows.append({"run": run, "fraction": fraction, "seed": seed, "step": t.step, "censored": t.censored,
                     "last_step": int(df.step.max())})
    return pd.DataFrame(rows, columns=["run", "fraction", "seed", "step", "censored", "last_step"])


def delay_table(times: pd.DataFrame) -> pd.DataFrame:
    """Per masked fraction: the median step over seeds (NEVER where half the seeds or more never learn),
    the mean with a t-interval over seeds counting a censored seed at its last step (a lower bound), and the
    number of censored seeds."""
    rows = []
    for fraction, g in times.groupby("fraction"):
        bounded = g.step.where(~g.censored, g.last_step).astype(float)
        mean, lo, hi = dynamics.mean_ci(bounded)
        rows.append({"fraction": fraction, "median": float(np.median(g.step.astype(float))), "mean": mean,
                     "lo": lo, "hi": hi, "seeds": len(g), "censored": int(g.censored.sum())})
    return pd.DataFrame(rows, columns=["fraction", "median", "mean", "lo", "hi", "seeds", "censored"])


def control_rule(times: pd.DataFrame) -> dict:
    """The unmasked runs (p = 0) learn the held-out class within the run in every seed: where they do not,
    no delay can be told from a run that is simply too short."""
    ctl = times[times.fraction == 0]
    return {"values": {f"seed {s}": t for s, t in zip(ctl.seed, ctl.step)}, "learned": int((~ctl.censored).sum()),
            "seeds": len(ctl),
            "holds": bool(len(ctl)) and not bool(ctl.censored.any())}


def delay_rule(times: pd.DataFrame, rho_min: float = RHO_MIN) -> dict:
    """HC16 as judged here: the median steps to learn rise with p (Spearman ρ ≥ `rho_min` over the p grid)
    and the most-masked runs learn later than the unmasked ones (a median of NEVER is later than any step;
    an unmasked median of NEVER leaves no delay to see, and fails). Also ρ of each seed alone."""
    delays = delay_table(times).sort_values("fraction")
    rho = spearman(delays.fraction, delays["median"])
    per_seed = {seed: spearman(g.fraction, g.step) for seed, g in times.groupby("seed")}
    first, last = (delays["median"].iloc[0], delays["median"].iloc[-1]) if len(delays) else (np.nan, np.nan)
    return {"rho": rho, "per_seed": per_seed, "first": first, "last": last,
            "holds": bool(len(delays) > 1 and rho >= rho_min and last > first)}


def final_points(table: pd.DataFrame, prompt: str, concepts) -> pd.DataFrame:
    """Per run: where `prompt` lands in concept space at the run's last checkpoint, and the class it
    generates there (each concept's value with P ≥ 0.5)."""
    df = table[table.prompt == prompt]
    last = df[df.step == df.groupby("run").step.transform("max")]
    cols = ["run", "fraction", "seed", "step", *[f"p_{c}" for c in concepts]]
    out = last[cols].sort_values(["fraction", "seed"]).reset_index(drop=True)
    out["yields"] = [tuple(int(r[f"p_{c}"] >= 0.5) for c in concepts) for _, r in out.iterrows()]
    return out


def correlated_rule(points: pd.DataFrame, data: DataConfig, concept: str) -> dict:
    """HC18 as judged here: in every run at p = 1 the fully specified held-out prompt generates the masked
    class (the correlated value of the masked concept, the asked value of the others) at the last
    checkpoint. Fails where no run has p = 1."""
    full = points[points.fraction == 1.0]
    want = masked_class(data, concept)
    names = {f"seed {r.seed}": class_name(data, r.yields) for r in full.itertuples()}
    return {"values": names, "target": class_name(data, want),
            "holds": bool(len(full)) and all(tuple(y) == want for y in full.yields)}


def yielded_value(points: pd.DataFrame, data: DataConfig, concept: str) -> dict:
    """Per masked fraction and seed: the value of `concept` the prompt generates at the last checkpoint."""
    i = data.concepts.index(concept)
    return {f"p {r.fraction:g} seed {r.seed}": value_name(concept, r.yields[i]) for r in points.itertuples()}


def intervention_table(curves: pd.DataFrame, threshold: float = 0.8) -> pd.DataFrame:
    """Per masked fraction and prompting method: the median capability at the last checkpoint over seeds,
    and the fraction of seeds where it emerges (`dynamics.emergence_time` at `threshold`)."""
    rows = []
    for (fraction, method), g in curves.groupby(["fraction", "method"]):
        finals, emerged = [], []
        for _, c in g.groupby("seed"):
            c = c.sort_values("step")
            finals.append(float(c.capability.iloc[-1]))
            emerged.append(not dynamics.emergence_time(c.step, c.capability, threshold).censored)
        rows.append({"fraction": fraction, "method": method, "final capability": float(np.median(finals)),
                     "seeds emerged": float(np.mean(emerged)), "seeds": len(finals)})
    return pd.DataFrame(rows, columns=["fraction", "method", "final capability", "seeds emerged", "seeds"])
