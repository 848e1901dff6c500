"""A sweep's comparison as Markdown and as a matplotlib chart."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from placement.io.tables import atomic_write
from placement.model.portfolio import SolveOptions


def _money(x: float | None) -> str:
    return "" if x is None else f"{x:,.0f}"


def _signed(x: float | None) -> str:
    return "" if x is None else f"{x:+,.0f}"


def write_markdown(table: pa.Table, path: Path, options: SolveOptions) -> None:
    """One line per scenario: status, objective, change against the base, gap, GPUs, MW, tiers."""
    rows = table.to_pylist()
    tiers = [c.removeprefix("mw_priority_") for c in table.column_names if c.startswith("mw_priority_")]
    head = ["scenario", "status", "objective $/h", "vs base $/h", "gap", "GPUs placed", "MW used",
            *[f"MW p{t}" for t in tiers], "highest shadow prices", "s"]
    lines = [
        "# Scenario sweep",
        "",
        f"Solver `{options.solver}`, time limit {options.time_limit_s:g} s per scenario, seed {options.seed}. "
        "Objective: net $/h (value minus energy, carbon, pair and migration costs); gap against the best bound.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        gap = "" if r["gap"] is None else f"{100 * r['gap']:.2f}%"
        mw = "" if r["mw_used"] is None else f"{r['mw_used']:,.1f}"
        status = r["status"] + (" (resumed)" if r["resumed"] else "")
        cells = [r["scenario"], status, _money(r["objective_usd_per_hour"]), _signed(r["delta_vs_base_usd_per_hour"]),
                 gap, "" if r["gpus_placed"] is None else f"{r['gpus_placed']:,}", mw,
                 *["" if r[f"mw_priority_{t}"] is None else f"{r[f'mw_priority_{t}']:,.1f}" for t in tiers],
                 r["top_shadow_sites"], f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    errors = [r for r in rows if r["error"]]
    if errors:
        lines += ["", "## Problems", ""] + [f"- **{r['scenario']}** ({r['status']}): {r['error']}" for r in errors]
    text = "\n".join(lines) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_chart(table: pa.Table, path: Path) -> None:
    """Bars of each scenario's change in $/h against the base, and of its MW used."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in table.to_pylist() if r["objective_usd_per_hour"] is not None]
    names = [r["scenario"] for r in rows]
    delta = [r["delta_vs_base_usd_per_hour"] or 0.0 for r in rows]
    mw = [r["mw_used"] for r in rows]
    height = max(2.5, 0.35 * len(rows) + 1.2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    ax1.barh(names, delta, color=["#2a9d8f" if d >= 0 else "#e76f51" for d in delta])
    ax1.axvline(0, color="black", linewidth=0.8)
    ax1.set_xlabel("net value vs base ($/h)")
    ax2.barh(names, mw, color="#457b9d")
    ax2.set_xlabel("facility MW used")
    ax1.invert_yaxis()
    fig.suptitle("Scenario sweep")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
