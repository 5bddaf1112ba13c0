"""Sweeps: the local and the Ray backends give identical stored results; stored runs are not retrained."""
import os

import pytest
import torch
from conceptspace import config, sweep
from conceptspace.store import Store


def tiny_grid():
    ex = config.experiment("tiny")
    return ex, sweep.grid(ex.run, **{"data.delta_color": [0.2, 0.6], "train.seed": [0, 1]})


def test_grid_is_every_combination():
    ex, configs = tiny_grid()
    assert len(configs) == 4 and len({c.run_id() for c in configs}) == 4
    assert sorted((c.data.delta_color, c.train.seed) for c in configs) == [(0.2, 0), (0.2, 1), (0.6, 0), (0.6, 1)]


def final_weights(store, cfg):
    run = store.run(cfg)
    return run.load_weights(run.checkpoint_steps()[-1])


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    ex, configs = tiny_grid()
    st = Store(tmp_path_factory.mktemp("local"))
    records = sweep.run_sweep(configs, ex.eval, ex.probe, st, backend="local", workers=2, threads=1, progress=False)
    return ex, configs, st, records


def test_local_sweep_trains_and_evaluates_every_run(local_sweep):
    ex, configs, st, records = local_sweep
    assert [r["run"] for r in records] == [c.run_id() for c in configs]
    table = sweep.concept_space_table(configs, ex.eval, ex.probe, st)
    assert set(table["run"]) == {c.run_id() for c in configs}
    assert set(table["delta_color"]) == {0.2, 0.6} and set(table["prompt"]) >= {"small-blue", "large-red"}


def test_a_second_sweep_trains_nothing(local_sweep):
    ex, configs, st, _ = local_sweep
    stamps = [(st.run(c).dir / "done.json").stat().st_mtime_ns for c in configs]
    records = sweep.run_sweep(configs, ex.eval, ex.probe, st, workers=2, threads=1, progress=False)
    assert [(st.run(c).dir / "done.json").stat().st_mtime_ns for c in configs] == stamps
    assert all(r["train_seconds"] < 5 for r in records)


def test_ray_and_local_sweeps_store_identical_results(local_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    ex, configs, st_local, _ = local_sweep
    st_ray = Store(tmp_path / "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep.run_sweep(configs, ex.eval, ex.probe, st_ray, backend="ray", threads=1, progress=False)
    finally:
        ray.shutdown()
    for cfg in configs:
        a, b = final_weights(st_local, cfg), final_weights(st_ray, cfg)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert st_local.run(cfg).metrics() == st_ray.run(cfg).metrics()
    ta = sweep.concept_space_table(configs, ex.eval, ex.probe, st_local)
    tb = sweep.concept_space_table(configs, ex.eval, ex.probe, st_ray)
    assert ta.equals(tb)


def test_unknown_backend_is_refused():
    ex, configs = tiny_grid()
    with pytest.raises(ValueError, match="backend = 'slurm' is unknown"):
        sweep.run_sweep(configs, ex.eval, ex.probe, backend="slurm")


def test_local_workers_are_spread_over_the_visible_gpus(monkeypatch):
    """Worker i of the local backend gets GPU i mod n (of those CUDA_VISIBLE_DEVICES leaves), one each."""
    import multiprocessing
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    got = []
    for _ in range(4):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,7")
        sweep.pin_gpu(counter, 3)
        got.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert got == ["2", "5", "7", "2"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    sweep.pin_gpu(counter, 2)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"  # the fifth worker, of GPUs 0 and 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    sweep.pin_gpu(counter, 1)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"  # one GPU: left alone
