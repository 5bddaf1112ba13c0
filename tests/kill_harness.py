"""Kill a training run with SIGKILL at random moments, restart it, repeat; then check it ends bit-identical.

    python tests/kill_harness.py --kills 20        # the full harness (about 3 min on 2 cores)

Half of the kills land at a random moment of training, half the instant a file write begins (a temp
file appears in the run folder), so checkpoints are killed mid-write. The finished run's checkpoints
and metrics must equal an uninterrupted run's bit for bit. tests/test_reliability.py runs it with 3 kills.
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, torch
torch.set_num_threads(1)
from conceptspace import config, store, train
cfg = config.experiment("tiny", {overrides!r}).run
print("go", flush=True)
train.train(cfg, store.Store(sys.argv[1]), progress=False)
print("done", flush=True)
"""

def overrides(kills: int) -> dict:
    """A tiny run long enough for `kills` interruptions, with a checkpoint every other step: writes
    are a large share of the time, so random kills hit them too."""
    steps = 20 * kills + 20
    return {"train.steps": steps, "train.checkpoints": steps // 2, "train.first_checkpoint": 2}


def _start(root: Path, kills: int) -> subprocess.Popen:
    code = CHILD.format(overrides=overrides(kills))
    proc = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    return proc


def _temp_files(root: Path) -> list[Path]:
    return list(root.rglob(".*.tmp"))


def kill_and_resume(kills: int, seed: int = 0, log=print) -> dict:
    """Returns kill points tried and survived, and whether the result equals the reference."""
    import torch
    from conceptspace import config, store, train

    torch.set_num_threads(1)
    rng = random.Random(seed)
    cfg = config.experiment("tiny", overrides(kills)).run
    with tempfile.TemporaryDirectory() as tmp:
        ref = train.train(cfg, store.Store(Path(tmp) / "reference"), progress=False)
        root = Path(tmp) / "killed"
        points = []
        while len(points) < kills:
            proc = _start(root, kills)
            mode = "mid-write" if len(points) % 2 else "random"
            deadline = time.time() + rng.uniform(0.05, 2.0)
            while proc.poll() is None:
                if mode == "mid-write" and _temp_files(root) or mode == "random" and time.time() >= deadline:
                    break
                time.sleep(0.0005 if mode == "mid-write" else 0.01)
            if proc.poll() is not None:  # finished before the kill: nothing left to interrupt
                break
            proc.kill()
            proc.wait()
            run = store.Store(root).run(cfg)
            points.append({"mode": mode, "after_step": max(run.state_steps(), default=0),
                           "temp_files": len(_temp_files(root))})
            log(f"kill {len(points)}: {mode}, newest state at step {points[-1]['after_step']}, "
                f"{points[-1]['temp_files']} temp file(s) left")
        proc = _start(root, kills)
        assert proc.stdout.readline().strip() == "done" and proc.wait() == 0
        done = store.Store(root).run(cfg)
        same_steps = ref.checkpoint_steps() == done.checkpoint_steps()
        same = same_steps and all(
            a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            for a, b in ((ref.load_weights(s), done.load_weights(s)) for s in ref.checkpoint_steps()))
        same_metrics = ref.metrics() == done.metrics()
        return {"kills": len(points), "mid_write": sum(p["mode"] == "mid-write" for p in points),
                "identical_weights": bool(same), "identical_metrics": bool(same_metrics), "points": points}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    report = kill_and_resume(args.kills, args.seed)
    print(json.dumps({k: v for k, v in report.items() if k != "points"}, indent=1))
    sys.exit(0 if report["identical_weights"] and report["identical_metrics"] else 1)
