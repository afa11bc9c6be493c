"""Sphinx extension: put the repository root first on sys.path so autodoc imports this checkout."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def setup(app):  # noqa: ANN001 - the Sphinx application
    return {"parallel_read_safe": True, "parallel_write_safe": True}
