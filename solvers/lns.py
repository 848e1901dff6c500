"""Large-neighbourhood search: free a few sites' jobs, re-solve them exactly, keep what is better.

Each step frees the jobs of one neighbourhood, in turn: a handful of sites (chosen by the value
at stake there, weighted by the dual prices when known), one region, or the placed jobs nearest
the margin (lowest value per MW), plus the most promising unplaced jobs that could go there, fixes everything else, and hands the freed jobs with the capacity the fixed ones leave to
the exact engine under a time slice, hinted with the incumbent. A neighbourhood's exact
solution is lexicographically no worse within the neighbourhood, so the whole plan never gets
worse; the step is kept only when it is strictly better.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from placement.core import clock
from placement.model.portfolio import SolveOptions
from placement.core.problem import Problem, subproblem
from placement.core.solution import Reason, Solution, solution_terms, tier_objectives, usage
from placement.solvers.compare import lex_better

# Freed jobs per neighbourhood: CP-SAT proves these in about a second.
MAX_FREE_JOBS = 300
SITES_PER_NEIGHBOURHOOD = 3


def merge(problem: Problem, base: Solution, sub: Solution, freed: np.ndarray) -> Solution:
    """``base`` with the rows and reasons of ``freed`` jobs replaced by ``sub``'s."""
    keep = ~np.isin(base.row_job, freed)
    reason = base.reason.copy()
    reason[freed] = sub.reason
    return replace(base, row_job=np.concatenate([base.row_job[keep], freed[sub.row_job]]),
                   row_pool=np.concatenate([base.row_pool[keep], sub.row_pool]),
                   row_units=np.concatenate([base.row_units[keep], sub.row_units]), reason=reason,
                   status="feasible")


NEIGHBOURHOODS = ("sites", "region", "margin")


def _neighbourhood(P: Problem, sol: Solution, rng: np.random.Generator, site_weight: np.ndarray,
                   kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Chosen sites, and the jobs to free there; ``kind`` picks what the neighbourhood is about.

    - ``sites``: a few sites drawn by value at stake (or shadow price × capacity), all their jobs;
    - ``region``: the sites of one region (drawn by the same weights; a sample if it has many);
    - ``margin``: the placed jobs of lowest value per facility MW anywhere, at the few sites that
      hold most of them: the jobs an unplaced, denser job should replace.

    Unplaced jobs that could go to the chosen sites, densest first, fill a third of the room.
    """
    weights = site_weight + 1e-9
    k = min(SITES_PER_NEIGHBOURHOOD, P.n_sites)
    row_site = P.pool_site[sol.row_pool]
    low = None  # margin: the low-density placed jobs it may free
    # A service with replicas outside the chosen sites stays fixed (its rows there are fixed).
    if kind == "region":
        region_weight = np.bincount(P.site_region, weights=weights)
        region = rng.choice(len(region_weight), p=region_weight / region_weight.sum())
        in_region = np.flatnonzero(P.site_region == region)
        w = weights[in_region]
        sites = in_region if len(in_region) <= 2 * k else rng.choice(in_region, 2 * k, replace=False, p=w / w.sum())
    elif kind == "margin" and len(sol.row_job):
        mw_per_unit = np.bincount(sol.row_job, weights=solution_terms(P, sol)["mw"], minlength=P.n_jobs)
        placed = np.unique(sol.row_job)
        density = P.job_value_unit[placed] * P.job_units[placed] / np.maximum(mw_per_unit[placed], 1e-9)
        # A random half of the lowest few hundred, so that repeated steps do not free the same set.
        bottom = placed[np.argsort(density, kind="stable")[:2 * MAX_FREE_JOBS]]
        low = rng.choice(bottom, size=min(len(bottom), MAX_FREE_JOBS), replace=False)
        counts = np.bincount(row_site[np.isin(sol.row_job, low)], minlength=P.n_sites)
        sites = np.argsort(-counts, kind="stable")[:k]
        sites = sites[counts[sites] > 0]
    else:
        sites = rng.choice(P.n_sites, size=k, replace=False, p=weights / weights.sum())
    row_at = np.isin(row_site, sites)
    placed_free = np.setdiff1d(np.unique(sol.row_job[row_at]), np.unique(sol.row_job[~row_at]))
    # Keep a third of the room for unplaced jobs: swapping them in is where the value is.
    cap = MAX_FREE_JOBS * 2 // 3
    if low is not None:
        placed_free = placed_free[np.isin(placed_free, low)][:cap]
    elif len(placed_free) > cap:
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
    steps = improved = empty = 0
    gains = dict.fromkeys(NEIGHBOURHOODS, 0)
    while clock.now() + 0.05 < deadline:
        kind = NEIGHBOURHOODS[steps % len(NEIGHBOURHOODS)]
        t = solution_terms(P, best)
        if site_weight is None:
            weight = np.bincount(P.pool_site[best.row_pool], weights=np.abs(t["net"]), minlength=P.n_sites)
        else:
            weight = site_weight
        weight = np.where(P.site_cap_mw > 0, weight + weight.mean() * 0.1 + 1e-6, 0.0)
        sites, freed = _neighbourhood(P, best, rng, weight, kind)
        steps += 1
        if len(freed) == 0:
            empty += 1
            if empty >= len(NEIGHBOURHOODS):
                break
            continue
        empty = 0
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
        budget = min(slice_s, deadline - clock.now())
        if budget <= 0.05:
            break
        opts = options.model_copy(update={"time_limit_s": budget, "seed": int(rng.integers(2**31 - 1))})
        result = solve_exact(sub, opts, hint=hint)
        if result.status in ("optimal", "feasible"):
            candidate = merge(P, best, result, freed)
            tiers = tier_objectives(P, candidate)
            if lex_better(tiers, best_tiers):
                best, best_tiers = candidate, tiers
                improved += 1
                gains[kind] += 1
                if on_progress:
                    on_progress(best)
    best.stats = {**best.stats, "lns_steps": steps, "lns_improved": improved, "lns_improved_by": gains}
    return best
