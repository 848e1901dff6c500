"""``python -m bench.tight_gaps RESULTS.json [...]``: the tight families' gaps in assignment-cost terms.

Every job of a ``tight`` instance is required and worth the same ``VALUE_USD_PER_HOUR``, so a
plan that places all n of them has objective n · value − cost, where cost is the
generalized-assignment objective the published benchmarks report. The suite's gaps are relative
to the objective, which includes the constant n · value and so reads tiny; this table reports
(cost − best bound's cost) / best bound's cost, against the best bound any solver proved in the
run, and against the best plan of the run, per solver and instance, with the mean per solver.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from placement.generate.tight import TIGHT_FAMILIES, VALUE_USD_PER_HOUR

SOLVERS = ("ours", "cpsat", "highs")


def _cost(jobs: int, objective: float | None) -> float | None:
    return None if objective is None else jobs * VALUE_USD_PER_HOUR - objective


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def rows(doc: dict) -> list[dict]:
    """Per tight instance: each solver's cost, gap to the best bound and to the best plan."""
    out = []
    for inst in doc["instances"]:
        if inst["family"] not in TIGHT_FAMILIES or inst.get("best_bound") is None:
            continue
        n = inst["jobs"]
        bound_cost = _cost(n, inst["best_bound"])
        costs = {}
        for s in SOLVERS:
            r = inst["results"].get(s, {})
            complete = r.get("valid") and r.get("jobs_placed") == n
            costs[s] = _cost(n, r.get("objective")) if complete else None
        best = min((c for c in costs.values() if c is not None), default=None)
        out.append({"instance": f"{inst['family']} {inst['sites']}x{inst['jobs']}", "bound_cost": bound_cost,
                    **{f"{s}_cost": costs[s] for s in SOLVERS},
                    **{f"{s}_gap": None if costs[s] is None else (costs[s] - bound_cost) / bound_cost for s in SOLVERS},
                    **{f"{s}_vs_best": None if costs[s] is None or not best else (costs[s] - best) / best
                       for s in SOLVERS}})
    return out


def markdown(doc: dict) -> str:
    table = rows(doc)
    head = ("| instance (sites × jobs) | best bound cost | " + " | ".join(f"{s} cost (gap)" for s in SOLVERS)
            + " | ours vs best plan |\n|---|--:|" + "--:|" * (len(SOLVERS) + 1) + "\n")
    body = "".join(
        f"| {r['instance']} | {r['bound_cost']:,.0f} | "
        + " | ".join("no complete plan" if r[f"{s}_cost"] is None else f"{r[f'{s}_cost']:,.0f} ({_pct(r[f'{s}_gap'])})"
                     for s in SOLVERS)
        + f" | {_pct(r['ours_vs_best'])} |\n" for r in table)
    means = []
    for s in SOLVERS:
        gaps = [r[f"{s}_gap"] for r in table if r[f"{s}_gap"] is not None]
        missing = sum(r[f"{s}_gap"] is None for r in table)
        means.append(f"{s} {_pct(sum(gaps) / len(gaps) if gaps else None)}"
                     + (f" ({missing} without a complete plan)" if missing else ""))
    wins = sum(r["ours_gap"] is not None and all(r[f"{s}_gap"] is None or r["ours_cost"] <= r[f"{s}_cost"] + 1e-6
                                                 for s in SOLVERS[1:]) for r in table)
    return (head + body + f"\nMean gap to the best bound: {'; '.join(means)}. "
            f"Ours at or better than both peers on {wins} of {len(table)}.\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tight_gaps", description=__doc__.splitlines()[0])
    p.add_argument("results", type=Path, nargs="+", help="results JSON files of `python -m bench`")
    args = p.parse_args(argv)
    for path in args.results:
        doc = json.loads(path.read_text(encoding="utf-8"))
        print(f"## {path.name} (time limit {doc['config']['time_limit_s']:g} s)\n")
        print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
