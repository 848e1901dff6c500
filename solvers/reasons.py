"""Why an unplaced job is unplaced, judged the same way for every solver.

A job with no eligible candidate names the filter (compiled into ``Problem.job_filter``);
one that does not fit even in an empty portfolio is blocked by GPUs or power; one whose best
empty-portfolio score is not positive is not profitable; the rest were out-valued.
"""

from __future__ import annotations

import numpy as np

from placement.kernels import Kernels
from placement.core.problem import Problem
from placement.core.solution import Reason


def explain_unplaced(problem: Problem, kernels: Kernels, jobs: np.ndarray) -> np.ndarray:
    """Reason codes for ``jobs`` (int8), judged against the empty portfolio."""
    P = problem
    jobs = np.asarray(jobs, np.int64)
    out = np.full(len(jobs), Reason.OUT_VALUED, np.int8)
    if len(jobs) == 0:
        return out
    zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
    full_gpus, full_mw = P.pool_gpus.astype(np.int64), P.site_cap_mw.astype(np.float64)
    many_mw = np.full(P.n_sites, np.inf)
    pool, best, _ = kernels.best_candidate(jobs, full_gpus, full_mw, zero_s, zero_p)
    pool_no_mw, _, _ = kernels.best_candidate(jobs, full_gpus, many_mw, zero_s, zero_p)
    units = P.job_units[jobs]
    out[(pool < 0) & (pool_no_mw >= 0)] = Reason.POWER
    out[(pool < 0) & (pool_no_mw < 0)] = Reason.GPUS
    out[(pool >= 0) & (best * units <= 0)] = Reason.NOT_PROFITABLE
    out[P.job_filter[jobs] != 0] = Reason.NO_ELIGIBLE_SITE
    return out
