"""Parallel local search: batches of relocations, swaps and ejection chains scored by the move kernel.

Each round proposes, for training gangs: a relocation of every placed gang to its best pool with
room, an insertion of every unplaced gang into its best pool with room, swaps that put an
unplaced gang in place of the weakest placed gang of the same or a lower tier in one of its best
pools (an ejection: the weaker gang leaves), and ejection chains (the ejected gang moves on to
its best pool with room at another site). ``evaluate_moves`` scores the whole batch (one call,
plus one for the chains' second legs); improving moves are accepted best first as long as they
touch disjoint jobs and sites, so each stays feasible exactly as evaluated. A move is judged
tier by tier: it never trades a higher tier for a lower one, and a higher-tier gain wins.
The migration budget is global, so jobs that would need a move are left alone when it is set.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from placement.core import clock
from placement.kernels import Kernels
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Reason, Solution, solution_terms, usage

MAX_SWAP_JOBS = 4096  # unplaced gangs considered for a swap per round
SWAP_POOLS = 3  # of each one's best pools (empty portfolio)
CHAIN_POOLS = 3  # pools with room considered for an ejected gang's next stop
# A move must gain at least this much ($/h, relative to the job's value) to count: no churn.
MIN_GAIN = 1e-7


def _proposals(P: Problem, kernels: Kernels, job_pool: np.ndarray, gpus: np.ndarray, mw: np.ndarray,
               movable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Relocations (job → best pool with room) and swaps (unplaced a ↔ placed weakest b)."""
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
    ok = b >= 0
    ok[ok] &= P.job_tier[a[ok]] >= P.job_tier[b[ok]]
    return move_job, move_to, a[ok], b[ok]


def _chain_targets(P: Problem, kernels: Kernels, job_pool: np.ndarray, gpus: np.ndarray, mw: np.ndarray,
                   ejected: np.ndarray) -> np.ndarray:
    """For each ejected gang, its best pool with room at another site than its own (-1: none).

    The other site keeps the swap's and the relocation's capacity checks independent.
    """
    zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
    pools, _ = kernels.topk(ejected, gpus, mw, zero_s, zero_p, CHAIN_POOLS)
    other = (pools >= 0) & (P.pool_site[np.maximum(pools, 0)] != P.pool_site[job_pool[ejected]][:, None])
    first = np.argmax(other, axis=1)
    return np.where(other.any(axis=1), pools[np.arange(len(ejected)), first], -1)


def _lex_gain(tier_a: np.ndarray, gain_a: np.ndarray, tier_b: np.ndarray, gain_b: np.ndarray,
              scale: np.ndarray) -> np.ndarray:
    """True where changing job a's tier by ``gain_a`` and b's by ``gain_b`` is a strict-tier improvement."""
    eps = MIN_GAIN * scale
    same = tier_a == tier_b
    hi_gain = np.where(tier_a > tier_b, gain_a, gain_b)
    lo_gain = np.where(tier_a > tier_b, gain_b, gain_a)
    return np.where(same, gain_a + gain_b > eps, (hi_gain > eps) | ((np.abs(hi_gain) <= eps) & (lo_gain > eps)))


def improve(problem: Problem, incumbent: Solution, kernels: Kernels, *, deadline: float,
            max_rounds: int = 50) -> Solution:
    """Rounds of batched moves until none improves or the deadline; never returns a worse plan.

    Moves: relocations, swaps (an unplaced gang a takes the pool of a placed gang b, which
    leaves) and ejection chains (the same, but b moves on to its best pool with room at another
    site). Each is judged tier by tier: a gain in a higher tier wins over a loss in a lower one.
    """
    P = problem
    sol = incumbent
    budgeted = P.max_moves < UNLIMITED or np.isfinite(P.max_migration_usd)
    rounds = accepted_total = chains_total = 0
    for rounds in range(1, max_rounds + 1):
        if clock.now() > deadline:
            break
        job_pool = np.full(P.n_jobs, -1, np.int64)
        train_rows = P.job_kind[sol.row_job] == 0
        job_pool[sol.row_job[train_rows]] = sol.row_pool[train_rows]
        net = np.bincount(sol.row_job, weights=solution_terms(P, sol)["net"], minlength=P.n_jobs)
        movable = (P.job_kind == 0) & (P.job_filter == 0) & ~P.job_pinned
        if budgeted:
            movable &= P.job_current_pool < 0
        gpus, mw = usage(P, sol).residual(P)
        move_job, move_to, swap_a, swap_b = _proposals(P, kernels, job_pool, gpus, mw, movable)
        if len(move_job) + len(swap_a) == 0:
            break
        delta, feasible = kernels.evaluate_moves(job_pool, gpus, mw, move_job, move_to, swap_a, swap_b)
        n_moves = len(move_job)
        # Ejection chains: the second leg scored as an insertion of b with b counted as out.
        chain_to = _chain_targets(P, kernels, job_pool, gpus, mw, swap_b) if len(swap_b) else np.zeros(0, np.int64)
        has_chain = chain_to >= 0
        leg, leg_ok = np.zeros(len(swap_b)), np.zeros(len(swap_b), bool)
        if has_chain.any():
            ejected = job_pool.copy()
            ejected[swap_b[has_chain]] = -1
            leg[has_chain], leg_ok[has_chain] = kernels.evaluate_moves(
                ejected, gpus, mw, swap_b[has_chain], chain_to[has_chain], np.zeros(0, np.int64), np.zeros(0, np.int64))
        swap_delta, swap_ok = delta[n_moves:], feasible[n_moves:]
        # Per move: jobs a, b (b -1 for a relocation), where b goes (-1: out), and each one's gain.
        jobs_a = np.concatenate([move_job, swap_a, swap_a])
        jobs_b = np.concatenate([np.full(n_moves, -1), swap_b, swap_b])
        b_to = np.concatenate([np.full(n_moves, -1), np.full(len(swap_b), -1), chain_to])
        a_to = np.concatenate([move_to, job_pool[swap_b], job_pool[swap_b]])
        gain_a = np.concatenate([delta[:n_moves], swap_delta + net[swap_b], swap_delta + net[swap_b]])
        gain_b = np.concatenate([np.zeros(n_moves), -net[swap_b], leg - net[swap_b]])
        ok = np.concatenate([feasible[:n_moves], swap_ok, swap_ok & has_chain & leg_ok])
        scale = np.maximum(np.abs(P.job_value_unit[jobs_a]), 1.0)
        tier_b = P.job_tier[np.maximum(jobs_b, 0)]
        good = ok & np.isfinite(gain_a) & np.isfinite(gain_b) & _lex_gain(
            P.job_tier[jobs_a], gain_a, np.where(jobs_b >= 0, tier_b, P.job_tier[jobs_a]), gain_b, scale)
        taken_jobs: set[int] = set()
        taken_sites: set[int] = set()
        new_pool = job_pool.copy()
        accepted = chains = 0
        # Best first by the higher tier's gain, then the total.
        order = np.lexsort((-(gain_a + gain_b), -np.maximum(P.job_tier[jobs_a], tier_b * (jobs_b >= 0))))
        for i in order[good[order]]:
            touched = [int(x) for x in (jobs_a[i], jobs_b[i]) if x >= 0]
            pools = (a_to[i], job_pool[jobs_a[i]], b_to[i])
            sites = {int(P.pool_site[q]) for q in pools if q >= 0}
            if taken_jobs.intersection(touched) or taken_sites & sites:
                continue
            taken_jobs.update(touched)
            taken_sites |= sites
            new_pool[jobs_a[i]] = a_to[i]
            if jobs_b[i] >= 0:  # b leaves, or moves on (a chain)
                new_pool[jobs_b[i]] = b_to[i]
                chains += b_to[i] >= 0
            accepted += 1
        if accepted == 0:
            break
        accepted_total += accepted
        chains_total += chains
        sol = _with_training(P, sol, new_pool)
    sol.stats = {**sol.stats, "ls_rounds": rounds, "ls_moves": accepted_total, "ls_chains": chains_total}
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
    return replace(sol, row_job=np.concatenate([sol.row_job[keep], train]),
                   row_pool=np.concatenate([sol.row_pool[keep], job_pool[train]]),
                   row_units=np.concatenate([sol.row_units[keep], np.ones(len(train), np.int64)]), reason=reason,
                   status="feasible")
