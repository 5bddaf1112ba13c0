"""Benchmark: training and sampling throughput against the machine's own matmul peak.

    python -m conceptspace.bench [--quick] [--device cpu|cuda] [--out _build/bench.json]

Reports, for the cpu and gpu (paper-scale) model configs: s/step and images/s of training in the
precision a run uses here (`model.precision`: bf16 where the device has it natively, else fp32), and
s/step in fp32 and in bf16 each; FLOP per step (torch's flop counter), achieved FLOP/s and its
fraction of the GEMM peak of the precision the step runs in, both timed in the same run: a large fp32
GEMM (on CPU the faster of torch's and NumPy's) and a bf16 one (labelled emulated where the hardware
has no bf16 arithmetic: torch converts to fp32, and the paper-scale bf16 step, minutes there, is left
out); sampling images/s with the 50-step sampler, evaluation
time per checkpoint and its share of a cpu-profile run; sweep throughput: several runs stacked in one
process (torch.func.vmap) and two single-thread processes side by side, against run-by-run; and a plain
diffusers UNet2DModel of the paper's widths as the in-run reference for the original network's speed;
the forward pass timed alone, to split the step's FLOP rate into forward and backward. Each time is the
mean seconds per call of repeated calls after two warm-up calls (torch.utils.benchmark's Timer). On CUDA
(the default where there is one) the steps run as a run would there (the profile's compile settings),
the peaks are an 8192² fp32 (no TF32) and bf16 GEMM, and the CPU-only parts (process sweep, the
estimate of the original network) are left out. A benchmark, not a test: it asserts nothing.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.benchmark import Timer
from torch.utils.flop_counter import FlopCounterMode

from .config import experiment
from .model import autocast, build_model, native_bf16, precision, sample
from .store import REPO_ROOT, write_json
from .train import _new_state, _train_step, checkpoint_steps, device_name, loss_function, pick_device, training_set

CPU = torch.device("cpu")


def timer_of(fn) -> Timer:
    """A Timer of `fn()` on the threads torch uses now, not Timer's default of one, so a time means what
    a run on those threads sees. It synchronizes CUDA around what it times; `.timeit(repeats).median` is
    the mean seconds per call of `repeats` calls after two warm-up calls."""
    return Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())


def gemm_peak(n: int = 2048, repeats: int = 10, device: torch.device = CPU, dtype=torch.float32) -> float:
    """FLOP/s of an n×n matmul through torch (MKL on CPU, cuBLAS on CUDA)."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / timer_of(lambda: a @ b).timeit(repeats).median


def numpy_gemm_peak(n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of the same fp32 matmul through NumPy's BLAS (OpenBLAS in its wheels, on all cores). On this
    project's AMD CPUs torch's MKL sgemm runs ≈ 15 % below it; a step is measured against the best GEMM
    the machine runs, not the slower of two libraries."""
    a, b = (np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in range(2))
    return 2 * n ** 3 / timer_of(lambda: a @ b).timeit(repeats).median


def model_and_batch(run, device: torch.device = CPU):
    """The run's model and one random training batch (x, t, h) of its shape."""
    b, r = run.train.batch_size, run.data.resolution
    return build_model(run).to(device), (torch.randn(b, 3, r, r, device=device),
                                         torch.randint(0, 1000, (b,), device=device), torch.rand(b, 11, device=device))


def train_step_flops(run) -> float:
    """FLOP of one training step (forward + backward), by torch's flop counter."""
    model, (x, t, h) = model_and_batch(run)
    with FlopCounterMode(display=False) as counter:
        ((model(x, t, h) - x) ** 2).mean().backward()
    return float(counter.get_total_flops())


def forward_timing(run, repeats: int, device: torch.device = CPU) -> tuple[float, float]:
    """FLOP and seconds of the forward pass alone (no autograd), in the run's precision on `device`:
    with the step's, where time goes."""
    model, batch = model_and_batch(run, device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*batch)
    with torch.no_grad(), autocast(device, precision(run.train, device)):
        return float(counter.get_total_flops()), timer_of(lambda: model(*batch)).timeit(repeats).median


def train_timing(run, repeats: int, device: torch.device = CPU) -> float:
    """Seconds per training step (AdamW, clipping and EMA included), as `train` runs it on `device`
    (in the run's precision there)."""
    state = _new_state(run, device)
    train_set = training_set(run.with_changes(**{"data.samples_per_class": 256}), device)
    objective = loss_function(run)
    return timer_of(lambda: _train_step(state, train_set, objective, run.train, device)).timeit(repeats).median


def in_precision(run, prec: str):
    """The run set to train in `prec` ("bf16" or "fp32") on every device."""
    return run.with_changes(**{"train.bf16": "always" if prec == "bf16" else "never"})


def sampling_rate(run, n: int, steps: int = 50, device: torch.device = CPU) -> float:
    """Images per second generated by the DDIM sampler in one batch of n."""
    model = build_model(run).to(device).eval()
    noise = torch.randn(n, 3, run.data.resolution, run.data.resolution, device=device)
    cond = torch.rand(n, 11, device=device)
    return n / timer_of(lambda: sample(model, run, cond, noise, steps)).timeit(1).median


def stacked_step_timing(run, k: int, repeats: int) -> float:
    """Seconds per step of k runs trained at once as one vmapped model (stacked parameters)."""
    from torch.func import functional_call, stack_module_state, vmap

    models = [build_model(run.with_changes(**{"train.seed": i})) for i in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.AdamW(list(params.values()), lr=run.train.learning_rate, foreach=True)
    b, r = run.train.batch_size, run.data.resolution

    def step():
        x = torch.randn(k, b, 3, r, r)
        t = torch.randint(0, 1000, (k, b))
        h = torch.rand(k, b, 11)
        out = vmap(lambda p, bu, xx, tt, hh: functional_call(base, (p, bu), (xx, tt, hh)))(params, buffers, x, t, h)
        loss = ((out - x) ** 2).mean(dim=(1, 2, 3, 4)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return timer_of(step).timeit(repeats).median


ONE_THREAD = """
import sys, time, torch
torch.set_num_threads(1)
from conceptspace.bench import train_timing
from conceptspace.config import experiment
print(train_timing(experiment("cpu").run, int(sys.argv[1])))
"""


def single_thread_processes(repeats: int, n: int) -> float:
    """Seconds per step of each of `n` single-thread processes training at the same time."""
    procs = [subprocess.Popen([sys.executable, "-c", ONE_THREAD, str(repeats)], stdout=subprocess.PIPE, text=True)
             for _ in range(n)]
    return statistics.mean(float(p.communicate()[0].strip().splitlines()[-1]) for p in procs)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not for reporting)")
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda where there is one)")
    p.add_argument("--out", default=str(REPO_ROOT / "_build" / "bench.json"))
    args = p.parse_args(argv)
    device = pick_device(args.device)
    gpu = device.type == "cuda"
    reps = 3 if args.quick else 10
    threads = torch.get_num_threads()
    t0 = time.time()
    out = {"device": device_name(device), "threads": threads, "torch": torch.__version__}
    out["gemm_torch_gflops"] = gemm_peak(8192 if gpu else 2048, reps, device) / 1e9
    if gpu:
        out["gemm_gflops"] = out["gemm_torch_gflops"]
    else:
        out["gemm_numpy_gflops"] = numpy_gemm_peak(2048, reps) / 1e9
        out["gemm_gflops"] = max(out["gemm_torch_gflops"], out["gemm_numpy_gflops"])
    # emulated bf16 runs at a few GFLOP/s on CPU, at its best on small matrices: a 512² one says enough
    out["gemm_bf16_native"] = native_bf16(device)
    out["gemm_bf16_n"] = 8192 if gpu else 2048 if out["gemm_bf16_native"] else 512
    out["gemm_bf16_gflops"] = gemm_peak(out["gemm_bf16_n"], reps, device, torch.bfloat16) / 1e9
    peaks = {"fp32": out["gemm_gflops"], "bf16": out["gemm_bf16_gflops"]}
    rows = []
    for profile, n_sample, big in (("cpu", 1024 if gpu else 80, False), ("gpu", 1024 if gpu else 16, not gpu)):
        run = experiment(profile).run
        prec = precision(run.train, device)  # what a run of this profile trains in here
        flops = train_step_flops(run)
        steps = {}
        for p in (prec, "fp32" if prec == "bf16" else "bf16"):
            if p == "bf16" and not out["gemm_bf16_native"]:  # emulated: ≈ 10x fp32's time, timed once
                steps[p] = None if big else train_timing(in_precision(run, p), 1, device)
            else:
                steps[p] = train_timing(in_precision(run, p), max(2, reps // (4 if big else 1)), device)
        s = steps[prec]
        img_s = sampling_rate(run, n_sample, device=device)
        # a step's FLOP/s against the peak of the arithmetic it runs in
        row = {"config": profile, "params_M": sum(q.numel() for q in build_model(run).parameters()) / 1e6,
               "batch": run.train.batch_size, "resolution": run.data.resolution, "precision": prec,
               "s_per_step": s, "train_images_per_s": run.train.batch_size / s, "tflop_per_step": flops / 1e12,
               "gflops_achieved": flops / s / 1e9, "fraction_of_gemm_peak": flops / s / 1e9 / peaks[prec],
               "sample_images_per_s": img_s}
        for p in ("fp32", "bf16"):
            row[f"s_per_step_{p}"] = steps[p]
            row[f"fraction_of_gemm_peak_{p}"] = None if steps[p] is None else flops / steps[p] / 1e9 / peaks[p]
        f_flops, f_s = forward_timing(run, max(2, reps // (4 if big else 1)), device)
        # the backward pass (with the optimizer) gets the rest of the step's FLOPs and time
        row.update({"forward_fraction_of_gemm_peak": f_flops / f_s / 1e9 / peaks[prec],
                    "backward_fraction_of_gemm_peak": (flops - f_flops) / (s - f_s) / 1e9 / peaks[prec]})
        if profile == "cpu":
            ex = experiment("cpu")
            per_ckpt = (3 * ex.eval.samples_per_class + ex.eval.samples_held_out) / img_s
            n_ckpt = len(checkpoint_steps(run.train.steps, run.train.checkpoints, run.train.first_checkpoint))
            train_total = s * run.train.steps
            row.update({"eval_seconds_per_checkpoint": per_ckpt,
                        "eval_fraction_of_run": per_ckpt * n_ckpt / (per_ckpt * n_ckpt + train_total)})
        rows.append(row)
        print(f"{profile}: {row}", flush=True)
    out["models"] = rows
    if gpu:  # the rest compares with the original network and sweeps on this CPU
        return _finish(out, args.out, t0)
    ref = experiment("gpu").run.with_changes(**{"model.layers_per_block": 2, "model.attention_last_level": False,
                                                "model.resampling": "conv"})
    ref_s = train_timing(ref, max(2, reps // 4))
    ref_flops = train_step_flops(ref)
    out["reference"] = {
        "plain_unet_params_M": sum(q.numel() for q in build_model(ref).parameters()) / 1e6,
        "plain_unet_s_per_step": ref_s, "plain_unet_tflop_per_step": ref_flops / 1e12,
        "plain_unet_fraction_of_gemm_peak": ref_flops / ref_s / 1e9 / peaks[precision(ref.train, CPU)],
        # the original network, estimated on this machine from the ratio measured on the reference CPU
        # (references: stack-cpu-cost: original 2.4 s/step, plain UNet2DModel of the same widths 3.7 s/step)
        "original_estimated_s_per_step": ref_s * 2.4 / 3.7,
        "speedup_vs_original_estimated": ref_s * 2.4 / 3.7 / rows[1]["s_per_step"]}
    print(f"reference: {out['reference']}", flush=True)
    cpu_run = experiment("cpu").run
    single = rows[0]["s_per_step"]
    sweep = {"run_by_run_s_per_run_step": single}
    for k in (2, 4):
        sweep[f"vmap_{k}_s_per_run_step"] = stacked_step_timing(cpu_run, k, max(2, reps // 2)) / k
    alone = single_thread_processes(reps, 1)
    sweep["two_processes_1_thread_s_per_run_step"] = single_thread_processes(reps, 2) / 2
    sweep["best_speedup_per_run"] = single / min(v for k, v in sweep.items() if k != "run_by_run_s_per_run_step")
    # Process parallelism at best gives each of the 2 cores its single-thread speed: 2·T(2 threads)/T(1 thread).
    # Beyond that only a higher FLOP rate per core helps (stacking runs into larger kernels: the vmap rows).
    sweep["one_process_1_thread_s_per_step"] = alone
    sweep["ceiling_speedup"] = 2 * single / alone
    out["sweep"] = sweep
    return _finish(out, args.out, t0)


def _finish(out: dict, path: str, t0: float) -> dict:
    out["seconds"] = time.time() - t0
    write_json(Path(path), out)
    print(table(out))
    return out


def _gflops(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


def peaks_line(out: dict) -> str:
    """The GEMM peaks, fp32 and bf16, on one line."""
    both = (f" (best of torch {out['gemm_torch_gflops']:.0f}, NumPy {out['gemm_numpy_gflops']:.0f})"
            if "gemm_numpy_gflops" in out else "")
    kind = "native" if out["gemm_bf16_native"] else "emulated"
    return (f"{out['device']}: GEMM peak fp32 {out['gemm_gflops']:.0f} GFLOP/s{both}, "
            f"bf16 {_gflops(out['gemm_bf16_gflops'])} GFLOP/s ({kind}, {out['gemm_bf16_n']}²)")


def table(out: dict) -> str:
    def cell(r, p):
        s = r[f"s_per_step_{p}"]
        return "—" if s is None else f"{s:.3f} ({r[f'fraction_of_gemm_peak_{p}']:.0%})"
    lines = [peaks_line(out), "",
             "| config | params | precision | s/step | train img/s | TFLOP/step | GFLOP/s | of peak "
             "| forward / backward of peak | fp32 s/step (of peak) | bf16 s/step (of peak) | sample img/s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["models"]:
        lines.append(f"| {r['config']} | {r['params_M']:.2f} M | {r['precision']} | {r['s_per_step']:.3f} "
                     f"| {r['train_images_per_s']:.0f} | {r['tflop_per_step']:.4f} | {r['gflops_achieved']:.0f} "
                     f"| {r['fraction_of_gemm_peak']:.0%} "
                     f"| {r['forward_fraction_of_gemm_peak']:.0%} / {r['backward_fraction_of_gemm_peak']:.0%} "
                     f"| {cell(r, 'fp32')} | {cell(r, 'bf16')} | {r['sample_images_per_s']:.1f} |")
    cpu = out["models"][0]
    lines += ["", f"cpu-profile evaluation: {cpu['eval_seconds_per_checkpoint']:.2f} s per checkpoint, "
                  f"{cpu['eval_fraction_of_run']:.0%} of a run"]
    if "sweep" not in out:
        return "\n".join(lines)
    lines += ["", "sweep, seconds per step per run: " + ", ".join(f"{k} {v:.3f}" for k, v in out["sweep"].items())]
    ref = out["reference"]
    lines += ["", f"paper-scale reference: plain UNet2DModel {ref['plain_unet_params_M']:.1f} M params, "
                  f"{ref['plain_unet_s_per_step']:.2f} s/step ({ref['plain_unet_fraction_of_gemm_peak']:.0%} of peak); "
                  f"original network estimated {ref['original_estimated_s_per_step']:.2f} s/step here; "
                  f"ours {out['models'][1]['s_per_step']:.2f} s/step = {ref['speedup_vs_original_estimated']:.2f}x"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
