"""The pilot's scoring on hand-made concept-space tables, and one tiny pilot end to end."""
import math

import pandas as pd
import pytest
from conceptspace import config, pilot
from conceptspace.config import ConfigError
from conceptspace.store import Store

STEPS = [100, 200, 300, 400, 500, 600, 700, 800]
HELD = "small blue"


def table(curves: dict[str, list[float]]) -> pd.DataFrame:
    """A concept-space table: one held-out row per run and step (plus a training class that is ignored)."""
    rows = [{"run": run, "step": s, "prompt": HELD, "joint": j} for run, js in curves.items()
            for s, j in zip(STEPS, js)]
    rows += [{"run": run, "step": s, "prompt": "large red", "joint": 1.0} for run in curves for s in STEPS]
    return pd.DataFrame(rows)


def runs(names, candidate="a", flops=1e9, dc=0.4):
    return pd.DataFrame([{"run": n, "candidate": candidate, "delta_color": dc, "seed": i, "step_flops": flops,
                          "s_per_step": 0.1} for i, n in enumerate(names)])


RISES = [0, 0, 0.2, 0.9, 1, 1, 1, 1]         # learned for good from about 400
EARLY_BLIP = [1, 1, 0, 0, 0, 0, 0.1, 0.1]    # the first checkpoints' blobs read as the class, then never
LATE_DIP = [0, 0.9, 1, 1, 1, 0, 0, 0]        # learned, then lost: not for good


def test_the_concept_learned_first_is_named_with_each_concepts_step():
    one = table({"r": RISES}).assign(acc_color=lambda t: [1.0 if s >= 200 else 0.0 for s in t.step],
                                     acc_size=lambda t: [1.0 if s >= 400 else 0.0 for s in t.step])
    first, steps = pilot.first_concept(one, HELD, ("color", "size"))
    assert first == "color" and steps["color"] < steps["size"] < math.inf
    never = one.assign(acc_color=0.0, acc_size=0.0)
    assert pilot.first_concept(never, HELD, ("color", "size"))[0] == "none"
    s = pilot.score_runs(one, runs(["r"]), HELD, concepts=("color", "size"))
    assert s["first"][0] == "color" and " first " in pilot.report(s).splitlines()[0]


def test_a_run_that_rises_once_is_learned_at_its_crossing_and_costs_steps_times_flops():
    s = pilot.score_runs(table({"r": RISES}), runs(["r"], flops=2e9), HELD)
    step = s.learned_step[0]  # smoothing (σ = 1.5 checkpoints) puts it a checkpoint or two after the raw rise
    assert s.learned[0] and 400 <= step <= 600
    assert s.tflop_to_learn[0] == pytest.approx(step * 2e9 / 1e12)
    assert s.final_joint[0] == 1 and s.last_step[0] == 800


@pytest.mark.parametrize("curve", [EARLY_BLIP, LATE_DIP])
def test_a_run_that_does_not_stay_above_the_rule_is_never_learned(curve):
    s = pilot.score_runs(table({"r": curve}), runs(["r"]), HELD)
    assert not s.learned[0] and math.isinf(s.learned_step[0]) and math.isinf(s.tflop_to_learn[0])


def test_a_run_without_rows_is_an_error_not_a_never():
    with pytest.raises(ValueError, match="no concept-space rows"):
        pilot.score_runs(table({"r": RISES}), runs(["missing"]), HELD)


def test_summary_counts_seeds_and_a_median_over_a_minority_of_learners_is_never():
    cs = table({"a0": RISES, "a1": RISES, "a2": EARLY_BLIP, "b0": RISES, "b1": LATE_DIP, "b2": EARLY_BLIP})
    s = pd.concat([pilot.score_runs(cs, runs(["a0", "a1", "a2"], "a"), HELD),
                   pilot.score_runs(cs, runs(["b0", "b1", "b2"], "b", flops=1e6), HELD)])
    summary = pilot.summarize(s).set_index("candidate")
    assert summary.loc["a", "learned"] == pytest.approx(2 / 3)
    assert summary.loc["a", "median_step"] == s.learned_step.iloc[0]
    assert summary.loc["b", "learned"] == pytest.approx(1 / 3) and math.isinf(summary.loc["b", "median_tflop"])
    assert pilot.best(pilot.summarize(s)) == "a"  # more seeds learn, though b's step is a thousand times cheaper


def test_between_equally_reliable_candidates_the_cheaper_one_wins():
    cs = table({"a0": RISES, "b0": RISES})
    s = pd.concat([pilot.score_runs(cs, runs(["a0"], "a", flops=2e9), HELD),
                   pilot.score_runs(cs, runs(["b0"], "b", flops=1e9), HELD)])
    assert pilot.best(pilot.summarize(s)) == "b"


def test_candidates_parse_by_name_or_inline_and_bad_ones_fail_before_compute():
    assert pilot.parse_candidate("ema-0.99") == ("ema-0.99", {"train.ema_decay": 0.99})
    assert pilot.parse_candidate("x:train.batch_size=32;model.channels=[16, 32]") == (
        "x", {"train.batch_size": 32, "model.channels": [16, 32]})
    assert pilot.parse_candidate("lr:train.learning_rate=2e-3")[1] == {"train.learning_rate": 0.002}  # YAML: a str
    assert pilot.split_candidates("a,x:model.channels=[16, 32];train.batch_size=32,b") == [
        "a", "x:model.channels=[16, 32];train.batch_size=32", "b"]
    with pytest.raises(ConfigError, match="unknown"):
        pilot.parse_candidate("nope")
    with pytest.raises(ConfigError, match="not key=value"):
        pilot.parse_candidate("x:train.batch_size")
    ex = config.experiment("tiny")
    with pytest.raises(ConfigError, match="ema_decay"):
        pilot.pilot_configs(ex, {"bad": {"train.ema_decay": 2.0}}, [0], [0.4])


def test_shared_overrides_reach_the_evaluation_and_are_validated_by_name():
    assert pilot.pilot_experiment("tiny", ["eval.sampler_steps=3"]).eval.sampler_steps == 3
    assert pilot.pilot_experiment("tiny").eval == config.experiment("tiny").eval
    with pytest.raises(ConfigError, match="eval.sampler_steps"):
        pilot.pilot_experiment("tiny", ["eval.sampler_steps=0"])


def test_every_candidate_runs_at_every_signal_and_seed():
    ex = config.experiment("tiny")
    pairs = pilot.pilot_configs(ex, {"p": {}, "b": {"train.batch_size": 8}}, [0, 1], [0.3, 0.5], steps=7)
    assert len(pairs) == 8 and len({c.run_id() for _, c in pairs}) == 8
    assert {c.train.steps for _, c in pairs} == {7}
    assert {(n, c.train.batch_size) for n, c in pairs} == {("p", ex.run.train.batch_size), ("b", 8)}


@pytest.mark.slow
def test_a_tiny_pilot_trains_into_the_store_and_scores_every_run(tmp_path, monkeypatch):
    monkeypatch.setenv("CONCEPTSPACE_STORE", str(tmp_path / "store"))
    out = tmp_path / "pilot.json"
    scores = pilot.main(["--profile", "tiny", "--candidates", "profile,b:train.batch_size=8", "--seeds", "0",
                         "--delta-color", "0.5", "--workers", "1", "--out", str(out)])
    assert len(scores) == 2 and set(scores.candidate) == {"profile", "b"}
    assert (scores.s_per_step > 0).all() and scores.final_joint.between(0, 1).all()
    store = Store(tmp_path / "store")
    assert all(store.run(c).done for _, c in pilot.pilot_configs(
        config.experiment("tiny"), {"profile": {}, "b": {"train.batch_size": 8}}, [0], [0.5]))
    assert out.exists() and '"cpu"' in out.read_text()


def test_headroom_is_the_run_left_after_every_training_class_is_learned():
    cs = table({"early": RISES, "late": RISES, "lost": RISES})
    late = [0, 0, 0, 0, 0, 0, 0.9, 1]  # learned at the last checkpoints only
    for run, curve in (("late", late), ("lost", LATE_DIP)):
        cs.loc[(cs.run == run) & (cs.prompt == "large red"), "joint"] = curve
    s = pilot.score_runs(cs, runs(["early", "late", "lost"]), HELD, training=["large red"]).set_index("run")
    assert s.loc["early", "headroom"] >= 0.75 and s.loc["early", "train_step"] <= 200
    assert 0 <= s.loc["late", "headroom"] < 0.2
    assert s.loc["lost", "headroom"] == 0 and math.isinf(s.loc["lost", "train_step"])
    assert "headroom" in pilot.report(s.reset_index()).splitlines()[0]


def speeds(candidate, color_steps: dict[float, float]) -> pd.DataFrame:
    return pd.DataFrame([{"candidate": candidate, "delta_color": dc, "seed": 0, "color_step": step}
                         for dc, step in color_steps.items()])


def test_color_speed_must_rise_with_signal_over_three_or_more_signals():
    rises = speeds("rises", {0.2: math.inf, 0.4: 1500, 0.6: 900, 0.8: 400})
    squeezed = speeds("squeezed", {0.2: 1900, 0.4: 1700, 0.6: math.inf, 0.8: 2100})  # the 2026-12-03 batch-32 book
    two = speeds("two", {0.4: 900, 0.8: 400})
    r = pilot.signal_rank(pd.concat([rises, squeezed, two])).set_index("candidate")
    assert r.loc["rises", "rho_color_speed"] == pytest.approx(1.0) and r.loc["rises", "holds"]
    assert r.loc["squeezed", "rho_color_speed"] < 0 and not r.loc["squeezed", "holds"]
    assert "two" not in r.index
