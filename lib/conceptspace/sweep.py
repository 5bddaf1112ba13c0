"""Sweeps: train and evaluate many runs, locally in parallel processes or on a Ray cluster.

A sweep is a list of run configs built in code (`grid`), never a folder of generated files. Both
backends run the same job, `train_and_evaluate`, and land results in the same run store; runs already
there are not retrained, and their evaluations are read back from the store. Used by: chapter 2
(and chapters 3-4 through the runs it leaves).
"""
from __future__ import annotations

import itertools
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from tqdm import tqdm

from . import lifetime
from .config import EvalConfig, Experiment, ProbeConfig, RunConfig, check_seeds
from .evaluate import concept_space, evaluate, load_probe
from .prompting import Prompt, class_prompts
from .store import Store
from .train import pick_device, train

RUNS_PER_GPU = 4  # local workers per GPU: on an H100, four CUDA-graphed runs saturate it (see run_sweep)


def grid(base: RunConfig, **axes) -> list[RunConfig]:
    """Every combination of the given settings, by dotted name: grid(run, **{"data.delta_color": [.2, .4]})."""
    names = list(axes)
    return [base.with_changes(**dict(zip(names, values))) for values in itertools.product(*axes.values())]


def signal_sweep(ex: Experiment) -> list[RunConfig]:
    """Chapter 2's grid of runs (Δc × Δs × seeds around the profile's run), which chapter 3 reads too."""
    return grid(ex.run, **{"data.delta_color": ex.sweep.delta_color, "data.delta_size": ex.sweep.delta_size,
                           "train.seed": ex.sweep.seeds})


def seed_runs(ex: Experiment, seeds) -> list[RunConfig]:
    """Chapter 1's run at each of `seeds`, across which it judges HC1; at chapter 2's seeds (and the
    recipes page's) they are the same runs, so the book trains only the others."""
    return grid(ex.run, **{"train.seed": list(check_seeds(seeds))})


@dataclass(frozen=True)
class Job:
    """What one worker does: train a run (or find it trained), then evaluate its class prompts."""
    run: RunConfig
    eval: EvalConfig
    probe: ProbeConfig
    store_root: str
    threads: int
    extra_prompts: tuple = ()


def train_and_evaluate(job: Job) -> dict:
    """Train and evaluate one run in this process; returns its id and timings."""
    if job.threads:
        torch.set_num_threads(job.threads)
    store = Store(job.store_root)
    device = pick_device()
    t0 = time.time()
    run = train(job.run, store, device=device, progress=False)
    t1 = time.time()
    probe = load_probe(store, job.run.data, job.probe, device)
    evaluate(run, probe, class_prompts(job.run.data, job.eval) + list(job.extra_prompts), job.eval,
             device=device, progress=False)
    return {"run": run.id, "train_seconds": t1 - t0, "eval_seconds": time.time() - t1}


def run_sweep(configs: list[RunConfig], ev: EvalConfig, probe: ProbeConfig, store: Store | None = None,
              backend: str = "local", workers: int | None = None, threads: int | None = None,
              ray_address: str | None = None, gpus_per_run: float | None = None,
              extra_prompts: Callable[[RunConfig], list[Prompt]] | None = None, progress: bool = True) -> list[dict]:
    """Train and evaluate every config; returns one record per config, in order.

    local: `workers` processes side by side (default: one per core, one thread each: the fastest
    layout measured on 2 cores; with GPUs, 4 per GPU, spread over them: four CUDA-graphed runs fill an
    H100, eight do no better; figures in book/rerun.md). ray: one task per run on
    the cluster at `ray_address` (or `$RAY_ADDRESS`, or a new local instance), each asking for
    `threads` CPUs and `gpus_per_run` GPUs (default: a quarter of one where this machine has CUDA, as
    the local backend packs them; none otherwise).
    `extra_prompts(config)` adds prompts to evaluate beside the class prompts (chapter 4's).
    """
    if backend not in ("local", "ray"):
        raise ValueError(f"backend = {backend!r} is unknown; allowed: ['local', 'ray']")
    store = store or Store()
    gpus = torch.cuda.device_count()
    workers, threads = layout(len(configs), workers, threads)
    if gpus_per_run is None:
        gpus_per_run = 1 / RUNS_PER_GPU if gpus else 0.0
    load_probe(store, configs[0].data, probe)  # trained once, here, before workers would race for it
    jobs = [Job(c, ev, probe, str(store.root), threads, tuple(extra_prompts(c)) if extra_prompts else ())
            for c in configs]
    todo = sum(not store.run(c).done for c in configs)
    if backend == "local":
        return run_jobs(jobs, workers, progress, f"sweep ({todo} to train)")
    records: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), disable=not progress, file=sys.stderr, desc=f"sweep ({todo} to train)",
               unit="run", mininterval=5)
    import ray
    if not ray.is_initialized():
        address = ray_address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, **({} if address else {"num_cpus": os.cpu_count() or 1}), include_dashboard=False,
                 log_to_driver=False)
    task = ray.remote(num_cpus=threads, num_gpus=gpus_per_run)(train_and_evaluate)
    refs = {task.remote(j): i for i, j in enumerate(jobs)}
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        records[refs[done[0]]] = ray.get(done[0])
        bar.update(1)
    bar.close()
    return records


def run_jobs(jobs: list[Job], workers: int, progress: bool = True, desc: str = "sweep") -> list[dict]:
    """The local backend: `jobs` in `workers` processes, handed out in the order given as workers free
    up; one record per job, in order. Used by run_sweep and by the build's pool (plan.train_ahead)."""
    records: list = [None] * len(jobs)
    bar = tqdm(total=len(jobs), disable=not progress, file=sys.stderr, desc=desc, unit="run", mininterval=5)
    ctx = _spawn()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker,
                             initargs=(ctx.Value("i", 0), torch.cuda.device_count(), os.getpid())) as pool:
        futures = {pool.submit(train_and_evaluate, j): i for i, j in enumerate(jobs)}
        for fut in as_completed(futures):
            records[futures[fut]] = fut.result()
            bar.update(1)
    bar.close()
    return records


def layout(runs: int, workers: int | None = None, threads: int | None = None,
           cores: int | None = None, gpus: int | None = None) -> tuple[int, int]:
    """(workers, threads each) of a local sweep of `runs` runs: one worker per core, one thread each,
    or RUNS_PER_GPU per GPU; the planner (plan.py) estimates with the same layout."""
    cores = cores or os.cpu_count() or 1
    gpus = torch.cuda.device_count() if gpus is None else gpus
    workers = workers or max(1, min(runs, cores, RUNS_PER_GPU * gpus or cores))
    return workers, threads or max(1, cores // workers)


def init_worker(counter, gpus: int, parent: int) -> None:
    """Each local worker: end with `parent`, the process that started it (a kernel killed, even by
    SIGKILL, would leave it training as an orphan), and take its GPU."""
    lifetime.exit_with_parent(parent)
    pin_gpu(counter, gpus)


def pin_gpu(counter, gpus: int) -> None:
    """Give this worker process the next of the visible GPUs (round robin), before CUDA starts in it:
    without this every local worker would train on the first GPU."""
    if gpus < 2:
        return
    with counter.get_lock():
        i = counter.value
        counter.value += 1
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    ids = [v for v in visible.split(",") if v.strip()] if visible else [str(k) for k in range(gpus)]
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[i % len(ids)]


def _spawn():
    import multiprocessing
    return multiprocessing.get_context("spawn")


def concept_space_table(configs: list[RunConfig], ev: EvalConfig, probe_cfg: ProbeConfig,
                        store: Store | None = None, device="cpu",
                        extra_prompts: Callable[[RunConfig], list[Prompt]] | None = None) -> pd.DataFrame:
    """The concept-space tables of trained runs (read from the store), one frame with each run's
    id, Δc, Δs and seed as columns: what chapters 2-4 analyse."""
    store = store or Store()
    probe = load_probe(store, configs[0].data, probe_cfg, device)
    frames = []
    for cfg in configs:
        run = store.run(cfg)
        asked = class_prompts(cfg.data, ev) + (list(extra_prompts(cfg)) if extra_prompts else [])
        samples = evaluate(run, probe, asked, ev, device=device, progress=False)
        cs = concept_space(samples, cfg.data.concepts)
        cs.insert(0, "seed", cfg.train.seed)
        cs.insert(0, "delta_size", cfg.data.delta_size)
        cs.insert(0, "delta_color", cfg.data.delta_color)
        cs.insert(0, "run", run.id)
        frames.append(cs)
    return pd.concat(frames, ignore_index=True)


def three_concept_configs(base: RunConfig, multi) -> list[RunConfig]:
    """Chapter 6's 2×2×2 runs: background joins color and size; the paper's four held-out corners."""
    three = base.with_changes(**{
        "data.concepts": ["color", "size", "background"], "data.delta_size": multi.delta_size,
        "data.held_out": [[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 1]],
        "train.steps": multi.steps, "train.checkpoints": multi.checkpoints,
        "train.first_checkpoint": min(base.train.first_checkpoint, multi.steps)})
    return grid(three, **{"data.delta_color": multi.delta_color, "data.delta_background": multi.delta_background,
                          "train.seed": multi.seeds})
