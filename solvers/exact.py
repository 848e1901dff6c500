"""The exact stage: the integer program over the eligible candidates, solved tier by tier.

The model (``solvers.int_model``): one integer column per candidate (job, pool) — a gang's is
0/1, a service's counts replicas —, whole-or-nothing services with their spread, GPUs per pool,
facility power per site in integer watts (loads rounded up, caps down, so every plan passes the
float validator), required jobs, pinned jobs, and the migration budget. Strict tiers are solved
lexicographically: each tier's net $/h is maximised with the tiers above held to what they
reached. The engine is CP-SAT (``solvers.engine_cpsat``) or HiGHS (``solvers.engine_highs``);
both take the same arrays.

Bound (``Solution.bound``, $/h): each solved stage contributes its engine's bound (CP-SAT's
plus the rounding slack of its integer coefficients), every stage not reached its trivial
bound; that sum bounds the lexicographic optimum's total (``int_model.LexResult``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from placement.core import clock
from placement.core.objective import current_units_at, unit_moves
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Reason, Solution
from placement.kernels.backend import ReferenceKernels
from placement.model.portfolio import SolveOptions
from placement.solvers.candidates import Candidates, eligible_candidates
from placement.solvers.engine_cpsat import solve_cpsat
from placement.solvers.engine_highs import solve_highs
from placement.solvers.int_model import WATTS_PER_MW, IntModel, LexResult, build_int_model, to_int
from placement.solvers.reasons import explain_unplaced

Progress = Callable[[float, float], None]
ENGINES = {"cpsat": solve_cpsat, "highs": solve_highs}


def _hint_values(c: Candidates, hint: Solution, n_pools: int) -> np.ndarray:
    """Units the hint puts on each kept candidate (rows the model does not have are dropped)."""
    values = np.zeros(len(c.job), np.int64)
    at = c.index_of(hint.row_job, hint.row_pool, n_pools)
    ok = at >= 0
    values[at[ok]] = np.minimum(hint.row_units[ok], c.ub[at[ok]])
    return values


def _solve_model(P: Problem, c: Candidates, hard: bool, options: SolveOptions, engine: str, deadline: float,
                 hint: np.ndarray | None, on_progress: Progress | None) -> tuple[IntModel, LexResult]:
    im = build_int_model(P, c, hard)
    return im, ENGINES[engine](im, options, deadline, hint=hint, on_progress=on_progress, total_net=c.net)


def solve_exact(problem: Problem, options: SolveOptions, hint: Solution | None = None,
                on_progress: Progress | None = None, engine: str = "cpsat") -> Solution:
    """Solve ``problem`` exactly under ``options.time_limit_s`` with ``engine`` (``cpsat`` | ``highs``).

    Status: ``optimal`` (every stage proven), ``feasible``, ``time_limit`` (no plan: all unplaced)
    or ``infeasible`` (required jobs cannot all be placed; the plan places as many as possible).
    ``on_progress(objective, bound)`` gets $/h on each improving solution.
    """
    P = problem
    deadline = clock.now() + options.time_limit_s
    eligible = eligible_candidates(P)
    c = eligible.take(eligible.ub >= 1)
    fits = np.bincount(c.job, minlength=P.n_jobs) > 0
    hard = not bool((P.job_required & ~fits).any())  # a required job with no fitting pool: relax now
    im, run = _solve_model(P, c, hard, options, engine, deadline,
                           _hint_values(c, hint, P.n_pools) if hint else None, on_progress)
    if run.infeasible:  # required jobs cannot all be placed together: place as many as possible
        hard, first = False, run.records
        im, run = _solve_model(P, c, False, options, engine, deadline, None, on_progress)
        run.records = first + run.records
    found = run.values is not None
    values = run.values[: im.n_cand] if found else np.zeros(len(c.job), np.int64)
    placed: dict[int, dict[int, int]] = {}
    for i in np.flatnonzero(values > 0):
        placed.setdefault(int(c.job[i]), {})[int(c.pool[i])] = int(values[i])
    status = ("time_limit" if not found else "infeasible" if not hard
              else "optimal" if len(run.proven) == len(im.stages) else "feasible")
    # Infeasible input: no optimum to bound, so bound every plan (greedy's in the pipeline too).
    bound = run.bound if hard else sum(s.trivial for s in im.stages if s.tier is not None)
    stats = {"stages": run.records, "engine": engine, "variables": im.n_cols, "constraints": im.n_rows,
             "objective": float(values @ c.net)}
    return Solution.from_pool_units(placed, P.n_jobs, _reasons(P, eligible, c, values, run.proven, found),
                                    solver="exact", status=status, bound=bound + 1e-12 * abs(bound),
                                    stats=stats)


def _reasons(P: Problem, eligible: Candidates, kept: Candidates, values: np.ndarray,
             proven_tiers: set, found: bool) -> np.ndarray:
    """Reason per job (placed jobs are overwritten by ``from_pool_units``).

    Starts from the shared single-unit judgement (``explain_unplaced``), then: no eligible pool
    → NO_ELIGIBLE_SITE; whole-job checks in the empty portfolio (a service's units, share and
    min_sites) → GPUS, SPREAD, POWER; a needed move the budget no longer allows →
    MIGRATION_BUDGET; out-valued in a tier not proven optimal → TIME_LIMIT.
    """
    n = P.n_jobs
    reason = explain_unplaced(P, ReferenceKernels(P), np.arange(n, dtype=np.int64)).astype(np.int8)
    soft = (reason == Reason.OUT_VALUED) | (reason == Reason.NOT_PROFITABLE)
    for short, code in zip(_capacity_short(P, eligible), (Reason.GPUS, Reason.SPREAD, Reason.POWER)):
        reason[soft & short] = code
        soft &= ~short
    reason[np.bincount(eligible.job, minlength=n) == 0] = Reason.NO_ELIGIBLE_SITE
    cur, away = P.job_current_pool, unit_moves(P, kept.job, kept.pool)
    held = np.minimum(kept.ub, current_units_at(P, kept.job, kept.pool))
    stay = np.bincount(kept.job, weights=held, minlength=n)  # units its current pools hold
    away_units = np.bincount(kept.job, weights=np.where(away, values, 0), minlength=n)
    spent = float((away_units * P.job_migration_usd).sum())
    need = (P.job_units - stay) * P.job_migration_usd
    blocked = (cur >= 0) & (stay < P.job_units) & (
        ((P.max_moves < UNLIMITED) & ((away_units > 0).sum() >= P.max_moves))
        | (spent + need > P.max_migration_usd + 1e-9))
    reason[(reason == Reason.OUT_VALUED) & blocked] = Reason.MIGRATION_BUDGET
    timed_out = ~np.isin(P.job_tier, [t for t in proven_tiers if t is not None]) if found else np.ones(n, bool)
    reason[(reason == Reason.OUT_VALUED) & timed_out] = Reason.TIME_LIMIT
    return reason


def _capacity_short(P: Problem, c: Candidates) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per job, whether even alone in the empty portfolio it lacks (GPUs, spread, power).

    The per-site estimate is optimistic (all power at the site's cheapest pool), so a job
    flagged short truly cannot be placed.
    """
    n = P.n_jobs
    uk, inv = np.unique(c.job * P.n_sites + c.site, return_inverse=True)
    j, s = uk // P.n_sites, uk % P.n_sites
    gpus = np.bincount(inv, weights=np.minimum(c.gpu_cap, P.job_units[c.job]), minlength=len(uk))
    min_w = np.full(len(uk), UNLIMITED, np.int64)
    np.minimum.at(min_w, inv, c.watts)
    cap_w = to_int(P.site_cap_mw * WATTS_PER_MW, up=False)[s]
    by_gpu = np.minimum(gpus.astype(np.int64), P.job_units[j])
    by_share = np.minimum(by_gpu, P.job_max_units_per_site[j])
    by_power = np.minimum(by_share, np.where(min_w > 0, cap_w // np.maximum(min_w, 1), UNLIMITED))

    def short(cap: np.ndarray, spread: bool) -> np.ndarray:
        total = np.bincount(j, weights=cap, minlength=n)
        sites = np.bincount(j, weights=cap > 0, minlength=n)
        return (total < P.job_units) | (spread & (sites < P.job_min_sites))

    return short(by_gpu, False), short(by_share, True), short(by_power, True)
