"""Cheap valid upper bounds on the total objective ($/h)."""

from __future__ import annotations

import numpy as np

from placement.kernels import Kernels
from placement.core.problem import Problem


def relaxed_bound(problem: Problem, kernels: Kernels) -> float:
    """Every job at its best pool of the empty portfolio, capacities shared by nobody.

    Valid because any feasible plan places each unit on some candidate that fits the empty
    portfolio and earns at most that candidate's score; unprofitable optional jobs count 0,
    required ones their (possibly negative) best. Weak where capacity binds; the exact and
    LP stages tighten it.
    """
    P = problem
    jobs = np.arange(P.n_jobs, dtype=np.int64)
    pool, best, _ = kernels.best_candidate(jobs, P.pool_gpus.astype(np.int64), P.site_cap_mw.astype(np.float64),
                                           np.zeros(P.n_sites), np.zeros(P.n_pools))
    total = np.where(pool >= 0, best * P.job_units, 0.0)
    total = np.where(P.job_required, total, np.maximum(total, 0.0))
    return float(total.sum())
