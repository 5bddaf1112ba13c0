"""Chapter 2's analysis (concept_signal): each claim's rule on hand-made learning-time tables where it
holds and where it fails."""
import numpy as np
import pandas as pd
import pytest
from conceptspace import concept_signal, dynamics, paper

NEVER = dynamics.NEVER


def times(color: dict, size: dict, last: int = 2000) -> pd.DataFrame:
    """A learning-time table (dynamics.learning_times' columns) from {(Δc, seed): step} per concept."""
    rows = [{"run": f"{dc}/{seed}", "delta_color": dc, "delta_size": 0.4, "seed": seed, "concept": concept,
             "threshold": 0.9, "step": step, "censored": step == NEVER, "last_step": last}
            for concept, steps in (("color", color), ("size", size)) for (dc, seed), step in steps.items()]
    return pd.DataFrame(rows)


def speeds(t: pd.DataFrame) -> pd.DataFrame:
    sp = dynamics.speeds(t, by=["delta_color", "delta_size", "concept", "threshold"])
    return sp.assign(pixel_signal=sp.delta_color ** 2)


GRID = (0.2, 0.4, 0.6, 0.8)
# color faster the larger Δc, size constant: size first below Δc ≈ 0.6, color first above
COLOR = {(dc, s): step for dc, step in zip(GRID, (NEVER, 1500, 900, 400)) for s in (0, 1)}
SIZE = {(dc, s): 1000 for dc in GRID for s in (0, 1)}


def test_order_and_flip_follow_the_signal():
    order = concept_signal.order_table(speeds(times(COLOR, SIZE)))
    assert list(order["learned first"]) == ["size", "size", "color", "color"]
    assert concept_signal.order_holds(order)
    f = concept_signal.flip(order)
    assert 0.4 < f < 0.6
    assert concept_signal.flip_holds(f, GRID, (0.5, 0.55))
    assert not concept_signal.flip_holds(f, GRID, (0.75, 0.8))  # far from the paper's location
    assert not concept_signal.flip_holds(None, GRID, paper.FLIP_DELTA_COLOR)  # no flip
    reversed_order = concept_signal.order_table(speeds(times({k: 1000 for k in COLOR}, COLOR)))
    assert not concept_signal.order_holds(reversed_order)


def test_speed_rank_holds_for_a_monotone_grid_and_fails_for_a_shuffled_one():
    sp = speeds(times(COLOR, SIZE))
    rank = concept_signal.speed_rank(sp[sp.concept == "color"])
    assert rank["rho"] == pytest.approx(1.0) and rank["holds"]
    assert rank["ceiling"] == pytest.approx(1.0)  # one censored Δc, and it is the weakest
    shuffled = {(dc, s): step for dc, step in zip(GRID, (400, 1500, NEVER, 900)) for s in (0, 1)}
    sp = speeds(times(shuffled, SIZE))
    bad = concept_signal.speed_rank(sp[sp.concept == "color"])
    assert bad["rho"] < 0.9 and not bad["holds"]
    tied = speeds(times({k: NEVER for k in COLOR}, SIZE))
    assert not concept_signal.speed_rank(tied[tied.concept == "color"])["holds"]  # nothing learned: NaN


def test_per_seed_gives_each_seeds_rho_and_flip():
    color = {**COLOR, (0.6, 1): NEVER, (0.8, 1): NEVER}  # seed 1 learns color only at Δc 0.4
    by_seed = concept_signal.per_seed(times(color, SIZE), 0.9, 0.4).set_index("seed")
    assert by_seed.loc[0, "rho"] == pytest.approx(1.0) and 0.4 < by_seed.loc[0, "flip"] < 0.6
    assert by_seed.loc[1, "rho"] < 0.5 and pd.isna(by_seed.loc[1, "flip"])  # no flip in this seed


def test_never_learned_needs_every_seed_censored_below_and_none_above():
    sp = speeds(times(COLOR, SIZE))
    hc4 = concept_signal.never_learned(sp[sp.concept == "color"], 0.211)
    assert hc4["holds"] and hc4["never"] == [0.2]
    half = {**COLOR, (0.2, 1): 3000}  # one seed learns color at Δc 0.2
    sp = speeds(times(half, SIZE))
    assert not concept_signal.never_learned(sp[sp.concept == "color"], 0.211)["holds"]
    late = {**COLOR, (0.8, 0): NEVER}  # a seed above the threshold never learns
    sp = speeds(times(late, SIZE))
    assert not concept_signal.never_learned(sp[sp.concept == "color"], 0.211)["holds"]


def test_final_joint_needs_every_seed():
    cs = pd.DataFrame([{"run": f"r{seed}", "prompt": "small-blue", "delta_color": 0.4, "delta_size": 0.4,
                        "seed": seed, "step": step, "joint": joint}
                       for seed, finals in ((0, 0.95), (1, 0.6)) for step, joint in ((100, 0.1), (200, finals))])
    hc1 = concept_signal.final_joint(cs, "small-blue", 0.4, 0.4)
    assert hc1["joint"] == {0: 0.95, 1: 0.6} and hc1["learned"] == 1 and not hc1["holds"]
    assert hc1["first"] == {0: 200, 1: NEVER}  # seed 1 never reaches 0.8
    assert concept_signal.final_joint(cs[cs.seed == 0], "small-blue", 0.4, 0.4)["holds"]
    assert not concept_signal.final_joint(cs, "small-blue", 0.8, 0.4)["holds"]  # no run at that Δc
    assert np.isnan(concept_signal.spearman([1, 2, 3], [5, 5, 5]))
