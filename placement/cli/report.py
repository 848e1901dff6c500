"""Terminal report of a plan: objective and gap, placement by tier, site use, unplaced reasons."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from placement.summary import Summary

MAX_SITE_ROWS = 25


def money(x: float | None) -> str:
    """Dollars per hour for tables, '-' when unknown."""
    return "-" if x is None else f"${x:,.2f}/h"


def print_report(summary: Summary, console: Console) -> None:
    """Print the summary tables of a plan."""
    gap = summary.gap
    head = Table(title=f"placement {summary.version} - solver {summary.solver} "
                       f"({summary.status.value}), backend {summary.backend}, {summary.seconds:.2f} s",
                 show_header=False)
    head.add_row("objective", money(summary.objective))
    head.add_row("best bound", money(summary.bound))
    head.add_row("gap", "-" if gap is None else f"{gap:.3%}")
    for key, value in summary.objective_breakdown.items():
        head.add_row(f"  {key.removesuffix('_usd_per_hour')}", money(value))
    head.add_row("jobs placed", f"{summary.jobs_placed:,} of {summary.jobs_total:,}")
    head.add_row("GPUs placed / MW used", f"{summary.gpus_placed:,} / {summary.mw_used:,.2f} MW")
    console.print(head)

    tiers = Table(title="by priority tier (highest first)")
    for col in ("priority", "jobs", "placed", "unplaced", "GPUs placed", "objective"):
        tiers.add_column(col, justify="right")
    for prio, row in summary.objective_by_tier.items():
        tiers.add_row(prio, f"{row['jobs']:,}", f"{row['placed']:,}", f"{row['jobs'] - row['placed']:,}",
                      f"{row['gpus_placed']:,}", money(row["objective"]))
    console.print(tiers)

    sites = Table(title="sites (most MW first)")
    for col in ("site", "MW used / cap", "GPUs used / inventory by type"):
        sites.add_column(col)
    prices = summary.shadow_price_usd_per_mwh
    if prices:
        sites.add_column("$/MWh shadow", justify="right")
    ranked = sorted(summary.sites, key=lambda s: -s["mw_used"])
    for s in ranked[:MAX_SITE_ROWS]:
        gpus = ", ".join(f"{t} {u:,}/{c:,}" for t, (u, c) in s["gpus"].items())
        row = [escape(s["site_id"]), f"{s['mw_used']:,.2f} / {s['mw_cap']:,.2f}", gpus]
        if prices:
            row.append(f"{prices[s['site_id']]:,.1f}")
        sites.add_row(*row)
    if len(ranked) > MAX_SITE_ROWS:
        sites.caption = f"{len(ranked) - MAX_SITE_ROWS} more sites in the summary JSON"
    console.print(sites)

    if summary.unplaced_by_reason:
        why = Table(title="unplaced jobs by reason")
        why.add_column("reason")
        why.add_column("jobs", justify="right")
        for reason, count in sorted(summary.unplaced_by_reason.items(), key=lambda kv: -kv[1]):
            why.add_row(reason, f"{count:,}")
        console.print(why)
    print_required_unplaced(summary, console)


def print_required_unplaced(summary: Summary, console: Console) -> None:
    """The first required jobs left unplaced, if any (the plan is infeasible)."""
    if summary.required_unplaced:
        console.print(f"[bold red]infeasible:[/] required jobs unplaced: "
                      f"{escape(', '.join(summary.required_unplaced[:20]))}")
