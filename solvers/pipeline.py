"""The default pipeline: construct, then improve, anytime under one time limit.

``auto`` runs greedy, then the exact CP-SAT model hinted with it when the instance is small
enough to prove; the best plan (compared tier by tier) and the best bound win.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from placement.kernels import Kernels
from placement.model import SolveOptions
from placement.problem import Problem
from placement.solution import Solution, tier_objectives
from placement.solvers.bounds import relaxed_bound
from placement.solvers.greedy import solve_greedy

log = logging.getLogger("placement")

SOLVERS = ("auto", "greedy", "exact")
# Above this many candidate (job, pool) pairs the exact model is not attempted by `auto`.
EXACT_MAX_CANDIDATES = 20_000

Progress = Callable[[float, float], None]


def candidate_count(problem: Problem) -> int:
    """Number of (job, pool) candidates before per-job filters."""
    sizes = np.diff(problem.class_ptr)
    return int(sizes[problem.job_class].sum())


def better(problem: Problem, a: Solution, b: Solution) -> bool:
    """True if plan ``a`` is lexicographically better than ``b`` by tier objective."""
    ta, tb = tier_objectives(problem, a), tier_objectives(problem, b)
    for x, y in zip(ta, tb):
        if abs(x - y) > 1e-9 * max(1.0, abs(x), abs(y)):
            return bool(x > y)
    return False


def run_pipeline(problem: Problem, options: SolveOptions, kernels: Kernels,
                 on_progress: Progress | None = None) -> Solution:
    """Solve with ``options.solver`` under ``options.time_limit_s``; returns the best Solution."""
    if options.solver not in SOLVERS:
        raise ValueError(f"unknown solver '{options.solver}': expected one of {', '.join(SOLVERS)}")
    start = time.monotonic()
    deadline = start + options.time_limit_s
    best = solve_greedy(problem, options, kernels, deadline=deadline)
    bound = relaxed_bound(problem, kernels)
    if on_progress:
        on_progress(float(tier_objectives(problem, best).sum()), bound)
    wants_exact = options.solver == "exact" or (
        options.solver == "auto" and candidate_count(problem) <= EXACT_MAX_CANDIDATES)
    if wants_exact and time.monotonic() < deadline:
        from placement.solvers.exact import solve_exact  # noqa: PLC0415  (ortools import is slow)

        remaining = options.model_copy(update={"time_limit_s": max(deadline - time.monotonic(), 0.1)})
        exact = solve_exact(problem, remaining, hint=best, on_progress=on_progress)
        bound = min(bound, exact.bound)
        if exact.status == "infeasible":
            best.status = "infeasible"  # a required job cannot be placed: keep what greedy placed
        elif exact.status == "optimal" or better(problem, exact, best):
            best = exact
    best.bound = min(best.bound, bound)
    best.backend = kernels.name
    best.stats.setdefault("seconds_solve", time.monotonic() - start)
    return best
