import json
import pickle

import pytest
import torch
from conceptspace import config, store, train


def tiny(**overrides):
    return config.experiment("tiny", overrides).run


def weights(run):
    return run.load_weights(run.checkpoint_steps()[-1])


def test_checkpoint_schedule_is_dense_early_and_ends_at_the_last_step():
    s = train.checkpoint_steps(20000, 60, 500)
    assert s[0] == 500 and s[-1] == 20000 and len(s) == 60
    gaps = [b - a for a, b in zip(s, s[1:])]
    assert gaps[0] < gaps[-1]
    assert s[20] == pytest.approx(3933, abs=2)  # the paper's save_steps[20]


def test_run_lands_in_the_store_and_is_not_retrained(tmp_path):
    st = store.Store(tmp_path)
    cfg = tiny()
    run = train.train(cfg, st, progress=False)
    assert run.done and run.checkpoint_steps() == train.checkpoint_steps(40, 5, 5)
    assert json.loads((run.dir / "config.json").read_text())["id"] == cfg.run_id()
    stamp = (run.dir / "done.json").stat().st_mtime_ns
    again = train.train(cfg, st, progress=False)
    assert (again.dir / "done.json").stat().st_mtime_ns == stamp


@pytest.mark.slow  # ≈ 3 s each: trains and interrupts a run twice
@pytest.mark.parametrize("recipe", ["diffusers", "paper"])
def test_resume_after_interruption_gives_identical_weights(tmp_path, recipe):
    # every random stream in play; the paper recipe's epoch batches continue the same epoch
    cfg = tiny(**{"model.recipe": recipe, "model.dropout": 0.1, "train.cond_dropout": 0.2})
    whole = train.train(cfg, store.Store(tmp_path / "a"), progress=False)
    st = store.Store(tmp_path / "b")
    for stop in (7, 16):  # killed twice, between checkpoints
        train.train(cfg, st, progress=False, stop_after=stop)
    resumed = train.train(cfg, st, progress=False)
    for step in whole.checkpoint_steps():
        a, b = whole.load_weights(step), resumed.load_weights(step)
        assert all(torch.equal(a[k], b[k]) for k in a), f"weights differ at step {step}"
    assert whole.metrics() == resumed.metrics()


def test_resumed_optimizer_state_keeps_the_parameters_layout(tmp_path):
    """Fused AdamW (CUDA) needs each moment laid out as its parameter: channels_last there."""
    cfg = tiny()
    cpu = torch.device("cpu")

    def state():
        s = train._new_state(cfg, cpu)
        s.model.to(memory_format=torch.channels_last)
        return s

    a = state()
    train_set = train.training_set(cfg, cpu)
    train._train_step(a, train_set, train.loss_function(cfg), cfg.train, cpu)
    b = state()
    store.save_tensors(tmp_path / "state.safetensors", train._state_tensors(a))  # written contiguous
    tensors, _ = store.load_tensors(tmp_path / "state.safetensors")
    train._load_state(b, tensors, {"step": 1, "losses": []})
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert b.optimizer.state[q][key].stride() == q.stride()
            assert torch.equal(b.optimizer.state[q][key], a.optimizer.state[p][key])
        assert b.optimizer.state[q]["step"].device == cpu


@pytest.mark.slow  # ≈ 3.5 s: trains a run
def test_corrupted_state_falls_back_to_the_previous_one(tmp_path, capsys):
    cfg = tiny()
    whole = train.train(cfg, store.Store(tmp_path / "a"), progress=False)
    st = store.Store(tmp_path / "b")
    run = train.train(cfg, st, progress=False, stop_after=25)
    newest = run.state_path(run.state_steps()[-1])
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    resumed = train.train(cfg, st, progress=True)
    err = capsys.readouterr().err
    assert "falling back" in err and str(newest) in err
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_corruption_is_detected_with_its_path(tmp_path):
    path = tmp_path / "x.safetensors"
    store.save_tensors(path, {"w": torch.arange(10.0)}, {"step": 3})
    tensors, meta = store.load_tensors(path)
    assert meta == {"step": 3} and torch.equal(tensors["w"], torch.arange(10.0))
    payload = bytearray(path.read_bytes())
    payload[-4] ^= 0xFF  # flip bits inside the tensor data
    path.write_bytes(bytes(payload))
    with pytest.raises(store.CorruptFileError, match="content hash mismatch") as err:
        store.load_tensors(path)
    assert str(path) in str(err.value)
    path.write_bytes(b"")
    with pytest.raises(store.CorruptFileError, match=str(path)):
        store.load_tensors(path)


class _Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_a_pickled_payload_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny()
    st = store.Store(tmp_path / "s")
    run = train.train(cfg, st, progress=False, stop_after=10)
    planted = run.state_path(run.state_steps()[-1])
    planted.write_bytes(pickle.dumps(_Boom()))  # a malicious "checkpoint"
    train.train(cfg, st, progress=False)
    assert not (tmp_path / "PWNED").exists()


def test_hooks_observe_every_step_and_checkpoint(tmp_path):
    class Recorder(train.Hook):
        def __init__(self):
            self.steps, self.checkpoints = [], []

        def on_step(self, step, loss):
            self.steps.append((step, loss))

        def on_checkpoint(self, step, run):
            self.checkpoints.append((step, run.checkpoint_path(step).exists()))

    rec = Recorder()
    cfg = tiny()
    train.train(cfg, store.Store(tmp_path), hooks=(rec,), progress=False)
    assert [s for s, _ in rec.steps] == list(range(1, 41)) and all(loss > 0 for _, loss in rec.steps)
    assert rec.checkpoints == [(s, True) for s in train.checkpoint_steps(40, 5, 5)]


def test_compile_mode_uses_cuda_graphs_only_on_cuda():
    """CUDA graphs (reduce-overhead) on CUDA unless switched off; CPU is eager unless compile is forced,
    and then never asks for CUDA graphs."""
    run, cuda, cpu = tiny(), torch.device("cuda"), torch.device("cpu")
    def mode(dev, **ch):
        return train.compile_mode(run.with_changes(**ch).train, dev)
    assert mode(cuda) == "reduce-overhead" and mode(cuda, **{"train.cuda_graphs": False}) == "default"
    assert mode(cpu) is None and mode(cpu, **{"train.compile": "always"}) == "default"
    assert mode(cuda, **{"train.compile": "never"}) is None


def test_fused_adamw_is_its_own_run_and_takes_the_unfused_step():
    """train.fused_adamw: fused on CPU only when asked (the tiny and cpu profiles ask), with its own run id,
    and the same update as the unfused optimizer up to rounding."""
    cpu = torch.device("cpu")
    fused, plain = tiny(), tiny(**{"train.fused_adamw": "cuda"})
    assert fused.run_id() != plain.run_id()
    assert train.adamw([torch.zeros(1, requires_grad=True)], fused.train, cpu).defaults["fused"]
    assert not train.adamw([torch.zeros(1, requires_grad=True)], plain.train, cpu).defaults["fused"]
    after = []
    for cfg in (fused, plain):
        torch.manual_seed(0)
        p = torch.nn.Parameter(torch.randn(64, 32))
        start = p.detach().clone()
        opt = train.adamw([p], cfg.train, cpu)
        for _ in range(5):
            p.grad = torch.sin(p.detach() * 3)
            opt.step()
        assert (p.detach() - start).abs().min() > 1e-4  # every weight moved
        after.append(p.detach())
    torch.testing.assert_close(after[0], after[1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # ≈ 5 s: torch.compile
def test_compile_switch_and_compiled_forward_matches_eager():
    """train.compile: eager on CPU by default; compiled, the forward shares the model's parameters (so
    checkpoints keep their names) and computes what eager does."""
    cfg = tiny()
    model = train.build_model(cfg).eval()
    cpu = torch.device("cpu")
    assert train.compiled(model, cfg.train, cpu) is model
    assert train.compiled(model, cfg.with_changes(**{"train.compile": "never"}).train, torch.device("meta")) is model
    fast = train.compiled(model, cfg.with_changes(**{"train.compile": "always"}).train, cpu)
    assert fast is not model
    assert dict(fast.named_parameters()).keys() >= {"_orig_mod." + k for k, _ in model.named_parameters()}
    x, t, h = torch.randn(4, 3, 8, 8), torch.tensor([1, 10, 100, 999]), torch.rand(4, 11)
    with torch.no_grad():
        assert torch.allclose(fast(x, t, h), model(x, t, h), atol=1e-5)
