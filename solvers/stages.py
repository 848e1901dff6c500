"""The stages the pipeline and the decomposed solver share, around one incumbent plan.

Each stage takes the best plan so far (``Incumbent``) and offers it something better: the exact
model hinted with it, local search, large-neighbourhood search, a greedy fill of the room it
leaves; ``re_explain`` judges the final plan's unplaced jobs against the whole problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from placement.kernels import Kernels
from placement.model.portfolio import SolveOptions
from placement.core.problem import Problem
from placement.core.solution import Reason, Solution, tier_objectives
from placement.solvers import lns, local_search
from placement.solvers.candidates import Candidates, eligible_candidates
from placement.solvers.compare import better
from placement.solvers.greedy import fill_unplaced
from placement.solvers.reasons import explain_unplaced

# Reasons a solver states itself; every other unplaced job is judged again at the end.
SOLVER_REASONS = (Reason.TIME_LIMIT, Reason.MIGRATION_BUDGET, Reason.SPREAD)

Progress = Callable[[float, float], None]


class Incumbent:
    """Best plan and bound so far, reported to the progress callback as they improve."""

    def __init__(self, problem: Problem, first: Solution, bound: float, on_progress: Progress | None):
        self.P, self.best, self.bound, self.on_progress = problem, first, bound, on_progress
        self.report()

    def offer(self, candidate: Solution) -> bool:
        if candidate.status == "infeasible" or not better(self.P, candidate, self.best):
            return False
        self.best = candidate
        self.report()
        return True

    def tighten(self, bound: float) -> None:
        if bound < self.bound:
            self.bound = bound
            self.report()

    def report(self) -> None:
        if self.on_progress:
            self.on_progress(float(tier_objectives(self.P, self.best).sum()), self.bound)


def exact_stage(P: Problem, options: SolveOptions, inc: Incumbent, deadline: float, engine: str = "cpsat") -> None:
    from placement.solvers.exact import solve_exact  # noqa: PLC0415  (ortools import is slow)

    remaining = options.model_copy(update={"time_limit_s": max(deadline - time.monotonic(), 0.1)})
    exact = solve_exact(P, remaining, hint=inc.best, engine=engine)
    inc.tighten(exact.bound)
    if exact.status == "infeasible":
        inc.best.status = "infeasible"  # a required job cannot be placed: keep the best plan found
    elif exact.status == "optimal" or better(P, exact, inc.best):
        inc.best = exact
        inc.report()


def local_search_stage(P: Problem, kernels: Kernels, inc: Incumbent, deadline: float) -> None:
    inc.offer(local_search.improve(P, inc.best, kernels, deadline=deadline))


def lns_stage(P: Problem, options: SolveOptions, inc: Incumbent, deadline: float) -> None:
    prices = inc.best.site_price_usd_per_mwh
    weight = None if prices is None else prices * P.site_cap_mw
    improved = lns.improve(P, inc.best, options, deadline=deadline, site_weight=weight,
                           on_progress=lambda s: inc.offer(s))
    inc.offer(improved)


def kept_candidates(P: Problem) -> Candidates:
    """The candidates an exact model keeps (those with room for one unit in the empty portfolio)."""
    c = eligible_candidates(P)
    return c.take(c.ub >= 1)


def construct_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent, cand: Candidates,
                    deadline: float) -> bool:
    """Place every required gang by regret and ejection chains, then fill the rest greedily.

    Returns whether the construction placed every required gang.
    """
    from placement.solvers.construct import construct_required  # noqa: PLC0415  (numba import is slow)

    built = construct_required(P, cand, deadline)
    if built is None:
        return False
    inc.offer(fill_unplaced(P, built, kernels, options).solution)
    return True


def tight_search_stage(P: Problem, inc: Incumbent, cand: Candidates, deadline: float) -> None:
    """Shifts and swaps of the placed gangs under an adaptive overload penalty."""
    from placement.solvers.tight_search import improve_tight  # noqa: PLC0415  (numba import is slow)

    inc.offer(improve_tight(P, cand, inc.best, deadline=deadline))


def fill_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent) -> None:
    """Greedy over the unplaced jobs in the capacity the plan leaves: only ever adds value.

    Jobs it leaves out keep their reasons: ``re_explain`` judges them at the end.
    """
    inc.offer(fill_unplaced(P, inc.best, kernels, options, keep_reasons=True).solution)


def re_explain(P: Problem, kernels: Kernels, sol: Solution) -> None:
    """Judge unplaced jobs against the whole problem (stages saw sub-problems)."""
    judge = np.flatnonzero((sol.reason != Reason.PLACED) & ~np.isin(sol.reason, SOLVER_REASONS))
    sol.reason[judge] = explain_unplaced(P, kernels, judge)
