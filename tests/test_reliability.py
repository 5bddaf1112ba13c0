"""Runs survive kills and concurrent use; bad input is refused by name before any compute."""
import dataclasses
import shutil
import subprocess
import sys

import kill_harness
import pytest
from conceptspace import book, config, data, evaluate, interventions, model, prompting, sim, store, sweep, train


def test_three_kills_including_mid_write_leave_the_run_bit_identical():
    report = kill_harness.kill_and_resume(3, seed=1, log=lambda msg: None)
    assert report["kills"] == 3 and report["mid_write"] >= 1
    assert report["identical_weights"] and report["identical_metrics"]


CONCURRENT = """
import sys, torch
from conceptspace import config, store, train
class Mark(train.Hook):
    def on_step(self, step, loss):
        open(sys.argv[2], "w").write("trained")
train.train(config.experiment("tiny").run, store.Store(sys.argv[1]), hooks=(Mark(),), progress=False)
"""


def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path / "s"), str(tmp_path / f"m{i}")])
             for i in range(2)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(list(tmp_path.glob("m*"))) == 1  # exactly one of them trained
    run = store.Store(tmp_path / "s").run(config.experiment("tiny").run)
    assert run.done and len(run.checkpoint_steps()) == 5


def test_a_corrupted_checkpoint_is_left_out_of_evaluation_with_its_path(tmp_path, capsys):
    ex = config.experiment("tiny")
    st = store.Store(tmp_path)
    run = train.train(ex.run, st, progress=False)
    bad = run.checkpoint_path(run.checkpoint_steps()[1])
    bad.write_bytes(bad.read_bytes()[:-10])
    probe = evaluate.load_probe(st, ex.run.data, ex.probe)
    table = evaluate.evaluate(run, probe, prompting.class_prompts(ex.run.data, ex.eval)[:1], ex.eval, progress=False)
    assert run.checkpoint_steps()[1] not in set(table.step) and len(set(table.step)) == 4
    assert str(bad) in capsys.readouterr().err


def test_a_run_refuses_to_start_without_disk_space(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(train.shutil, "disk_usage", lambda p: usage._replace(free=1000))
    with pytest.raises(train.DiskSpaceError, match=r"not enough disk space for run .*\(5 checkpoints"):
        train.train(config.experiment("tiny").run, store.Store(tmp_path), progress=False)
    assert not list(tmp_path.rglob("*.safetensors"))


def stray(**kw):
    return lambda: config.experiment("tiny", kw)


BAD = [  # (what is called, the words the error must contain)
    (stray(**{"data.delta_color": -0.2}), "data.delta_color = -0.2 is out of range"),
    (stray(**{"data.delta_color": 1.2}), "data.delta_color = 1.2 is out of range; allowed: 0 < data.delta_color ≤ 1"),
    (stray(**{"data.delta_size": 0.9}), "data.delta_size = 0.9 is out of range"),
    (stray(**{"data.delta_color": "0.2"}), "data.delta_color = '0.2' must be a number"),
    (stray(**{"train.steps": 0}), "train.steps = 0 is out of range"),
    (stray(**{"train.steps": -5}), "train.steps = -5 is out of range"),
    (stray(**{"train.batch_size": 1.5}), "train.batch_size = 1.5 must be a whole number"),
    (stray(**{"train.learning_rate": float("nan")}), "train.learning_rate = nan must be finite"),
    (stray(**{"data.resolution": 24}), "data.resolution = 24 is out of range; allowed: one of [8, 16, 32, 64]"),
    (stray(**{"data.resolution": 8, "model.channels": [8, 8, 8, 8]}), "cannot pass through 4 UNet levels"),
    (stray(**{"data.held_out": [[1, 1], [0, 1]]}), "leaves only one value of 'size'"),
    (stray(**{"data.held_out": [[1, 1, 1]]}), "data.held_out has [1, 1, 1]"),
    (stray(**{"data.held_out": [[1, 1], [1, 1]]}), "lists a class twice"),
    (stray(**{"data.concepts": ["color", "shape"]}),
     "data.concepts has 'shape', not a concept of data.dataset = 'shapes'; allowed: ['color', 'size', 'background']"),
    (stray(**{"data.concepts": ["color", "color"]}), "repeats a concept"),
    (stray(**{"model.channels": [0, 16]}), "every level needs at least 1 channel"),
    (stray(**{"model.norm_groups": 5}), "model.norm_groups = 5 must divide every channel count"),
    (stray(**{"train.cond_dropout": 1.0}), "train.cond_dropout = 1.0 is out of range"),
    (stray(**{"eval.sampler_steps": 0}), "eval.sampler_steps = 0 is out of range"),
    (stray(**{"sweep.delta_color": [0.2, 1.4]}),
     "sweep.delta_color[1] = 1.4 is out of range; allowed: 0 < sweep.delta_color[1] ≤ 1"),
    (stray(**{"sweep.seeds": [0, 1.5]}), "sweep.seeds[1] = 1.5 must be a whole number"),
    (stray(**{"capability.cond_dropout": 0}), "capability.cond_dropout = 0 is out of range"),
    (stray(**{"capability.long_delta_color": [0.6]}), "capability.long_delta_color has 0.6, which "
                                                     "capability.delta_color also has"),
    (stray(**{"capability.long_delta_color": ["blue"]}), "capability.long_delta_color[0] = 'blue' must be a number"),
    (stray(**{"capability.delta_color": []}), "capability.delta_color = [] must be a non-empty list"),
    (stray(**{"sim.seeds": 0}), "sim.seeds = 0 is out of range"),
    (stray(**{"trian.steps": 10}), "unknown setting trian"),
    (stray(**{"train.step": 10}), "unknown setting train.step in train"),
    (lambda: config.experiment("huge"), "profile = 'huge' is unknown; allowed: ['cpu', 'gpu', 'tiny']"),
    (lambda: config.experiment("tiny", ["data.delta_color"]), "overrides = ['data.delta_color'] must be a mapping"),
    (lambda: config.DataConfig(delta_color=3.0), "data.delta_color = 3.0 is out of range"),
    (lambda: dataclasses.replace(config.TrainConfig(), steps=-1), "train.steps = -1 is out of range"),
    (lambda: config.experiment("tiny").run.with_changes(**{"data.nuisance": 2}), "data.nuisance = 2 is out of range"),
    (lambda: data.concept_signal(config.DataConfig(), "shape"), "concept = 'shape' is not among data.concepts"),
    (lambda: interventions.pure_vector("green"), "intervention direction 'green' is unknown"),
    (lambda: sweep.run_sweep([config.experiment("tiny").run], config.EvalConfig(), config.ProbeConfig(),
                             backend="mpi"), "backend = 'mpi' is unknown; allowed: ['local', 'ray']"),
    (lambda: sim.SimTask(mu=(1.0, 2.0), var=(0.1,)), "need one entry per concept"),
    (lambda: sim.SimTask(mu=(1.0, 2.0), var=(0.1, -0.1)), "must be ≥ 0"),
]


@pytest.mark.parametrize("call, words", BAD, ids=[w[:40] for _, w in BAD])
def test_bad_input_is_refused_by_name_before_any_compute(call, words, monkeypatch):
    for user in (model, train, evaluate):  # each module that builds a model, under the name it imported
        monkeypatch.setattr(user, "build_model", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises((config.ConfigError, ValueError)) as err:
        call()
    assert words in str(err.value)


def test_the_main_command_refuses_bad_arguments(capsys):
    for argv, words in ((["--profile", "laptop"], "invalid choice: 'laptop'"),
                        (["--chapters", "99_nothing"], "unknown chapter '99_nothing'"),
                        (["--set", "seed"], "expected KEY=VALUE"),
                        (["--set", "train.steps=0"], "train.steps = 0 is out of range")):
        with pytest.raises((SystemExit, config.ConfigError)) as err:
            book.main(argv + ["--no-html"])
        out = capsys.readouterr().err + str(err.value)
        assert words in out, (argv, out)


def test_building_html_from_a_subset_needs_every_chapter_executed_once(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(book, "STAGE", tmp_path / "stage")  # nothing executed yet
    monkeypatch.setattr(book, "execute", lambda *a, **k: pytest.fail("compute started"))
    with pytest.raises(SystemExit):
        book.main(["--chapters", "02_concept_signal"])
    assert "chapter 01_concept_space was never executed" in capsys.readouterr().err


@pytest.mark.parametrize("chapter, params, words", [
    ("01_concept_space", {"delta_size": 0.0}, "data.delta_size = 0.0 is out of range"),
    ("01_concept_space", {"seed": -1}, "train.seed = -1 is out of range"),
    ("02_concept_signal", {"backend": "slurm"}, "backend = 'slurm' is unknown"),
    ("02_concept_signal", {"threshold": 1.5}, "threshold = 1.5 is out of range"),
    ("03_sudden_turns", {"min_angle": 200}, "min_angle = 200 is out of range"),
    ("04_hidden_capabilities", {"threshold": 0.1}, "threshold = 0.1 is out of range"),
    ("05_sim_theory", {"overrides": {"sim.n": 0}}, "sim.n = 0 is out of range"),
])
def test_a_bad_notebook_parameter_fails_fast_at_the_top(chapter, params, words, tmp_path):
    import jupytext
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError
    rel = next(n for n in book.toc_files() if n.endswith(chapter))
    src = tmp_path / "in.ipynb"
    nb = jupytext.read(book.source_of(rel))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, src)
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(src), str(tmp_path / "out.ipynb"), parameters={"profile": "tiny", **params},
                                   kernel_name="python3", progress_bar=False, execution_timeout=120)
    assert words in str(err.value)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "An Exception was encountered" in out.cells[0].source
    executed = [c for c in out.cells if c.cell_type == "code" and c.get("execution_count")]
    assert len(executed) <= 3  # parameters, injected parameters, the validating cell: nothing after it ran
