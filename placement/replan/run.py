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
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.core import clock
from placement.core.objective import unit_terms
from placement.core.problem import UNLIMITED, Problem, compile_problem, largest_rows, subproblem, with_current
from placement.core.solution import Reason, Solution, tier_objectives, usage
from placement.current_plan import PlanRows, read_plan_rows
from placement.errors import InputError, InvalidPlanError, did_you_mean
from placement.io.columns import text_values
from placement.io.digest import input_digest
from placement.io.tables import read_plan_table, write_table
from placement.kernels import Kernels, kernels_for
from placement.model.events import EVENT_GRAMMAR as EVENT_GRAMMAR
from placement.model.events import Curtail as Curtail
from placement.model.events import Event as Event
from placement.model.events import Outage as Outage
from placement.model.events import SetOnline as SetOnline
from placement.model.events import SetPool as SetPool
from placement.model.events import apply_events, parse_events
from placement.model.events import check_event as check_event
from placement.model.events import parse_event as parse_event
from placement.model.jobs import validate_jobs
from placement.model.portfolio import Portfolio, SolveOptions
from placement.plan import Plan, build_plan
from placement.replan.changes import CHANGES as CHANGES
from placement.replan.changes import ReplanOutcome, build_changes
from placement.replan.state import (
    CurrentState,
    ReplanOptions,
    current_state,
    current_table,
    replan_options,
)
from placement.solvers.bounds import relaxed_bound
from placement.solvers.compare import better
from placement.solvers.lns import improve
from placement.solvers.lns import merge as lns_merge
from placement.solvers.lp import lp_bound
from placement.solvers.pipeline import (
    EXACT_MAX_CANDIDATES,
    candidate_count,
    engine_options,
    run_pipeline,
)
from placement.solvers.reasons import explain_unplaced
from placement.solvers.repair import (
    Current,
    RepairReport,
    fill,
    preempt,
    repair_with_report,
    settle,
    true_moves,
)
from placement.solvers.stages import SOLVER_REASONS
from placement.validate.checks import check_gpus, check_once, check_placed_rows, check_power
from placement.validate.validator import validate_plan

log = logging.getLogger(__name__)

# --- the current placement ------------------------------------------------------------------


def solve_jobs(portfolio: Portfolio, jobs: pa.Table, cur: CurrentState, listed_in_plan: bool,
               options: ReplanOptions) -> pa.Table:
    """The jobs table the re-plan solves: current placement and move costs filled in, re-validated."""
    n = jobs.num_rows
    site_ids = [s.id for s in portfolio.sites]
    types = list(portfolio.gpu_types)
    first = largest_rows(cur.job, cur.units, cur.site * len(types) + cur.gpu_type, n)
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


# --- the result -----------------------------------------------------------------------------

# Share of the time limit the warm start (fill and preemption) may use before the solvers.
WARM_SHARE = 0.7
# Share of the time limit a reacting re-plan gives its LP bound.
BOUND_SHARE = 0.2


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
    options: SolveOptions | None = None  # what the plan was validated with
    current: pa.Table | None = None  # where jobs ran before, as plan rows: pass to ``validate_plan``

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
    start = time.monotonic()
    opts = options if isinstance(options, ReplanOptions) else replan_options(portfolio, options)
    parsed = parse_events(events, portfolio)
    after = apply_events(portfolio, parsed)
    plan_rows = _read_current_plan(current_plan, portfolio, after, jobs, pairs)
    cur = current_state(after, jobs, plan_rows)
    table = solve_jobs(after, jobs, cur, plan_rows is not None, opts)
    internal = opts.solve_options()
    problem, current = _replan_problem(after, table, pairs, internal, opts, cur)
    kernels = kernels_for(problem, opts.backend)
    hit = np.isin(problem.site_ids, [e.site for e in parsed])  # sites an event changed
    new = cur.arrived.copy()
    if plan_rows is None:  # without a plan, every job not running is new to the decision
        new[:] = True
        new[current.job] = False
    new[current.job[hit[problem.pool_site[current.pool]]]] = True
    with clock.work_clock(opts.deterministic):
        solution, report = _solve_from_current(problem, kernels, engine_options(internal), current, opts, new,
                                               warm_start=warm_start, on_progress=on_progress)
        solution.record_fallbacks(clock.take_fallbacks())

    plan = build_plan(problem, solution, seconds=time.monotonic() - start, seed=opts.seed,
                      input_sha256=input_digest(after, table, pairs))
    moved, away = true_moves(problem, current, solution)
    _true_moved_column(plan, problem, current, moved)
    now = current_table(after, table, cur)
    required = _required_unplaced(after, table, pairs, internal, plan, now)
    changes, section = build_changes(ReplanOutcome(after, problem, cur, current, solution, plan, report, parsed,
                                                   moved, away, opts))
    summary = plan.summary.finished(required, time.monotonic() - start, moves=int(moved.sum()), changes=section)
    return ReplanPlan(plan.table, summary, solution, changes=changes, portfolio=after, jobs=table,
                      options=internal, current=now)


# What the plan running now cannot break, before the events: it runs, so what it places fits.
# Eligibility and job fields may have changed since it was made (catching up is what a re-plan
# is for), and jobs may have come and gone, so those checks do not apply to it. The checkers
# that find these kinds run alone: the others (eligibility, spread, ...) would cost a re-plan time.
CURRENT_PLAN_CHECKS = frozenset({"duplicate_job", "training_split", "training_replicas", "gpus", "power"})
CURRENT_PLAN_CHECKERS = (check_once, check_placed_rows, check_gpus, check_power)


def _read_current_plan(current_plan: pa.Table | str | Path | None, before: Portfolio, after: Portfolio,
                       jobs: pa.Table, pairs: pa.Table | None) -> PlanRows | None:
    """The placed rows of the plan running now (a table or a path to one), checked against the
    portfolio ``before`` the events (``CURRENT_PLAN_CHECKS``) and read in the one ``after``
    them; None without a plan."""
    if current_plan is None:
        return None
    source = "current plan"
    if isinstance(current_plan, str | Path):
        source = str(current_plan)
        current_plan = read_plan_table(current_plan)
    rows = read_plan_rows(current_plan, after, source)
    broken = [v for v in validate_plan(before, jobs, current_plan, pairs, checks=CURRENT_PLAN_CHECKERS)
              if v.kind in CURRENT_PLAN_CHECKS]
    if broken:
        raise InputError(source, [(v.kind, f"the plan running now breaks a hard constraint before any "
                                           f"event: {v.message}") for v in broken[:20]])
    return rows


def _replan_problem(portfolio: Portfolio, table: pa.Table, pairs: pa.Table | None, internal: SolveOptions,
                    opts: ReplanOptions, cur: CurrentState) -> tuple[Problem, Current]:
    """The compiled problem (move threshold added to the migration $/h) and the current rows in its indices."""
    problem = compile_problem(portfolio, table, pairs, internal)
    if opts.move_threshold_usd_per_hour > 0:
        problem = dataclasses.replace(
            problem, job_migration_usd_per_hour=problem.job_migration_usd_per_hour + opts.move_threshold_usd_per_hour)
    cj, cp, cu = current_rows(problem, cur)
    problem = _forget_forbidden_current(with_current(problem, cj, cp, cu, keep_home=True), cj, cp)
    return problem, Current(cj, cp, cu)


def _solve_from_current(P: Problem, kernels: Kernels, internal: SolveOptions, current: Current,
                        opts: ReplanOptions, changed: np.ndarray, *, warm_start: bool,
                        on_progress) -> tuple[Solution, RepairReport]:
    """Repair the current placement, then react to what changed (default) or improve the whole
    plan from the warm start (``opts.improve``), and settle within the budget.

    ``changed``: jobs that arrived or run at a site an event changed; with the jobs the repair
    displaced, they are what a reacting re-plan may re-place.
    """
    n = P.n_jobs
    reason0 = np.full(n, Reason.OUT_VALUED, np.int8)
    reason0[current.job] = Reason.PLACED
    initial = Solution(current.job, current.pool, current.units, reason0, solver="current")
    t0 = clock.now()
    repaired, report = repair_with_report(P, initial, kernels)
    if warm_start and not opts.improve:
        displaced = np.zeros(n, bool)
        displaced[current.job] = True
        displaced[repaired.row_job] = False
        warm = _warm_start(P, kernels, internal, current, repaired, opts, t0, preempt_for=displaced | changed)
        new = displaced | changed | _rows_changed(P, repaired, warm)
        result = _react(P, kernels, internal, warm, new, opts, t0)
        solution = _settled(P, current, repaired, warm, result, opts)
        solution.stats = {**solution.stats, "repair": report.counts, "warm_start": True, "improve": False}
        return solution, report
    warm = _warm_start(P, kernels, internal, current, repaired, opts, t0) if warm_start else repaired
    left = max(opts.time_limit_s - (clock.now() - t0), opts.time_limit_s * 0.1)
    solve_opts = internal.model_copy(update={"time_limit_s": left})
    if not warm_start:
        result = run_pipeline(P, solve_opts, kernels, on_progress=on_progress)
    elif opts.solver == "auto" and candidate_count(P) > EXACT_MAX_CANDIDATES:
        result = improve_warm(P, solve_opts, kernels, warm, polish=opts.polish, on_progress=on_progress)
    else:
        result = run_pipeline(P, solve_opts, kernels, on_progress=on_progress, initial=warm)
    solution = _settled(P, current, repaired, warm, result, opts)
    solution.stats = {**solution.stats, "repair": report.counts, "warm_start": warm_start, "improve": True}
    return solution, report


def _react(P: Problem, kernels: Kernels, internal: SolveOptions, warm: Solution, new: np.ndarray,
           opts: ReplanOptions, t0: float) -> Solution:
    """The warm start with only what changed re-solved: a job it runs that is not ``new``
    (arrived, at a site an event changed, stopped or moved by preemption) stays exactly where it is.

    With nothing new the warm start is the answer: a re-plan of an unchanged plan is the plan
    plus whatever the fill could start. Otherwise the new jobs and every job not running are
    solved by the pipeline over the capacity the fixed ones leave, from the warm start, and
    merged back when that is lexicographically better. The bound is the LP bound, under at most
    ``BOUND_SHARE`` of the time limit.
    """
    deadline = t0 + opts.time_limit_s
    result = warm
    if np.any(new):
        jobs = np.flatnonzero(new | ~warm.placed)
        fixed = ~np.isin(warm.row_job, jobs)
        used = usage(P, warm, fixed)
        gpus, mw = used.residual(P)
        moves, usd = used.budget_left(P)
        sub = subproblem(P, jobs, gpus, mw, max_moves=moves, max_migration_usd=usd)
        local = np.full(P.n_jobs, -1, np.int64)
        local[jobs] = np.arange(len(jobs))
        start = Solution(local[warm.row_job[~fixed]], warm.row_pool[~fixed], warm.row_units[~fixed],
                         warm.reason[jobs].copy(), solver="warm-start")
        left = max(deadline - clock.now() - opts.time_limit_s * BOUND_SHARE, opts.time_limit_s * 0.1)
        solved = run_pipeline(sub, internal.model_copy(update={"time_limit_s": left}),
                              kernels_for(sub, kernels.name), initial=start)
        merged = lns_merge(P, warm, solved, jobs)
        result = merged if better(P, merged, warm) else warm
        result.stats = {**warm.stats, "stages": solved.stats.get("stages", []), "react_jobs": int(len(jobs))}
    result = replace(result, backend=kernels.name, solver="replan", status="feasible")
    bound_by = min(deadline, clock.now() + opts.time_limit_s * BOUND_SHARE)
    lp = lp_bound(P, kernels, incumbent=result, deadline=bound_by)
    result.bound = min(lp.bound, relaxed_bound(P, kernels))
    result.site_price_usd_per_mwh, result.pool_price_usd_per_gpu_hour = lp.site_price, lp.pool_price
    return result


def _rows_changed(P: Problem, before: Solution, after: Solution) -> np.ndarray:
    """Jobs placed in ``before`` whose rows in ``after`` differ (moved or stopped)."""
    moved, _ = true_moves(P, Current(before.row_job, before.row_pool, before.row_units), after)
    return moved | (before.placed & ~after.placed)


def _settled(P: Problem, current: Current, repaired: Solution, warm: Solution, result: Solution,
             opts: ReplanOptions) -> Solution:
    """``result`` settled within the whole-placement budget, else the warm start settled, else ``repaired``.

    A fallback keeps the solvers' bound, prices, backend and stats, and is no longer ``optimal``
    when it differs from ``result``.
    """
    budget = {"max_moves": opts.max_moves, "max_migration_usd": opts.max_migration_usd}
    solution, ok = settle(P, current, repaired, result, **budget)
    fallbacks = []
    if not ok:
        fallbacks.append({"stage": "settle", "reason": "the solvers' plan breaks the migration budget on whole "
                                                       "placements: fell back to the warm start"})
        solution, ok = settle(P, current, repaired, warm, **budget)
    if not ok:
        fallbacks.append({"stage": "settle", "reason": "the warm start breaks the migration budget too: fell back "
                                                       "to the repaired current placement"})
        solution = repaired
    for f in fallbacks:
        log.warning("re-plan %s: %s", f["stage"], f["reason"])
    if solution is not result:
        solution.bound = result.bound
        solution.site_price_usd_per_mwh = result.site_price_usd_per_mwh
        solution.pool_price_usd_per_gpu_hour = result.pool_price_usd_per_gpu_hour
        solution.backend = result.backend
        solution.stats = {**result.stats, **solution.stats}
    solution.record_fallbacks(fallbacks)
    if fallbacks and solution.status == "optimal" and (solution.row_job.size != result.row_job.size
                                                       or not np.array_equal(solution.row_pool, result.row_pool)):
        solution.status = "feasible"
    return solution


def _required_unplaced(portfolio: Portfolio, table: pa.Table, pairs: pa.Table | None, internal: SolveOptions,
                       plan: Plan, now: pa.Table) -> list[str]:
    """Validate the plan against the placement ``now`` (``InvalidPlanError``: a bug); the
    required jobs it could not place."""
    violations = validate_plan(portfolio, table, plan.table, pairs, internal, current=now)
    bugs = [v for v in violations if v.kind != "required"]
    if bugs:
        raise InvalidPlanError(f"re-plan ({plan.solution.solver}) produced an invalid plan (a bug): "
                               + "; ".join(v.message for v in bugs[:10]))
    return sorted(v.job_id for v in violations if v.kind == "required")


def _budget_left(P: Problem, current: Current, sol: Solution, opts: ReplanOptions) -> tuple[float, float]:
    """Moves and migration $ left of the whole-placement budget after ``sol`` (inf: no budget)."""
    moved, away = true_moves(P, current, sol)
    moves = math.inf if opts.max_moves is None else opts.max_moves - int(moved.sum())
    usd = (math.inf if opts.max_migration_usd is None
           else opts.max_migration_usd - float((away * P.job_migration_usd)[moved].sum()))
    return moves, usd


def _warm_start(P: Problem, kernels: Kernels, internal: SolveOptions, current: Current, repaired: Solution,
                opts: ReplanOptions, t0: float, preempt_for: np.ndarray | None = None) -> Solution:
    """Repaired current placement + greedy fill + preemption by higher tiers + fill of what they stopped.

    The fill and preemption share the first ``WARM_SHARE`` of the time limit (placing what fits
    is where a re-plan's value is; the solvers polish in the rest); every step keeps within the
    whole-placement migration budget. ``preempt_for``: the jobs that may stop others (default all).
    """
    deadline = t0 + opts.time_limit_s * WARM_SHARE

    def filled(sol: Solution) -> Solution:
        moves, usd = _budget_left(P, current, sol, opts)
        return fill(P, sol, kernels, internal, deadline=deadline,
                    max_moves=UNLIMITED if math.isinf(moves) else max(int(moves), 0), max_migration_usd=max(usd, 0.0))

    warm = filled(repaired)
    moves, usd = _budget_left(P, current, warm, opts)
    warm, stopped = preempt(P, warm, deadline=deadline, moves_left=moves, usd_left=usd, only=preempt_for)
    if len(stopped):
        warm = filled(warm)
    return warm


def improve_warm(P: Problem, options: SolveOptions, kernels: Kernels, warm: Solution, *, polish: bool = True,
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
    start, deadline = time.monotonic(), clock.now() + options.time_limit_s
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


def _true_moved_column(plan: Plan, P: Problem, current: Current, moved: np.ndarray) -> None:
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
    "apply_events", "check_event", "current_state", "parse_event", "replan", "replan_options",
]
