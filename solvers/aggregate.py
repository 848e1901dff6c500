"""Interchangeable jobs merged into GPU buckets: a much smaller LP whose duals price the whole problem.

In the LP relaxation a job's GPUs are divisible, so jobs that share eligibility class, kind,
tier, required flag, kW per GPU and the sites their gang size allows differ only in value per
GPU. Such jobs (without pair rows, a current pool or a pin) are merged into one bucket per
value band of relative width ``width``: a bucket is a "job" of 1-GPU units, as many as its
members' GPUs, each worth the band's largest value per GPU. Every fractional plan of the
original LP maps onto the bucket LP with at least its value, so the bucket LP's optimum is
at least the LP's. It can exceed it by more than a band: a bucket's 1-GPU units pass every
site's gang-size limit and every pool's size, which only relaxes further (members of a bucket
share a gang-size level, so a bucket never mixes jobs that different sites admit).

The bound a run reports never rests on this argument: the bucket LP's duals (λ per site, μ per
pool) are prices of the original problem, and ``solvers.lagrangian.evaluate_dual`` at those
prices over the original jobs is a valid bound on its own. Jobs that cannot be merged keep
their own row, unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from placement.core.problem import Problem, subproblem

BAND_WIDTH = 0.05


@dataclass(frozen=True)
class Buckets:
    """The bucket problem and, per original job, its bucket's index."""

    problem: Problem
    of_job: np.ndarray  # int64, bucket index of each original job (-1: no candidates)


def aggregate(P: Problem, width: float = BAND_WIDTH) -> Buckets:
    """Merge interchangeable jobs of ``P`` into value bands of relative ``width`` (see module doc)."""
    jobs = np.flatnonzero(P.job_filter == 0).astype(np.int64)
    gpus = P.job_gpus_unit[jobs].astype(np.float64)
    per_gpu = P.job_value_unit[jobs] / gpus
    mergeable = ((np.diff(P.pair_ptr)[jobs] == 0) & (P.job_current_pool[jobs] < 0) & ~P.job_pinned[jobs]
                 & (per_gpu > 0))
    band = np.floor(np.log(np.where(mergeable, per_gpu, 1.0)) / np.log1p(width)).astype(np.int64)
    gang_level = np.searchsorted(np.unique(P.site_max_gang), P.job_gpus_unit[jobs])
    kw_mw = np.round(P.job_kw_per_gpu[jobs] * 1000).astype(np.int64)
    # A job that cannot merge gets a key of its own (its index), so it stays a bucket of one.
    own = np.where(mergeable, -1, jobs)
    key = np.stack([own, P.job_class[jobs], P.job_kind[jobs], P.job_tier[jobs], P.job_required[jobs],
                    kw_mw, gang_level, band], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    reps = jobs[first]
    order = np.argsort(reps, kind="stable")  # buckets in the original jobs' order
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    bucket = rank[inverse]
    reps = reps[order]
    sub = subproblem(P, reps, P.pool_gpus, P.site_cap_mw)
    merged = mergeable[first[order]]
    n = len(reps)
    unit_gpus = P.job_units[jobs] * P.job_gpus_unit[jobs]
    total_gpus = np.bincount(bucket, weights=unit_gpus, minlength=n).astype(np.int64)
    share_gpus = np.minimum(P.job_max_units_per_site[jobs], P.job_units[jobs]) * P.job_gpus_unit[jobs]
    site_gpus = np.bincount(bucket, weights=share_gpus, minlength=n).astype(np.int64)
    best = np.full(n, -np.inf)
    np.maximum.at(best, bucket, per_gpu)
    problem = dataclasses.replace(
        sub,
        job_units=np.where(merged, total_gpus, sub.job_units),
        job_gpus_unit=np.where(merged, 1, sub.job_gpus_unit),
        job_value_unit=np.where(merged, best, sub.job_value_unit),
        job_max_units_per_site=np.where(merged, site_gpus, sub.job_max_units_per_site),
        job_min_sites=np.where(merged, 1, sub.job_min_sites),
    )
    of_job = np.full(P.n_jobs, -1, np.int64)
    of_job[jobs] = bucket
    return Buckets(problem, of_job)
