import numpy as np
import pandas as pd
import pytest
import torch
from conceptspace import paper, sim

bias_free_one_layer = sim.small_init_one_layer


def test_signal_follows_mu_squared_over_clusters_plus_variance():
    task = sim.SimTask(mu=(1.0, 2.0), var=(0.05, 0.5))
    assert sim.signal(task) == pytest.approx([1 / 3 + 0.05, 4 / 3 + 0.5])
    no_origin = sim.SimTask(mu=(1.0, 2.0, 3.0), var=(0.2,) * 3, origin=False)
    assert sim.signal(no_origin) == pytest.approx([1 / 3 + 0.2, 4 / 3 + 0.2, 3 + 0.2])


def test_data_sits_on_the_concept_axes():
    task = sim.SimTask(mu=(1.0, 2.0), var=(0.05, 0.05), n=2000)
    x, x_hat, r = sim.make_data(task)
    assert x.shape == (6000, 64) and torch.allclose(r @ r.T, torch.eye(2), atol=1e-5)
    coords = x @ r.T
    assert torch.allclose(x, coords @ r, atol=1e-5)  # nothing outside the concept plane
    assert torch.allclose(x_hat @ r.T, torch.tensor([1.0, 2.0]), atol=1e-5)
    # the second moment along each axis is a_p
    assert (coords ** 2).mean(0).numpy() == pytest.approx(sim.signal(task), rel=0.05)


def test_closed_form_matches_simulated_one_layer_training():
    """Theorem 4.1 against SGD: bias-free, small init; the stated tolerance is 2% of ‖x̂‖."""
    task = sim.SimTask(mu=(1.0, 2.0), var=(0.05, 0.05), n=2000)
    model = bias_free_one_layer(task)
    _, _, r = sim.make_data(task)
    w0 = (r @ model[0].weight.detach() @ r.T).numpy()
    res = sim.train_sgd(model, task, lr=0.1, epochs=40, record_every=20)
    theory = sim.one_layer_theory(task, w0, res["steps"], lr=0.1)
    assert np.abs(theory - res["outputs"]).max() < 0.02 * np.linalg.norm(task.mu)


def test_learning_order_follows_the_signal_and_flips_with_variance():
    def times(var1):
        task = sim.SimTask(mu=(1.0, 2.0), var=(var1, 0.05), n=1000)
        res = sim.train_sgd(bias_free_one_layer(task), task, lr=0.1, epochs=40, record_every=10)
        out = res["outputs"]
        return [res["steps"][np.flatnonzero(out[:, k] > 0.9 * task.mu[k])[0]]
                if (out[:, k] > 0.9 * task.mu[k]).any() else np.inf for k in range(2)], sim.signal(task)
    (t1, t2), a = times(0.05)
    assert a[1] > a[0] and t2 < t1          # the stronger concept first
    (t1, t2), a = times(2.0)
    assert a[0] > a[1] and t1 < t2          # a weak mean with a large spread overtakes it


def test_two_layer_ode_stays_psd_and_converges_to_identity():
    a = sim.signal(sim.SimTask(mu=(1.0, 1.5), var=(0.05, 0.05), dim=3))
    u = np.random.default_rng(0).uniform(0, 0.2, (2, 3))
    ws = sim.two_layer_theory(a, u @ u.T, np.linspace(0, 60, 200))
    assert np.linalg.eigvalsh(ws).min() > -1e-8
    assert ws[-1] == pytest.approx(np.eye(2), abs=1e-2)


def test_two_layer_ode_matches_gradient_descent_on_u():
    """Gradient flow on U for ½‖(UUᵀ − I)A^½‖² is Ẇ = 2V(W): compare with small-step GD."""
    a = np.array([0.4, 1.0])
    u = np.random.default_rng(1).uniform(0, 0.2, (2, 4))
    lr, steps = 1e-3, 20000
    uu = torch.tensor(u, requires_grad=True)
    big_a = torch.tensor(np.diag(a))
    for _ in range(steps):
        w = uu @ uu.T
        loss = 0.5 * (((w - torch.eye(2, dtype=torch.float64)) @ big_a.sqrt()) ** 2).sum()
        (g,) = torch.autograd.grad(loss, uu)
        with torch.no_grad():
            uu -= lr * g
    theory = sim.two_layer_theory(a, u @ u.T, np.array([0.0, 2 * lr * steps]))[-1]
    assert (uu @ uu.T).detach().numpy() == pytest.approx(theory, abs=5e-3)


def test_bumps_finds_rises_and_ignores_monotone_curves():
    assert sim.bumps(np.array([3, 2, 1, 0.5, 0.2])) == []
    assert sim.bumps(np.array([3, 1, 1.5, 0.2, 0.4, 0.1])) == pytest.approx([0.5, 0.2])


def test_bad_task_is_refused():
    with pytest.raises(ValueError, match="one entry per concept"):
        sim.SimTask(mu=(1.0,), var=(0.1, 0.1))
    with pytest.raises(ValueError, match="must be ≥ 0"):
        sim.SimTask(mu=(-1.0, 1.0), var=(0.1, 0.1))


def test_one_layer_run_matches_the_formula_in_the_theory_regime():
    """SIM3 at a small size: SGD's steps to 90 % within 5 % of d ln 10 / (2 η a_k); the closed form
    within 2 % of ‖x̂‖ of SGD (SIM1)."""
    task = sim.SimTask(mu=(1.0, 2.0), var=(0.05, 0.05), n=1000, dim=16)
    res = sim.one_layer_run(task, lr=0.1, batch=128, epochs=40, record_every=2)
    row = sim.one_layer_summary(task, res, lr=0.1)
    assert row["relative_deviation"] < 0.02
    for k in (1, 2):
        assert row[f"T{k} SGD"] == pytest.approx(row[f"T{k} formula"], rel=0.05)


def test_formula_gives_the_papers_numbers_at_the_papers_setting():
    t = sim.learning_time_theory(sim.SimTask(mu=(1.0, 2.0), var=(0.05, 0.05), dim=64), lr=0.1)
    assert np.round(t) == pytest.approx(paper.SIM_T_FORMULA, abs=1)


def test_reach_step_is_never_when_not_reached():
    assert sim.reach_step([0, 10, 20], [0.0, 0.95, 1.0], 1.0) == 10
    assert sim.reach_step([0, 10, 20], [0.0, 0.5, 0.6], 1.0) == sim.NEVER


def order_table(rows):
    return pd.DataFrame(rows, columns=["value", "a1", "a2", "T1 SGD", "T2 SGD"])


def test_order_follows_signal_holds_and_fails():
    good = order_table([(0.05, 0.4, 1.4, 1900, 540), (2.0, 2.3, 1.4, 310, 540), (1.0, 1.3, 1.3, 550, 540)])
    assert sim.order_follows_signal(good).all()
    bad = order_table([(0.05, 0.4, 1.4, 500, 540), (1.0, 1.3, 1.3, 800, 540), (0.5, 0.8, 1.4, np.inf, np.inf)])
    assert not sim.order_follows_signal(bad).any()   # wrong order; a tie 30 % apart; never reached


def test_flip_variance_interpolates_and_is_none_without_a_flip():
    t = order_table([(0.5, 0.8, 1.4, 1080, 540), (1.0, 1.3, 1.4, 550, 540), (2.0, 2.3, 1.4, 310, 540)])
    assert sim.flip_variance(t) == pytest.approx(1.0 + 10 / 240)
    assert sim.flip_variance(t.iloc[:1]) is None
    assert sim.flip_variance_theory((1.0, 2.0), 0.05, 3) == pytest.approx(1.05)


def test_swing_by_needs_a_rise_of_the_test_loss_while_training_loss_falls():
    falling = np.linspace(1, 0, 6)
    assert sim.swing_by(np.array([2, 1, 1.5, 0.5, 0.1, 0]), falling)["swing"]
    assert not sim.swing_by(np.array([2, 1, 0.8, 0.5, 0.1, 0]), falling)["swing"]          # no rise
    assert not sim.swing_by(np.array([2, 1, 1.5, 0.5, 0.1, 0]), falling[::-1])["swing"]    # training rises
    out = sim.swing_by(np.array([2, 1, np.inf, np.nan, 0, 0]), falling)
    assert out["diverged"] and not out["swing"]


def test_papers_fig5_run_swings_by_and_fig9_descends_several_times():
    """The figure code's own setting and seed (the W-recurrence with A∘A) shows its figure's shape."""
    f5 = paper.SIM_FIG5
    task = sim.SimTask(mu=f5["mu"], var=(f5["sigma"] ** 2,) * 2, dim=f5["dim"], origin=False)
    row = sim.swing_over_seeds(task, f5["init"], f5["eta"], f5["iterations"], [f5["seed"]], squared=True).iloc[0]
    assert row.swing and row.bump > 0.05
    u = sim.paper_init(3, 0.2, 2333)
    assert (u >= 0).all() and np.allclose(u, u.T)


def test_w_recurrence_is_a_small_step_of_the_ode():
    a = np.array([0.5, 1.1, 0.0])
    w0 = sim.paper_init(3, 0.2, 0)
    rec = sim.w_recurrence(a, w0, 1e-3, 5000)[-1]
    ode = sim.two_layer_theory(a, w0, np.array([0.0, 5.0]))[-1]
    assert rec == pytest.approx(ode, abs=2e-3)
    assert sim.train_loss_path(np.eye(3)[None], a) == pytest.approx([0.0])
