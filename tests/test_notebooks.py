"""The six notebooks: sources carry no outputs, and each runs headless with the tiny preset.

The execution tests run the notebooks in order with papermill, sharing one out_dir as the book
does, and check the files each one promises to leave there; notebook 03 also runs alone on the
RegDB and LLCM layouts, and notebook 06 also renders a finished study without training.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["01_data_preparation", "02_augmentation", "03_train", "04_evaluation", "05_modality_gap_umap",
             "06_ablation"]
OTHER_LAYOUTS = ("regdb", "llcm")
# Epochs of the RegDB and LLCM runs, whose training fit is asserted above chance: the tiny preset's
# 2 epochs (4 steps) fit their 7 and 10 training identities only by chance (13.6-15.0% against
# 14.3% on RegDB), 16 epochs (32 steps) at 1.6-2.3x chance, with either CPU scan.
OTHER_LAYOUT_EPOCHS = 16
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
    assert namespace["preset"] == "auto"          # gpu-demo on a CUDA GPU, cpu-demo elsewhere
    assert nb.cells[0].cell_type == "markdown" and "What you will learn" in nb.cells[0].source
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert markdown[-2].startswith("## Summary") and markdown[-1].startswith("## Exercises"), \
        f"{name}.ipynb should end with a '## Summary' and an '## Exercises' markdown cell"
    assert not re.search(r"!\[[^\]]*\]\(\s*(https?:)?//", "\n".join(markdown)), f"{name}.ipynb shows an image from another site"
    # glued values: each notebook's keys carry its number, so keys are unique across the book
    for key in _glue_keys(nb):
        assert key.startswith(f"nb{name[:2]}_"), f"{name}.ipynb pastes {key!r}; prefix its keys with nb{name[:2]}_"


_GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`([^`]+)`")


def _glue_keys(nb) -> set[str]:
    """The glued keys a notebook's markdown pastes ({glue:text}`key:.2f`, {glue}`key`)."""
    keys = {m.group(1).split("::")[-1] for c in nb.cells if c.cell_type == "markdown"
            for m in _GLUE_ROLE.finditer(c.source)}
    return {key.rsplit(":", 1)[0] if ":" in key else key for key in keys}   # without the format


def _glued(nb) -> set[str]:
    """The keys an executed notebook recorded with myst_nb.glue."""
    return {o.get("metadata", {}).get("scrapbook", {}).get("name") for c in nb.cells if c.cell_type == "code"
            for o in c.get("outputs", []) if any(k.startswith("application/papermill.record/") for k in o.get("data", {}))}


def _execute(name: str, tmp: Path, out: Path, **params) -> Path:
    """Run one notebook with its kernel in `tmp`.

    The kernel's folder is given to nbclient (`resources.metadata.path`, its `cwd` for the
    kernel), not through papermill's `cwd`, which changes this whole process's folder while the
    notebook runs: with notebooks running in several threads, a kernel would start in another
    thread's folder."""
    import papermill as pm

    target = tmp / f"{name}-{params.get('dataset', 'sysu')}.ipynb"
    pm.execute_notebook(str(ROOT / "notebooks" / f"{name}.ipynb"), str(target),
                        parameters={"preset": "tiny", "out_dir": str(out), **params},
                        progress_bar=False, kernel_name="python3", resources={"metadata": {"path": str(tmp)}})
    return target


def _one(pattern: str, base: Path) -> Path:
    found = sorted(base.glob(pattern))
    assert found, f"nothing matches {pattern} under {base}"
    return found[0]


@pytest.fixture(scope="module")
def notebook_runs(tmp_path_factory):
    """The six notebooks in order on each dataset (tiny preset), each dataset with its own
    out_dir, the way `make book` runs them.  Returns {dataset: (out, {notebook: executed})}.

    SYSU-MM01 also takes the opt-in extras: notebook 04 trains the AGW baseline and notebook 05
    DJANet on notebook 02's translated copy (the book leaves them out for time).  Notebook 06
    finds no study to render, so it trains its small one on the dataset.

    The datasets run side by side, in threads of this process: each kernel spends most of its
    time on one core (imports, JIT compiles, one-thread training), and kernels started from one
    process take their ports from one cache (jupyter_client's LocalPortCache), which kernels
    started from several processes would race for."""
    from concurrent.futures import ThreadPoolExecutor

    def in_order(dataset, tmp):
        out = tmp / "out"
        extra = {"06_ablation": {"results_dir": str(tmp / "no-study")}}
        if dataset == "sysu":
            extra.update({"04_evaluation": {"with_agw": True}, "05_modality_gap_umap": {"with_translation": True}})
        params = {} if dataset == "sysu" else {"dataset": dataset, "epochs": OTHER_LAYOUT_EPOCHS}
        return out, {name: _execute(name, tmp, out, **params, **extra.get(name, {})) for name in NOTEBOOKS}

    datasets = ("sysu", *OTHER_LAYOUTS)
    # the folders are made here, one after the other: pytest's temporary root is not thread-safe
    folders = [tmp_path_factory.mktemp("book" if dataset == "sysu" else dataset) for dataset in datasets]
    with ThreadPoolExecutor(len(datasets)) as pool:
        return dict(zip(datasets, pool.map(in_order, datasets, folders)))


@pytest.fixture(scope="module")
def book_run(notebook_runs):
    """The SYSU-MM01 run of `notebook_runs`: (out, {notebook: executed})."""
    return notebook_runs["sysu"]


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
    centred = pd.read_csv(gap / "share_centred.csv", index_col=0)   # the offset analysis, every feature set
    assert list(centred.index) == ["grey pixels", "untrained", "DJANet", "DJANet + translation"]
    assert centred[["r1_within", "r1_cross"]].stack().between(0, 1).all()
    close = pd.read_csv(gap / "share_first_10_ids.csv", index_col=0)   # the close-up of a few people
    assert list(close.index) == list(centred.index)
    assert close[["r1_cross", "chance_cross"]].stack().between(0, 1).all()
    assert (close["chance_cross"] >= 0.1 - 1e-9).all()   # at most ten people: chance at least one in ten
    # untrained, DJANet, DJANet on the translated copy of notebook 02 (AGW: with_agw=True only)
    assert sorted(p.name for p in gap.glob("umap_*.npy")) == ["umap_DJANet.npy", "umap_DJANet_+_translation.npy",
                                                              "umap_untrained.npy"]
    assert len(list(gap.glob("features_*.npz"))) == 3
    # DJANet (notebook 3), AGW (notebook 4's activation maps), DJANet on the translated copy
    assert len(list((out / "runs").glob("*/checkpoints/last.pt"))) == 3
    assert (out / "runs" / "sysu-tiny-agw" / "checkpoints" / "best.pt").is_file()
    assert (out / "runs" / "sysu-tiny-djanet-translated" / "checkpoints" / "best.pt").is_file()
    ablation = out / "ablation"   # notebook 06's own small study: agw and djanet x seeds 0 and 1
    assert sorted(p.name for p in (ablation / "runs").iterdir()) == ["agw-seed0", "agw-seed1", "djanet-seed0",
                                                                     "djanet-seed1"]
    assert all((ablation / f).is_file() for f in ("study.csv", "summary.csv", "provenance.json"))
    assert "These are not the full study's numbers" in _markdown_outputs(executed["06_ablation"])


@pytest.mark.slow
def test_every_value_a_page_pastes_is_glued_by_its_run(book_run):
    """A {glue:text} role whose key the run did not record renders nothing (and warns): every key
    pasted in a notebook's prose is glued by that notebook, whatever branch its run took."""
    _, executed = book_run
    for name, path in executed.items():
        nb = nbformat.read(path, as_version=4)
        missing = _glue_keys(nb) - _glued(nb)
        assert not missing, f"{name} pastes keys its run did not glue: {sorted(missing)}"


def _markdown_outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("data", {}).get("text/markdown", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ablation_notebook_renders_a_finished_study_and_trains_nothing(book_run, tmp_path):
    """What `make book` does after `make study`: the study's files and provenance, no training."""
    out, _ = book_run
    results = out / "ablation"   # the small study of the book run stands in for `make study`'s results
    before = sorted(p.stat().st_mtime_ns for p in results.rglob("*.pt"))
    page = _markdown_outputs(_execute("06_ablation", tmp_path, tmp_path / "out", results_dir=str(results)))
    assert "These are the numbers of the study in" in page and "not the full study" not in page
    assert "djanet.study.run_study (called from Python)" in page   # the provenance's command
    assert sorted(p.stat().st_mtime_ns for p in results.rglob("*.pt")) == before
    assert not (tmp_path / "out" / "ablation").exists()


def _glued_value(nb, key: str) -> str:
    """What an executed notebook glued under `key` (its plain-text form)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("metadata", {}).get("scrapbook", {}).get("name") == key:
                return output["data"]["application/papermill.record/text/plain"]
    raise AssertionError(f"the notebook glued no {key!r}")


def _shown_value(nb, frame_title: str, row: str) -> float:
    """A number the executed notebook displayed: `row` of the table whose text shows `frame_title`."""
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = output.get("data", {}).get("text/plain", "")
            if frame_title in text:
                line = next(ln for ln in text.splitlines() if ln.startswith(row))
                return float(line[len(row):].split()[0])
    raise AssertionError(f"no displayed table shows {frame_title!r}")


@pytest.fixture(scope="module")
def other_layout_runs(notebook_runs):
    """The RegDB and LLCM runs of `notebook_runs`."""
    return {dataset: notebook_runs[dataset] for dataset in OTHER_LAYOUTS}


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("dataset", OTHER_LAYOUTS)
def test_every_notebook_on_other_layouts_reports_that_datasets_protocol(other_layout_runs, dataset):
    """Values read from what each notebook wrote and displayed on RegDB and LLCM, not only files."""
    from djanet.data.readers import DIRECTIONS

    out, executed = other_layout_runs[dataset]
    data = out / "data" / dataset
    # 01: the data summary of this dataset, its own test directions, grey pixels at or above chance
    summary = json.loads((data / "summary.json").read_text())
    assert summary["dataset"] == dataset and summary["train_identities"] > 1
    protocols = pd.read_csv(data / "protocols.csv")
    assert list(protocols["direction"]) == list(DIRECTIONS[dataset])
    pixels = summary["pixel_rank1"]
    assert 0 < pixels["chance"] < 100 and all(0 <= v <= 100 for v in pixels.values())
    # 02: the translator ran on this dataset and translated at least every training infrared image
    manifest = json.loads((data / "translated.json").read_text())["manifest"]
    assert manifest["complete"] and manifest["dataset"] == dataset
    assert manifest["counts"]["infrared_translated"] >= summary["train_infrared"]   # test images too
    # 03: training identities fitted above chance
    trained = nbformat.read(executed["03_train"], as_version=4)
    train_ids = int(_glued_value(trained, "nb03_train_ids"))
    fitted = _shown_value(trained, "training ID accuracy (%)", "all training images")
    assert fitted > 100 / train_ids, f"training ID accuracy {fitted}% at chance ({100 / train_ids:.1f}%)"
    run = _one("runs/*/notebook_03.json", out).parent
    assert dataset in run.name and pd.read_csv(run / "history.csv")["val_r1"].between(0, 1).all()
    # 04: this dataset's protocol, both features, every metric in range and in order
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == dataset
    assert sorted(metrics["results"]) == sorted(f"{d}/{f}" for d in DIRECTIONS[dataset] for f in ("pool", "bn"))
    for res in metrics["results"].values():
        mean = res["mean"]
        assert res["dataset"] == dataset
        assert 0 <= mean["mINP"] <= mean["mAP"] <= 1 and 0 <= mean["r1"] <= mean["r5"] <= mean["r10"] <= mean["r20"] <= 1
    table = pd.read_csv(run / "results_table.csv", index_col=0)
    assert {f"{d}/bn" for d in DIRECTIONS[dataset]} <= set(table.index)
    # 05: the gap numbers of this dataset's features, rank-1s and chance levels as fractions
    gap = pd.read_csv(out / "gap" / dataset / "gap_table.csv", index_col=0)
    assert list(gap.index) == ["grey pixels", "untrained", "DJANet"]
    assert gap[["r1_within", "r1_cross", "chance_within", "chance_cross", "modality_acc"]].stack().between(0, 1).all()
    assert (gap["chance_cross"] > 0).all() and (gap["pos_ratio"] > 0).all()
    # 06: its small study ran on this dataset's first test direction
    study = pd.read_csv(out / "ablation" / "study.csv")
    assert set(study["protocol"]) == {f"{DIRECTIONS[dataset][0]}/bn"}
    assert sorted(set(study["variant"])) == ["agw", "djanet"] and study["R1"].between(0, 100).all()
    assert f"holds no study on {dataset}" in _markdown_outputs(executed["06_ablation"])


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


def test_html_check_finds_what_a_page_loads_from_outside(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "theme.css").write_text("@import url('https://fonts.example.org/a.css');")
    (tmp_path / "local.js").write_text("")
    (tmp_path / "index.html").write_text(
        '<script src="local.js"></script><script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//cdn.example.org/x.css"><img src="http://example.org/badge.svg">'
        '<a href="https://example.org/paper">a link may point anywhere</a>'
        '<p>r1 is {glue:text}`r1:.1f`</p><pre>{glue:text}`shown as code`</pre>'
        '<div class="output traceback highlight-ipythontb">Traceback</div>')
    problems = _check_html()(tmp_path)
    assert len(problems) == 6, problems
    assert sum("from outside the build" in p for p in problems) == 4
    assert any("raw {glue}" in p for p in problems) and any("error output" in p for p in problems)


def _stream_outputs(path: Path) -> list[dict]:
    nb = nbformat.read(path, as_version=4)
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"]


@pytest.mark.slow
def test_executed_notebooks_print_a_few_lines_and_no_machine_paths(book_run):
    """Headless, a loop prints one line when it ends (no redraws, no stderr), and paths are relative."""
    out, executed = book_run
    for name, path in executed.items():
        streams = _stream_outputs(path)
        text = "".join(o.text for o in streams)
        assert not [o for o in streams if o.name == "stderr"], f"{name}: stderr output {text[:500]}"
        assert "\r" not in text, f"{name}: a progress bar redrew itself: {text[:500]}"
        assert len(streams) <= 6 and text.count("\n") <= 40, f"{name}: {len(streams)} stream blocks"
        outputs = nbformat.read(path, as_version=4).cells
        assert str(out.parent) not in json.dumps([c.get("outputs", []) for c in outputs]), \
            f"{name} shows an absolute path of the machine that ran it"
    first = _stream_outputs(executed["01_data_preparation"])[0].text
    assert first == "dataset sysu, preset tiny, 2 training epochs on cpu, files under out\n"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_book_builds_without_warnings_and_links_resolve(book_run, tmp_path):
    """The HTML book from the executed notebooks: zero Sphinx warnings, every link and figure present.

    Built the way the README sets it up, with a virtual environment inside the checkout, whose
    packages' pages and notebooks are no book source; the notebook pages carry launch buttons.
    """
    import shutil
    import subprocess
    import sys

    _, executed = book_run
    src = tmp_path / "src"
    src.mkdir()
    for name in ("_config.yml", "_toc.yml", "pyproject.toml"):
        shutil.copy(ROOT / name, src / name)
    package = src / ".venv" / "lib" / "python3.11" / "site-packages" / "somepkg"
    package.mkdir(parents=True)
    (package / "README.md").write_text("# Some package\n\nSee [the guide](guide.md) and {ref}`nowhere`.\n")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Example")]),
                   package / "example.ipynb")
    shutil.copytree(ROOT / "book", src / "book", ignore=shutil.ignore_patterns("executed", "__pycache__"))
    (src / "djanet").symlink_to(ROOT / "djanet")  # autodoc documents this checkout
    (src / "book" / "executed").mkdir()
    for name, path in executed.items():
        shutil.copy(path, src / "book" / "executed" / f"{name}.ipynb")
    cli = "import sys; from jupyter_book.cli.main import main; sys.exit(main(prog_name='jupyter-book'))"
    proc = subprocess.run([sys.executable, "-c", cli, "build", str(src), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, timeout=540)
    log = proc.stdout + proc.stderr
    # Sphinx's warnings and errors; a Jupyter kernel's own log lines ("[IPKernelApp] WARNING | ..."), from
    # the pages the build executes, say nothing about the book
    warnings = [line for line in log.splitlines() if ("WARNING" in line or "ERROR" in line)
                and not re.match(r"\[\w+\] WARNING \|", line)]
    assert proc.returncode == 0 and not warnings, "\n".join(warnings) or log[-3000:]
    problems = _check_html()(src / "_build" / "html")
    assert not problems, "\n".join(problems)
    images = list((src / "_build" / "html" / "_images").iterdir())
    assert any(p.suffix == ".png" for p in images) and any(p.name == "djanet_overview.svg" for p in images)
    assert not list((src / "_build" / "html").rglob("somepkg")), "the .venv was read as book source"
    _check_launch_buttons(src / "_build" / "html", tmp_path)


def _check_launch_buttons(html: Path, tmp_path: Path) -> None:
    """Every notebook page: Colab and Binder buttons that open the source notebook, no install cell."""
    import importlib.util
    import re

    spec = importlib.util.spec_from_file_location("repository_url", ROOT / "book" / "_ext" / "repository_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    owner_name = module.repository_url(ROOT).removeprefix("https://github.com/")
    for name in NOTEBOOKS:
        page = (html / "book" / "executed" / f"{name}.html").read_text()
        launch = re.search(r'<div class="dropdown dropdown-launch-buttons">.*?</ul>', page, re.S)
        assert launch, f"{name}.html has no launch buttons"
        links = set(re.findall(r'href="([^"]+)"', launch.group(0)))
        assert links == {
            f"https://colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}.ipynb",
            f"https://mybinder.org/v2/gh/{owner_name}/main?urlpath=lab/tree/notebooks/{name}.ipynb"}, links
        # the launch button and the text link at the top of the page
        assert page.count(f"colab.research.google.com/github/{owner_name}/blob/main/notebooks/{name}.ipynb") == 2
        assert ">Open in Colab</a>" in page and "colab-badge" not in page
        external = re.findall(r'<(?:img|script)\b[^>]*\bsrc="((?:https?:)?//[^"]*)"', page) + \
            re.findall(r'<link\b[^>]*\bhref="((?:https?:)?//[^"]*)"', page)
        assert not external, f"{name}.html loads images, scripts or styles from other sites: {external}"
        assert "DJANET_SOURCE" not in page, f"{name}.html shows the install cell"
        assert str(tmp_path) not in page


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_first_cell_installs_djanet_into_a_fresh_kernel(tmp_path):
    """Notebook 01 in a new virtual environment without djanet, as on Colab: its first cell installs it.

    The environment reuses this interpreter's installed packages (torch, papermill, ipykernel...)
    through a path file, so nothing is downloaded; the path files *inside* that folder are not run,
    among them the hook of an editable djanet install, so djanet itself is not importable there
    (checked first). The install source is a copy of this checkout, and pip works offline.
    """
    import shutil
    import site
    import subprocess
    import sys

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANET_PROGRESS")}
    probe = [python, "-c", "import importlib.util as u; s = u.find_spec('djanet'); print(s and s.origin)"]
    found = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    if found != "None":
        pytest.skip(f"djanet is installed as plain files ({found}), which this environment cannot hide")

    source = tmp_path / "checkout"
    shutil.copytree(ROOT / "djanet", source / "djanet", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    env.update(DJANET_SOURCE=str(source), PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0")
    target = tmp_path / "01.ipynb"
    proc = subprocess.run([python, "-m", "papermill", str(ROOT / "notebooks" / "01_data_preparation.ipynb"),
                           str(target), "--cwd", str(tmp_path), "-k", "python3", "--no-progress-bar",
                           "-p", "preset", "tiny", "-p", "out_dir", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(target, as_version=4)
    install = next(c for c in nb.cells if c.cell_type == "code")
    assert "DJANET_SOURCE" in install.source and install.outputs == [], install.outputs  # quiet
    assert (tmp_path / "out" / "data" / "sysu" / "summary.json").is_file()
    found = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert found.startswith(purelib), f"djanet now imports from {found}, not from the new environment"
