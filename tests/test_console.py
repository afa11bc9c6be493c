"""Progress where it is watched, one line per loop where it is not; paths shown relative."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from djanet import console

ROOT = Path(__file__).resolve().parents[1]


class _Kernel:
    def __init__(self, allow_stdin):
        self.allow_stdin = allow_stdin

    def get_parent(self):
        return {"content": {"code": "", "allow_stdin": self.allow_stdin}}


def test_summary_line_prints_once_with_count_time_and_postfix(capsys):
    bar = console.progress(range(5), desc="epoch 1/2", unit="steps", live=False)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss="0.500", acc="0.25")
    assert seen == [0, 1, 2, 3, 4]
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.count("\n") == 1 and "\r" not in out.out
    assert out.out.startswith("epoch 1/2: 5/5 steps in ") and out.out.rstrip().endswith(", loss=0.500, acc=0.25")


def test_summary_line_of_an_interrupted_loop_says_how_far_it_got(capsys):
    with pytest.raises(RuntimeError):
        for i in console.progress(iter([1, 2, 3]), desc="features (visible)", total=3, live=False):
            if i == 3:
                raise RuntimeError
    assert capsys.readouterr().out.startswith("features (visible): 2/3 it in ")


def test_disabled_and_live_bars_are_tqdm(capsys):
    from tqdm.std import tqdm
    assert isinstance(console.progress(range(3), desc="x", disable=True), tqdm)
    assert list(console.progress(range(3), desc="x", disable=True)) == [0, 1, 2]
    assert isinstance(console.progress(range(3), desc="x", live=True), tqdm)
    assert capsys.readouterr().out == ""


def test_environment_variable_decides_first(monkeypatch):
    monkeypatch.setenv(console.PROGRESS_ENV, "live")
    assert console.live_progress() is True
    monkeypatch.setenv(console.PROGRESS_ENV, "Lines")
    assert console.live_progress() is False
    monkeypatch.setenv(console.PROGRESS_ENV, "sometimes")
    with pytest.raises(ValueError, match="DJANET_PROGRESS='sometimes': expected 'live'"):
        console.live_progress()


def test_outside_a_kernel_a_terminal_gets_live_bars(monkeypatch):
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(console, "_jupyter_kernel", lambda: None)
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))
    assert console.live_progress() is False          # a log file, a pipe, CI
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert console.live_progress() is True


def test_in_a_kernel_the_frontend_that_can_prompt_gets_live_bars(monkeypatch):
    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monkeypatch.setattr(console, "_jupyter_kernel", lambda: _Kernel(True))   # JupyterLab, Colab
    assert console.live_progress() is True
    monkeypatch.setattr(console, "_jupyter_kernel", lambda: _Kernel(False))  # nbclient: papermill, nbconvert
    assert console.live_progress() is False


def test_paths_are_shown_relative_to_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert console.shown(tmp_path / "runs" / "book" / "x.pt") == os.path.join("runs", "book", "x.pt")
    assert console.shown(tmp_path) == "."
    assert console.shown("/elsewhere/x.pt") == "/elsewhere/x.pt"
    assert console.shown(tmp_path / "a" / "b", base=tmp_path / "a") == "b"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_kernel_run_by_nbclient_prints_one_line_per_loop(tmp_path):
    """A real kernel driven the way papermill and `make book` drive it, then the way JupyterLab does."""
    import nbformat
    from jupyter_client.manager import start_new_kernel
    from nbclient import NotebookClient

    code = ("from djanet.console import live_progress, progress\n"
            "for epoch in range(3):\n"
            "    bar = progress(range(40), desc=f'epoch {epoch + 1}/3', unit='steps')\n"
            "    for _ in bar:\n"
            "        bar.set_postfix(loss='1.000')\n"
            "print('live:', live_progress())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop(console.PROGRESS_ENV, None)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    outputs = nb.cells[0].outputs
    assert all(o.output_type == "stream" and o.name == "stdout" for o in outputs), outputs
    text = "".join(o.text for o in outputs)
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3", "live"]
    assert lines[0].startswith("epoch 1/3: 40/40 steps in ") and lines[-1] == "live: False"

    # A frontend that answers input() (JupyterLab, Colab) asks with allow_stdin=True: live bars.
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    seen: list[str] = []
    try:
        reply = kc.execute_interactive("from djanet.console import live_progress; print(live_progress())",
                                       allow_stdin=True, timeout=60, stdin_hook=lambda msg: None,
                                       output_hook=lambda msg: seen.append(msg["content"].get("text", "")))
        assert reply["content"]["status"] == "ok"
        assert "".join(seen).strip() == "True"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
