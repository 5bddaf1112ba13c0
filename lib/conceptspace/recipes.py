"""Both recipes side by side (the page "Does the recipe matter?"): chapter 1's experiment trained with
the diffusers recipe and with the paper's (`model.recipe`), seed by seed, and what each learns when.

The book's own question, not a claim of the papers: do the phenomena depend on the recipe? Pure
functions of concept-space tables apart from the run list. Used by: book/recipes.md.
"""
from __future__ import annotations

import pandas as pd

from .config import Experiment, RunConfig
from .dynamics import NEVER, first_above, learning_time

RECIPES = ("diffusers", "paper")


def run_configs(ex: Experiment, seeds) -> list[RunConfig]:
    """Chapter 1's run under each recipe and seed: the diffusers ones are chapter 2's runs at this Δc."""
    return [ex.run.with_changes(**{"model.recipe": r, "train.seed": s}) for r in RECIPES for s in seeds]


def comparison(cs: pd.DataFrame, configs: list[RunConfig], held_out: str, concepts, summaries: dict) -> pd.DataFrame:
    """Per recipe and seed: the held-out class's learning time of each concept (smoothed accuracy > 0.9,
    for good), the first step it is generated (joint ≥ 0.8), its final joint accuracy and the seconds
    per training step (`summaries`: run id → the run's done record)."""
    rows = []
    for cfg in configs:
        run_id = cfg.run_id()
        ho = cs[(cs.run == run_id) & (cs.prompt == held_out)].sort_values("step")
        if not len(ho):
            continue
        done = summaries.get(run_id, {})
        rows.append({"recipe": cfg.model.recipe, "seed": cfg.train.seed,
                     **{f"T {c}": learning_time(ho.step, ho[f"acc_{c}"], 0.9).step for c in concepts},
                     "generated at": first_above(ho.step, ho.joint, 0.8).step,
                     "final joint": float(ho.joint.iloc[-1]),
                     "s/step": done.get("train_seconds", float("nan")) / max(done.get("steps", 1), 1)})
    return pd.DataFrame(rows, columns=["recipe", "seed", *[f"T {c}" for c in concepts], "generated at",
                                       "final joint", "s/step"])


def learned_first(row: pd.Series, concepts) -> str:
    """The concept with the earlier learning time; 'tie' if none is earlier (both never, or equal)."""
    times = {c: row[f"T {c}"] for c in concepts}
    best = min(times.values())
    first = [c for c, t in times.items() if t == best]
    return first[0] if len(first) == 1 and best != NEVER else "tie"


def by_recipe(table: pd.DataFrame, concepts, joint_min: float = 0.8) -> pd.DataFrame:
    """Per recipe: seeds that generate the held-out class at the end (final joint ≥ `joint_min`) and
    whether every seed does (HC1's rule), the median step it is first generated (NEVER if in most seeds
    never), the concept learned first in each seed, and the median s/step."""
    rows = []
    for recipe, g in table.groupby("recipe", sort=False):
        learned = int((g["final joint"] >= joint_min).sum())
        rows.append({"recipe": recipe, "seeds": len(g), "learned at the end": learned, "every seed": learned == len(g),
                     "median step generated": float(g["generated at"].astype(float).median()),
                     "learned first": ", ".join(learned_first(r, concepts) for _, r in g.iterrows()),
                     "median s/step": float(g["s/step"].median()), "final joint": dict(zip(g.seed, g["final joint"]))})
    return pd.DataFrame(rows, columns=["recipe", "seeds", "learned at the end", "every seed", "median step generated",
                                       "learned first", "median s/step", "final joint"])
