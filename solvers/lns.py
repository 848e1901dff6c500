"""Large-neighbourhood search: free a few sites' jobs, re-solve them exactly, keep what is better.

Each step frees the jobs placed at a handful of sites (chosen by the value at stake there,
weighted by the dual prices when known) plus the most promising unplaced jobs that could go
there, fixes everything else, and hands the freed jobs with the capacity the fixed ones leave to
the exact engine under a time slice, hinted with the incumbent. A neighbourhood's exact
solution is lexicographically no worse within the neighbourhood, so the whole plan never gets
worse; the step is kept only when it is strictly better.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from placement.model import SolveOptions
from placement.problem import Problem, subproblem
from placement.solution import Reason, Solution, solution_terms, tier_objectives, usage

# Freed jobs per neighbourhood: CP-SAT proves these in about a second.
MAX_FREE_JOBS = 300
SITES_PER_NEIGHBOURHOOD = 3


def _lex_better(a: np.ndarray, b: np.ndarray) -> bool:
    for x, y in zip(a, b):
        if abs(x - y) > 1e-7 * max(1.0, abs(x), abs(y)):
            return bool(x > y)
    return False


def merge(problem: Problem, base: Solution, sub: Solution, freed: np.ndarray) -> Solution:
    """``base`` with the rows and reasons of ``freed`` jobs replaced by ``sub``'s."""
    keep = ~np.isin(base.row_job, freed)
    reason = base.reason.copy()
    reason[freed] = sub.reason
    return Solution(
        np.concatenate([base.row_job[keep], freed[sub.row_job]]),
        np.concatenate([base.row_pool[keep], sub.row_pool]),
        np.concatenate([base.row_units[keep], sub.row_units]),
        reason, solver=base.solver, backend=base.backend, status="feasible", bound=base.bound,
        site_price_usd_per_mwh=base.site_price_usd_per_mwh,
        pool_price_usd_per_gpu_hour=base.pool_price_usd_per_gpu_hour, stats=base.stats,
    )


def _neighbourhood(P: Problem, sol: Solution, rng: np.random.Generator,
                   site_weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chosen sites, and the jobs to free: those wholly at them plus unplaced jobs that fit there."""
    weights = site_weight + 1e-9
    k = min(SITES_PER_NEIGHBOURHOOD, P.n_sites)
    sites = rng.choice(P.n_sites, size=k, replace=False, p=weights / weights.sum())
    row_at = np.isin(P.pool_site[sol.row_pool], sites)
    inside = np.unique(sol.row_job[row_at])
    # A service with replicas outside the chosen sites stays fixed (its rows there are fixed).
    outside = np.unique(sol.row_job[~row_at])
    placed_free = np.setdiff1d(inside, outside)
    # Keep a third of the room for unplaced jobs: swapping them in is where the value is.
    cap = MAX_FREE_JOBS * 2 // 3
    if len(placed_free) > cap:
        placed_free = rng.choice(placed_free, size=cap, replace=False)
    room = MAX_FREE_JOBS - len(placed_free)
    unplaced = np.flatnonzero((sol.reason != Reason.PLACED) & (P.job_filter == 0))
    if room > 0 and len(unplaced):
        # Unplaced jobs whose class has a pool at a chosen site, highest value per GPU first.
        pool_at = np.isin(P.pool_site, sites)
        n_classes = len(P.class_ptr) - 1
        class_of = np.repeat(np.arange(n_classes), np.diff(P.class_ptr))
        class_hits = np.bincount(class_of, weights=pool_at[P.class_pool], minlength=n_classes)
        cand = unplaced[class_hits[P.job_class[unplaced]] > 0]
        density = P.job_value_unit[cand] / np.maximum(P.job_gpus_unit[cand], 1)
        cand = cand[np.argsort(-density, kind="stable")][:room]
        placed_free = np.concatenate([placed_free, cand])
    return sites, np.unique(placed_free)


def improve(problem: Problem, incumbent: Solution, options: SolveOptions, *, deadline: float,
            site_weight: np.ndarray | None = None, slice_s: float = 1.0,
            on_progress: Callable[[Solution], None] | None = None) -> Solution:
    """Run LNS steps until ``deadline``; returns the best solution (never worse than ``incumbent``)."""
    from placement.solvers.exact import solve_exact  # noqa: PLC0415  (ortools import is slow)

    P = problem
    rng = np.random.default_rng(options.seed)
    best, best_tiers = incumbent, tier_objectives(P, incumbent)
    steps = improved = 0
    while time.monotonic() + 0.05 < deadline:
        t = solution_terms(P, best)
        if site_weight is None:
            weight = np.bincount(P.pool_site[best.row_pool], weights=np.abs(t["net"]), minlength=P.n_sites)
        else:
            weight = site_weight
        weight = np.where(P.site_cap_mw > 0, weight + weight.mean() * 0.1 + 1e-6, 0.0)
        sites, freed = _neighbourhood(P, best, rng, weight)
        if len(freed) == 0:
            break
        # Freed jobs move only among the chosen sites: a small model CP-SAT proves in a slice.
        closed_site = ~np.isin(np.arange(P.n_sites), sites)
        fixed = usage(P, best, ~np.isin(best.row_job, freed))
        gpus_left, mw_left = fixed.residual(P)
        gpus_left = np.where(closed_site[P.pool_site], 0, gpus_left)
        mw_left = np.where(closed_site, 0.0, mw_left)
        moves_left, usd_left = fixed.budget_left(P)
        sub = subproblem(P, freed, gpus_left, mw_left, max_moves=moves_left, max_migration_usd=usd_left)
        hint_rows = np.isin(best.row_job, freed)
        local = np.searchsorted(freed, best.row_job[hint_rows])
        hint = Solution(local, best.row_pool[hint_rows], best.row_units[hint_rows], best.reason[freed],
                        solver="hint")
        budget = min(slice_s, deadline - time.monotonic())
        if budget <= 0.05:
            break
        opts = options.model_copy(update={"time_limit_s": budget, "seed": int(rng.integers(2**31 - 1))})
        result = solve_exact(sub, opts, hint=hint)
        steps += 1
        if result.status in ("optimal", "feasible"):
            candidate = merge(P, best, result, freed)
            tiers = tier_objectives(P, candidate)
            if _lex_better(tiers, best_tiers):
                best, best_tiers = candidate, tiers
                improved += 1
                if on_progress:
                    on_progress(best)
    best.stats = {**best.stats, "lns_steps": steps, "lns_improved": improved}
    return best
