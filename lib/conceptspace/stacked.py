"""Many runs trained in one process as one stacked model: the throughput path for sweeps on a GPU.

`train_stacked(configs, store)` trains K runs of the same model shape and optimizer recipe at once:
their parameters stacked along a leading run axis (torch.func.stack_module_state), one forward and
backward over all of them (functional_call under torch.func.vmap), per-run gradient clipping, one
AdamW and one EMA over the stacked tensors. Both are elementwise, so on stacked tensors they are K
independent per-run optimizers and EMAs (clipping is the one cross-element step: it is done per run).

Each run is what `train.train` makes of it: its own model initialization (train's `_new_state`), its
own generator, training set (`train.training_set`) and draws of batch, noise, timestep and dropped
conditioning (`train.loss_function`, called per run), its checkpoints and resume states written by
train's own `_save` at the same steps, its done marker last. So a stacked run is stored, loaded,
evaluated and resumed (by `train.train` or by this) like any other. Differences from run-by-run:
only the reduction order of the vmapped kernels (batched matmuls, grouped convolutions), so weights
agree to float32 rounding amplified by training, not bit for bit (tests/test_stacked.py).

How the run's own loss is reused: `loss_function` draws its inputs and calls the network once. Each
step runs it twice per run: first with a stand-in network that records its inputs and stops it, then,
after one vmapped forward over all runs' recorded inputs, again from the same generator state (so it
draws the same numbers) with a stand-in returning that run's slice of the stacked output.

Only the diffusers recipe (the paper's VDM loss reads its learned schedule outside the network's
forward) and no dropout inside the network (train draws its masks from each run's global generator,
which one vmapped call cannot reproduce).
"""
from __future__ import annotations

import copy
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import torch
from diffusers.training_utils import EMAModel
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from .config import RunConfig, to_dict
from .data import TrainingSet
from .model import precision
from .store import Run, Store, write_json
from .train import (
    LOG_EVERY,
    _check_disk,
    _check_precision,
    _new_state,
    _remove_stale_temp_files,
    _resume,
    _save,
    _State,
    adamw,
    checkpoint_steps,
    device_name,
    loss_function,
    pick_device,
    training_set,
)

# Settings every run of one stack shares: the stacked tensors' shapes (model, resolution, conditioning
# width, batch), the step count, and what the one optimizer, EMA and autocast apply to all of them.
# Everything else (seed, data, concept signals, timesteps, conditioning dropout, clipping threshold,
# checkpoint schedule) may differ per run.
SHARED = ("model.recipe", "model.channels", "model.layers_per_block", "model.attention", "model.attention_last_level",
          "model.norm_groups", "model.resampling", "model.dropout", "data.dataset", "data.resolution",
          "train.steps", "train.batch_size", "train.learning_rate", "train.weight_decay", "train.ema_decay",
          "train.bf16")


def _setting(cfg: RunConfig, dotted: str):
    section, name = dotted.split(".")
    return to_dict(getattr(getattr(cfg, section), name))


def check_stackable(configs: list[RunConfig]) -> None:
    """Raise NotImplementedError for a run this module cannot train, ValueError naming the setting on
    which two runs differ where they must share it (SHARED)."""
    for cfg in configs:
        if cfg.model.recipe != "diffusers":
            raise NotImplementedError(
                f"train_stacked supports model.recipe = 'diffusers' only; run {cfg.run_id()} has "
                f"model.recipe = {cfg.model.recipe!r} (its VDM loss uses the learned schedule outside the "
                f"network's forward): train it with train.train")
        if cfg.model.dropout > 0:
            raise NotImplementedError(
                f"train_stacked needs model.dropout = 0; run {cfg.run_id()} has {cfg.model.dropout} (train.train "
                f"draws dropout masks from each run's global generator, which one vmapped forward cannot "
                f"reproduce): train it with train.train")
    for name in SHARED:
        values = [_setting(cfg, name) for cfg in configs]
        if any(v != values[0] for v in values):
            raise ValueError(f"cannot stack these runs: {name} differs between them ({values}); stacked runs "
                             f"share {', '.join(SHARED)}: group the runs by {name} and stack each group")


class _Inputs(Exception):
    """Raised by the recording stand-in network: what the loss would have fed the network."""

    def __init__(self, x, t, h, autocast):
        super().__init__("recorded")
        self.x, self.t, self.h, self.autocast = x, t, h, autocast


def _record(device: torch.device) -> Callable:
    def forward(x, t, h):
        kind = device.type
        raise _Inputs(x, t, h, (torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)))
    return forward


@dataclass
class Member:
    """One run of a stack: train's state for it (whose model, EMA and optimizer hold views of the run's
    slice of the stacked tensors), its data, loss and checkpoint steps."""
    cfg: RunConfig
    run: Run | None
    state: _State
    train_set: TrainingSet
    objective: Callable
    saves: set
    rng_torch: torch.Tensor  # the global generator's state train would save with this run


def clip_per_run(grads: list[torch.Tensor], max_norm: torch.Tensor) -> torch.Tensor:
    """clip_grad_norm_ for each run of stacked gradients (run axis first), in place: each run's global
    2-norm over all its tensors, scaled down to `max_norm` (one per run) as torch does. Returns the norms."""
    k = grads[0].shape[0]
    per_tensor = torch.stack([torch.linalg.vector_norm(g.reshape(k, -1), 2, dim=1) for g in grads])
    total = torch.linalg.vector_norm(per_tensor, 2, dim=0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
    return total


class Stack:
    """K runs' training states as one model with stacked parameters, stepping all of them at once.

    Built from train's per-run states (fresh or resumed, all at the same step). Afterwards each run's
    `state.model` parameters and `state.ema` shadows are views of its slice of the stack, and
    `sync_views(i)` points its optimizer's state at its slices too, so train's `_save` writes it."""

    def __init__(self, members: list[Member], device: torch.device):
        self.members, self.device = members, device
        steps = {m.state.step for m in members}
        if len(steps) != 1:
            raise ValueError(f"a stack's runs must start at the same step; these are at {sorted(steps)}")
        self.step_count = steps.pop()
        models = [m.state.model for m in members]
        self.names = [n for n, _ in models[0].named_parameters()]
        params, self.buffers = stack_module_state(models)
        self.params = {n: params[n] for n in self.names}
        self.stacked = list(self.params.values())
        base = copy.deepcopy(models[0]).to("meta").train()
        self.forward = vmap(lambda p, b, x, t, h: functional_call(base, (p, b), (x, t, h)))
        tc = members[0].cfg.train
        self.optimizer = adamw(self.stacked, tc, device)
        self.ema = EMAModel(self.stacked, decay=tc.ema_decay, foreach=True)
        self.max_norm = torch.tensor([m.cfg.train.grad_clip for m in members], device=device)
        if self.step_count > 0:  # resumed: stack each run's optimizer and EMA state
            self._load_resumed()
        self._alias()
        self.batch_size = tc.batch_size

    def _load_resumed(self) -> None:
        state = {}
        per_run = [list(m.state.model.parameters()) for m in self.members]
        for j in range(len(self.names)):
            runs = [m.state.optimizer.state[params[j]] for m, params in zip(self.members, per_run)]
            state[j] = {key: (runs[0][key].clone() if key == "step" else torch.stack([r[key] for r in runs]))
                        for key in runs[0]}
        self.optimizer.load_state_dict({**self.optimizer.state_dict(), "state": state})
        with torch.no_grad():
            for j, shadow in enumerate(self.ema.shadow_params):
                shadow.copy_(torch.stack([m.state.ema.shadow_params[j] for m in self.members]))
        self.ema.optimization_step = self.step_count

    def _alias(self) -> None:
        """Per-run models and EMA shadows become views of the stack (their own copies are freed)."""
        with torch.no_grad():
            for i, m in enumerate(self.members):
                for p, stacked in zip(m.state.model.parameters(), self.stacked):
                    p.data = stacked.detach()[i]
                m.state.ema.shadow_params = [shadow[i] for shadow in self.ema.shadow_params]
                m.state.optimizer.state.clear()

    def sync_views(self, i: int) -> None:
        """Run i's optimizer state: views of its slices of the stacked moments (the step count is shared)."""
        m = self.members[i]
        for p, stacked in zip(m.state.model.parameters(), self.stacked):
            st = self.optimizer.state.get(stacked)
            if st:
                m.state.optimizer.state[p] = {k: (v[i] if torch.is_tensor(v) and v.shape == stacked.shape else v)
                                              for k, v in st.items()}
        m.state.step = self.step_count

    def step(self) -> torch.Tensor:
        """One training step of every run; returns their losses (K,), detached, on the device."""
        inputs, batches = [], []
        for m in self.members:
            g = m.state.generator
            x0, h = m.train_set.batch(m.train_set.indices(self.step_count, self.batch_size, g), g)
            before = g.get_state()
            try:
                m.objective(SimpleNamespace(forward=_record(self.device)), x0, h, g, self.device)
                raise RuntimeError("the run's loss never called the network")
            except _Inputs as rec:
                inputs.append(rec)
            g.set_state(before)
            batches.append((x0, h))
        enabled, dtype = inputs[0].autocast
        with torch.autocast(self.device.type, dtype=dtype, enabled=enabled):
            out = self.forward(self.params, self.buffers, torch.stack([r.x for r in inputs]),
                               torch.stack([r.t for r in inputs]), torch.stack([r.h for r in inputs]))
        losses = torch.stack([
            m.objective(SimpleNamespace(forward=lambda x, t, h, i=i: out[i]), x0, h, m.state.generator, self.device)
            for i, (m, (x0, h)) in enumerate(zip(self.members, batches))])
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # runs are independent: each slice gets its own run's gradient
        clip_per_run([p.grad for p in self.stacked], self.max_norm)
        self.optimizer.step()
        self.ema.step(self.stacked)
        self.step_count += 1
        return losses.detach()


def new_members(configs: list[RunConfig], device: torch.device, train_sets: list[TrainingSet] | None = None):
    """Fresh per-run states as `train.train` starts them (no store): for benchmarks and tests."""
    out = []
    for i, cfg in enumerate(configs):
        s = _new_state(cfg, device)
        tc = cfg.train
        out.append(Member(cfg, None, s, train_sets[i] if train_sets else training_set(cfg, device),
                          loss_function(cfg), set(checkpoint_steps(tc.steps, tc.checkpoints, tc.first_checkpoint)),
                          torch.get_rng_state()))
    return out


def train_stacked(configs: list[RunConfig], store: Store | None = None, device: str | torch.device | None = None,
                  progress: bool = True, stop_after: int | None = None) -> list[Run]:
    """Train `configs` into the store as stacked runs; return their Runs in the order given (a run listed
    twice, once).

    Runs already done are skipped; interrupted ones resume from their newest intact state (written by
    this or by `train.train`), and runs at different steps train in one stack per starting step. All
    runs' locks are held throughout (taken in id order, so two overlapping stacks cannot deadlock).
    `stop_after` ends training at that step, as a kill would (for tests of resumption).
    """
    store = store or Store()
    device = pick_device(device)
    configs = list({cfg.run_id(): cfg for cfg in configs}.values())  # each run once
    if not configs:
        return []
    check_stackable(configs)
    for cfg in configs:
        _check_precision(cfg.train, device)
    log = (lambda msg: print(msg, file=sys.stderr)) if progress else (lambda msg: None)
    runs = [store.run(cfg) for cfg in configs]
    with ExitStack() as locks:
        for run in sorted(runs, key=lambda r: r.id):
            locks.enter_context(run.lock())
        groups: dict[int, list[Member]] = {}
        for cfg, run in zip(configs, runs):
            if run.done:
                continue
            tc = cfg.train
            s = _new_state(cfg, device)
            saves = set(checkpoint_steps(tc.steps, tc.checkpoints, tc.first_checkpoint))
            _check_disk(run, s.model, len(saves))
            _remove_stale_temp_files(run)
            run.write_config()
            _resume(run, s, device, log)
            m = Member(cfg, run, s, training_set(cfg, device), loss_function(cfg), saves, torch.get_rng_state())
            groups.setdefault(s.step, []).append(m)
        for start in sorted(groups):
            t0 = time.time()
            _train_stack(Stack(groups[start], device), device, progress, stop_after, t0)
    return runs


def _train_stack(stack: Stack, device: torch.device, progress: bool, stop_after: int | None, t0: float) -> None:
    members = stack.members
    steps = members[0].cfg.train.steps
    k = len(members)
    # per-run sums on the device, read at log steps only (as train.train does, per run)
    acc = torch.zeros(k, dtype=torch.float64, device=device)
    count = [0] * k
    bar = tqdm(total=steps, initial=stack.step_count, disable=not progress, mininterval=10, file=sys.stderr,
               desc=f"{k} stacked runs", unit="step")
    for m in members:
        m.state.model.train()
    while stack.step_count < steps:
        loss = stack.step()
        step = stack.step_count
        acc = acc + loss
        count = [c + 1 for c in count]
        logging = [i for i, m in enumerate(members) if step % LOG_EVERY == 0 or step in m.saves]
        if logging:
            means = (acc / torch.tensor(count, dtype=torch.float64, device=device)).tolist()
            for i in logging:
                members[i].state.losses.append([step, means[i]])
                count[i] = 0
            keep = torch.ones(k, dtype=torch.bool, device=device)
            keep[logging] = False
            acc = acc * keep
            bar.set_postfix(loss=f"{sum(means[i] for i in logging) / len(logging):.4f}", refresh=False)
        bar.update(1)
        for i, m in enumerate(members):
            if step in m.saves:
                _save_member(stack, i, time.time() - t0)
        if stop_after is not None and step >= stop_after:
            bar.close()
            return
    bar.close()
    for i, m in enumerate(members):  # the done marker last, after every checkpoint of the run
        stack.sync_views(i)
        tc = m.cfg.train
        write_json(m.run.dir / "done.json", {
            "steps": tc.steps, "train_seconds": m.state.wall + time.time() - t0,
            "device": device_name(device), "threads": torch.get_num_threads(), "precision": precision(tc, device),
            "params": sum(p.numel() for p in m.state.model.parameters()), "config": to_dict(m.cfg),
            "stacked_runs": k})


def _save_member(stack: Stack, i: int, elapsed: float) -> None:
    """train's `_save` for run i: its EMA checkpoint, resume state (with the global generator's state
    train would hold for it) and metrics."""
    m = stack.members[i]
    stack.sync_views(i)
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(m.rng_torch)
        _save(m.run, m.state, m.state.wall + elapsed)
