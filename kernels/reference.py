"""NumPy reference kernels: the executable spec every backend must match.

A *candidate* is (job j, pool p) with p in j's class list. For one unit of j on p at site s:

    it_mw   = pair_it_mw (if measured) else gpus_unit * (job kW override or pool kW) / 1000
    mw      = it_mw * pue[s]                                  (facility MW)
    score   = value_unit * speed - mw * (energy[s] + carbon[s] + lambda[s])
              - pair_extra - migration_per_hour * (p != current_pool and current_pool >= 0)
              - mu[p] * gpus_unit
    fits    = gpus_unit <= residual_gpus[p] and mw <= residual_mw[s] + MW_TOLERANCE
              and (inference or gpus_unit <= max_gang[s]) and not forbidden
              and (not pinned or p == current_pool) and job_filter == OK

Ties go to the lowest candidate index (class lists are in ascending pool order).
Memory: candidates are expanded per chunk of jobs, at most ``CHUNK_CANDIDATES`` at a time
(about 15 arrays of 8 bytes each: ~240 MB at the default 2M).
"""

from __future__ import annotations

import numpy as np

from placement.problem import MW_TOLERANCE, Problem

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


def pair_entry(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index into the pair arrays for each (j, p), or -1 where there is no override."""
    if P.pair_pool.size == 0:
        return np.full(len(j), -1, np.int64)
    pair_job = np.repeat(np.arange(P.n_jobs), np.diff(P.pair_ptr))
    keys = pair_job * P.n_pools + P.pair_pool  # sorted: CSR by job, pools ascending
    want = j * P.n_pools + p
    pos = np.searchsorted(keys, want)
    pos_c = np.minimum(pos, len(keys) - 1)
    return np.where(keys[pos_c] == want, pos_c, -1)


def unit_terms(P: Problem, j: np.ndarray, p: np.ndarray, speed: np.ndarray) -> dict[str, np.ndarray]:
    """Per-unit objective terms ($/h) and power of candidates (j, p) at ``speed``."""
    s = P.pool_site[p]
    e = pair_entry(P, j, p)
    has = e >= 0
    kw = np.where(P.job_kw_per_gpu[j] > 0, P.job_kw_per_gpu[j], P.pool_kw_per_gpu[p])
    it_mw = P.job_gpus_unit[j] * kw / 1000.0
    measured = np.where(has, P.pair_it_mw[np.maximum(e, 0)], np.nan) if P.pair_it_mw.size else np.full(len(j), np.nan)
    it_mw = np.where(np.isnan(measured), it_mw, measured)
    mw = it_mw * P.site_pue[s]
    moved = (P.job_current_pool[j] >= 0) & (P.job_current_pool[j] != p)
    extra = np.where(has, P.pair_extra_usd_per_hour[np.maximum(e, 0)], 0.0) if P.pair_pool.size else np.zeros(len(j))
    forbidden = np.where(has, P.pair_forbidden[np.maximum(e, 0)], False) if P.pair_pool.size else np.zeros(len(j), bool)
    return {
        "value": P.job_value_unit[j] * speed,
        "energy": mw * P.site_energy_usd_per_mwh[s],
        "carbon": mw * P.site_carbon_usd_per_mwh[s],
        "pair": extra,
        "migration": np.where(moved, P.job_migration_usd_per_hour[j], 0.0),
        "it_mw": it_mw,
        "mw": mw,
        "forbidden": forbidden,
    }


def score_candidates(P: Problem, j: np.ndarray, p: np.ndarray, speed: np.ndarray,
                     residual_gpus: np.ndarray, residual_mw: np.ndarray,
                     site_price: np.ndarray, pool_price: np.ndarray) -> np.ndarray:
    """Reduced score of each candidate, ``-inf`` where it does not fit or is not allowed."""
    t = unit_terms(P, j, p, speed)
    s = P.pool_site[p]
    gpus = P.job_gpus_unit[j]
    score = (t["value"] - t["energy"] - t["carbon"] - t["pair"] - t["migration"]
             - t["mw"] * site_price[s] - pool_price[p] * gpus)
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


def candidate_speed(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Speed of job ``j`` on pool ``p`` from its class list (NaN where ``p`` is not in it)."""
    cls = P.job_class[j]
    class_of = np.repeat(np.arange(len(P.class_ptr) - 1), np.diff(P.class_ptr))
    keys = class_of * P.n_pools + P.class_pool  # sorted: classes in order, pools ascending
    want = cls * P.n_pools + p
    pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    if len(keys) == 0:
        return np.full(len(j), np.nan)
    return np.where(keys[pos] == want, P.class_speed[pos], np.nan)
