"""Deterministic mode: repeatability under load, and its cost at equal wall time.

    python -m bench.deterministic --time-limit 10 --repeat 5

Per instance (``neocloud`` S and M, ``power-bound`` M, ``tight-d`` 20×400, ``tight-e`` 40×400):

1. **Default** ``solve`` (solver ``auto``), ``--time-limit`` seconds.
2. **Deterministic** ``solve`` with a work budget of ``--time-limit`` units, idle; its wall time is W.
3. **Default at W**: the default mode given exactly W seconds, so the two are compared at equal wall
   time: the cost of determinism is the objective difference of 2 against 3.
4. **Repeats**: the deterministic run ``--repeat`` times more with every core busy with a
   spinning process; every plan must hash the same as step 2's. The default mode is repeated
   under load too, to show what deterministic mode protects against.

Writes ``deterministic_<date>_<host>.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from bench.report import save_result
from placement import solve
from placement.generate.families import generate
from placement.generate.tight import generate_tight
from placement.io.config import portfolio_from_dict
from placement.model.jobs import validate_jobs, validate_pairs
from placement.model.portfolio import SolveOptions

INSTANCES = (("neocloud", 2_000, 20), ("neocloud", 10_000, 100), ("power-bound", 10_000, 100),
             ("tight-d", 400, 20), ("tight-e", 400, 40))


@contextlib.contextmanager
def loaded_cpu() -> Iterator[None]:
    """Every core busy with a spinning process for the block."""
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        yield
    finally:
        for p in spin:
            p.kill()
            p.wait()


def plan_hash(table: pa.Table) -> str:
    """SHA-256 of the plan table's Arrow IPC bytes (12 hex digits): equal only for identical plans."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()[:12]


def _instance(family: str, n_jobs: int, n_sites: int):
    if family.startswith("tight"):
        config, jobs, pairs = generate_tight(family, n_jobs, n_sites, 0)
    else:
        (config, jobs), pairs = generate(family, n_jobs, n_sites, 0), None
    portfolio = portfolio_from_dict(config, family)
    jobs = validate_jobs(jobs, portfolio, family)
    return portfolio, jobs, validate_pairs(pairs, portfolio, jobs, family) if pairs is not None else None


def _timed(portfolio, jobs, pairs, options: SolveOptions) -> dict[str, Any]:
    t = time.monotonic()
    plan = solve(portfolio, jobs, pairs, options)
    s = plan.summary
    return {"wall_s": time.monotonic() - t, "objective": s.objective, "gap": s.gap, "hash": plan_hash(plan.table),
            "work_units": s.stats.get("work_units"), "stages": s.stats.get("stages")}


def run_one(family: str, n_jobs: int, n_sites: int, limit_s: float, repeat: int, backend: str,
            log=print) -> dict[str, Any]:
    """Steps 1-4 for one instance."""
    portfolio, jobs, pairs = _instance(family, n_jobs, n_sites)
    base = SolveOptions(solver="auto", time_limit_s=limit_s, seed=0, backend=backend)
    det_opts = base.model_copy(update={"deterministic": True})
    default = _timed(portfolio, jobs, pairs, base)
    det = _timed(portfolio, jobs, pairs, det_opts)
    equal = _timed(portfolio, jobs, pairs, base.model_copy(update={"time_limit_s": det["wall_s"]}))
    with loaded_cpu():
        det_loaded = [_timed(portfolio, jobs, pairs, det_opts) for _ in range(repeat)]
        default_loaded = [_timed(portfolio, jobs, pairs, base) for _ in range(repeat)]
    row = {"instance": f"{family} {n_jobs:,}x{n_sites:,}", "default": default, "deterministic": det,
           "default_at_equal_wall": equal,
           "det_loaded_hashes": [r["hash"] for r in det_loaded],
           "det_loaded_wall_s": [r["wall_s"] for r in det_loaded],
           "default_loaded_hashes": [r["hash"] for r in default_loaded],
           "default_loaded_objectives": [r["objective"] for r in default_loaded]}
    row["det_identical"] = all(h == det["hash"] for h in row["det_loaded_hashes"])
    row["default_distinct_plans"] = len({default["hash"], *row["default_loaded_hashes"]})
    row["cost_at_equal_wall"] = (equal["objective"] - det["objective"]) / max(abs(equal["objective"]), 1e-9)
    log(f"{row['instance']}: det {det['objective']:,.2f} in {det['wall_s']:.1f} s, default at that wall "
        f"{equal['objective']:,.2f}; identical under load: {row['det_identical']}")
    return row


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"# Deterministic mode — {r['date']} on {r['host']}, backend `{r['backend']}`, {r['cpus']} CPUs",
        "",
        f"Budget {r['time_limit_s']:g} (seconds in the default mode, work units in deterministic mode); "
        f"{r['repeat']} repeats of each mode with all {r['cpus']} cores busy with spinning processes. "
        "Cost = (default at equal wall − deterministic) / default at equal wall: positive means the "
        "deterministic plan is worse.",
        "",
        "| instance | default $/h (gap) | det $/h (gap) | det wall s idle / loaded | default at det's wall $/h | "
        "cost | det identical ×repeats | distinct default plans under load |",
        "|---|--:|--:|--:|--:|--:|:-:|--:|",
    ]
    for x in r["rows"]:
        d, e, q = x["default"], x["deterministic"], x["default_at_equal_wall"]
        loaded = "/".join(f"{w:.1f}" for w in x["det_loaded_wall_s"])
        lines.append(f"| {x['instance']} | {d['objective']:,.2f} ({d['gap']:.3%}) | {e['objective']:,.2f} "
                     f"({e['gap']:.3%}) | {e['wall_s']:.1f} / {loaded} | {q['objective']:,.2f} | "
                     f"{x['cost_at_equal_wall']:+.3%} | {'yes' if x['det_identical'] else 'NO'} ×{len(loaded.split('/'))} | "
                     f"{x['default_distinct_plans']} of {1 + len(x['default_loaded_hashes'])} |")
    lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--only", default="", help="comma-separated families to run (default: all)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = ap.parse_args()
    chosen = [i for i in INSTANCES if not a.only or i[0] in a.only.split(",")]
    rows = [run_one(f, n, s, a.time_limit, a.repeat, a.backend) for f, n, s in chosen]
    result = {"date": f"{datetime.now():%Y-%m-%d %H:%M}", "host": socket.gethostname(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "backend": a.backend, "time_limit_s": a.time_limit,
              "repeat": a.repeat, "rows": rows}
    stem = f"deterministic_{datetime.now():%Y-%m-%dT%H%M%S}_{socket.gethostname()}_{a.backend}"
    save_result(result, markdown(result), a.out, stem)


if __name__ == "__main__":
    main()
