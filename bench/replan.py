"""Re-plan stability and warm re-plan vs cold solve after 1% of jobs arrive.

    python -m bench.replan --jobs 100000 --sites 1000 --time-limit 120 --warm-time-limit 10

1. Generate a ``neocloud`` instance of ``jobs × (1 + arrivals)`` jobs over ``sites`` sites
   (``placement.generate.families``; sites sized for all of them) and keep the first ``jobs`` as the jobs
   running today.
2. **Baseline**: ``solve`` those (solver ``auto``, ``--time-limit``).
3. **No change**: ``replan`` the baseline with no event: it must move and stop nothing, whatever
   the baseline's quality (it may start jobs that fit in free room).
4. **Again**: ``replan`` that re-plan with no event: it must change nothing at all
   (``replan(replan(p)) == replan(p)``). This is *the plan running now* for what follows.
5. **Warm**: ``replan`` all jobs (the last ``arrivals`` share arrive) from the plan running now,
   ``--warm-time-limit``, reacting only to the arrivals; then again with ``improve`` (running jobs
   may move where a move pays).
6. **Cold**: ``solve`` the very jobs table the warm re-plan solved (current placement and move
   costs filled in, so both plans are scored by the same objective, migration included), solver
   ``auto``, ``--time-limit``, no warm start.

Reported: wall seconds of each call (compile, solve, validate and, for re-plans, the diff:
everything a scheduler waits for), objective and per-tier objective ($/h, same problem for warm
and cold), jobs moved / stopped / started against the plan running now, and the ratio
warm wall / cold wall. Writes ``replan_<date>_<host>_<backend>.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import platform
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from bench.report import save_result
from placement import solve
from placement.io.config import portfolio_from_dict
from placement.generate.families import generate
from placement.model.jobs import validate_jobs
from placement.model.portfolio import SolveOptions
from placement.plan import package_version
from placement.replan.run import ReplanOptions, replan


def diff_counts(before: pa.Table, after: pa.Table) -> dict[str, int]:
    """Jobs moved (placed in both on different rows), stopped and started between two plan tables."""
    def rows(t: pa.Table) -> dict[str, tuple]:
        out: dict[str, list] = {}
        for r in t.select(["job_id", "status", "site_id", "gpu_type", "replicas"]).to_pylist():
            if r["status"] == "placed":
                out.setdefault(r["job_id"], []).append((r["site_id"], r["gpu_type"], int(r["replicas"])))
        return {k: tuple(sorted(v)) for k, v in out.items()}

    a, b = rows(before), rows(after)
    return {"moved": sum(1 for k in a if k in b and a[k] != b[k]),
            "stopped": sum(1 for k in a if k not in b), "started": sum(1 for k in b if k not in a)}


def _tiers(summary: dict[str, Any]) -> list[float]:
    return [row["objective"] for row in summary["objective_by_tier"].values()]


def _record(name: str, seconds: float, summary: dict[str, Any], diff: dict[str, int] | None) -> dict[str, Any]:
    stats = summary.get("stats", {})
    return {"run": name, "wall_s": seconds, "objective": summary["objective"], "tiers": _tiers(summary),
            "bound": summary.get("bound"), "status": summary["status"], "jobs_placed": summary["jobs_placed"],
            "jobs_total": summary["jobs_total"], "stages": stats.get("stages"),
            "pipeline_s": stats.get("seconds_solve"), **(diff or {})}


def run(n_jobs: int, n_sites: int, arrivals: float, time_limit: float, warm_limit: float, backend: str,
        seed: int, threads: int, log=print) -> dict[str, Any]:
    """The whole measurement; returns the JSON-ready result."""
    n_new = max(1, round(n_jobs * arrivals))
    t = time.monotonic()
    config, table = generate("neocloud", n_jobs + n_new, n_sites, seed)
    portfolio = portfolio_from_dict(config, "generated")
    all_jobs = validate_jobs(table, portfolio, "generated")
    today = all_jobs.slice(0, n_jobs)
    log(f"generated {n_jobs:,} + {n_new:,} jobs x {n_sites:,} sites in {time.monotonic() - t:.1f} s")
    cold_opts = SolveOptions(solver="auto", time_limit_s=time_limit, backend=backend, seed=seed, threads=threads)
    warm_opts = ReplanOptions(solver="auto", time_limit_s=warm_limit, backend=backend, seed=seed, threads=threads)
    runs = []

    t = time.monotonic()
    first = solve(portfolio, today, None, cold_opts)
    runs.append(_record("baseline: cold solve of today's jobs", time.monotonic() - t, first.summary, None))
    log(f"baseline: {runs[-1]['wall_s']:.1f} s, objective {first.objective:,.0f} $/h")

    # No change: the baseline re-planned must move and stop nothing (it may start what fits).
    t = time.monotonic()
    now = replan(portfolio, today, first.table, [], warm_opts)
    runs.append(_record("no-change re-plan of the baseline", time.monotonic() - t, now.summary,
                        diff_counts(first.table, now.table)))
    log(f"no-change re-plan: {runs[-1]['wall_s']:.1f} s, moved {runs[-1]['moved']}, stopped {runs[-1]['stopped']}, "
        f"started {runs[-1]['started']}")

    # Idempotence: re-planning that again changes nothing at all. This is the plan running now.
    t = time.monotonic()
    same = replan(portfolio, today, now.table, [], warm_opts)
    runs.append(_record("no-change re-plan of that re-plan", time.monotonic() - t, same.summary,
                        diff_counts(now.table, same.table)))
    log(f"again: {runs[-1]['wall_s']:.1f} s, moved {runs[-1]['moved']}, stopped {runs[-1]['stopped']}, "
        f"started {runs[-1]['started']}")

    t = time.monotonic()
    warm = replan(portfolio, all_jobs, now.table, [], warm_opts)
    runs.append(_record(f"warm re-plan: {n_new:,} arrivals", time.monotonic() - t, warm.summary,
                        diff_counts(now.table, warm.table)))
    log(f"warm re-plan: {runs[-1]['wall_s']:.1f} s, objective {warm.objective:,.0f} $/h")

    t = time.monotonic()
    better = replan(portfolio, all_jobs, now.table, [], warm_opts.model_copy(update={"improve": True}))
    runs.append(_record(f"warm re-plan with --improve: {n_new:,} arrivals", time.monotonic() - t, better.summary,
                        diff_counts(now.table, better.table)))
    log(f"warm re-plan (improve): {runs[-1]['wall_s']:.1f} s, objective {better.objective:,.0f} $/h")

    t = time.monotonic()
    cold = solve(portfolio, warm.jobs, None, cold_opts)
    runs.append(_record(f"cold solve: {n_new:,} arrivals", time.monotonic() - t, cold.summary,
                        diff_counts(now.table, cold.table)))
    log(f"cold solve: {runs[-1]['wall_s']:.1f} s, objective {cold.objective:,.0f} $/h")
    w, c = runs[3], runs[5]
    n0, n1 = runs[1], runs[2]
    return {
        "benchmark": "replan", "date": datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
        "platform": platform.platform(), "cpus": __import__("os").cpu_count(), "version": package_version(),
        "family": "neocloud", "jobs": n_jobs, "sites": n_sites, "arrivals": n_new, "seed": seed,
        "backend": backend, "threads": threads, "cold_time_limit_s": time_limit, "warm_time_limit_s": warm_limit,
        "runs": runs, "ratio_warm_over_cold_wall": w["wall_s"] / c["wall_s"],
        "warm_minus_cold_objective": w["objective"] - c["objective"],
        "warm_lex_ge_cold": bool(_lex_ge(w["tiers"], c["tiers"])),
        "no_change_moved_or_stopped": n0["moved"] + n0["stopped"],
        "idempotent": n1["moved"] + n1["stopped"] + n1["started"] == 0,
    }


def _lex_ge(a: list[float], b: list[float]) -> bool:
    for x, y in zip(a, b):
        if abs(x - y) > 1e-7 * max(1.0, abs(x), abs(y)):
            return x > y
    return True


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Warm re-plan vs cold solve — {r['date']} on {r['host']}, backend `{r['backend']}`",
        "",
        f"- Instance: `neocloud`, {r['jobs']:,} jobs running × {r['sites']:,} sites, then {r['arrivals']:,} "
        f"arrive ({r['arrivals'] / r['jobs']:.1%}); seed {r['seed']}; {r['cpus']} CPUs, threads {r['threads']}.",
        f"- Cold: `solve`, solver auto, time limit {r['cold_time_limit_s']:g} s. Warm: `replan` from the plan "
        f"running now, solver auto, time limit {r['warm_time_limit_s']:g} s. Wall = the whole call (compile, solve, "
        "validate, and for re-plans the diff).",
        f"- **Warm / cold wall time: {r['ratio_warm_over_cold_wall']:.3f}**; warm − cold objective "
        f"{r['warm_minus_cold_objective']:+,.2f} $/h (same problem, migration included); warm lexicographically "
        f"≥ cold: {r['warm_lex_ge_cold']}.",
        f"- **No-change re-plan: {r['no_change_moved_or_stopped']} jobs moved or stopped**; re-planning it again "
        f"changes nothing: {r['idempotent']}.",
        "",
        "| run | wall s | pipeline s | objective $/h | tiers $/h (highest first) | placed | moved | stopped | started | stages |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for x in r["runs"]:
        tiers = " / ".join(f"{t:,.0f}" for t in x["tiers"])
        lines.append(f"| {x['run']} | {x['wall_s']:.1f} | {x['pipeline_s'] or 0:.1f} | {x['objective']:,.0f} | {tiers} | "
                     f"{x['jobs_placed']:,} / {x['jobs_total']:,} | {x.get('moved', '-')} | {x.get('stopped', '-')} | "
                     f"{x.get('started', '-')} | {', '.join(x['stages'] or [])} |")
    lines.append("")
    lines.append("Moved / stopped / started count jobs against the plan before each run: the baseline for the "
                 "first no-change re-plan, that re-plan for the second, the second (the plan running now) for "
                 "the others.")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--sites", type=int, default=1000)
    ap.add_argument("--arrivals", type=float, default=0.01, help="share of jobs that arrive")
    ap.add_argument("--time-limit", type=float, default=120.0, help="cold solves (baseline and cold)")
    ap.add_argument("--warm-time-limit", type=float, default=10.0)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = ap.parse_args()
    result = run(a.jobs, a.sites, a.arrivals, a.time_limit, a.warm_time_limit, a.backend, a.seed, a.threads)
    stem = f"replan_{datetime.now():%Y-%m-%d}_{socket.gethostname()}_{a.backend}_{a.jobs}x{a.sites}"
    save_result(result, markdown(result), a.out, stem)


if __name__ == "__main__":
    _ = np  # numpy is imported for JSON of numpy scalars via default=float
    main()
