"""What the commands share: consoles, options, input loading, progress, outputs, errors and exits.

Exit codes (every command): 0 done; 1 an invalid plan (``validate``) or a failed scenario
(``sweep``); 2 bad input (file, field and value are named) or an unusable backend; 3 a required
job cannot be placed (the plan is still written); 4 an internal error, a bug (the traceback goes
to a file the message names, and no output is written); 128 + the signal (130 for SIGINT, 143 for
SIGTERM) when stopped by a signal: the best valid plan found so far is written, with status
``interrupted``, or nothing when there was none yet.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import pyarrow as pa
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from placement.errors import BackendUnavailableError, InputError
from placement.io.config import load_config, validation_problems
from placement.io.tables import check_writable, json_writer, read_jobs, read_pairs, table_writer, write_together
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
DeterministicOpt = Annotated[Optional[bool], typer.Option(
    "--deterministic/--no-deterministic",
    help="work budgets instead of seconds, one thread per engine: the same plan under any load")]
BackendOpt = Annotated[Optional[Backend], typer.Option(help="scoring backend")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the summary as JSON")]
ExecutorOpt = Annotated[Optional[str], typer.Option(help="local (process pool) | ray (needs the 'distributed' extra)")]
WorkersOpt = Annotated[Optional[int], typer.Option(min=0, help="parallel workers; 0: all cores")]
AddressOpt = Annotated[Optional[str], typer.Option(help="an existing Ray cluster's address (with --executor ray)")]


EXIT_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_BUG = 4


def fail(exc: Exception, code: int = EXIT_INPUT) -> typer.Exit:
    """Print an error (file, field and value are in its message) and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


_signal_seen: list[int] = []


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGINT / SIGTERM: stop the solve once (solvers return their best plan); later ones wait."""
    if _signal_seen:
        return
    _signal_seen.append(signum)
    raise KeyboardInterrupt


def install_signal_handlers() -> None:
    """SIGTERM (how Kubernetes and Slurm stop a process) and SIGINT both stop the solve gracefully."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def interrupt_code() -> int:
    """128 + the signal that stopped the run (SIGINT when it came another way)."""
    return 128 + (_signal_seen[0] if _signal_seen else int(signal.SIGINT))


def crash_report(exc: BaseException) -> Path:
    """Write ``exc``'s traceback to a new file in the temp folder; return its path."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"placement-crash-{stamp}-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(traceback.format_exception(exc)))
    return Path(path)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Turn what a command raises into its message and exit code (module docstring)."""
    try:
        yield
    except typer.Exit:
        raise
    except (InputError, BackendUnavailableError) as exc:
        raise fail(exc) from None
    except ValidationError as exc:  # a model built from already-checked input: still the input's fault
        raise fail(InputError("input", validation_problems(exc))) from None
    except KeyboardInterrupt:
        err.print("interrupted before any plan was found: nothing written", highlight=False, markup=False)
        raise typer.Exit(interrupt_code()) from None
    except Exception as exc:  # anything else is a bug: say so, keep the traceback, write nothing
        path = crash_report(exc)
        first = (str(exc).splitlines() or [""])[0][:200]
        err.print(f"internal error (this is a bug, please report it): {type(exc).__name__}: {first}; "
                  f"the traceback is in {path}", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_BUG) from None


def write_outputs(table: pa.Table, table_path: Path | None, summary: dict | None, summary_path: Path | None,
                  extra: Sequence[tuple[Path | None, pa.Table]] = ()) -> None:
    """Write a command's plan, summary and extra tables together (all or none appear)."""
    files = [(p, table_writer(t, p)) for p, t in ((table_path, table), *extra) if p is not None]
    if summary_path is not None:
        files.append((summary_path, json_writer(summary)))
    write_together(files)


def exit_if_interrupted(summary: Summary) -> None:
    """Exit 128 + signal when the solve was stopped by a signal (its best plan is written)."""
    if summary.status.value == "interrupted":
        err.print("interrupted: wrote the best plan found so far (status interrupted)",
                  highlight=False, markup=False)
        raise typer.Exit(interrupt_code())


AllowEmptyOpt = Annotated[bool, typer.Option("--allow-empty", help="accept a jobs table with no rows")]


def load_inputs(config: Path, jobs: Path | None, pairs: Path | None,
                allow_empty: bool = False) -> tuple[Portfolio, pa.Table, pa.Table | None]:
    """Portfolio, jobs (the --jobs file or the config's inline jobs) and pair overrides; a jobs
    table with no rows is an error unless ``allow_empty`` (a truncated export, most likely)."""
    cfg = load_config(config)
    job_table = read_jobs(jobs, cfg.portfolio) if jobs else cfg.jobs
    if job_table is None:
        raise InputError(str(config), [("jobs", "no inline [[jobs]] in the config and no --jobs file given")])
    if job_table.num_rows == 0 and not allow_empty:
        raise InputError(str(jobs or config), [("", "no jobs: the table has only a header (pass --allow-empty "
                                                    "to solve it anyway)")])
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
    """Reject unknown output extensions and paths that cannot be written before any work, so a
    bad name never costs a solve."""
    for path in (*tables, summary):
        if path is not None and path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise InputError(str(path), [("", f"unknown output extension '{path.suffix}': expected one of "
                                              f"{', '.join(OUTPUT_SUFFIXES)}")])
    if summary is not None and summary.suffix.lower() != ".json":
        raise InputError(str(summary), [("", "the summary is JSON: use a .json file name")])
    given = [p for p in (*tables, summary) if p is not None]
    if len({p.resolve() for p in given}) < len(given):
        raise InputError("command line", [("", "two outputs name the same file: "
                                               + ", ".join(str(p) for p in given))])
    check_writable(given)


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
