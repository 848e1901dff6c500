"""``python -m bench.first_plan``: does ``auto`` hold a plan placing every required job within 1 s?

On the ``tight`` families every job is required and greedy leaves some out, so the first
complete plan comes from the feasibility-first construction. Each instance is solved with
``placement.solve`` under a short time limit (1 s by default), after one warm-up solve so that
loading the compiled kernels is not counted; the table gives the plan's placed count, status,
cost gap to its own bound and the wall seconds from before compilation to the validated plan.
Writes Markdown to stdout; one process, one instance at a time.
"""

from __future__ import annotations

import argparse
import time

from bench.instances import TIGHT_SIZES, instance, load, parse_sizes
from placement import solve
from placement.generate.tight import TIGHT_FAMILIES, VALUE_USD_PER_HOUR


def short_solve(family: str, size: str, seed: int, time_limit_s: float) -> dict[str, object]:
    """The validated plan's placed jobs, status, bound and wall seconds for one instance."""
    portfolio, jobs, pairs = load(instance(family, parse_sizes(size)[0], seed))
    options = portfolio.solve.model_copy(update={"time_limit_s": time_limit_s, "seed": seed, "backend": "cpu"})
    start = time.monotonic()
    s = solve(portfolio, jobs, pairs, options).summary
    wall = time.monotonic() - start
    n = jobs.num_rows
    cost, bound_cost = n * VALUE_USD_PER_HOUR - s.objective, n * VALUE_USD_PER_HOUR - s.bound
    return {"jobs": n, "placed": s.jobs_placed, "status": s.status.value, "wall_s": wall,
            "cost_gap": (cost - bound_cost) / bound_cost, "stages": ", ".join(s.stats["stages"])}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=TIGHT_SIZES, help="jobs x sites, comma-separated")
    ap.add_argument("--families", default=",".join(TIGHT_FAMILIES))
    ap.add_argument("--time-limit", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    short_solve(TIGHT_FAMILIES[0], "100x5", args.seed + 1, args.time_limit)  # loads the kernels
    print(f"| instance | placed | status | cost gap to own bound | wall s (limit {args.time_limit:g} s) | stages |")
    print("|---|--:|---|--:|--:|---|")
    for family in args.families.split(","):
        for size in args.sizes.split(","):
            r = short_solve(family, size, args.seed, args.time_limit)
            print(f"| {family}/{size} | {r['placed']}/{r['jobs']} | {r['status']} | {100 * r['cost_gap']:.2f}% "
                  f"| {r['wall_s']:.2f} | {r['stages']} |", flush=True)


if __name__ == "__main__":
    main()
