"""The build's plan: which trained runs each chapter reads, which the store holds already, what the rest
will cost on this machine, and one progress line for the whole build.

`chapter_batches` is the one list of the runs the chapters train, built from the functions the chapters
call (sweep.signal_sweep, capability.run_lists, sweep.three_concept_configs, recipes.run_configs,
celeba.run_config; chapter 1's run is the profile's run); a run two chapters read is trained once, by the
first. `plan` counts what is stored and gathers the rest as one pool of work, a job per run: its steps
left and the prompts of every chapter that reads it not yet in the evaluation cache. It estimates each
job from a short calibration (bench.train_timing, bench.sampling_rate: a few steps per model shape, on
one thread, only for work left to do) and the pool as its jobs handed out longest first to the sweep's
workers (`makespan`), after the probes and one workers' start-up; a chapter then costs its kernel's
start-up, as long as the main command's own (`startup_seconds`), and chapter 5 its SGD, which trains no
run (`OTHER_WORK`). Analysis cells are not estimated. `train_ahead` does the pool's work before the
chapters; `Progress` prints the build's progress meanwhile. Used by: book.main.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil
import torch
import torch.nn.functional as F

from . import capability, celeba, recipes, sweep, underspecification
from .config import Experiment, ProbeConfig, RunConfig, SimConfig, stable_hash, to_dict
from .prompting import class_prompts
from .store import REPO_ROOT, Run, Store

MIN_FRACTION = 0.02  # below this share of the training done, the ETA is the plan's, not re-scaled
POLL_SECONDS = 5.0   # how often the progress thread reads the store
PRINT_SECONDS = 60.0  # a progress line at least this often (and whenever a run finishes)


@dataclass(frozen=True, eq=False)
class Batch:
    """Runs a chapter trains and evaluates together (one `sweep.run_sweep` call, or chapter 1's
    `train.train` in the kernel); `extra` adds prompts beside the class prompts."""
    configs: tuple[RunConfig, ...]
    extra: Callable | None = None
    probe: ProbeConfig | None = None  # None: the profile's


def chapter_parameters(name: str, root=REPO_ROOT) -> dict:
    """The literal values of a chapter's parameters cell: what it runs with where nothing is injected."""
    import jupytext

    from .book import source_of, toc_files

    rel = next(n for n in toc_files(root) if n.rsplit("/", 1)[-1] == name)
    cell = next(c for c in jupytext.read(source_of(rel, root)).cells if "parameters" in c.metadata.get("tags", []))
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):  # not a literal: nothing this module reads
                out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def chapter_batches(ex: Experiment, root=REPO_ROOT) -> dict[str, list[Batch]]:
    """Every executable chapter's trained runs, in the batches it trains them in. Chapter 1 trains the
    profile's run (its parameters are the settings' defaults: tests/test_plan.py), then the same run at
    the seeds it judges HC1 across; chapter 3 reads chapter 2's sweep; chapter 4 asks its runs for its
    intervention and guidance prompts too."""
    cap = ex.capability
    probed, guided = capability.run_lists(ex)
    folder = celeba.folder(chapter_parameters("06_beyond_two_concepts", root)["celeba_folder"], ex.celeba)
    faces = ([Batch((celeba.run_config(ex.run, ex.celeba, folder),),
                    probe=celeba.probe_config(ex.probe, ex.celeba))] if folder else [])
    masked_folder = celeba.folder(chapter_parameters("07_underspecification", root)["celeba_folder"], ex.celeba)
    masked_faces = ([Batch(tuple(underspecification.celeba_configs(ex, masked_folder)),
                           probe=celeba.probe_config(ex.probe, ex.celeba),
                           extra=functools.partial(underspecification.celeba_prompts, ex=ex))] if masked_folder else [])
    return {
        "01_concept_space": [Batch((ex.run,)),
                             Batch(tuple(sweep.seed_runs(ex, chapter_parameters("01_concept_space", root)["seeds"])))],
        "02_concept_signal": [Batch(tuple(sweep.signal_sweep(ex)))],
        "03_sudden_turns": [Batch(tuple(sweep.signal_sweep(ex)))],
        "04_hidden_capabilities": [
            Batch(tuple(probed), extra=functools.partial(capability.intervention_prompts, cap=cap)),
            Batch(tuple(guided), extra=functools.partial(capability.guidance_prompts, cap=cap))],
        "05_sim_theory": [],
        "06_beyond_two_concepts": [Batch(tuple(sweep.three_concept_configs(ex.run, ex.multi))), *faces],
        "07_underspecification": [Batch(tuple(underspecification.underspec_configs(ex)),
                                        extra=functools.partial(underspecification.chapter_prompts, ex=ex)),
                                  *masked_faces],
        "recipes": [Batch(tuple(recipes.run_configs(ex, chapter_parameters("recipes", root)["seeds"])))],
    }


def _unique(configs) -> list[RunConfig]:
    seen: dict[str, RunConfig] = {}
    for c in configs:
        seen.setdefault(c.run_id(), c)
    return list(seen.values())


def chapter_runs(ex: Experiment, root=REPO_ROOT) -> dict[str, list[RunConfig]]:
    """The trained runs each chapter reads (each once; runs shared between chapters appear in each)."""
    return {name: _unique(c for b in batches for c in b.configs) for name, batches in chapter_batches(ex, root).items()}


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """This machine's CPU as /proc/cpuinfo names it, with its family and model (cloud CPUs are often named
    only "AMD EPYC", which does not tell Zen 3 from Zen 4) and core count; else what `platform` says."""
    fields: dict[str, str] = {}
    with contextlib.suppress(OSError):
        with open(path) as f:
            for ln in f:
                if not ln.strip():
                    break  # the first processor's block is enough
                key, _, value = ln.partition(":")
                fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return f"{name}, {os.cpu_count() or 1} cores"


@contextlib.contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Calibration:
    """Seconds per training step, per sampled image and sampler step, and per probe, measured here on
    first use, once per model shape, a few steps each (bench's timers). On the CPU on one thread, as
    sweep workers on a 2-core machine run: a run given more threads is assumed no faster (an upper
    bound; the progress line re-scales). On CUDA the step is timed eagerly (no compile): an upper bound
    for a compiled run."""

    def __init__(self, device=None, repeats: int = 1):
        from .train import pick_device

        self.device = pick_device(device)
        self.repeats = repeats
        self.cache: dict = {}
        self.seconds = 0.0  # spent calibrating

    def _measure(self, key, fn):
        if key not in self.cache:
            t0 = time.perf_counter()
            self.cache[key] = fn()
            self.seconds += time.perf_counter() - t0
        return self.cache[key]

    def _shape(self, cfg: RunConfig) -> str:
        return stable_hash({"model": to_dict(cfg.model), "data": [cfg.data.dataset, cfg.data.resolution],
                            "batch": cfg.train.batch_size})

    def step_seconds(self, cfg: RunConfig) -> float:
        from . import bench

        def measure():
            run = cfg.with_changes(**{"train.compile": "never"}) if self.device.type == "cuda" else cfg
            with _threads(1):
                return bench.train_timing(run, self.repeats, self.device)
        return self._measure(("step", self._shape(cfg)), measure)

    def image_step_seconds(self, cfg: RunConfig, batch: int) -> float:
        from . import bench

        n, steps = max(1, min(batch, 64)), 2

        def measure():
            with _threads(1):
                return 1 / (bench.sampling_rate(cfg, n, steps, self.device) * steps)
        return self._measure(("sample", self._shape(cfg), n), measure)

    def probe_seconds(self, cfg: RunConfig, probe: ProbeConfig) -> float:
        """Training `probe` as evaluate.load_probe does: its data (rendered in chunks of 128), then its steps;
        on this process's threads, as the build trains it before its pool (measured on one thread, the
        cpu profile's two probes were planned at 156 s each and took 91-107 s on 2 cores)."""
        from . import bench
        from .probe import ConceptProbe, probe_data

        def measure():
            g = torch.Generator().manual_seed(0)
            t0 = time.perf_counter()
            images, labels = probe_data(cfg.data, probe, 128, g)
            render = time.perf_counter() - t0
            net = ConceptProbe(len(cfg.data.concepts), probe.width)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
            idx = torch.randint(len(images), (probe.batch_size,), generator=g)

            def step():
                loss = F.cross_entropy(net(images[idx]).reshape(-1, 2), labels[idx].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            chunks = probe.steps * probe.batch_size / 4 / 128  # probe_data renders steps × batch / 4 images
            return probe.steps * bench.timer_of(step).timeit(3).median + chunks * render
        return self._measure(("probe", stable_hash([to_dict(probe), cfg.data.dataset, cfg.data.resolution,
                                                    len(cfg.data.concepts)])), measure)


    def sim_seconds(self, s: SimConfig) -> float:
        """Chapter 5's SGD: the one-layer runs (one per μ₁ and Var₁ setting) and the deep runs (one per
        seed), each timed for one epoch after a warm-up, times its epochs. Its ODEs and closed forms are
        not counted: about 4 s in all (Zen 3, one thread)."""
        from . import paper, sim

        d = paper.SIM_DEEP
        one = sim.SimTask(n=s.n, dim=s.dim)
        deep = sim.SimTask(mu=d["mu"], var=(d["var"],) * 2, n=s.n, dim=d["dim"])

        def measure():
            def one_layer():
                sim.one_layer_run(one, s.lr, s.batch, 1)

            def deep_run():
                sim.sgd_swing_over_seeds(deep, d["depth"], d["width"], d["lr"], s.batch, 1, [0])
            with _threads(1):
                one_layer()  # warm-up: torch's first calls
                t0 = time.perf_counter()
                one_layer()
                t1 = time.perf_counter()
                deep_run()
                t2 = time.perf_counter()
            return s.epochs * ((t1 - t0) * (len(s.mu_sweep) + len(s.var_sweep)) + (t2 - t1) * s.seeds)
        return self._measure(("sim", stable_hash(to_dict(s))), measure)


# Chapters whose compute is not trained runs, and what it costs by the calibration
OTHER_WORK: dict[str, Callable[["Calibration", Experiment], float]] = {
    "05_sim_theory": lambda cal, ex: cal.sim_seconds(ex.sim),
}


@dataclass
class Pending:
    """A run this build trains: where it starts (a resumed run's last state), its length and planned seconds."""
    run: Run
    start: int
    steps: int
    seconds: float


@dataclass
class Work:
    """What the build's pool does for one run: train what is left of it, then evaluate the prompts of
    every chapter that reads it not yet in the store."""
    config: RunConfig
    probe: ProbeConfig
    steps: int = 0                                      # training steps left
    prompts: dict = field(default_factory=dict)         # prompt key -> Prompt, not yet evaluated
    seconds: float = 0.0


@dataclass
class ChapterPlan:
    name: str
    runs: int = 0      # trained runs it reads
    stored: int = 0    # in the store before the build
    earlier: int = 0   # not stored, trained by an earlier chapter of this build
    to_train: int = 0
    steps: int = 0     # training steps left
    probes: int = 0    # concept probes to train
    seconds: float = 0.0  # its kernel: start-up and work that is not a trained run (chapter 5's SGD)


@dataclass
class Plan:
    profile: str
    cpu: str
    device: str
    chapters: list[ChapterPlan]
    pending: list[Pending] = field(default_factory=list)
    work: list[Work] = field(default_factory=list)  # the pool's jobs, longest first
    lanes: int = 1          # runs the pool trains side by side
    ahead_seconds: float = 0.0  # the probes, then the pool, before the first chapter
    runs: int = 0           # distinct runs the chapters read
    stored: int = 0         # of which in the store already
    calibration_seconds: float = 0.0

    @property
    def seconds(self) -> float:
        return self.ahead_seconds + sum(c.seconds for c in self.chapters)

    def estimate(self, name: str) -> float | None:
        if name == AHEAD:
            return self.ahead_seconds
        return next((c.seconds for c in self.chapters if c.name == name), None)

    def table(self) -> str:
        lines = [f"Plan: profile {self.profile} on {self.cpu} ({self.device}); {self.runs} trained runs read, "
                 f"{self.stored} in the store, {len(self.pending)} to train"
                 + (f" (calibrated in {self.calibration_seconds:.1f} s)" if self.calibration_seconds else ""),
                 "",
                 "| chapter | runs | stored | by an earlier chapter | to train | steps to train | probes "
                 "| est. min |",
                 "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
                 f"| {AHEAD}: {len(self.work)} runs to train or evaluate, {self.lanes} side by side | | | | | | | "
                 f"{self.ahead_seconds / 60:.1f} |"]
        for c in self.chapters:
            lines.append(f"| {c.name} | {c.runs} | {c.stored} | {c.earlier} | {c.to_train} | {c.steps:,} | "
                         f"{c.probes} | {c.seconds / 60:.1f} |")
        lines.append(f"| total | {self.runs} | {self.stored} | | {len(self.pending)} | "
                     f"{sum(c.steps for c in self.chapters):,} | {sum(c.probes for c in self.chapters)} | "
                     f"{self.seconds / 60:.1f} |")
        lines += ["", f"ETA {clock(self.seconds)} on this machine (probes, training, evaluation and start-ups; "
                      "analysis cells and the HTML build not counted)"]
        return "\n".join(lines)


AHEAD = "runs ahead of the chapters"  # the pool's row in the plan, the times file and the status page


def _cached_prompts(run: Run, ev, probe_key: str) -> set[str]:
    """Prompt keys evaluated at the run's last checkpoint (evaluate's cache; it goes checkpoint by checkpoint)."""
    import pandas as pd

    from .evaluate import _eval_dir

    steps = run.checkpoint_steps()
    path = _eval_dir(run, ev, probe_key) / f"step_{steps[-1]:08d}.parquet" if steps else None
    if path is None or not path.exists():
        return set()
    try:
        return set(pd.read_parquet(path, columns=["key"])["key"])
    except Exception:  # unreadable: evaluate recomputes it
        return set()


def makespan(seconds: list[float], lanes: int) -> float:
    """Wall time of jobs handed out longest first to whichever of `lanes` workers frees first (what a
    process pool does with jobs submitted in that order)."""
    loads = [0.0] * max(1, lanes)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


STARTUP_MAX = 60.0  # a longer-lived process calling book.main (a test) says nothing by its age


def startup_seconds() -> float:
    """Seconds since this process started, at most STARTUP_MAX: in the main command, once it has imported
    the library, about what a chapter's kernel or a sweep's worker takes to start."""
    return min(max(0.0, time.time() - psutil.Process().create_time()), STARTUP_MAX)


def plan(ex: Experiment, chapters: list[str] | None = None, store: Store | None = None,
         calibration: Calibration | None = None, root=REPO_ROOT, startup: float = 0.0) -> Plan:
    """Per chapter (in the order given): runs read, stored, trained by an earlier chapter, to train; and
    the work the build does ahead of the chapters, as one pool: every run's training left and its
    evaluation for every chapter that reads it, longest first over the sweep's workers, after the
    probes. A chapter's own estimate is its kernel's `startup` (and chapter 5's SGD): its runs are in
    the store when it starts."""
    from .evaluate import probe_key
    from .train import checkpoint_steps, device_name

    store = store or Store()
    cal = calibration or Calibration()
    batches = chapter_batches(ex, root)
    chapters = list(batches) if chapters is None else chapters
    cores, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    seen: set[str] = set()
    work: dict[str, Work] = {}
    probes: set[str] = set()
    probe_seconds = 0.0
    out = Plan(ex.profile, cpu_model(), device_name(cal.device), [])
    for name in chapters:
        cp = ChapterPlan(name, seconds=startup + (OTHER_WORK[name](cal, ex) if name in OTHER_WORK else 0.0))
        counted: set[str] = set()  # a run two of a chapter's batches read (chapter 1's) counts once in it
        for b in batches.get(name, []):
            configs = _unique(b.configs)
            if not configs:
                continue
            probe = b.probe or ex.probe
            pkey = probe_key(configs[0].data, probe)
            if pkey not in probes and not store.probe_path(pkey).exists():
                cp.probes += 1
                probe_seconds += cal.probe_seconds(configs[0], probe)
            probes.add(pkey)
            for cfg in configs:
                run = store.run(cfg)
                first = run.id not in seen
                seen.add(run.id)
                if run.id not in counted:
                    counted.add(run.id)
                    cp.runs += 1
                    if first:
                        w = work[run.id] = Work(cfg, probe)
                        if run.done:
                            cp.stored += 1
                            out.stored += 1
                        else:
                            start = max(run.state_steps(), default=0)
                            w.steps = cfg.train.steps - start
                            cp.to_train += 1
                            cp.steps += w.steps
                            out.pending.append(Pending(run, start, cfg.train.steps, 0.0))
                    elif not run.done:
                        cp.earlier += 1
                    else:
                        cp.stored += 1
                w = work[run.id]
                cached = _cached_prompts(run, ex.eval, pkey) if run.done else set()
                for p in class_prompts(cfg.data, ex.eval) + (list(b.extra(cfg)) if b.extra else []):
                    if p.key() not in cached:
                        w.prompts.setdefault(p.key(), p)
        out.chapters.append(cp)
    for w in work.values():
        w.seconds = w.steps * cal.step_seconds(w.config) if w.steps else 0.0
        if w.prompts:
            tc = w.config.train
            images = sum(p.n * (2 if p.guidance is not None else 1) for p in w.prompts.values())  # guidance: 2 passes
            n_ckpt = len(checkpoint_steps(tc.steps, tc.checkpoints, tc.first_checkpoint))
            w.seconds += n_ckpt * images * ex.eval.sampler_steps * cal.image_step_seconds(w.config, ex.eval.batch_size)
    for x in out.pending:
        x.seconds = work[x.run.id].seconds
    out.work = sorted((w for w in work.values() if w.seconds > 0), key=lambda w: -w.seconds)
    # on CUDA, the GPUs' lanes (RUNS_PER_GPU each, as sweep.layout packs them)
    out.lanes = sweep.layout(max(1, len(out.work)), ex.sweep.workers or None, cores=cores, gpus=gpus)[0]
    out.ahead_seconds = probe_seconds + (makespan([w.seconds for w in out.work], out.lanes) + startup
                                         if out.work else 0.0)
    out.runs = len(seen)
    out.calibration_seconds = cal.seconds
    return out


def train_ahead(p: Plan, ex: Experiment, store: Store | None = None, progress: bool = True) -> list[dict]:
    """Do the plan's work before the chapters: train the probes, then every run left to train and its
    evaluation for every chapter that reads it, in one pool, longest first. Chapters then find their runs
    and evaluations in the store; a run on its own in a chapter's sweep would leave a core idle (a
    worker has one thread) and each chapter's sweep would start its own workers."""
    from .evaluate import load_probe, probe_key

    store = store or Store()
    if not p.work:
        return []
    for w in {probe_key(w.config.data, w.probe): w for w in p.work}.values():  # each probe once, before the workers
        load_probe(store, w.config.data, w.probe)
    workers, threads = sweep.layout(len(p.work), ex.sweep.workers or None, ex.sweep.threads or None)
    # a job's prompts include its class prompts, which train_and_evaluate asks too: evaluate asks each key once
    jobs = [sweep.Job(w.config, ex.eval, w.probe, str(store.root), threads, tuple(w.prompts.values())) for w in p.work]
    return sweep.run_jobs(jobs, workers, progress=progress, desc=f"{AHEAD} ({len(p.pending)} to train)")


def clock(seconds: float) -> str:
    """h:mm:ss."""
    s = int(round(max(0.0, seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta_seconds(elapsed: float, planned: float, fraction: float) -> float | None:
    """Seconds left: the plan's total less the time spent until MIN_FRACTION of the training is done
    (None once that is past the plan), then the time spent re-scaled by the measured progress,
    elapsed × (1 − f) / f."""
    if fraction >= 1:
        return 0.0
    if fraction < MIN_FRACTION:
        return planned - elapsed if elapsed < planned else None
    return elapsed * (1 - fraction) / fraction


def progress_line(done: int, total: int, elapsed: float, planned: float, fraction: float) -> str:
    """The build's one progress line: runs in the store of those the chapters read, share of this
    build's training done, time since the build started and the ETA."""
    eta = eta_seconds(elapsed, planned, fraction)
    left = clock(eta) if eta is not None else f"? (past the plan's {clock(planned)})"
    return (f"[build] runs {done}/{total} · training {min(max(fraction, 0.0), 1.0):.0%} · "
            f"elapsed {clock(elapsed)} · ETA {left}")


def progress(p: Plan) -> tuple[int, float]:
    """(runs in the store now of those the plan reads, fraction of the plan's training done), from the
    runs' done markers and newest checkpoints, weighted by each run's planned seconds."""
    done, work = 0, 0.0
    total = sum(x.seconds for x in p.pending)
    for x in p.pending:
        if x.run.done:
            done, work = done + 1, work + x.seconds
            continue
        steps = x.run.checkpoint_steps()
        at = steps[-1] if steps else x.start
        work += x.seconds * max(0, at - x.start) / max(1, x.steps - x.start)
    return p.stored + done, (work / total if total > 0 else float(not p.pending))


class Progress:
    """While inside: a daemon thread reads the store every `interval` seconds and prints the build's
    progress line when a run finishes and at least every `every` seconds; it ends on leaving, however
    the block ends (a signal that ends the process ends it too: it never holds the process up)."""

    def __init__(self, p: Plan, interval: float = POLL_SECONDS, every: float = PRINT_SECONDS, stream=None):
        self.plan, self.interval, self.every = p, interval, every
        self.stream = stream or sys.stdout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="build-progress", daemon=True)
        self.started = time.monotonic()
        self._last: tuple[int, float] | None = None  # (runs done, time) of the last line printed

    def tick(self, force: bool = False) -> None:
        done, fraction = progress(self.plan)
        now = time.monotonic()
        if force or self._last is None or done != self._last[0] or now - self._last[1] >= self.every:
            line = progress_line(done, self.plan.runs, now - self.started, self.plan.seconds, fraction)
            print(line, file=self.stream, flush=True)
            self._last = (done, now)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a store read that races a write: try again next time
                self.tick()

    def __enter__(self) -> "Progress":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)
        with contextlib.suppress(Exception):
            self.tick(force=True)
