"""The five notebooks: sources carry no outputs, and each runs headless with the tiny preset.

The execution tests run the notebooks in order with papermill, sharing one out_dir as the book
does, and check the files each one promises to leave there; notebook 03 also runs alone on the
RegDB and LLCM layouts.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data_preparation", "02_augmentation", "03_train", "04_evaluation", "05_modality_gap_umap"]
REQUIRED_PARAMETERS = ("dataset", "data_root", "preset", "epochs", "device", "seed", "out_dir")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_source_has_no_outputs_and_one_parameters_cell(name):
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}.ipynb cell {i} has outputs; clear them before committing"
            assert cell.execution_count is None, f"{name}.ipynb cell {i} has an execution count"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}.ipynb needs exactly one cell tagged 'parameters'"
    namespace: dict = {}
    exec(tagged[0].source, namespace)  # plain values only
    for key in REQUIRED_PARAMETERS:
        assert key in namespace, f"{name}.ipynb parameters lack {key!r}"
    assert namespace["data_root"] is None and namespace["device"] == "auto"
    assert nb.cells[0].cell_type == "markdown" and "What you will learn" in nb.cells[0].source


def _execute(name: str, tmp: Path, out: Path, **params) -> Path:
    import papermill as pm

    target = tmp / f"{name}-{params.get('dataset', 'sysu')}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(target), cwd=str(tmp),
                        parameters={"preset": "tiny", "out_dir": str(out), **params},
                        progress_bar=False, kernel_name="python3")
    return target


def _one(pattern: str, base: Path) -> Path:
    found = sorted(base.glob(pattern))
    assert found, f"nothing matches {pattern} under {base}"
    return found[0]


@pytest.fixture(scope="module")
def book_run(tmp_path_factory):
    """Run the five notebooks in order into one out_dir (the way `make book` does)."""
    tmp = tmp_path_factory.mktemp("book")
    out = tmp / "out"
    executed = {name: _execute(name, tmp, out) for name in NOTEBOOKS}
    return out, executed


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_notebooks_run_in_order_and_leave_their_files(book_run):
    out, executed = book_run
    for path in executed.values():
        nb = nbformat.read(path, as_version=4)
        assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    data = out / "data" / "sysu"
    for f in ("summary.json", "train_stats.csv", "protocols.csv", "pixel_gap.csv", "translated.json"):
        assert (data / f).is_file(), f"missing {data / f}"
    _one("translated/sysu-tiny-*steps/translation.json", out)
    run = _one("runs/*/notebook_03.json", out).parent
    for f in ("config.json", "history.csv", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.json",
              "features_i2v.npz", "results_table.csv", "per_camera.csv", "indoor/metrics.json"):
        assert (run / f).is_file(), f"missing {run / f}"
    gap = out / "gap" / "sysu"
    assert (gap / "gap_table.csv").is_file() and (gap / "retrieval_table.csv").is_file()
    # untrained, AGW baseline, DJANet, DJANet on the translated copy of notebook 02
    assert len(list(gap.glob("umap_*.npy"))) == 4 and len(list(gap.glob("features_*.npz"))) == 4
    assert len(list((out / "runs").glob("*/checkpoints/last.pt"))) == 3
    assert (out / "runs" / "sysu-tiny-djanet-translated" / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("dataset", ["regdb", "llcm"])
def test_training_notebook_on_other_layouts(tmp_path, dataset):
    out = tmp_path / "out"
    _execute("03_train", tmp_path, out, dataset=dataset)
    run = _one("runs/*/notebook_03.json", out).parent
    assert dataset in run.name
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "history.csv").is_file()


def _check_html():
    import importlib.util

    spec = importlib.util.spec_from_file_location("check_html", ROOT / "book" / "_ext" / "check_html.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.check_html


def test_html_check_finds_broken_links_anchors_and_images(tmp_path):
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    (tmp_path / "page.html").write_text('<h1 id="top">x</h1>')
    (tmp_path / "index.html").write_text(
        '<a href="page.html#top">ok</a><a href="page.html#gone">bad anchor</a>'
        '<a href="missing.html">bad link</a><a href="https://example.org/x">external</a>'
        '<img src="img.png"><img src="nope.png"><a href="#here" id="here">self</a>')
    problems = _check_html()(tmp_path)
    assert len(problems) == 3, problems
    assert any("gone" in p for p in problems) and any("missing.html" in p for p in problems)
    assert any("nope.png" in p for p in problems)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_book_builds_without_warnings_and_links_resolve(book_run, tmp_path):
    """The HTML book from the executed notebooks: zero Sphinx warnings, every link and figure present."""
    import shutil
    import subprocess
    import sys

    _, executed = book_run
    src = tmp_path / "src"
    src.mkdir()
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("executed", "__pycache__"))
    (src / "djanet").symlink_to(ROOT / "djanet")  # autodoc documents this checkout
    (src / "book" / "executed").mkdir()
    for name, path in executed.items():
        shutil.copy(path, src / "book" / "executed" / f"{name}.ipynb")
    cli = "import sys; from jupyter_book.cli.main import main; sys.exit(main(prog_name='jupyter-book'))"
    proc = subprocess.run([sys.executable, "-c", cli, "build", str(src), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=540)
    log = proc.stdout + proc.stderr
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    problems = _check_html()(src / "_build" / "html")
    assert not problems, "\n".join(problems)
    images = list((src / "_build" / "html" / "_images").iterdir())
    assert any(p.suffix == ".png" for p in images) and any(p.name == "djanet_overview.svg" for p in images)
