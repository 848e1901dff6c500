"""``placement sweep``: solve the base case and every what-if scenario, in parallel; compare them.

Registered on the main app by ``placement.cli.main``. Exit codes: 0 every scenario solved (an
infeasible scenario is a result: its row says which required jobs do not fit); 1 one or more
scenarios failed (their rows say why; every other scenario's results are written); 2 bad input
(config, jobs, scenarios file, options) or Ray asked for but not installed.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from placement.cli.common import (AddressOpt, BackendOpt, ConfigArg, ExecutorOpt, JsonOpt, PairsOpt, QuietOpt,
                                  DeterministicOpt, SeedOpt, SolverOpt, TimeLimitOpt, WorkersOpt, load_inputs, out,
                                  EXIT_BUG, reported_errors, solve_options)
from placement.core.executors import make_executor
from placement.errors import InputError
from placement.sweep.run import ERROR_INPUT, ERROR_INTERNAL, run_sweep, table_rows
from placement.sweep.scenarios import load_scenarios


def sweep(
    config: ConfigArg,
    scenarios: Annotated[Path, typer.Option("--scenarios", help="scenarios file (.toml, .yaml, .json)")],
    jobs: Annotated[Optional[Path], typer.Option("--jobs", help="jobs table; default: the config's inline [[jobs]]")] = None,
    pairs: PairsOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")] = Path("sweep"),
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="skip scenarios that already finished in --out with the same inputs")] = False,
    solver: SolverOpt = None,
    time_limit: TimeLimitOpt = None,
    seed: SeedOpt = None,
    deterministic: DeterministicOpt = None,
    backend: BackendOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Solve the base case and each scenario (time limit per scenario); write and print the comparison."""
    with reported_errors():
        portfolio, job_table, pair_table = load_inputs(config, jobs, pairs)
        todo = load_scenarios(scenarios)
        options = solve_options(portfolio, solver=solver, time_limit_s=time_limit, seed=seed, deterministic=deterministic,
                                backend=backend.value if backend else None, executor=executor,
                                workers=workers, address=address)
        if options.solver == "decomposed":
            raise InputError("command line", [("--solver", "a sweep already runs scenarios in parallel: "
                                                           "use a single-process solver, not 'decomposed'")])
        with make_executor(options.executor, options.workers, options.address) as ex:
            total, done = len(todo) + 1, 0
            with out.status("sweep...", spinner="dots") if not (quiet or as_json) else nullcontext() as status:
                def on_row(row: dict[str, Any]) -> None:
                    nonlocal done
                    done += 1
                    if status is not None:
                        status.update(f"sweep: {done}/{total} scenarios ({row['scenario']}: {row['status']})")

                table = run_sweep(portfolio, job_table, pair_table, todo, options, out_dir, ex,
                                  resume=resume, on_row=on_row)
    rows = table_rows(table)
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    elif not quiet:
        _print(rows, out_dir)
    if any(r["status"] == ERROR_INTERNAL for r in rows):
        raise typer.Exit(EXIT_BUG)
    if any(r["status"] == ERROR_INPUT for r in rows):
        raise typer.Exit(1)


def _print(rows: list[dict[str, Any]], out_dir: Path) -> None:
    t = Table(title="Scenario sweep: net $/h, change against the base")
    for name, justify in (("scenario", "left"), ("status", "left"), ("objective", "right"), ("vs base", "right"),
                          ("gap", "right"), ("GPUs", "right"), ("MW", "right"), ("highest shadow prices", "left")):
        t.add_column(name, justify=justify, no_wrap=justify == "right")
    for r in rows:
        objective, delta = r["objective_usd_per_hour"], r["delta_vs_base_usd_per_hour"]
        t.add_row(escape(r["scenario"]), r["status"] + (" (resumed)" if r["resumed"] else ""),
                  "" if objective is None else f"{objective:,.0f}", "" if delta is None else f"{delta:+,.0f}",
                  "" if r["gap"] is None else f"{100 * r['gap']:.2f}%",
                  "" if r["gpus_placed"] is None else f"{r['gpus_placed']:,}",
                  "" if r["mw_used"] is None else f"{r['mw_used']:,.1f}", r["top_shadow_sites"])
    out.print(t)
    for r in rows:
        if r["error"]:
            out.print(f"{r['scenario']}: {r['status']}: {r['error']}", highlight=False, markup=False)
    out.print(f"wrote {out_dir / 'sweep.parquet'}, {out_dir / 'sweep.md'}, {out_dir / 'sweep.png'} and "
              f"{out_dir / 'scenarios'}/NAME/{{plan.parquet,summary.json}}", highlight=False, markup=False)
