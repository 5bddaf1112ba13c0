"""Training: one loop, observed through hooks, that resumes exactly where a killed run stopped.

AdamW (lr 1e-3, wd 0.01 as the paper), gradient clipping, EMA weights for sampling, checkpoints
spaced quadratically (dense early, as the paper's √-linspace schedule). All randomness comes from
generators whose state is saved with each checkpoint, so a resumed run ends bit-identical to an
uninterrupted one on CPU. Used by: chapter 1, and every sweep.
"""
from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.training_utils import EMAModel
from tqdm import tqdm

from . import vdm
from .config import ConfigError, RunConfig, TrainConfig, to_dict
from .data import PAPER_TRAIN_FRACTION, TrainingSet
from .model import autocast, build_model, default_precision, noise_scheduler, null_conditioning, precision
from .store import CorruptFileError, Run, Store, load_tensors, save_tensors, write_json

KEEP_STATES = 2  # resume states kept per run: the newest, and one to fall back on if it is damaged


def checkpoint_steps(steps: int, n: int, first: int) -> list[int]:
    """n steps from `first` to `steps`, evenly spaced in √step (the paper's schedule; references: train-checkpoints)."""
    grid = np.linspace(np.sqrt(first), np.sqrt(steps), n) ** 2
    out = sorted(set(int(round(s)) for s in grid) | {steps})
    return [s for s in out if 1 <= s <= steps]


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Hook:
    """Observe training without copying the loop: override what you need."""

    def on_step(self, step: int, loss: torch.Tensor) -> None:
        """`loss` is a 0-d tensor on the training device: `.item()` makes the CPU wait for the GPU."""

    def on_checkpoint(self, step: int, run: Run) -> None: ...


@dataclass
class _State:
    model: torch.nn.Module
    forward: Callable  # the model, or its torch.compile'd forward (same parameters, same state_dict)
    ema: EMAModel
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    step: int
    losses: list  # mean loss per logged interval: [step, loss]
    wall: float = 0.0  # seconds of training before this process took over
    cuda_graphs: bool = False  # the forward replays CUDA graphs: each step must say it is a new one


LOG_EVERY = 10


def _new_state(run_cfg: RunConfig, device: torch.device) -> _State:
    model = build_model(run_cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = adamw(model.parameters(), run_cfg.train, device)
    ema = EMAModel(model.parameters(), decay=run_cfg.train.ema_decay, foreach=True)
    gen = torch.Generator(device=device).manual_seed(run_cfg.train.seed + 1)
    torch.manual_seed(run_cfg.train.seed + 2)  # dropout draws from the global generator
    graphs = compile_mode(run_cfg.train, device) == "reduce-overhead"
    return _State(model, compiled(model, run_cfg.train, device), ema, opt, gen, 0, [], cuda_graphs=graphs)


def adamw(params, train: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """The run's optimizer: fused where `train.fused_adamw` says (part of the run id, as every setting)."""
    fused = train.fused_adamw == "always" or device.type == "cuda"
    return torch.optim.AdamW(params, lr=train.learning_rate, weight_decay=train.weight_decay, fused=fused)


def compile_mode(train: TrainConfig, device: torch.device) -> str | None:
    """How the training forward runs here: None (eager), "default" (torch.compile) or "reduce-overhead"
    (compiled, forward and backward replayed as CUDA graphs). CUDA graphs by default: at the gpu
    profile's size the GPU waits for the CPU to launch kernels, and replaying them is several times
    faster with identical losses (book/rerun.md, "What it costs")."""
    if not (train.compile == "always" or (train.compile == "cuda" and device.type == "cuda")):
        return None
    return "reduce-overhead" if train.cuda_graphs and device.type == "cuda" else "default"


def compiled(model: torch.nn.Module, train: TrainConfig, device: torch.device) -> Callable:
    """`model`, torch.compile'd as `compile_mode` says (the batch shape is fixed, so dynamic=False)."""
    mode = compile_mode(train, device)
    return model if mode is None else torch.compile(model, dynamic=False, mode=mode)


def _state_tensors(s: _State) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in s.model.state_dict().items()}
    out.update({f"ema.{i}": p for i, p in enumerate(s.ema.shadow_params)})
    for i, p in enumerate(s.model.parameters()):
        st = s.optimizer.state.get(p)
        if st:
            out.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    out["rng.generator"] = s.generator.get_state()
    out["rng.torch"] = torch.get_rng_state()
    return out


def _load_state(s: _State, tensors: dict, meta: dict) -> None:
    s.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for i, p in enumerate(s.ema.shadow_params):
        p.copy_(tensors[f"ema.{i}"])
    s.ema.optimization_step = meta["step"]
    # Through load_state_dict, so torch puts each value where this optimizer needs it (fused AdamW on
    # CUDA wants its step counts on the GPU, the unfused one on the CPU); moments take their parameter's
    # memory layout (channels_last on CUDA), which fused AdamW requires and safetensors does not keep.
    params = list(s.model.parameters())
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            like = params[int(i)]
            state.setdefault(int(i), {})[name] = (v.cpu() if name == "step" else
                                                  torch.empty_like(like, dtype=v.dtype).copy_(v))
    if state:
        s.optimizer.load_state_dict({**s.optimizer.state_dict(), "state": state})
    s.generator.set_state(tensors["rng.generator"].cpu())
    torch.set_rng_state(tensors["rng.torch"].cpu())
    s.step, s.losses, s.wall = meta["step"], meta["losses"], meta.get("wall", 0.0)


def _resume(run: Run, s: _State, device, log) -> None:
    """Load the newest resume state that passes its hash check; fall back to older ones."""
    for step in reversed(run.state_steps()):
        path = run.state_path(step)
        try:
            tensors, meta = load_tensors(path, device)
        except CorruptFileError as e:
            log(f"warning: {e}; falling back to an earlier checkpoint")
            continue
        _load_state(s, tensors, meta)
        log(f"resuming {run.id} from step {step}")
        return


def _save(run: Run, s: _State, wall: float) -> None:
    """Checkpoint (EMA weights for sampling), then the resume state, then prune old states."""
    with torch.no_grad():
        ema_weights = {name: p.detach().clone() for name, p in s.model.state_dict().items()}
        for (name, _), shadow in zip(s.model.named_parameters(), s.ema.shadow_params):
            ema_weights[name] = shadow
    save_tensors(run.checkpoint_path(s.step), ema_weights, {"step": s.step, "run": run.id})
    save_tensors(run.state_path(s.step), _state_tensors(s), {"step": s.step, "losses": s.losses, "wall": wall})
    write_json(run.dir / "metrics.json", [{"step": st, "loss": lo} for st, lo in s.losses])
    for old in run.state_steps()[:-KEEP_STATES]:
        run.state_path(old).unlink(missing_ok=True)


class DiskSpaceError(RuntimeError):
    """The store's disk cannot hold a run's checkpoints."""


def _check_disk(run: Run, model: torch.nn.Module, n_checkpoints: int) -> None:
    """Refuse to start a run whose checkpoints would not fit on the store's disk."""
    params = sum(p.numel() for p in model.parameters())
    # each checkpoint holds the EMA weights; each resume state weights, EMA and two Adam moments
    need = 4 * params * (n_checkpoints + KEEP_STATES * 4) + 16 * 2**20
    free = shutil.disk_usage(run.dir).free
    if free < need:
        raise DiskSpaceError(f"not enough disk space for run {run.id} in {run.dir}: it needs about "
                             f"{need / 2**20:,.0f} MiB ({n_checkpoints} checkpoints of {params:,} parameters), "
                             f"{free / 2**20:,.0f} MiB are free; free some space or set CONCEPTSPACE_STORE")


def _remove_stale_temp_files(run: Run) -> None:
    """Temp files left by a process killed mid-write (we hold the run's lock: nobody else writes)."""
    for tmp in run.dir.rglob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def train(run_cfg: RunConfig, store: Store | None = None, hooks: tuple[Hook, ...] = (),
          device: str | torch.device | None = None, progress: bool = True, stop_after: int | None = None) -> Run:
    """Train `run_cfg` into the store, or return it at once if it is already there.

    An interrupted run resumes from its newest intact checkpoint. A second process asking for the
    same run waits for the first, then finds it done. `stop_after` ends training early at that step
    (after its checkpoint if there is one), as a kill would, for tests of resumption. The run trains in
    `model.precision` on `device`, the precision its id names (RunConfig.run_id).
    """
    store = store or Store()
    run = store.run(run_cfg)
    device = pick_device(device)
    _check_precision(run_cfg.train, device)
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    with run.lock():
        if run.done:
            return run
        t0 = time.time()
        s = _new_state(run_cfg, device)
        tc = run_cfg.train
        saves = set(checkpoint_steps(tc.steps, tc.checkpoints, tc.first_checkpoint))
        _check_disk(run, s.model, len(saves))
        _remove_stale_temp_files(run)
        run.write_config()
        _resume(run, s, device, log)
        train_set = training_set(run_cfg, device)
        objective = loss_function(run_cfg)
        # summed on the device and read at log steps only, so that on a GPU the CPU can queue the next
        # step's kernels while this one runs (a per-step .item() would wait for it)
        acc, acc_n = torch.zeros((), dtype=torch.float64, device=device), 0
        bar = tqdm(total=tc.steps, initial=s.step, disable=not progress, mininterval=10, file=sys.stderr,
                   desc=f"run {run.id}", unit="step")
        s.model.train()
        while s.step < tc.steps:
            loss = _train_step(s, train_set, objective, tc, device)
            s.step += 1
            acc, acc_n = acc + loss, acc_n + 1
            if s.step % LOG_EVERY == 0 or s.step in saves:
                mean = (acc / acc_n).item()
                s.losses.append([s.step, mean])
                bar.set_postfix(loss=f"{mean:.4f}", refresh=False)
                acc, acc_n = torch.zeros_like(acc), 0
            bar.update(1)
            for h in hooks:
                h.on_step(s.step, loss)
            if s.step in saves:
                _save(run, s, s.wall + time.time() - t0)
                for h in hooks:
                    h.on_checkpoint(s.step, run)
            if stop_after is not None and s.step >= stop_after:
                bar.close()
                return run
        bar.close()
        write_json(run.dir / "done.json", {
            "steps": tc.steps, "train_seconds": s.wall + time.time() - t0,
            "device": device_name(device), "threads": torch.get_num_threads(), "precision": precision(tc, device),
            "params": sum(p.numel() for p in s.model.parameters()), "config": to_dict(run_cfg)})
    return run


def _check_precision(tc: TrainConfig, device: torch.device) -> None:
    """A run id names the precision `train.bf16` gives on the device `train` picks by default (CUDA where
    there is one): training elsewhere must give the same, or bf16 and fp32 runs would share a folder."""
    here, named = precision(tc, device), default_precision(tc)
    if here != named:
        default = pick_device()
        raise ConfigError(f"train.bf16 = {tc.bf16!r} trains in {here} on {device.type} but in {named} on "
                          f"{default.type}, the device run ids are named for; to train on {device.type}, "
                          f"set train.bf16 to 'always' (bf16) or 'never' (fp32)")


def training_set(run_cfg: RunConfig, device) -> TrainingSet:
    """The run's training images: all of them, drawn with replacement (diffusers recipe), or the
    paper's 85 % split in epoch batches (paper recipe)."""
    paper = run_cfg.model.recipe == "paper"
    return TrainingSet(run_cfg.data, run_cfg.train.seed, device, PAPER_TRAIN_FRACTION if paper else 1.0, epochs=paper)


def loss_function(run_cfg: RunConfig) -> Callable:
    """The recipe's training loss, `loss(s, x₀ in [-1, 1], h, generator, device)`: DDPM's ε-MSE at a
    uniform timestep (diffusers), or the VDM bound in bits/dim on [0, 1] pixels (paper). Each drops the
    conditioning (`train.cond_dropout`) itself, where its random draws put it."""
    tc = run_cfg.train
    if run_cfg.model.recipe == "paper":
        def bound(s, x0, h, g, device):
            h = _drop_conditioning(h, tc, g, device)
            return vdm.loss(_autocast(s.forward, tc, device), s.model.schedule, (x0 + 1) / 2, h, g)
        return bound
    scheduler = noise_scheduler(run_cfg)

    def ddpm(s, x0, h, g, device):
        noise = torch.randn(x0.shape, generator=g, device=device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=g, device=device)
        h = _drop_conditioning(h, tc, g, device)
        xt = scheduler.add_noise(x0, noise, t)
        return F.mse_loss(_autocast(s.forward, tc, device)(xt, t, h).float(), noise)
    return ddpm


def objective_name(run_cfg: RunConfig) -> str:
    """What `loss_function` returns, for a chart's title."""
    return "VDM bound, bits/dim" if run_cfg.model.recipe == "paper" else "ε-prediction MSE"


def _drop_conditioning(h: torch.Tensor, tc: TrainConfig, g: torch.Generator, device) -> torch.Tensor:
    """Replace each sample's conditioning by the null one with probability `train.cond_dropout`."""
    if tc.cond_dropout == 0:
        return h
    drop = torch.rand(h.shape[0], generator=g, device=device) < tc.cond_dropout
    return torch.where(drop[:, None], null_conditioning(h), h)


def _autocast(forward: Callable, tc: TrainConfig, device) -> Callable:
    """The forward in bf16 autocast where the run trains in bf16 (`model.precision`: on CUDA or on the
    CPU), channels-last on CUDA."""
    prec = precision(tc, device)

    def run(x, t, h):
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, prec):
            return forward(x, t, h)
    return run


def _train_step(s: _State, train_set: TrainingSet, objective: Callable, tc, device) -> torch.Tensor:
    if s.cuda_graphs:  # a new step: its graphs may overwrite the last step's outputs (importing inductor costs 3 s)
        torch.compiler.cudagraph_mark_step_begin()
    g = s.generator
    x0, h = train_set.batch(train_set.indices(s.step, tc.batch_size, g), g)
    loss = objective(s, x0, h, g, device)
    s.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(s.model.parameters(), tc.grad_clip)
    s.optimizer.step()
    s.ema.step(s.model.parameters())
    return loss.detach()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
