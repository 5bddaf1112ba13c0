"""Process lifetime: the processes a command starts end when it ends.

The main command runs chapters in papermill kernels, and a kernel runs chapter 2's sweep in worker
processes; stopped or killed, any of them would otherwise leave the rest training with parent 1.
Two rules close every gap: a stopped command ends its whole descendant tree (`own_children`), and a
worker whose parent is gone ends itself (`exit_with_parent`), which also covers a parent killed by
SIGKILL. Nothing needs cleaning up after: run files are written atomically and run locks are fcntl
locks, which the OS releases with the process; a killed run resumes from its last checkpoint.
Used by: book.main, sweep's local workers.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

import psutil

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
GRACE_SECONDS = 3.0  # between SIGTERM and SIGKILL for descendants that are still alive
POLL_SECONDS = 0.5   # how often a worker checks its parent


def exit_with_parent(parent: int, interval: float = POLL_SECONDS) -> None:
    """End this process soon after its parent, pid `parent`, ends: a daemon thread polls os.getppid().

    The pid comes from the parent, not from os.getppid() here: a worker still importing when its
    parent died would watch its adopter instead. A changed parent pid, not pid 1, is the sign: an
    orphan is adopted by the nearest subreaper, which in a container or a systemd session is often not
    init. (prctl's PR_SET_PDEATHSIG is not used: it fires when the parent's spawning *thread* ends.)"""
    def watch():
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(128 + signal.SIGTERM)  # as if terminated: no cleanup that could block on the dead parent

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def end_descendants(grace: float = GRACE_SECONDS) -> None:
    """SIGTERM every descendant of this process at once, then SIGKILL those alive after `grace` seconds.

    All at once, not parent first: a worker orphaned by its kernel's end would no longer be found.
    A zombie counts as ended: it runs no more, and its reaper (an adopter, maybe slow) is not us."""
    procs = psutil.Process().children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    deadline = time.monotonic() + grace
    while (alive := [p for p in procs if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _running(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def own_children(signals=STOP_SIGNALS):
    """While inside: SIGTERM, SIGINT or SIGHUP ends all descendants, then exits with 128 + signum.

    It exits with os._exit rather than unwinding: the unwinding code (papermill, jupyter_client) would
    talk to a kernel that is gone, and can wait on it. The previous handlers return on leaving, so a
    caller that runs the command in-process keeps its own."""
    def stop(signum, frame):
        for s in signals:  # a second signal must not start a second round of stopping
            signal.signal(s, signal.SIG_IGN)
        print(f"{signal.Signals(signum).name}: ending every process this one started", file=sys.stderr, flush=True)
        end_descendants()
        sys.stdout.flush()
        os._exit(128 + signum)

    previous = {s: signal.signal(s, stop) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
