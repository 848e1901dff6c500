"""The ``placement`` command line: solve, validate, replan, generate, info.

Exit codes: 0 ok; 1 an invalid plan (``validate``); 2 bad input or an unusable backend;
3 a required job cannot be placed (the plan is still written, with it unplaced).
"""

from __future__ import annotations

import json
import logging
import os
import platform
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from placement.errors import BackendUnavailableError, InputError
from placement.replan_cli import replan as _replan

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_show_locals=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)


class BackendChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"
    reference = "reference"


ConfigArg = Annotated[Path, typer.Argument(help="portfolio config (.toml, .yaml, .json)")]
JobsOpt = Annotated[Optional[Path], typer.Option("--jobs", help="jobs table (.parquet, .arrow, .csv); default: the config's inline [[jobs]]")]
PairsOpt = Annotated[Optional[Path], typer.Option("--pairs", help="pair-override table")]


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _load(config: Path, jobs: Path | None, pairs: Path | None):
    from placement.config import load_config  # noqa: PLC0415
    from placement.io import read_jobs, read_pairs  # noqa: PLC0415

    cfg = load_config(config)
    job_table = read_jobs(jobs, cfg.portfolio) if jobs else cfg.jobs
    if job_table is None:
        raise InputError(str(config), [("jobs", "no inline [[jobs]] in the config and no --jobs file given")])
    pair_table = read_pairs(pairs, cfg.portfolio, job_table) if pairs else (cfg.pairs if not jobs else None)
    return cfg.portfolio, job_table, pair_table


@app.command()
def solve(
    config: ConfigArg,
    jobs: JobsOpt = None,
    pairs: PairsOpt = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="write the plan (.parquet, .csv, .json, .arrow)")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="write the summary JSON")] = None,
    solver: Annotated[Optional[str], typer.Option(help="auto | greedy | exact | price | lns")] = None,
    time_limit: Annotated[Optional[float], typer.Option("--time-limit", help="seconds")] = None,
    seed: Annotated[Optional[int], typer.Option(help="random seed")] = None,
    backend: Annotated[Optional[BackendChoice], typer.Option(help="scoring backend")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Solve a portfolio's jobs into a plan; print a summary, write the plan and summary."""
    from placement.api import solve as solve_plan  # noqa: PLC0415

    try:
        portfolio, job_table, pair_table = _load(config, jobs, pairs)
        given = {"solver": solver, "time_limit_s": time_limit, "seed": seed,
                 "backend": backend.value if backend else None}
        options = portfolio.solve.model_validate(
            {**portfolio.solve.model_dump(), **{k: v for k, v in given.items() if v is not None}})
        for path in (out_path, summary_path):
            if path is not None and path.suffix.lower() not in (".parquet", ".csv", ".json", ".arrow", ".feather"):
                raise InputError(str(path), [("", f"unknown output extension '{path.suffix}'")])
        if summary_path is not None and summary_path.suffix.lower() != ".json":
            raise InputError(str(summary_path), [("", "the summary is JSON: use a .json file name")])
        show = not (quiet or as_json)
        with out.status("solving...", spinner="dots") if show else _Null() as status:
            def progress(objective: float, bound: float) -> None:
                if show:
                    status.update(f"solving... incumbent ${objective:,.2f}/h, bound ${bound:,.2f}/h")
            plan = solve_plan(portfolio, job_table, pair_table, options, on_progress=progress)
    except (InputError, BackendUnavailableError) as exc:
        raise _fail(exc) from None
    except ValueError as exc:  # e.g. an unknown solver name or invalid option value
        raise _fail(InputError("command line", [("", str(exc).splitlines()[0])])) from None
    if out_path:
        plan.write(out_path)
    if summary_path:
        plan.write_summary(summary_path)
    if as_json:
        print(json.dumps(plan.summary, indent=2, default=str))
    elif not quiet:
        from placement.report import print_report  # noqa: PLC0415

        print_report(plan.summary, out)
    required = set(plan.summary["required_unplaced"])
    if required:
        for row in plan.table.select(["job_id", "status", "reason", "reason_detail"]).to_pylist():
            if row["job_id"] in required and row["status"] == "unplaced":
                err.print(f"infeasible: required job {row['job_id']} cannot be placed: "
                          f"{row['reason']}: {row['reason_detail']}", highlight=False)
        raise typer.Exit(3)


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *_: object) -> None:
        return None


@app.command()
def validate(
    config: ConfigArg,
    plan: Annotated[Path, typer.Option("--plan", help="plan file written by `placement solve --out`")],
    jobs: JobsOpt = None,
    pairs: PairsOpt = None,
) -> None:
    """Check a plan against every hard constraint: exit 0 when valid, 1 with the violations."""
    from placement.io import read_plan_table  # noqa: PLC0415
    from placement.validate import validate_plan  # noqa: PLC0415

    try:
        portfolio, job_table, pair_table = _load(config, jobs, pairs)
        violations = validate_plan(portfolio, job_table, read_plan_table(plan), pair_table)
    except InputError as exc:
        raise _fail(exc) from None
    if not violations:
        out.print(f"valid: {job_table.num_rows:,} jobs, every hard constraint holds")
        return
    for v in violations:
        out.print(f"{v.kind}: job={v.job_id} site={v.site_id}: {v.message}", highlight=False)
    out.print(f"{len(violations)} violation(s)")
    raise typer.Exit(1)


@app.command()
def generate(
    family: Annotated[str, typer.Argument(help="neocloud | frontier | inference | power-bound | gpu-bound")],
    n_jobs: Annotated[int, typer.Option("--jobs", min=1, help="number of jobs")],
    out_dir: Annotated[Path, typer.Option("--out", help="output folder")],
    n_sites: Annotated[int, typer.Option("--sites", min=1, help="number of sites (ignored with --portfolio)")] = 20,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    portfolio: Annotated[Optional[Path], typer.Option("--portfolio", help="use this config's sites instead of synthetic ones")] = None,
) -> None:
    """Write DIR/portfolio.toml and DIR/jobs.parquet for an instance family."""
    from placement.generate import FAMILIES, write_instance  # noqa: PLC0415

    if family not in FAMILIES:
        raise _fail(InputError("command line", [("FAMILY", f"unknown family '{family}': expected one of {', '.join(FAMILIES)}")]))
    try:
        paths = write_instance(family, n_jobs, n_sites, seed, out_dir, base_config=portfolio)
    except InputError as exc:
        raise _fail(exc) from None
    out.print(f"wrote {paths[0]} and {paths[1]}")


@app.command()
def info() -> None:
    """Version and the backends found on this machine."""
    from placement.kernels import gpu_status  # noqa: PLC0415
    from placement.plan import package_version  # noqa: PLC0415

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


# `placement replan` lives in its own module (it is the scheduler-facing half of the CLI).
app.command(name="replan")(_replan)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=os.environ.get("PLACEMENT_LOG", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
