"""The ``placement`` command line: solve, validate, replan, sweep, generate, info.

Exit codes: 0 ok; 1 an invalid plan (``validate``) or a failed scenario (``sweep``); 2 bad input
or an unusable backend; 3 a required job cannot be placed (the plan is still written, with it
unplaced); 4 an internal error (a bug: the traceback goes to a file the message names; nothing is
written); 130 / 143 stopped by SIGINT / SIGTERM (the best plan so far is written, status
``interrupted``).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from pathlib import Path
from typing import Annotated, Optional

import typer

from placement.api import solve as solve_plan
from placement.cli.common import (AddressOpt, AllowEmptyOpt, BackendOpt, ConfigArg, ExecutorOpt, JsonOpt, PairsOpt, QuietOpt,
                                  DeterministicOpt, SeedOpt, SolverOpt, TimeLimitOpt, WorkersOpt, check_outputs, exit_if_interrupted,
                                  exit_if_required_unplaced, fail, install_signal_handlers, load_inputs, out,
                                  progress, reported_errors, solve_options, write_outputs)
from placement.cli.replan import replan as _replan
from placement.cli.report import print_report
from placement.cli.sweep import sweep as _sweep
from placement.errors import InputError
from placement.generate.families import FAMILIES, write_instance
from placement.io.tables import read_plan_table
from placement.kernels import gpu_status
from placement.plan import package_version
from placement.validate.validator import validate_plan

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
JobsOpt = Annotated[Optional[Path], typer.Option("--jobs", help="jobs table (.parquet, .arrow, .csv); default: the config's inline [[jobs]]")]


@app.command()
def solve(
    config: ConfigArg,
    jobs: JobsOpt = None,
    pairs: PairsOpt = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="write the plan (.parquet, .csv, .json, .arrow)")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="write the summary JSON")] = None,
    solver: SolverOpt = None,
    time_limit: TimeLimitOpt = None,
    seed: SeedOpt = None,
    deterministic: DeterministicOpt = None,
    backend: BackendOpt = None,
    parts: Annotated[Optional[int], typer.Option(min=0, help="--solver decomposed: sub-problems; 0: one per worker")] = None,
    executor: ExecutorOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    allow_empty: AllowEmptyOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Solve a portfolio's jobs into a plan; print a summary, write the plan and summary."""
    with reported_errors():
        check_outputs((out_path,), summary_path)
        portfolio, job_table, pair_table = load_inputs(config, jobs, pairs, allow_empty)
        options = solve_options(portfolio, solver=solver, time_limit_s=time_limit, seed=seed, deterministic=deterministic,
                                backend=backend.value if backend else None, parts=parts, executor=executor,
                                workers=workers, address=address)
        with progress("solving", show=not (quiet or as_json)) as on_progress:
            plan = solve_plan(portfolio, job_table, pair_table, options, on_progress=on_progress)
        write_outputs(plan.table, out_path, plan.summary.to_dict(), summary_path)
        if as_json:
            print(json.dumps(plan.summary.to_dict(), indent=2, default=str))
        elif not quiet:
            print_report(plan.summary, out)
    exit_if_interrupted(plan.summary)
    exit_if_required_unplaced(plan.summary, plan.table)


@app.command()
def validate(
    config: ConfigArg,
    plan: Annotated[Path, typer.Option("--plan", help="plan file written by `placement solve --out`")],
    jobs: JobsOpt = None,
    pairs: PairsOpt = None,
) -> None:
    """Check a plan against every hard constraint: exit 0 when valid, 1 with the violations."""
    with reported_errors():
        portfolio, job_table, pair_table = load_inputs(config, jobs, pairs)
        violations = validate_plan(portfolio, job_table, read_plan_table(plan), pair_table)
    if not violations:
        out.print(f"valid: {job_table.num_rows:,} jobs, every hard constraint holds")
        return
    for v in violations:
        out.print(f"{v.kind}: job={v.job_id} site={v.site_id}: {v.message}", highlight=False)
    out.print(f"{len(violations)} violation(s)")
    raise typer.Exit(1)


@app.command()
def generate(
    family: Annotated[str, typer.Argument(help=" | ".join(FAMILIES))],
    n_jobs: Annotated[int, typer.Option("--jobs", min=1, help="number of jobs")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    n_sites: Annotated[int, typer.Option("--sites", min=1, help="number of sites (ignored with --portfolio)")] = 20,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    portfolio: Annotated[Optional[Path], typer.Option("--portfolio", help="use this config's sites instead of synthetic ones")] = None,
) -> None:
    """Write DIR/portfolio.toml and DIR/jobs.parquet (and DIR/pairs.parquet for tight-d/tight-e) for an instance family."""
    if family not in FAMILIES:
        raise fail(InputError("command line", [("FAMILY", f"unknown family '{family}': expected one of {', '.join(FAMILIES)}")]))
    try:
        paths = write_instance(family, n_jobs, n_sites, seed, out_dir, base_config=portfolio)
    except InputError as exc:
        raise fail(exc) from None
    except ValueError as exc:  # an option that does not apply to the family
        raise fail(InputError("command line", [("--portfolio", str(exc))])) from None
    out.print("wrote " + ", ".join(str(p) for p in paths), highlight=False, markup=False)


@app.command()
def info() -> None:
    """Version and the backends found on this machine."""
    lines = {"placement": package_version(), "python": platform.python_version(),
             "cpu cores": str(os.cpu_count())}
    try:
        import numba  # noqa: PLC0415

        lines["numba"] = f"{numba.__version__} (cpu backend available)"
    except ImportError:
        lines["numba"] = "not installed: cpu backend unavailable"
    try:
        import cupy  # noqa: PLC0415

        lines["cupy"] = cupy.__version__
    except ImportError:
        lines["cupy"] = "not installed (pip install 'placement[gpu]')"
    ok, why = gpu_status()
    lines["gpu"] = f"{why} (gpu backend available)" if ok else f"none: {why}"
    for k, v in lines.items():
        out.print(f"{k:>10}: {v}", highlight=False, markup=False)


# `placement replan` (for schedulers) and `placement sweep` (for planners) live in their own modules.
app.command(name="replan")(_replan)
app.command(name="sweep")(_sweep)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=os.environ.get("PLACEMENT_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    install_signal_handlers()
    app()


if __name__ == "__main__":
    main()
