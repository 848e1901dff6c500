"""The per-job diff of a re-plan: the ``changes`` table and the summary's ``changes`` section.

A job is moved (from → to), stopped, started, unchanged or departed, with the reason; see
``placement.replan.run.ReplanPlan`` for the columns and ``placement.replan.run`` for what counts as a move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from placement.core.objective import candidate_speed, net_before_migration, unit_terms
from placement.core.problem import Filter, Problem
from placement.core.solution import Reason, Solution, solution_terms
from placement.model.events import Event
from placement.model.portfolio import Portfolio
from placement.plan import FILTER_TEXT, Plan
from placement.replan.state import CurrentState, ReplanOptions
from placement.solvers.repair import Cause, Current, RepairReport

CHANGES = ("moved", "stopped", "started", "unchanged", "departed")
_STRING = pa.string()

# Why a job could not stay where it ran, by the repair's cause.
_CAUSE_TEXT = {Cause.INELIGIBLE: "it may no longer run where it ran",
               Cause.POWER: "its site is over its power cap", Cause.GPUS: "its pool is over its GPUs",
               Cause.BUDGET: "the migration budget"}


@dataclass
class ReplanOutcome:
    """What a re-plan started from and decided: everything its per-job diff is built from."""

    portfolio: Portfolio  # events applied
    problem: Problem  # the problem solved
    cur: CurrentState  # the current placement, portfolio indices
    current: Current  # the same rows in problem indices
    solution: Solution
    plan: Plan
    report: RepairReport  # why the repair dropped each job
    events: list[Event]
    moved: np.ndarray  # bool per job: a true move
    away: np.ndarray  # units per job landing somewhere new
    options: ReplanOptions


def _rows_text(site_ids, type_names, site, gtype, units) -> str:
    return ",".join(f"{site_ids[s]}/{type_names[t]}×{u}" for s, t, u in zip(site, gtype, units))


def build_changes(o: ReplanOutcome) -> tuple[pa.Table, dict[str, Any]]:
    """The per-job diff table and the summary's ``changes`` section."""
    was, now, change = _change_kinds(o)
    delta, t_now, t_old = _net_change(o, was)
    mig_usd = np.where(o.moved, o.away * o.problem.job_migration_usd, 0.0)
    site_events = _site_events(o)
    reason, detail = _reasons(o, change, now, delta, mig_usd, site_events)
    table = _changes_table(o, change, now, delta, mig_usd, reason, detail)
    sites = _site_mw(o, t_now, t_old, site_events)
    return table, _section(o, change, now, mig_usd, sites)


def _change_kinds(o: ReplanOutcome) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per job: ran before, runs now, and the change (moved, stopped, started or unchanged)."""
    n = o.problem.n_jobs
    was = np.zeros(n, bool)
    was[o.cur.job] = True
    now = o.solution.reason == Reason.PLACED
    change = np.full(n, "unchanged", object)
    change[was & ~now] = "stopped"
    change[~was & now] = "started"
    change[o.moved] = "moved"
    return was, now, change


def _net_change(o: ReplanOutcome, was: np.ndarray) -> tuple[np.ndarray, dict, dict]:
    """Net $/h now minus before per job (NaN: the old placement cannot be priced), and both rows' terms.

    Before: the old rows at today's prices, no migration; now: the plan's net.
    """
    P, sol, current = o.problem, o.solution, o.current
    n = P.n_jobs
    t_now = solution_terms(P, sol)
    net_now = np.bincount(sol.row_job, weights=t_now["net"], minlength=n)
    speed = candidate_speed(P, current.job, current.pool)
    t_old = unit_terms(P, current.job, current.pool, np.nan_to_num(speed))
    old_net_rows = net_before_migration(t_old) * current.units
    old_net_rows = np.where(np.isnan(speed), np.nan, old_net_rows)
    net_old = np.bincount(current.job, weights=old_net_rows, minlength=n) if len(current.job) else np.zeros(n)
    priceable = np.ones(n, bool)
    priceable[current.job[np.isnan(speed)]] = False
    delta = np.where(priceable, net_now - np.where(was, net_old, 0.0), np.nan)
    return delta, t_now, t_old


def _site_events(o: ReplanOutcome) -> dict[int, list[str]]:
    """The events' texts by site index."""
    site_events: dict[int, list[str]] = {}
    for ev in o.events:
        site_events.setdefault(o.problem.site_ids.index(ev.site), []).append(ev.text)
    return site_events


def _plan_reasons(plan: Plan) -> dict[str, tuple[str, str]]:
    """(reason code, sentence) of every job the plan lists as unplaced."""
    tbl = plan.table
    status = tbl.column("status").to_numpy(zero_copy_only=False)
    ids_col = tbl.column("job_id").to_numpy(zero_copy_only=False)
    rc = tbl.column("reason").to_numpy(zero_copy_only=False)
    rd = tbl.column("reason_detail").to_numpy(zero_copy_only=False)
    return {ids_col[i]: (rc[i], rd[i]) for i in np.flatnonzero(status == "unplaced").tolist()}


def _displaced_text(P: Problem, j: int, cause: int, sites: set, site_events: dict[int, list[str]]) -> str:
    """Why job ``j`` could not stay: the events at the sites it ran on, and the repair's cause."""
    texts = sorted({t for s in sites for t in site_events.get(s, [])})
    why = _CAUSE_TEXT.get(int(cause), "")
    if cause == Cause.INELIGIBLE and P.job_filter[j] != Filter.OK:
        why = f"no eligible site: {FILTER_TEXT[Filter(int(P.job_filter[j]))]}"
    if texts and cause == Cause.INELIGIBLE:
        return "; ".join(texts)
    return "; ".join([*texts, why] if why else texts)


def _reasons(o: ReplanOutcome, change: np.ndarray, now: np.ndarray, delta: np.ndarray, mig_usd: np.ndarray,
             site_events: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """Per job: the reason code and sentence of its change (or why it stays unplaced)."""
    P, cur, cause = o.problem, o.cur, o.report.cause
    plan_reason = _plan_reasons(o.plan)
    cur_sites: dict[int, set] = {}
    for j, s in zip(cur.job.tolist(), cur.site.tolist()):
        cur_sites.setdefault(j, set()).add(s)
    ids = P.job_ids
    n = P.n_jobs
    reason = np.full(n, "", object)
    detail = np.full(n, "", object)
    for j in np.flatnonzero(change != "unchanged").tolist():
        c = change[j]
        displaced = cause[j] not in (Cause.KEPT, Cause.ABSENT)
        if c == "moved":
            if displaced:
                reason[j] = "displaced"
                detail[j] = f"could not stay: {_displaced_text(P, j, cause[j], cur_sites.get(j, ()), site_events)}"
            elif not math.isnan(delta[j]) and delta[j] > 0:
                reason[j] = "better_placement"
                detail[j] = (f"gains ${delta[j]:,.2f}/h net of its migration cost "
                             f"(${mig_usd[j]:,.2f} one-off) and threshold")
            else:
                reason[j] = "makes_room"
                detail[j] = "moved so that higher-tier or higher-value jobs fit"
        elif c == "stopped":
            code, sentence = plan_reason.get(ids[j], ("", ""))
            reason[j] = code
            detail[j] = (f"{_displaced_text(P, j, cause[j], cur_sites.get(j, ()), site_events)}: {sentence}"
                         if displaced else sentence)
        elif c == "started":
            reason[j] = "arrived" if cur.arrived[j] else "started"
            detail[j] = "a new job, placed" if cur.arrived[j] else "not running before; placed now"
    for j in np.flatnonzero((change == "unchanged") & ~now).tolist():
        reason[j], detail[j] = plan_reason.get(ids[j], ("", ""))
    return reason, detail


def _departed(o: ReplanOutcome, types: list[str]) -> tuple[list, list, list, list, list]:
    """Departed jobs (sorted ids): their largest row's site and type, every row as text, and replicas."""
    dep = o.cur.departed
    dep_ids = sorted(dep.listed)
    dep_pos = {k: i for i, k in enumerate(dep_ids)}
    dj = np.array([dep_pos[k] for k in dep.job_id.tolist()], np.int64)
    d_s, d_t, d_rows = _per_job(len(dep_ids), dj, dep.site, dep.gpu_type, dep.units, o.problem.site_ids, types)
    d_units = np.bincount(dj, weights=dep.units, minlength=len(dep_ids)).astype(np.int64)
    return dep_ids, d_s, d_t, d_rows, d_units.tolist()


def _changes_table(o: ReplanOutcome, change: np.ndarray, now: np.ndarray, delta: np.ndarray,
                   mig_usd: np.ndarray, reason: np.ndarray, detail: np.ndarray) -> pa.Table:
    """The ``changes`` table: one row per job of the jobs table, then one per departed job."""
    P, sol, cur = o.problem, o.solution, o.cur
    n = P.n_jobs
    types = list(o.portfolio.gpu_types)
    # Rows before (portfolio indices) and after (problem pools -> site/type indices).
    t_of_problem = np.array([types.index(t) for t in P.type_names], np.int64)
    new_site = P.pool_site[sol.row_pool]
    new_type = t_of_problem[P.pool_type[sol.row_pool]]
    from_s, from_t, from_rows = _per_job(n, cur.job, cur.site, cur.gpu_type, cur.units, P.site_ids, types)
    to_s, to_t, to_rows = _per_job(n, sol.row_job, new_site, new_type, sol.row_units, P.site_ids, types)
    kind = np.where(P.job_kind == 1, "inference", "training")
    gpus_now = np.bincount(sol.row_job, weights=sol.row_units * P.job_gpus_unit[sol.row_job], minlength=n)
    units_now = np.bincount(sol.row_job, weights=sol.row_units, minlength=n)
    units_before = np.bincount(cur.job, weights=cur.units, minlength=n) if len(cur.job) else np.zeros(n)
    units_show = np.where(now, units_now, units_before).astype(np.int64)
    gpus_show = np.where(now, gpus_now, units_before * P.job_gpus_unit).astype(np.int64)
    dep_ids, d_s, d_t, d_rows, d_units = _departed(o, types)

    def col(a, b, type_=_STRING):
        return pa.array(list(a) + list(b), type_)

    nd = len(dep_ids)
    none = [None] * nd
    return pa.table({
        "job_id": col(P.job_ids.tolist(), dep_ids),
        "kind": col(kind.tolist(), none),
        "priority": col(P.job_priority.tolist(), none, pa.int64()),
        "change": col(change.tolist(), ["departed"] * nd),
        "from_site": col(from_s, d_s),
        "from_gpu_type": col(from_t, d_t),
        "to_site": col(to_s, none),
        "to_gpu_type": col(to_t, none),
        "from_rows": col(from_rows, d_rows),
        "to_rows": col(to_rows, none),
        "replicas": col(units_show.tolist(), d_units, pa.int64()),
        "gpus": col(gpus_show.tolist(), none, pa.int64()),
        "migration_usd": col(mig_usd.tolist(), [0.0] * nd, pa.float64()),
        "net_change_usd_per_hour": col([None if math.isnan(x) else float(x) for x in delta], none, pa.float64()),
        "arrived": col(cur.arrived.tolist(), [False] * nd, pa.bool_()),
        "reason": col(reason.tolist(), ["departed"] * nd),
        "detail": col(detail.tolist(), ["not in the jobs table any more" + (" (was running)" if r else "")
                                        for r in d_rows]),
    })


def _site_mw(o: ReplanOutcome, t_now: dict, t_old: dict, site_events: dict[int, list[str]]) -> list[dict[str, Any]]:
    """Facility MW before (as the plan reported it, else recomputed) and now, per site that changed or had an event."""
    P, sol, cur, current = o.problem, o.solution, o.cur, o.current
    after_mw = np.bincount(P.pool_site[sol.row_pool], weights=t_now["mw"], minlength=P.n_sites)
    if np.isnan(cur.before_mw).any():
        before_mw = np.bincount(P.pool_site[current.pool], weights=t_old["mw"] * current.units, minlength=P.n_sites)
    else:
        before_mw = cur.before_mw
    with_event = {P.site_ids.index(ev.site) for ev in o.events}
    sites = []
    for s in range(P.n_sites):
        if abs(after_mw[s] - before_mw[s]) > 1e-9 or s in with_event:
            sites.append({"site_id": P.site_ids[s], "mw_before": float(before_mw[s]), "mw_after": float(after_mw[s]),
                          "mw_cap": float(P.site_cap_mw[s]), "mw_shed": float(max(before_mw[s] - after_mw[s], 0.0)),
                          "events": site_events.get(s, [])})
    return sites


def _section(o: ReplanOutcome, change: np.ndarray, now: np.ndarray, mig_usd: np.ndarray,
             sites: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary's ``changes`` section: counts, migration $, MW shed, events and the move options."""
    opts = o.options
    counts = {c: int((change == c).sum()) for c in CHANGES[:-1]}
    counts["departed"] = len(o.cur.departed.listed)
    return {
        **counts,
        "arrived": int(o.cur.arrived.sum()),
        "unchanged_running": int(((change == "unchanged") & now).sum()),
        "migration_usd": float(mig_usd.sum()),
        "mw_shed": float(sum(x["mw_shed"] for x in sites)),
        "events": [ev.text for ev in o.events],
        "max_moves": opts.max_moves,
        "max_migration_usd": opts.max_migration_usd,
        "move_threshold_usd_per_hour": opts.move_threshold_usd_per_hour,
        "default_migration_cost_usd": opts.default_migration_cost_usd,
        "default_migration_hours": opts.default_migration_hours,
        "sites": sites,
    }


def _per_job(n: int, job: np.ndarray, site: np.ndarray, gtype: np.ndarray, units: np.ndarray,
             site_ids: list[str], types: list[str]) -> tuple[list, list, list]:
    """Per job: the largest row's site and type, and every row as text (None where it has none)."""
    s_out: list = [None] * n
    t_out: list = [None] * n
    rows_out: list = [None] * n
    if len(job) == 0:
        return s_out, t_out, rows_out
    order = np.lexsort((gtype, site, -units, job))
    j, s, t, u = job[order], site[order], gtype[order], units[order]
    first = np.ones(len(j), bool)
    first[1:] = j[1:] != j[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], len(j))
    sid = np.array(site_ids, object)
    tid = np.array(types, object)
    for a, b in zip(starts.tolist(), ends.tolist()):
        jj = int(j[a])
        s_out[jj] = sid[s[a]]
        t_out[jj] = tid[t[a]]
        if b - a == 1:
            rows_out[jj] = f"{sid[s[a]]}/{tid[t[a]]}×{u[a]}"
        else:
            k = np.lexsort((t[a:b], s[a:b]))
            rows_out[jj] = _rows_text(sid, tid, s[a:b][k], t[a:b][k], u[a:b][k])
    return s_out, t_out, rows_out


__all__ = ["CHANGES", "ReplanOutcome", "build_changes"]
