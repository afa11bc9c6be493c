"""The notebooks' one setup call, and the book's address declared once in pyproject.toml."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from djanet import book

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _repository_url_module():
    spec = importlib.util.spec_from_file_location("repository_url", ROOT / "book" / "_ext" / "repository_url.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_setup_turns_the_parameters_into_a_config_and_an_output_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "copy").mkdir()
    cfg, out = book.setup(dataset="regdb", preset="tiny", device="cpu", seed=3, out_dir="runs/book", epochs=1,
                          translated_root="copy")
    assert out == tmp_path / "runs" / "book" and out.is_dir()
    assert cfg.preset == "tiny" and cfg.data.dataset == "regdb" and cfg.seed == 3 and cfg.device == "cpu"
    assert cfg.optim.epochs == 1 and cfg.data.data_root is None
    assert cfg.data.cache_dir == str(out / "cache") and cfg.out_dir == str(out / "runs")
    assert cfg.data.translated_root == str(tmp_path / "copy")
    line = capsys.readouterr().out
    assert line == "dataset regdb, preset tiny, 1 training epochs on cpu, files under runs/book\n"


def test_setup_keeps_the_presets_epochs_and_rejects_bad_values_before_writing(tmp_path):
    cfg, _ = book.setup(preset="tiny", device="cpu", out_dir=tmp_path / "a")
    assert cfg.optim.epochs == 2 and cfg.data.translated_root is None
    with pytest.raises(KeyError, match="unknown preset 'huge'"):
        book.setup(preset="huge", out_dir=tmp_path / "b")
    with pytest.raises(ValueError, match="data.dataset='market'"):
        book.setup(dataset="market", preset="tiny", out_dir=tmp_path / "c")
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_every_copy_of_the_repository_address_agrees_with_pyproject():
    mod = _repository_url_module()
    assert mod.stamp(ROOT, check=True) == [], "run `python book/_ext/repository_url.py`"
    url = mod.repository_url(ROOT)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        # a plain text link, not a badge image: the book's pages load nothing from another site
        assert nb.cells[0].source.splitlines()[0] == mod.colab_link(url, "main", f"notebooks/{path.name}")
        assert "![" not in nb.cells[0].source
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert mod.INSTALL_TAG in first_code.metadata.tags and "remove-cell" in first_code.metadata.tags
        assert f'"git+{url}@main"' in first_code.source


def test_stamping_follows_a_new_address(tmp_path):
    mod = _repository_url_module()
    for name in ("pyproject.toml", "_config.yml"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=shutil.ignore_patterns("runs", ".*"))
    first = tmp_path / "notebooks" / NOTEBOOKS[0].name   # an older copy, with the badge image on its first line
    old = json.loads(first.read_text())
    old["cells"][0]["source"][0] = ("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                                    "(https://colab.research.google.com/github/x/y/blob/main/notebooks/a.ipynb)\n")
    first.write_text(json.dumps(old, indent=1, ensure_ascii=False) + "\n")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(mod.repository_url(ROOT), "https://github.com/someone/djanet"))
    assert len(mod.stamp(tmp_path)) == len(NOTEBOOKS) + 1
    assert mod.stamp(tmp_path, check=True) == []
    assert "url: https://github.com/someone/djanet\n" in (tmp_path / "_config.yml").read_text()
    nb = json.loads((tmp_path / "notebooks" / NOTEBOOKS[0].name).read_text())
    assert nb["cells"][0]["source"][0] == mod.colab_link("https://github.com/someone/djanet", "main",
                                                         f"notebooks/{NOTEBOOKS[0].name}") + "\n"
    assert "colab-badge" not in json.dumps(nb["cells"][0])
    assert len(nb["cells"]) == len(nbformat.read(NOTEBOOKS[0], as_version=4).cells)  # replaced, not added
    pyproject.write_text(pyproject.read_text().replace("https://github.com/someone/djanet", "TODO"))
    with pytest.raises(ValueError, match=r"Repository = 'TODO'; expected https://github.com/OWNER/NAME"):
        mod.stamp(tmp_path)


def test_install_cell_does_nothing_where_djanet_is_importable(capsys):
    mod = _repository_url_module()
    namespace: dict = {}
    exec(mod.install_cell("https://github.com/someone/djanet", "main"), namespace)  # djanet is importable here
    assert "pip" not in namespace and capsys.readouterr() == ("", "")
