"""Local search for tight capacity: shifts and swaps of gangs under an adaptive overload penalty.

When every site is nearly full, almost every single move that improves the objective breaks a
capacity, so a search that only accepts feasible moves stops at once. This one minimises

    Σ cost + Σ_s α_s · overload_s(watts) + Σ_p β_p · overload_p(GPUs),      cost = −net $/h,

over the gangs' assignments, with moves *shift* (a gang to another pool) and *swap* (two gangs
exchange pools), best move per gang, until no move improves. At each local optimum the penalty
weights adapt: sites and pools that are over capacity weigh more, all others less, so the search
crosses infeasible regions and comes back feasible elsewhere: while the plan is infeasible the
overloaded resources' weights grow; once it is feasible again every weight shrinks. The best feasible assignment seen
is kept. Services and gangs the caller fixes are outside: they only take capacity.

Work per round: shifts O(n k), swaps O(n² log k) for n gangs with k candidates each, in Numba;
the caller bounds the round count by its deadline.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from placement.core import clock
from placement.core.problem import Problem
from placement.core.solution import Solution
from placement.solvers.candidates import Candidates
from placement.solvers.int_model import WATTS_PER_MW, to_int

# Penalty weights grow by this factor at an overloaded resource and shrink by it elsewhere.
ADAPT = 1.3
ROUNDS_PER_CALL = 1
# Passes over the gangs per call, so the caller sees its deadline often on large instances.
PASSES_PER_CALL = 2
# Pools per gang where swap partners are looked for: its cheapest candidates.
SWAP_TARGETS = 8
# Local optima in a row that did not improve the best plan before the search stops.
PATIENCE = 400


@njit(cache=True)
def _cand_at(job_ptr, c_pool, j, pool):
    """Candidate of job ``j`` on ``pool`` (candidates are in pool order per job), or -1."""
    lo, hi = job_ptr[j], job_ptr[j + 1]
    while lo < hi:
        mid = (lo + hi) // 2
        if c_pool[mid] < pool:
            lo = mid + 1
        else:
            hi = mid
    if lo < job_ptr[j + 1] and c_pool[lo] == pool:
        return lo
    return -1


@njit(cache=True)
def _over(load, cap):
    return load - cap if load > cap else 0


@njit(cache=True)
def _pen_delta(site_a, dw_a, site_b, dw_b, pool_a, dg_a, pool_b, dg_b, site_load, site_cap, pool_load, pool_cap,
               alpha, beta):
    """Penalty change when site_a's load moves by dw_a and site_b's by dw_b (same for pools)."""
    d = 0.0
    if site_a == site_b:
        L = site_load[site_a]
        d += alpha[site_a] * (_over(L + dw_a + dw_b, site_cap[site_a]) - _over(L, site_cap[site_a]))
    else:
        La, Lb = site_load[site_a], site_load[site_b]
        d += alpha[site_a] * (_over(La + dw_a, site_cap[site_a]) - _over(La, site_cap[site_a]))
        d += alpha[site_b] * (_over(Lb + dw_b, site_cap[site_b]) - _over(Lb, site_cap[site_b]))
    if pool_a == pool_b:
        G = pool_load[pool_a]
        d += beta[pool_a] * (_over(G + dg_a + dg_b, pool_cap[pool_a]) - _over(G, pool_cap[pool_a]))
    else:
        Ga, Gb = pool_load[pool_a], pool_load[pool_b]
        d += beta[pool_a] * (_over(Ga + dg_a, pool_cap[pool_a]) - _over(Ga, pool_cap[pool_a]))
        d += beta[pool_b] * (_over(Gb + dg_b, pool_cap[pool_b]) - _over(Gb, pool_cap[pool_b]))
    return d


@njit(cache=True)
def _apply(j, c_new, assign, c_site, c_pool, c_g, c_w, site_load, pool_load):
    c_old = assign[j]
    site_load[c_site[c_old]] -= c_w[c_old]
    pool_load[c_pool[c_old]] -= c_g[c_old]
    site_load[c_site[c_new]] += c_w[c_new]
    pool_load[c_pool[c_new]] += c_g[c_new]
    assign[j] = c_new


@njit(cache=True)
def _best_shift(j, assign, job_ptr, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap, pool_load, pool_cap,
                alpha, beta):
    c0 = assign[j]
    best, best_d = -1, -1e-9
    for c in range(job_ptr[j], job_ptr[j + 1]):
        if c == c0:
            continue
        d = c_cost[c] - c_cost[c0] + _pen_delta(c_site[c0], -c_w[c0], c_site[c], c_w[c], c_pool[c0], -c_g[c0],
                                                c_pool[c], c_g[c], site_load, site_cap, pool_load, pool_cap,
                                                alpha, beta)
        if d < best_d:
            best, best_d = c, d
    return best, best_d


@njit(cache=True)
def _swap_delta(j, k, cj2, ck2, assign, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap, pool_load,
                pool_cap, alpha, beta):
    cj, ck = assign[j], assign[k]
    d = c_cost[cj2] + c_cost[ck2] - c_cost[cj] - c_cost[ck]
    # j leaves site(cj) for site(ck); k the other way.
    sa, sb = c_site[cj], c_site[ck]
    pa, pb = c_pool[cj], c_pool[ck]
    d += _pen_delta(sa, c_w[ck2] - c_w[cj], sb, c_w[cj2] - c_w[ck], pa, c_g[ck2] - c_g[cj], pb, c_g[cj2] - c_g[ck],
                    site_load, site_cap, pool_load, pool_cap, alpha, beta)
    return d


@njit(cache=True)
def _descend(jobs, assign, job_ptr, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap, pool_load, pool_cap,
             alpha, beta, targets, n_targets, max_passes):
    """Best-improvement per gang (shift or swap) until no move lowers the penalised objective,
    or ``max_passes`` passes over the gangs; returns (moves, whether a local optimum was reached).

    Swaps of gang j consider only partners on j's ``n_targets`` cheapest pools (``targets``,
    a CSR in the candidates' layout): the others rarely pay, and the full O(n²) scan per pass
    would not finish on large instances.
    """
    improved = True
    moves = 0
    passes = 0
    is_target = np.zeros(len(pool_cap), np.bool_)
    while improved and passes < max_passes:
        passes += 1
        improved = False
        for a in range(len(jobs)):
            j = jobs[a]
            best_c, best_d = _best_shift(j, assign, job_ptr, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap,
                                         pool_load, pool_cap, alpha, beta)
            best_k, best_cj2, best_ck2 = -1, -1, -1
            lo = job_ptr[j]
            for i in range(lo, lo + min(n_targets, job_ptr[j + 1] - lo)):
                is_target[c_pool[targets[i]]] = True
            for b in range(len(jobs)):
                k = jobs[b]
                if k == j or not is_target[c_pool[assign[k]]] or c_pool[assign[k]] == c_pool[assign[j]]:
                    continue
                cj2 = _cand_at(job_ptr, c_pool, j, c_pool[assign[k]])
                if cj2 < 0:
                    continue
                ck2 = _cand_at(job_ptr, c_pool, k, c_pool[assign[j]])
                if ck2 < 0:
                    continue
                d = _swap_delta(j, k, cj2, ck2, assign, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap,
                                pool_load, pool_cap, alpha, beta)
                if d < best_d:
                    best_d, best_k, best_cj2, best_ck2 = d, k, cj2, ck2
            for i in range(lo, lo + min(n_targets, job_ptr[j + 1] - lo)):
                is_target[c_pool[targets[i]]] = False
            if best_k >= 0:
                _apply(j, best_cj2, assign, c_site, c_pool, c_g, c_w, site_load, pool_load)
                _apply(best_k, best_ck2, assign, c_site, c_pool, c_g, c_w, site_load, pool_load)
                improved = True
                moves += 1
            elif best_c >= 0:
                _apply(j, best_c, assign, c_site, c_pool, c_g, c_w, site_load, pool_load)
                improved = True
                moves += 1
    return moves, not improved


@njit(cache=True)
def _rounds(n_rounds, jobs, assign, best_assign, best_cost, job_ptr, c_site, c_pool, c_g, c_w, c_cost, site_load,
            site_cap, pool_load, pool_cap, alpha, beta, stale, targets, n_targets):
    """Descents with penalty updates in between; returns (best cost, stale count, moves)."""
    moves = 0
    for _ in range(n_rounds):
        m, done = _descend(jobs, assign, job_ptr, c_site, c_pool, c_g, c_w, c_cost, site_load, site_cap, pool_load,
                           pool_cap, alpha, beta, targets, n_targets, PASSES_PER_CALL)
        moves += m
        if not done:  # not at a local optimum yet: the caller checks its deadline, then goes on
            return best_cost, stale, moves
        feasible = True
        for s in range(len(site_cap)):
            if site_load[s] > site_cap[s]:
                feasible = False
                alpha[s] *= ADAPT
        for p in range(len(pool_cap)):
            if pool_load[p] > pool_cap[p]:
                feasible = False
                beta[p] *= ADAPT
        if feasible:  # relax every weight: cheaper plans across the capacity lines come into reach
            for s in range(len(site_cap)):
                alpha[s] /= ADAPT
            for p in range(len(pool_cap)):
                beta[p] /= ADAPT
        stale += 1
        if feasible:
            cost = 0.0
            for a in range(len(jobs)):
                cost += c_cost[assign[jobs[a]]]
            if cost < best_cost - 1e-9:
                best_cost = cost
                stale = 0
                for a in range(len(jobs)):
                    best_assign[jobs[a]] = assign[jobs[a]]
    return best_cost, stale, moves


def improve_tight(problem: Problem, cand: Candidates, incumbent: Solution, *, deadline: float,
                  start: np.ndarray | None = None) -> Solution:
    """The incumbent with its placed gangs re-assigned by the penalty search; never worse.

    ``cand``: the eligible candidates (``candidates.eligible_candidates``, kept where ub ≥ 1), in
    job-then-pool order. Services, pinned gangs and gangs whose row is not a candidate stay.
    ``start`` (a candidate index per job, e.g. the LP relaxation's largest share) is where the
    search begins, feasible or not, for the gangs the incumbent places; the incumbent stays the
    best plan until a better feasible one is found.
    """
    P, S = problem, incumbent
    gang_row = (P.job_kind[S.row_job] == 0) & ~P.job_pinned[S.row_job]
    job_ptr = np.searchsorted(cand.job, np.arange(P.n_jobs + 1)).astype(np.int64)
    assign = np.full(P.n_jobs, -1, np.int64)
    for j, p in zip(S.row_job[gang_row].tolist(), S.row_pool[gang_row].tolist()):
        assign[j] = _cand_at(job_ptr, cand.pool, j, p)
    jobs = np.flatnonzero(assign >= 0).astype(np.int64)
    if len(jobs) < 2:
        return S
    g = P.job_gpus_unit[cand.job].astype(np.int64)
    site_cap = to_int(P.site_cap_mw * WATTS_PER_MW, up=False).astype(np.int64)
    pool_cap = P.pool_gpus.astype(np.int64).copy()
    # Fixed rows (services, pinned, rows outside the candidates) only take capacity.
    fixed = np.ones(len(S.row_job), bool)
    fixed[np.flatnonzero(gang_row)[assign[S.row_job[gang_row]] >= 0]] = False
    _fixed_load(P, S, fixed, site_cap, pool_cap)
    site_load = np.bincount(cand.site[assign[jobs]], weights=cand.watts[assign[jobs]], minlength=P.n_sites).astype(np.int64)
    pool_load = np.bincount(cand.pool[assign[jobs]], weights=g[assign[jobs]], minlength=P.n_pools).astype(np.int64)
    if (site_load > site_cap).any() or (pool_load > pool_cap).any():
        return S  # the incumbent must be feasible in the exact model's integer watts
    cost = -cand.net
    best_assign, best_cost = assign.copy(), float(cost[assign[jobs]].sum())
    if start is not None:
        ok = (start[jobs] >= 0) & (cand.job[np.maximum(start[jobs], 0)] == jobs)
        assign[jobs[ok]] = start[jobs[ok]]
        site_load = np.bincount(cand.site[assign[jobs]], weights=cand.watts[assign[jobs]],
                                minlength=P.n_sites).astype(np.int64)
        pool_load = np.bincount(cand.pool[assign[jobs]], weights=g[assign[jobs]], minlength=P.n_pools).astype(np.int64)
    spread = np.array([np.ptp(cost[job_ptr[j]:job_ptr[j + 1]]) for j in jobs])
    alpha = np.full(P.n_sites, max(float(spread.mean()), 1e-6) / max(float(cand.watts.mean()), 1.0))
    beta = np.full(P.n_pools, max(float(spread.mean()), 1e-6) / max(float(g.mean()), 1.0))
    # Each job's candidates by cost, cheapest first, in the candidates' CSR layout.
    targets = np.lexsort((cost, cand.job)).astype(np.int64)
    start_cost, stale, moves = best_cost, 0, 0
    while clock.now() < deadline and stale < PATIENCE:
        best_cost, stale, m = _rounds(ROUNDS_PER_CALL, jobs, assign, best_assign, best_cost, job_ptr, cand.site,
                                      cand.pool, g, cand.watts, cost, site_load, site_cap, pool_load, pool_cap,
                                      alpha, beta, stale, targets, SWAP_TARGETS)
        moves += m
        clock.tick(ROUNDS_PER_CALL * PASSES_PER_CALL * len(jobs) * SWAP_TARGETS / clock.TIGHT_MOVES_PER_S)
    if best_cost >= start_cost - 1e-9:
        return S
    keep = np.flatnonzero(fixed)
    rows = best_assign[jobs]
    out = Solution(np.concatenate([S.row_job[keep], jobs]), np.concatenate([S.row_pool[keep], cand.pool[rows]]),
                   np.concatenate([S.row_units[keep], np.ones(len(jobs), np.int64)]), S.reason.copy(),
                   solver="tight-search", backend=S.backend, bound=S.bound,
                   stats={**S.stats, "tight_moves": moves, "tight_gain": start_cost - best_cost})
    return out


def _fixed_load(P: Problem, S: Solution, fixed: np.ndarray, site_cap: np.ndarray, pool_cap: np.ndarray) -> None:
    """Take the fixed rows' watts and GPUs off the capacities (rounded like the exact model)."""
    if not fixed.any():
        return
    j, p, u = S.row_job[fixed], S.row_pool[fixed], S.row_units[fixed]
    mw = np.array([P.unit_it_mw(int(a), int(b)) for a, b in zip(j, p)]) * P.site_pue[P.pool_site[p]]
    watts = to_int(mw * WATTS_PER_MW, up=True) * u
    np.subtract.at(site_cap, P.pool_site[p], watts)
    np.subtract.at(pool_cap, p, P.job_gpus_unit[j] * u)
