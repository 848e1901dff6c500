"""The default pipeline: construct, bound, improve, anytime under one time limit.

``auto``: greedy first (a valid plan within milliseconds); then, when the instance is small
enough to prove, the exact CP-SAT model hinted with it. Otherwise the full problem's LP (with
the top tier held to what the best plan so far gives it) starts in a background thread and runs
to the deadline, supplying the bound and the shadow prices, while the main thread constructs and
improves: tier by tier from the highest, an LP by column generation over that tier's jobs and
the capacity the higher tiers left gives dual prices, at which the greedy and the auction each
place the tier (the better plan is kept); then local search, and large-neighbourhood search
with the exact engine (neighbourhoods by the LP's prices so far) until the deadline.
A timeout or Ctrl-C returns the best plan found so far.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import numpy as np

from placement.kernels import Kernels, kernels_for
from placement.model.portfolio import SolveOptions
from placement.core.problem import Problem, subproblem
from placement.core.solution import Reason, Solution, tier_objectives, usage
from placement.solvers.bounds import relaxed_bound
from placement.solvers.greedy import solve_greedy
from placement.solvers.reasons import explain_unplaced

log = logging.getLogger("placement")

SOLVERS = ("auto", "greedy", "exact", "price", "lns", "decomposed")
# Above this many candidate (job, pool) pairs `auto` does not try to prove optimality.
EXACT_MAX_CANDIDATES = 5_000
# Shares of the time limit: construction (tiered LP + price greedy and auction) ends by the first,
# local search by the second, LNS takes the rest; the full LP bound runs alongside all of them.
CONSTRUCT_SHARE = 0.65
LOCAL_SEARCH_UNTIL = 0.75
# Seconds the main thread waits at the end for the background LP's last master solve.
LP_JOIN_S = 2.0
# Columns per job the background LP starts from: its first master solves sooner (at 10k jobs the
# LP converged 1-2 s earlier than from 8; the tier LPs keep their default, their duals price plans).
LP_INITIAL_COLUMNS = 2
# Reasons a solver states itself; every other unplaced job is judged again at the end.
SOLVER_REASONS = (Reason.TIME_LIMIT, Reason.MIGRATION_BUDGET, Reason.SPREAD)

Progress = Callable[[float, float], None]


def candidate_count(problem: Problem) -> int:
    """Number of (job, pool) candidates before per-job filters."""
    sizes = np.diff(problem.class_ptr)
    return int(sizes[problem.job_class].sum())


def lex_better(a: np.ndarray, b: np.ndarray) -> bool:
    """True if tier vector ``a`` (highest tier first) beats ``b`` beyond float noise."""
    for x, y in zip(a, b):
        if abs(x - y) > 1e-7 * max(1.0, abs(x), abs(y)):
            return bool(x > y)
    return False


def better(problem: Problem, a: Solution, b: Solution) -> bool:
    """True if plan ``a`` is lexicographically better than ``b`` by tier objective."""
    return lex_better(tier_objectives(problem, a), tier_objectives(problem, b))


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


def run_pipeline(problem: Problem, options: SolveOptions, kernels: Kernels,
                 on_progress: Progress | None = None, initial: Solution | None = None) -> Solution:
    """Solve with ``options.solver`` under ``options.time_limit_s``; returns the best Solution.

    ``initial`` (e.g. the placement running now) warm-starts every stage: it is first repaired
    to the current capacities and rules (``solvers.repair``), then kept unless beaten.
    """
    if options.solver not in SOLVERS:
        raise ValueError(f"unknown solver '{options.solver}': expected one of {', '.join(SOLVERS)}")
    if options.solver == "decomposed":
        from placement.solvers.decomposed import solve_decomposed  # noqa: PLC0415

        return solve_decomposed(problem, options, kernels, on_progress=on_progress, initial=initial)
    P = problem
    start = time.monotonic()
    deadline = start + options.time_limit_s
    small = candidate_count(P) <= EXACT_MAX_CANDIDATES
    full_lp: _BackgroundLp | None = None
    if initial is not None:
        # Warm start: keep the running placement unless a stage beats it. No cold stages (a cold
        # greedy or price plan a few $/h better in the top tier would move thousands of jobs).
        from placement.solvers.repair import repair  # noqa: PLC0415

        stages = ["warm-start"]
        inc = Incumbent(P, repair(P, initial, kernels), relaxed_bound(P, kernels), on_progress)
    else:
        stages = ["greedy"]
        inc = Incumbent(P, solve_greedy(P, options, kernels, deadline=deadline), relaxed_bound(P, kernels),
                         on_progress)
    try:
        if initial is not None and options.solver != "greedy":
            if small or options.solver == "exact":
                exact_stage(P, options, inc, deadline)
                stages.append("exact")
            else:
                lns_stage(P, options, inc, deadline)
                stages.append("lns")
        elif initial is not None:
            pass  # greedy from a warm start: the repaired placement plus the final fill
        elif options.solver == "exact" or (options.solver == "auto" and small):
            exact_stage(P, options, inc, deadline)
            stages.append("exact")
        elif options.solver in ("auto", "price", "lns"):
            # The LP bound takes one core for the whole run; the stages below share the other.
            full_lp = _BackgroundLp(P, kernels, inc, deadline)
            stages.append("lp")
            construct_by = start + options.time_limit_s * (CONSTRUCT_SHARE if options.solver != "price" else 1.0)
            tiered_price_stage(P, full_lp.spare(options), kernels, inc, construct_by, deadline)
            stages.append("price")
            local_search_stage(P, kernels, inc, start + options.time_limit_s * LOCAL_SEARCH_UNTIL)
            stages.append("ls")
            if options.solver != "price":
                full_lp.attach(inc)  # LNS picks its neighbourhoods by the LP's shadow prices so far
                lns_stage(P, full_lp.spare(options), inc, deadline)
                stages.append("lns")
    except KeyboardInterrupt:
        log.warning("interrupted: returning the best plan so far")
        stages.append("interrupted")
    if full_lp is not None:
        full_lp.collect(inc, None if "interrupted" in stages else deadline)
    if options.solver != "greedy" or initial is not None:
        fill_stage(P, options, kernels, inc)
        stages.append("fill")
    best = inc.best
    best.bound = min(best.bound, inc.bound)
    best.backend = kernels.name
    if time.monotonic() > deadline and best.status == "optimal":
        best.status = "feasible"
    re_explain(P, kernels, best)
    best.stats = {**best.stats, "stages": stages, "seconds_solve": time.monotonic() - start}
    return best


def exact_stage(P: Problem, options: SolveOptions, inc: Incumbent, deadline: float) -> None:
    from placement.solvers.exact import solve_exact  # noqa: PLC0415  (ortools import is slow)

    remaining = options.model_copy(update={"time_limit_s": max(deadline - time.monotonic(), 0.1)})
    exact = solve_exact(P, remaining, hint=inc.best)
    inc.tighten(exact.bound)
    if exact.status == "infeasible":
        inc.best.status = "infeasible"  # a required job cannot be placed: keep the best plan found
    elif exact.status == "optimal" or better(P, exact, inc.best):
        inc.best = exact
        inc.report()


def tiered_price_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent,
                         deadline: float, hard_deadline: float) -> None:
    """Place tiers from the highest, each by LP prices over the capacity the tiers above left.

    Strict tiers mean a tier never pays for the next one's opportunity cost, so each tier gets
    its own prices rather than sharing the whole problem's. At those prices both the greedy and
    the auction (``solvers.auction``) place the tier; the better plan is kept.
    """
    from placement.solvers.auction import solve_auction  # noqa: PLC0415
    from placement.solvers.lp import lp_bound  # noqa: PLC0415

    tiers = np.unique(P.job_tier)[::-1]
    gpus, mw = P.pool_gpus.astype(np.int64).copy(), P.site_cap_mw.astype(np.float64).copy()
    moves_left, usd_left = P.max_moves, P.max_migration_usd
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    for k, tier in enumerate(tiers):
        jobs = np.flatnonzero(P.job_tier == tier)
        sub = subproblem(P, jobs, gpus, mw, max_moves=moves_left, max_migration_usd=usd_left)
        sub_kernels = kernels_for(sub, kernels.name)
        share = (deadline - time.monotonic()) / (len(tiers) - k)
        # Past the construction share a tier still gets its plain greedy (fast): leaving it empty
        # would hand the next stages a plan that is worse everywhere below the top tier.
        plain = solve_greedy(sub, options, sub_kernels, deadline=hard_deadline)
        chosen = plain
        if share > 0.05 and time.monotonic() < deadline:
            lp = lp_bound(sub, sub_kernels, incumbent=plain, deadline=time.monotonic() + share * 0.8,
                          threads=options.threads)
            priced = solve_greedy(sub, options, sub_kernels, deadline=deadline,
                                  site_price=lp.site_price, pool_price=lp.pool_price)
            auction = solve_auction(sub, options, sub_kernels, deadline=deadline, site_price=lp.site_price,
                                    pool_price=lp.pool_price, track_bound=len(tiers) == 1)
            if len(tiers) == 1:  # the tier is the whole problem: the auction's bound is its bound
                inc.tighten(auction.bound)
            for plan in (priced, auction.solution):
                if better(sub, plan, chosen):
                    chosen = plan
        used = usage(sub, chosen)
        gpus, mw = used.residual(sub)
        moves_left, usd_left = used.budget_left(sub)
        rows.append((jobs[chosen.row_job], chosen.row_pool, chosen.row_units))
        reason[jobs] = chosen.reason
    job, pool, units = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in zip(*rows))
    inc.offer(Solution(job, pool, units, reason, solver="price", backend=kernels.name))


def local_search_stage(P: Problem, kernels: Kernels, inc: Incumbent, deadline: float) -> None:
    from placement.solvers.local_search import improve  # noqa: PLC0415

    inc.offer(improve(P, inc.best, kernels, deadline=deadline))


class _BackgroundLp:
    """The whole problem's LP bound (``solvers.lp``) in a thread, from the first plan to the deadline.

    HiGHS releases the GIL while it solves a master, so the bound uses one core while the other
    stages use the other; kernel calls hold the GIL, so the two threads' kernel calls never
    overlap. The LP's top-tier floor follows the incumbent as the other stages improve it.
    """

    class _Stop(Exception):
        """Raised in the LP's progress callback to end it early (Ctrl-C in the main thread)."""

    def __init__(self, P: Problem, kernels: Kernels, inc: Incumbent, deadline: float):
        self.P, self.latest, self.seen = P, None, None
        self.busy = True  # an LP is being solved (not just waiting for a better plan)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(P, kernels, inc, deadline), daemon=True,
                                       name="placement-lp")
        self.thread.start()

    def _run(self, P: Problem, kernels: Kernels, inc: Incumbent, deadline: float) -> None:
        """Solve the LP; once it is done, solve it again whenever the top tier's floor can rise
        (on small instances it ends before the construction improves the first plan)."""
        from placement.solvers.lp import lp_bound  # noqa: PLC0415

        floor = None
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                plan = inc.best
                if self._current(P, plan):
                    self.stop.wait(0.1)
                    continue
                self.seen, top = plan, float(tier_objectives(P, plan)[0]) if P.n_jobs else 0.0
                if floor is not None and top <= floor:
                    continue
                floor, self.busy = top, True
                self._publish(lp_bound(P, kernels, incumbent=plan, deadline=deadline, threads=1,
                                       latest_incumbent=lambda: inc.best, on_round=self._publish,
                                       initial_columns=LP_INITIAL_COLUMNS))
                self.busy = False
        except self._Stop:
            pass
        except Exception:  # the bound is an extra: a failure here must not lose the plan
            log.exception("background LP bound failed; keeping the bound found so far")

    def _current(self, P: Problem, plan: Solution) -> bool:
        """True if the LP already holds ``plan``'s floor (one tier: any plan will do)."""
        return self.seen is not None and (plan is self.seen or P.job_tier.max() == 0)

    def spare(self, options: SolveOptions) -> SolveOptions:
        """``options`` for a stage starting now: one thread fewer while an LP is being solved."""
        if not self.busy:
            return options
        return options.model_copy(update={"threads": max((options.threads or os.cpu_count() or 1) - 1, 1)})

    def _publish(self, result) -> None:
        if self.latest is None or result.bound <= self.latest.bound:
            self.latest = result
        if self.stop.is_set():
            raise self._Stop

    def collect(self, inc: Incumbent, deadline: float | None) -> None:
        """Wait until the LP has solved for the final plan or ``deadline`` passes (None: stop it
        now), then tighten the incumbent's bound with the LP's and attach its duals (the shadow
        prices)."""
        if deadline is not None:
            until = deadline + LP_JOIN_S
            while self.thread.is_alive() and time.monotonic() < until:
                if not self.busy and self._current(self.P, inc.best):
                    break  # done with the final plan: waiting on would only idle
                self.thread.join(0.02)
        self.stop.set()
        self.thread.join(0.0)
        self.attach(inc)

    def attach(self, inc: Incumbent) -> None:
        """Give the incumbent the LP's best bound and duals so far."""
        lp = self.latest
        if lp is None:
            return
        inc.tighten(lp.bound)
        inc.best.site_price_usd_per_mwh = lp.site_price
        inc.best.pool_price_usd_per_gpu_hour = lp.pool_price
        inc.best.stats = {**inc.best.stats, "lp_rounds": lp.rounds, "lp_converged": lp.converged,
                          "lp_columns": lp.columns}


def lns_stage(P: Problem, options: SolveOptions, inc: Incumbent, deadline: float) -> None:
    from placement.solvers.lns import improve  # noqa: PLC0415

    prices = inc.best.site_price_usd_per_mwh
    weight = None if prices is None else prices * P.site_cap_mw
    improved = improve(P, inc.best, options, deadline=deadline, site_weight=weight,
                       on_progress=lambda s: inc.offer(s))
    inc.offer(improved)


def fill_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent) -> None:
    """Greedy over the unplaced jobs in the capacity the plan leaves: only ever adds value."""
    sol = inc.best
    out = np.flatnonzero((sol.reason != Reason.PLACED) & (P.job_filter == 0))
    if len(out) == 0:
        return
    used = usage(P, sol)
    gpus, mw = used.residual(P)
    moves_left, usd_left = used.budget_left(P)
    sub = subproblem(P, out, gpus, mw, max_moves=moves_left, max_migration_usd=usd_left)
    extra = solve_greedy(sub, options, kernels_for(sub, kernels.name))
    if len(extra.row_job) == 0:
        return
    reason = sol.reason.copy()
    reason[out[extra.row_job]] = Reason.PLACED
    inc.offer(Solution(
        np.concatenate([sol.row_job, out[extra.row_job]]), np.concatenate([sol.row_pool, extra.row_pool]),
        np.concatenate([sol.row_units, extra.row_units]), reason, solver=sol.solver, backend=sol.backend,
        status=sol.status, bound=sol.bound, site_price_usd_per_mwh=sol.site_price_usd_per_mwh,
        pool_price_usd_per_gpu_hour=sol.pool_price_usd_per_gpu_hour, stats=sol.stats))


def re_explain(P: Problem, kernels: Kernels, sol: Solution) -> None:
    """Judge unplaced jobs against the whole problem (stages saw sub-problems)."""
    judge = np.flatnonzero((sol.reason != Reason.PLACED) & ~np.isin(sol.reason, SOLVER_REASONS))
    sol.reason[judge] = explain_unplaced(P, kernels, judge)
