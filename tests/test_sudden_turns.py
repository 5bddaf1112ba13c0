"""Chapter 3's analysis (sudden_turns): the per-run turn table on hand-made trajectories, and each
claim's rule on hand-made turn tables where it holds and where it fails."""
import numpy as np
import pandas as pd
import pytest
from conceptspace import dynamics, sudden_turns

NEVER = dynamics.NEVER


def turns(**columns) -> pd.DataFrame:
    """A hand-made turn table: one row per run (Δc, seed) with the columns the rules read."""
    n = len(next(iter(columns.values())))
    base = {"run": [f"r{i}" for i in range(n)], "delta_color": [0.2] * n, "seed": list(range(n)),
            "turn_step": [500] * n, "heading": [(0, 1)] * n, "heading_expected": [(0, 1)] * n,
            "heading_by_order": [(0, 1)] * n, "saturation_step": [500] * n, "learned_step": [900] * n}
    return pd.DataFrame({**base, **columns})


def test_turn_table_reads_heading_and_memorization_per_run():
    steps = np.arange(0, 1100, 100)
    rows = []
    for run, dc in (("a", 0.2), ("b", 0.8)):
        # a: heads for small-red (0, 1) then turns to blue; b: stays at the start (no turn)
        for s in steps:
            f = s / 1000
            pc, ps = ((0.05, f * 1.9) if f <= 0.5 else ((f - 0.5) * 1.8, 0.95)) if run == "a" else (0.3, 0.3)
            for name, tc, ts in (("small-blue", 1, 1), ("large-red", 0, 0), ("small-red", 0, 1), ("large-blue", 1, 0)):
                p = (pc, ps) if name == "small-blue" else (tc, ts)
                rows.append({"run": run, "delta_color": dc, "delta_size": 0.4, "seed": 0, "prompt": name, "step": s,
                             "p_color": p[0], "p_size": p[1], "target_color": tc, "target_size": ts,
                             "joint": p[0] * p[1], "acc_color": p[0], "acc_size": p[1]})
    signal = {0.2: {"color": 0.01, "size": 0.05}, 0.8: {"color": 0.2, "size": 0.05}}
    t = sudden_turns.turn_table(pd.DataFrame(rows), "small-blue", ["large-red", "small-red", "large-blue"],
                            ("color", "size"), signal, sigma=0).set_index("run")
    assert pd.notna(t.loc["a", "turn_step"]) and t.loc["a", "heading_name"] == "small-red"
    assert t.loc["a", "expected"] == "small-red"            # size has the stronger signal: memorization holds
    assert pd.isna(t.loc["b", "turn_step"]) and t.loc["b", "expected"] == "large-blue"
    assert t.loc["b", "learned_step"] == dynamics.NEVER      # never generated: the one encoding
    # a learns size first (0.95 at step 500) while its P(blue) is 0.05: it sat at small-red
    assert t.loc["a", "learned_first"] == "size" and t.loc["a", "other_when_first"] == pytest.approx(0.05)
    assert np.isnan(t.loc["b", "other_when_first"])          # learns neither concept: no first


def test_memorized_counts_runs_that_sat_at_a_training_class_per_delta_color():
    t = turns(delta_color=[0.2, 0.2, 0.8, 0.8], other_when_first=[0.1, 0.3, 0.9, float("nan")],
              turn_step=[500, None, 500, 500])
    m = sudden_turns.memorized(t).set_index("delta_color")
    assert m.loc[0.2, "memorized"] == 2 and m.loc[0.2, "runs"] == 2
    assert m.loc[0.2, "turned_from_it"] == 1  # the second sat at small-red but shows no turn
    # at Δc 0.8 the one run with a first concept had the other already learned: it went straight across
    assert m.loc[0.8, "memorized"] == 0 and m.loc[0.8, "runs"] == 1 and m.loc[0.8, "turned_from_it"] == 0
    # a turn that heads elsewhere than the memorized class does not count
    other_way = sudden_turns.memorized(t.assign(heading=[(1, 0)] * 4)).set_index("delta_color")
    assert other_way.loc[0.2, "turned_from_it"] == 0


def test_error_rise_sees_an_early_swing_and_not_a_fall_or_a_late_bump():
    steps = np.arange(10)
    assert sudden_turns.error_rise(steps, [1.0, 0.6, 0.8, 0.5, 0.3, 0.2, 0.1, 0.1, 0.1, 0.1]) == pytest.approx(0.2)
    assert sudden_turns.error_rise(steps, np.linspace(1, 0, 10)) == 0.0
    assert sudden_turns.error_rise(steps, [1, .9, .8, .7, .6, .5, .4, .9, .1, 0]) == 0.0  # the bump is late


def test_speed_r2_tells_time_from_signal():
    rows = []
    for run, dc in (("a", 0.2), ("b", 0.8)):
        for s in (100, 200, 400, 800, 1600, 3200):
            x = 0.3 * np.log(s)  # the same path in every run: speed depends on time only
            rows.append({"run": run, "delta_color": dc, "seed": 0, "prompt": "small-blue", "step": s,
                         "p_color": x, "p_size": x})
    r2 = sudden_turns.speed_r2(pd.DataFrame(rows), "small-blue", sigma=0)
    assert r2["log step"] > 0.9 and r2["Δc"] < 0.1


def test_every_learned_turns_holds_only_if_every_learned_run_turns():
    assert sudden_turns.every_learned_turns(turns(turn_step=[500, 600]))["holds"]
    # an unlearned run without a turn does not count against the claim
    assert sudden_turns.every_learned_turns(turns(turn_step=[500, None], learned_step=[900, NEVER]))["holds"]
    failing = sudden_turns.every_learned_turns(turns(turn_step=[500, None]))
    assert not failing["holds"] and (failing["turned"], failing["learned"]) == (1, 2)
    assert not sudden_turns.every_learned_turns(turns(learned_step=[NEVER, NEVER]))["holds"]  # nothing learned


def test_heading_must_match_in_every_turning_run_of_every_delta_color():
    ok = turns(delta_color=[0.2, 0.2, 0.8], heading=[(0, 1), (0, 1), (1, 0)],
               heading_expected=[(0, 1), (0, 1), (1, 0)])
    assert sudden_turns.heading_by_delta_color(ok).all()
    one_off = ok.assign(heading=[(0, 1), (1, 0), (1, 0)])  # one seed of Δc 0.2 heads the other way
    by_dc = sudden_turns.heading_by_delta_color(one_off)
    assert not by_dc[0.2] and by_dc[0.8]
    assert sudden_turns.heading_match(one_off) == pytest.approx(2 / 3)
    assert np.isnan(sudden_turns.heading_match(turns(turn_step=[None])))


def test_turn_near_saturation_within_30_percent_in_every_run():
    assert sudden_turns.turn_vs_saturation(turns(turn_step=[500, 640], saturation_step=[500, 500]))["holds"]
    late = sudden_turns.turn_vs_saturation(turns(turn_step=[500, 700], saturation_step=[500, 500]))
    assert not late["holds"] and (late["near"], late["runs"]) == (1, 2)
    assert not sudden_turns.turn_vs_saturation(turns(saturation_step=[NEVER]))["holds"]  # nothing to compare
    r = sudden_turns.turn_vs_saturation(turns(turn_step=[400, 500, 600], saturation_step=[410, 520, 590]))["r"]
    assert r > 0.9


def test_step_summary_skips_missing_turns_and_never():
    s = sudden_turns.step_summary(turns(turn_step=[400, None, 600], saturation_step=[NEVER, 500, 500]))
    t = s[s.what == "turn step"].iloc[0]
    assert t.runs == 2 and t.step == 500
    assert s[s.what == "saturation step"].iloc[0].runs == 2


def test_rising_delta_colors_needs_every_seed():
    rises = pd.DataFrame({"delta_color": [0.2, 0.2, 0.8, 0.8], "seed": [0, 1, 0, 1], "rise": [0.1, 0.06, 0.2, 0.01]})
    assert sudden_turns.rising_delta_colors(rises) == [0.2]
    assert sudden_turns.rising_delta_colors(rises.assign(rise=0.0)) == []
