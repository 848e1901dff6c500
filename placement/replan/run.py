"""Re-planning for schedulers: apply events to the portfolio, start from what runs now, move little.

A scheduler calls ``replan`` in a loop with the jobs table as it is now (arrivals added,
departures gone), the plan it is running (``placement solve --out`` or the last ``replan``) and
what happened since (``events``). The result is a validated ``ReplanPlan``: the new plan, and a
``changes`` table listing every job as moved (from → to), stopped, started, unchanged or
departed, with the reason.

**Events** (``Curtail``, ``Outage``, ``SetOnline``, ``SetPool``; ``parse_event`` reads the CLI
form) change the portfolio *now*: ``apply_events`` returns a new, re-validated ``Portfolio`` and
never mutates its input. They live in ``placement.model.events`` (the grammar and its errors are
described there) and are re-exported here; the per-job diff is built in ``placement.replan.changes``.

**The current placement** comes from the plan table where it lists a job (a placed row is where
it runs; an unplaced row means it does not run) and otherwise from the jobs table's
``current_site`` / ``current_gpu_type`` (a service then runs all its replicas there). Jobs in the
plan but not in the jobs table have *departed*; jobs in the table but not in the plan have
*arrived*. For the solve, a modified copy of the jobs table carries each job's current placement
(a service spanning several pools: its largest row, ties to the first site and type in portfolio
order), so migration costs and the budget apply. A pinned job the plan does not place keeps the
jobs table's current placement, the only place it may start.

**Move costs.** A move's one-off cost is the job's ``migration_cost_usd`` (per replica moved for a
service), spread over ``migration_horizon_hours`` in the objective. A job that runs somewhere but
has no cost (0, the column's default) would move for any gain, so it gets
``ReplanOptions.default_migration_cost_usd`` when given, else ``default_migration_hours`` hours of
its own value (per replica for a service): by default a move must earn back an hour of the
job's value within the horizon. ``ReplanOptions.migration_cost_usd`` sets it per job id.
``move_threshold_usd_per_hour`` is added to every unit's amortised move cost in the problem
solved, so a job moves only when the move gains more than its cost plus the threshold; the
plan's ``migration_usd_per_hour`` and objective include that penalty (it is 0 by default).

**Solving.** The repaired current placement (``solvers.repair``: only drops jobs, sheds the
lowest tier and value density first where a site or pool is over its new cap) plus a greedy
fill of arrivals and displaced jobs into the room left is the warm start of ``run_pipeline``,
which keeps it unless a stage finds a strictly better plan. ``solvers.repair.settle`` then
undoes moves that do not pay and holds the migration budget counted on whole placements.

**What counts as a move**: a job that runs before and after, on different (site, GPU type,
replicas) rows, whatever the reason (a job displaced by an outage and restarted elsewhere moves).
``max_moves`` bounds the number of moved jobs, ``max_migration_usd`` their one-off cost (per
replica landing where the service had fewer before). Stopping and starting are not moves.
The model prices a multi-site service's current placement by its largest row, so internally the
budget grows by the number of such services running (and the $ they are charged for staying);
the budget on whole placements is then enforced exactly and checked on every plan returned.
The plan table's ``moved`` column and ``summary['moves']`` use this definition.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from placement.replan.changes import CHANGES as CHANGES
from placement.replan.changes import build_changes
from placement.io.columns import number_column, text_values
from placement.errors import InputError, InvalidPlanError, did_you_mean
from placement.model.events import EVENT_GRAMMAR as EVENT_GRAMMAR
from placement.model.events import Curtail as Curtail
from placement.model.events import Event as Event
from placement.model.events import Outage as Outage
from placement.model.events import SetOnline as SetOnline
from placement.model.events import SetPool as SetPool
from placement.model.events import apply_events, parse_events
from placement.model.events import check_event as check_event
from placement.model.events import parse_event as parse_event
from placement.io.tables import write_table
from placement.model.jobs import validate_jobs
from placement.model.portfolio import Portfolio, SolveOptions
from placement.plan import Plan, build_plan
from placement.core.problem import UNLIMITED, Problem, compile_problem
from placement.core.solution import Reason, Solution

# --- options --------------------------------------------------------------------------------

_Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ReplanOptions(SolveOptions):
    """``SolveOptions`` (solver, limits, seed, backend, ``max_moves``, ``max_migration_usd``) plus move costs.

    - ``move_threshold_usd_per_hour``: added to every unit's amortised move cost, so a move must
      gain more than its migration cost plus this ($/h per gang or replica moved);
    - ``default_migration_cost_usd``: one-off cost of a move for running jobs whose
      ``migration_cost_usd`` is 0 (per replica for services); None: use
      ``default_migration_hours`` hours of the job's value instead (0 lets them move freely);
    - ``migration_cost_usd``: per-job one-off move cost by job id, overriding both;
    - ``polish``: with solver ``auto`` on instances too big to prove, improve the warm start by
      large-neighbourhood search (each step strictly better, strict tiers: a higher-tier gain may
      move or stop lower-tier jobs). False keeps the warm start (repair, fill, preemption): the
      fewest changes.
    """

    move_threshold_usd_per_hour: _Usd = 0.0
    default_migration_cost_usd: _Usd | None = None
    default_migration_hours: _Usd = 1.0
    migration_cost_usd: dict[str, _Usd] = Field(default_factory=dict)
    polish: bool = True

    def solve_options(self, **update: Any) -> SolveOptions:
        """The plain ``SolveOptions`` part, with ``update`` applied."""
        data = {k: getattr(self, k) for k in SolveOptions.model_fields}
        return SolveOptions.model_validate({**data, **update})


def replan_options(portfolio: Portfolio, options: SolveOptions | None = None, **overrides: Any) -> ReplanOptions:
    """``ReplanOptions`` from the portfolio's ``[solve]`` defaults, ``options`` and keyword overrides."""
    base = (options or portfolio.solve).model_dump()
    return ReplanOptions.model_validate({**base, **{k: v for k, v in overrides.items() if v is not None}})


# --- the current placement ------------------------------------------------------------------


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
    flag(~placed & (status != "unplaced"), lambda i: f"status must be 'placed' or 'unplaced', got {status[i]!r}")
    si = np.array([s_idx.get(s, -1) if s is not None else -1 for s in site_name], np.int64)
    ti = np.array([t_idx.get(t, -1) if t is not None else -1 for t in type_name], np.int64)
    flag(placed & (si < 0), lambda i: f"site_id: unknown site {site_name[i]!r}{did_you_mean(str(site_name[i]), site_ids)}")
    flag(placed & (si >= 0) & (ti < 0), lambda i: f"gpu_type: unknown GPU type {type_name[i]!r}")
    no_pool = np.zeros(plan.num_rows, bool)
    for i in np.flatnonzero(placed & (si >= 0) & (ti >= 0)):
        no_pool[i] = types[ti[i]] not in portfolio.sites[si[i]].pools
    flag(no_pool, lambda i: f"site '{site_name[i]}' has no {type_name[i]} pool")
    flag(placed & ~((reps >= 1) & (reps == np.floor(reps))), lambda i: f"replicas must be a whole number >= 1, got {reps[i]!r}")
    keys = np.array([str(j) for j in job], object)
    both = set(keys[placed]) & set(keys[status == "unplaced"])
    flag(np.isin(keys, list(both)) & (status == "unplaced"), lambda i: "the job is listed as both placed and unplaced")
    if problems and strict:
        raise InputError(source, problems)
    take = placed & ok
    return PlanRows(keys[take], si[take], ti[take], reps[take].astype(np.int64),
                    _number(plan, "facility_mw")[take], set(keys[ok & (placed | (status == "unplaced"))]))


@dataclass
class CurrentState:
    """Where each job of the jobs table runs now (rows by job row index), and who came and went."""

    job: np.ndarray  # int64 row index in the jobs table
    site: np.ndarray  # int64
    gpu_type: np.ndarray  # int64
    units: np.ndarray  # int64
    arrived: np.ndarray  # bool per job: not listed in the plan (all False without a plan)
    departed: PlanRows  # plan rows (placed) of jobs gone from the table; ``listed``: every departed id
    before_mw: np.ndarray  # facility MW per site as the plan reports it (NaN: compute)


def current_state(portfolio: Portfolio, jobs: pa.Table, plan: PlanRows | None) -> CurrentState:
    """The current placement from the plan rows and the jobs' ``current_site`` / ``current_gpu_type``."""
    n = jobs.num_rows
    ids = np.asarray(jobs.column("id").to_numpy(zero_copy_only=False), object)
    site_ids = [s.id for s in portfolio.sites]
    types = list(portfolio.gpu_types)
    s_idx = {s: i for i, s in enumerate(site_ids)}
    t_idx = {t: i for i, t in enumerate(types)}
    listed = np.zeros(n, bool)
    rows_j, rows_s, rows_t, rows_u = [], [], [], []
    empty = PlanRows(np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros(0), set())
    departed = empty
    before_mw = np.full(len(site_ids), np.nan)
    if plan is not None:
        pos = {k: i for i, k in enumerate(ids.tolist())}
        listed = np.array([k in plan.listed for k in ids.tolist()], bool)
        j = np.array([pos.get(k, -1) for k in plan.job_id.tolist()], np.int64)
        known = j >= 0
        rows_j, rows_s, rows_t, rows_u = j[known], plan.site[known], plan.gpu_type[known], plan.units[known]
        gone = plan.listed - set(ids.tolist())
        departed = PlanRows(plan.job_id[~known], plan.site[~known], plan.gpu_type[~known], plan.units[~known],
                            plan.facility_mw[~known], gone)
        if len(plan.facility_mw) and not np.isnan(plan.facility_mw).any():
            before_mw = np.bincount(plan.site, weights=plan.facility_mw, minlength=len(site_ids))
    # Jobs the plan does not list: their own current_site / current_gpu_type, if any.
    cs = text_values(jobs, "current_site")
    ct = text_values(jobs, "current_gpu_type")
    inference = np.asarray(pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False), bool)
    reps = jobs.column("replicas").to_numpy()
    own = np.flatnonzero(~listed & np.array([s is not None for s in cs], bool) & np.array([t is not None for t in ct], bool))
    own_j = own.astype(np.int64)
    own_s = np.array([s_idx[cs[i]] for i in own], np.int64)
    own_t = np.array([t_idx[ct[i]] for i in own], np.int64)
    own_u = np.where(inference[own], reps[own], 1).astype(np.int64)
    has_pool = np.array([types[t] in portfolio.sites[s].pools for s, t in zip(own_s, own_t)], bool)
    job = np.concatenate([np.asarray(rows_j, np.int64), own_j[has_pool]])
    site = np.concatenate([np.asarray(rows_s, np.int64), own_s[has_pool]])
    gtype = np.concatenate([np.asarray(rows_t, np.int64), own_t[has_pool]])
    units = np.concatenate([np.asarray(rows_u, np.int64), own_u[has_pool]])
    # Merge duplicate (job, site, type) rows.
    T = max(len(types), 1)
    S = max(len(site_ids), 1)
    key, inv = np.unique((job * S + site) * T + gtype, return_inverse=True)
    units = np.bincount(inv.reshape(-1), weights=units, minlength=len(key)).astype(np.int64)
    job, rest = key // (S * T), key % (S * T)
    arrived = ~listed if plan is not None else np.zeros(n, bool)
    return CurrentState(job, rest // T, rest % T, units, arrived, departed, before_mw)


def _primary(cur: CurrentState, n: int) -> np.ndarray:
    """Row index of each job's largest current row (-1 if it does not run); ties to the first."""
    out = np.full(n, -1, np.int64)
    if len(cur.job) == 0:
        return out
    order = np.lexsort((cur.gpu_type, cur.site, -cur.units, cur.job))
    first = np.ones(len(order), bool)
    first[1:] = cur.job[order][1:] != cur.job[order][:-1]
    out[cur.job[order][first]] = order[first]
    return out


def solve_jobs(portfolio: Portfolio, jobs: pa.Table, cur: CurrentState, listed_in_plan: bool,
               options: ReplanOptions) -> pa.Table:
    """The jobs table the re-plan solves: current placement and move costs filled in, re-validated."""
    n = jobs.num_rows
    site_ids = [s.id for s in portfolio.sites]
    types = list(portfolio.gpu_types)
    first = _primary(cur, n)
    runs = first >= 0
    cs = np.asarray(text_values(jobs, "current_site"), object)
    ct = np.asarray(text_values(jobs, "current_gpu_type"), object)
    pinned = np.asarray(jobs.column("pinned").to_numpy(zero_copy_only=False), bool)
    new_s = np.where(runs, np.array(site_ids, object)[cur.site[np.maximum(first, 0)]] if len(cur.job) else None, None)
    new_t = np.where(runs, np.array(types, object)[cur.gpu_type[np.maximum(first, 0)]] if len(cur.job) else None, None)
    if listed_in_plan:
        # Listed but not placed: not running (a pinned job keeps the only place it may start).
        keep_own = ~runs & (cur.arrived | pinned)
    else:
        keep_own = ~runs
    new_s = np.where(keep_own, cs, new_s)
    new_t = np.where(keep_own, ct, new_t)
    value = jobs.column("value_usd_per_hour").to_numpy().astype(np.float64)
    inference = np.asarray(pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False), bool)
    units = np.where(inference, jobs.column("replicas").to_numpy(), 1).astype(np.float64)
    mig = jobs.column("migration_cost_usd").to_numpy().astype(np.float64).copy()
    default = (np.full(n, options.default_migration_cost_usd) if options.default_migration_cost_usd is not None
               else options.default_migration_hours * value / np.maximum(units, 1))
    mig = np.where(mig == 0, default, mig)
    if options.migration_cost_usd:
        ids = jobs.column("id").to_pylist()
        pos = {k: i for i, k in enumerate(ids)}
        unknown = [k for k in options.migration_cost_usd if k not in pos]
        if unknown:
            raise InputError("options.migration_cost_usd",
                             [(k, f"unknown job id{did_you_mean(k, ids)}") for k in unknown[:20]])
        for k, v in options.migration_cost_usd.items():
            mig[pos[k]] = v
    table = jobs
    for name, arr in (("current_site", pa.array(new_s.tolist(), pa.string())),
                      ("current_gpu_type", pa.array(new_t.tolist(), pa.string())),
                      ("migration_cost_usd", pa.array(mig, pa.float64()))):
        table = table.set_column(table.column_names.index(name), name, arr)
    return validate_jobs(table, portfolio, "jobs (with the current placement)")


def current_rows(problem: Problem, cur: CurrentState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Current rows as (job, pool, units) in problem indices (rows on pools that do not exist dropped)."""
    P = problem
    T = len(P.type_names)
    pool_of = np.full(P.n_sites * T, -1, np.int64)
    pool_of[P.pool_site * T + P.pool_type] = np.arange(P.n_pools)
    pool = pool_of[cur.site * T + cur.gpu_type] if len(cur.job) else np.zeros(0, np.int64)
    ok = pool >= 0
    return cur.job[ok], pool[ok], cur.units[ok]


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
    from placement.solvers.repair import fill, repair  # noqa: PLC0415

    repaired = repair(problem, plan_to_solution(problem, plan), kernels)
    return fill(problem, repaired, kernels, options, deadline=time.monotonic() + options.time_limit_s * 0.5)


# --- the result -----------------------------------------------------------------------------

# Share of the time limit the warm start (fill and preemption) may use before the solvers.
WARM_SHARE = 0.7


@dataclass
class ReplanPlan(Plan):
    """A validated re-plan: the plan (``table``, ``summary`` with a ``changes`` section, ``solution``),
    the per-job diff (``changes``), and the portfolio and jobs table it was solved for
    (events applied, current placement filled in: pass them to ``validate_plan``).

    ``changes`` columns: ``job_id, kind, priority, change`` (moved | stopped | started |
    unchanged | departed), ``from_site, from_gpu_type, to_site, to_gpu_type`` (a service's
    largest row), ``from_rows, to_rows`` (every row as ``site/type×replicas``), ``replicas, gpus``
    (as placed now, else before), ``migration_usd`` (one-off, per replica landing somewhere new),
    ``net_change_usd_per_hour`` (net $/h now minus before, both in today's prices; null where the
    old placement cannot be priced), ``arrived``, ``reason`` (a code) and ``detail`` (a sentence,
    naming the event when one displaced the job).
    """

    changes: pa.Table | None = None
    portfolio: Portfolio | None = None
    jobs: pa.Table | None = None
    options: SolveOptions | None = None  # what the plan was validated with (internal budget)

    def write_changes(self, path: str | Path) -> None:
        """Write the per-job diff table by extension, atomically."""
        write_table(self.changes, path)


def replan(portfolio: Portfolio, jobs: pa.Table, current_plan: pa.Table | str | Path | None = None,
           events: Sequence[Event | str] = (), options: SolveOptions | None = None,
           pairs: pa.Table | None = None, *, on_progress=None, warm_start: bool = True) -> ReplanPlan:
    """Re-plan ``jobs`` (validated, as they are now) after ``events``, starting from ``current_plan``.

    ``current_plan`` is a plan table (or a path to one); None takes the current placement from the
    jobs' ``current_site`` / ``current_gpu_type``. ``options`` may be ``ReplanOptions`` (move
    costs and threshold) or plain ``SolveOptions``; default: the portfolio's ``[solve]``.
    ``warm_start=False`` solves the same problem without the warm start (for comparisons).

    Raises ``InputError`` for a bad event, plan or option; ``InvalidPlanError`` if a plan breaks a
    hard constraint or the migration budget (a bug). A required job that cannot be placed gives a
    plan with status ``infeasible`` listing it under ``required_unplaced``.
    """
    from placement.api import input_digest  # noqa: PLC0415
    from placement.io.tables import read_plan_table  # noqa: PLC0415
    from placement.kernels import kernels_for  # noqa: PLC0415
    from placement.solvers.pipeline import (  # noqa: PLC0415
        EXACT_MAX_CANDIDATES,
        candidate_count,
        run_pipeline,
    )
    from placement.solvers.repair import Current, repair_with_report, settle, true_moves  # noqa: PLC0415
    from placement.validate.validator import validate_plan  # noqa: PLC0415

    start = time.monotonic()
    opts = options if isinstance(options, ReplanOptions) else replan_options(portfolio, options)
    parsed = parse_events(events, portfolio)
    after = apply_events(portfolio, parsed)
    plan_rows = None
    if current_plan is not None:
        source = "current plan"
        if isinstance(current_plan, str | Path):
            source = str(current_plan)
            current_plan = read_plan_table(current_plan)
        plan_rows = read_plan_rows(current_plan, after, source)
    cur = current_state(after, jobs, plan_rows)
    table = solve_jobs(after, jobs, cur, plan_rows is not None, opts)

    # Internal budget: the model charges a multi-pool service for its minor rows even when it
    # stays, and counts it as moved; allow for that, then hold the real budget in `settle`.
    n = table.num_rows
    n_rows = np.bincount(cur.job, minlength=n)
    multi = n_rows > 1
    largest = np.zeros(n, np.int64)
    np.maximum.at(largest, cur.job, cur.units)
    total = np.bincount(cur.job, weights=cur.units, minlength=n)
    mig = table.column("migration_cost_usd").to_numpy()
    inherent = float((mig * (total - largest))[multi].sum())
    internal = opts.solve_options(
        max_moves=None if opts.max_moves is None else opts.max_moves + int(multi.sum()),
        max_migration_usd=None if opts.max_migration_usd is None else opts.max_migration_usd + inherent)
    problem = compile_problem(after, table, pairs, internal)
    if opts.move_threshold_usd_per_hour > 0:
        problem = dataclasses.replace(
            problem, job_migration_usd_per_hour=problem.job_migration_usd_per_hour + opts.move_threshold_usd_per_hour)
    cj, cp, cu = current_rows(problem, cur)
    problem = _forget_forbidden_current(problem, cj, cp)
    kernels = kernels_for(problem, opts.backend)
    current = Current(cj, cp, cu)
    reason0 = np.full(n, Reason.OUT_VALUED, np.int8)
    reason0[cj] = Reason.PLACED
    initial = Solution(cj, cp, cu, reason0, solver="current")
    t0 = time.monotonic()
    repaired, report = repair_with_report(problem, initial, kernels)
    warm = _warm_start(problem, kernels, internal, current, repaired, opts, t0) if warm_start else repaired
    left = max(opts.time_limit_s - (time.monotonic() - t0), opts.time_limit_s * 0.1)
    solve_opts = internal.model_copy(update={"time_limit_s": left})
    if not warm_start:
        result = run_pipeline(problem, solve_opts, kernels, on_progress=on_progress)
    elif opts.solver == "auto" and candidate_count(problem) > EXACT_MAX_CANDIDATES:
        result = improve_warm(problem, solve_opts, kernels, warm, polish=opts.polish, on_progress=on_progress)
    else:
        result = run_pipeline(problem, solve_opts, kernels, on_progress=on_progress, initial=warm)
    budget = {"max_moves": opts.max_moves, "max_migration_usd": opts.max_migration_usd}
    solution, ok = settle(problem, current, repaired, result, **budget)
    if not ok:
        solution, ok = settle(problem, current, repaired, warm, **budget)
    if not ok:
        solution = repaired
    if solution is not result:
        solution.bound = result.bound
        solution.site_price_usd_per_mwh = result.site_price_usd_per_mwh
        solution.pool_price_usd_per_gpu_hour = result.pool_price_usd_per_gpu_hour
        solution.backend = result.backend
        solution.stats = {**result.stats, **solution.stats}
        if solution.status == "optimal" and (solution.row_job.size != result.row_job.size
                                             or not np.array_equal(solution.row_pool, result.row_pool)):
            solution.status = "feasible"
    solution.stats = {**solution.stats, "repair": report.counts, "warm_start": warm_start}

    plan = build_plan(problem, solution, seconds=time.monotonic() - start, seed=opts.seed,
                      input_sha256=input_digest(after, table, pairs))
    moved, away = true_moves(problem, current, solution)
    _true_moved_column(plan, problem, current, moved)
    violations = validate_plan(after, table, plan.table, pairs, internal)
    bugs = [v for v in violations if v.kind != "required"]
    if bugs:
        raise InvalidPlanError(f"re-plan ({solution.solver}) produced an invalid plan (a bug): "
                               + "; ".join(v.message for v in bugs[:10]))
    spent = float((away * problem.job_migration_usd)[moved].sum())
    if ((opts.max_moves is not None and int(moved.sum()) > opts.max_moves)
            or (opts.max_migration_usd is not None and spent > opts.max_migration_usd + 1e-6)):
        raise InvalidPlanError(f"re-plan moves {int(moved.sum())} jobs for {spent:.2f} USD, over the budget "
                               f"(max_moves {opts.max_moves}, max_migration_usd {opts.max_migration_usd}) (a bug)")
    required = sorted(v.job_id for v in violations if v.kind == "required")
    summary = plan.summary
    if required:
        summary["status"] = "infeasible"
    summary["required_unplaced"] = required
    changes, section = build_changes(after, problem, table, cur, current, solution, plan, report, parsed,
                                moved, away, opts)
    summary["moves"] = int(moved.sum())
    summary["changes"] = section
    summary["seconds"] = time.monotonic() - start
    return ReplanPlan(plan.table, summary, solution, changes=changes, portfolio=after, jobs=table,
                      options=internal)


def _budget_left(P: Problem, current: Any, sol: Solution, opts: ReplanOptions) -> tuple[float, float]:
    """Moves and migration $ left of the whole-placement budget after ``sol`` (inf: no budget)."""
    from placement.solvers.repair import true_moves  # noqa: PLC0415

    moved, away = true_moves(P, current, sol)
    moves = math.inf if opts.max_moves is None else opts.max_moves - int(moved.sum())
    usd = (math.inf if opts.max_migration_usd is None
           else opts.max_migration_usd - float((away * P.job_migration_usd)[moved].sum()))
    return moves, usd


def _warm_start(P: Problem, kernels: Any, internal: SolveOptions, current: Any, repaired: Solution,
                opts: ReplanOptions, t0: float) -> Solution:
    """Repaired current placement + greedy fill + preemption by higher tiers + fill of what they stopped.

    The fill and preemption share the first ``WARM_SHARE`` of the time limit (placing what fits
    is where a re-plan's value is; the solvers polish in the rest); every step keeps within the
    whole-placement migration budget.
    """
    from placement.solvers.repair import fill, preempt  # noqa: PLC0415

    deadline = t0 + opts.time_limit_s * WARM_SHARE

    def filled(sol: Solution) -> Solution:
        moves, usd = _budget_left(P, current, sol, opts)
        return fill(P, sol, kernels, internal, deadline=deadline,
                    max_moves=UNLIMITED if math.isinf(moves) else max(int(moves), 0), max_migration_usd=max(usd, 0.0))

    warm = filled(repaired)
    moves, usd = _budget_left(P, current, warm, opts)
    warm, stopped = preempt(P, warm, deadline=deadline, moves_left=moves, usd_left=usd)
    if len(stopped):
        warm = filled(warm)
    return warm


def improve_warm(P: Problem, options: SolveOptions, kernels: Any, warm: Solution, *, polish: bool = True,
                 on_progress=None) -> Solution:
    """Large instances: keep the warm start and improve it by LNS only, under ``options.time_limit_s``.

    ``polish=False`` returns the warm start itself (reasons re-judged, bound attached).

    ``run_pipeline`` also runs a cold greedy and the tiered price greedy, and adopts either when it
    is lexicographically better: with strict tiers a from-scratch plan a few $/h better in the top
    tier then replaces the warm start and moves hundreds of lower-tier jobs (measured: 994 moves
    for +$153/h on $47k/h at 10k jobs × 100 sites; at short time limits the price plan also
    leaves lower tiers unplaced). LNS changes a few sites at a time and keeps a step only when it
    is strictly better, migration costs included; a greedy fill then re-places jobs a
    neighbourhood stopped that fit elsewhere. Bound: the relaxed bound (one kernel pass).
    """
    from placement.core.solution import tier_objectives  # noqa: PLC0415
    from placement.solvers.bounds import relaxed_bound  # noqa: PLC0415
    from placement.solvers.lns import improve  # noqa: PLC0415
    from placement.solvers.pipeline import SOLVER_REASONS  # noqa: PLC0415
    from placement.solvers.reasons import explain_unplaced  # noqa: PLC0415
    from placement.solvers.repair import fill  # noqa: PLC0415

    start = time.monotonic()
    deadline = start + options.time_limit_s
    bound = relaxed_bound(P, kernels)

    def report(sol: Solution) -> None:
        if on_progress:
            on_progress(float(tier_objectives(P, sol).sum()), bound)

    report(warm)
    best = improve(P, warm, options, deadline=deadline, on_progress=report) if polish else warm
    if best is not warm:  # neighbourhoods may stop jobs that fit elsewhere: place them again
        best = fill(P, best, kernels, options)
    judge = np.flatnonzero((best.reason != Reason.PLACED) & ~np.isin(best.reason, SOLVER_REASONS))
    best.reason = best.reason.copy()
    best.reason[judge] = explain_unplaced(P, kernels, judge)
    best.bound = bound
    best.backend = kernels.name
    best.solver = "replan"
    best.status = "feasible"
    stages = ["warm-start", "lns", "fill"] if polish else ["warm-start"]
    best.stats = {**best.stats, "stages": stages, "seconds_solve": time.monotonic() - start}
    return best


def _forget_forbidden_current(P: Problem, job: np.ndarray, pool: np.ndarray) -> Problem:
    """Clear ``job_current_pool`` of jobs whose current pool breaks a per-job rule (gang, forbidden pair).

    They cannot stay, so staying must not be an option any solver falls back on: the greedy's
    "budget spent, stay put" path checks the class list and capacity but not these rules. They
    still count as moved when they run elsewhere (``settle`` and the validator see the jobs
    table's current placement), they just pay no modelled migration $/h.
    """
    from placement.kernels.reference import unit_terms  # noqa: PLC0415

    if len(job) == 0:
        return P
    t = unit_terms(P, job, pool, np.ones(len(job)))
    bad = ((P.job_kind[job] == 0) & (P.job_gpus_unit[job] > P.site_max_gang[P.pool_site[pool]])) | t["forbidden"]
    bad &= ~P.job_pinned[job] & (P.job_current_pool[job] == pool)
    if not np.any(bad):
        return P
    current = P.job_current_pool.copy()
    current[job[bad]] = -1
    return dataclasses.replace(P, job_current_pool=current)


def _true_moved_column(plan: Plan, P: Problem, current: Any, moved: np.ndarray) -> None:
    """Set the plan table's ``moved`` column: a placed row of a moved job with more units than before."""
    S = plan.solution
    before = dict(zip((current.job * P.n_pools + current.pool).tolist(), current.units.tolist()))
    old = np.array([before.get(k, 0) for k in (S.row_job * P.n_pools + S.row_pool).tolist()], np.int64)
    row_moved = moved[S.row_job] & (S.row_units > old)
    col = np.concatenate([row_moved, np.zeros(plan.table.num_rows - len(row_moved), bool)])
    i = plan.table.column_names.index("moved")
    plan.table = plan.table.set_column(i, "moved", pa.array(col, pa.bool_()))


__all__ = [
    "CHANGES", "EVENT_GRAMMAR", "Curtail", "Event", "Outage", "ReplanOptions", "ReplanPlan", "SetOnline", "SetPool",
    "apply_events", "check_event", "current_state", "parse_event", "plan_to_solution", "replan", "replan_options",
    "warm_start",
]
