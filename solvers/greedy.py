"""Greedy filter -> score -> bind, one job at a time: the baseline every other solver must beat.

This is what a kube-scheduler-style loop does: jobs in order (required first, then priority
tier, then value per GPU), each bound to its best-scoring eligible pool with room. Scores come
from the kernels in batches; a job whose batch-time best no longer fits (earlier jobs in the
batch took the room) is re-scored alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from placement.core import clock
from placement.kernels import Kernels, kernels_for
from placement.kernels.reference import score_candidates
from placement.model.portfolio import SolveOptions
from placement.core.objective import candidate_speed, migration_units, net_value, unit_terms
from placement.core.problem import MW_TOLERANCE, Filter, Problem, subproblem
from placement.core.solution import Reason, Solution, usage
from placement.solvers.reasons import explain_unplaced

BATCH_JOBS = 4096
TOPK_FOR_SERVICES = 64


def greedy_order(problem: Problem, density: np.ndarray | None = None) -> np.ndarray:
    """Required first, then higher tier, then higher ``density`` (default value per GPU), then index."""
    P = problem
    if density is None:
        density = P.job_value_unit / np.maximum(P.job_gpus_unit, 1)
    return np.lexsort((np.arange(P.n_jobs), -density, -P.job_tier, ~P.job_required)).astype(np.int64)


class _State:
    """Residual capacity, migration budget left, and what is bound so far."""

    def __init__(self, P: Problem, site_price: np.ndarray | None, pool_price: np.ndarray | None):
        self.P = P
        self.lam = np.zeros(P.n_sites) if site_price is None else np.asarray(site_price, np.float64)
        self.mu = np.zeros(P.n_pools) if pool_price is None else np.asarray(pool_price, np.float64)
        self.gpus = P.pool_gpus.astype(np.int64).copy()
        self.mw = P.site_cap_mw.astype(np.float64).copy()
        self.moves_left = P.max_moves
        self.usd_left = P.max_migration_usd
        self.bound: dict[int, dict[int, int]] = {}

    def unit_mw(self, j: int, p: int) -> float:
        return self.P.unit_it_mw(j, p) * float(self.P.site_pue[self.P.pool_site[p]])

    def net(self, j: int, p: int, score: float) -> float:
        """True net $/h of a unit from its reduced score (prices added back)."""
        P = self.P
        return score + self.lam[P.pool_site[p]] * self.unit_mw(j, p) + self.mu[p] * P.job_gpus_unit[j]

    def fits(self, j: int, p: int, units: int, mw_unit: float) -> bool:
        s = self.P.pool_site[p]
        return (units * self.P.job_gpus_unit[j] <= self.gpus[p]
                and units * mw_unit <= self.mw[s] + MW_TOLERANCE)

    def away_units(self, j: int, take: dict[int, int]) -> int:
        """Units of ``take`` landing beyond the job's current units on their pools."""
        pools = np.fromiter(take, np.int64, len(take))
        units = np.fromiter(take.values(), np.int64, len(take))
        return int(migration_units(self.P, np.full(len(take), j, np.int64), pools, units).sum())

    def migration_ok(self, j: int, take: dict[int, int]) -> bool:
        away = self.away_units(j, take)
        return away == 0 or (self.moves_left >= 1 and away * self.P.job_migration_usd[j] <= self.usd_left + 1e-9)

    def bind(self, j: int, take: dict[int, int], mw_unit: dict[int, float]) -> None:
        P = self.P
        for p, u in take.items():
            self.gpus[p] -= u * P.job_gpus_unit[j]
            self.mw[P.pool_site[p]] -= u * mw_unit[p]
        away = self.away_units(j, take)
        if away:
            self.moves_left -= 1
            self.usd_left -= away * P.job_migration_usd[j]
        self.bound[j] = take


def solve_greedy(problem: Problem, options: SolveOptions, kernels: Kernels, deadline: float | None = None,
                 site_price: np.ndarray | None = None, pool_price: np.ndarray | None = None) -> Solution:
    """Greedy plan under ``deadline`` (``clock.now()`` value); never violates a hard constraint.

    With dual prices ($/MWh per site, $/GPU-h per pool, e.g. from the LP) jobs are ordered by
    reduced score per GPU and each goes to its best *reduced* pool, steering work away from
    sites whose power is worth more to others; profitability is still judged on true net value.
    """
    P = problem
    state = _State(P, site_price, pool_price)
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    explain = np.zeros(P.n_jobs, bool)  # unplaced jobs whose reason the shared judge decides
    density = None
    if site_price is not None or pool_price is not None:
        _, reduced, _ = kernels.best_candidate(np.arange(P.n_jobs), P.pool_gpus, P.site_cap_mw, state.lam, state.mu)
        density = np.where(np.isfinite(reduced), reduced, -1e18) / np.maximum(P.job_gpus_unit, 1)
    order = greedy_order(P, density)
    order = order[P.job_filter[order] == 0]
    explain[P.job_filter != 0] = True
    for start in range(0, len(order), BATCH_JOBS):
        if deadline is not None and clock.now() > deadline:
            reason[order[start:]] = Reason.TIME_LIMIT
            break
        batch = order[start:start + BATCH_JOBS]
        train = batch[P.job_kind[batch] == 0]
        pools, scores, _ = kernels.best_candidate(train, state.gpus, state.mw, state.lam, state.mu)
        best = dict(zip(train.tolist(), zip(pools.tolist(), scores.tolist())))
        for j in batch.tolist():
            if P.job_kind[j] == 0:
                ok = _bind_training(state, kernels, j, *best[j], reason)
            else:
                ok = _bind_service(state, kernels, j, reason)
            explain[j] = not ok and reason[j] == Reason.OUT_VALUED
    unplaced = np.flatnonzero(explain)
    reason[unplaced] = explain_unplaced(P, kernels, unplaced)
    return Solution.from_pool_units(state.bound, P.n_jobs, reason, solver="greedy", backend=kernels.name)


def _bind_training(state: _State, kernels: Kernels, j: int, p: int, score: float, reason) -> bool:
    """Bind a gang to its best pool (re-scored if taken meanwhile); ``score`` is its reduced score."""
    P = state.P
    if p >= 0 and not state.fits(j, p, 1, state.unit_mw(j, p)):
        pools, scores, _ = kernels.best_candidate(np.array([j]), state.gpus, state.mw, state.lam, state.mu)
        p, score = int(pools[0]), float(scores[0])
    if p < 0:
        return False
    net = state.net(j, p, score)
    if not state.migration_ok(j, {p: 1}):
        # The budget is spent: staying put is the only option, if every rule still allows it
        # (the spec's scoring says: class list, gang size, forbidden pair, room).
        p = int(P.job_current_pool[j])
        jj, pp = np.array([j]), np.array([max(p, 0)])
        speed = candidate_speed(P, jj, pp)
        zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
        if p < 0 or np.isnan(speed[0]) or not np.isfinite(
                score_candidates(P, jj, pp, speed, state.gpus, state.mw, zero_s, zero_p)[0]):
            reason[j] = Reason.MIGRATION_BUDGET
            return False
        t = unit_terms(P, jj, pp, speed)
        net = float(net_value(t)[0])
    if net <= 0 and not P.job_required[j]:
        reason[j] = Reason.NOT_PROFITABLE
        return False
    state.bind(j, {p: 1}, {p: state.unit_mw(j, p)})
    return True


def _bind_service(state: _State, kernels: Kernels, j: int, reason) -> bool:
    """Fill replicas over the best pools, keeping enough replicas back to reach min_sites."""
    P = state.P
    pools, scores = kernels.topk(np.array([j]), state.gpus, state.mw, state.lam, state.mu, TOPK_FOR_SERVICES)
    ok = pools[0] >= 0
    pools, scores = pools[0][ok], scores[0][ok]
    if len(pools) == 0:
        return False
    mw_unit = {p: state.unit_mw(j, p) for p in pools.tolist()}
    units, g = int(P.job_units[j]), int(P.job_gpus_unit[j])
    need_sites = int(P.job_min_sites[j])
    per_site: dict[int, int] = {}
    take: dict[int, int] = {}
    left, net = units, 0.0
    site_mw = state.mw.copy()
    for p, score in zip(pools.tolist(), scores.tolist()):
        if left == 0:
            break
        s = int(P.pool_site[p])
        new_site = s not in per_site
        sites_after = len(per_site) + (1 if new_site else 0)
        # Leave one replica for each site still needed after this one.
        cap = min(left - max(need_sites - sites_after, 0),
                  int(P.job_max_units_per_site[j]) - per_site.get(s, 0),
                  int(state.gpus[p] // g),
                  int((site_mw[s] + MW_TOLERANCE) // mw_unit[p]) if mw_unit[p] > 0 else left)
        if cap <= 0:
            continue
        take[p] = cap
        per_site[s] = per_site.get(s, 0) + cap
        site_mw[s] -= cap * mw_unit[p]
        left -= cap
        net += cap * state.net(j, p, score)
    if left > 0 or len(per_site) < need_sites:
        if sum(min(int(P.job_max_units_per_site[j]), int(state.gpus[p] // g)) for p in pools) >= units:
            reason[j] = Reason.SPREAD
        return False
    if not state.migration_ok(j, take):
        reason[j] = Reason.MIGRATION_BUDGET
        return False
    if net <= 0 and not P.job_required[j]:
        reason[j] = Reason.NOT_PROFITABLE
        return False
    state.bind(j, take, mw_unit)
    return True


@dataclass(frozen=True)
class Filled:
    """``fill_unplaced``'s plan, and how many jobs the greedy was given and placed."""

    solution: Solution
    tried: int
    placed: int


def fill_unplaced(problem: Problem, solution: Solution, kernels: Kernels, options: SolveOptions, *,
                  deadline: float | None = None, site_price: np.ndarray | None = None,
                  pool_price: np.ndarray | None = None, max_moves: int | None = None,
                  max_migration_usd: float | None = None, eligible_only: bool = True,
                  keep_reasons: bool = False) -> Filled:
    """``solution`` plus its unplaced jobs placed greedily in the room it leaves; placed jobs stay.

    The greedy (at ``site_price``/``pool_price`` if given) runs on the sub-problem of the
    unplaced jobs (``eligible_only``: those with a candidate; else all of them, and the greedy
    states each one's reason) over the residual GPUs and MW and the migration budget left:
    ``max_moves``/``max_migration_usd`` where given, else the problem's less what ``solution``
    moves. Jobs it leaves out get its reasons, or keep theirs with ``keep_reasons``. The new rows
    follow ``solution``'s; every other field is ``solution``'s.
    """
    P, S = problem, solution
    todo = S.reason != Reason.PLACED
    if eligible_only:
        todo &= P.job_filter == Filter.OK
    todo = np.flatnonzero(todo)
    if len(todo) == 0:
        return Filled(S, 0, 0)
    used = usage(P, S)
    gpus, mw = used.residual(P)
    moves_left, usd_left = used.budget_left(P)
    if max_moves is not None:
        moves_left = max(int(max_moves), 0)
    if max_migration_usd is not None:
        usd_left = max(float(max_migration_usd), 0.0)
    sub = subproblem(P, todo, gpus, mw, max_moves=moves_left, max_migration_usd=usd_left)
    extra = solve_greedy(sub, options, kernels_for(sub, kernels.name), deadline=deadline,
                         site_price=site_price, pool_price=pool_price)
    reason = S.reason.copy()
    if keep_reasons:
        reason[todo[extra.row_job]] = Reason.PLACED
    else:
        reason[todo] = extra.reason
    filled = replace(S, row_job=np.concatenate([S.row_job, todo[extra.row_job]]),
                     row_pool=np.concatenate([S.row_pool, extra.row_pool]),
                     row_units=np.concatenate([S.row_units, extra.row_units]), reason=reason)
    return Filled(filled, len(todo), len(np.unique(extra.row_job)))
