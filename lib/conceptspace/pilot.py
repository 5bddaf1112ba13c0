"""Pilot: which training recipe learns the held-out class in the fewest FLOPs, and in how many seeds.

    python -m conceptspace.pilot --profile cpu --candidates profile,ema-0.99 --seeds 0,1,2 --delta-color 0.4,0.3 \
        --set eval.sampler_steps=25   # a setting shared by every candidate (evaluation is not a run setting)

Each candidate is a named set of config overrides on the profile's run (`CANDIDATES`, or
`name:key=value;key=value` on the command line). Every candidate × Δc × seed is trained and
evaluated through the sweep (runs land in the run store, so a pilot resumes and the book reuses what
it trained), and each run is scored by the book's own rule for "generated": the held-out class's joint
accuracy learned for good at ≥ 0.8 (dynamics.learning_time). FLOPs to learn = learned step × the
FLOPs of one training step (torch's counter), so candidates of different shapes and batch sizes compare
on the machine-independent cost; s/step (wall, as trained here, with the CPU model) is beside it.
Two more scores guard against a recipe that learns the held-out class cheaply but leaves chapter 2
nothing to measure: the run's headroom (the fraction of the run left once every training class is
learned) and, over three or more Δc, Spearman ρ of the held-out class's color speed against Δc (HC2).
A batch-32 recipe that won on TFLOP at Δc 0.4 lost both in the book (2026-12-03): its training classes
were learned at 1.7-2.2k of 2.4k steps and ρ fell to -0.4.
Used by: issue notes and the cpu profile's comment (profiles/cpu.yaml).
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import data
from .concept_signal import RHO_MIN, spearman
from .config import ConfigError, Experiment, RunConfig, experiment, parse_setting
from .dynamics import NEVER, learning_time, learning_times
from .plan import cpu_model

LEARNED_AT = 0.8  # the book's rule for "the held-out class is generated" (chapter 1, HC1)
CONCEPT_LEARNED_AT = 0.9  # a concept of it is learned: chapter 2's threshold (the paper's code)

CANDIDATES: dict[str, dict] = {
    "profile": {},
    "ema-0.99": {"train.ema_decay": 0.99},
    "lr-2e-3": {"train.learning_rate": 2e-3},
    "batch-32": {"train.batch_size": 32},
    "nuisance-0.1": {"data.nuisance": 0.1},
    "nuisance-0": {"data.nuisance": 0.0},
    "narrow": {"model.channels": [16, 32, 64]},
    "paper-recipe": {"model.recipe": "paper"},
}


def parse_candidate(text: str) -> tuple[str, dict]:
    """`name` from CANDIDATES, or `name:key=value;key=value` (values parsed as YAML scalars/lists)."""
    name, _, spec = text.partition(":")
    if not spec:
        if name not in CANDIDATES:
            raise ConfigError(f"candidate {name!r} is unknown; allowed: {sorted(CANDIDATES)} "
                              "or name:key=value;key=value")
        return name, CANDIDATES[name]
    overrides = {}
    for item in filter(None, spec.split(";")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"candidate {name!r}: {item!r} is not key=value")
        overrides[key.strip()] = parse_setting(value)
    return name, overrides


def split_candidates(text: str) -> list[str]:
    """The command line's comma list, keeping the commas inside a list value (`model.channels=[16, 32]`)."""
    return re.split(r",(?![^\[]*\])", text)


def pilot_experiment(profile: str, sets=()) -> Experiment:
    """The profile with `key=value` overrides shared by every candidate: evaluation settings
    (eval.sampler_steps) belong to the experiment, not to a run, so a candidate cannot carry them."""
    return experiment(profile, parse_candidate("set:" + ";".join(sets))[1] if sets else None)


def pilot_configs(ex: Experiment, candidates: dict[str, dict], seeds, delta_colors,
                  steps: int | None = None) -> list[tuple[str, RunConfig]]:
    """(candidate, run config) for every candidate × Δc × seed, on the profile's run; configs are
    validated here, before any compute."""
    out = []
    for name, overrides in candidates.items():
        base = ex.run.with_changes(**overrides, **({"train.steps": steps} if steps else {}))
        for dc in delta_colors:
            for seed in seeds:
                out.append((name, base.with_changes(**{"data.delta_color": dc, "train.seed": seed})))
    return out


def learned_step(cs: pd.DataFrame, prompt: str, threshold: float = LEARNED_AT) -> float:
    """One run's concept-space table: the step from which `prompt`'s joint accuracy stays ≥ threshold
    (the book's learning time, for good); NEVER if it never does."""
    h = cs[cs["prompt"] == prompt].sort_values("step")
    return learning_time(h["step"].to_numpy(), h["joint"].to_numpy(), threshold, for_good=True).step


def first_concept(one: pd.DataFrame, prompt: str, concepts) -> tuple[str, dict]:
    """Which of the held-out class's concepts one run learns first (accuracy ≥ 0.9 for good, chapter 2's
    rule), and each concept's step: a candidate that learns fast but only colour-first at every Δc
    loses chapter 3's memorize-then-turn regime. 'none' when no concept is learned; ties name both."""
    times = learning_times(one.assign(run="r"), concepts, prompt, thresholds=(CONCEPT_LEARNED_AT,))
    steps = {c: float(times[times.concept == c].step.iloc[0]) for c in concepts}
    soonest = min(steps.values(), default=NEVER)
    first = "none" if soonest == NEVER else "+".join(c for c in concepts if steps[c] == soonest)
    return first, steps


def score_runs(cs: pd.DataFrame, runs: pd.DataFrame, prompt: str, threshold: float = LEARNED_AT,
               concepts=(), training=()) -> pd.DataFrame:
    """One row per run: learned step, TFLOP to learn (inf if never), final joint accuracy, s/step; with
    `concepts` the concept learned first and each concept's step; with `training` (the training classes'
    prompts) the step by which all of them are learned (joint ≥ threshold for good) and the headroom,
    the fraction of the run left after it (0 if one never is).

    `cs`: concept-space table of many runs (a `run` column; `acc_<concept>` columns for `concepts`);
    `runs`: one row per run with columns run, candidate, delta_color, seed, step_flops (FLOP of one
    training step) and s_per_step.
    """
    rows = []
    for r in runs.itertuples(index=False):
        one = cs[cs["run"] == r.run]
        if one.empty:
            raise ValueError(f"run {r.run} ({r.candidate}, Δc {r.delta_color}, seed {r.seed}) has no "
                             "concept-space rows: was it evaluated?")
        step = learned_step(one, prompt, threshold)
        last = one[one["prompt"] == prompt].sort_values("step").iloc[-1]
        rows.append({"candidate": r.candidate, "delta_color": r.delta_color, "seed": r.seed, "run": r.run,
                     "learned_step": step, "learned": step != NEVER,
                     "tflop_to_learn": step * r.step_flops / 1e12, "final_joint": float(last["joint"]),
                     "last_step": int(last["step"]), "s_per_step": r.s_per_step})
        if concepts:
            first, steps = first_concept(one, prompt, concepts)
            rows[-1].update({"first": first, **{f"{c}_step": t for c, t in steps.items()}})
        if training:
            trained = max(learned_step(one, t, threshold) for t in training)
            rows[-1].update({"train_step": trained, "headroom": max(0.0, 1 - trained / rows[-1]["last_step"])})
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame) -> pd.DataFrame:
    """Per candidate and Δc: the fraction of seeds that learn, and median steps and TFLOP to learn
    (a seed that never learns counts as never, so a median over a minority of learners is inf)."""
    g = scores.groupby(["candidate", "delta_color"], sort=False)
    return pd.DataFrame({
        "seeds": g.size(), "learned": g["learned"].mean(),
        "median_step": g["learned_step"].median(), "median_tflop": g["tflop_to_learn"].median(),
        "median_final_joint": g["final_joint"].median(), "s_per_step": g["s_per_step"].median(),
        **({"median_headroom": g["headroom"].median()} if "headroom" in scores else {}),
    }).reset_index()


def signal_rank(scores: pd.DataFrame, concept: str = "color") -> pd.DataFrame:
    """Per candidate over its Δc (three or more): Spearman ρ of the held-out class's `concept` speed (1 /
    median step over seeds, 0 if never) against Δc, and whether it reaches chapter 2's RHO_MIN."""
    rows = []
    for name, g in scores.groupby("candidate", sort=False):
        med = g.groupby("delta_color")[f"{concept}_step"].median()
        if len(med) < 3:
            continue
        rho = spearman(med.index.to_numpy(), 1 / med.to_numpy())
        rows.append({"candidate": name, "delta_colors": len(med), f"rho_{concept}_speed": rho,
                     "holds": bool(np.isfinite(rho) and rho >= RHO_MIN)})
    return pd.DataFrame(rows, columns=["candidate", "delta_colors", f"rho_{concept}_speed", "holds"])


def best(summary: pd.DataFrame) -> str:
    """The candidate that learns in the most seeds (over all Δc), then in the fewest median TFLOP."""
    agg = summary.groupby("candidate", sort=False).agg(learned=("learned", "mean"), tflop=("median_tflop", "max"))
    return agg.sort_values(["learned", "tflop"], ascending=[False, True]).index[0]


def run_pilot(ex: Experiment, candidates: dict[str, dict], seeds, delta_colors, steps: int | None = None,
              store=None, workers: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every candidate run (through the sweep, into the store), then score them."""
    from .bench import train_step_flops
    from .store import Store
    from .sweep import concept_space_table, run_sweep
    store = store or Store()
    pairs = pilot_configs(ex, candidates, seeds, delta_colors, steps)
    configs = [c for _, c in pairs]
    run_sweep(configs, ex.eval, ex.probe, store, workers=workers, progress=progress)
    cs = concept_space_table(configs, ex.eval, ex.probe, store)
    flops = {}
    rows = []
    for name, cfg in pairs:
        if name not in flops:
            flops[name] = train_step_flops(cfg)
        summary = store.run(cfg).summary()
        rows.append({"run": cfg.run_id(), "candidate": name, "delta_color": cfg.data.delta_color,
                     "seed": cfg.train.seed, "step_flops": flops[name],
                     "s_per_step": summary["train_seconds"] / summary["steps"]})
    d = ex.run.data
    return score_runs(cs, pd.DataFrame(rows), data.class_name(d, d.held_out[0]), concepts=d.concepts,
                      training=[data.class_name(d, c) for c in data.training_classes(d)])


def _fmt(x: float, digits: int = 0) -> str:
    return "never" if not math.isfinite(x) else f"{x:,.{digits}f}"


def report(scores: pd.DataFrame) -> str:
    """Markdown tables: per seed, then per candidate and Δc."""
    per_seed = scores.assign(learned_step=scores.learned_step.map(_fmt),
                             tflop_to_learn=scores.tflop_to_learn.map(lambda x: _fmt(x, 2)))
    cols = ["candidate", "delta_color", "seed", "learned_step", "tflop_to_learn", "final_joint", "s_per_step"]
    concept_steps = [c for c in scores.columns if c.endswith("_step") and c not in cols + ["last_step"]]
    per_seed = per_seed.assign(**{c: per_seed[c].map(_fmt) for c in concept_steps})
    cols += (["first"] if "first" in scores else []) + concept_steps + (["headroom"] if "headroom" in scores else [])
    summary = summarize(scores)
    ranks = signal_rank(scores) if "color_step" in scores else pd.DataFrame()
    shown = summary.assign(median_step=summary.median_step.map(_fmt),
                           median_tflop=summary.median_tflop.map(lambda x: _fmt(x, 2)))
    return (per_seed[cols].to_markdown(index=False, floatfmt=".3f") + "\n\n"
            + shown.to_markdown(index=False, floatfmt=".3f")
            + ("\n\n" + ranks.to_markdown(index=False, floatfmt=".3f") if len(ranks) else "")
            + f"\n\nbest: {best(summary)}")


def main(argv=None) -> pd.DataFrame:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--candidates", default="profile", help=f"comma list of {sorted(CANDIDATES)} or name:k=v;k=v")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--delta-color", default="0.4")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the profile's)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", default="_build/pilot.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a profile override for every candidate, e.g. eval.sampler_steps=25 (repeatable)")
    args = p.parse_args(argv)
    candidates = dict(parse_candidate(c) for c in split_candidates(args.candidates))
    seeds = [int(s) for s in args.seeds.split(",")]
    delta_colors = [float(d) for d in args.delta_color.split(",")]
    ex = pilot_experiment(args.profile, args.set)
    pilot_configs(ex, candidates, seeds, delta_colors, args.steps)  # every bad override fails here, first
    print(f"pilot on {cpu_model()}: {len(candidates)} candidates × {len(delta_colors)} Δc × {len(seeds)} seeds",
          flush=True)
    scores = run_pilot(ex, candidates, seeds, delta_colors, args.steps, workers=args.workers)
    print(report(scores))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"cpu": cpu_model(), "profile": args.profile, "candidates": candidates,
                               "scores": scores.replace({np.inf: None}).to_dict("records")}, indent=1))
    return scores


if __name__ == "__main__":
    main()
