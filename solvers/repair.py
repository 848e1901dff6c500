"""Repair a warm start to the problem as it is now, and fill the room it leaves.

``run_pipeline(..., initial=S)`` starts from ``repair(problem, S, kernels)``: the placement
running now, made valid for today's capacities and rules. Repair only ever *removes* jobs, never
moves one, so it costs no migration and needs no search:

1. **Eligibility.** Every row is checked as the kernels check a candidate: the job has a
   candidate at all (``job_filter``), the pool is in the job's class list (online site, tenant,
   region, GPU type, cooling, latency), the pair is not forbidden, the gang fits the site's
   fabric, a pinned job is on its current pool, one unit fits the pool's inventory. Then the job's
   shape: a training job is one row of one unit; a service places exactly ``replicas`` units,
   at most ``max_units_per_site`` per site, over at least ``min_sites`` sites. A job with any bad
   row is dropped whole (a service keeps all its replicas or none, so spread rules stay valid).
2. **Capacity.** Per site over its facility-MW cap, then per pool over its GPUs, whole jobs are
   shed in *shed order* — optional before required, lowest tier first, then lowest value
   density (value per GPU), then the highest index — taking the shortest prefix of that order
   at the resource that covers its excess. Shedding a service frees every site it spans, so a
   prefix can overshoot; shed jobs are then added back, most valuable first, wherever all their
   rows fit again. The caps are never exceeded afterwards (``MW_TOLERANCE`` as the kernels use).
3. **Migration budget.** If the warm start itself moves jobs away from ``job_current_pool``
   (a plan that disagrees with the jobs' current placement) beyond ``max_moves`` or
   ``max_migration_usd``, moved jobs are dropped in shed order until it fits.

Dropped jobs stay unplaced in the returned Solution with a reason (``NO_ELIGIBLE_SITE`` when the
job has no candidate at all, ``OUT_VALUED`` for another eligibility change, ``POWER`` / ``GPUS``
for capacity sheds, ``MIGRATION_BUDGET``); the pipeline re-judges every reason but the budget at
the end. All steps are NumPy over rows except the add-back, a loop over shed jobs only:
100,000 rows repair in well under a second.

``fill`` then places unplaced jobs (arrivals, shed jobs, jobs out-valued before) into the room
the repaired plan leaves, with the greedy over the residual capacities and the migration budget
left: the warm start a re-plan hands the pipeline keeps every running job where it is and adds
what fits. ``settle`` runs after the solve: it reverts moves that gain no more than their cost
and enforces a migration budget counted on whole placements (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import IntEnum

import numpy as np

from placement.core import clock
from placement.kernels import Kernels
from placement.model.portfolio import SolveOptions
from placement.core.objective import candidate_speed, migration_units, net_before_migration, net_value, unit_terms
from placement.core.problem import MW_TOLERANCE, Filter, Problem
from placement.core.solution import Reason, Solution
from placement.solvers.greedy import fill_unplaced, greedy_order


class Cause(IntEnum):
    """What repair did to a job of the warm start."""

    KEPT = 0  # placed in the warm start and kept where it is
    ABSENT = 1  # not placed in the warm start
    INELIGIBLE = 2  # a row (or the job's shape) is not allowed any more
    POWER = 3  # shed: its site is over its facility-MW cap
    GPUS = 4  # shed: its pool is over its GPUs
    BUDGET = 5  # dropped: the warm start itself exceeds the migration budget


@dataclass
class RepairReport:
    """Per job (problem indices): what repair did (``Cause``), and counts for the summary."""

    cause: np.ndarray  # int8 Cause per job
    counts: dict[str, int] = field(default_factory=dict)


def shed_rank(problem: Problem) -> np.ndarray:
    """Position of each job in shed order (0 sheds first): optional, lowest tier, lowest $/GPU, highest index."""
    P = problem
    density = P.job_value_unit / np.maximum(P.job_gpus_unit, 1)
    order = np.lexsort((-np.arange(P.n_jobs), density, P.job_tier, P.job_required))
    rank = np.empty(P.n_jobs, np.int64)
    rank[order] = np.arange(P.n_jobs)
    return rank


def _rows(problem: Problem, sol: Solution) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows merged per (job, pool) and sorted; also jobs with a row that names no valid index."""
    P = problem
    j = np.asarray(sol.row_job, np.int64)
    p = np.asarray(sol.row_pool, np.int64)
    u = np.asarray(sol.row_units, np.int64)
    bad = np.zeros(P.n_jobs, bool)
    known = (j >= 0) & (j < P.n_jobs)
    bad[j[known & ((p < 0) | (p >= P.n_pools) | (u < 1))]] = True
    ok = known & (p >= 0) & (p < P.n_pools) & (u >= 1)
    j, p, u = j[ok], p[ok], u[ok]
    key, inv = np.unique(j * max(P.n_pools, 1) + p, return_inverse=True)
    units = np.bincount(inv.reshape(-1), weights=u, minlength=len(key)).astype(np.int64)
    return key // max(P.n_pools, 1), key % max(P.n_pools, 1), units, bad


def _eligible_jobs(P: Problem, j: np.ndarray, p: np.ndarray, u: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Jobs with any row the problem no longer allows, or a shape that breaks the job's rules."""
    bad = bad.copy()
    s = P.pool_site[p]
    speed = candidate_speed(P, j, p)
    t = unit_terms(P, j, p, np.nan_to_num(speed))
    row_bad = (
        np.isnan(speed)
        | (P.job_filter[j] != Filter.OK)
        | t["forbidden"]
        | ((P.job_kind[j] == 0) & (P.job_gpus_unit[j] > P.site_max_gang[s]))
        | (P.job_pinned[j] & (p != P.job_current_pool[j]))
        | (P.job_gpus_unit[j] > P.pool_gpus[p])
    )
    bad[j[row_bad]] = True
    n_rows = np.bincount(j, minlength=P.n_jobs)
    units = np.bincount(j, weights=u, minlength=P.n_jobs)
    has = n_rows > 0
    training = P.job_kind == 0
    bad |= has & training & ((n_rows != 1) | (units != 1))
    bad |= has & ~training & (units != P.job_units)
    # Services: units per site within the share, and enough sites.
    js, inv = np.unique(j * max(P.n_sites, 1) + s, return_inverse=True)
    per_site = np.bincount(inv.reshape(-1), weights=u, minlength=len(js))
    js_job = js // max(P.n_sites, 1)
    bad[js_job[per_site > P.job_max_units_per_site[js_job]]] = True
    n_sites = np.bincount(js_job, minlength=P.n_jobs)
    bad |= has & ~training & (n_sites < P.job_min_sites)
    return bad


def _prefix_shed(res: np.ndarray, amount: np.ndarray, rank: np.ndarray, excess: np.ndarray,
                 job: np.ndarray, tol: float) -> np.ndarray:
    """Jobs to shed: per resource with ``excess > tol``, the shortest rank-ordered prefix covering it."""
    over = (excess[res] > tol) & (amount > 0)
    if not np.any(over):
        return np.zeros(0, np.int64)
    r, a, k, jj = res[over], amount[over], rank[over], job[over]
    order = np.lexsort((k, r))
    r, a, jj = r[order], a[order], jj[order]
    cum = np.cumsum(a)
    start = np.searchsorted(r, r, side="left")
    before = cum - a - np.where(start > 0, cum[start - 1], 0)
    return np.unique(jj[before < excess[r] - tol * 1e-3])


def _loads(P: Problem, j: np.ndarray, p: np.ndarray, mw: np.ndarray, gpus: np.ndarray,
           alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    site = np.bincount(P.pool_site[p[alive]], weights=mw[alive], minlength=P.n_sites).astype(np.float64)
    pool = np.bincount(p[alive], weights=gpus[alive], minlength=P.n_pools).astype(np.float64)
    return site, pool


def moves_of(problem: Problem, j: np.ndarray, p: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, float]:
    """Jobs these rows move (units beyond their current units on a pool), and the one-off $."""
    P = problem
    extra = migration_units(P, j, p, u)
    moved = np.unique(j[extra > 0])
    usd = float((extra * P.job_migration_usd[j]).sum())
    return moved, usd


def repair_with_report(problem: Problem, solution: Solution, kernels: Kernels | None = None
                       ) -> tuple[Solution, RepairReport]:
    """``repair`` that also says, per job, what it did (``RepairReport``)."""
    P = problem
    j, p, u, bad = _rows(P, solution)
    cause = np.full(P.n_jobs, Cause.ABSENT, np.int8)
    cause[j] = Cause.KEPT
    cause[bad] = Cause.INELIGIBLE
    bad = _eligible_jobs(P, j, p, u, bad)
    cause[bad & (cause != Cause.ABSENT)] = Cause.INELIGIBLE
    keep = ~bad[j]
    j, p, u = j[keep], p[keep], u[keep]

    speed = np.nan_to_num(candidate_speed(P, j, p))
    mw = unit_terms(P, j, p, speed)["mw"] * u
    gpus = (u * P.job_gpus_unit[j]).astype(np.float64)
    rank = shed_rank(P)
    alive_job = np.zeros(P.n_jobs, bool)
    alive_job[j] = True
    shed_site = np.zeros(0, np.int64)
    shed_pool = np.zeros(0, np.int64)
    for _ in range(8):  # one round suffices (shedding only lowers loads); a few for safety
        alive = alive_job[j]
        site_load, _ = _loads(P, j, p, mw, gpus, alive)
        s_shed = _prefix_shed(P.pool_site[p[alive]], mw[alive], rank[j[alive]],
                              site_load - P.site_cap_mw, j[alive], MW_TOLERANCE)
        alive_job[s_shed] = False
        alive = alive_job[j]
        _, pool_load = _loads(P, j, p, mw, gpus, alive)
        p_shed = _prefix_shed(p[alive], gpus[alive], rank[j[alive]], pool_load - P.pool_gpus,
                              j[alive], 0.5)
        alive_job[p_shed] = False
        shed_site = np.union1d(shed_site, s_shed)
        shed_pool = np.union1d(shed_pool, p_shed)
        if len(s_shed) == 0 and len(p_shed) == 0:
            break
    shed = np.union1d(shed_site, shed_pool)
    added = _add_back(P, j, p, mw, gpus, alive_job, shed, rank)
    cause[shed_pool] = Cause.GPUS
    cause[shed_site] = Cause.POWER
    cause[added] = Cause.KEPT

    # The warm start's own moves (a plan that disagrees with the jobs' current placement).
    alive = alive_job[j]
    moved, usd = moves_of(P, j[alive], p[alive], u[alive])
    over_moves = len(moved) - P.max_moves
    over_usd = usd - P.max_migration_usd
    if over_moves > 0 or over_usd > 1e-9:
        ranked = moved[np.argsort(rank[moved], kind="stable")]
        cost = np.bincount(j[alive], weights=migration_units(P, j[alive], p[alive], u[alive])
                           * P.job_migration_usd[j[alive]], minlength=P.n_jobs)[ranked]
        k_usd = int(np.searchsorted(np.cumsum(cost), over_usd - 1e-9, side="left")) + 1 if over_usd > 1e-9 else 0
        drop = ranked[:max(over_moves, k_usd, 0)]
        alive_job[drop] = False
        cause[drop] = Cause.BUDGET

    alive = alive_job[j]
    reason = np.where(solution.reason == Reason.PLACED, Reason.OUT_VALUED, solution.reason).astype(np.int8)
    if len(reason) != P.n_jobs:
        reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    reason[cause == Cause.INELIGIBLE] = np.where(P.job_filter[cause == Cause.INELIGIBLE] != Filter.OK,
                                                 Reason.NO_ELIGIBLE_SITE, Reason.OUT_VALUED)
    reason[cause == Cause.POWER] = Reason.POWER
    reason[cause == Cause.GPUS] = Reason.GPUS
    reason[cause == Cause.BUDGET] = Reason.MIGRATION_BUDGET
    reason[j[alive]] = Reason.PLACED
    out = Solution(j[alive], p[alive], u[alive], reason, solver="warm-start",
                   backend=getattr(kernels, "name", solution.backend), status="feasible",
                   stats={**solution.stats})
    counts = {name.lower(): int((cause == c).sum()) for name, c in Cause.__members__.items()}
    counts["added_back"] = int(len(added))
    out.stats["repair"] = counts
    return out, RepairReport(cause, counts)


def _add_back(P: Problem, j: np.ndarray, p: np.ndarray, mw: np.ndarray, gpus: np.ndarray,
              alive_job: np.ndarray, shed: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Re-admit shed jobs, most valuable first, wherever all their rows fit; returns them."""
    if len(shed) == 0:
        return shed
    alive = alive_job[j]
    site_load, pool_load = _loads(P, j, p, mw, gpus, alive)
    site_free = P.site_cap_mw - site_load
    pool_free = P.pool_gpus - pool_load
    order = np.argsort(j, kind="stable")
    starts = np.searchsorted(j[order], shed, side="left")
    ends = np.searchsorted(j[order], shed, side="right")
    added = []
    for k in np.argsort(-rank[shed], kind="stable"):
        rows = order[starts[k]:ends[k]]
        sites = P.pool_site[p[rows]]
        need_mw = np.bincount(sites, weights=mw[rows], minlength=P.n_sites)
        need_g = np.bincount(p[rows], weights=gpus[rows], minlength=P.n_pools)
        touched_s, touched_p = np.unique(sites), np.unique(p[rows])
        if (np.all(need_mw[touched_s] <= site_free[touched_s] + MW_TOLERANCE)
                and np.all(need_g[touched_p] <= pool_free[touched_p])):
            site_free -= need_mw
            pool_free -= need_g
            alive_job[shed[k]] = True
            added.append(shed[k])
    return np.asarray(added, np.int64)


def repair(problem: Problem, solution: Solution, kernels: Kernels | None = None) -> Solution:
    """The warm start ``solution`` made valid for ``problem`` by dropping jobs only (module docstring).

    Never exceeds a site's MW cap or a pool's GPUs; never moves a job; pinned jobs stay on their
    current pool or are dropped; the returned plan keeps within the migration budget.
    """
    return repair_with_report(problem, solution, kernels)[0]


def fill(problem: Problem, solution: Solution, kernels: Kernels, options: SolveOptions,
         deadline: float | None = None, max_moves: int | None = None,
         max_migration_usd: float | None = None) -> Solution:
    """``solution`` (valid, e.g. repaired) plus unplaced jobs greedily placed in the room it leaves.

    Placed jobs stay exactly where they are. Unplaced jobs with a candidate go through
    ``solve_greedy`` on the sub-problem of the residual capacities (required first, then tier,
    then value per GPU); a job with a current pool that lands elsewhere counts against the
    migration budget left: ``max_moves`` / ``max_migration_usd`` if given, else the problem's
    budget less what ``solution`` already moves (``job_current_pool`` semantics). The result's
    rows are sorted by (job, pool), with no bound or prices attached.
    """
    S = solution
    if deadline is not None and clock.now() > deadline:
        return S
    filled = fill_unplaced(problem, S, kernels, options, deadline=deadline, max_moves=max_moves,
                           max_migration_usd=max_migration_usd)
    if filled.tried == 0:
        return S
    out = filled.solution
    order = np.lexsort((out.row_pool, out.row_job))
    return replace(out, row_job=out.row_job[order], row_pool=out.row_pool[order], row_units=out.row_units[order],
                   backend=kernels.name, bound=math.inf, site_price_usd_per_mwh=None,
                   pool_price_usd_per_gpu_hour=None,
                   stats={**S.stats, "fill": {"tried": filled.tried, "placed": filled.placed}})


def preempt(problem: Problem, solution: Solution, deadline: float | None = None,
            moves_left: float = np.inf, usd_left: float = np.inf,
            only: np.ndarray | None = None) -> tuple[Solution, np.ndarray]:
    """Place unplaced training jobs that fit nowhere by stopping strictly lower-tier jobs at one pool.

    Strict tiers say a higher-tier job is never out-valued by lower tiers, so when an arrival (or
    a displaced job) of tier t finds no room, it takes a pool whose optional jobs of tiers below t
    (any optional job, for a required job) make room when stopped, in shed order, fewest first.
    Among eligible pools (class list, gang, forbidden pair, pinned, inventory) where that works
    and the job's own net $/h is positive (or it is required), the one whose highest stopped tier
    is lowest, then stopping the least value, wins (ties: lowest pool). A stopped service frees all its replicas. Jobs in order: required,
    then tier, then value per GPU, highest first. A job with a current pool that would land
    elsewhere needs ``moves_left`` / ``usd_left`` (whole-placement budget; decremented).
    ``only`` (a mask over jobs) limits which unplaced jobs may stop others: a re-plan lets only
    arrivals and displaced jobs do so, so re-planning an unchanged plan stops nothing.

    Services are not placed this way (their spread needs several pools at once): the greedy fill
    and the solvers handle them. Returns the new solution and the jobs it stopped (to re-place
    with ``fill``). A loop over the jobs considered; each step is NumPy over the rows at its pools.
    """
    P, S = problem, solution
    todo = _preempt_order(P, S)
    if only is not None:
        todo = todo[only[todo]]
    if len(todo) == 0:
        return S, np.zeros(0, np.int64)
    state = _Preemption.start(P, S, moves_left, usd_left)
    for jj in todo.tolist():
        if deadline is not None and clock.now() > deadline:
            break
        state.try_place(jj)
    if not state.new_rows:
        return S, np.zeros(0, np.int64)
    return state.solution(S), np.unique(np.asarray(state.stopped, np.int64))


def _preempt_order(P: Problem, S: Solution) -> np.ndarray:
    """Unplaced training jobs above the lowest placed tier (any tier if required), in greedy order."""
    todo = np.flatnonzero((S.reason != Reason.PLACED) & (P.job_filter == Filter.OK) & (P.job_kind == 0))
    if len(todo) == 0 or len(S.row_job) == 0:
        return np.zeros(0, np.int64)
    lowest = int(P.job_tier[S.row_job].min())
    todo = todo[(P.job_tier[todo] > lowest) | P.job_required[todo]]
    pos = np.empty(P.n_jobs, np.int64)
    pos[greedy_order(P)] = np.arange(P.n_jobs)
    return todo[np.argsort(pos[todo], kind="stable")]


@dataclass
class _Preemption:
    """``preempt``'s working state: the plan's rows and which still run, the room left, the budget
    left, and the rows added and jobs stopped so far."""

    P: Problem
    j: np.ndarray  # the plan's rows
    p: np.ndarray
    u: np.ndarray
    row_mw: np.ndarray  # facility MW of each row
    row_g: np.ndarray  # GPUs of each row
    shed: np.ndarray  # shed rank per job
    alive: np.ndarray  # rows not stopped
    free_mw: np.ndarray  # per site
    free_g: np.ndarray  # per pool
    reason: np.ndarray
    moves_left: float
    usd_left: float
    new_rows: list[tuple[int, int]] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, P: Problem, S: Solution, moves_left: float, usd_left: float) -> _Preemption:
        j, p, u = S.row_job.copy(), S.row_pool.copy(), S.row_units.copy()
        row_mw = unit_terms(P, j, p, np.nan_to_num(candidate_speed(P, j, p)))["mw"] * u
        row_g = (u * P.job_gpus_unit[j]).astype(np.float64)
        return cls(P, j, p, u, row_mw, row_g, shed_rank(P), np.ones(len(j), bool),
                   P.site_cap_mw - np.bincount(P.pool_site[p], weights=row_mw, minlength=P.n_sites),
                   P.pool_gpus - np.bincount(p, weights=row_g, minlength=P.n_pools), S.reason.copy(),
                   moves_left, usd_left)

    def try_place(self, jj: int) -> None:
        """Place gang ``jj`` where stopping lower-tier jobs does the least damage, if anywhere."""
        P = self.P
        pools, need_mw = self._allowed(jj)
        if len(pools) == 0:
            return
        sites = P.pool_site[pools]
        need_g = float(P.job_gpus_unit[jj])
        if np.any((self.free_g[pools] >= need_g) & (self.free_mw[sites] + MW_TOLERANCE >= need_mw)):
            return  # it fits somewhere: the fill left it out for profit or budget
        room = self._cheapest_room(jj, pools, sites, need_mw, need_g)
        if room is not None:
            best, victims = room
            self._place(jj, int(pools[best]), int(sites[best]), need_mw[best], need_g, victims)

    def _allowed(self, jj: int) -> tuple[np.ndarray, np.ndarray]:
        """Pools ``jj`` may take (eligible, profitable or required, within the budget) and its MW there."""
        P = self.P
        pools, spd = P.candidates(jj)
        jv = np.full(len(pools), jj, np.int64)
        tt = unit_terms(P, jv, pools, spd)
        net = net_value(tt)
        cur = P.job_current_pool[jj]
        ok = (~tt["forbidden"] & (P.job_gpus_unit[jj] <= P.pool_gpus[pools])
              & (P.job_gpus_unit[jj] <= P.site_max_gang[P.pool_site[pools]])
              & (~P.job_pinned[jj] | (pools == cur)) & ((net > 0) | P.job_required[jj]))
        if cur >= 0:
            ok &= (pools == cur) | ((self.moves_left >= 1) & (P.job_migration_usd[jj] <= self.usd_left + 1e-9))
        return pools[ok], tt["mw"][ok]

    def _cheapest_room(self, jj: int, pools: np.ndarray, sites: np.ndarray, need_mw: np.ndarray,
                       need_g: float) -> tuple[int, np.ndarray] | None:
        """Index into ``pools`` of the pool to take and the jobs to stop there; None if none works."""
        P, j, p = self.P, self.j, self.p
        at = np.zeros(P.n_pools, bool)
        at[pools] = True
        row_tier = P.job_tier[j]
        victim = self.alive & ~P.job_required[j] & at[p]
        if not P.job_required[jj]:
            victim &= row_tier < P.job_tier[jj]
        rows = np.flatnonzero(victim)
        if len(rows) == 0:
            return None
        # Per pool, victims in shed order; the shortest prefix that makes room.
        rows = rows[np.lexsort((self.shed[j[rows]], p[rows]))]
        rp = p[rows]
        row_value = P.job_value_unit[j[rows]] * self.u[rows]
        cum_g, cum_mw, cum_v = np.cumsum(self.row_g[rows]), np.cumsum(self.row_mw[rows]), np.cumsum(row_value)
        first = np.searchsorted(rp, pools, side="left")
        last = np.searchsorted(rp, pools, side="right")
        before = np.maximum(first - 1, 0)
        bg, bm, bv = (np.where(first > 0, c[before], 0.0) for c in (cum_g, cum_mw, cum_v))
        k_g = np.searchsorted(cum_g, bg + need_g - self.free_g[pools] - 1e-9, side="left")
        k_m = np.searchsorted(cum_mw, bm + need_mw - self.free_mw[sites] - MW_TOLERANCE, side="left")
        k = np.maximum(np.maximum(k_g, k_m), first)  # global index of the last victim needed
        feasible = k < last
        if not np.any(feasible):
            return None
        # Least damage, lexicographically by tier: the highest tier stopped (the last victim, as
        # victims are in shed order), then the value stopped.
        kk = np.minimum(k, len(rows) - 1)
        damage = np.where(feasible, cum_v[kk] - bv, np.inf)
        top = np.where(feasible, row_tier[rows[kk]], np.iinfo(np.int64).max)
        best = int(np.lexsort((damage, top))[0])
        return best, np.unique(j[rows[first[best]:k[best] + 1]])

    def _place(self, jj: int, q: int, qs: int, need_mw: float, need_g: float, victims: np.ndarray) -> None:
        """Stop ``victims`` (all their rows), then put ``jj`` on pool ``q`` at site ``qs``."""
        P = self.P
        gone = self.alive & np.isin(self.j, victims)
        np.add.at(self.free_mw, P.pool_site[self.p[gone]], self.row_mw[gone])
        np.add.at(self.free_g, self.p[gone], self.row_g[gone])
        self.alive &= ~gone
        self.reason[victims] = Reason.OUT_VALUED
        self.stopped.extend(victims.tolist())
        self.free_mw[qs] -= need_mw
        self.free_g[q] -= need_g
        self.new_rows.append((jj, q))
        self.reason[jj] = Reason.PLACED
        cur = P.job_current_pool[jj]
        if cur >= 0 and q != cur:
            self.moves_left -= 1
            self.usd_left -= P.job_migration_usd[jj]

    def solution(self, S: Solution) -> Solution:
        """``S`` with the stopped rows gone and the new ones added, rows sorted by (job, pool)."""
        alive = self.alive
        add = np.array(self.new_rows, np.int64).reshape(-1, 2)
        row_job = np.concatenate([self.j[alive], add[:, 0]])
        row_pool = np.concatenate([self.p[alive], add[:, 1]])
        row_units = np.concatenate([self.u[alive], np.ones(len(add), np.int64)])
        order = np.lexsort((row_pool, row_job))
        return Solution(row_job[order], row_pool[order], row_units[order], self.reason, solver=S.solver,
                        backend=S.backend, status=S.status,
                        stats={**S.stats, "preempt": {"placed": int(len(add)), "stopped": int(len(self.stopped))}})


@dataclass
class Current:
    """Where each job runs now, as rows in problem indices (a service may span several pools)."""

    job: np.ndarray  # int64
    pool: np.ndarray  # int64
    units: np.ndarray  # int64


def _by_job(n: int, j: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(j, kind="stable")
    ptr = np.zeros(n + 1, np.int64)
    np.add.at(ptr, j + 1, 1)
    return order, np.cumsum(ptr), j[order]


def true_moves(problem: Problem, current: Current, sol: Solution) -> tuple[np.ndarray, np.ndarray]:
    """Per job: moved (placed before and after, rows differ) and units placed where it had fewer before."""
    P = problem
    n = P.n_jobs
    key_now = current.job * P.n_pools + current.pool
    key_new = sol.row_job * P.n_pools + sol.row_pool
    before = dict(zip(key_now.tolist(), current.units.tolist()))
    away = np.zeros(n, np.int64)
    new_units = np.asarray(sol.row_units, np.int64)
    old = np.array([before.get(k, 0) for k in key_new.tolist()], np.int64)
    np.add.at(away, sol.row_job, np.maximum(new_units - old, 0))
    was = np.zeros(n, bool)
    was[current.job] = True
    now = np.zeros(n, bool)
    now[sol.row_job] = True
    # Same rows iff nothing lands where it was not and the totals agree (a service is whole).
    cur_total = np.bincount(current.job, weights=current.units, minlength=n)
    new_total = np.bincount(sol.row_job, weights=new_units, minlength=n)
    kept_rows = np.bincount(sol.row_job, weights=np.minimum(new_units, old), minlength=n)
    moved = was & now & ((away > 0) | (kept_rows != cur_total) | (new_total != cur_total))
    return moved, away


def settle(problem: Problem, current: Current, warm: Solution, solution: Solution, *,
           max_moves: int | None, max_migration_usd: float | None,
           protect: np.ndarray | None = None) -> tuple[Solution, bool]:
    """Undo moves that do not pay, then hold a migration budget counted on whole placements.

    ``current`` is where jobs run now; ``warm`` the repaired warm start (a job placed there is on
    its current rows, which are valid now). A job *moved* here is one placed before and after on
    rows that differ; its cost is ``job_migration_usd_per_hour`` (migration amortised plus any
    move threshold) per unit that lands where it had fewer units before.

    1. Every moved job whose gain (net $/h without migration, new rows minus current rows) does
       not exceed that cost, and whose current rows fit again once its new rows are freed, goes
       back, most gratuitous first: each revert raises its own tier's objective and no other.
       The model counts a service spanning several pools as away from all but its largest row,
       so a service can drift between its minor sites at no modelled cost; this step undoes that.
    2. While more than ``max_moves`` jobs move or their one-off migration $ exceeds
       ``max_migration_usd``: moved jobs, optional and lowest tier first, then least gain over
       cost, go back if they fit, else stop (optional jobs only).

    Returns the settled solution and whether it meets the budget (``False`` only when required
    jobs' moves alone exceed it and cannot go back: the caller then falls back to ``warm``).
    ``protect`` marks jobs never to stop (none by default but required ones).
    """
    P = problem
    S = replace(solution, row_job=solution.row_job.copy(), row_pool=solution.row_pool.copy(),
                row_units=solution.row_units.copy(), reason=solution.reason.copy(), stats={**solution.stats})
    moved, away = true_moves(P, current, S)
    if not np.any(moved):
        return S, True
    gain = _job_net(P, S) - _job_net(P, warm)
    slack = gain - away * P.job_migration_usd_per_hour  # > 0: the move pays
    state = _Settling.start(P, warm, S)
    done = np.zeros(P.n_jobs, bool)
    # 1. Moves that do not pay.
    idle = np.flatnonzero(moved & (slack <= 1e-9))
    for jj in idle[np.argsort(slack[idle], kind="stable")].tolist():
        done[jj] = state.try_revert(jj)
    # 2. The budget, counted on whole placements.
    protect = P.job_required if protect is None else (protect | P.job_required)
    ok = _hold_budget(state, moved, done, away * P.job_migration_usd, slack, protect, max_moves, max_migration_usd)
    state.finish()
    return S, ok


def _job_net(P: Problem, sol: Solution) -> np.ndarray:
    """Net $/h per job of ``sol``'s rows, migration left out."""
    rows_j, rows_p, rows_u = sol.row_job, sol.row_pool, sol.row_units
    t = unit_terms(P, rows_j, rows_p, np.nan_to_num(candidate_speed(P, rows_j, rows_p)))
    net = net_before_migration(t) * rows_u
    return np.bincount(rows_j, weights=net, minlength=P.n_jobs)


def _row_mw(P: Problem, sol: Solution) -> np.ndarray:
    """Facility MW of each of ``sol``'s rows."""
    j, p = sol.row_job, sol.row_pool
    return unit_terms(P, j, p, np.nan_to_num(candidate_speed(P, j, p)))["mw"] * sol.row_units


def _over_budget(live: np.ndarray, mig_usd: np.ndarray, max_moves: int | None, max_migration_usd: float | None
                 ) -> bool:
    """True if the ``live`` moves exceed ``max_moves`` or their one-off $ exceed ``max_migration_usd``."""
    return ((max_moves is not None and int(live.sum()) > max_moves)
            or (max_migration_usd is not None and float(mig_usd[live].sum()) > max_migration_usd + 1e-9))


def _hold_budget(state: _Settling, moved: np.ndarray, done: np.ndarray, mig_usd: np.ndarray, slack: np.ndarray,
                 protect: np.ndarray, max_moves: int | None, max_migration_usd: float | None) -> bool:
    """Step 2 of ``settle``: revert, else stop, moves until the budget holds; whether it does."""
    P = state.P
    if not _over_budget(moved & ~done, mig_usd, max_moves, max_migration_usd):
        return True
    cand = np.flatnonzero(moved & ~done)
    order = np.lexsort((slack[cand], P.job_tier[cand], P.job_required[cand]))
    for jj in cand[order].tolist():
        if not _over_budget(moved & ~done, mig_usd, max_moves, max_migration_usd):
            break
        if state.try_revert(jj):
            done[jj] = True
        elif not protect[jj]:
            state.stop(jj)
            done[jj] = True
    return not _over_budget(moved & ~done, mig_usd, max_moves, max_migration_usd)


@dataclass
class _Settling:
    """``settle``'s working state: the plan ``S`` (settled in place) and the warm start's rows per
    job, the room ``S`` leaves, and the jobs reverted and stopped so far."""

    P: Problem
    S: Solution
    warm: Solution
    back_ok: np.ndarray  # per job: its current rows are still valid (repair kept or re-admitted them)
    site_free: np.ndarray
    pool_free: np.ndarray
    s_mw: np.ndarray  # facility MW of each row of S
    w_mw: np.ndarray  # ... of warm
    new_order: np.ndarray  # S's rows by job: new_order[new_ptr[j]:new_ptr[j + 1]]
    new_ptr: np.ndarray
    w_order: np.ndarray  # warm's rows by job
    w_ptr: np.ndarray
    rows_removed: np.ndarray  # S's rows released
    reverted: list[int] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)

    @classmethod
    def start(cls, P: Problem, warm: Solution, S: Solution) -> _Settling:
        back_ok = np.zeros(P.n_jobs, bool)
        back_ok[warm.row_job] = True
        s_mw = _row_mw(P, S)
        site_free = P.site_cap_mw - np.bincount(P.pool_site[S.row_pool], weights=s_mw, minlength=P.n_sites)
        pool_free = P.pool_gpus - np.bincount(S.row_pool, weights=S.row_units * P.job_gpus_unit[S.row_job],
                                              minlength=P.n_pools)
        new_order, new_ptr, _ = _by_job(P.n_jobs, S.row_job)
        w_order, w_ptr, _ = _by_job(P.n_jobs, warm.row_job)
        return cls(P, S, warm, back_ok, site_free, pool_free, s_mw, _row_mw(P, warm), new_order, new_ptr,
                   w_order, w_ptr, np.zeros(len(S.row_job), bool))

    def new_rows(self, jj: int) -> np.ndarray:
        return self.new_order[self.new_ptr[jj]:self.new_ptr[jj + 1]]

    def old_rows(self, jj: int) -> np.ndarray:
        return self.w_order[self.w_ptr[jj]:self.w_ptr[jj + 1]]

    def release(self, jj: int) -> None:
        """Free ``jj``'s rows in ``S`` (once)."""
        P, S, rows = self.P, self.S, self.new_rows(jj)
        if self.rows_removed[rows].any():
            return
        np.add.at(self.site_free, P.pool_site[S.row_pool[rows]], self.s_mw[rows])
        np.add.at(self.pool_free, S.row_pool[rows], S.row_units[rows] * P.job_gpus_unit[jj])
        self.rows_removed[rows] = True

    def stop(self, jj: int) -> None:
        self.release(jj)
        self.stopped.append(jj)

    def try_revert(self, jj: int) -> bool:
        """Put ``jj`` back on its current rows if they fit once its new rows are freed."""
        if not self.back_ok[jj]:
            return False
        P, S, warm = self.P, self.S, self.warm
        rows = self.old_rows(jj)
        sites = P.pool_site[warm.row_pool[rows]]
        # Capacity once this job's new rows are freed.
        nr = self.new_rows(jj)
        sf = self.site_free.copy()
        pf = self.pool_free.copy()
        np.add.at(sf, P.pool_site[S.row_pool[nr]], self.s_mw[nr])
        np.add.at(pf, S.row_pool[nr], S.row_units[nr] * P.job_gpus_unit[jj])
        need_mw = np.bincount(sites, weights=self.w_mw[rows], minlength=P.n_sites)
        need_g = np.bincount(warm.row_pool[rows], weights=warm.row_units[rows] * P.job_gpus_unit[jj],
                             minlength=P.n_pools)
        us, up = np.unique(sites), np.unique(warm.row_pool[rows])
        if np.any(need_mw[us] > sf[us] + MW_TOLERANCE) or np.any(need_g[up] > pf[up]):
            return False
        self.release(jj)
        self.site_free[:] = sf - need_mw
        self.pool_free[:] = pf - need_g
        self.reverted.append(jj)
        return True

    def finish(self) -> None:
        """Write the outcome into ``S``: released rows gone, reverted jobs' current rows back."""
        S, warm = self.S, self.warm
        keep = ~self.rows_removed
        back = np.asarray(self.reverted, np.int64)
        back_rows = (np.concatenate([self.old_rows(jj) for jj in back.tolist()]) if len(back)
                     else np.zeros(0, np.int64))
        row_job = np.concatenate([S.row_job[keep], warm.row_job[back_rows]])
        row_pool = np.concatenate([S.row_pool[keep], warm.row_pool[back_rows]])
        row_units = np.concatenate([S.row_units[keep], warm.row_units[back_rows]])
        order = np.lexsort((row_pool, row_job))
        S.row_job, S.row_pool, S.row_units = row_job[order], row_pool[order], row_units[order]
        stopped = np.asarray(self.stopped, np.int64)
        S.reason[stopped] = Reason.MIGRATION_BUDGET
        S.reason[back] = Reason.PLACED
        S.stats["settle"] = {"reverted": int(len(back)), "stopped": int(len(stopped))}
