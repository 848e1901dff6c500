"""Comparing plans: strict priority tiers, highest first, one tolerance for float noise."""

from __future__ import annotations

import numpy as np

from placement.core.problem import Problem
from placement.core.solution import Solution, tier_objectives

# Two tier objectives closer than this, relative to their size (at least 1 $/h), are equal:
# a sum over rows in another order must not count as an improvement.
LEX_RTOL = 1e-7


def lex_better(a: np.ndarray, b: np.ndarray) -> bool:
    """True if tier vector ``a`` (highest tier first) beats ``b`` beyond float noise."""
    for x, y in zip(a, b):
        if abs(x - y) > LEX_RTOL * max(1.0, abs(x), abs(y)):
            return bool(x > y)
    return False


def required_placed(problem: Problem, solution: Solution) -> int:
    """How many required jobs the plan places."""
    return int((problem.job_required & solution.placed).sum())


def better(problem: Problem, a: Solution, b: Solution) -> bool:
    """True if plan ``a`` beats ``b``: more required jobs placed, else lexicographically by tier.

    A plan that leaves a required job out breaks a hard constraint, so no objective makes up
    for it.
    """
    ra, rb = required_placed(problem, a), required_placed(problem, b)
    if ra != rb:
        return ra > rb
    return lex_better(tier_objectives(problem, a), tier_objectives(problem, b))
