"""The report of one run: the JSON document as plain JSON types, the Markdown tables, the plots.

``write`` puts ``<stem>.json`` and ``<stem>.md`` (and, with ``plots``, ``<stem>-scaling.png`` and
``<stem>-quality.png`` from ``bench.plots``) in the output folder, each replaced atomically.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench import plots as plotting


def jsonable(x: Any) -> Any:
    """Plain JSON types (NumPy scalars/arrays, tuples, inf/nan as None)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


def write(doc: dict[str, Any], out: Path, stem: str, plots: bool) -> dict[str, str]:
    """Write ``doc`` under ``out`` as ``stem``.json/.md (and PNGs with ``plots``); return the paths."""
    paths = {"json": str(out / f"{stem}.json"), "markdown": str(out / f"{stem}.md")}
    if plots:
        paths.update(plotting.write_all(doc, out / stem))
        doc["paths"] = paths
    _atomic(Path(paths["json"]), json.dumps(jsonable(doc), indent=1) + "\n")
    _atomic(Path(paths["markdown"]), markdown(doc))
    return paths


def save_result(result: dict[str, Any], markdown_text: str, out: Path, stem: str) -> None:
    """Write one bench's ``result`` as ``out/stem.json`` and its table as ``out/stem.md``, print
    the table and where both went."""
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / f"{stem}.json", json.dumps(jsonable(result), indent=2) + "\n")
    _atomic(out / f"{stem}.md", markdown_text)
    print(markdown_text)
    print(f"wrote {out / stem}.json and .md")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- Markdown ------------------------------------------------------------------------------


def _usd(x: Any) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _sec(x: Any) -> str:
    return "never" if x is None else f"{x:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    """The human-readable report of one run."""
    c = doc["config"]
    v = doc["versions"]
    lines = [
        f"# placement benchmark — {doc['date']} on {doc['host']}, backend `{doc['backend']}`",
        "",
        f"- Device: {doc['device']}; {doc['cpus']} CPUs, {doc['memory_gb']} GB RAM "
        f"(solver processes killed above {doc.get('memory_limit_gb')} GB).",
        f"- Time limit {c['time_limit_s']:g} s per solver, {c['threads']} threads (CP-SAT workers, HiGHS "
        f"threads, our exact stage), seed {c['seed']}; every solver in its own process, one at a time.",
        "- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".",
        "- Timings are wall-clock on this host; on a shared machine they are noisy.",
        "",
        "Columns: **objective** Σ net $/h of the validated plan; **tiers** the same per priority tier, highest "
        "first; **lex** rank of the plan when tiers are compared highest first (1 = best); **bound** the "
        "solver's own upper bound on the lexicographic optimum's total $/h; **own gap** (bound − objective) / "
        "bound; **gap to best** against the smallest bound any solver proved; **t→1%** seconds until the "
        "incumbent was within 1% of the best bound (never: not in the time limit); **time** wall seconds of "
        "the solve (ours: compile + solve + validate; peers: model build + solve); **RSS** peak resident MB "
        "of the solver's process. A negative gap to best means the plan beats the lexicographic optimum's "
        "total by giving up value in a higher tier.",
        "",
    ]
    losses = []
    for inst in doc["instances"]:
        res = inst["results"]
        lines += [f"## {inst['family']} / {inst['size']} ({inst['jobs']:,} jobs × {inst['sites']:,} sites)", ""]
        bb = inst.get("best_bound")
        lines += [f"Best bound: {_usd(bb)} $/h (from {inst.get('best_bound_from') or '—'}).", ""]
        lines += ["| solver | built | status | objective $/h | tiers $/h | lex | bound $/h | own gap | gap to best "
                  "| t→1% s | time s | RSS MB | note |",
                  "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
        for name, r in res.items():
            tiers = " / ".join(_usd(t) for t in r.get("tiers") or []) or "—"
            status = r.get("status", "?") + ("" if r.get("valid", True) or r.get("objective") is None else " INVALID")
            lines.append(
                f"| {name} | {'yes' if r.get('built') else 'no'} | {status} | {_usd(r.get('objective'))} | "
                f"{tiers} | {r.get('lex_rank') or '—'} | {_usd(r.get('bound'))} | {_pct(r.get('gap'))} | "
                f"{_pct(r.get('gap_to_best'))} | {_sec(r.get('t_1pct_best'))} | {_sec(r.get('seconds'))} | "
                f"{r.get('peak_rss_mb', 0):,.0f} | {_cell(r.get('note', ''))[:200]} |")
        lines.append("")
        losses += _losses(inst)
    lines += ["## Where ours loses", "",
              "Strict tiers are the product's objective, so a peer *beats* ours only when its plan is "
              "lexicographically better; a peer with a higher total but a worse higher tier is listed apart.", ""]
    lines += losses or ["- Nowhere in this run."]
    lines.append("")
    if doc.get("kernels"):
        lines += ["## Scaling: one best-candidate kernel pass", "",
                  "Every job scored against every pool of its class with full residuals and zero prices "
                  "(median of up to 5 passes after a first, JIT/upload, call).", "",
                  "| backend | instance | jobs × sites | candidates | pass s | M cand/s | first call s | RSS MB "
                  "| status |", "|---|---|--:|--:|--:|--:|--:|--:|---|"]
        for k in doc["kernels"]:
            cps, first, sec = k.get("candidates_per_second"), k.get("first_call_seconds"), k.get("pass_seconds")
            lines.append(f"| {k['backend']} | {k['family']}/{k['size']} | {k['cells']:,} | "
                         f"{k.get('candidates', 0):,} | {'—' if sec is None else f'{sec:.3g}'} | "
                         f"{'—' if not cps else f'{cps / 1e6:,.3g}'} | "
                         f"{'—' if first is None else f'{first:.2f}'} | {k.get('peak_rss_mb', 0):,.0f} | "
                         f"{k.get('status', '')} {_cell(k.get('note', ''))} |")
        lines.append("")
    sc = doc.get("scaling")
    if sc:
        lines += ["## Scaling: log-log slopes against jobs × sites", "",
                  "| series | points (jobs × sites: seconds) | slope |", "|---|---|--:|"]
        for b, k in sc["kernel_pass"].items():
            lines.append(f"| kernel pass, {b} | {_pts(k['points'])} | {_slope(k['slope'])} |")
        for s_, k in sc["solve"].items():
            cap = " (capped by the time limit: not a complexity)" if k["capped_by_time_limit"] else ""
            lines.append(f"| total solve, {s_} (median over families) | {_pts(k['points'])} | "
                         f"{_slope(k['slope'])}{cap} |")
        lines.append("")
    if doc.get("paths", {}).get("scaling_png"):
        lines += [f"![scaling]({Path(doc['paths']['scaling_png']).name})",
                  f"![quality]({Path(doc['paths']['quality_png']).name})", ""]
    return "\n".join(lines)


def _losses(inst: dict[str, Any]) -> list[str]:
    """Lines for each peer that beats ours on this instance (lexicographically, or on total only)."""
    res, out = inst["results"], []
    where = f"{inst['family']}/{inst['size']}"
    ours = res.get("ours", {})
    for name, r in res.items():
        if name == "ours" or r.get("objective") is None or not r.get("valid"):
            continue
        if ours.get("objective") is None or not ours.get("valid"):
            out.append(f"- {where}: ours has no valid plan ({ours.get('note', '')[:120]}); **{name}** has one.")
            continue
        d = r["objective"] - ours["objective"]
        rel = d / max(abs(ours["objective"]), 1e-9)
        tiers = list(zip(r.get("tiers") or [], ours.get("tiers") or []))
        first = next(((k, a - b) for k, (a, b) in enumerate(tiers)
                      if abs(a - b) > 1e-7 * max(1.0, abs(a), abs(b))), None)
        times = f"(ours {ours.get('seconds', 0):.1f} s, {name} {r.get('seconds', 0):.1f} s)"
        if first is not None and first[1] > 0:
            out.append(f"- {where}: **{name} beats ours**: ${first[1]:,.0f}/h more in tier {first[0] + 1} "
                       f"(counting from the highest); total {d:+,.0f} $/h ({100 * rel:+.2f}%) {times}.")
        elif d > 1e-6 * max(1.0, abs(ours["objective"])):
            lead = f"${-first[1]:,.0f}/h more in tier {first[0] + 1}" if first else "equal tiers"
            out.append(f"- {where}: {name} has a higher total, {d:+,.0f} $/h ({100 * rel:+.2f}%), but ours is "
                       f"lexicographically better ({lead}) {times}.")
    return out


def _pts(points: list) -> str:
    return ", ".join(f"{c:,.0f}: {t:.3g}" for c, t in points) or "—"


def _slope(x: float | None) -> str:
    return "n/a (one size)" if x is None else f"{x:.2f}"