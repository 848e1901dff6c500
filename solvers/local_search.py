"""Parallel local search: batches of relocations and swaps scored by the move kernel.

Each round proposes, for training gangs: a relocation of every placed gang to its best pool with
room, an insertion of every unplaced gang into its best pool with room, and swaps that put an
unplaced gang in place of the weakest placed gang of the same or a lower tier in one of its best
pools (an ejection: the weaker gang leaves). One ``evaluate_moves`` call scores the whole batch;
improving moves are accepted best first as long as they touch disjoint jobs, pools and sites, so
each stays feasible exactly as evaluated. Moves never trade a higher tier for a lower one.
The migration budget is global, so jobs that would need a move are left alone when it is set.
"""

from __future__ import annotations

import time

import numpy as np

from placement.kernels import Kernels
from placement.problem import UNLIMITED, Problem
from placement.solution import Reason, Solution, usage

MAX_SWAP_JOBS = 4096  # unplaced gangs considered for a swap per round
SWAP_POOLS = 3  # of each one's best pools (empty portfolio)
# A move must gain at least this much ($/h, relative to the job's value) to count: no churn.
MIN_GAIN = 1e-7


def _proposals(P: Problem, kernels: Kernels, job_pool: np.ndarray, gpus: np.ndarray, mw: np.ndarray,
               movable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
    train = np.flatnonzero(movable)
    best, _, _ = kernels.best_candidate(train, gpus, mw, zero_s, zero_p)
    go = (best >= 0) & (best != job_pool[train])
    move_job, move_to = train[go], best[go]
    # Swaps: unplaced gangs (densest first) against the weakest placed gang in their best pools.
    placed = train[job_pool[train] >= 0]
    out = train[job_pool[train] < 0]
    if len(out) == 0 or len(placed) == 0:
        return move_job, move_to, np.zeros(0, np.int64), np.zeros(0, np.int64)
    density = P.job_value_unit[out] / np.maximum(P.job_gpus_unit[out], 1)
    out = out[np.argsort(-density, kind="stable")[:MAX_SWAP_JOBS]]
    pools, _ = kernels.topk(out, P.pool_gpus, P.site_cap_mw, zero_s, zero_p, SWAP_POOLS)
    weakest = np.full(P.n_pools, -1, np.int64)
    value = P.job_value_unit[placed] / np.maximum(P.job_gpus_unit[placed], 1)
    order = np.argsort(value, kind="stable")[::-1]  # last write wins: the weakest per pool
    weakest[job_pool[placed[order]]] = placed[order]
    a = np.repeat(out, pools.shape[1])
    b = np.where(pools.reshape(-1) >= 0, weakest[np.maximum(pools.reshape(-1), 0)], -1)
    ok = (b >= 0)
    ok[ok] &= P.job_tier[a[ok]] >= P.job_tier[b[ok]]
    return move_job, move_to, a[ok], b[ok]


def improve(problem: Problem, incumbent: Solution, kernels: Kernels, *, deadline: float,
            max_rounds: int = 50) -> Solution:
    """Rounds of batched moves until none improves or the deadline; never returns a worse plan."""
    P = problem
    sol = incumbent
    budgeted = P.max_moves < UNLIMITED or np.isfinite(P.max_migration_usd)
    rounds = accepted_total = 0
    for rounds in range(1, max_rounds + 1):
        if time.monotonic() > deadline:
            break
        job_pool = np.full(P.n_jobs, -1, np.int64)
        train_rows = P.job_kind[sol.row_job] == 0
        job_pool[sol.row_job[train_rows]] = sol.row_pool[train_rows]
        movable = (P.job_kind == 0) & (P.job_filter == 0) & ~P.job_pinned
        if budgeted:
            movable &= P.job_current_pool < 0
        gpus, mw = usage(P, sol).residual(P)
        move_job, move_to, swap_a, swap_b = _proposals(P, kernels, job_pool, gpus, mw, movable)
        if len(move_job) + len(swap_a) == 0:
            break
        delta, feasible = kernels.evaluate_moves(job_pool, gpus, mw, move_job, move_to, swap_a, swap_b)
        jobs_a = np.concatenate([move_job, swap_a])
        jobs_b = np.concatenate([np.full(len(move_job), -1), swap_b])
        to_pool = np.concatenate([move_to, job_pool[swap_b]])
        from_pool = np.concatenate([job_pool[move_job], np.full(len(swap_a), -1)])
        scale = np.maximum(np.abs(P.job_value_unit[jobs_a]), 1.0)
        good = feasible & np.isfinite(delta) & (delta > MIN_GAIN * scale)
        taken_jobs: set[int] = set()
        taken_sites: set[int] = set()
        new_pool = job_pool.copy()
        accepted = 0
        for i in np.flatnonzero(good)[np.argsort(-delta[good], kind="stable")]:
            touched = [int(x) for x in (jobs_a[i], jobs_b[i]) if x >= 0]
            sites = {int(P.pool_site[q]) for q in (to_pool[i], from_pool[i]) if q >= 0}
            if taken_jobs.intersection(touched) or taken_sites & sites:
                continue
            taken_jobs.update(touched)
            taken_sites |= sites
            if jobs_b[i] >= 0:  # swap: a takes b's pool, b leaves
                new_pool[jobs_a[i]], new_pool[jobs_b[i]] = job_pool[jobs_b[i]], -1
            else:
                new_pool[jobs_a[i]] = to_pool[i]
            accepted += 1
        if accepted == 0:
            break
        accepted_total += accepted
        sol = _with_training(P, sol, new_pool)
    sol.stats = {**sol.stats, "ls_rounds": rounds, "ls_moves": accepted_total}
    return sol


def _with_training(P: Problem, sol: Solution, job_pool: np.ndarray) -> Solution:
    """``sol`` with its training rows replaced by ``job_pool`` (inference rows kept)."""
    keep = P.job_kind[sol.row_job] == 1
    train = np.flatnonzero((P.job_kind == 0) & (job_pool >= 0))
    reason = sol.reason.copy()
    was_placed = reason == Reason.PLACED
    reason[train] = Reason.PLACED
    left = (P.job_kind == 0) & (job_pool < 0) & was_placed
    reason[left] = Reason.OUT_VALUED
    return Solution(
        np.concatenate([sol.row_job[keep], train]), np.concatenate([sol.row_pool[keep], job_pool[train]]),
        np.concatenate([sol.row_units[keep], np.ones(len(train), np.int64)]), reason,
        solver=sol.solver, backend=sol.backend, status="feasible", bound=sol.bound,
        site_price_usd_per_mwh=sol.site_price_usd_per_mwh,
        pool_price_usd_per_gpu_hour=sol.pool_price_usd_per_gpu_hour, stats=sol.stats,
    )
