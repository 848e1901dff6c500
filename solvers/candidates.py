"""The eligible (job, pool) candidates with the integer data every exact model of the problem uses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.core.objective import net_value, unit_terms
from placement.core.problem import UNLIMITED, Problem
from placement.kernels.reference import expand_candidates
from placement.solvers.int_model import WATTS_PER_MW, to_int


@dataclass(frozen=True)
class Candidates:
    """Eligible (job, pool) pairs in job-then-pool order with per-unit data."""

    job: np.ndarray
    pool: np.ndarray
    site: np.ndarray
    net: np.ndarray  # $/h per unit: value - energy - carbon - pair - migration
    watts: np.ndarray  # facility W per unit, rounded up
    gpu_cap: np.ndarray  # units the empty pool holds by GPUs
    ub: np.ndarray  # units the empty pool holds by GPUs, power, share and job size

    def take(self, mask: np.ndarray) -> Candidates:
        return Candidates(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def index_of(self, job: np.ndarray, pool: np.ndarray, n_pools: int) -> np.ndarray:
        """Candidate index of each (job, pool), or -1 where it is not a candidate."""
        keys = self.job * n_pools + self.pool
        want = np.asarray(job, np.int64) * n_pools + np.asarray(pool, np.int64)
        at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        return np.where((len(keys) > 0) & (keys[at] == want), at, -1) if len(keys) else np.full(len(want), -1)


def eligible_candidates(problem: Problem) -> Candidates:
    """Class candidates minus per-job exclusions (gang, inventory, forbidden, pinned)."""
    P = problem
    _, j, p, speed = expand_candidates(P, np.flatnonzero(P.job_filter == 0).astype(np.int64))
    t = unit_terms(P, j, p, speed)
    s, g = P.pool_site[p], P.job_gpus_unit[j]
    ok = (~t["forbidden"] & (g <= P.pool_gpus[p]) & ((P.job_kind[j] == 1) | (g <= P.site_max_gang[s]))
          & (~P.job_pinned[j] | (p == P.job_current_pool[j])))
    net = net_value(t)
    j, p, s, g, net = j[ok], p[ok], s[ok], g[ok], net[ok]
    watts = to_int(t["mw"][ok] * WATTS_PER_MW, up=True)
    cap_w = to_int(P.site_cap_mw * WATTS_PER_MW, up=False)[s]
    gpu_cap = P.pool_gpus[p] // g
    pow_cap = np.where(watts > 0, cap_w // np.maximum(watts, 1), UNLIMITED)
    ub = np.minimum.reduce([P.job_units[j], P.job_max_units_per_site[j], gpu_cap, pow_cap])
    return Candidates(j, p, s, net, watts, gpu_cap, ub)
