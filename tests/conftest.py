"""Shared fixtures: every test writes into temporary stores, never into the repository's _build.
Markers (pyproject.toml): each test is marked by what it needs, so `make check` can run the unit tests
alone (`-m "not chapter and not browser and not slow"`)."""
import os

import pytest
import torch
from conceptspace import config

torch.set_num_threads(2)


CHAPTER_MODULES = {"test_book", "test_shutdown"}  # they execute chapters or the main command
SLOW_MODULES = {"test_reliability", "test_sweep", "test_phenomena", "test_celeba", "test_probe"}  # train or kill


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1]
        if module == "test_browser":
            item.add_marker(pytest.mark.browser)
        elif module in CHAPTER_MODULES or "tiny_book" in item.fixturenames:
            item.add_marker(pytest.mark.chapter)
        elif module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def session_store(tmp_path_factory):
    """One store for the whole session, so the tiny probe is trained once."""
    root = tmp_path_factory.mktemp("store")
    os.environ["CONCEPTSPACE_STORE"] = str(root)
    return root


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    path = tmp_path / "results"
    monkeypatch.setenv("CONCEPTSPACE_RESULTS", str(path))
    return path


@pytest.fixture
def tiny():
    """The tiny profile's experiment."""
    return config.experiment("tiny")


@pytest.fixture(scope="session")
def tiny_book(tmp_path_factory, session_store):
    """Every chapter executed on the tiny profile, and the HTML book built from them (once per session)."""
    from conceptspace import book

    out = tmp_path_factory.mktemp("book")
    stage = out / "stage"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONCEPTSPACE_RESULTS", str(out / "results"))
        seconds = {name: book.execute(name, "tiny", {}, stage, timeout=900) for name in book.chapters()}
        book.stage_pages(stage)
        book.status_page(stage, seconds)
        book.scorecard_page(stage)
        html = book.build_html(stage, out)
    return {"out": out, "stage": stage, "html": html, "seconds": seconds}
