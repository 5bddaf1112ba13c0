"""Stopping the book stops everything it started: SIGTERM or SIGKILL to the main command while its pool
trains chapter 2's runs leaves no process of it alive, and a rerun resumes to an uninterrupted
execution's findings.

The main command runs as a subprocess, as `python -m conceptspace.book` does, but with its staging
folder in tmp_path (tests never write the repository's _build); every process it starts inherits a
marker in its environment, which is how the processes left behind are found (in /proc).
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

CHAPTER = "02_concept_signal"
MARK = "CONCEPTSPACE_TEST_MARK"
MAIN = ("import sys; from pathlib import Path; from conceptspace import book; "
        "book.STAGE = Path(sys.argv[1]); sys.exit(book.main(sys.argv[2:]))")
GONE_WITHIN = 10  # seconds from the signal until no process of the command may be left


def start(root: Path, mark: str) -> subprocess.Popen:
    env = {**os.environ, "CONCEPTSPACE_STORE": str(root / "store"), "CONCEPTSPACE_RESULTS": str(root / "results"),
           MARK: mark}
    log = open(root / "log", "a")
    return subprocess.Popen([sys.executable, "-c", MAIN, str(root / "stage"), "--profile", "tiny",
                             "--chapters", CHAPTER, "--no-html"], env=env, stdout=log, stderr=subprocess.STDOUT)


def marked(mark: str) -> dict[int, str]:
    """Every live process carrying the marker: pid -> command line."""
    found = {}
    needle = f"\0{MARK}={mark}\0".encode()
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and needle in b"\0" + (proc / "environ").read_bytes():
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended while we looked
            pass
    return found


def findings(root: Path) -> list[dict]:
    return json.loads((root / "results" / f"{CHAPTER}.json").read_text())["findings"]


def run_to_end(root: Path) -> list[dict]:
    proc = start(root, uuid.uuid4().hex)
    assert proc.wait(timeout=300) == 0, (root / "log").read_text()[-3000:]
    return findings(root)


def training(root: Path) -> bool:
    """A sweep worker trains a run: it holds the run's lock, and the run is not done."""
    return any(not (d / "done.json").exists() for d in (root / "store" / "runs").glob("*") if (d / "lock").exists())


def interrupt(root: Path, sig: int) -> tuple[int, float]:
    """Start the command; send `sig` 1 s after a sweep worker has begun training (past its imports);
    returns the command's exit status and the seconds until its last process ended."""
    mark = uuid.uuid4().hex
    proc = start(root, mark)
    deadline = time.monotonic() + 180
    while not (any("spawn_main" in cmd for cmd in marked(mark).values()) and training(root)):
        assert proc.poll() is None and time.monotonic() < deadline, (root / "log").read_text()[-3000:]
        time.sleep(0.1)
    time.sleep(1)
    assert training(root), "the sweep ended before the signal: nothing was interrupted"
    t0 = time.monotonic()
    proc.send_signal(sig)
    while (left := marked(mark)) and time.monotonic() - t0 < GONE_WITHIN:
        time.sleep(0.05)
    took = time.monotonic() - t0
    for pid in left:  # a failed test must not leave them training
        os.kill(pid, signal.SIGKILL)
    assert not left, f"alive {GONE_WITHIN} s after {signal.Signals(sig).name}: {left}"
    print(f"\n{signal.Signals(sig).name}: the last process of the command ended after {took:.2f} s")
    return proc.wait(timeout=5), took


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The findings of chapter 2 executed once from an empty store, never stopped."""
    return run_to_end(tmp_path_factory.mktemp("uninterrupted"))


def test_sigterm_ends_the_kernel_and_the_sweep_workers_and_a_rerun_resumes(uninterrupted, tmp_path):
    status, _ = interrupt(tmp_path, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM
    assert run_to_end(tmp_path) == uninterrupted


def test_after_sigkill_the_kernel_and_the_sweep_workers_end_themselves(uninterrupted, tmp_path):
    status, _ = interrupt(tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert run_to_end(tmp_path) == uninterrupted
