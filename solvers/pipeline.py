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
import typing
from collections.abc import Callable

import numpy as np
from placement.kernels import Kernels, kernels_for
from placement.solvers.auction import solve_auction
from placement.solvers.bounds import relaxed_bound
from placement.solvers.compare import better
from placement.solvers.decomposed import solve_decomposed
from placement.solvers.greedy import solve_greedy
from placement.solvers.aggregate import BAND_WIDTH
from placement.solvers.lockstep_lp import LockstepLp
from placement.solvers.lp import lp_bound
from placement.solvers.repair import repair
from placement.solvers.stages import (
    Incumbent,
    Progress,
    attach_lp,
    construct_stage,
    exact_stage,
    fill_stage,
    lp_price_stage,
    kept_candidates,
    lns_stage,
    local_search_stage,
    re_explain,
    relaxation_stage,
    tight_search_stage,
)

from placement.core import clock
from placement.core.problem import Problem, subproblem
from placement.core.solution import Reason, Solution, tier_objectives, usage
from placement.model.portfolio import SolveOptions, SolverName

log = logging.getLogger("placement")

SOLVERS = typing.get_args(SolverName)
# Above this many candidate (job, pool) pairs `auto` does not try to prove optimality.
EXACT_MAX_CANDIDATES = 5_000
# Shares of the time limit: construction (tiered LP + price greedy and auction) ends by the first,
# local search by the second, LNS takes the rest; the full LP bound runs alongside all of them.
CONSTRUCT_SHARE = 0.65
LOCAL_SEARCH_UNTIL = 0.75
# Scales of the whole problem's LP prices the greedy runs at after the tier prices (see
# ``stages.lp_price_stage``), most promising first.
LP_PRICE_SCALES = (0.25, 0.5)
# ... on models this large; below it LNS uses the time better (S/M at 10 s: up to 1.2% lower
# objectives with the stage on every size).
LP_PRICE_MIN_JOBS = 20_000
# On models too large to prove, this share of the first greedy's seconds is kept for the final
# fill, a greedy pass over what is left (100k x 1,000 at 60 s: fill 1.4 s after greedy 7.7 s,
# and the run took 64.9 s without a reserve; 1M x 2,000: greedy 92 s, fill 16 s).
FILL_RESERVE_OF_GREEDY = 0.2
# Seconds the main thread waits at the end for the background LP's last master solve.
LP_JOIN_S = 2.0
# Columns per job the background LP starts from: its first master solves sooner (at 10k jobs the
# LP converged 1-2 s earlier than from 8; the tier LPs keep their default, their duals price plans).
LP_INITIAL_COLUMNS = 2
# Tight capacity with required gangs the greedy could not place: up to this many candidates the
# feasibility-first path runs (construction, penalty search until the share, then the exact
# engine hinted with its plan for the rest of the time).
TIGHT_MAX_CANDIDATES = 500_000
TIGHT_SEARCH_SHARE = 0.5
# ... but at most this long on mid-size models, where the hinted engine gains more from longer
# runs than the search (60 s, 400 jobs: search until 6 s instead of 30 s cut the cost gap to the
# bound on tight-e 40x400 from 2.11% to 1.05% and on tight-d 20x400 from 0.43% to 0.39%).
TIGHT_SEARCH_MAX_S = 6.0
# Models the exact engine can prove get most of the time: the search only polishes the hint.
TIGHT_SEARCH_SHARE_SMALL = 0.1
# Above this many candidates the MILP rarely improves the search's plan in the time left
# (80x1,600 at 10 s: no gain), so the search keeps most of the time.
TIGHT_LARGE_CANDIDATES = 50_000
TIGHT_SEARCH_SHARE_LARGE = 0.85
TIGHT_ENGINE = "highs"
# From this many jobs the LPs run over buckets of interchangeable jobs (``solvers.aggregate``):
# at 100k x 1,000 the full master's first round took 37 s on one thread, the bucket master's
# rounds 4-5 s, and the bound after 60 s fell from 4.35M to 2.39M $/h.
AGGREGATE_MIN_JOBS = 20_000


def _bucket_width(P: Problem) -> float | None:
    return BAND_WIDTH if P.n_jobs >= AGGREGATE_MIN_JOBS else None


def candidate_count(problem: Problem) -> int:
    """Number of (job, pool) candidates before per-job filters."""
    sizes = np.diff(problem.class_ptr)
    return int(sizes[problem.job_class].sum())


class _Stages:
    """Runs named stages; one that raises is logged and dropped, and the run keeps its incumbent."""

    def __init__(self, first: str, first_s: float):
        self.names = [first]
        self.failed: list[dict[str, str]] = []
        self.seconds: dict[str, float] = {first: round(first_s, 3)}  # where the time went, per stage
        self.after_stage: Callable[[], None] | None = None  # called when a stage has run

    def run(self, name: str, stage: Callable[..., object], *args: object, **kw: object) -> object:
        start = time.monotonic()
        try:
            result = stage(*args, **kw)
        except (KeyboardInterrupt, MemoryError):
            raise
        except Exception as exc:  # a solver library or kernel failing must not lose the plan
            log.exception("stage '%s' failed; continuing with the best plan so far", name)
            self.failed.append({"stage": name, "reason": f"stage failed, plan kept: {type(exc).__name__}: {exc}"[:500]})
            return None
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.monotonic() - start, 3)
        self.names.append(name)
        if self.after_stage is not None:
            self.after_stage()
        return result


def _required_gang_left_out(P: Problem, sol: Solution) -> bool:
    return bool((P.job_required & (P.job_kind == 0) & ~sol.placed & (P.job_filter == 0)).any())


def run_pipeline(problem: Problem, options: SolveOptions, kernels: Kernels,
                 on_progress: Progress | None = None, initial: Solution | None = None) -> Solution:
    """Solve with ``options.solver`` under ``options.time_limit_s``; returns the best Solution.

    ``initial`` (e.g. the placement running now) warm-starts every stage: it is first repaired
    to the current capacities and rules (``solvers.repair``), then kept unless beaten. A stage
    that raises is dropped (``stats.fallbacks`` names it, with the error) and the run goes on.
    ``options.deterministic``: the time limit is a work budget (``placement.core.clock``), every
    engine runs on one thread, and the LP bound beside the other stages runs in lockstep with them
    by work (``solvers.lockstep_lp``): the same input, seed and backend give the same plan under
    any load.
    """
    if options.solver not in SOLVERS:
        raise ValueError(f"unknown solver '{options.solver}': expected one of {', '.join(SOLVERS)}")
    with clock.work_clock(options.deterministic):
        return _run(problem, engine_options(options), kernels, on_progress, initial)


def engine_options(options: SolveOptions) -> SolveOptions:
    """``options`` as the engines take them: one thread each in deterministic mode (a portfolio
    of parallel workers finds different plans depending on which thread is faster)."""
    return options.model_copy(update={"threads": 1}) if options.deterministic else options


def _run(problem: Problem, options: SolveOptions, kernels: Kernels, on_progress: Progress | None,
         initial: Solution | None) -> Solution:
    P = problem
    small = candidate_count(P) <= EXACT_MAX_CANDIDATES
    if options.solver == "decomposed":
        return solve_decomposed(P, options, kernels, solve_part=run_pipeline, prove=small, on_progress=on_progress,
                                initial=initial)
    wall_start, start = time.monotonic(), clock.now()
    deadline = start + options.time_limit_s
    if initial is not None:
        # Warm start: keep the running placement unless a stage beats it. No cold stages (a cold
        # greedy or price plan a few $/h better in the top tier would move thousands of jobs).
        first, name = repair(P, initial, kernels), "warm-start"
    else:
        first, name = solve_greedy(P, options, kernels, deadline=deadline), "greedy"
    inc = Incumbent(P, first, relaxed_bound(P, kernels), on_progress)
    run = _Stages(name, time.monotonic() - wall_start)  # its seconds include the first bound
    work_by = deadline if small else deadline - FILL_RESERVE_OF_GREEDY * (clock.now() - start)
    full_lp: _BackgroundLp | LockstepLp | None = None
    try:
        full_lp = _improve(P, options, kernels, inc, run, initial is not None, small, start, work_by)
    except KeyboardInterrupt:
        log.warning("interrupted: returning the best plan so far")
        run.names.append("interrupted")
    if full_lp is not None:
        waited = time.monotonic()
        full_lp.collect(inc, None if "interrupted" in run.names else work_by)
        run.seconds["lp-join"] = round(time.monotonic() - waited, 3)
    if options.solver != "greedy" or initial is not None:
        run.run("fill", fill_stage, P, options, kernels, inc)
    best = inc.best
    best.bound = min(best.bound, inc.bound)
    best.backend = kernels.name
    if clock.now() > deadline and best.status == "optimal":
        best.status = "feasible"
    if "interrupted" in run.names:
        best.status = "interrupted"
    re_explain(P, kernels, best)
    best.stats = {**best.stats, "stages": run.names, "stage_seconds": run.seconds,
                  "seconds_solve": time.monotonic() - wall_start}
    if options.deterministic:
        best.stats["work_units"] = round(clock.now() - start, 6)
    best.record_fallbacks(clock.take_fallbacks())
    best.record_fallbacks(run.failed)
    return best


def _improve(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent, run: _Stages, warm: bool,
             small: bool, start: float, deadline: float) -> _BackgroundLp | LockstepLp | None:
    """The stages after the first plan, by solver and instance shape; the LP bound if started.

    ``start`` and ``deadline`` are on the solvers' clock (``placement.core.clock``)."""
    solver = options.solver
    if solver == "greedy":
        return None
    if warm:
        if small or solver == "exact":
            run.run("exact", exact_stage, P, options, inc, deadline)
        else:
            run.run("lns", lns_stage, P, options, inc, deadline)
        return None
    if _required_gang_left_out(P, inc.best) and candidate_count(P) <= TIGHT_MAX_CANDIDATES:
        # Tight capacity with required jobs: feasibility first, then the penalty search and the
        # exact engine hinted with its plan.
        cand = kept_candidates(P)
        run.run("construct", construct_stage, P, options, kernels, inc, cand, deadline)
        if not _required_gang_left_out(P, inc.best):
            lp_start = run.run("relaxation", relaxation_stage, P, options, kernels, inc, cand, deadline)
            large = len(cand.job) > TIGHT_LARGE_CANDIDATES
            share = (TIGHT_SEARCH_SHARE_SMALL if small else TIGHT_SEARCH_SHARE_LARGE if large
                     else TIGHT_SEARCH_SHARE)
            search_s = options.time_limit_s * share
            search_by = start + (search_s if small or large else min(search_s, TIGHT_SEARCH_MAX_S))
            if lp_start is not None:  # half the search from the LP's rounding, half from the best plan
                run.run("tight-search-lp", tight_search_stage, P, inc, cand,
                        (clock.now() + search_by) / 2, lp_start)
            run.run("tight-search", tight_search_stage, P, inc, cand, search_by)
            run.run("exact", exact_stage, P, options, inc, deadline,
                    engine="cpsat" if options.deterministic else TIGHT_ENGINE)
            return None
    if solver == "exact" or (solver == "auto" and small):
        run.run("exact", exact_stage, P, options, inc, deadline)
        return None
    # The LP bound takes one core for the whole run; the stages below share the other. In
    # deterministic mode the two threads run in lockstep by work (``solvers.lockstep_lp``).
    if options.deterministic:
        full_lp = LockstepLp(P, kernels, inc, deadline - clock.now(), initial_columns=LP_INITIAL_COLUMNS,
                             aggregate_width=_bucket_width(P))
        run.after_stage = lambda: full_lp.checkpoint(inc.best)
    else:
        full_lp = _BackgroundLp(P, kernels, inc, deadline)
    run.names.append("lp")
    construct_by = start + options.time_limit_s * (CONSTRUCT_SHARE if solver != "price" else 1.0)
    run.run("price", tiered_price_stage, P, full_lp.spare(options), kernels, inc, construct_by, deadline)
    if full_lp.latest is not None and solver != "price" and P.n_jobs >= LP_PRICE_MIN_JOBS:
        # Past the local search's share too: at 100k x 1,000 these plans gained more than LNS.
        run.run("lp-price", lp_price_stage, P, options, kernels, inc, full_lp.latest.site_price,
                full_lp.latest.pool_price, LP_PRICE_SCALES, deadline)
    run.run("ls", local_search_stage, P, kernels, inc, start + options.time_limit_s * LOCAL_SEARCH_UNTIL)
    if solver != "price":
        full_lp.attach(inc)  # LNS picks its neighbourhoods by the LP's shadow prices so far
        run.run("lns", lns_stage, P, full_lp.spare(options), inc, deadline)
    return full_lp


def tiered_price_stage(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent,
                         deadline: float, hard_deadline: float) -> None:
    """Place tiers from the highest, each by LP prices over the capacity the tiers above left.

    Strict tiers mean a tier never pays for the next one's opportunity cost, so each tier gets
    its own prices rather than sharing the whole problem's. At those prices both the greedy and
    the auction (``solvers.auction``) place the tier; the better plan is kept.
    """
    tiers = np.unique(P.job_tier)[::-1]
    gpus, mw = P.pool_gpus.astype(np.int64).copy(), P.site_cap_mw.astype(np.float64).copy()
    moves_left, usd_left = P.max_moves, P.max_migration_usd
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    for k, tier in enumerate(tiers):
        jobs = np.flatnonzero(P.job_tier == tier)
        sub = subproblem(P, jobs, gpus, mw, max_moves=moves_left, max_migration_usd=usd_left)
        sub_kernels = kernels_for(sub, kernels.name)
        share = (deadline - clock.now()) / (len(tiers) - k)
        # Past the construction share a tier still gets its plain greedy (fast): leaving it empty
        # would hand the next stages a plan that is worse everywhere below the top tier.
        plain = solve_greedy(sub, options, sub_kernels, deadline=hard_deadline)
        chosen = plain
        if share > 0.05 and clock.now() < deadline:
            lp = lp_bound(sub, sub_kernels, incumbent=plain, deadline=clock.now() + share * 0.8,
                          aggregate_width=_bucket_width(sub))
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


class _BackgroundLp:
    """The whole problem's LP bound (``solvers.lp``) in a thread, from the first plan to the deadline.

    HiGHS releases the GIL while it solves a master, so the bound uses one core while the other
    stages use the other; kernel calls hold the GIL, so the two threads' kernel calls never
    overlap. The LP's top-tier floor follows the incumbent as the other stages improve it.
    """

    class _Stop(Exception):
        """Raised in the LP's progress callback to end it early (Ctrl-C in the main thread)."""

    def __init__(self, P: Problem, kernels: Kernels, inc: Incumbent, deadline: float):
        self.P, self.latest, self.seen, self.failed = P, None, None, ""
        self.busy = True  # an LP is being solved (not just waiting for a better plan)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(P, kernels, inc, deadline), daemon=True,
                                       name="placement-lp")
        self.thread.start()

    def _run(self, P: Problem, kernels: Kernels, inc: Incumbent, deadline: float) -> None:
        """Solve the LP; once it is done, solve it again whenever the top tier's floor can rise
        (on small instances it ends before the construction improves the first plan)."""
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
                self._publish(lp_bound(P, kernels, incumbent=plan, deadline=deadline,
                                       latest_incumbent=lambda: inc.best, on_round=self._publish,
                                       initial_columns=LP_INITIAL_COLUMNS, aggregate_width=_bucket_width(P)))
                self.busy = False
        except self._Stop:
            pass
        except Exception as exc:  # the bound is an extra: a failure here must not lose the plan
            log.exception("background LP bound failed; keeping the bound found so far")
            self.failed = f"background LP failed, bound so far kept: {type(exc).__name__}: {exc}"[:500]

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
        """Give the incumbent the LP's best bound and duals so far; record why it stopped early."""
        lp = self.latest
        attach_lp(inc, lp, self.failed)
