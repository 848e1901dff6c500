"""Scenario sweeps: solve the base case and every what-if, in parallel, one row per scenario.

Each scenario is a full solve with the default pipeline under one time limit. Workers get the
base inputs and the base ``Problem`` once (Ray's object store, or once per pool process);
a scenario that only changes site figures (grid MW, reserve, PUE, prices, carbon) reuses the
compiled problem with new site arrays, any other scenario compiles its own.

Layout of ``out``::

    sweep.parquet, sweep.md, sweep.png      the comparison (one row per scenario)
    scenarios/NAME/plan.parquet             each scenario's plan
    scenarios/NAME/summary.json             ... and its summary
    scenarios/NAME/row.json                 written last: the scenario is finished

A scenario's files are written atomically and ``row.json`` last, so ``resume`` skips exactly
the scenarios that finished with the same inputs (``row.json`` records a fingerprint of the
base inputs, the scenario and the options) and re-runs the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.errors import InputError
from placement.api import solve
from placement.core.executors import Executor, Task, threads_per_worker
from placement.core.problem import Problem, compile_problem, same_structure, with_site_figures
from placement.io.digest import input_digest
from placement.io.tables import write_json, write_table
from placement.model.portfolio import Portfolio, SolveOptions
from placement.plan import package_version
from placement.summary import Summary
from placement.sweep.report import write_chart, write_markdown
from placement.sweep.scenarios import BASE, Scenario, ScenarioError, apply_scenario

log = logging.getLogger("placement")

TOP_SHADOW_SITES = 3
SCENARIO_DIR = "scenarios"


@dataclass(frozen=True)
class SweepInputs:
    """What every worker needs, sent once: base inputs, their compiled problem, where to write."""

    portfolio: Portfolio
    jobs: pa.Table
    pairs: pa.Table | None
    options: SolveOptions
    problem: Problem
    input_sha256: str
    out: Path


# A scenario's status when it did not solve: its edits or inputs do not hold together, or a bug.
ERROR_INPUT = "error: input"
ERROR_INTERNAL = "error: internal"


def fingerprint(inputs_sha256: str, scenario: Scenario, options: SolveOptions) -> str:
    """What a finished scenario's result depends on: base inputs, its edits, the options, the version."""
    h = hashlib.sha256(f"{inputs_sha256}\0{package_version()}".encode())
    h.update(scenario.model_dump_json().encode())
    h.update(options.model_dump_json(exclude={"workers", "executor", "address"}).encode())
    return h.hexdigest()


def scenario_dir(out: Path, name: str) -> Path:
    return out / SCENARIO_DIR / name


def finished_row(out: Path, scenario: Scenario, fp: str) -> dict[str, Any] | None:
    """The row of a scenario that already finished with these inputs, else None."""
    path = scenario_dir(out, scenario.name) / "row.json"
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return row if row.get("fingerprint") == fp else None


def solve_scenario(inputs: SweepInputs, scenario: Scenario) -> dict[str, Any]:
    """Solve one scenario in a worker; its row, with any error in it rather than raised."""
    import numba  # noqa: PLC0415  (only sweep workers need Numba's thread count)

    start = time.monotonic()
    fp = fingerprint(inputs.input_sha256, scenario, inputs.options)
    row: dict[str, Any] = {"scenario": scenario.name, "description": scenario.description, "fingerprint": fp}
    try:
        portfolio, jobs, pairs = apply_scenario(inputs.portfolio, inputs.jobs, inputs.pairs, scenario,
                                                seed=inputs.options.seed)
        problem = None
        if jobs is inputs.jobs and same_structure(inputs.portfolio, portfolio):
            problem = with_site_figures(inputs.problem, portfolio)
        # The executor sized Numba's threads for this worker; CP-SAT and HiGHS get as many.
        options = inputs.options.model_copy(update={"threads": numba.get_num_threads()})
        plan = solve(portfolio, jobs, pairs, options, problem=problem)
    except ScenarioError as exc:
        row.update(status=ERROR_INPUT, error=f"bad override: {exc}")
    except InputError as exc:  # the edited inputs do not hold together (a grid below its reserve, say)
        row.update(status=ERROR_INPUT, error=f"input: {exc}")
    except Exception as exc:  # noqa: BLE001 - one scenario's failure must not stop the sweep
        log.exception("scenario %s failed with an internal error (a bug)", scenario.name)
        row.update(status=ERROR_INTERNAL, error=f"internal (a bug): {type(exc).__name__}: {str(exc)[:500]}")
    else:
        where = scenario_dir(inputs.out, scenario.name)
        plan.write(where / "plan.parquet")
        plan.write_summary(where / "summary.json")
        row.update(_row_figures(plan.summary, plan.table), reused_problem=problem is not None,
                   plan=f"{SCENARIO_DIR}/{scenario.name}/plan.parquet")
    row["seconds"] = time.monotonic() - start
    write_json(row, scenario_dir(inputs.out, scenario.name) / "row.json")
    return row


def _row_figures(summary: Summary, table: pa.Table) -> dict[str, Any]:
    """A solved scenario's row: status, objective, bound, gap, use per tier and per site, top prices."""
    required = summary.required_unplaced or []
    placed = table.filter(pc.equal(table.column("status"), "placed"))
    by_tier = placed.group_by("priority").aggregate([("facility_mw", "sum"), ("gpus", "sum")]).to_pylist()
    prices = summary.shadow_price_usd_per_mwh or {}
    top = sorted(prices.items(), key=lambda kv: -kv[1])[:TOP_SHADOW_SITES]
    return {
        "status": "infeasible" if required else "ok",
        "error": f"required job(s) cannot be placed: {', '.join(required[:5])}" if required else "",
        "objective_usd_per_hour": summary.objective,
        "bound_usd_per_hour": summary.bound,
        "gap": summary.gap,
        "jobs_placed": summary.jobs_placed,
        "jobs_total": summary.jobs_total,
        "gpus_placed": summary.gpus_placed,
        "mw_used": summary.mw_used,
        "tiers": {str(r["priority"]): {"gpus": int(r["gpus_sum"]), "mw": float(r["facility_mw_sum"]),
                                       "objective": summary.objective_by_tier[str(r["priority"])]["objective"]}
                  for r in by_tier},
        "site_mw": {s["site_id"]: s["mw_used"] for s in summary.sites},
        "site_mw_cap": {s["site_id"]: s["mw_cap"] for s in summary.sites},
        "top_shadow_sites": ", ".join(f"{s} (${p:,.0f}/MWh)" for s, p in top if p > 0),
        "solver": summary.solver,
    }


def run_sweep(portfolio: Portfolio, jobs: pa.Table, pairs: pa.Table | None, scenarios: Sequence[Scenario],
              options: SolveOptions, out: Path, executor: Executor, *, resume: bool = False,
              on_row: Callable[[dict[str, Any]], None] | None = None, task: Task | None = None) -> pa.Table:
    """Solve the base case and ``scenarios``; write per-scenario results and the comparison.

    Returns the comparison table (also written to ``out/sweep.parquet`` and ``sweep.md``, with
    a chart in ``sweep.png``). ``on_row`` sees each row as its scenario finishes or is skipped.
    ``task`` replaces ``solve_scenario`` (same signature; tests wrap it to kill workers).
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    digest = input_digest(portfolio, jobs, pairs)
    everything = [Scenario(name=BASE, description="the inputs as given"), *scenarios]
    rows: dict[str, dict[str, Any]] = {}
    todo: list[Scenario] = []
    for s in everything:
        done = finished_row(out, s, fingerprint(digest, s, options)) if resume else None
        if done is not None:
            rows[s.name] = {**done, "resumed": True}
            if on_row:
                on_row(rows[s.name])
        else:
            todo.append(s)
    if todo:
        inputs = SweepInputs(portfolio, jobs, pairs, options, compile_problem(portfolio, jobs, pairs, options),
                             digest, out)
        log.info("sweep: %d scenario(s) to solve on %s with %d worker(s), %d thread(s) each", len(todo),
                 executor.kind, executor.workers, threads_per_worker(executor.workers))
        for i, row in executor.map(task or solve_scenario, inputs, todo):
            rows[todo[i].name] = {**row, "resumed": False}
            if on_row:
                on_row(rows[todo[i].name])
    table = comparison_table([rows[s.name] for s in everything])
    write_table(table, out / "sweep.parquet")
    write_markdown(table, out / "sweep.md", options)
    write_chart(table, out / "sweep.png")
    return table


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The comparison's rows as dicts, its per-site map columns as dicts too."""
    maps = [f.name for f in table.schema if pa.types.is_map(f.type)]
    return [{**r, **{m: None if r[m] is None else dict(r[m]) for m in maps}} for r in table.to_pylist()]


def comparison_table(rows: list[dict[str, Any]]) -> pa.Table:
    """One row per scenario, the base first; value lost or gained is against the base."""
    base = next((r for r in rows if r["scenario"] == BASE), None)
    base_value = base.get("objective_usd_per_hour") if base else None
    tiers = sorted({t for r in rows for t in r.get("tiers", {})}, key=int, reverse=True)
    sites = list(dict.fromkeys(s for r in rows for s in r.get("site_mw", {})))

    def num(r: dict[str, Any], key: str) -> float | None:
        v = r.get(key)
        return None if v is None else float(v)

    cols: dict[str, list[Any]] = {
        "scenario": [r["scenario"] for r in rows],
        "description": [r.get("description", "") for r in rows],
        "status": [r["status"] for r in rows],
        "error": [r.get("error", "") for r in rows],
        "objective_usd_per_hour": [num(r, "objective_usd_per_hour") for r in rows],
        "delta_vs_base_usd_per_hour": [
            None if base_value is None or r.get("objective_usd_per_hour") is None
            else r["objective_usd_per_hour"] - base_value for r in rows],
        "bound_usd_per_hour": [num(r, "bound_usd_per_hour") for r in rows],
        "gap": [num(r, "gap") for r in rows],
        "jobs_placed": [r.get("jobs_placed") for r in rows],
        "jobs_total": [r.get("jobs_total") for r in rows],
        "gpus_placed": [r.get("gpus_placed") for r in rows],
        "mw_used": [num(r, "mw_used") for r in rows],
    }
    for t in tiers:
        for what in ("gpus", "mw", "objective"):
            cols[f"{what}_priority_{t}"] = [r["tiers"].get(t, {}).get(what, 0) if "tiers" in r else None
                                           for r in rows]
    table = pa.table(cols)
    site_mw = pa.array([[(s, float(r["site_mw"][s])) for s in sites if s in r["site_mw"]] if "site_mw" in r
                        else None for r in rows], pa.map_(pa.string(), pa.float64()))
    site_cap = pa.array([[(s, float(r["site_mw_cap"][s])) for s in sites if s in r["site_mw_cap"]]
                         if "site_mw_cap" in r else None for r in rows], pa.map_(pa.string(), pa.float64()))
    extra = {
        "site_mw_used": site_mw,
        "site_mw_cap": site_cap,
        "top_shadow_sites": pa.array([r.get("top_shadow_sites", "") for r in rows], pa.string()),
        "solver": pa.array([r.get("solver") for r in rows], pa.string()),
        "seconds": pa.array([float(r.get("seconds", np.nan)) for r in rows], pa.float64()),
        "resumed": pa.array([bool(r.get("resumed")) for r in rows], pa.bool_()),
        "plan": pa.array([r.get("plan") for r in rows], pa.string()),
    }
    for name, arr in extra.items():
        table = table.append_column(name, arr)
    return table
