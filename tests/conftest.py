"""Shared fixtures: every test writes into temporary stores, never into the repository's _build."""
import os

import pytest
import torch

from conceptspace import config

torch.set_num_threads(2)


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
