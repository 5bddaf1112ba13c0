"""Concept space: checkpoints × prompts → samples → probe → a tidy table (Park et al. 2024, §3;
references: concept-space).

At every checkpoint each prompt is sampled from the same fixed noise, so a trajectory reflects the
model, not the noise. Results are cached per run, checkpoint and prompt (Parquet), so a chapter that
asks again, or asks for more prompts, only computes what is missing. Used by: chapters 1-4, 6.
"""
from __future__ import annotations

import sys

import pandas as pd
import torch
from filelock import FileLock
from tqdm import tqdm

from .config import DataConfig, EvalConfig, ProbeConfig, RunConfig, stable_hash, to_dict
from .interventions import applied
from .model import build_model, sample
from .probe import ConceptProbe, train_probe
from .prompting import Prompt
from .store import CorruptFileError, Run, Store, atomic_write_bytes, load_tensors, save_tensors


def probe_key(data: DataConfig, probe: ProbeConfig) -> str:
    return stable_hash({"probe": to_dict(probe), "resolution": data.resolution, "concepts": list(data.concepts)})


def load_probe(store: Store, data: DataConfig, probe: ProbeConfig, device="cpu") -> ConceptProbe:
    """The oracle probe for this data's concepts and resolution: trained once, then loaded."""
    path = store.probe_path(probe_key(data, probe))
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        model = ConceptProbe(len(data.concepts), probe.width)
        try:
            if not path.exists():
                raise FileNotFoundError(path)
            model.load_state_dict(load_tensors(path)[0])
        except FileNotFoundError:
            model = _train_and_save(path, data, probe, device)
        except CorruptFileError as e:
            print(f"warning: {e}; retraining the probe", file=sys.stderr)
            model = _train_and_save(path, data, probe, device)
    model.key = probe_key(data, probe)
    return model.eval().to(device)


def _train_and_save(path, data, probe, device) -> ConceptProbe:
    model = train_probe(data, probe, device)
    save_tensors(path, model.state_dict(), {"probe": to_dict(probe), "resolution": data.resolution})
    return model


def fixed_noise(n: int, resolution: int, seed: int) -> torch.Tensor:
    """The initial noise of every prompt at every checkpoint: sample i always starts from the same x_T."""
    return torch.randn(n, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))


def _eval_dir(run: Run, ev: EvalConfig, pkey: str):
    key = stable_hash({"sampler_steps": ev.sampler_steps, "noise_seed": ev.noise_seed, "probe": pkey})
    return run.dir / "evals" / key


def _read(path):
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as e:  # a damaged cache file is recomputed, never trusted
        print(f"warning: {path}: unreadable evaluation ({e}); recomputing", file=sys.stderr)
        return None


def evaluate(run: Run, probe: ConceptProbe, prompts: list[Prompt], ev: EvalConfig,
             steps: list[int] | None = None, device="cpu", progress: bool = True) -> pd.DataFrame:
    """Per-sample probe probabilities for every (checkpoint, prompt); cached in the run folder.

    Columns: step, prompt, method, target_<concept>, p_<concept> (P(value 1)), sample.
    """
    cfg: RunConfig = run.config
    steps = run.checkpoint_steps() if steps is None else steps
    prompts = list({p.key(): p for p in prompts}.values())  # a prompt asked twice is sampled once
    folder = _eval_dir(run, ev, probe.key)
    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg).to(device).eval()
    frames = []
    pending = []
    for step in steps:
        path = folder / f"step_{step:08d}.parquet"
        table = _read(path)
        done = set(table["key"]) if table is not None else set()
        todo = [p for p in prompts if p.key() not in done]
        if todo:
            pending.append((step, path, table, todo))
        elif table is not None:
            frames.append(table)
    for step, path, table, todo in tqdm(pending, disable=not progress or not pending, file=sys.stderr,
                                        desc=f"evaluate {run.id}", unit="ckpt", mininterval=10):
        try:
            model.load_state_dict(run.load_weights(step, device))
        except CorruptFileError as e:  # never sample from garbage: this checkpoint drops out of the table
            print(f"warning: {e}; checkpoint {step} left out of the evaluation", file=sys.stderr)
            continue
        with FileLock(str(folder / "lock")):  # another process may be evaluating the same run
            table = _read(path)
            done = set(table["key"]) if table is not None else set()
            todo = [p for p in todo if p.key() not in done]
            if not todo:
                frames.append(table)
                continue
            table = _evaluate_and_store(model, cfg, probe, todo, ev, device, step, path, table)
        frames.append(table)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    keys = {p.key(): p.name for p in prompts}
    out = out[out["key"].isin(keys)].copy()
    out["prompt"] = out["key"].map(keys)  # names are labels; the key is what was computed
    return out.sort_values(["step", "prompt", "sample"]).reset_index(drop=True)


def _evaluate_and_store(model, cfg, probe, todo, ev, device, step, path, table):
    """Evaluate the missing prompts of one checkpoint and add them to its cache files."""
    new, images = _evaluate_step(model, cfg, probe, todo, ev, device)
    new.insert(0, "step", step)
    table = new if table is None else pd.concat([table, new], ignore_index=True)
    atomic_write_bytes(path, table.to_parquet(index=False))
    if ev.keep_images:
        img_path = path.with_suffix(".images.safetensors")
        old = {}
        if img_path.exists():
            try:
                old = load_tensors(img_path)[0]
            except CorruptFileError:
                old = {}
        save_tensors(img_path, {**old, **images})
    return table


def _evaluate_step(model, cfg: RunConfig, probe, prompts, ev: EvalConfig, device):
    """Sample every prompt of one checkpoint: all unguided prompts (latent edits included, one edit per
    sample) in shared batches, all guided ones in others (one guidance weight per sample)."""
    rows, images = [], {}
    for guided in (False, True):
        group = [p for p in prompts if (p.guidance is not None) == guided]
        if not group:
            continue
        cond = torch.cat([torch.tensor(p.cond).expand(p.n, -1) for p in group])
        noise = torch.cat([fixed_noise(p.n, cfg.data.resolution, ev.noise_seed) for p in group])
        edits = [p.intervention for p in group for _ in range(p.n)]
        weights = torch.tensor([p.guidance for p in group for _ in range(p.n)]) if guided else None
        parts = []
        for start in range(0, len(cond), ev.batch_size):
            sl = slice(start, start + ev.batch_size)
            with applied(model, edits[sl]):
                parts.append(sample(model, cfg, cond[sl], noise[sl], ev.sampler_steps,
                                    weights[sl] if guided else None))
        x = torch.cat(parts)
        probs = probe.probabilities(x.float().cpu())
        start = 0
        for p in group:
            pp = probs[start:start + p.n]
            frame = pd.DataFrame({f"p_{c}": pp[:, i].numpy() for i, c in enumerate(cfg.data.concepts)})
            for i, c in enumerate(cfg.data.concepts):
                frame.insert(i, f"target_{c}", p.target[i])
            frame.insert(0, "sample", range(p.n))
            frame.insert(0, "method", p.method)
            frame.insert(0, "key", p.key())
            rows.append(frame)
            if ev.keep_images:
                kept = x[start:start + min(p.n, ev.keep_images)].cpu().clamp(0, 1)  # display clips; the probe saw z_0
                images[p.key()] = (kept * 255).round().to(torch.uint8)
            start += p.n
    return pd.concat(rows, ignore_index=True), images


def stored_images(run: Run, ev: EvalConfig, probe: ConceptProbe, step: int, prompt: Prompt) -> torch.Tensor | None:
    """The kept samples (uint8, N×3×R×R) of a prompt at a checkpoint, if evaluated."""
    path = _eval_dir(run, ev, probe.key) / f"step_{step:08d}.images.safetensors"
    if not path.exists():
        return None
    return load_tensors(path)[0].get(prompt.key())


def concept_space(samples: pd.DataFrame, concepts) -> pd.DataFrame:
    """One row per (step, prompt): the class's point in concept space and its accuracies.

    p_<c>: mean P(value 1), the coordinate; acc_<c>: fraction of samples whose argmax is the target
    value; joint: fraction right on every concept; prod: product over concepts of the mean
    probability of the target value (the paper's over-prompting score; references: over-prompting).
    """
    df = samples.copy()
    hits, probs = [], []
    for c in concepts:
        target = df[f"target_{c}"]
        prob_target = df[f"p_{c}"].where(target == 1, 1 - df[f"p_{c}"])
        df[f"acc_{c}"] = (prob_target > 0.5).astype(float)
        df[f"pt_{c}"] = prob_target
        hits.append(f"acc_{c}")
        probs.append(f"pt_{c}")
    df["joint"] = df[hits].prod(axis=1)
    keys = ["step", "prompt", "method"] + [f"target_{c}" for c in concepts]
    agg = df.groupby(keys, as_index=False)[[f"p_{c}" for c in concepts] + hits + probs + ["joint"]].mean()
    agg["prod"] = agg[probs].prod(axis=1)
    return agg.drop(columns=probs)


def image_source(run: Run, ev: EvalConfig, probe: ConceptProbe, prompts, keep: int = 4):
    """`(step, prompt name) -> kept samples`: the callback a checkpoint scrubber asks for images."""
    by_name = {p.name: p for p in prompts}
    return lambda step, name: stored_images(run, ev, probe, step, by_name[name])[:keep]
