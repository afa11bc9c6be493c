"""Shared fixtures: tiny synthetic datasets, one per layout, generated once per test session."""
from __future__ import annotations

import pytest

from djanet.data.synthetic import generate

# Small enough to generate in about a second each; every layout keeps its real structure.
TINY = {"sysu": dict(ids=12, per_cam=2), "regdb": dict(ids=8, per_cam=3),
        "llcm": dict(ids=9, per_cam=2)}
TINY_SIZE = (64, 32)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """Function layout -> root of a tiny synthetic dataset in that layout (cached per session)."""
    roots = {}

    def make(layout: str):
        if layout not in roots:
            out = tmp_path_factory.mktemp("synthetic") / layout
            roots[layout] = generate(layout, out, seed=0, size=TINY_SIZE, **TINY[layout])
        return roots[layout]

    return make


@pytest.fixture(scope="session")
def sysu_root(synthetic_root):
    return synthetic_root("sysu")


@pytest.fixture(scope="session")
def regdb_root(synthetic_root):
    return synthetic_root("regdb")


@pytest.fixture(scope="session")
def llcm_root(synthetic_root):
    return synthetic_root("llcm")
