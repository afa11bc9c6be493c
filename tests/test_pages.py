"""The pages as a reader meets them: measured figures come from code, the prose teaches the subject.

A measured number typed into prose goes stale the first time a run differs, so the pages state
measurements through glue roles, generated blocks and tables rendered from result files; what
stays typed is what is not measured here (the paper's scores, dataset sizes, hyperparameters).
"""
from __future__ import annotations

import json
import re

import pytest

from pages import ROOT, decimals, pages, prose, words

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = ["intro", "method", "evaluation", "usage", "reproduce", "recipe"]
# Phrases about how the project was made rather than about its subject.
MAKING_OF = ["previous machine", "this machine", "targets ask", "the target", "we aim", "not measured yet",
             "previous session", "this session", "a later session", "was lent", "we set ourselves",
             "this project's cpu", "this project's 2-core"]


def test_prose_counter_leaves_out_code_maths_roles_and_generated_blocks():
    text = ("---\nkernelspec:\n  name: python3\n---\n"
            "Typed 1.5 here.\n\n```python\nx = 2.5\n```\n\n"
            "```{code-cell} ipython3\ny = 3.5\n```\n\n"
            "```{note}\n:class: 4.5\nKept 5.5 inside a directive.\n```\n\n"
            "Glued {glue:text}`r1:.1f`, inline `6.5`, maths $7.5$ and\n$$\n8.5\n$$\n"
            "<!-- results start -->\n| 9.5 |\n<!-- results end -->\n"
            "A [link](https://example.org/v1.5) and 10.25x.\n")
    assert decimals(text) == ["1.5", "5.5", "10.25"]
    assert "x = 2.5" not in prose(text) and "Kept" in prose(text)


def test_pages_type_few_measured_numbers():
    found = {name: decimals(text) for name, text in pages().items()}
    total = sum(len(v) for v in found.values())
    detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in found.items() if v)
    assert total <= 60, f"{total} decimal numbers typed in the prose (at most 60): {detail}"


def test_understanding_djanet_is_short_and_runs_code():
    text = (ROOT / "book" / "method.md").read_text(encoding="utf-8")
    assert words(text) <= 5000, f"book/method.md has {words(text)} words of prose (at most 5000)"
    assert text.count("```{code-cell}") >= 3, "the method chapter needs its runnable cells"
    assert re.search(r"execution_mode:\s*force", text), "the method chapter must execute at build time"
    assert words((ROOT / "book" / "recipe.md").read_text(encoding="utf-8")) <= 1500
    assert (ROOT / "book" / "figures" / "align_module.svg").is_file()
    assert "align_module.svg" in text


def test_readme_is_a_landing_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines (at most 150)"


@pytest.mark.parametrize("phrase", MAKING_OF)
def test_no_page_or_docstring_talks_about_the_making(phrase):
    texts = dict(pages())
    for path in sorted((ROOT / "djanet").rglob("*.py")):
        texts[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    hits = [name for name, text in texts.items() if phrase in text.lower()]
    assert not hits, f"{phrase!r} in {', '.join(hits)}"


def test_every_chapter_and_notebook_ends_with_a_summary_and_exercises():
    for chapter in CHAPTERS:
        text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
        assert re.search(r"^## Summary", text, re.M), f"book/{chapter}.md has no Summary section"
        assert re.search(r"^## Exercises", text, re.M), f"book/{chapter}.md has no Exercises section"
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
        assert any(re.search(r"^## Summary", m, re.M) for m in markdown), f"{path.name} has no Summary"
        assert re.search(r"^## Exercises", markdown[-1], re.M), f"{path.name} does not end with Exercises"


def test_glossary_defines_every_term_the_pages_link():
    glossary = (ROOT / "book" / "glossary.md").read_text(encoding="utf-8")
    block = glossary.split("```{glossary}", 1)[1].split("\n```", 1)[0]
    defined = {line.strip() for line in block.splitlines() if line and not line.startswith(" ")}
    linked = set()
    for text in pages().values():
        for role in re.findall(r"\{term\}`([^`]+)`", text):
            target = re.search(r"<([^>]+)>$", role)
            linked.add((target.group(1) if target else role).strip())
    assert linked, "no page links the glossary"
    missing = {t for t in linked if t not in defined and t.lower() not in {d.lower() for d in defined}}
    assert not missing, f"linked but not in the glossary: {sorted(missing)}"
    assert {"mAP", "CMC", "mINP", "BNNeck", "GeM pooling", "AGW", "Modality gap", "cross_share",
            "k-reciprocal re-ranking"} <= defined


def test_evaluation_chapter_comes_before_the_notebook_that_uses_it():
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    assert toc.index("book/evaluation") < toc.index("book/executed/04_evaluation")
    for name in ("glossary", "recipe", "usage"):
        assert f"book/{name}" in toc


_CELL = re.compile(r"^```\{code-cell\}[^\n]*\n(.*?)^```", re.S | re.M)


@pytest.mark.parametrize("chapter", ["method", "evaluation"])
def test_the_chapters_code_cells_run_in_order(chapter, monkeypatch):
    """Each chapter's cells, run top to bottom in one namespace from the chapter's folder, as the book's
    build executes them: a cell that reuses a name an earlier cell changed fails here, not in the book."""
    import matplotlib
    matplotlib.use("Agg")
    text = (ROOT / "book" / f"{chapter}.md").read_text(encoding="utf-8")
    cells = [re.sub(r"^:\w+:.*\n", "", body, flags=re.M) for body in _CELL.findall(text)]
    assert cells, f"book/{chapter}.md has no code cells"
    monkeypatch.chdir(ROOT / "book")
    namespace: dict = {}
    for i, source in enumerate(cells):
        try:
            exec(compile(source, f"book/{chapter}.md cell {i}", "exec"), namespace)
        except Exception as e:  # noqa: BLE001 - name the failing cell
            pytest.fail(f"book/{chapter}.md code cell {i} fails: {type(e).__name__}: {e}")
