"""``placement replan``: re-plan after events, starting from the plan running now; print the diff.

Registered on the main app by ``placement.cli.main`` (``app.command()(replan)``). Exit codes as for
``solve``: 0 ok; 2 bad input (a config, table, plan, option or ``--event`` problem: the message
names the file or event text and the field); 3 a required job cannot be placed (the plan is
still written, with the job unplaced and the reason printed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from placement.cli.common import (AllowEmptyOpt, BackendOpt, ConfigArg, JsonOpt, PairsOpt, QuietOpt, DeterministicOpt, SeedOpt, SolverOpt,
                                  TimeLimitOpt, check_outputs, exit_if_interrupted, exit_if_required_unplaced,
                                  load_inputs, option_error, out, progress, reported_errors, write_outputs)
from placement.cli.report import money, print_required_unplaced
from placement.model.events import parse_event
from placement.replan import replan as run_replan
from placement.replan import replan_options
from placement.summary import Summary

MAX_CHANGE_ROWS = 30
MAX_SITE_ROWS = 25
_ORDER = {"moved": 0, "stopped": 1, "started": 2, "departed": 3, "unchanged": 4}


def replan(
    config: ConfigArg,
    jobs: Annotated[Optional[Path], typer.Option("--jobs", help="jobs table as it is now (.parquet, .arrow, .csv); default: the config's inline jobs")] = None,
    plan: Annotated[Optional[Path], typer.Option("--plan", help="the plan running now (from `placement solve --out` or `replan --out`); default: the jobs' current_site / current_gpu_type")] = None,
    event: Annotated[Optional[list[str]], typer.Option("--event", help="an event, repeatable: 'curtail site=ID grid_mw=X', 'outage site=ID', 'online site=ID', 'offline site=ID', 'pool site=ID gpu_type=T gpus=N'")] = None,
    max_moves: Annotated[Optional[int], typer.Option("--max-moves", min=0, help="most jobs that may move")] = None,
    max_migration_usd: Annotated[Optional[float], typer.Option("--max-migration-usd", min=0.0, help="most one-off migration $ in all")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", min=0.0, help="$/h a move must gain beyond its migration cost (per gang or replica)")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="write the new plan (.parquet, .csv, .json, .arrow)")] = None,
    summary_path: Annotated[Optional[Path], typer.Option("--summary", help="write the summary JSON (with its 'changes' section)")] = None,
    changes_path: Annotated[Optional[Path], typer.Option("--changes", help="write the per-job diff table (.parquet, .csv, .json, .arrow)")] = None,
    pairs: PairsOpt = None,
    improve: Annotated[bool, typer.Option("--improve", help="also move running jobs wherever a move pays (within --max-moves / --max-migration-usd, beyond --threshold); default: react only to events and arrivals, so an unchanged plan stays as it is")] = False,
    polish: Annotated[bool, typer.Option("--polish/--no-polish", help="with --improve, auto on large instances: improve the warm start by LNS (--no-polish: fewest changes)")] = True,
    solver: SolverOpt = None,
    time_limit: TimeLimitOpt = None,
    seed: SeedOpt = None,
    deterministic: DeterministicOpt = None,
    backend: BackendOpt = None,
    allow_empty: AllowEmptyOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-plan after events from the plan running now: write the new plan, print what changes."""
    with reported_errors():
        check_outputs((out_path, changes_path), summary_path)
        portfolio, job_table, pair_table = load_inputs(config, jobs, pairs, allow_empty)
        events = [parse_event(text, portfolio) for text in event or []]
        try:
            options = replan_options(portfolio, None, solver=solver, time_limit_s=time_limit, seed=seed, deterministic=deterministic,
                                     backend=backend.value if backend else None, max_moves=max_moves,
                                     max_migration_usd=max_migration_usd, move_threshold_usd_per_hour=threshold,
                                     improve=improve, polish=polish)
        except ValidationError as exc:
            raise option_error(exc) from None
        with progress("re-planning", show=not (quiet or as_json)) as on_progress:
            result = run_replan(portfolio, job_table, plan, events, options, pair_table, on_progress=on_progress)
        write_outputs(result.table, out_path, result.summary.to_dict(), summary_path,
                      extra=[(changes_path, result.changes)])
        if as_json:
            print(json.dumps(result.summary.to_dict(), indent=2, default=str))
        elif not quiet:
            print_changes(result.summary, result.changes, out)
    exit_if_interrupted(result.summary)
    exit_if_required_unplaced(result.summary, result.table)


def print_changes(summary: Summary, changes: Any, console: Console) -> None:
    """Print the re-plan: headline counts, the jobs that change, and MW per site that changed."""
    c = summary.changes or {}
    gap = summary.gap
    head = Table(title=f"re-plan - solver {summary.solver} ({summary.status.value}), backend "
                       f"{summary.backend}, {summary.seconds:.2f} s", show_header=False)
    head.add_row("events", "; ".join(c["events"]) or "none")
    head.add_row("objective", money(summary.objective))
    head.add_row("best bound / gap", f"{money(summary.bound)} / {'-' if gap is None else f'{gap:.3%}'}")
    head.add_row("moved / stopped / started", f"{c['moved']:,} / {c['stopped']:,} / {c['started']:,}")
    head.add_row("unchanged (running)", f"{c['unchanged']:,} ({c['unchanged_running']:,})")
    head.add_row("arrived / departed", f"{c['arrived']:,} / {c['departed']:,}")
    head.add_row("migration (one-off)", f"${c['migration_usd']:,.2f}")
    budget = [f"max_moves {c['max_moves']}" if c["max_moves"] is not None else "",
              f"max_migration_usd {c['max_migration_usd']:,.2f}" if c["max_migration_usd"] is not None else ""]
    head.add_row("migration budget", ", ".join(b for b in budget if b) or "none")
    head.add_row("MW shed", f"{c['mw_shed']:,.3f} MW")
    console.print(head)

    rows = [r for r in changes.to_pylist() if r["change"] != "unchanged"]
    if rows:
        rows.sort(key=lambda r: (_ORDER[r["change"]], -(r["priority"] or 0), r["job_id"]))
        diff = Table(title="jobs that change")
        for col in ("job", "change", "from", "to", "reason"):
            diff.add_column(col)
        for r in rows[:MAX_CHANGE_ROWS]:
            why = r["reason"] + (f": {r['detail']}" if r["detail"] else "")
            diff.add_row(escape(r["job_id"]), r["change"], escape(r["from_rows"] or "-"), escape(r["to_rows"] or "-"),
                         escape(why))
        if len(rows) > MAX_CHANGE_ROWS:
            diff.caption = f"{len(rows) - MAX_CHANGE_ROWS:,} more: write them all with --changes FILE"
        console.print(diff)

    if c["sites"]:
        sites = Table(title="MW by site (sites that changed or had an event)")
        for col in ("site", "MW before", "MW after", "cap", "MW shed", "events"):
            sites.add_column(col, justify="left" if col in ("site", "events") else "right")
        ranked = sorted(c["sites"], key=lambda s: (-s["mw_shed"], s["site_id"]))
        for s in ranked[:MAX_SITE_ROWS]:
            sites.add_row(escape(s["site_id"]), f"{s['mw_before']:,.3f}", f"{s['mw_after']:,.3f}", f"{s['mw_cap']:,.3f}",
                          f"{s['mw_shed']:,.3f}", "; ".join(s["events"]))
        if len(ranked) > MAX_SITE_ROWS:
            sites.caption = f"{len(ranked) - MAX_SITE_ROWS} more sites in the summary JSON"
        console.print(sites)
    print_required_unplaced(summary, console)
