"""The both-recipes page's analysis (recipes.py) on hand-made concept-space tables."""
import numpy as np
import pandas as pd
from conceptspace import config, dynamics, recipes


def test_run_configs_share_the_diffusers_runs_and_switch_the_rest():
    ex = config.experiment("tiny")
    cfgs = recipes.run_configs(ex, [0, 1])
    assert [c.model.recipe for c in cfgs] == ["diffusers", "diffusers", "paper", "paper"]
    assert cfgs[0].run_id() == ex.run.run_id()  # chapter 1's run, not trained again
    assert cfgs[2].train.grad_clip == 0.01 and cfgs[2].train.ema_decay == 0.0  # the paper recipe's own


def table(configs, finals, learn_at):
    """The held-out class's curves: accuracies step up at `learn_at[i]` (None: never) to final joint `finals[i]`."""
    rows = []
    for cfg, final, at in zip(configs, finals, learn_at):
        for step in range(100, 1100, 100):
            on = at is not None and step >= at
            rows.append({"run": cfg.run_id(), "prompt": "small-blue", "step": step, "acc_color": 1.0 if on else 0.0,
                         "acc_size": 1.0, "joint": final if on else 0.0})
    return pd.DataFrame(rows)


def test_comparison_and_the_every_seed_rule():
    cfgs = recipes.run_configs(config.experiment("tiny"), [0, 1])
    cs = table(cfgs, [0.9, 0.95, 0.9, 0.5], [300, 400, 600, None])
    summaries = {c.run_id(): {"train_seconds": 10.0, "steps": 100} for c in cfgs}
    per_run = recipes.comparison(cs, cfgs, "small-blue", ("color", "size"), summaries)
    t = per_run["T color"].tolist()
    assert t[0] < t[1] < t[2] < dynamics.NEVER == t[3]  # learned in the order of the curves; the last never
    assert per_run["s/step"].tolist() == [0.1] * 4
    by = recipes.by_recipe(per_run, ("color", "size")).set_index("recipe")
    assert by.loc["diffusers", "every seed"] and not by.loc["paper", "every seed"]  # seed 1 ends at 0.5
    assert by.loc["paper", "learned at the end"] == 1 and by.loc["diffusers", "learned first"] == "size, size"
    assert np.isinf(by.loc["paper", "median step generated"]) or by.loc["paper", "median step generated"] > 600
