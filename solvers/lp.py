"""LP relaxation by column generation: HiGHS solves the master, the kernels price columns.

Never expanding all (job, pool) pairs is what lets this run at 100k jobs × 1,000 sites: the
master LP starts from each job's few best pools (and the incumbent's), HiGHS returns duals for
site power (λ, $/MWh), pool GPUs (μ, $/GPU-h) and each job's convexity row (π), and one kernel
pass at (λ, μ) finds each job's best column; a column enters when its reduced score beats π.

Bound: every round's duals give a Lagrangian value L(λ, μ) computed by the kernels, a valid
upper bound whatever the LP's state (``solvers.lagrangian``); once no column prices out, the
LP optimum itself (plus a small tolerance) is the bound and λ, μ are exact LP duals: the
marginal value of one more MW at each site and one more GPU in each pool. The master relaxes
the inference spread (min_sites) and keeps per-site share caps only as column bounds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from placement.core import clock
from placement.core.clock import LP_ITERATIONS_SQRT_ROWS_PER_S
from placement.kernels import Kernels, kernels_for
from placement.core.objective import candidate_speed, net_value, unit_moves, unit_terms
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Solution
from placement.solvers.quiet import quiet_stdout
from placement.solvers.aggregate import aggregate
from placement.solvers.lagrangian import TierFloor, evaluate_dual, plan_floor

log = logging.getLogger(__name__)

INITIAL_COLUMNS_PER_JOB = 8
PRICING_COLUMNS_PER_JOB = 4
# Columns kept in the master per job after pruning (see _Master._prune).
MAX_LIVE_COLUMNS_PER_JOB = 8
# Relative LP tolerance added to a converged LP objective before it is reported as a bound.
LP_BOUND_SLACK = 1e-7
# Dual smoothing: weight of the best duals so far in the extra point priced each round.
SMOOTHING = 0.5


@dataclass
class LpResult:
    bound: float
    site_price: np.ndarray  # $/MWh
    pool_price: np.ndarray  # $/GPU-h
    converged: bool  # no column priced out: λ, μ are exact LP duals
    rounds: int
    columns: int
    lp_objective: float
    stopped: str = ""  # why column generation ended early, when it did (a fallback worth reporting)


class _Master:
    """The restricted master LP: rows for jobs, pools, sites and the migration budget."""

    def __init__(self, P: Problem, jobs: np.ndarray, tier_floor: TierFloor | None):
        import highspy  # noqa: PLC0415

        self.P, self.hs = P, highspy
        with quiet_stdout():
            self.h = highspy.Highs()
        self.h.setOptionValue("output_flag", False)
        inf = highspy.kHighsInf
        self.job_row = np.full(P.n_jobs, -1, np.int64)
        self.job_row[jobs] = np.arange(len(jobs))
        self.pool_row0 = len(jobs)
        self.site_row0 = self.pool_row0 + P.n_pools
        self.money_row = self.site_row0 + P.n_sites
        self.moves_row = self.money_row + 1
        self.tier_row = self.moves_row + 1
        self.floor_tier = tier_floor.tier if tier_floor else -1
        units = P.job_units[jobs].astype(np.float64)
        lower = np.concatenate([np.where(P.job_required[jobs], units, -inf), np.full(P.n_pools + P.n_sites + 2, -inf)])

        upper = np.concatenate([units, P.pool_gpus.astype(np.float64), P.site_cap_mw,
                                [P.max_migration_usd if np.isfinite(P.max_migration_usd) else inf,
                                 float(P.max_moves) if P.max_moves < UNLIMITED else inf, inf]])
        # Tier floor: the top tier earns at least what a known plan gives it (see lp_bound).
        lower = np.append(lower, tier_floor.value if tier_floor else -inf)
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = 0, len(lower)
        lp.row_lower_, lp.row_upper_ = lower, upper
        lp.sense_ = highspy.ObjSense.kMaximize
        self.h.passModel(lp)
        self.keys: set[int] = set()
        self.col_key = np.zeros(0, np.int64)  # key of each master column, in HiGHS order
        self.n_cols = 0  # columns ever added
        self.max_live = MAX_LIVE_COLUMNS_PER_JOB * max(len(jobs), 1)

    def add(self, j: np.ndarray, p: np.ndarray) -> int:
        """Add columns (j, p) not yet present; returns how many were added."""
        P = self.P
        key = j * P.n_pools + p
        new = np.array([k not in self.keys for k in key.tolist()], bool)
        _, first = np.unique(key, return_index=True)
        once = np.zeros(len(key), bool)
        once[first] = True
        j, p, key = j[new & once], p[new & once], key[new & once]
        if len(j) == 0:
            return 0
        self.keys.update(key.tolist())
        self.col_key = np.concatenate([self.col_key, key])
        t = unit_terms(P, j, p, candidate_speed(P, j, p))
        net = net_value(t)
        s, g = P.pool_site[p], P.job_gpus_unit[j]
        mw = t["mw"]
        cap_units = np.floor(P.site_cap_mw[s] / np.maximum(mw, 1e-12) + 1e-9)
        ub = np.minimum.reduce([P.job_units[j], P.job_max_units_per_site[j], P.pool_gpus[p] // g,
                                np.where(mw > 0, cap_units, P.job_units[j])]).astype(np.float64)
        away = unit_moves(P, j, p)
        n = len(j)
        rows = [self.job_row[j], self.pool_row0 + p, self.site_row0 + s]
        vals = [np.ones(n), g.astype(np.float64), mw]
        if np.any(away):
            rows += [np.where(away, self.money_row, -1), np.where(away, self.moves_row, -1)]
            vals += [P.job_migration_usd[j], 1.0 / P.job_units[j]]
        floor = P.job_tier[j] == self.floor_tier
        if np.any(floor):
            rows.append(np.where(floor, self.tier_row, -1))
            vals.append(net)
        index = np.stack(rows, axis=1)
        value = np.stack(vals, axis=1)
        keep = index >= 0
        start = np.concatenate([[0], np.cumsum(keep.sum(axis=1))[:-1]]).astype(np.int32)
        self.h.addCols(n, net, np.zeros(n), ub, int(keep.sum()), start,
                       index[keep].astype(np.int32), value[keep])
        self.n_cols += n
        return n

    def _prune(self, value: np.ndarray, reduced: np.ndarray) -> None:
        """Drop the most negative-reduced-cost unused columns so each re-solve stays small.

        A dropped column re-enters only if pricing finds it profitable again, so the master's
        optimum is unchanged; it just stops paying for columns the duals have ruled out.
        """
        excess = len(self.col_key) - self.max_live
        if excess <= 0:
            return
        unused = np.flatnonzero((value <= 1e-12) & (reduced < 0))
        drop = unused[np.argsort(reduced[unused])[:excess]]
        if len(drop) == 0:
            return
        self.h.deleteCols(len(drop), np.sort(drop).astype(np.int32))
        keep = np.ones(len(self.col_key), bool)
        keep[drop] = False
        self.keys.difference_update(self.col_key[drop].tolist())
        self.col_key = self.col_key[keep]

    def raise_floor(self, floor: TierFloor, new: TierFloor | None, job: np.ndarray, pool: np.ndarray) -> TierFloor:
        """Raise the top tier's floor to ``new`` if higher, adding that plan's columns (job, pool) first."""
        if new is None or new.value <= floor.value:
            return floor
        self.add(job, pool)
        self.h.changeRowBounds(self.tier_row, new.value, self.hs.kHighsInf)
        return new

    def _iterations_per_s(self) -> float:
        """Simplex iterations a second on the reference machine: an iteration costs about the
        square root of the master's row count (measured 44k/s at 1.3k rows, 14k/s at 10k)."""
        return LP_ITERATIONS_SQRT_ROWS_PER_S / max(self.h.getNumRow(), 1) ** 0.5

    def solve(self, deadline: float | None) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float]:
        """LP objective and duals: per job row (π), pool (μ), site (λ), tier floor (ν)."""
        if deadline is not None:
            # HiGHS stops itself at the deadline (a master solve can take a minute at 100k jobs).
            # Its time limit counts the instance's whole run time, earlier solves included.
            left = clock.left(deadline)
            self.h.setOptionValue("time_limit", self.h.getRunTime() + max(clock.wall_limit_s(left), 0.01))
            if clock.deterministic():  # an iteration limit instead: the same LP on any machine
                self.h.setOptionValue("simplex_iteration_limit", max(int(left * self._iterations_per_s()), 1))
        self.h.run()
        clock.tick(max(self.h.getInfo().simplex_iteration_count, 0) / self._iterations_per_s())
        status = self.h.getModelStatus()
        clock.check_wall_net("LP master", status == self.hs.HighsModelStatus.kTimeLimit)
        if status != self.hs.HighsModelStatus.kOptimal:
            raise RuntimeError(f"LP master not optimal: {self.h.modelStatusToString(status)}")
        objective = float(self.h.getInfo().objective_function_value)
        sol = self.h.getSolution()
        dual = np.asarray(sol.row_dual)
        self._prune(np.asarray(sol.col_value), np.asarray(sol.col_dual))
        pi = dual[: self.pool_row0]
        mu = np.maximum(dual[self.pool_row0:self.site_row0], 0.0)
        lam = np.maximum(dual[self.site_row0:self.money_row], 0.0)
        # HiGHS signs duals for a maximisation so a binding >= row has a nonpositive dual.
        return objective, pi, mu, lam, max(0.0, -float(dual[self.tier_row]))


def _price(P: Problem, kernels: Kernels, jobs: np.ndarray, lam: np.ndarray, mu: np.ndarray,
           floor: TierFloor | None, nu: float) -> tuple[np.ndarray, np.ndarray]:
    """Best few columns per job by reduced score, top-tier jobs scored with the floor's ν."""
    pools, scores = kernels.topk(jobs, P.pool_gpus, P.site_cap_mw, lam, mu, PRICING_COLUMNS_PER_JOB)
    if floor is not None and nu > 0:
        top = P.job_tier[jobs] == floor.tier
        scale = 1.0 + nu
        p_top, s_top = kernels.topk(jobs[top], P.pool_gpus, P.site_cap_mw, lam / scale, mu / scale,
                                    PRICING_COLUMNS_PER_JOB)
        pools[top], scores[top] = p_top, s_top * scale
    return pools, scores


def lp_bound(problem: Problem, kernels: Kernels, *, incumbent: Solution | None = None,
             deadline: float | None = None, max_rounds: int = 50,
             latest_incumbent: Callable[[], Solution] | None = None,
             on_round: Callable[[LpResult], None] | None = None,
             initial_columns: int = INITIAL_COLUMNS_PER_JOB, aggregate_width: float | None = None) -> LpResult:
    """Column-generation LP bound and duals, stopping at ``deadline`` with the best valid bound.

    With an incumbent, the master also asks the top tier to earn at least the incumbent's top
    tier: the lexicographically best plan does (it is never worse in the top tier than any
    feasible plan), so the bound stays valid for it and is much tighter when tiers compete.
    ``latest_incumbent`` (called once a round, e.g. from another thread's search) raises that
    floor when a plan with a better top tier turns up. ``on_round`` receives the best result so
    far after every round. The Lagrangian values computed from the duals stay valid on their own.
    ``initial_columns``: each job's best columns at zero prices the master starts from (fewer
    make the first master solve cheaper and the bound come sooner; the duals differ).

    ``aggregate_width``: solve the master over buckets of interchangeable jobs
    (``solvers.aggregate``) with value bands this wide; far fewer rows at 100k jobs. The bucket
    LP is a relaxation of the LP, so its converged value and every Lagrangian value (always
    computed over the original jobs) stay valid bounds.

    Dual smoothing (Wentges): each round also prices and evaluates the point between the best
    duals so far and the master's, which damps the master's oscillating duals and cuts rounds.
    """
    P = problem
    jobs = np.flatnonzero(P.job_filter == 0).astype(np.int64)
    zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
    floor = plan_floor(P, incumbent)
    # The master and its pricing run on the bucket problem when aggregating; every bound is
    # still evaluated on the original jobs.
    buckets = aggregate(P, aggregate_width) if aggregate_width else None
    MP = buckets.problem if buckets else P
    MK = kernels_for(MP, kernels.name) if buckets else kernels
    mjobs = np.flatnonzero(MP.job_filter == 0).astype(np.int64)

    def columns(plan: Solution) -> tuple[np.ndarray, np.ndarray]:
        j = plan.row_job.astype(np.int64)
        return (buckets.of_job[j] if buckets else j), plan.row_pool.astype(np.int64)

    master = _Master(MP, mjobs, floor)
    pools, _ = MK.topk(mjobs, MP.pool_gpus, MP.site_cap_mw, zero_s, zero_p, initial_columns)
    owner = np.repeat(mjobs, pools.shape[1])
    flat = pools.reshape(-1)
    master.add(owner[flat >= 0], flat[flat >= 0])
    if incumbent is not None and len(incumbent.row_job):
        master.add(*columns(incumbent))
    best = LpResult(np.inf, zero_s.copy(), zero_p.copy(), False, 0, 0, np.nan)
    centre: tuple[np.ndarray, np.ndarray, float] | None = None  # duals of the best Lagrangian value
    rnd = 0
    for rnd in range(1, max_rounds + 1):
        if floor is not None and latest_incumbent is not None:
            plan = latest_incumbent()
            floor = master.raise_floor(floor, plan_floor(P, plan), *columns(plan))
        try:
            objective, pi, mu, lam, nu = master.solve(deadline)
        except RuntimeError as exc:  # e.g. a required job with no column yet: the Lagrangian bound still holds
            best.stopped = f"column generation stopped after {rnd} rounds, Lagrangian bound kept: {exc}"
            log.warning("%s", best.stopped)
            break
        points = [(lam, mu, nu)]
        if centre is not None:
            points.append(tuple(SMOOTHING * c + (1 - SMOOTHING) * x for c, x in zip(centre, points[0])))
        for i, (lam_i, mu_i, nu_i) in enumerate(points):
            value = evaluate_dual(P, kernels, jobs, lam_i, mu_i, replace(floor, price=nu_i) if floor else None)
            if value < best.bound:
                best = LpResult(value, lam_i, mu_i, False, rnd, master.n_cols, objective)
                centre = (lam_i, mu_i, nu_i)
            if i:  # the smoothed point's columns: each job's best two with a positive reduced score
                p_s, s_s = _price(MP, MK, mjobs, lam_i, mu_i, floor, nu_i)
                take = (p_s >= 0) & (s_s > 0) & (np.arange(p_s.shape[1]) < 2)
                master.add(np.broadcast_to(mjobs[:, None], p_s.shape)[take], p_s[take])
        pools, scores = _price(MP, MK, mjobs, lam, mu, floor, nu)
        prices_out = (pools >= 0) & (scores > (pi + 1e-9 * np.maximum(1.0, np.abs(pi)))[:, None])
        pool = pools[prices_out]
        owner = np.broadcast_to(mjobs[:, None], pools.shape)[prices_out]
        if not np.any(prices_out):
            # Converged: the LP optimum is the relaxation's value and λ, μ are exact duals.
            lp_value = objective + LP_BOUND_SLACK * max(1.0, abs(objective))
            if lp_value < best.bound:
                best = LpResult(lp_value, lam, mu, True, rnd, master.n_cols, objective)
            else:
                best.converged = True
            break
        # Pricing ignores the migration-budget duals, so a priced-out column may already be in
        # the master; then nothing can be added and the Lagrangian bound is what we have.
        if master.add(owner, pool) == 0:
            break
        if on_round is not None:
            on_round(replace(best, rounds=rnd, columns=master.n_cols))
        if deadline is not None and clock.now() > deadline:
            break
    best.rounds, best.columns = rnd, master.n_cols
    return best
