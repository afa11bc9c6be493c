"""The README is a landing page whose results table is generated from the study's files."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_LINES = 150


def _generator():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "book" / "_ext" / "readme_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_results_block_is_the_generated_one():
    gen = _generator()
    text = README.read_text(encoding="utf-8")
    _, block, _ = gen.split(text, "README.md")
    assert block.strip() == gen.render().strip(), "run `python book/_ext/readme_results.py` (`make readme`)"
    assert gen.main(["--check"]) == 0


def test_the_table_has_a_row_per_variant_with_its_seeds_and_interval():
    import pandas as pd

    gen = _generator()
    summary = pd.read_csv(gen.RESULTS / "summary.csv")
    lines = gen.results_table(summary).splitlines()
    labels = list(dict.fromkeys(summary["label"]))
    assert len(lines) == 2 + len(labels)
    for label, line in zip(labels, lines[2:]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        seeds = int(summary.loc[summary["label"] == label, "n"].max())
        assert cells[0] == label and cells[1] == str(seeds)
        assert all("±" in c for c in cells[2:2 + len(gen.MEANS)]) or seeds < 2
        diffs = cells[2 + len(gen.MEANS):]
        assert diffs == ["(baseline)"] * len(gen.DIFFS) if label == labels[0] else all("[" in c for c in diffs)


def test_the_readme_is_a_landing_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_LINES, f"README.md has {len(lines)} lines; keep it at most {MAX_LINES}"


def test_licence_and_citation_metadata_exist():
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License") and "The DJANet book authors" in licence
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "title", "authors", "message"):
        assert cff.get(key), f"CITATION.cff lacks {key}"
    assert all(a.get("name") or a.get("family-names") for a in cff["authors"])


def test_the_generator_refuses_a_readme_without_markers(tmp_path, capsys):
    gen = _generator()
    readme = tmp_path / "README.md"
    readme.write_text("# A README\n\nNo results block here.\n", encoding="utf-8")
    assert gen.main(["--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(readme) in err[0] and gen.START in err[0]
    assert readme.read_text(encoding="utf-8") == "# A README\n\nNo results block here.\n"
    with pytest.raises(gen.BlockError, match="README.md"):
        gen.split("text\n" + gen.END + "\n" + gen.START + "\n", "README.md")


def test_the_generator_rewrites_only_the_block(tmp_path):
    gen = _generator()
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{gen.START}\nstale\n{gen.END}\nafter\n", encoding="utf-8")
    assert gen.main(["--readme", str(readme), "--check"]) == 1
    assert "stale" in readme.read_text(encoding="utf-8")
    assert gen.main(["--readme", str(readme)]) == 0
    text = readme.read_text(encoding="utf-8")
    assert text.startswith(f"before\n{gen.START}\n") and text.endswith(f"{gen.END}\nafter\n")
    assert "stale" not in text and gen.main(["--readme", str(readme), "--check"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]   # no temporary file left behind
