"""The Lagrangian dual function: a valid upper bound from any nonnegative prices, in one kernel pass.

Relax site power with λ[s] ≥ 0 ($ per facility MWh), pool GPUs with μ[p] ≥ 0 ($ per GPU-hour)
and, optionally, a floor on the top tier's objective (Σ_top net·x ≥ v) with ν ≥ 0. Jobs then
decouple: each unit takes its best reduced-score pool of the empty portfolio (or nothing, unless
the job is required). For a top-tier job the reduced score is (1+ν)·net − λ·MW − μ·GPUs
= (1+ν) · score(λ/(1+ν), μ/(1+ν)), so the same kernel serves with scaled prices, and

    L(λ, μ, ν) = Σ_j units_j · max(0, reduced_j) + λ·cap_mw + μ·gpus − ν·v

bounds every feasible plan that meets the floor (spread, gang and tier rules are relaxed, which
only raises it). ``solvers.lp`` supplies good prices (LP duals); any prices give a valid bound,
which is why the bound a run reports never depends on the LP having converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from placement.kernels import Kernels
from placement.core.problem import Problem
from placement.core.solution import Reason, Solution, tier_objectives


@dataclass(frozen=True)
class TierFloor:
    """The top tier must earn at least ``value`` $/h; ``price`` is its multiplier ν ≥ 0."""

    tier: int
    value: float
    price: float = 0.0


def plan_floor(P: Problem, plan: Solution | None) -> TierFloor | None:
    """The top tier's floor from a feasible plan, a little under it so LP tolerances keep it feasible.

    None when there is no second tier, or when ``plan`` leaves a required job out: the
    lexicographic optimum must place it and may earn less in the top tier than such a plan.
    """
    if plan is None or not P.n_jobs or P.job_tier.max() == 0:
        return None
    if np.any(P.job_required & (plan.reason != Reason.PLACED)):
        return None
    value = float(tier_objectives(P, plan)[0])
    return TierFloor(int(P.job_tier.max()), value - 1e-6 * max(1.0, abs(value)))


def evaluate_dual(P: Problem, kernels: Kernels, jobs: np.ndarray, lam: np.ndarray, mu: np.ndarray,
                  floor: TierFloor | None = None) -> float:
    """L(λ, μ, ν) over ``jobs`` (all jobs with candidates); ``inf`` if a required job cannot fit."""
    best = np.full(len(jobs), -np.inf)
    pool = np.full(len(jobs), -1, np.int64)
    top = (P.job_tier[jobs] == floor.tier) if floor and floor.price > 0 else np.zeros(len(jobs), bool)
    for mask, scale in ((~top, 1.0), (top, 1.0 + (floor.price if floor else 0.0))):
        if np.any(mask):
            p, b, _ = kernels.best_candidate(jobs[mask], P.pool_gpus, P.site_cap_mw, lam / scale, mu / scale)
            pool[mask], best[mask] = p, b * scale
    if np.any(P.job_required[jobs] & (pool < 0)):
        return float("inf")
    take = (pool >= 0) & ((best > 0) | P.job_required[jobs])
    value = float(np.where(take, best * P.job_units[jobs], 0.0).sum() + lam @ P.site_cap_mw + mu @ P.pool_gpus)
    if floor and floor.price > 0:
        value -= floor.price * floor.value
    return value
