"""Chapter results files: `_build/results/<notebook name>.json`, read by the status page, the
scorecard and the tests.

Each holds run metadata and `findings`: one entry per claim the chapter covers. A **judged** finding
tests a claim by a rule and `holds` is True or False, computed from the measurement; a **reported**
finding only shows a quantity, and `holds` is None: it is never counted as holding. A finding names
the paper's claim it tests (`paper.CLAIMS`), so the paper's number and provenance come from one place.
"""
from __future__ import annotations

import html
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import paper as paper_
from .config import Experiment, to_dict
from .store import REPO_ROOT, read_json, write_json

FROM_CLAIM = object()  # a finding's paper value defaults to its claim's


@dataclass(frozen=True)
class Finding:
    key: str              # short and unique in its chapter: its template name and scorecard anchor
    claim: str            # the id of the paper's claim it tests (paper.CLAIMS), or "" for a check of the book's own
    name: str             # what is measured, in one sentence
    measured: Any
    paper: Any            # the paper's value (its claim's unless the finding names a more specific number)
    rule: str             # how `holds` is computed; "reported" for a reported quantity
    holds: bool | None    # True / False: judged; None: reported, never counted as holding
    seeds: dict | None    # per-seed outcome {seed: value or verdict}, where the finding is judged across seeds
    variant: str          # "" for the claim at the paper's strength; else what a scale-specific variant changes
    in_steps: bool        # the values are step counts: comparable with the paper's only at its recipe and scale


def judged(key: str, claim: str, name: str, measured, rule: str, holds, *, paper=FROM_CLAIM, seeds=None,
           variant: str = "", in_steps: bool = False) -> Finding:
    """A claim tested by `rule`; `holds` must be computed from the measurement (never a literal)."""
    if holds is None or not isinstance(holds, (bool, np.bool_)):
        raise TypeError(f"judged finding {key!r}: holds must be a bool computed by its rule, got {holds!r}")
    return _make(key, claim, name, measured, rule, bool(holds), paper, seeds, variant, in_steps)


def reported(key: str, claim: str, name: str, measured, *, paper=FROM_CLAIM, seeds=None, variant: str = "",
             why: str = "", in_steps: bool = False) -> Finding:
    """A quantity shown beside the paper's, not judged (`holds` None); `why` says why it is not judged."""
    return _make(key, claim, name, measured, "reported" + (f": {why}" if why else ""), None, paper, seeds, variant,
                 in_steps)


def _make(key, claim, name, measured, rule, holds, paper, seeds, variant, in_steps) -> Finding:
    if claim and claim not in paper_.CLAIMS:
        raise KeyError(f"finding {key!r}: claim {claim!r} is not in paper.CLAIMS")
    if paper is FROM_CLAIM:
        paper = paper_.CLAIMS[claim].value if claim else None
    seeds = None if seeds is None else {str(k): _plain(v) for k, v in dict(seeds).items()}
    return Finding(key, claim, name, _plain(measured), _plain(paper), rule, holds, seeds, variant, in_steps)


def every(outcomes) -> bool:
    """A claim of consistency (every seed, every run, every Δc): holds where each outcome does, and never
    on no outcomes at all (a rule with nothing to judge has not held)."""
    values = list(outcomes.values()) if isinstance(outcomes, dict) else list(outcomes)
    return bool(values) and all(bool(v) for v in values)


def verdict(holds: bool | None) -> str:
    return "reported" if holds is None else ("holds" if holds else "fails")


def count(findings) -> dict:
    """Judged, holding, failing and reported findings (dicts from a results file or Finding objects)."""
    h = [f["holds"] if isinstance(f, dict) else f.holds for f in findings]
    return {"judged": sum(v is not None for v in h), "hold": sum(v is True for v in h),
            "fail": sum(v is False for v in h), "reported": sum(v is None for v in h)}


def _plain(value):
    """JSON-friendly: numpy to Python, NaN and missing values to null, floats rounded for reading."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        if value == np.inf:
            return "never"  # dynamics.NEVER: a step after the end of the run
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
    """The table each chapter shows at its top: judged findings first, then reported ones."""
    rows = [{"claim": f.claim or "book", "finding": f.name + (f" ({f.variant})" if f.variant else ""),
             "measured": show(f.measured), "per seed": _seeds(f.seeds), "paper": show(f.paper), "rule": f.rule,
             "verdict": verdict(f.holds)} for f in sorted(findings, key=lambda f: f.holds is None)]
    return pd.DataFrame(rows)


def show(value) -> str:
    """A value as the findings tables and the scorecard print it."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {show(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(show(v) for v in value)
    return str(value)


def step_text(step) -> str:
    """A training step as tables print it: '1,234', 'never' (dynamics.NEVER) or '—' (none: no turn)."""
    if step is None or pd.isna(step):
        return "—"
    return "never" if step == np.inf else f"{float(step):,.0f}"


def _seeds(seeds: dict | None) -> str:
    if not seeds:
        return "—"
    return ", ".join(f"{k}: {show(v)}" for k, v in seeds.items())


def summary_line(findings) -> str:
    """'3 of 4 judged findings hold; 2 reported (not judged)', the same words on every page."""
    c = count(findings)
    return (f"{c['hold']} of {c['judged']} judged findings hold" +
            (f"; {c['reported']} reported (not judged)" if c["reported"] else ""))


def paper_vs_book(findings: list[Finding], ex: Experiment) -> pd.DataFrame:
    """Each claim's number in the paper beside ours, with the paper's provenance and our scale and
    recipe in the row; a row comparing step counts across another recipe or scale says so."""
    rows = []
    for f in findings:
        if not f.claim:
            continue
        c = paper_.CLAIMS[f.claim]
        caveat = ""
        if f.in_steps and not paper_.is_paper_scale(ex):
            caveat = (f"step counts: our {paper_.scale(ex)} vs the paper's 32 px VDM runs; compare order and shape, "
                      "not the numbers")
        rows.append({"claim": f.claim, "paper": show(f.paper), "source": f"{c.source} ({c.provenance})",
                     "this book": show(f.measured), "per seed": _seeds(f.seeds), "verdict": verdict(f.holds),
                     "profile · recipe": paper_.scale(ex), "note": caveat or f.variant})
    return pd.DataFrame(rows)


def deviations_admonition(ex: Experiment, sections=("data", "model", "train", "eval", "probe")):
    """The same admonition on every page: every setting that differs from the paper's own setup, and
    the differences of its recipe that no setting names (paper.RECIPE_DIFFERENCES)."""
    from IPython.display import HTML

    rows = paper_.deviations(ex, sections)
    items = [f"<li><code>{html.escape(r['setting'])}</code> = {html.escape(r['this book'])} "
             f"(paper: {html.escape(r['paper'])})</li>" for r in rows]
    items += [f"<li>{html.escape(text)}</li>" for text in paper_.RECIPE_DIFFERENCES[ex.run.model.recipe]]
    return HTML(f'<div class="admonition warning"><p class="admonition-title">How this page differs from the '
                f"paper's setup (profile <code>{html.escape(ex.profile)}</code>, {len(rows)} settings and the "
                f"recipe)</p><ul>{''.join(items)}</ul></div>")


def glue_values(**values) -> None:
    """Name values for the chapter's prose (`{glue:md}` roles in its Markdown), so a verdict sentence is
    Markdown filled from the findings, not an f-string."""
    from IPython.display import Markdown
    from myst_nb import glue

    for name, value in values.items():
        glue(name, Markdown(show(_plain(value))), display=False)


def publish(chapter: str, ex: Experiment | None, findings: list[Finding], started: float, device: str,
            data: dict | None = None) -> None:
    """A chapter's last step: write its results file, glue the findings table for the top of the page
    and each finding's measured value and verdict for its prose (`<key>`, `<key>_verdict`), and show the
    table, the count of judged findings that hold and what failed. Returns nothing."""
    from IPython.display import Markdown, display
    from myst_nb import glue

    keys = [f.key for f in findings]
    if len(set(keys)) != len(keys):
        raise ValueError(f"finding keys must be unique in a chapter: {keys}")
    path = write(chapter, ex, findings, started, device, data)
    table = findings_table(findings).style.format(escape="html").hide(axis="index")  # "<" in a value is text
    glue("findings", table, display=False)
    glue("findings_summary", Markdown(f"**{summary_line(findings)}.**"), display=False)
    glue_values(**{f.key: f.measured for f in findings}, **{f"{f.key}_verdict": verdict(f.holds) for f in findings})
    display(table)
    failed = [f.name for f in findings if f.holds is False]
    scale = f"the `{ex.profile}` profile" if ex else "this run"
    display(Markdown(f"**{summary_line(findings)}.** " + (
        "" if not failed else "**Not reproduced here:** " + "; ".join(failed) +
        f". These are the values measured at {scale}; no rule is relaxed to make them pass.")))
    display(Markdown(f"Results file: `{_shown(path)}`"))


def _shown(path: Path) -> str:
    """The results file's path as a reader of the book finds it (relative to the repository)."""
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
