"""The chapters' sources: prose and library calls. No function definitions, short code cells, no
judged finding whose verdict is a literal, and the same skeleton on every page."""
import ast

import jupytext
import pytest
from conceptspace import book

MAX_CELL_LINES = 25


def code_cells(name):
    nb = jupytext.read(book.source_of(f"book/{name}"))
    return [c for c in nb.cells if c.cell_type == "code"]


def markdown(name):
    return "\n".join(c.source for c in jupytext.read(book.source_of(f"book/{name}")).cells if c.cell_type == "markdown")


def literal_holds(tree):
    """Calls of results.judged / results.finding whose `holds` (6th argument or keyword) is a constant."""
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("judged", "finding"):
            holds = node.args[5] if len(node.args) > 5 else next(
                (k.value for k in node.keywords if k.arg == "holds"), None)
            if isinstance(holds, ast.Constant):
                bad.append(ast.unparse(node)[:80])
    return bad


def test_the_literal_check_catches_a_literal():
    assert literal_holds(ast.parse('results.judged("k", "HC1", "n", 1, "r", True)'))
    assert not literal_holds(ast.parse('results.judged("k", "HC1", "n", x, "r", x > 1)'))


@pytest.mark.parametrize("name", book.chapters())
def test_chapter_is_prose_and_library_calls(name):
    for cell in code_cells(name):
        tree = ast.parse(cell.source)
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
                                                            ast.ClassDef))]
        assert not defs, f"{name}: a definition in a chapter cell:\n{cell.source[:200]}"
        lines = [ln for ln in cell.source.splitlines() if ln.strip()]
        assert len(lines) <= MAX_CELL_LINES, f"{name}: a {len(lines)}-line code cell:\n{cell.source[:200]}"
        assert not literal_holds(tree), f"{name}: a judged finding with a literal verdict: {literal_holds(tree)}"
        assert "results.finding(" not in cell.source, f"{name}: use results.judged or results.reported"


@pytest.mark.parametrize("name", book.chapters())
def test_chapter_shows_deviations_and_the_paper_beside_the_book(name):
    source = "\n".join(c.source for c in code_cells(name))
    assert "results.deviations_admonition(" in source, f"{name}: no deviations admonition"
    assert "results.paper_vs_book(" in source, f"{name}: no paper-vs-book table"
    assert "## Paper vs this book" in markdown(name)
