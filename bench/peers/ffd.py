"""``ffd``: first-fit-decreasing, the loop of a kube-scheduler without scoring plugins.

Required jobs first, then by GPUs descending, each on the FIRST eligible pool (lowest index)
with room; a service's replicas filled first-fit over its pools, keeping one back for every site
``min_sites`` still needs. No value awareness (it places loss-making jobs too), no priorities,
no time limit.
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from bench.peers.common import PeerResult, Phase, Progress, candidate_count, peak_rss_mb, plan_objective
from placement.core.problem import MW_TOLERANCE, UNLIMITED, Problem
from placement.core.solution import Reason, Solution, solution_terms, tier_objectives


# The FFD loop is Numba (plain Python would take minutes at XL); compiled on first call, cached.
@njit(cache=True)
def _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue, pair_ptr, pair_pool, pair_it_mw):
    kw = job_kw[j] if job_kw[j] > 0 else pool_kw[p]
    it = job_gpus_unit[j] * kw / 1000.0
    for e in range(pair_ptr[j], pair_ptr[j + 1]):
        if pair_pool[e] == p and not np.isnan(pair_it_mw[e]):
            it = pair_it_mw[e]
    return it * site_pue[pool_site[p]]


@njit(cache=True)
def _allowed(j, p, job_kind, job_gpus_unit, job_pinned, job_current_pool, pool_site, pool_gpus,
            site_max_gang, pair_ptr, pair_pool, pair_forbidden):
    g = job_gpus_unit[j]
    if g > pool_gpus[p]:
        return False
    if job_kind[j] == 0 and g > site_max_gang[pool_site[p]]:
        return False
    if job_pinned[j] and p != job_current_pool[j]:
        return False
    for e in range(pair_ptr[j], pair_ptr[j + 1]):
        if pair_pool[e] == p and pair_forbidden[e]:
            return False
    return True


@njit(cache=True)
def _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end):
    """First class-list position >= k (before ``end``) whose pool may still take a plain job's GPU."""
    if not plain:
        return k
    while k < end:
        while nxt[k] != k:  # path halving
            nxt[k] = nxt[nxt[k]]
            k = nxt[k]
        if k >= end:
            return k
        p = class_pool[k]
        if res_gpus[p] >= 1 and res_mw[pool_site[p]] + tol >= pool_floor_mw[p]:
            return k
        nxt[k] = k + 1  # dead for good: capacity only shrinks
        k += 1
    return k


@njit(cache=True)
def _ffd(order, job_kind, job_filter, job_class, class_ptr, class_pool, job_units, job_gpus_unit, job_kw,
         job_pinned, job_current_pool, job_min_sites, job_max_units, job_plain, job_migration_usd, pool_site,
         pool_gpus, pool_kw, pool_floor_mw, site_pue, site_max_gang, site_cap_mw, pair_ptr, pair_pool, pair_it_mw,
         pair_forbidden, max_moves, max_migration_usd, tol, max_rows):
    """First-fit over each job's class pools, in ``order``: one compiled loop (Numba), so long.

    Shortcuts for *plain* jobs (pool kW, no pairs, not pinned, not running now) that change no
    decision, since capacity only shrinks: a class-list position whose pool cannot take one more
    GPU (GPUs or site power) is dead for good and skipped through ``nxt`` (union-find "next live position",
    path halving); a gang no smaller than one of its class that found no pool is not tried
    again (``fail_g``); nor is a service identical to its class's last failed one. A job that
    runs somewhere now may only move while the migration budget lasts (then it stays or waits).
    """
    n_classes = class_ptr.shape[0] - 1
    res_gpus = pool_gpus.copy()
    res_mw = site_cap_mw.copy()
    row_job = np.empty(max_rows, np.int64)
    row_pool = np.empty(max_rows, np.int64)
    row_units = np.empty(max_rows, np.int64)
    n_rows = 0
    at_site = np.zeros(site_cap_mw.shape[0], np.int64)
    nxt = np.arange(class_pool.shape[0] + 1)
    fail_g = np.full(n_classes, np.iinfo(np.int64).max, np.int64)
    fail_svc = np.full((n_classes, 4), -1, np.int64)  # g, units, min_sites, max_units
    moves_left, usd_left = max_moves, max_migration_usd
    for j in order:
        if job_filter[j] != 0:
            continue
        c = job_class[j]
        g = job_gpus_unit[j]
        end = class_ptr[c + 1]
        plain = job_plain[j]
        if job_kind[j] == 0:
            if plain and g >= fail_g[c]:
                continue
            placed = False
            k = class_ptr[c]
            while True:
                k = _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end)
                if k >= end:
                    break
                p = class_pool[k]
                k += 1
                if g > res_gpus[p] or not _allowed(j, p, job_kind, job_gpus_unit, job_pinned,
                                                   job_current_pool, pool_site, pool_gpus, site_max_gang,
                                                   pair_ptr, pair_pool, pair_forbidden):
                    continue
                cur = job_current_pool[j]
                away = cur >= 0 and p != cur
                if away and (moves_left < 1 or job_migration_usd[j] > usd_left + 1e-9):
                    continue
                mw = _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue,
                              pair_ptr, pair_pool, pair_it_mw)
                s = pool_site[p]
                if mw <= res_mw[s] + tol:
                    if away:
                        moves_left -= 1
                        usd_left -= job_migration_usd[j]
                    res_gpus[p] -= g
                    res_mw[s] -= mw
                    row_job[n_rows], row_pool[n_rows], row_units[n_rows] = j, p, 1
                    n_rows += 1
                    placed = True
                    break
            if not placed and job_plain[j]:
                fail_g[c] = min(fail_g[c], g)
            continue
        # A service: first-fit its replicas, one kept back for each site still needed.
        if (job_plain[j] and fail_svc[c, 0] == g and fail_svc[c, 1] == job_units[j]
                and fail_svc[c, 2] == job_min_sites[j] and fail_svc[c, 3] == job_max_units[j]):
            continue
        left = job_units[j]
        need = job_min_sites[j]
        used_sites = 0
        first = n_rows
        k = class_ptr[c]
        while left > 0:
            k = _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end)
            if k >= end:
                break
            p = class_pool[k]
            k += 1
            if g > res_gpus[p] or not _allowed(j, p, job_kind, job_gpus_unit, job_pinned, job_current_pool,
                                               pool_site, pool_gpus, site_max_gang, pair_ptr, pair_pool,
                                               pair_forbidden):
                continue
            s = pool_site[p]
            mw = _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue,
                          pair_ptr, pair_pool, pair_it_mw)
            after = used_sites + (1 if at_site[s] == 0 else 0)
            cap = min(left - max(need - after, 0), job_max_units[j] - at_site[s], res_gpus[p] // g)
            if mw > 0:
                cap = min(cap, int((res_mw[s] + tol) // mw))
            while cap > 0 and cap * mw > res_mw[s] + tol:  # floor division rounding
                cap -= 1
            if cap <= 0:
                continue
            if at_site[s] == 0:
                used_sites += 1
            at_site[s] += cap
            res_gpus[p] -= cap * g
            res_mw[s] -= cap * mw
            row_job[n_rows], row_pool[n_rows], row_units[n_rows] = j, p, cap
            n_rows += 1
            left -= cap
        ok = left == 0 and used_sites >= need
        cur = job_current_pool[j]
        away_units = 0
        if cur >= 0:
            for r in range(first, n_rows):
                if row_pool[r] != cur:
                    away_units += row_units[r]
        if ok and away_units > 0:
            ok = moves_left >= 1 and away_units * job_migration_usd[j] <= usd_left + 1e-9
            if ok:
                moves_left -= 1
                usd_left -= away_units * job_migration_usd[j]
        for r in range(first, n_rows):  # reset the per-site counts; roll back a partial service
            p = row_pool[r]
            at_site[pool_site[p]] = 0
            if not ok:
                res_gpus[p] += row_units[r] * g
                res_mw[pool_site[p]] += row_units[r] * _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site,
                                                               site_pue, pair_ptr, pair_pool, pair_it_mw)
        if not ok:
            n_rows = first
            if job_plain[j]:
                fail_svc[c, 0], fail_svc[c, 1] = g, job_units[j]
                fail_svc[c, 2], fail_svc[c, 3] = job_min_sites[j], job_max_units[j]
    return row_job[:n_rows], row_pool[:n_rows], row_units[:n_rows]


def first_fit_decreasing(problem: Problem) -> Solution:
    """The FFD plan (module docstring); loss-making placements included, as a scheduler would."""
    P = problem
    # Required jobs first (a scheduler's system-critical priority class), then GPUs descending.
    order = np.lexsort((np.arange(P.n_jobs), -(P.job_units * P.job_gpus_unit), ~P.job_required)).astype(np.int64)
    class_len = np.diff(P.class_ptr)[P.job_class]
    max_rows = int(np.where(P.job_kind == 0, 1, np.minimum(P.job_units, class_len)).sum())
    f64 = np.float64
    plain = (P.job_kw_per_gpu <= 0) & (np.diff(P.pair_ptr) == 0) & ~P.job_pinned & (P.job_current_pool < 0)
    # Facility MW of one GPU of a plain job on each pool: less power left than this is a dead pool.
    floor_mw = P.pool_kw_per_gpu * P.site_pue[P.pool_site] / 1000.0 * (1 - 1e-9)
    rj, rp, ru = _ffd(order, P.job_kind, P.job_filter, P.job_class, P.class_ptr, P.class_pool, P.job_units,
                      P.job_gpus_unit, P.job_kw_per_gpu.astype(f64), P.job_pinned, P.job_current_pool,
                      P.job_min_sites, P.job_max_units_per_site, plain, P.job_migration_usd.astype(f64),
                      P.pool_site, P.pool_gpus.astype(np.int64), P.pool_kw_per_gpu.astype(f64), floor_mw.astype(f64),
                      P.site_pue.astype(f64), P.site_max_gang, P.site_cap_mw.astype(f64), P.pair_ptr, P.pair_pool,
                      P.pair_it_mw.astype(f64), P.pair_forbidden.astype(np.bool_), int(min(P.max_moves, UNLIMITED)),
                      float(P.max_migration_usd), MW_TOLERANCE, max_rows)
    o = np.lexsort((rp, rj))
    reason = np.where(P.job_filter != 0, Reason.NO_ELIGIBLE_SITE, Reason.OUT_VALUED).astype(np.int8)
    reason[rj] = Reason.PLACED
    return Solution(rj[o], rp[o], ru[o], reason, solver="ffd", status="feasible")


def run_ffd(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
            on_phase: Phase | None = None) -> PeerResult:
    """FFD ignores ``time_limit`` and ``seed`` (one deterministic pass); it has no bound."""
    P, t0 = problem, time.monotonic()
    if on_phase:
        on_phase("solve")
    sol = first_fit_decreasing(P)
    objective = plan_objective(P, sol)
    t = time.monotonic() - t0
    if on_progress:
        on_progress(t, objective, None)
    placed_gpus = int((sol.row_units * P.job_gpus_unit[sol.row_job]).sum())
    loss = int((solution_terms(P, sol)["net"] < 0).sum()) if len(sol.row_job) else 0
    note = (f"first-fit by GPUs descending, no value awareness: {int(sol.placed.sum()):,} jobs, "
            f"{placed_gpus:,} GPUs placed, {loss:,} rows at a loss")
    return PeerResult(objective, None, None, t, None, peak_rss_mb(), True, "feasible", note, sol,
                      [(t, objective, None)], {"tiers_usd": tier_objectives(P, sol).tolist()}, t, candidate_count(P))
