"""The build's plan (conceptspace.plan): the one list of each chapter's trained runs, what is stored and
what is left to train, the estimate, the --plan-only flag, the progress line and its thread, and the
wall times on the status page."""
import functools
import io
import threading
import time

import jupytext
import pytest
import torch
from conceptspace import book, capability, config, evaluate, plan, results, sweep, train
from conceptspace.store import Store


class Fixed(plan.Calibration):
    """Constant costs: plans that do not depend on this machine's speed."""

    def __init__(self):
        super().__init__("cpu")

    def step_seconds(self, cfg):
        return 0.01

    def image_step_seconds(self, cfg, batch):
        return 0.0001

    def probe_seconds(self, cfg, probe):
        return 1.0

    def sim_seconds(self, s):
        return 2.0


def unique_ids(runs: dict) -> set:
    return {c.run_id() for cs in runs.values() for c in cs}


def test_the_registry_covers_every_chapter_and_dedupes(tiny):
    runs = plan.chapter_runs(tiny)
    assert set(runs) == set(book.chapters())
    for name, configs in runs.items():
        ids = [c.run_id() for c in configs]
        assert len(ids) == len(set(ids)), f"{name} lists a run twice"
    assert [c.run_id() for c in runs["03_sudden_turns"]] == [c.run_id() for c in runs["02_concept_signal"]]
    # chapter 4 probes chapter 2's runs (capability.steps 0); recipes has chapter 1's diffusers run
    assert {c.run_id() for c in runs["02_concept_signal"]} < {c.run_id() for c in runs["04_hidden_capabilities"]}
    assert tiny.run.run_id() in {c.run_id() for c in runs["recipes"]}
    total = sum(len(c) for c in runs.values())
    assert len(unique_ids(runs)) < total  # shared runs: the plan trains each once
    p = plan.plan(tiny, store=Store("/nonexistent/store"), calibration=Fixed())
    assert sum(c.to_train for c in p.chapters) == len(p.pending) == p.runs == len(unique_ids(runs))
    assert {c.name: c.earlier for c in p.chapters}["03_sudden_turns"] == len(runs["03_sudden_turns"])
    slow = plan.plan(tiny, store=Store("/nonexistent/store"), calibration=Fixed(), startup=10)
    assert slow.estimate("02_concept_signal") == 10  # its kernel's start: the pool trained and evaluated its runs
    assert slow.estimate("05_sim_theory") == 10 + 2  # its kernel's start and its SGD
    assert slow.ahead_seconds == pytest.approx(p.ahead_seconds + 10)  # + the pool's workers' start
    assert slow.estimate(plan.AHEAD) == slow.ahead_seconds
    assert [w.seconds for w in p.work] == sorted((w.seconds for w in p.work), reverse=True)  # longest first
    assert len(p.work) == p.runs  # one job per run, however many chapters read it
    ch4 = {c.run_id() for c in runs["04_hidden_capabilities"]}
    asked = [w for w in p.work if w.config.run_id() in ch4]
    assert asked and all(len(w.prompts) > len(plan.class_prompts(w.config.data, tiny.eval)) for w in asked)  # + ch4's


def test_the_registry_is_what_the_chapters_run(tiny):
    """The chapters build their run lists with the same functions, and chapter 1's parameters are the
    settings' defaults, so its run is the profile's (the plan's) on every profile."""
    calls = {"02_concept_signal": "sweep.signal_sweep(ex)", "03_sudden_turns": "sweep.signal_sweep(ex)",
             "04_hidden_capabilities": "capability.run_lists(ex)",
             "06_beyond_two_concepts": "sweep.three_concept_configs(ex.run, ex.multi)",
             "07_underspecification": "underspecification.underspec_configs(ex)",
             "recipes": "recipes.run_configs(ex, seeds)", "01_concept_space": "train.train(ex.run,",
             "01_concept_space seeds": "sweep.seed_runs(ex, seeds)"}
    for name, call in calls.items():
        nb = jupytext.read(book.source_of(f"book/{name.split()[0]}"))
        assert call in "\n".join(c.source for c in nb.cells if c.cell_type == "code"), name
    p1 = plan.chapter_parameters("01_concept_space")
    for profile in config.profile_names():
        own = config.experiment(profile, {"data.delta_color": p1["delta_color"], "data.delta_size": p1["delta_size"],
                                          "train.seed": p1["seed"]})
        assert own.run.run_id() == config.experiment(profile).run.run_id(), profile


def test_an_empty_store_plans_every_run_with_a_positive_eta(tiny, tmp_path):
    p = plan.plan(tiny, store=Store(tmp_path))  # the real calibration, on the tiny shapes: about a second
    assert p.stored == 0 and all(c.stored == 0 for c in p.chapters)
    assert len(p.pending) == p.runs > 0
    assert p.estimate("05_sim_theory") > 0  # trains no run: its SGD, by its own calibration
    assert p.ahead_seconds >= max(x.seconds for x in p.pending) > 0  # the pool ends after its longest run
    assert p.ahead_seconds >= sum(w.seconds for w in p.work) / p.lanes
    assert 0 < p.calibration_seconds < 60
    assert sum(c.probes for c in p.chapters) == 2  # two-concept and three-concept probes
    table = p.table()
    assert "| chapter | runs | stored |" in table and "ETA" in table and plan.cpu_model() in table
    for c in p.chapters:
        assert f"| {c.name} | {c.runs} | 0 |" in table


@pytest.fixture
def one_thread():
    """Tiny runs train in seconds on one thread; on two busy cores, two threads can take ten times longer."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow  # trains: 10 s
def test_stored_and_half_trained_runs_change_the_counts(tiny, tmp_path, one_thread):
    store = Store(tmp_path)
    before = plan.plan(tiny, store=store, calibration=Fixed())
    train.train(tiny.run, store, progress=False)  # chapter 1's run, which recipes reads too
    half = plan.chapter_runs(tiny)["02_concept_signal"][0]
    train.train(half, store, progress=False, stop_after=20)
    after = plan.plan(tiny, store=store, calibration=Fixed())
    ch = {c.name: c for c in after.chapters}
    assert ch["01_concept_space"].stored == 1 and ch["01_concept_space"].to_train == ch["01_concept_space"].runs - 1 > 0
    ids = {n: {c.run_id() for c in runs} for n, runs in plan.chapter_runs(tiny).items()}
    assert ch["recipes"].stored == 1  # stored before the build, whoever reads it
    assert ch["recipes"].earlier == len(ids["recipes"] & ids["01_concept_space"]) - 1  # chapter 1's other seeds
    assert after.stored == 1 and len(after.pending) == len(before.pending) - 1
    resumed = max(store.run(half).state_steps())
    assert 0 < resumed <= 20
    assert ch["02_concept_signal"].steps == {c.name: c for c in before.chapters}["02_concept_signal"].steps - resumed
    assert after.seconds < before.seconds
    done, fraction = plan.progress(after)
    assert done == 1 and fraction == 0  # nothing trained since this plan was made
    train.train(half, store, progress=False)
    done, fraction = plan.progress(after)
    assert done == 2 and 0 < fraction < 1


def test_plan_only_prints_the_plan_and_executes_no_chapter(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONCEPTSPACE_STORE", str(tmp_path))

    def no_chapter(*args, **kwargs):
        raise AssertionError("--plan-only executed a chapter")
    monkeypatch.setattr(book, "execute", no_chapter)
    assert book.main(["--profile", "tiny", "--plan-only"]) == 0
    out = capsys.readouterr().out
    assert "Plan: profile tiny" in out and "| 04_hidden_capabilities |" in out and "ETA" in out
    assert "| total |" in out and "[build]" not in out


def test_the_pools_makespan_hands_out_the_longest_job_first():
    assert plan.makespan([3, 3, 3], 2) == 6  # the odd run out trains alone: not 4.5, half of the work per lane
    assert plan.makespan([3, 4, 3, 4], 2) == 7  # 4+3 on each lane
    assert plan.makespan([1, 2, 3], 1) == 6
    assert plan.makespan([5, 1], 4) == 5  # more lanes than jobs: the longest job
    assert plan.makespan([], 2) == 0


@pytest.mark.slow  # trains the tiny runs of two chapters: about 20 s
def test_the_pool_leaves_the_chapters_nothing_to_train_or_evaluate(tiny, tmp_path, monkeypatch):
    store = Store(tmp_path)
    names = ["01_concept_space", "04_hidden_capabilities"]
    before = plan.plan(tiny, names, store=store, calibration=Fixed())
    assert before.work and before.pending
    records = plan.train_ahead(before, tiny, store, progress=False)
    assert sorted(r["run"] for r in records) == sorted(w.config.run_id() for w in before.work)
    after = plan.plan(tiny, names, store=store, calibration=Fixed())
    assert after.work == [] and after.pending == [] and after.ahead_seconds == 0
    assert after.stored == after.runs == before.runs
    # chapter 4's own table then finds every prompt it asks in the store: nothing is sampled
    monkeypatch.setattr(evaluate, "_evaluate_and_store", lambda *a, **k: pytest.fail("sampled after the pool"))
    probed, _ = capability.run_lists(tiny)
    asked = functools.partial(capability.intervention_prompts, cap=tiny.capability)
    table = sweep.concept_space_table(probed, tiny.eval, tiny.probe, store, extra_prompts=asked)
    assert set(table["prompt"]) >= {p.name for p in asked(probed[0])}
    samples = evaluate.evaluate(store.run(probed[0]), evaluate.load_probe(store, probed[0].data, tiny.probe),
                                plan.class_prompts(probed[0].data, tiny.eval), tiny.eval, progress=False)
    assert not samples.duplicated(["step", "prompt", "sample"]).any()  # the pool sampled each class prompt once


def test_the_progress_line():
    assert plan.clock(3725) == "1:02:05"
    line = plan.progress_line(3, 17, 600, 3600, 0.25)
    assert line == "[build] runs 3/17 · training 25% · elapsed 0:10:00 · ETA 0:30:00"  # 600 s × 0.75 / 0.25
    assert plan.progress_line(0, 17, 60, 3600, 0.0).endswith("ETA 0:59:00")  # the plan's until progress shows
    assert plan.progress_line(0, 17, 4000, 3600, 0.01).endswith("ETA ? (past the plan's 1:00:00)")
    assert plan.progress_line(17, 17, 900, 3600, 1.0).endswith("training 100% · elapsed 0:15:00 · ETA 0:00:00")


def test_the_progress_thread_prints_and_ends_with_its_block(tiny):
    p = plan.plan(tiny, store=Store("/nonexistent/store"), calibration=Fixed())
    out = io.StringIO()
    with plan.Progress(p, interval=0.01, every=0.02, stream=out) as prog:
        time.sleep(0.2)
    assert not prog._thread.is_alive()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2 and all(ln.startswith(f"[build] runs 0/{p.runs} · training 0%") for ln in lines)
    with pytest.raises(RuntimeError), plan.Progress(p, interval=0.01, stream=io.StringIO()) as prog:
        raise RuntimeError("a chapter failed")
    assert not prog._thread.is_alive()
    assert not [t for t in threading.enumerate() if t.name == "build-progress"]


def test_the_status_page_shows_each_chapters_wall_time_and_cpu(tmp_path, results_dir):
    results.write("01_concept_space", None, [], time.time() - 5, "cpu")
    book.record_times({"01_concept_space": 12.3}, "tiny", "Test CPU, 2 cores", {"01_concept_space": 10.0})
    book.status_page(tmp_path, {"01_concept_space": 12.3})
    row = next(ln for ln in (tmp_path / "book" / "status.md").read_text().splitlines() if "01_concept_space" in ln)
    assert "| 12 s | 10 s | Test CPU, 2 cores |" in row
    book.status_page(tmp_path, {})  # a later build that did not execute it
    row = next(ln for ln in (tmp_path / "book" / "status.md").read_text().splitlines() if "01_concept_space" in ln)
    assert "| 12 s (earlier build) | 10 s | Test CPU, 2 cores |" in row
    book.record_times({plan.AHEAD: 300.4}, "tiny", "Test CPU, 2 cores", {plan.AHEAD: 250.0})
    book.status_page(tmp_path, {plan.AHEAD: 300.4})
    row = next(ln for ln in (tmp_path / "book" / "status.md").read_text().splitlines() if plan.AHEAD in ln)
    assert "| 300 s | 250 s | Test CPU, 2 cores |" in row


def test_the_cpu_is_named_with_its_family_and_model_so_zen_generations_differ(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n\n"
                    "processor\t: 1\ncpu family\t: 99\nmodel\t\t: 1\nmodel name\t: other\n")
    assert plan.cpu_model(str(info)).startswith("AMD EPYC (family 25, model 17), ")
    info.write_text("model name\t: Some CPU\n")
    assert plan.cpu_model(str(info)).startswith("Some CPU, ")
