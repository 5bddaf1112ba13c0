"""Chapter 4's rules on hand-made emergence tables: the strict hidden-capability rule holds where an
intervention emerges well before naive prompting at the turn, and fails where one seed is late, where
naive prompting comes first, or where no intervention emerges at a Δc."""
import numpy as np
import pandas as pd
import pytest
from conceptspace import capability, config, dynamics

NEVER = dynamics.NEVER


def emergence(rows):
    """(Δc, seed, turn, over-prompt step, naive step) -> the emergence table chapter 4 builds."""
    out = []
    for dc, seed, turn, over, naive in rows:
        run = f"r{dc}-{seed}"
        for method, step in (("over-prompt", over), ("latent", NEVER), ("naive", naive)):
            out.append({"run": run, "delta_color": dc, "seed": seed, "method": method, "emergence": step,
                        "turn": turn, "saturation": turn, "last_step": 4000})
    return pd.DataFrame(out)


# the cpu profile's Δc 0.3 runs measured in an earlier build: turn, over-prompting, naive (never: NEVER)
MEASURED = [(0.3, 0, 1976, 1528, 3046), (0.3, 1, 1325, 1137, 3046), (0.3, 2, 1528, 1528, NEVER)]


def test_the_strict_rule_holds_in_every_seed_of_the_measured_runs():
    em = emergence(MEASURED)
    by = capability.by_delta_color(capability.ratio_table(em), em)
    assert by["fraction of seeds"].tolist() == [1.0] and by["best method"].tolist() == ["over-prompt"]
    assert all(capability.earlier_than_naive(em).values())


def test_the_strict_rule_fails_when_one_seed_emerges_late_or_after_naive():
    late = MEASURED[:2] + [(0.3, 2, 1528, 3000, NEVER)]          # 3000 is ≈ 2× the turn
    by = capability.by_delta_color(capability.ratio_table(emergence(late)), emergence(late))
    assert by["fraction of seeds"].iloc[0] == 2 / 3
    naive_first = MEASURED[:2] + [(0.3, 2, 1528, 1528, 1400)]
    em = emergence(naive_first)
    assert capability.by_delta_color(capability.ratio_table(em), em)["fraction of seeds"].iloc[0] == 2 / 3
    assert not all(capability.earlier_than_naive(em).values())


def test_a_delta_color_where_nothing_emerges_counts_as_zero():
    em = emergence(MEASURED + [(0.2, 0, 1500, NEVER, NEVER)])
    by = capability.by_delta_color(capability.ratio_table(em), em).set_index("delta_color")
    assert by.loc[0.2, "fraction of seeds"] == 0 and by.loc[0.3, "fraction of seeds"] == 1


def test_near_is_within_thirty_percent_and_never_without_a_marker():
    assert capability.near(1300, 1000) and not capability.near(1301, 1000) and not capability.near(1000, np.nan)
    assert not capability.near(1000, NEVER)  # a marker that never came


def test_latent_edit_with_over_prompting_and_when_it_never_emerges():
    em = emergence(MEASURED)
    em.loc[em.method == "latent", "emergence"] = [1600, 2757, NEVER]
    ratio = capability.latent_vs_overprompt(em)
    assert ratio["Δc 0.3 seed 0"] == pytest.approx(1600 / 1528)
    assert ratio["Δc 0.3 seed 1"] > 1.3 and ratio["Δc 0.3 seed 2"] == np.inf  # late and never: the rule fails


def test_regime_rule_needs_every_delta_color_of_the_regime():
    by = pd.DataFrame({"delta_color": [0.2, 0.3, 0.4], "fraction of seeds": [1.0, 1.0, 2 / 3]})
    assert capability.regime_rule(by, (0.175, 0.3))["holds"]
    assert capability.regime_rule(by, (0.175, 0.3), min_fraction=2 / 3, inside=False)["holds"]
    assert not capability.regime_rule(by, (0.175, 0.4))["holds"]              # 0.4 has one seed short
    assert not capability.regime_rule(by, (0.5, 0.6))["holds"]                # nothing probed there
    assert capability.regime_rule(by, (0.175, 0.3))["values"] == {0.2: 1.0, 0.3: 1.0}


def test_onset_ratio_leaves_out_runs_without_the_marker():
    runs = pd.DataFrame({"first": [1000, 1200, 900], "turn": [1000, np.nan, 600], "saturation": [800, NEVER, 900]},
                        index=pd.MultiIndex.from_tuples([(0.3, 0), (0.3, 1), (0.3, 2)], names=["delta_color", "seed"]))
    assert capability.onset_ratio(runs, "turn").tolist() == [1.0, 1.5]
    assert capability.onset_ratio(runs, "saturation").tolist() == [1.25, 1.0]


def test_the_long_runs_take_their_own_seeds_where_given():
    """The paper's regime (the long Δc) can be judged on the papers' five seeds without five seeds at every Δc."""
    ex = config.experiment("tiny", {"capability.seeds": [0, 1], "capability.long_seeds": [0, 1, 2, 3, 4]})
    probed, _ = capability.run_lists(ex)
    seeds = {dc: sorted(c.train.seed for c in probed if c.data.delta_color == dc)
             for dc in (*ex.capability.delta_color, *ex.capability.long_delta_color)}
    assert all(seeds[dc] == [0, 1] for dc in ex.capability.delta_color)
    assert all(seeds[dc] == [0, 1, 2, 3, 4] for dc in ex.capability.long_delta_color)
    same = capability.run_lists(config.experiment("tiny", {"capability.seeds": [0, 1]}))[0]  # empty: the seeds
    assert {c.train.seed for c in same} == {0, 1}
