"""What the library shows a reader while it works: progress that suits where it runs, short paths.

A progress bar redraws in place in a terminal or in a notebook someone is watching (JupyterLab,
Colab, VS Code). Run headless (papermill, nbconvert, `make book`, a CI log), every redraw would be
kept as its own line or output block, so there a loop prints one summary line when it ends.

How it decides, first match wins:

1. the environment variable ``DJANET_PROGRESS``: ``live`` or ``lines``;
2. inside a Jupyter kernel: live when the frontend running the cell can answer ``input()``.
   JupyterLab, Colab and VS Code can; nbclient (behind papermill, nbconvert and Jupyter Book)
   executes with ``allow_stdin=False``, because no one is there to type;
3. elsewhere: live when stderr is a terminal.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

PROGRESS_ENV = "DJANET_PROGRESS"


def live_progress() -> bool:
    """True where a redrawing bar is watched; False where one summary line per loop reads better."""
    choice = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if choice:
        if choice not in ("live", "lines"):
            raise ValueError(f"{PROGRESS_ENV}={choice!r}: expected 'live' (redrawing bars) or 'lines' "
                             "(one line per loop), or leave it unset to decide from where the code runs")
        return choice == "live"
    kernel = _jupyter_kernel()
    if kernel is not None:
        return _frontend_takes_input(kernel)
    return sys.stderr.isatty()


def progress(iterable: Iterable, desc: str, total: int | None = None, unit: str = "it",
             disable: bool = False, live: bool | None = None):
    """A tqdm bar over `iterable` where it is watched live, else a bar that prints one line at the end.

    Both support iteration and `set_postfix(**values)`; the summary line ends with the last postfix.
    `live` overrides the automatic choice (`live_progress`).
    """
    if disable or (live if live is not None else live_progress()):
        with warnings.catch_warnings():  # "IProgress not found": tqdm falls back to a text bar itself
            warnings.simplefilter("ignore")
            from tqdm.auto import tqdm
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, disable=disable)
    return SummaryLine(iterable, desc, total=total, unit=unit)


class SummaryLine:
    """Counts a loop like tqdm and prints ``desc: n/total unit in t s, postfix`` once, when it ends."""

    def __init__(self, iterable: Iterable, desc: str, total: int | None = None, unit: str = "it",
                 file=None) -> None:
        self.iterable, self.desc, self.unit, self.file = iterable, desc, unit, file
        self.total = total if total is not None else _length(iterable)
        self.n = 0
        self.postfix: dict[str, Any] = {}
        self._start = time.perf_counter()
        self._closed = False

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __len__(self) -> int:
        return self.total if self.total is not None else len(self.iterable)  # type: ignore[arg-type]

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.n += n

    def line(self) -> str:
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        text = f"{self.desc}: {count} {self.unit} in {time.perf_counter() - self._start:.1f} s"
        return text + "".join(f", {k}={v}" for k, v in self.postfix.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            print(self.line(), file=self.file or sys.stdout, flush=True)


def shown(path: str | os.PathLike, base: str | os.PathLike | None = None) -> str:
    """`path` relative to `base` (default: the working folder) when it lies inside it, else unchanged.

    What a reader sees of the files a run writes: ``runs/book/runs/sysu-tiny-djanet``, not the
    absolute folder of the machine that built the page.
    """
    p = Path(path).expanduser().resolve()
    root = Path(base if base is not None else os.getcwd()).expanduser().resolve()
    try:
        return str(p.relative_to(root)) or "."
    except ValueError:
        return str(path)


def _length(iterable: Iterable) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None


def _jupyter_kernel():
    """The running ipykernel, or None outside one (IPython is never imported here to find out)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None)


def _frontend_takes_input(kernel) -> bool:
    """Whether the request now executing allows stdin: a person at a notebook, not an executor."""
    get_parent = getattr(kernel, "get_parent", None)  # ipykernel >= 6
    parent = get_parent() if callable(get_parent) else getattr(kernel, "_parent_header", None)
    if isinstance(parent, dict) and "allow_stdin" in parent.get("content", {}):
        return bool(parent["content"]["allow_stdin"])
    return bool(getattr(kernel, "_allow_stdin", True))
