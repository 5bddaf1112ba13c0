"""The main command: execute every chapter with papermill on a profile, then build the HTML book.

    python -m conceptspace.book [--profile cpu] [--chapters 01_concept_space,...] [--set train.seed=1]

Chapters are MyST notebooks under `book/` listed in `_toc.yml`. Each runs in a fresh kernel with
`profile` and `overrides` injected into its parameters cell, always under a time limit, into a staging
copy of the book; Jupyter Book 1 then renders the staged, executed notebooks (it executes nothing
itself) with warnings as errors. Trained runs live in the run store, so a second build re-executes
the chapters from stored runs in minutes. Before any chapter runs it prints the plan (conceptspace.plan:
runs stored and to train per chapter, and the estimated time on this machine; `--plan-only` stops
there), then trains every run the chapters read that the store lacks, and evaluates each for every
chapter that reads it, in one pool of workers, longest first (plan.train_ahead: run by chapter, a
chapter's odd run out would train alone on one core), with one progress line for the whole build;
each chapter's wall time, and the pool's, goes to the status page with the CPU it ran on.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from sphinx_external_toc.parsing import FileItem, parse_toc_yaml

from .config import experiment, parse_setting, profile_names
from .lifetime import own_children
from .paper import CLAIMS
from .results import count, read_all, results_dir, show, verdict, versions
from .store import REPO_ROOT, CorruptFileError, read_json, write_json

STAGE = REPO_ROOT / "_build" / "stage"
SHORT_CELL_SECONDS = 600  # cells not tagged long-running: a papermill stall costs at most this
WIDGET_CELL_SECONDS = 60  # cells tagged "widget": papermill can stall after widget traffic (ref: stack-papermill)


def toc_files(root: Path = REPO_ROOT) -> list[str]:
    """Every file named in _toc.yml (without extension), in reading order, parsed as Jupyter Book parses
    it (sphinx-external-toc); globs and URLs are not files."""
    site = parse_toc_yaml(str(root / "_toc.yml"))

    def walk(doc: str) -> list[str]:
        return [doc] + [d for tree in site[doc].subtrees for item in tree.items
                        if isinstance(item, FileItem) for d in walk(item)]
    return walk(site.root.docname)


def is_notebook(path: Path) -> bool:
    if path.suffix == ".ipynb":
        return True
    text = path.read_text()
    return text.startswith("---") and "kernelspec:" in text.split("---", 2)[1]


def source_of(name: str, root: Path = REPO_ROOT) -> Path | None:
    for ext in (".md", ".ipynb"):
        if (root / f"{name}{ext}").exists():
            return root / f"{name}{ext}"
    return None


def chapters(root: Path = REPO_ROOT) -> list[str]:
    """The executable chapters in toc order, by notebook name (e.g. '01_concept_space')."""
    return [Path(n).name for n in toc_files(root) if (s := source_of(n, root)) and is_notebook(s)]


def execute(name: str, profile: str, overrides: dict, out_dir: Path, timeout: int, root: Path = REPO_ROOT) -> float:
    """Execute one chapter into out_dir/<name>.ipynb; returns seconds. Raises on a failing cell."""
    import papermill

    rel = next(n for n in toc_files(root) if Path(n).name == name)
    nb = jupytext.read(source_of(rel, root))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = out_dir / f"{rel}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".source.ipynb")
    nbformat.write(nb, src)

    def cell_timeout(cell):
        tags = cell.metadata.get("tags", [])
        if "widget" in tags:
            return WIDGET_CELL_SECONDS
        return timeout if "long-running" in tags else min(timeout, SHORT_CELL_SECONDS)

    t0 = time.time()
    try:
        papermill.execute_notebook(str(src), str(out), parameters={"profile": profile, "overrides": overrides},
                                   kernel_name="python3", cwd=str(root), progress_bar=False,
                                   execution_timeout=timeout, timeout_func=cell_timeout, log_output=True)
    finally:
        src.unlink(missing_ok=True)
    _hide_parameters(out)
    return time.time() - t0


def _hide_parameters(path: Path) -> None:
    """Show the parameters and the injected overrides collapsed in the book."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "hide-input" not in tags:
            tags.append("hide-input")
    nbformat.write(nb, path)


def stage_pages(stage: Path, root: Path = REPO_ROOT) -> None:
    """Copy the book's configuration and prose pages next to the executed notebooks."""
    stage.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, stage / name)
    for name in toc_files(root):
        src = source_of(name, root)
        if src is not None and not is_notebook(src):
            (stage / src.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, stage / src.relative_to(root))
    for asset in ("book/_static",):
        if (root / asset).exists():
            shutil.copytree(root / asset, stage / asset, dirs_exist_ok=True)


def times_path() -> Path:
    """Each chapter's wall time in the build that last executed it: `<results>/build/times.json`."""
    return results_dir() / "build" / "times.json"


def read_times() -> dict:
    try:
        return read_json(times_path()) if times_path().exists() else {}
    except CorruptFileError:
        return {}


def record_times(run_seconds: dict[str, float], profile: str, cpu: str, estimates: dict | None = None) -> dict:
    """Add this build's chapter wall times (and the plan's estimates) to the times file; returns all of it."""
    times = read_times()
    for name, seconds in run_seconds.items():
        estimate = (estimates or {}).get(name)
        times[name] = {"seconds": round(seconds, 1), "estimate": None if estimate is None else round(estimate, 1),
                       "cpu": cpu, "profile": profile, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(times_path(), times)
    return times


def status_page(stage: Path, run_seconds: dict[str, float], times: dict | None = None) -> None:
    """book/status.md: each chapter's profile, wall time in the build (with the plan's estimate and the CPU
    it ran on), the chapter's own time, device and findings, the pool that trained their runs ahead of
    them, and the versions."""
    from .plan import AHEAD, cpu_model

    times = read_times() if times is None else times
    lines = ["# Build status", "",
             "Written by the main command from each chapter's results file "
             "(`_build/results/<chapter>.json`). Judged findings are tested by a rule; reported ones are "
             "shown beside the paper's value and never counted as holding. *Wall time*: the chapter's "
             "execution as the main command measured it, on the CPU named beside it; *planned*: the estimate "
             "printed before that build (`conceptspace.plan`).", "",
             "| chapter | profile | wall time | planned | CPU | chapter's own time | device "
             "| judged findings that hold | reported | finished |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for res in read_all():
        name = res["chapter"]
        c = count(res["findings"])
        t = times.get(name, {})
        if name in run_seconds:
            wall, cpu = f"{run_seconds[name]:.0f} s", t.get("cpu") or cpu_model()
        elif t:
            wall, cpu = f"{t['seconds']:.0f} s (earlier build)", t.get("cpu", "—")
        else:
            wall, cpu = "earlier build", "—"
        planned = f"{t['estimate']:.0f} s" if t.get("estimate") is not None else "—"
        lines.append(f"| {name} | {res['profile']} | {wall} | {planned} | {_escape_cell(cpu)} | "
                     f"{res['seconds']:.0f} s | {res['device']} | {c['hold']} / {c['judged']} | {c['reported']} | "
                     f"{res['finished']} |")
    if AHEAD in times:  # the pool that trained the chapters' runs before them (book.main)
        t = times[AHEAD]
        wall = f"{run_seconds[AHEAD]:.0f} s" if AHEAD in run_seconds else f"{t['seconds']:.0f} s (earlier build)"
        planned = f"{t['estimate']:.0f} s" if t.get("estimate") is not None else "—"
        lines.append(f"| {AHEAD} | {t.get('profile', '—')} | {wall} | {planned} | {_escape_cell(t.get('cpu', '—'))} "
                     f"| — | — | — | — | {t.get('finished', '—')} |")
    v = versions()
    lines += ["", f"Python {v['python']}, torch {v['torch']}, diffusers {v['diffusers']}.", ""]
    (stage / "book").mkdir(parents=True, exist_ok=True)
    (stage / "book" / "status.md").write_text("\n".join(lines) + "\n")


def scorecard_rows(results: list[dict], executable: list[str]) -> list[dict]:
    """One row per finding of every claim of both papers (paper.CLAIMS), and one row for a claim no
    executed chapter tested: 'not run at this profile' or 'no chapter tests it yet'."""
    by_claim: dict[str, list] = {}
    for res in results:
        for f in res["findings"]:
            if f.get("claim"):
                by_claim.setdefault(f["claim"], []).append((res, f))
    rows = []
    for cid, claim in CLAIMS.items():
        found = by_claim.get(cid, [])
        for res, f in found:
            rows.append({"claim": cid, "chapter": res["chapter"], "text": claim.claim, "paper": show(f["paper"]),
                         "source": f"{claim.source} ({claim.provenance})", "measured": show(f["measured"]),
                         "finding": f["name"] + (f" ({f['variant']})" if f.get("variant") else ""),
                         "verdict": verdict(f["holds"]), "profile": res["profile"],
                         "seeds": ", ".join(f.get("seeds") or {}) or "—"})
        if not found:
            chapter = claim.chapter
            status = ("not run at this profile" if chapter in executable else "no chapter tests it yet")
            rows.append({"claim": cid, "chapter": chapter, "text": claim.claim, "paper": claim.value,
                         "source": f"{claim.source} ({claim.provenance})", "measured": "—", "finding": "—",
                         "verdict": status, "profile": "—", "seeds": "—"})
    return rows


def scorecard_page(stage: Path, root: Path = REPO_ROOT) -> None:
    """book/scorecard.md: every claim of both papers, one row per finding, with its verdict."""
    rows = scorecard_rows(read_all(), chapters(root))
    tally = {v: sum(r["verdict"] == v for r in rows) for v in ("holds", "fails", "reported")}
    lines = ["# Scorecard", "",
             "Every claim of both papers (Park et al. 2024, HC; Yang et al. 2024, SIM), one row per finding of "
             "the chapter that tests it, read from the chapters' results files when the book was built. "
             "*holds* / *fails*: judged by the rule in the chapter, at the profile and seeds in the row; "
             "*reported*: shown beside the paper's value, not judged; *not run at this profile*: its chapter "
             "has no result here.", "",
             f"**{tally['holds']} findings hold, {tally['fails']} fail, {tally['reported']} are reported.**", "",
             "| claim | chapter | the paper | paper's value (source) | measured | verdict | profile | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        link = f"{{doc}}`{r['chapter']}`" if r["chapter"] else "—"
        cells = [r["claim"], link, f"{r['text']}. *Measured:* {r['finding']}",
                 f"{r['paper']} ({r['source']})", r["measured"], f"**{r['verdict']}**", r["profile"], r["seeds"]]
        lines.append("| " + " | ".join(_escape_cell(c) for c in cells) + " |")
    (stage / "book").mkdir(parents=True, exist_ok=True)
    (stage / "book" / "scorecard.md").write_text("\n".join(lines) + "\n")


def _escape_cell(text: str) -> str:
    """A table cell of MyST Markdown: pipes and newlines would break the row; '<' would be HTML."""
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def build_html(stage: Path, root: Path = REPO_ROOT) -> Path:
    """Render the staged book with Jupyter Book 1 into _build/html (warnings are errors)."""
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(stage),
           "--path-output", str(root), "-W", "-n", "--keep-going"]
    subprocess.run(cmd, check=True)
    return root / "_build" / "html"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=profile_names(), help="sizes to run at (default: cpu)")
    p.add_argument("--chapters", default="", help="comma-separated chapter names to execute (default: all)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting in every chapter, e.g. --set train.seed=1")
    p.add_argument("--timeout", type=int, default=3 * 3600, help="seconds a long-running cell may take")
    p.add_argument("--no-html", action="store_true", help="execute chapters only")
    p.add_argument("--plan-only", action="store_true",
                   help="print the plan (runs stored and to train per chapter, estimated time) and exit")
    args = p.parse_args(argv)

    overrides = {}
    for item in args.set:
        if "=" not in item:
            p.error(f"--set {item!r}: expected KEY=VALUE, e.g. train.seed=1")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_setting(value)
    experiment(args.profile, overrides)  # refuse bad settings before any chapter starts
    names = chapters()
    wanted = [c.strip() for c in args.chapters.split(",") if c.strip()] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        p.error(f"--chapters: unknown chapter {unknown[0]!r}; allowed: {names}")

    if not args.no_html and not args.plan_only:  # the HTML book needs every chapter executed: check before compute
        missing = [n for n in names if n not in wanted and not list(STAGE.rglob(f"{n}.ipynb"))]
        if missing:
            p.error(f"chapter {missing[0]} was never executed; run it once (leave out --chapters), "
                    "or pass --no-html")

    from . import plan as planning  # torch and the models: only once the arguments are good

    todo = [n for n in names if n in wanted]
    ex = experiment(args.profile, overrides)
    the_plan = planning.plan(ex, todo, startup=planning.startup_seconds())
    print(the_plan.table(), flush=True)
    if args.plan_only:
        return 0
    results_dir().mkdir(parents=True, exist_ok=True)
    with own_children(), planning.Progress(the_plan):  # stopped, the command ends its kernels and workers with it
        seconds = {}
        if the_plan.work:
            print(f"== {planning.AHEAD} (planned {the_plan.ahead_seconds / 60:.1f} min)", flush=True)
            t0 = time.time()
            planning.train_ahead(the_plan, ex)
            ahead = time.time() - t0
            print(f"== {planning.AHEAD} done in {ahead:.0f} s", flush=True)
            record_times({planning.AHEAD: ahead}, args.profile, the_plan.cpu, {planning.AHEAD: the_plan.ahead_seconds})
        for name in todo:
            print(f"== {name} (profile {args.profile}, planned {the_plan.estimate(name) / 60:.1f} min)", flush=True)
            seconds[name] = execute(name, args.profile, overrides, STAGE, args.timeout)
            print(f"== {name} done in {seconds[name]:.0f} s", flush=True)
            record_times({name: seconds[name]}, args.profile, the_plan.cpu, {name: the_plan.estimate(name)})
        stage_pages(STAGE)
        status_page(STAGE, seconds)
        scorecard_page(STAGE)
        if not args.no_html:
            html = build_html(STAGE)
            print(f"The book is at {html / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
