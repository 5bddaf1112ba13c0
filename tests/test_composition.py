import numpy as np
import pandas as pd
import pytest
from conceptspace import composition as comp
from conceptspace.dynamics import NEVER

CONCEPTS = ("color", "size", "background")
TRAIN = ("000", "100", "010", "001")
HELD = ("110", "101", "011", "111")


def table(learn_at, steps=(0, 100, 200, 300, 400), converge=100):
    """A hand-made concept-space table: training classes at their corners from `converge`; each held-out
    class at its corner from learn_at[class] (NEVER: stays at 000)."""
    rows = []
    for cls in TRAIN + HELD:
        target = [int(b) for b in cls]
        at = converge if cls in TRAIN else learn_at[cls]
        for s in steps:
            p = target if s >= at else [0.5 * t for t in target]
            rows.append({"run": "r", "delta_color": 0.8, "delta_background": 0.3, "seed": 0, "step": s,
                         **{f"p_{c}": v for c, v in zip(CONCEPTS, p)},
                         **{f"target_{c}": t for c, t in zip(CONCEPTS, target)}})
    t = pd.DataFrame(rows)
    t["class"] = comp.class_codes(t, CONCEPTS)
    return t


def test_held_out_table_learned_converged_distance_hamming():
    learned = comp.held_out_table(table({"110": 200, "101": 300, "011": 300, "111": NEVER}), CONCEPTS, TRAIN, HELD)
    by = learned.set_index("class")
    assert by.learned_step.to_dict() == {"110": 200, "101": 300, "011": 300, "111": NEVER}
    assert (by.converged_step == 100).all()
    assert by.distance_at_convergence["111"] == pytest.approx(np.sqrt(3 * 0.25))
    assert by.concept_distance.to_dict() == {"110": 1, "101": 1, "011": 1, "111": 2}


def test_convergence_never_when_training_classes_do_not_arrive():
    t = comp.with_soft_accuracy(table({c: 200 for c in HELD}, converge=NEVER), CONCEPTS)
    assert comp.convergence_step(t, TRAIN) == NEVER


def test_learned_last_holds_and_fails():
    ok = comp.held_out_table(table({"110": 200, "101": 200, "011": 300, "111": 400}), CONCEPTS, TRAIN, HELD)
    assert comp.learned_last(ok) == {0: True}
    tie = comp.held_out_table(table({"110": 200, "101": 200, "011": NEVER, "111": NEVER}), CONCEPTS, TRAIN, HELD)
    assert comp.learned_last(tie) == {0: False}      # never learned, like 011: a tie, not last
    early = comp.held_out_table(table({"110": 400, "101": 200, "011": 300, "111": 300}), CONCEPTS, TRAIN, HELD)
    assert comp.learned_last(early) == {0: False}


def test_distance_time_r_and_its_interval():
    learned = pd.DataFrame({"distance_at_convergence": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
                            "learned_step": [100, 200, 300, 400, 500, NEVER]})
    r, n = comp.distance_time_r(learned)
    assert r == pytest.approx(1.0) and n == 5
    lo, hi = comp.r_interval(0.81, 9)
    assert lo < 0.81 < hi and lo == pytest.approx(0.31, abs=0.02)   # 9 points: a wide interval
    assert not (lo <= -0.2 <= hi)                                  # an anti-correlation fails it
    assert comp.r_interval(0.81, 3) == (-1.0, 1.0)
    assert np.isnan(comp.distance_time_r(learned.iloc[:2])[0])


def test_rise_time():
    assert comp.rise_time([0, 1, 2, 3], [0.0, 0.2, 0.8, 1.0]) == 1
    assert np.isnan(comp.rise_time([0, 1, 2, 3], [0.0, 0.1, 0.2, 0.1]))
