"""Stacked training (conceptspace.stacked) against run-by-run training (train.train) on the tiny profile.

vmap batches the runs' matmuls and convolutions into other kernels, whose sums run in another order,
so weights agree to rounding amplified by Adam (which divides each gradient by its own running size):
PARAM_ATOL, a third of one step's update (lr 1e-3); measured 4.6e-5 (AMD EPYC, 2 cores, one thread). Every
random draw is the run's own, exactly: the generator states saved with each run are identical.
"""
import shutil

import pandas as pd
import pytest
import torch
from conceptspace import config, dynamics, evaluate, prompting, stacked, store, train

PARAM_ATOL = 3e-4  # checkpoint weights, EMA and Adam moments
LOSS_ATOL = 1e-5   # logged mean losses (≈ 1): measured 1e-7
PROB_ATOL = 1e-4   # probe probabilities of the samples drawn from the checkpoints: measured 1.4e-6


def tiny(**overrides):
    """fp32 on every machine: the tolerances below are fp32 rounding; where bf16 is native (`train.bf16:
    auto` takes it) the two paths' bf16 kernels round differently by ≈ 1e-4 (measured on AMD Zen 4)."""
    return config.experiment("tiny", {"train.bf16": "never", **overrides}).run


# three runs that differ in seed, concept signal and conditioning dropout (each its own random draws)
CONFIGS = [tiny(**{"train.seed": 0}), tiny(**{"train.seed": 1, "data.delta_color": 0.2}),
           tiny(**{"train.seed": 2, "train.cond_dropout": 0.2})]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: a tiny step gains nothing from two, and two threads spinning on a loaded
    machine make it many times slower. Both sides of every comparison run with it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory):
    """The three runs trained one by one with train.train."""
    st = store.Store(tmp_path_factory.mktemp("reference"))
    return st, [train.train(cfg, st, progress=False) for cfg in CONFIGS]


def assert_same_run(a: store.Run, b: store.Run) -> None:
    """Same id, checkpoint steps, loss curve; weights and resume states within tolerance; random
    generators' states identical."""
    assert a.id == b.id
    assert a.checkpoint_steps() == b.checkpoint_steps() == train.checkpoint_steps(40, 5, 5)
    for step in a.checkpoint_steps():
        wa, wb = a.load_weights(step), b.load_weights(step)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], atol=PARAM_ATOL, rtol=0, msg=f"{k} at step {step}")
    assert a.state_steps() == b.state_steps()
    for step in a.state_steps():
        sa, meta_a = store.load_tensors(a.state_path(step))
        sb, meta_b = store.load_tensors(b.state_path(step))
        assert sa.keys() == sb.keys() and meta_a["step"] == meta_b["step"] == step
        for k in sa:
            if k.startswith("rng."):
                assert torch.equal(sa[k], sb[k]), f"{k} differs at step {step}: not the run's own draws"
            else:
                torch.testing.assert_close(sa[k], sb[k], atol=PARAM_ATOL, rtol=0, msg=f"{k} at step {step}")
    ma, mb = a.metrics(), b.metrics()
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    assert [m["loss"] for m in ma] == pytest.approx([m["loss"] for m in mb], abs=LOSS_ATOL, rel=0)
    sum_a, sum_b = a.summary(), b.summary()
    assert sum_a["stacked_runs"] == 3 and sum_a["config"] == sum_b["config"] and sum_a["params"] == sum_b["params"]


@pytest.mark.slow
def test_stacked_runs_match_run_by_run(tmp_path, reference):
    ref_store, ref_runs = reference
    st = store.Store(tmp_path)
    runs = stacked.train_stacked(CONFIGS, st, progress=False)
    assert [r.id for r in runs] == [c.run_id() for c in CONFIGS] and all(r.done for r in runs)
    for a, b in zip(runs, ref_runs):
        assert_same_run(a, b)
    # evaluated as any run: the same samples, concept space and learning times
    ex = config.experiment("tiny")
    probe = evaluate.load_probe(st, ex.run.data, ex.probe)
    prompts = prompting.class_prompts(ex.run.data, ex.eval)
    tables = []
    for rs in (runs, ref_runs):
        cs = pd.concat([evaluate.concept_space(evaluate.evaluate(r, probe, prompts, ex.eval, progress=False),
                                               ex.run.data.concepts).assign(run=r.id) for r in rs])
        tables.append(cs.reset_index(drop=True))
    mine, theirs = tables
    assert mine[["run", "step", "prompt"]].equals(theirs[["run", "step", "prompt"]])
    probs = [c for c in mine if c.startswith("p_")]
    assert abs(mine[probs] - theirs[probs]).max().max() < PROB_ATOL
    hits = [c for c in mine if c.startswith("acc_")] + ["joint"]
    assert mine[hits].equals(theirs[hits])  # what learning times are read from
    times = [dynamics.learning_times(t, ex.run.data.concepts, "small-blue") for t in tables]
    pd.testing.assert_frame_equal(*times)


def test_per_run_clipping_matches_clip_grad_norm():
    torch.manual_seed(0)
    grads = [torch.randn(3, 5, 4), torch.randn(3, 7), torch.randn(3, 2, 2, 3, 3)]
    grads[0][1] *= 1e-3  # run 1 below the threshold: left as it is
    max_norm = torch.tensor([1.0, 1.0, 0.5])
    expected = []
    for i in range(3):
        params = [torch.zeros_like(g[i], requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = g[i].clone()
        torch.nn.utils.clip_grad_norm_(params, float(max_norm[i]))
        expected.append([p.grad for p in params])
    stacked.clip_per_run(grads, max_norm)
    for i in range(3):
        for g, e in zip(grads, expected[i]):
            torch.testing.assert_close(g[i], e, atol=1e-7, rtol=1e-6)


@pytest.mark.slow
def test_interrupted_runs_resume_in_stacks_and_with_train(tmp_path, reference):
    """A run interrupted under train.train resumes in a stack (runs at different steps: one stack per
    step), and a stacked run interrupted resumes under train.train; both end as the reference."""
    _, ref_runs = reference
    st = store.Store(tmp_path)
    train.train(CONFIGS[0], st, progress=False, stop_after=16)
    stacked.train_stacked(CONFIGS[1:], st, progress=False, stop_after=7)
    runs = stacked.train_stacked(CONFIGS[:2], st, progress=False)  # at steps 11 and 5 (their last states)
    train.train(CONFIGS[2], st, progress=False)
    for a, b in zip(runs + [st.run(CONFIGS[2])], ref_runs):
        for step in b.checkpoint_steps():
            wa, wb = a.load_weights(step), b.load_weights(step)
            assert all(torch.allclose(wa[k], wb[k], atol=PARAM_ATOL, rtol=0) for k in wa), f"{a.id} at {step}"
        assert [m["loss"] for m in a.metrics()] == pytest.approx([m["loss"] for m in b.metrics()], abs=LOSS_ATOL)


@pytest.mark.slow
def test_done_runs_are_skipped(tmp_path, reference, monkeypatch):
    ref_store, ref_runs = reference
    st = store.Store(tmp_path / "store")
    shutil.copytree(ref_store.root, st.root)
    done = st.run(CONFIGS[0])
    stamps = {p: p.stat().st_mtime_ns for p in done.dir.rglob("*") if p.is_file() and p.name != "lock"}
    built = []
    real = stacked._new_state
    monkeypatch.setattr(stacked, "_new_state", lambda cfg, device: built.append(cfg) or real(cfg, device))
    assert [r.id for r in stacked.train_stacked(CONFIGS, st, progress=False)] == [c.run_id() for c in CONFIGS]
    assert built == []  # all done: nothing built, nothing trained
    new = tiny(**{"train.seed": 3})
    runs = stacked.train_stacked([CONFIGS[0], new], st, progress=False)
    assert built == [new] and runs[1].done and runs[1].checkpoint_steps() == train.checkpoint_steps(40, 5, 5)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.parametrize("change, setting", [
    ({"model.channels": [16, 32]}, "model.channels"),
    ({"train.steps": 30}, "train.steps"),
    ({"train.batch_size": 32}, "train.batch_size"),
    ({"data.resolution": 16}, "data.resolution"),
])
def test_runs_that_cannot_share_a_stack_are_refused_by_name(tmp_path, change, setting):
    with pytest.raises(ValueError, match=f"{setting} differs"):
        stacked.train_stacked([tiny(), tiny(**change)], store.Store(tmp_path), progress=False)
    assert not (tmp_path / "runs").exists()  # refused before anything is written


@pytest.mark.parametrize("change, setting", [({"model.recipe": "paper"}, "model.recipe"),
                                             ({"model.dropout": 0.1}, "model.dropout")])
def test_paper_recipe_and_dropout_are_not_implemented(tmp_path, change, setting):
    with pytest.raises(NotImplementedError, match=f"{setting}.*train.train"):
        stacked.train_stacked([tiny(**change)], store.Store(tmp_path), progress=False)
    assert not (tmp_path / "runs").exists()
