"""The run store: one folder per trained run, named by the hash of its validated config.

Chapters share runs through it, so the whole book trains each run once. Every file is written
atomically (temp file, then rename); tensors go to safetensors (no pickle, nothing executes on load)
with a content hash checked on load; a file lock keeps two processes from training the same run.
Nothing here ever deletes a run to start over.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from .config import RunConfig, to_dict

REPO_ROOT = Path(__file__).resolve().parents[2]


class CorruptFileError(RuntimeError):
    """A stored file is truncated, unreadable or fails its content hash."""


def default_root() -> Path:
    """`$CONCEPTSPACE_STORE`, else `_build/store` in the repository (ignored by git)."""
    return Path(os.environ.get("CONCEPTSPACE_STORE", REPO_ROOT / "_build" / "store"))


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`: all or nothing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """safetensors file whose metadata carries JSON `metadata` and the SHA-256 of its tensors."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {"meta": json.dumps(metadata or {}), "sha256": _digest(tensors)}
    atomic_write_bytes(path, st_save(tensors, metadata=meta))


def load_tensors(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """Load a file written by `save_tensors`; raise CorruptFileError naming the path if it is damaged."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError, OSError) as e:
        raise CorruptFileError(f"{path}: unreadable checkpoint ({e})") from e
    if meta.get("sha256") != _digest(tensors):
        raise CorruptFileError(f"{path}: content hash mismatch (file is corrupted)")
    return {k: v.to(device) for k, v in tensors.items()}, json.loads(meta.get("meta", "{}"))


class Run:
    """The folder of one run: config, checkpoints (EMA weights), resume states, metrics, evaluations."""

    def __init__(self, root: Path, config: RunConfig):
        self.config = config
        self.id = config.run_id()
        self.dir = Path(root) / "runs" / self.id
        self.checkpoints_dir = self.dir / "checkpoints"
        self.states_dir = self.dir / "states"

    def lock(self, timeout: float = -1) -> FileLock:
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / "lock"), timeout=timeout)

    def write_config(self) -> None:
        path = self.dir / "config.json"
        if not path.exists():
            write_json(path, {"id": self.id, "config": to_dict(self.config)})

    def checkpoint_path(self, step: int) -> Path:
        return self.checkpoints_dir / f"step_{step:08d}.safetensors"

    def state_path(self, step: int) -> Path:
        return self.states_dir / f"step_{step:08d}.safetensors"

    def checkpoint_steps(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.checkpoints_dir.glob("step_*.safetensors"))

    def state_steps(self) -> list[int]:
        return sorted(int(p.stem.split("_")[1]) for p in self.states_dir.glob("step_*.safetensors"))

    @property
    def done(self) -> bool:
        return (self.dir / "done.json").exists()

    def summary(self) -> dict:
        return read_json(self.dir / "done.json") if self.done else {}

    def metrics(self) -> list[dict]:
        path = self.dir / "metrics.json"
        return read_json(path) if path.exists() else []

    def load_weights(self, step: int, device="cpu") -> dict[str, torch.Tensor]:
        return load_tensors(self.checkpoint_path(step), device)[0]

    def __repr__(self) -> str:
        return f"Run({self.id}, {self.dir})"


class Store:
    """Where runs, probes and evaluations live; `$CONCEPTSPACE_STORE` or `_build/store` by default."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()

    def run(self, config: RunConfig) -> Run:
        return Run(self.root, config)

    def probe_path(self, key: str) -> Path:
        return self.root / "probes" / f"{key}.safetensors"

    def __repr__(self) -> str:
        return f"Store({self.root})"
