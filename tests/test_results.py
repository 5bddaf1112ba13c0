"""Findings: judged vs reported, the paper's numbers from one register, deviations from the paper's own
setup (not the library's defaults), and the scorecard built from results files."""
import numpy as np
import pytest
from conceptspace import book, config, paper, results


def test_a_judged_finding_needs_a_computed_bool_and_a_reported_one_never_holds():
    with pytest.raises(TypeError, match="holds must be a bool"):
        results.judged("rho", "HC2", "ρ", 0.9, "ρ ≥ 0.9", None)
    with pytest.raises(TypeError, match="holds must be a bool"):
        results.judged("rho", "HC2", "ρ", 0.9, "ρ ≥ 0.9", "yes")
    f = results.judged("rho", "HC2", "ρ", np.float64(0.95), "ρ ≥ 0.9", np.float64(0.95) >= 0.9, seeds={0: 1.0})
    assert f.holds is True and f.paper == paper.CLAIMS["HC2"].value and f.seeds == {"0": 1.0}
    r = results.reported("range", "HC6", "turn range", "1–2k")
    assert r.holds is None and r.rule == "reported"
    with pytest.raises(KeyError, match="HC99"):
        results.reported("x", "HC99", "x", 1)


def test_counts_never_count_a_reported_finding_as_holding():
    fs = [results.judged("a", "", "a", 1, "r", True is not False),
          results.judged("b", "", "b", 0, "r", 0 > 1),
          results.reported("c", "", "c", 3)]
    assert results.count(fs) == {"judged": 2, "hold": 1, "fail": 1, "reported": 1}
    assert results.summary_line(fs) == "1 of 2 judged findings hold; 1 reported (not judged)"
    table = results.findings_table(fs)
    assert list(table.verdict) == ["holds", "fails", "reported"]


def test_paper_vs_book_warns_where_step_counts_come_from_another_recipe():
    ex = config.experiment("cpu")
    fs = [results.judged("t", "HC2", "T color", 1200, "r", 1200 < 2000, in_steps=True),
          results.judged("rho", "HC2", "ρ", 0.9, "r", 0.9 >= 0.9)]
    table = results.paper_vs_book(fs, ex)
    assert "compare order and shape" in table.note[0] and table.note[1] == ""
    assert table.source[0].startswith("Park et al. 2024, §4.1")


def test_deviations_are_against_the_papers_setup_not_library_defaults():
    gpu = config.experiment("gpu")
    assert paper.deviations(gpu, ("model", "train")) == []  # the paper's recipe at the paper's scale
    diffusers = {r["setting"]: r for r in paper.deviations(config.experiment("gpu", {"model.recipe": "diffusers"}))}
    assert diffusers["model.recipe"]["this book"] == "diffusers" and diffusers["train.timesteps"]["paper"] == "none"
    assert diffusers["train.grad_clip"]["paper"] == "0.01" and diffusers["train.ema_decay"]["this book"] == "0.995"
    assert diffusers["model.dropout"]["this book"] == "0"
    cpu = {r["setting"]: r for r in paper.deviations(config.experiment("cpu"), ("data", "sweep"))}
    assert cpu["data.resolution"]["paper"] == "32" and "sweep.seeds" in cpu
    assert "data.delta_color" not in cpu  # a chapter's own experiment, not a deviation


def test_scorecard_lists_every_claim_with_its_verdict():
    res = [{"chapter": "02_concept_signal", "profile": "cpu", "findings": [
        {"key": "rho", "claim": "HC2", "name": "ρ", "measured": 0.5, "paper": "p", "rule": "r", "holds": False,
         "seeds": {"0": 0.4, "1": 0.6}, "variant": "", "in_steps": False},
        {"key": "rr", "claim": "HC7", "name": "R²", "measured": 0.7, "paper": "p", "rule": "reported",
         "holds": None, "seeds": None, "variant": "", "in_steps": False}]}]
    rows = book.scorecard_rows(res, ["01_concept_space", "02_concept_signal", "03_sudden_turns"])
    by = {r["claim"]: r for r in rows}
    assert set(by) == set(paper.CLAIMS)
    assert by["HC2"]["verdict"] == "fails" and by["HC2"]["seeds"] == "0, 1"
    assert by["HC7"]["verdict"] == "reported"
    assert by["HC5"]["verdict"] == "not run at this profile"   # chapter 3 exists but left no result
    assert by["HC16"]["verdict"] == "no chapter tests it yet"


def test_every_claim_names_a_source_and_a_known_provenance():
    for c in paper.CLAIMS.values():
        assert c.source.startswith(("Park et al. 2024", "Yang et al. 2024")), c.id
        assert set(c.provenance.replace(" (secondary summaries)", "").split(", ")) <= {
            "paper", "code", "fig", "computed", "inferred"}, c.id


def test_never_reads_as_never_and_unmeasured_as_missing():
    f = results.reported("t", "HC6", "a step", float("inf"), seeds={0: float("nan"), 1: 1234.0})
    assert f.measured == "never" and f.seeds == {"0": None, "1": 1234.0}
    assert [results.step_text(v) for v in (float("inf"), float("nan"), None, 1234.0)] == ["never", "—", "—", "1,234"]
