"""What the ``solve`` and ``replan`` commands share: consoles, options, input loading, progress, exits."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import pyarrow as pa
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from placement.errors import InputError
from placement.io.config import load_config, validation_problems
from placement.io.tables import read_jobs, read_pairs
from placement.kernels.backend import Backend
from placement.model.portfolio import Portfolio, SolveOptions, SolverName
from placement.summary import Summary

out = Console()
err = Console(stderr=True, soft_wrap=True)

OUTPUT_SUFFIXES = (".parquet", ".csv", ".json", ".arrow", ".feather")

ConfigArg = Annotated[Path, typer.Argument(help="portfolio config (.toml, .yaml, .json)")]
PairsOpt = Annotated[Optional[Path], typer.Option("--pairs", help="pair-override table")]
SolverOpt = Annotated[Optional[str], typer.Option(help=" | ".join(get_args(SolverName)))]
TimeLimitOpt = Annotated[Optional[float], typer.Option("--time-limit", help="seconds")]
SeedOpt = Annotated[Optional[int], typer.Option(help="random seed")]
BackendOpt = Annotated[Optional[Backend], typer.Option(help="scoring backend")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
ExecutorOpt = Annotated[Optional[str], typer.Option(help="local (process pool) | ray (needs the 'distributed' extra)")]
WorkersOpt = Annotated[Optional[int], typer.Option(min=0, help="parallel workers; 0: all cores")]
AddressOpt = Annotated[Optional[str], typer.Option(help="an existing Ray cluster's address (with --executor ray)")]


def fail(exc: Exception, code: int = 2) -> typer.Exit:
    """Print an error (file, field and value are in its message) and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def load_inputs(config: Path, jobs: Path | None, pairs: Path | None) -> tuple[Portfolio, pa.Table, pa.Table | None]:
    """Portfolio, jobs (the --jobs file or the config's inline jobs) and pair overrides."""
    cfg = load_config(config)
    job_table = read_jobs(jobs, cfg.portfolio) if jobs else cfg.jobs
    if job_table is None:
        raise InputError(str(config), [("jobs", "no inline [[jobs]] in the config and no --jobs file given")])
    pair_table = read_pairs(pairs, cfg.portfolio, job_table) if pairs else (cfg.pairs if not jobs else None)
    return cfg.portfolio, job_table, pair_table


def solve_options(portfolio: Portfolio, **given: Any) -> SolveOptions:
    """The config's [solve] options with the command line's given values (None: not given) on top."""
    try:
        return portfolio.solve.model_validate(
            {**portfolio.solve.model_dump(), **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as exc:
        raise option_error(exc) from None


def option_error(exc: ValidationError) -> InputError:
    """Bad option values, each named by its flag (``time_limit_s`` is ``--time-limit``)."""
    problems = [("--" + loc.removesuffix("_s").replace("_", "-"), msg) for loc, msg in validation_problems(exc)]
    return InputError("command line", problems)


def check_outputs(tables: tuple[Path | None, ...], summary: Path | None) -> None:
    """Reject unknown output extensions before any work, so a bad name never costs a solve."""
    for path in (*tables, summary):
        if path is not None and path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise InputError(str(path), [("", f"unknown output extension '{path.suffix}': expected one of "
                                              f"{', '.join(OUTPUT_SUFFIXES)}")])
    if summary is not None and summary.suffix.lower() != ".json":
        raise InputError(str(summary), [("", "the summary is JSON: use a .json file name")])


@contextlib.contextmanager
def progress(label: str, show: bool) -> Iterator[Callable[[float, float], None]]:
    """A spinner showing incumbent and bound while it runs (nothing when ``show`` is false)."""
    if not show:
        yield lambda objective, bound: None
        return
    with out.status(f"{label}...", spinner="dots") as status:
        yield lambda objective, bound: status.update(
            f"{label}... incumbent ${objective:,.2f}/h, bound ${bound:,.2f}/h")


def exit_if_required_unplaced(summary: Summary, table: pa.Table) -> None:
    """Exit 3, naming each required job that could not be placed and why (the plan is written)."""
    required = set(summary.required_unplaced or [])
    if not required:
        return
    for row in table.select(["job_id", "status", "reason", "reason_detail"]).to_pylist():
        if row["job_id"] in required and row["status"] == "unplaced":
            err.print(f"infeasible: required job {row['job_id']} cannot be placed: "
                      f"{row['reason']}: {row['reason_detail']}", highlight=False, markup=False)
    raise typer.Exit(3)
