"""What a solver returns: placement rows over the compiled arrays, reasons, bound and prices."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from placement.core.objective import TERMS, candidate_speed, migration_units, net_value, unit_terms
from placement.core.problem import Problem


class Reason(IntEnum):
    """Why a job is unplaced (PLACED for a placed job)."""

    PLACED = 0
    NO_ELIGIBLE_SITE = 1
    GPUS = 2
    POWER = 3
    OUT_VALUED = 4
    TIME_LIMIT = 5
    NOT_PROFITABLE = 6
    MIGRATION_BUDGET = 7
    SPREAD = 8


@dataclass
class Solution:
    """A solver's result in index space.

    ``row_job``/``row_pool``/``row_units``: one row per (job, pool) used; a training job has one
    row of 1 unit, an inference service one row per pool it spans. ``reason[j]`` is
    ``Reason.PLACED`` for placed jobs. ``bound`` is a valid upper bound on the total objective
    ($/h; ``inf`` when unknown). Prices are dual values when the solver has them.
    """

    row_job: np.ndarray
    row_pool: np.ndarray
    row_units: np.ndarray
    reason: np.ndarray
    solver: str
    backend: str = "reference"
    status: str = "feasible"  # optimal | feasible | time_limit | interrupted | infeasible
    bound: float = float("inf")
    site_price_usd_per_mwh: np.ndarray | None = None
    pool_price_usd_per_gpu_hour: np.ndarray | None = None
    stats: dict = field(default_factory=dict)

    def record_fallbacks(self, entries: Iterable[dict[str, str]]) -> None:
        """Append ``stats.fallbacks`` entries ({stage, reason}); the stats dict is replaced,
        never changed in place, since solutions may share one."""
        entries = list(entries)
        if entries:
            self.stats = {**self.stats, "fallbacks": [*self.stats.get("fallbacks", []), *entries]}

    @classmethod
    def from_pool_units(cls, job_pool_units: dict[int, dict[int, int]], n_jobs: int,
                        reason: np.ndarray, **kw) -> Solution:
        """Build from ``{job: {pool: units}}`` (jobs absent are unplaced with ``reason``)."""
        rows = [(j, p, u) for j in sorted(job_pool_units) for p, u in sorted(job_pool_units[j].items()) if u > 0]
        arr = np.array(rows, np.int64).reshape(-1, 3)
        reason = reason.astype(np.int8).copy()
        reason[arr[:, 0]] = Reason.PLACED
        return cls(arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy(), reason, **kw)

    @property
    def placed(self) -> np.ndarray:
        """Boolean mask of placed jobs."""
        return self.reason == Reason.PLACED


def solution_terms(problem: Problem, solution: Solution) -> dict[str, np.ndarray]:
    """Per-row objective terms ($/h, all units of the row), power (MW), the units charged
    migration (``moved_units``: beyond the job's current units on the row's pool) and whether the
    row moves any."""
    P, S = problem, solution
    j, p, u = S.row_job, S.row_pool, S.row_units.astype(np.float64)
    t = unit_terms(P, j, p, candidate_speed(P, j, p))
    out = {k: t[k] * u for k in (*TERMS, "it_mw", "mw")}
    moved_units = migration_units(P, j, p, S.row_units)
    out["migration"] = P.job_migration_usd_per_hour[j] * moved_units
    out["net"] = net_value(out)
    out["moved_units"] = moved_units
    out["moved"] = moved_units > 0
    return out


def tier_objectives(problem: Problem, solution: Solution) -> np.ndarray:
    """Net objective per tier, highest tier first: compare plans lexicographically with this."""
    net = solution_terms(problem, solution)["net"]
    n_tiers = int(problem.job_tier.max()) + 1 if problem.n_jobs else 0
    by_tier = np.bincount(problem.job_tier[solution.row_job], weights=net, minlength=n_tiers)
    return by_tier[::-1]


@dataclass(frozen=True)
class Usage:
    """What a set of rows uses: GPUs per pool, facility MW per site, moves and migration dollars."""

    pool_gpus: np.ndarray  # int64
    site_mw: np.ndarray  # float64
    moved_jobs: int
    migration_usd: float

    def residual(self, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
        """Capacity left: GPUs per pool and facility MW per site (never below zero MW)."""
        return problem.pool_gpus - self.pool_gpus, np.maximum(problem.site_cap_mw - self.site_mw, 0.0)

    def budget_left(self, problem: Problem) -> tuple[int, float]:
        """Migration budget left: moves and dollars."""
        return max(problem.max_moves - self.moved_jobs, 0), max(problem.max_migration_usd - self.migration_usd, 0.0)


def usage(problem: Problem, solution: Solution, rows: np.ndarray | None = None) -> Usage:
    """Usage of ``solution``'s rows (all, or the boolean mask ``rows``)."""
    P, S = problem, solution
    t = solution_terms(P, S)
    keep = np.ones(len(S.row_job), bool) if rows is None else rows
    j, p, u = S.row_job[keep], S.row_pool[keep], S.row_units[keep]
    moved_units = t["moved_units"][keep]
    return Usage(
        np.bincount(p, weights=u * P.job_gpus_unit[j], minlength=P.n_pools).astype(np.int64),
        np.bincount(P.pool_site[p], weights=t["mw"][keep], minlength=P.n_sites),
        len(np.unique(j[moved_units > 0])),
        float((moved_units * P.job_migration_usd[j]).sum()),
    )
