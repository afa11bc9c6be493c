"""The README's results table, generated from the ablation study's files (book/results/ablation/).

    python book/_ext/readme_results.py           # rewrite README.md's results block (`make readme`)
    python book/_ext/readme_results.py --check   # exit status 1 when README.md's block differs

The block is what README.md holds between ``<!-- results start -->`` and ``<!-- results end -->``:
a table of the variants (mean ± std over training seeds and the paired difference to AGW with its
95% interval, formatted by `djanet.report`) and one sentence, read from ``provenance.json``, that
says which study made it. Nothing here is typed by hand, so the README cannot drift from the
results files; a test (tests/test_readme.py) runs the check.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RESULTS = ROOT / "book" / "results" / "ablation"
START, END = "<!-- results start -->", "<!-- results end -->"
MEANS = ("R1", "mAP", "cross_share")      # mean ± std over seeds
DIFFS = ("R1", "mAP")                      # paired difference to the baseline, 95% interval
WIDTH = 100                               # the sentence's line length in README.md
HEADERS = {"R1": "R1 (%)", "mAP": "mAP (%)", "cross_share": "cross_share"}
DATASETS = {"sysu": "SYSU-MM01", "regdb": "RegDB", "llcm": "LLCM"}
DIRECTIONS = {"i2v": "infrared → visible", "v2i": "visible → infrared", "v2t": "visible → thermal",
              "t2v": "thermal → visible"}


class BlockError(ValueError):
    """The README has no results block to rewrite (or a broken one)."""


def _report():
    """`djanet.report`, from this checkout when djanet is not installed."""
    try:
        from djanet import report
    except ModuleNotFoundError:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from djanet import report
    return report


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table; '|' inside a cell is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def results_table(summary) -> str:
    """Variant x metric table: seeds, mean ± std of MEANS, and the difference to the baseline for DIFFS."""
    report = _report()
    means = report.mean_std_table(summary, MEANS)
    diffs = report.difference_table(summary, DIFFS)
    header = ["variant", "seeds", *(HEADERS[m] for m in MEANS), *(f"{m} vs AGW [95% interval]" for m in DIFFS)]
    rows = []
    for label, r in means.iterrows():
        d = diffs.loc[label] if label in diffs.index else None
        rows.append([label, r["seeds"], *(r[m] for m in MEANS),
                     *("(baseline)" if d is None else d[m] for m in DIFFS)])
    return markdown_table(header, rows)


def source_sentence(prov: dict, study, where: str) -> str:
    """Which study the table comes from: preset, data, seeds, protocol and hardware, from provenance.json."""
    dataset = DATASETS.get(prov.get("dataset"), prov.get("dataset"))
    data = (f"{dataset} at `{prov['data_root']}`" if prov.get("data_root")
            else f"the synthetic {dataset} layout (data seed {prov.get('synthetic_seed')})")
    seeds = [str(s) for s in prov.get("seeds", [])]
    seeds = ", ".join(seeds[:-1]) + " and " + seeds[-1] if len(seeds) > 1 else "".join(seeds)
    config = prov.get("config") or {}
    weights = "ImageNet weights" if (config.get("model") or {}).get("pretrained") else "random weights"
    protocol = str(study["protocol"].iloc[0]) if "protocol" in study else ""
    direction, _, feature = protocol.partition("/")
    mode = (config.get("data") or {}).get("mode")
    test = (f"{mode}-search, " if prov.get("dataset") == "sysu" and mode else "") + \
        DIRECTIONS.get(direction, direction or "the first protocol direction")
    machine = prov.get("machine") or {}
    if machine.get("gpu"):
        hardware = f"one {machine['gpu']}"
    else:
        cores = f"{machine['cores']}-core " if machine.get("cores") else ""
        hardware = f"a {cores}{machine.get('cpu') or ''} CPU".replace("  ", " ")
    wall = prov.get("wall_s")
    took = f", in {wall / 60:.0f} minutes" if wall else ""
    commit = f", commit {str(prov['commit'])[:7]}" if prov.get("commit") else ""
    caveat = ("" if prov.get("data_root") else
              " These numbers describe synthetic people, not DJANet on the real datasets.")
    text = (f"The study in `{where}` (its `provenance.json` records the command{commit}): the "
            f"`{prov.get('preset')}` preset from {weights} on {data}, training seeds {seeds}, on "
            f"{hardware}{took}. Tested {test}, `{feature or 'bn'}` features, mean over {prov.get('eval_trials')} "
            "gallery trials; ± is the standard deviation over seeds, and an asterisk marks an "
            "interval that excludes zero." + caveat)
    return textwrap.fill(text, WIDTH, break_long_words=False, break_on_hyphens=False)


def render(results: Path = RESULTS) -> str:
    """The block's text (between the markers) for the study in `results`."""
    import pandas as pd

    results = Path(results)
    summary = pd.read_csv(results / "summary.csv")
    study = pd.read_csv(results / "study.csv")
    prov = json.loads((results / "provenance.json").read_text(encoding="utf-8"))
    try:
        where = results.resolve().relative_to(ROOT).as_posix() + "/"
    except ValueError:
        where = str(results)
    return results_table(summary) + "\n\n" + source_sentence(prov, study, where)


def split(text: str, name: str) -> tuple[str, str, str]:
    """(before and START, the block, END and after) of `text`; BlockError naming `name` without one."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start or text.count(START) > 1 or text.count(END) > 1:
        raise BlockError(f"{name} has no single '{START}' ... '{END}' block; put the two markers, "
                         "each on a line of its own, where the results table goes")
    head = start + len(START)
    return text[:head], text[head:end], text[end:]


def generated(readme: Path = README, results: Path = RESULTS) -> tuple[str, str]:
    """(README's text now, README's text with the block generated anew)."""
    text = readme.read_text(encoding="utf-8")
    head, _, tail = split(text, str(readme))
    return text, f"{head}\n{render(results)}\n{tail}"


def write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when the README's block differs")
    p.add_argument("--readme", type=Path, default=README)
    p.add_argument("--results", type=Path, default=RESULTS, help="folder with summary.csv, study.csv, provenance.json")
    a = p.parse_args(argv)
    try:
        old, new = generated(a.readme, a.results)
    except (BlockError, FileNotFoundError) as e:
        print(f"readme_results: error: {e}", file=sys.stderr)
        return 2
    if old == new:
        return 0
    if a.check:
        print(f"{a.readme}: the results block differs from {a.results}; run `python book/_ext/readme_results.py`",
              file=sys.stderr)
        return 1
    write_atomic(a.readme, new)
    print(f"{a.readme}: results block rewritten from {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
