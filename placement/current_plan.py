"""A plan table as a starting point: its placed rows, as a ``Solution``, and the warm start.

``read_plan_rows`` checks a plan against a portfolio's names (re-planning reads the plan running
now this way); ``plan_to_solution`` maps it leniently into a problem's indices, and
``warm_start`` repairs and fills that for ``placement.api.solve(initial_plan=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from placement.core import clock
from placement.core.problem import Problem
from placement.core.solution import Reason, Solution
from placement.errors import InputError, did_you_mean, shown
from placement.io.columns import number_column, text_values
from placement.model.portfolio import Portfolio, SolveOptions
from placement.solvers.repair import fill, repair


def _number(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column of a current plan; a column that is not numeric reads as all NaN."""
    try:
        return number_column(table, name)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(table.num_rows, np.nan)


@dataclass
class PlanRows:
    """Placed rows of a plan table, checked against the portfolio's names."""

    job_id: np.ndarray  # object
    site: np.ndarray  # int64 site index
    gpu_type: np.ndarray  # int64 index into the portfolio's GPU types
    units: np.ndarray  # int64
    facility_mw: np.ndarray  # float64 (NaN: not in the table)
    listed: set  # every job id the plan lists, placed or not


def read_plan_rows(plan: pa.Table, portfolio: Portfolio, source: str = "current plan",
                   strict: bool = True) -> PlanRows:
    """Placed rows of ``plan``; ``strict`` raises ``InputError`` on bad rows, else skips them."""
    missing = [c for c in ("job_id", "status", "site_id", "gpu_type", "replicas") if c not in plan.column_names]
    if missing:
        raise InputError(source, [(f"column '{c}'", "required plan column is missing") for c in missing])
    job = text_values(plan, "job_id")
    status = text_values(plan, "status")
    site_name, type_name = text_values(plan, "site_id"), text_values(plan, "gpu_type")
    reps = _number(plan, "replicas")
    site_ids = [s.id for s in portfolio.sites]
    types = list(portfolio.gpu_types)
    s_idx = {s: i for i, s in enumerate(site_ids)}
    t_idx = {t: i for i, t in enumerate(types)}
    placed = status == "placed"
    problems: list[tuple[str, str]] = []
    ok = np.ones(plan.num_rows, bool)

    def flag(bad: np.ndarray, msg) -> None:
        nonlocal ok
        ok &= ~bad
        for i in np.flatnonzero(bad)[:20]:
            problems.append((f"row {i + 1} (job '{job[i]}')", msg(i)))

    flag(np.array([j is None for j in job], bool), lambda i: "job_id is empty")
    flag(~placed & (status != "unplaced"), lambda i: f"status must be 'placed' or 'unplaced', got {shown(status[i])}")
    si = np.array([s_idx.get(s, -1) if s is not None else -1 for s in site_name], np.int64)
    ti = np.array([t_idx.get(t, -1) if t is not None else -1 for t in type_name], np.int64)
    flag(placed & (si < 0), lambda i: f"site_id: unknown site {shown(site_name[i])}{did_you_mean(str(site_name[i]), site_ids)}")
    flag(placed & (si >= 0) & (ti < 0), lambda i: f"gpu_type: unknown GPU type {shown(type_name[i])}")
    no_pool = np.zeros(plan.num_rows, bool)
    for i in np.flatnonzero(placed & (si >= 0) & (ti >= 0)):
        no_pool[i] = types[ti[i]] not in portfolio.sites[si[i]].pools
    flag(no_pool, lambda i: f"site '{site_name[i]}' has no {type_name[i]} pool")
    flag(placed & ~((reps >= 1) & (reps == np.floor(reps))), lambda i: f"replicas must be a whole number >= 1, got {shown(reps[i])}")
    keys = np.array([str(j) for j in job], object)
    both = set(keys[placed]) & set(keys[status == "unplaced"])
    flag(np.isin(keys, list(both)) & (status == "unplaced"), lambda i: "the job is listed as both placed and unplaced")
    if problems and strict:
        raise InputError(source, problems)
    take = placed & ok
    return PlanRows(keys[take], si[take], ti[take], reps[take].astype(np.int64),
                    _number(plan, "facility_mw")[take], set(keys[ok & (placed | (status == "unplaced"))]))


def plan_to_solution(problem: Problem, plan: pa.Table) -> Solution:
    """A plan table (``placement solve --out``) as a Solution in ``problem``'s indices.

    Rows naming jobs, sites, GPU types or pools the problem does not have are skipped (a service
    missing some replicas is then dropped whole by ``solvers.repair``); every job without a row is
    unplaced (``OUT_VALUED``). The result is a warm start, not a valid plan: repair it first.
    """
    P = problem
    job = text_values(plan, "job_id")
    status = text_values(plan, "status")
    reps = _number(plan, "replicas")
    placed = (status == "placed") & (reps >= 1)
    pos = {k: i for i, k in enumerate(P.job_ids.tolist())}
    s_idx = {s: i for i, s in enumerate(P.site_ids)}
    t_idx = {t: i for i, t in enumerate(P.type_names)}
    T = len(P.type_names)
    pool_of = np.full(P.n_sites * T, -1, np.int64)
    pool_of[P.pool_site * T + P.pool_type] = np.arange(P.n_pools)
    j = np.array([pos.get(k, -1) for k in job], np.int64)
    s = np.array([s_idx.get(x, -1) for x in text_values(plan, "site_id")], np.int64)
    t = np.array([t_idx.get(x, -1) for x in text_values(plan, "gpu_type")], np.int64)
    p = np.where((s >= 0) & (t >= 0), pool_of[np.maximum(s, 0) * T + np.maximum(t, 0)], -1)
    ok = placed & (j >= 0) & (p >= 0)
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    reason[j[ok]] = Reason.PLACED
    return Solution(j[ok], p[ok], np.nan_to_num(reps[ok]).astype(np.int64), reason, solver="current")


def warm_start(problem: Problem, plan: pa.Table, kernels, options: SolveOptions) -> Solution:
    """The warm start ``placement.api.solve(initial_plan=...)`` hands the pipeline.

    ``plan_to_solution``, repaired (``solvers.repair.repair``) and filled with unplaced jobs
    (``solvers.repair.fill``, within half the time limit).
    """
    repaired = repair(problem, plan_to_solution(problem, plan), kernels)
    return fill(problem, repaired, kernels, options, deadline=clock.now() + options.time_limit_s * 0.5)


__all__ = ["PlanRows", "plan_to_solution", "read_plan_rows", "warm_start"]
