"""The mutation score of the paper's core modules, from a finished `mutmut run` (`make mutation`).

mutmut writes, per mutated file, `mutants/<path>.meta` with the exit code of the tests run against
each mutant (1 or 3: a test failed, the mutant is killed; 0: every test passed, it survived).
Mutants listed in benchmarks/mutation_equivalent.json do not change what the function computes
(each with its reason) and leave the denominator.  Writes the score per module and in all to
`--out` (JSON, written then renamed) and prints the survivors that are not listed, one per line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

KILLED, SURVIVED = {1, 3}, {0}
HERE = Path(__file__).resolve().parent


def load(mutants: Path) -> dict[str, dict[str, int | None]]:
    """{module path: {mutant name: exit code}} for every .meta file under `mutants`."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        module = str(meta.relative_to(mutants))[: -len(".meta")]
        out[module] = json.loads(meta.read_text())["exit_code_by_key"]
    if not out:
        raise SystemExit(f"mutation_score: no *.py.meta under {mutants}; run `mutmut run` first")
    return out


def score(codes: dict[str, dict[str, int | None]], equivalent: dict[str, str]) -> dict:
    modules, unexplained = {}, []
    for module, by_key in codes.items():
        killed = sum(c in KILLED for c in by_key.values())
        survived = [k for k, c in by_key.items() if c in SURVIVED]
        listed = [k for k in survived if k in equivalent]
        other = {k: c for k, c in by_key.items() if c not in KILLED | SURVIVED}
        unexplained += [k for k in survived if k not in equivalent]
        counted = killed + len(survived) - len(listed)
        modules[module] = {"mutants": len(by_key), "killed": killed, "survived": len(survived),
                           "equivalent": len(listed), "other": len(other),
                           "score": killed / counted if counted else None}
    killed = sum(m["killed"] for m in modules.values())
    counted = killed + sum(m["survived"] - m["equivalent"] for m in modules.values())
    return {"modules": modules, "killed": killed, "non_equivalent": counted,
            "score": killed / counted if counted else None, "unexplained_survivors": sorted(unexplained)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    ap.add_argument("--equivalent", type=Path, default=HERE / "mutation_equivalent.json")
    ap.add_argument("--out", type=Path, default=Path("book/results/mutation/score.json"))
    args = ap.parse_args(argv)
    equivalent = json.loads(args.equivalent.read_text()) if args.equivalent.is_file() else {}
    result = score(load(args.mutants), equivalent)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.out)
    for module, m in result["modules"].items():
        shown = "n/a" if m["score"] is None else f"{100 * m['score']:.1f}%"
        print(f"{module:22s} {m['mutants']:5d} mutants  {m['killed']:5d} killed  {m['survived']:4d} survived "
              f"({m['equivalent']} equivalent)  {m['other']:3d} other  score {shown}")
    print(f"score {100 * result['score']:.1f}% of {result['non_equivalent']} non-equivalent mutants; "
          f"written to {args.out}")
    for name in result["unexplained_survivors"]:
        print(f"survived: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
