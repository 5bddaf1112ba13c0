"""Chapter results files: `_build/results/<notebook name>.json`, read by the status page and tests.

Each holds run metadata and `findings`: one entry per claim the chapter tests, with the measured
value, the paper's value where one exists, the rule, and `holds` computed from the measurement.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import Experiment, to_dict
from .store import REPO_ROOT, read_json, write_json


@dataclass(frozen=True)
class Finding:
    name: str
    measured: Any
    paper: Any
    rule: str
    holds: bool


def finding(name: str, measured, paper, rule: str, holds) -> Finding:
    """A claim and its test; `holds` must be computed from `measured` by `rule`."""
    return Finding(name, _plain(measured), _plain(paper), rule, bool(holds))


def _plain(value):
    """JSON-friendly: numpy to Python, NaN and missing values to null, floats rounded for reading."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return round(value, 4) if np.isfinite(value) else None  # JSON has no NaN: unmeasured is null
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def results_dir() -> Path:
    return Path(os.environ.get("CONCEPTSPACE_RESULTS", REPO_ROOT / "_build" / "results"))


def versions() -> dict:
    import diffusers
    import torch
    return {"python": platform.python_version(), "torch": torch.__version__, "diffusers": diffusers.__version__}


def write(chapter: str, ex: Experiment | None, findings: list[Finding], started: float, device: str,
          data: dict | None = None) -> Path:
    """Write the chapter's results file atomically and return its path."""
    payload = {
        "chapter": chapter, "profile": ex.profile if ex else None, "device": device,
        "seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "versions": versions(), "config": to_dict(ex.run) if ex else None,
        "findings": [asdict(f) for f in findings], "data": _plain(data or {}),
    }
    path = results_dir() / f"{chapter}.json"
    write_json(path, payload)
    return path


def read(chapter: str) -> dict:
    return read_json(results_dir() / f"{chapter}.json")


def read_all() -> list[dict]:
    return [read_json(p) for p in sorted(results_dir().glob("*.json"))]


def findings_table(findings: list[Finding]) -> pd.DataFrame:
    """The table each chapter shows at its top."""
    rows = [{"claim": f.name, "measured": _show(f.measured), "paper": _show(f.paper),
             "rule": f.rule, "holds": "yes" if f.holds else "no"} for f in findings]
    return pd.DataFrame(rows)


def _show(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def publish(chapter: str, ex: Experiment | None, findings: list[Finding], started: float, device: str,
            data: dict | None = None) -> None:
    """A chapter's last step: write its results file, glue the findings table for the top of the page,
    and show the table with a plain statement of what did not hold. Returns nothing, so a chapter that
    ends with it shows no stray value."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    path = write(chapter, ex, findings, started, device, data)
    table = findings_table(findings).style.format(escape="html").hide(axis="index")  # "<" in a value is text
    glue("findings", table, display=False)
    display(table)
    failed = [f.name for f in findings if not f.holds]
    scale = f"the `{ex.profile}` profile" if ex else "this run"
    display(Markdown("**Every finding of this chapter holds at this scale.**" if not failed else
                     "**Not reproduced here:** " + "; ".join(failed) +
                     f". These are the values measured at {scale}; nothing is adjusted."))
    display(Markdown(f"Results file: `{_shown(path)}`"))


def _shown(path: Path) -> str:
    """The results file's path as a reader of the book finds it (relative to the repository)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
