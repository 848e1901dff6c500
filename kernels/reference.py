"""NumPy reference kernels: the executable spec every backend must match.

A *candidate* is (job j, pool p) with p in j's class list. For one unit of j on p at site s:

    score   = the reduced score of ``placement.core.objective`` (its ``unit_terms``, ``mw`` and
              ``reduced_score``): net $/h − lambda[s] * mw − mu[p] * gpus_unit
    fits    = gpus_unit <= residual_gpus[p] and mw <= residual_mw[s] + MW_TOLERANCE
              and (inference or gpus_unit <= max_gang[s]) and not forbidden
              and (not pinned or p == current_pool) and job_filter == OK

Ties go to the lowest candidate index (class lists are in ascending pool order).
Memory: candidates are expanded per chunk of jobs, at most ``CHUNK_CANDIDATES`` at a time
(about 15 arrays of 8 bytes each: ~240 MB at the default 2M).
"""

from __future__ import annotations

import numpy as np

from placement.core.objective import candidate_speed, reduced_score, unit_terms
from placement.core.problem import MW_TOLERANCE, Problem

CHUNK_CANDIDATES = 2_000_000
NO_SCORE = -np.inf


def expand_candidates(P: Problem, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Candidates of ``jobs``: (owner position in ``jobs``, job, pool, speed), in job then pool order."""
    cls = P.job_class[jobs]
    lo, hi = P.class_ptr[cls], P.class_ptr[cls + 1]
    counts = hi - lo
    owner = np.repeat(np.arange(len(jobs)), counts)
    starts = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    idx = starts + np.arange(counts.sum())
    return owner, jobs[owner], P.class_pool[idx], P.class_speed[idx]


def score_candidates(P: Problem, j: np.ndarray, p: np.ndarray, speed: np.ndarray,
                     residual_gpus: np.ndarray, residual_mw: np.ndarray,
                     site_price: np.ndarray, pool_price: np.ndarray) -> np.ndarray:
    """Reduced score of each candidate, ``-inf`` where it does not fit or is not allowed."""
    t = unit_terms(P, j, p, speed)
    s = P.pool_site[p]
    gpus = P.job_gpus_unit[j]
    score = reduced_score(t, site_price[s], pool_price[p], gpus)
    fits = (
        (gpus <= residual_gpus[p])
        & (t["mw"] <= residual_mw[s] + MW_TOLERANCE)
        & ((P.job_kind[j] == 1) | (gpus <= P.site_max_gang[s]))
        & ~t["forbidden"]
        & (~P.job_pinned[j] | (p == P.job_current_pool[j]))
        & (P.job_filter[j] == 0)
    )
    return np.where(fits, score, NO_SCORE)


def _chunks(P: Problem, jobs: np.ndarray):
    """Split ``jobs`` into runs of at most ``CHUNK_CANDIDATES`` candidates (at least one job)."""
    cum = np.cumsum(P.class_ptr[P.job_class[jobs] + 1] - P.class_ptr[P.job_class[jobs]])
    start = 0
    while start < len(jobs):
        base = cum[start - 1] if start else 0
        end = max(int(np.searchsorted(cum, base + CHUNK_CANDIDATES, side="right")), start + 1)
        yield start, end
        start = end


def best_candidate(P: Problem, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                   site_price: np.ndarray, pool_price: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best fitting pool per job (-1 if none), its reduced score and the second-best score."""
    jobs = np.asarray(jobs, np.int64)
    best_pool = np.full(len(jobs), -1, np.int64)
    best = np.full(len(jobs), NO_SCORE)
    second = np.full(len(jobs), NO_SCORE)
    for a, b in _chunks(P, jobs):
        owner, j, p, speed = expand_candidates(P, jobs[a:b])
        score = score_candidates(P, j, p, speed, residual_gpus, residual_mw, site_price, pool_price)
        # Sort by (owner, -score, candidate position): first of each owner is the best, ties to lowest index.
        order = np.lexsort((np.arange(len(score)), -score, owner))
        o, sc, pp = owner[order], score[order], p[order]
        first = np.ones(len(o), bool)
        first[1:] = o[1:] != o[:-1]
        fo = np.flatnonzero(first)
        ok = sc[fo] > NO_SCORE
        best[a + o[fo]] = sc[fo]
        best_pool[a + o[fo[ok]]] = pp[fo[ok]]
        nxt = fo + 1
        has2 = (nxt < len(o))
        has2[has2] = o[nxt[has2]] == o[fo[has2]]
        second[a + o[fo[has2]]] = sc[nxt[has2]]
    return best_pool, best, second


def topk_candidates(P: Problem, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                    site_price: np.ndarray, pool_price: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``k`` best fitting pools per job, best first: (pools [n, k] padded -1, scores padded -inf)."""
    jobs = np.asarray(jobs, np.int64)
    pools = np.full((len(jobs), k), -1, np.int64)
    scores = np.full((len(jobs), k), NO_SCORE)
    for a, b in _chunks(P, jobs):
        owner, j, p, speed = expand_candidates(P, jobs[a:b])
        score = score_candidates(P, j, p, speed, residual_gpus, residual_mw, site_price, pool_price)
        order = np.lexsort((np.arange(len(score)), -score, owner))
        o, sc, pp = owner[order], score[order], p[order]
        start = np.searchsorted(o, o, side="left")
        rank = np.arange(len(o)) - start
        keep = (rank < k) & (sc > NO_SCORE)
        pools[a + o[keep], rank[keep]] = pp[keep]
        scores[a + o[keep], rank[keep]] = sc[keep]
    return pools, scores


def evaluate_moves(P: Problem, job_pool: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                   move_job: np.ndarray, move_to_pool: np.ndarray, swap_a: np.ndarray, swap_b: np.ndarray,
                   site_price: np.ndarray | None = None, pool_price: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Objective delta and feasibility of a batch of relocations and swaps of training jobs.

    Inputs:

    - ``job_pool`` (int64, one per job): the pool each *training* job is on, -1 unplaced. Entries
      of inference services are ignored: their replicas are already in the residuals and this
      kernel never moves them (a move naming one is undefined, below).
    - ``residual_gpus`` [pools], ``residual_mw`` [sites, facility MW]: capacity left after the
      current assignment of everything (training and inference).
    - relocations ``move_job[i] → move_to_pool[i]`` (-1 = unplace); swaps ``swap_a[i] ↔ swap_b[i]``:
      a takes b's pool and b takes a's (one of them may be unplaced: a replacement).
    - ``site_price``/``pool_price``: optional duals λ, μ. None (default): the *net* delta below;
      given: the reduced delta, which also subtracts λ[site]·MW and μ[pool]·GPUs of each placement.

    Outputs, relocations first then swaps, one entry per move:

    - ``delta`` ($/h): Σ net(after) − Σ net(before) over the jobs the move changes, where a placed
      training job's net = value·speed − energy − carbon − pair − migration (``net_value``; the
      migration term applies when the job runs somewhere now but not on that pool) and unplaced = 0.
      NaN where undefined: an inference service, a pool index outside [-1, pools), or an old or
      new pool outside the job's class list. A no-op (same pool, ``a == b``) is 0.
    - ``feasible``: every new pool is eligible exactly as in ``score_candidates`` (class list, gang
      size, forbidden pair, pinned, job filter) — unplacing is allowed unless the job is required
      or pinned — and at every target pool and site, what arrives minus what leaves (the moving
      jobs' own GPUs and MW count as freed) fits the residual: GPUs ≤ residual, MW ≤ residual +
      ``MW_TOLERANCE``. No-ops are feasible; undefined moves are not.

    Not checked here (global, not per move): the migration budget and inference spread.
    """
    n_pools = P.n_pools
    job_pool = np.asarray(job_pool, np.int64)
    move_job, move_to_pool = np.asarray(move_job, np.int64), np.asarray(move_to_pool, np.int64)
    swap_a, swap_b = np.asarray(swap_a, np.int64), np.asarray(swap_b, np.int64)
    sp = np.zeros(P.n_sites) if site_price is None else np.asarray(site_price, np.float64)
    pp = np.zeros(n_pools) if pool_price is None else np.asarray(pool_price, np.float64)
    a = np.concatenate((move_job, swap_a))
    b = np.concatenate((np.full(len(move_job), -1, np.int64), swap_b))
    has_b = b >= 0
    bb = np.maximum(b, 0)
    old_a = job_pool[a]
    old_b = np.where(has_b, job_pool[bb], -1)
    new_a = np.concatenate((move_to_pool, job_pool[swap_b]))
    new_b = np.where(has_b, old_a, -1)

    def at(j: np.ndarray, p: np.ndarray):
        """(undefined, allowed, score, MW, site) of job j at pool p; p = -1 scores 0 and may be allowed."""
        in_range = (p >= -1) & (p < n_pools)
        placed = in_range & (p >= 0)
        pc = np.where(placed, p, 0)
        speed = candidate_speed(P, j, pc) if n_pools else np.full(len(j), np.nan)
        undefined = ~in_range | (placed & np.isnan(speed))
        if n_pools == 0:
            z = np.zeros(len(j))
            return undefined, ~placed & ~P.job_required[j] & ~P.job_pinned[j], z, z, np.full(len(j), -1)
        t = unit_terms(P, j, pc, np.nan_to_num(speed))
        s = P.pool_site[pc]
        gpus = P.job_gpus_unit[j]
        score = reduced_score(t, sp[s], pp[pc], gpus)
        ok_placed = (((P.job_kind[j] == 1) | (gpus <= P.site_max_gang[s])) & ~t["forbidden"]
                     & (~P.job_pinned[j] | (pc == P.job_current_pool[j])) & (P.job_filter[j] == 0))
        allowed = np.where(placed, ok_placed, ~P.job_required[j] & ~P.job_pinned[j])
        return (undefined, allowed, np.where(placed, score, 0.0), np.where(placed, t["mw"], 0.0),
                np.where(placed, s, -1))

    u_old_a, _, sc_old_a, mw_old_a, s_old_a = at(a, old_a)
    u_new_a, ok_a, sc_new_a, mw_new_a, s_new_a = at(a, new_a)
    u_old_b, _, sc_old_b, mw_old_b, s_old_b = at(bb, old_b)
    u_new_b, ok_b, sc_new_b, mw_new_b, s_new_b = at(bb, new_b)
    zero_b = ~has_b
    for arr in (sc_old_b, mw_old_b, sc_new_b, mw_new_b):
        arr[zero_b] = 0.0
    ok_b = ok_b | zero_b
    inference = (P.job_kind[a] != 0) | (has_b & (P.job_kind[bb] != 0))
    undefined = u_old_a | u_new_a | (has_b & (u_old_b | u_new_b)) | inference
    delta = (sc_new_a + sc_new_b) - (sc_old_a + sc_old_b)

    ga = P.job_gpus_unit[a]
    gb = np.where(has_b, P.job_gpus_unit[bb], 0)
    cap_ok = np.ones(len(a), bool)
    for x, sx in ((new_a, s_new_a), (new_b, s_new_b)):  # each target pool and its site
        tgt = x >= 0
        used = ga * (new_a == x) + gb * (new_b == x)
        freed = ga * (old_a == x) + gb * (old_b == x)
        room_gpus = np.asarray(residual_gpus)[np.where(tgt, x, 0)] if n_pools else np.zeros(len(a))
        used_mw = mw_new_a * (s_new_a == sx) + mw_new_b * (s_new_b == sx)
        freed_mw = mw_old_a * (s_old_a == sx) + mw_old_b * (s_old_b == sx)
        room_mw = np.asarray(residual_mw, np.float64)[np.maximum(sx, 0)] if P.n_sites else np.zeros(len(a))
        cap_ok &= ~tgt | ((used - freed <= room_gpus) & (used_mw - freed_mw <= room_mw + MW_TOLERANCE))
    noop = (((new_a == old_a) & (new_b == old_b)) | (a == b)) & ~inference
    bad = undefined & ~noop
    delta = np.where(noop, 0.0, np.where(bad, np.nan, delta))
    feasible = np.where(noop, True, ok_a & ok_b & cap_ok & ~bad)
    return delta, feasible
