"""The stages the pipeline and the decomposed solver share, around one incumbent plan.

Each stage takes the best plan so far (``Incumbent``) and offers it something better: the exact
model hinted with it, local search, large-neighbourhood search, a greedy fill of the room it
leaves; ``re_explain`` judges the final plan's unplaced jobs against the whole problem.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from placement.core import clock
from placement.kernels import Kernels
from placement.model.portfolio import SolveOptions
from placement.core.problem import Problem
from placement.core.solution import Reason, Solution, tier_objectives
from placement.solvers import lns, local_search
from placement.solvers.candidates import Candidates, eligible_candidates
from placement.solvers.compare import better
from placement.solvers.int_model import WATTS_PER_MW, build_int_model
from placement.solvers.lagrangian import evaluate_dual
from placement.solvers.greedy import fill_unplaced, solve_greedy
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

    remaining = options.model_copy(update={"time_limit_s": max(deadline - clock.now(), 0.1)})
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


def tight_search_stage(P: Problem, inc: Incumbent, cand: Candidates, deadline: float,
                       start: np.ndarray | None = None) -> None:
    """Shifts and swaps of the placed gangs under an adaptive overload penalty (from ``start`` if given)."""
    from placement.solvers.tight_search import improve_tight  # noqa: PLC0415  (numba import is slow)

    inc.offer(improve_tight(P, cand, inc.best, deadline=deadline, start=start))


def relaxation_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent, cand: Candidates,
                     deadline: float) -> np.ndarray | None:
    """The exact model's LP relaxation: a Lagrangian bound at its duals, and its rounding.

    The LP maximises the net value summed over tiers; its duals (site watts and pool GPU rows)
    are only prices, and the Lagrangian value is a valid bound at any nonnegative prices. Both
    sign conventions of the duals are tried (the smaller bound wins), so a solver's sign choice
    cannot matter. Returns each job's candidate with the largest LP share (-1: none), a start
    for the penalty search, or None when the LP was not solved in time.
    """
    from placement.solvers.engine_highs import solve_relaxation  # noqa: PLC0415  (highspy import is slow)

    im = build_int_model(P, cand, required_hard=True)
    cost = np.zeros(im.n_cols)
    cost[: im.n_cand] = cand.net
    lp = solve_relaxation(im, cost, deadline)
    if lp is None:
        return None
    x, duals = lp
    jobs = np.flatnonzero(np.bincount(cand.job, minlength=P.n_jobs) > 0).astype(np.int64)
    for sign in (1.0, -1.0):
        lam = np.where(im.site_row >= 0, np.maximum(sign * duals[im.site_row], 0.0) * WATTS_PER_MW, 0.0)
        mu = np.where(im.pool_row >= 0, np.maximum(sign * duals[im.pool_row], 0.0), 0.0)
        inc.tighten(evaluate_dual(P, kernels, jobs, lam, mu))
    share = x[: im.n_cand]
    order = np.lexsort((-share, cand.job))  # per job, its largest share first
    first = np.searchsorted(cand.job[order], np.arange(P.n_jobs))
    start = np.full(P.n_jobs, -1, np.int64)
    has = first < len(order)
    has[has] &= cand.job[order[first[has]]] == np.flatnonzero(has)
    start[has] = order[first[has]]
    return start


def lp_price_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent, site_price: np.ndarray,
                   pool_price: np.ndarray, scales: tuple[float, ...], deadline: float) -> None:
    """Greedy at the whole problem's LP prices times each of ``scales``, while time is left.

    The LP holds only the top tier to a floor, so its full prices also charge the top tier for
    the lower tiers' demand; scaled down they still steer jobs off congested sites without
    pricing top-tier jobs out (100k x 1,000 neocloud: at 0.25 the top tier gained 1.6% over the
    greedy's, at 1.0 it lost 42%). Each plan is offered; strict tiers decide.
    """
    for scale in scales:
        if clock.now() > deadline:
            return
        inc.offer(solve_greedy(P, options, kernels, deadline=deadline, site_price=site_price * scale,
                               pool_price=pool_price * scale))


def fill_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent) -> None:
    """Greedy over the unplaced jobs in the capacity the plan leaves: only ever adds value.

    Jobs it leaves out keep their reasons: ``re_explain`` judges them at the end.
    """
    inc.offer(fill_unplaced(P, inc.best, kernels, options, keep_reasons=True).solution)


def re_explain(P: Problem, kernels: Kernels, sol: Solution) -> None:
    """Judge unplaced jobs against the whole problem (stages saw sub-problems)."""
    judge = np.flatnonzero((sol.reason != Reason.PLACED) & ~np.isin(sol.reason, SOLVER_REASONS))
    sol.reason[judge] = explain_unplaced(P, kernels, judge)


def attach_lp(inc: Incumbent, lp, failed: str = "") -> None:
    """Give the incumbent an LP result's bound and duals (the shadow prices); record in
    ``stats.fallbacks`` why the LP failed (``failed``) or stopped early."""
    inc.best.record_fallbacks({"stage": "lp", "reason": r} for r in (failed, lp.stopped if lp is not None else "") if r)
    if lp is None:
        return
    inc.tighten(lp.bound)
    inc.best.site_price_usd_per_mwh = lp.site_price
    inc.best.pool_price_usd_per_gpu_hour = lp.pool_price
    inc.best.stats = {**inc.best.stats, "lp_rounds": lp.rounds, "lp_converged": lp.converged,
                      "lp_columns": lp.columns}
