import numpy as np
import pandas as pd
import pytest
from conceptspace import dynamics


def test_learning_time_uses_smoothed_accuracy_and_neighbours():
    steps = np.arange(0, 1000, 100)
    acc = np.array([0, 0, 0.1, 0.5, 0.95, 1, 1, 1, 1, 1])
    t = dynamics.learning_time(steps, acc, threshold=0.9, sigma=0)
    assert t.step == 500  # 400, 500, 600 all above; 400 has a neighbour below
    assert dynamics.learning_time(steps, acc, threshold=0.9, sigma=1.5).step >= 500


def test_learning_time_ignores_a_single_spike_and_censors():
    steps = np.arange(10)
    spike = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0.0])
    t = dynamics.learning_time(steps, spike, sigma=0)
    assert t.censored and t.step == dynamics.NEVER
    # the last checkpoint cannot qualify (no right neighbour)
    assert dynamics.learning_time(steps, np.r_[np.zeros(8), 1, 1], sigma=0).censored


def test_learning_time_for_good_skips_an_early_false_plateau():
    steps = np.arange(0, 1200, 100)
    acc = np.array([0.95, 0.95, 0.95, 0.95, 0.5, 0.2, 0.2, 0.6, 0.95, 1, 1, 1])
    assert dynamics.learning_time(steps, acc, sigma=0, for_good=False).step == 100  # the paper's rule
    assert dynamics.learning_time(steps, acc, sigma=0).step == 900
    # above early, below at the end: learned for good never
    forgotten = np.r_[acc[:6], 0.3, 0.3]
    assert dynamics.learning_time(steps[:8], forgotten, sigma=0).censored
    assert dynamics.learning_time(steps[:8], forgotten, sigma=0, for_good=False).step == 100


def test_emergence_time_needs_three_consecutive_checkpoints():
    steps = np.array([10, 20, 30, 40, 50, 60, 70])
    cap = np.array([0.1, 0.85, 0.2, 0.9, 0.9, 0.95, 0.9])
    assert dynamics.emergence_time(steps, cap, 0.8, sigma=0).step == 40
    assert dynamics.emergence_time(steps, cap * 0.5, 0.8, sigma=0).censored


def test_first_above():
    assert dynamics.first_above([1, 2, 3], [0.1, 0.8, 0.9], 0.8).step == 2
    assert dynamics.first_above([1, 2, 3], [0.1, 0.2, 0.3], 0.8).censored


def test_learning_times_per_run_with_censoring():
    import pandas as pd
    rows = []
    for run, shift in (("a", 0), ("b", 100)):
        for step in range(100, 1100, 100):
            rows.append({"run": run, "prompt": "small-blue", "step": step,
                         "acc_color": 1.0 if step > 300 + shift else 0.0, "acc_size": 0.0})
    times = dynamics.learning_times(pd.DataFrame(rows), ("color", "size"), "small-blue", thresholds=(0.9,), sigma=0)
    color = times[times.concept == "color"].set_index("run")["step"]
    assert color["a"] == 500 and color["b"] == 600
    size = times[times.concept == "size"]
    assert size["censored"].all() and (size["step"] == dynamics.NEVER).all() and (size["last_step"] == 1000).all()
    sp = dynamics.speeds(times, by=["concept"]).set_index("concept")
    assert sp.loc["color", "speed"] == np.mean([1 / 500, 1 / 600]) and sp.loc["size", "speed"] == 0
    assert sp.loc["size", "censored"] == 2 and sp.loc["color", "speed_lo"] <= sp.loc["color", "speed"]


def test_flip_point_interpolates_and_handles_censoring():
    x = [0.2, 0.4, 0.6, 0.8]
    t_color = [3000, 1500, 800, 400]
    t_size = [1000, 1000, 1000, 1000]
    assert dynamics.flip_point(x, t_color, t_size) == pytest.approx(0.4 + 0.2 * 500 / 700)
    assert dynamics.flip_point(x, [np.inf, 900, 800, 700], [1000] * 4) == pytest.approx(0.3)
    assert dynamics.flip_point(x, [100] * 4, t_size) is None


def test_mean_ci_widens_with_spread():
    m, lo, hi = dynamics.mean_ci([1.0, 1.0, 1.0])
    assert m == lo == hi == 1.0
    m, lo, hi = dynamics.mean_ci([0.0, 2.0])
    assert m == 1.0 and lo < 0 < 2 < hi


def l_path(turn_at=8, n=16, start=(0.5, 0.0), corner=(1.0, 0.05), end=(1.0, 1.0)):
    a = np.linspace(start, corner, turn_at + 1)
    b = np.linspace(corner, end, n - turn_at)[1:]
    return np.vstack([a, b])


def test_turn_detector_finds_a_known_kink():
    steps = np.arange(16) * 100
    t = dynamics.detect_turn(steps, l_path(turn_at=8), sigma=0)
    assert t.found and t.step == 800 and t.heading == (1, 0)
    assert 80 < t.angle < 100 and t.fit_gain > 0.9


def test_turn_detector_reports_the_memorized_corner():
    steps = np.arange(20) * 50
    path = l_path(turn_at=12, n=20, start=(0.4, 0.3), corner=(0.05, 0.95), end=(0.95, 1.0))  # to small-red first
    t = dynamics.detect_turn(steps, path, sigma=0)
    assert t.found and t.heading == (0, 1) and t.step == 600


def test_turn_detector_with_noise():
    rng = np.random.default_rng(0)
    steps = np.arange(24) * 100
    hits = []
    for _ in range(20):
        noisy = l_path(turn_at=10, n=24) + rng.normal(0, 0.03, (24, 2))
        t = dynamics.detect_turn(steps, noisy, sigma=1.0)
        hits.append(t.found and abs(t.step - 1000) <= 200)
    assert np.mean(hits) >= 0.9


def test_turn_detector_says_none_for_straight_or_stalled_paths():
    steps = np.arange(16) * 100
    straight = np.linspace((0.5, 0.0), (1.0, 1.0), 16)
    assert not dynamics.detect_turn(steps, straight, sigma=0).found
    rng = np.random.default_rng(1)
    noisy_straight = straight + rng.normal(0, 0.02, straight.shape)
    assert not dynamics.detect_turn(steps, noisy_straight, sigma=1.0).found
    stalled = np.full((16, 2), 0.3) + rng.normal(0, 0.01, (16, 2))  # never goes anywhere
    assert not dynamics.detect_turn(steps, stalled, sigma=1.0).found
    arc = np.stack([0.5 + 0.5 * np.sin(np.linspace(0, 0.6, 16)), 1 - np.cos(np.linspace(0, 0.6, 16))], 1)
    assert not dynamics.detect_turn(steps, arc, sigma=0).found  # a gentle bend is not a sudden turn


def test_speed_and_saturation():
    steps = np.array([0, 100, 200, 300])
    pts = np.array([[0, 0], [0.3, 0.4], [0.6, 0.8], [0.6, 0.8]])
    speed = dynamics.speed_along(steps, pts, sigma=0)
    assert speed[1] == pytest.approx(0.5 / 100) and speed[-1] == pytest.approx(0.0)
    assert dynamics.saturation_step(steps, [0.5, 0.02, 0.005, 0.001]).step == 200


def test_training_saturation_reads_the_training_classes_only():
    steps = [100, 200, 300]
    rows = []
    for step, gap in zip(steps, [0.5, 0.05, 0.0]):
        for name, (tc, ts) in {"large-red": (0, 0), "small-red": (0, 1), "large-blue": (1, 0)}.items():
            rows.append({"step": step, "prompt": name, "target_color": tc, "target_size": ts,
                         "p_color": abs(tc - gap), "p_size": abs(ts - gap)})
        # the held-out class never arrives: it must not delay saturation
        rows.append({"step": step, "prompt": "small-blue", "target_color": 1, "target_size": 1,
                     "p_color": 0.0, "p_size": 0.0})
    cs = pd.DataFrame(rows)
    train = ["large-red", "small-red", "large-blue"]
    assert dynamics.training_saturation(cs, train, ("color", "size")).step == 200  # 2 × 0.05² < 0.01
    assert dynamics.training_saturation(cs, train, ("color", "size"), threshold=0.001).step == 300


def test_learning_order_ranks_a_class_never_learned_last_instead_of_dropping_it():
    times = pd.DataFrame({"class": ["a", "a", "b", "b", "c", "c"],
                          "learned_step": [300, 500, 100, dynamics.NEVER, dynamics.NEVER, dynamics.NEVER]})
    order = dynamics.learning_order(times)
    assert list(order.index[:1]) == ["a"] and order["a"] == 400
    # b: learned fast in one run, never in the other; its median is not its one fast run
    assert np.isinf(order["b"]) and np.isinf(order["c"])
    assert dynamics.learning_order(times[np.isfinite(times.learned_step)]).index[0] == "b"  # what dropping would claim
