"""Decomposed vs single-process solve at equal time limits: time to 2% and 1% gap, final gap.

    python -m bench.decomposed --size L --time-limit 60 --parts 2 --executor local

One generated instance (``bench.instances``, the runner's cache; ``neocloud`` by default) is
solved by ``placement.solve`` twice, one after the other in this process: ``--solver auto``
(single process) and ``--solver decomposed`` (``--parts`` on ``--executor``), same time limit,
backend, threads and seed. A warm-up solve of the XS instance first fills Numba's on-disk caches,
so neither run (nor the decomposed run's spawned workers) pays for JIT compilation.

Each run's progress callback gives a timeline of (seconds since the ``solve`` call, incumbent
$/h, bound $/h). Gaps are read two ways: against the run's *own* bound (the best it has proved
so far: what a user sees) and against the *best* bound either run proved (a common yardstick).
Reported per run: seconds to reach 2% and 1% gap (or "not reached"), the final objective, bound
and gaps, and for the decomposed run its parts, partition, merged objective and bounds. Writes
``decomposed_<timestamp>_<host>_<backend>_<jobs>x<sites>.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.instances import SIZES, cpu_count, default_cache, instance, load, parse_sizes
from bench.report import jsonable
from bench.runner import resolve_backend, versions
from placement import SolveOptions, solve

RUNS = ("auto", "decomposed")
THRESHOLDS = (0.02, 0.01)


def _time_to(traj: list[tuple[float, float, float | None]], gap: float, bound: float | None = None) -> float | None:
    """First second at which the incumbent is within ``gap`` of ``bound`` (default: the run's own
    best bound so far); None if never."""
    own = math.inf
    for t, objective, b in traj:
        own = min(own, b if b is not None else math.inf)
        ref = bound if bound is not None else own
        if math.isfinite(ref) and ref - objective <= gap * abs(ref):
            return t
    return None


def run_one(portfolio: Any, jobs: Any, options: SolveOptions, log=print) -> dict[str, Any]:
    """One validated solve with its progress timeline."""
    traj: list[tuple[float, float, float | None]] = []
    t0 = time.monotonic()

    def progress(objective: float, bound: float) -> None:
        traj.append((time.monotonic() - t0, float(objective), float(bound) if math.isfinite(bound) else None))

    plan = solve(portfolio, jobs, None, options, on_progress=progress)
    seconds = time.monotonic() - t0
    s = plan.summary
    traj.append((seconds, float(s["objective"]), s.get("bound")))
    log(f"{options.solver}: {seconds:.1f} s, objective {s['objective']:,.0f} $/h, bound "
        f"{s['bound'] or math.inf:,.0f}, gap {s['gap'] if s['gap'] is not None else math.nan:.2%}")
    return {"solver": options.solver, "seconds": seconds, "solve_seconds": s["seconds"], "objective": s["objective"],
            "bound": s.get("bound"), "gap": s.get("gap"), "status": s["status"],
            "tiers": [v["objective"] for v in s["objective_by_tier"].values()], "jobs_placed": s["jobs_placed"],
            "stages": s.get("stats", {}).get("stages"), "decomposed": s.get("stats", {}).get("decomposed"),
            "trajectory": traj}


def run(size: str, family: str, time_limit: float, parts: int, executor: str, workers: int, backend: str,
        threads: int, seed: int, cache: Path | None, log=print) -> dict[str, Any]:
    """The whole measurement; returns the JSON-ready result."""
    (sz,) = parse_sizes(size)
    concrete, device = resolve_backend(backend)
    warm_portfolio, warm_jobs, _ = load(instance(family, SIZES["XS"], seed, cache))
    solve(warm_portfolio, warm_jobs, None, SolveOptions(solver="auto", backend=concrete, time_limit_s=1.0))
    t = time.monotonic()
    portfolio, jobs, _ = load(instance(family, sz, seed, cache))
    log(f"{family} {sz.n_jobs:,} jobs x {sz.n_sites:,} sites ready in {time.monotonic() - t:.1f} s; {device}")
    base = SolveOptions(backend=concrete, time_limit_s=time_limit, seed=seed, threads=threads, parts=parts,
                        executor=executor, workers=workers)
    runs = {name: run_one(portfolio, jobs, base.model_copy(update={"solver": name}), log) for name in RUNS}
    bounds = [r["bound"] for r in runs.values() if r["bound"] is not None]
    best = min(bounds) if bounds else None
    for r in runs.values():
        r["first_incumbent_s"] = r["trajectory"][0][0]
        r["gap_to_best"] = (best - r["objective"]) / abs(best) if best is not None else None
        for g in THRESHOLDS:
            r[f"t_{g:.0%}_own"] = _time_to(r["trajectory"], g)
            r[f"t_{g:.0%}_best"] = _time_to(r["trajectory"], g, best) if best is not None else None
    return {"benchmark": "decomposed", "date": datetime.now().isoformat(timespec="seconds"),
            "host": socket.gethostname(), "device": device, "cpus": cpu_count(), "versions": versions(),
            "family": family, "size": sz.name, "jobs": sz.n_jobs, "sites": sz.n_sites, "seed": seed,
            "backend": concrete, "threads": threads, "time_limit_s": time_limit, "parts": parts,
            "executor": executor, "workers": workers, "best_bound": best, "runs": runs}


def _cell(x: float | None, fmt: str, none: str = "—") -> str:
    return none if x is None else format(x, fmt)


def _reached(t: float | None) -> str:
    return _cell(t, ".1f", "not reached")


def markdown(r: dict[str, Any]) -> str:
    """The results as a Markdown report."""
    lines = [
        f"# Decomposed vs single-process solve — {r['date']} on {r['host']}",
        "",
        f"- Instance: `{r['family']}` {r['size']} ({r['jobs']:,} jobs × {r['sites']:,} sites), seed {r['seed']}.",
        (f"- Machine: {r['device']}; {r['cpus']} CPUs available. Backend `{r['backend']}`, threads {r['threads']} "
        "(0: all cores)."),
        (f"- Both runs: `placement.solve`, time limit {r['time_limit_s']:g} s, one after the other in one process "
        f"(Numba caches warm). Decomposed: parts {r['parts'] or 'one per worker'}, executor `{r['executor']}`, "
        f"workers {r['workers'] or 'all cores'}."),
        ("- Seconds count from the `solve` call (compile and validation included). Gaps: (bound − objective) / "
        "bound, against the run's own best bound so far (*own*) or the best bound either run proved "
        f"({r['best_bound'] or math.nan:,.0f} $/h, *best*)."),
        "",
        ("| run | t→2% own s | t→1% own s | t→2% best s | t→1% best s | first plan s | objective $/h | tiers $/h "
        "| bound $/h | own gap | gap to best | seconds | stages |"),
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for name, x in r["runs"].items():
        tiers = " / ".join(f"{t:,.0f}" for t in x["tiers"])
        lines.append(
            f"| {name} | {_reached(x['t_2%_own'])} | {_reached(x['t_1%_own'])} | {_reached(x['t_2%_best'])} | "
            f"{_reached(x['t_1%_best'])} | {x['first_incumbent_s']:.1f} | "
            f"{x['objective']:,.0f} | {tiers} | {_cell(x['bound'], ',.0f')} | {_cell(x['gap'], '.2%')} | "
            f"{_cell(x['gap_to_best'], '.2%')} | {x['seconds']:.1f} | {', '.join(x['stages'] or [])} |")
    d = r["runs"]["decomposed"].get("decomposed") or {}
    if d:
        lines += ["", f"Decomposed: {d['parts']} parts by {d['partition']} on {d['workers']} `{d['executor']}` "
                  f"worker(s); parts done at {d['seconds_parts']:.1f} s (each: "
                  + ", ".join(_cell(s, ".1f") + " s" for s in d["part_seconds"]) + "); part objectives "
                  + " + ".join(_cell(o, ",.0f") for o in d["part_objectives"])
                  + f" $/h; merged and repaired {d['merged_objective']:,.0f} $/h; bounds: relaxed "
                  f"{_cell(d.get('bound_relaxed'), ',.0f')}, Lagrangian at merged part prices "
                  f"{_cell(d.get('bound_lagrangian'), ',.0f')}, with the top tier's floor "
                  f"{_cell(d.get('bound_floored'), ',.0f')} $/h."]
    lines += ["", "## Where decomposition loses", "", *_losses(r["runs"]["auto"], r["runs"]["decomposed"])]
    return "\n".join(lines) + "\n"


def _losses(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where the decomposed run ``b`` is behind the single-process run ``a``, with the figures that say why."""
    out = []
    diff = b["objective"] - a["objective"]
    first = next((i for i, (x, y) in enumerate(zip(b["tiers"], a["tiers"]))
                  if abs(x - y) > 1e-7 * max(1.0, abs(x), abs(y))), None)
    if first is None:
        out.append(f"- Final plan: the same per tier (total {diff:+,.0f} $/h).")
    else:
        who = "wins" if b["tiers"][first] > a["tiers"][first] else "loses"
        out.append(f"- Final plan: decomposed {who} by {abs(b['tiers'][first] - a['tiers'][first]):,.2f} $/h in tier "
                   f"{first + 1} (counting from the highest); total {diff:+,.0f} $/h "
                   f"({diff / max(abs(a['objective']), 1e-9):+.2%}).")
    if a["bound"] is not None and b["bound"] is not None:
        tighter = "tighter" if b["bound"] < a["bound"] else "looser"
        out.append(f"- Bound: decomposed's is {tighter} by {abs(b['bound'] - a['bound']):,.0f} $/h "
                   f"({abs(b['bound'] - a['bound']) / a['bound']:.2%}).")
    t_merge, merged = b["trajectory"][0][:2]
    single = [o for t, o, _ in a["trajectory"] if t <= t_merge]
    out.append(f"- No plan before the merge: single-process had one after {a['first_incumbent_s']:.1f} s, decomposed "
               f"after {t_merge:.1f} s (worker start, then every part's own time share).")
    if single:
        out.append(f"- Splitting: at {t_merge:.1f} s the merged parts give {merged:,.0f} $/h, the single process "
                   f"{single[-1]:,.0f} $/h ({merged - single[-1]:+,.0f}); polishing the merged plan in the "
                   f"{b['seconds'] - t_merge:.1f} s left added {b['objective'] - merged:+,.0f} $/h (total; "
                   "tiers compare highest first).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.decomposed", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--size", default="L", help=", ".join(SIZES) + " or JOBSxSITES")
    ap.add_argument("--family", default="neocloud")
    ap.add_argument("--time-limit", type=float, default=60.0, help="seconds, both runs")
    ap.add_argument("--parts", type=int, default=2, help="0: one per worker")
    ap.add_argument("--executor", default="local", choices=["local", "ray"])
    ap.add_argument("--workers", type=int, default=0, help="0: all cores (local) or the cluster's CPUs (ray)")
    ap.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu", "reference"])
    ap.add_argument("--threads", type=int, default=0, help="solver threads, both runs (0: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=default_cache())
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(a.size, a.family, a.time_limit, a.parts, a.executor, a.workers, a.backend, a.threads, a.seed,
                 a.cache)
    stem = (f"decomposed_{datetime.now():%Y-%m-%dT%H%M%S}_{socket.gethostname()}_{result['backend']}_"
            f"{result['jobs']}x{result['sites']}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{stem}.json").write_text(json.dumps(jsonable(result), indent=1) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {a.out / stem}.json and .md")


if __name__ == "__main__":
    main()
