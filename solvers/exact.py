"""Exact CP-SAT model over the compiled ``Problem`` arrays, solved lexicographically by tier.

Model (DESIGN.md §1), one variable per kept candidate (job, pool): training a bool, at most
one per job; inference units in [0, ub] with ``Σ_p x = units · y`` (whole or nothing), spread
``z[j,s] = [site s used]``, ``Σ_s z ≥ min_sites · y``, ``Σ_{p at s} x ≤ max_units_per_site``.
GPUs per pool; facility power per site in integer watts (unit power rounded *up*, caps *down*,
so every CP-SAT plan passes the float validator); migration: ``Σ moved ≤ max_moves`` and
``Σ units moved · $ ≤ budget`` (integer cents, costs up, budget down). Required: exactly one.

Objective: strict tiers. One CP-SAT solve per tier from the highest maximises that tier's net
$/h, then ``tier ≥ found`` is added and the next tier is solved, hinted with the last solution.
Coefficients are net $/h per unit rounded to 1/OBJ_SCALE; "optimal" is relative to those
rounded values (plans of one tier closer than ``units/OBJ_SCALE`` $/h count as tied).

Bound (``Solution.bound``, $/h): with I(X) the integer objective of plan X, tiers proven in
order contribute their optimum, the first unproven tier its CP-SAT bound, later tiers a
trivial bound (Σ units · max(0, best coefficient)); the sum bounds I of the lexicographic
optimum. Adding ``Σ units · 0.5 / OBJ_SCALE`` covers coefficient rounding, so the bound is
never below the float objective of that optimum (nor of the returned plan).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from ortools.sat.python import cp_model

from placement.kernels.backend import ReferenceKernels
from placement.kernels.reference import expand_candidates, unit_terms
from placement.model.portfolio import SolveOptions
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Reason, Solution
from placement.solvers.reasons import explain_unplaced

OBJ_SCALE = 1_000_000  # integer objective units per $/h (1 micro-dollar per hour)
WATTS_PER_MW = 1_000_000
CENTS_PER_USD = 100
_ROUND_REL = 1e-14  # float noise (10200.000000000002 W) must not cost a watt; << MW_TOLERANCE
# Up to this many candidate variables CP-SAT runs interleaved search: deterministic for any
# worker count (same seed, same plan, ties included) but 2-8x slower to prove at 450-860
# candidates (measured). Larger models, whose runs end at the time limit anyway, get the
# parallel portfolio and no presolve probing (at 59k candidates it outlasted a 5 s limit).
LARGE_MODEL_CANDIDATES = 5_000
Progress = Callable[[float, float], None]
_Sum = cp_model.LinearExpr


def _to_int(a: np.ndarray | float, up: bool) -> np.ndarray:
    """Scaled floats to int64, rounded up (loads, costs) or down (capacities, budgets)."""
    a = np.minimum(np.asarray(a, np.float64), UNLIMITED)
    return (np.ceil(a * (1 - _ROUND_REL)) if up else np.floor(a * (1 + _ROUND_REL))).astype(np.int64)


@dataclass(frozen=True)
class Candidates:
    """Eligible (job, pool) pairs in job-then-pool order with per-unit integer data."""

    job: np.ndarray
    pool: np.ndarray
    site: np.ndarray
    net: np.ndarray  # $/h per unit: value - energy - carbon - pair - migration
    coef: np.ndarray  # net * OBJ_SCALE, rounded
    watts: np.ndarray  # facility W per unit, rounded up
    gpu_cap: np.ndarray  # units the empty pool holds by GPUs
    ub: np.ndarray  # units the empty pool holds by GPUs, power, share and job size

    def take(self, mask: np.ndarray) -> Candidates:
        return Candidates(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def eligible_candidates(problem: Problem) -> Candidates:
    """Class candidates minus per-job exclusions (gang, inventory, forbidden, pinned)."""
    P = problem
    _, j, p, speed = expand_candidates(P, np.flatnonzero(P.job_filter == 0).astype(np.int64))
    t = unit_terms(P, j, p, speed)
    s, g = P.pool_site[p], P.job_gpus_unit[j]
    ok = (~t["forbidden"] & (g <= P.pool_gpus[p]) & ((P.job_kind[j] == 1) | (g <= P.site_max_gang[s]))
          & (~P.job_pinned[j] | (p == P.job_current_pool[j])))
    net = t["value"] - t["energy"] - t["carbon"] - t["pair"] - t["migration"]
    j, p, s, g, net = j[ok], p[ok], s[ok], g[ok], net[ok]
    watts = _to_int(t["mw"][ok] * WATTS_PER_MW, up=True)
    cap_w = _to_int(P.site_cap_mw * WATTS_PER_MW, up=False)[s]
    gpu_cap = P.pool_gpus[p] // g
    pow_cap = np.where(watts > 0, cap_w // np.maximum(watts, 1), UNLIMITED)
    ub = np.minimum.reduce([P.job_units[j], P.job_max_units_per_site[j], gpu_cap, pow_cap])
    return Candidates(j, p, s, net, np.rint(net * OBJ_SCALE).astype(np.int64), watts, gpu_cap, ub)


def _groups(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(key, candidate indices) for each distinct key, keys ascending, indices in order."""
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    for idx in np.split(order, cuts) if len(keys) else []:
        yield int(keys[idx[0]]), idx


class Stage(NamedTuple):
    """One lexicographic objective: a tier's net value, or the count of placed required jobs."""

    label: str
    tier: int | None
    expr: cp_model.LinearExprT


@dataclass
class ExactModel:
    """The CP-SAT model, its candidate variables and the stage objectives in solve order."""

    model: cp_model.CpModel
    cand: Candidates  # kept candidates (ub >= 1), one variable each
    x: list[cp_model.IntVar]
    stages: list[Stage]
    total: cp_model.LinearExprT  # Σ coef · x over all tiers (progress reports)
    trivial: dict[int, int]  # per tier: Σ units · max(0, best coef), a bound on any plan
    n_units: int  # Σ units of jobs with a candidate: the coefficient-rounding slack count


def build_model(problem: Problem, required_hard: bool = True, eligible: Candidates | None = None) -> ExactModel:
    """Build the model. ``required_hard=False`` makes required jobs optional and adds a first
    stage that maximises how many of them are placed (used to explain an infeasible input)."""
    P = problem
    c = eligible if eligible is not None else eligible_candidates(P)
    c = c.take(c.ub >= 1)
    m = cp_model.CpModel()
    train = P.job_kind[c.job] == 0
    x = [m.new_bool_var(f"x{j}_{p}") if t else m.new_int_var(0, u, f"x{j}_{p}")
         for j, p, u, t in zip(c.job.tolist(), c.pool.tolist(), c.ub.tolist(), train.tolist())]
    g = P.job_gpus_unit[c.job]

    def lsum(idx: np.ndarray, coef: np.ndarray | None = None) -> cp_model.LinearExprT:
        xs = [x[i] for i in idx]
        return _Sum.sum(xs) if coef is None else _Sum.weighted_sum(xs, coef.tolist())

    # One placement per job: training picks one pool, a service places all its units or none.
    placed: dict[int, cp_model.LinearExprT] = {}
    for j, idx in _groups(c.job):
        hard = required_hard and bool(P.job_required[j])
        if P.job_kind[j] == 0:
            (m.add_exactly_one if hard else m.add_at_most_one)([x[i] for i in idx])
            placed[j] = lsum(idx)
        else:
            placed[j] = y = m.new_bool_var(f"y{j}")
            m.add(lsum(idx) == int(P.job_units[j]) * y)
            if hard:
                m.add(y == 1)
    # Spread: z[j,s] is exactly "site s used" (z <= Σx stops empty sites from counting).
    sites_used: dict[int, list[cp_model.IntVar]] = {}
    inf = np.flatnonzero(~train)
    for key, idx in _groups(c.job[inf] * P.n_sites + c.site[inf]):
        idx, j = inf[idx], key // P.n_sites
        cap = int(P.job_max_units_per_site[j])
        if P.job_min_sites[j] > 1:
            z = m.new_bool_var(f"z{j}_{key % P.n_sites}")
            m.add(lsum(idx) <= min(cap, int(c.ub[idx].sum())) * z)
            m.add(z <= lsum(idx))
            sites_used.setdefault(j, []).append(z)
        elif c.ub[idx].sum() > cap:
            m.add(lsum(idx) <= cap)
    for j, zs in sites_used.items():
        m.add(_Sum.sum(zs) >= int(P.job_min_sites[j]) * placed[j])
    # Capacities; constraints that cannot bind (every candidate at its bound fits) are skipped.
    for p, idx in _groups(c.pool):
        if (c.ub[idx] * g[idx]).sum() > P.pool_gpus[p]:
            m.add(lsum(idx, g[idx]) <= int(P.pool_gpus[p]))
    cap_w = _to_int(P.site_cap_mw * WATTS_PER_MW, up=False)
    for s, idx in _groups(c.site):
        if (c.ub[idx] * c.watts[idx]).sum() > cap_w[s]:
            m.add(lsum(idx, c.watts[idx]) <= int(cap_w[s]))
    _add_migration(m, P, c, lsum)

    # Stage objectives: tiers from the highest; the relaxed model first maximises required jobs.
    stages: list[Stage] = []
    required = [placed[j] for j in placed if P.job_required[j]]
    if not required_hard and required:
        stages.append(Stage("required", None, _Sum.sum(required)))
    tiers = P.job_tier[c.job]
    for k in sorted(set(tiers.tolist()), reverse=True):
        idx = np.flatnonzero(tiers == k)
        stages.append(Stage(f"tier {k}", k, lsum(idx, c.coef[idx])))
    best = np.zeros(P.n_jobs, np.int64)  # max(0, best coefficient) per job
    np.maximum.at(best, c.job, c.coef)
    trivial = {k: int((P.job_units * best)[P.job_tier == k].sum()) for k in set(tiers.tolist())}
    n_units = int(P.job_units[np.unique(c.job)].sum())
    return ExactModel(m, c, x, stages, lsum(np.arange(len(x)), c.coef), trivial, n_units)


def _add_migration(m: cp_model.CpModel, P: Problem, c: Candidates, lsum: Callable) -> None:
    """Move count and migration dollars, only for jobs that run somewhere now."""
    cur = P.job_current_pool[c.job]
    away = np.flatnonzero((cur >= 0) & (c.pool != cur))
    if P.max_moves < UNLIMITED and len(away):
        moved: list[cp_model.LinearExprT] = []
        for j, idx in _groups(c.job[away]):
            if P.job_kind[j] == 0:  # at most one x is 1: the sum is the moved flag
                moved.append(lsum(away[idx]))
            else:
                moved.append(flag := m.new_bool_var(f"moved{j}"))
                m.add(lsum(away[idx]) <= int(P.job_units[j]) * flag)
        if len(moved) > P.max_moves:
            m.add(_Sum.sum(moved) <= int(P.max_moves))
    if np.isfinite(P.max_migration_usd) and len(away):
        cents = _to_int(P.job_migration_usd[c.job[away]] * CENTS_PER_USD, up=True)
        budget = int(_to_int(P.max_migration_usd * CENTS_PER_USD, up=False))
        if (cents * c.ub[away]).sum() > budget:
            m.add(lsum(away, cents) <= budget)


class _Progress(cp_model.CpSolverSolutionCallback):
    """Reports (total objective, bound) in $/h on each improving solution of one stage."""

    def __init__(self, fn: Progress, total: cp_model.LinearExprT, bound: Callable[[float], int], slack: float):
        super().__init__()
        self._fn, self._total, self._bound, self._slack = fn, total, bound, slack

    def on_solution_callback(self) -> None:  # the stage bound is never below its incumbent
        bound = self._bound(max(self.best_objective_bound, self.objective_value))
        self._fn(self.value(self._total) / OBJ_SCALE, bound / OBJ_SCALE + self._slack)


@dataclass
class _Run:
    values: np.ndarray | None = None  # units per kept candidate; None: no solution found
    records: list[dict] = field(default_factory=list)
    infeasible: bool = False
    proven: set = field(default_factory=set)  # stage tiers (None: required) proven optimal
    bound_int: int = 0  # bound on I(lexicographic optimum), see the module docstring


def _solver(options: SolveOptions, limit_s: float, n_vars: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(limit_s, 0.001)
    solver.parameters.random_seed = options.seed
    solver.parameters.num_workers = options.threads or os.cpu_count() or 1
    solver.parameters.interleave_search = n_vars <= LARGE_MODEL_CANDIDATES
    solver.parameters.cp_model_probing_level = 2 if n_vars <= LARGE_MODEL_CANDIDATES else 0  # 2: default
    return solver


def _run(em: ExactModel, options: SolveOptions, deadline: float, hint_units: list[int] | None,
         on_progress: Progress | None, slack: float) -> _Run:
    """Solve the stages in order, each under an even share of the time left (unused time carries)."""
    m, run = em.model, _Run()
    if not em.stages:  # no candidate at all: the empty plan is the (trivially optimal) answer
        run.values = np.zeros(len(em.x), np.int64)
    x_index = np.array([v.index for v in em.x], np.int64)
    full = np.zeros(0, np.int64)
    base, fixed = 0, None  # Σ optimum of tiers proven so far; the bound once a stage is unproven
    for i, st in enumerate(em.stages):
        own = em.trivial[st.tier] if st.tier is not None else 0
        later = sum(em.trivial[s.tier] for s in em.stages[i + 1:] if s.tier is not None)

        def bound_with(stage_bound: float, own: int = own, later: int = later, tier: int | None = st.tier,
                       base: int = base, fixed: int | None = fixed) -> int:
            if tier is not None and np.isfinite(stage_bound):
                own = min(own, int(np.ceil(stage_bound - 1e-6)))
            return base + own + later if fixed is None else fixed

        left = deadline - time.monotonic()
        if left <= 0:  # out of time: this and later tiers keep their trivial bound
            fixed = bound_with(np.inf)
            break
        m.maximize(st.expr)
        m.clear_hints()
        if run.values is not None:  # the previous stage's full solution satisfies every constraint
            m.proto.solution_hint.vars.extend(range(len(full)))
            m.proto.solution_hint.values.extend(full.tolist())
        elif hint_units is not None:
            for v, u in zip(em.x, hint_units):
                m.add_hint(v, u)
        solver = _solver(options, left / (len(em.stages) - i), len(em.x))
        cb = (_Progress(on_progress, em.total, bound_with, slack)
              if on_progress is not None and st.tier is not None else None)
        status = solver.solve(m, cb)
        rec = {"stage": st.label, "tier": st.tier, "status": solver.status_name(status),
               "wall_time": solver.wall_time}
        run.records.append(rec)
        if status == cp_model.INFEASIBLE:  # only required jobs can make the model infeasible
            run.infeasible = True
            return run
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            # Nothing found (often: presolve used the time). CP-SAT then reports a best bound
            # of 0, which is no bound at all: use the trivial one, keep the last plan.
            fixed = bound_with(np.inf)
            break
        full = np.array(solver.response_proto.solution, np.int64)
        run.values = full[x_index]
        found = round(solver.objective_value)
        rec["objective"] = found / OBJ_SCALE if st.tier is not None else found
        m.add(st.expr >= found)  # later tiers never trade this one away
        if status == cp_model.OPTIMAL:
            run.proven.add(st.tier)
            base += found if st.tier is not None and fixed is None else 0
        else:
            fixed = bound_with(max(solver.best_objective_bound, found))
    run.bound_int = base if fixed is None else fixed
    return run


def _hint_units(c: Candidates, hint: Solution) -> list[int]:
    """Units the hint puts on each kept candidate (rows the model does not have are dropped)."""
    want = {(int(j), int(p)): int(u) for j, p, u in zip(hint.row_job, hint.row_pool, hint.row_units)}
    return [min(want.get((j, p), 0), u) for j, p, u in zip(c.job.tolist(), c.pool.tolist(), c.ub.tolist())]


def solve_exact(problem: Problem, options: SolveOptions, hint: Solution | None = None,
                on_progress: Progress | None = None) -> Solution:
    """Solve ``problem`` exactly under ``options.time_limit_s`` (see the module docstring).

    Status: ``optimal`` (every stage proven), ``feasible``, ``time_limit`` (no plan: all unplaced)
    or ``infeasible`` (required jobs cannot all be placed; the plan places as many as possible).
    ``on_progress(objective, bound)`` gets $/h on each improving solution.
    """
    P = problem
    deadline = time.monotonic() + options.time_limit_s
    eligible = eligible_candidates(P)
    fits = np.bincount(eligible.job[eligible.ub >= 1], minlength=P.n_jobs) > 0
    hard = not bool((P.job_required & ~fits).any())  # a required job with no fitting pool: relax now
    em = build_model(P, hard, eligible)
    slack = em.n_units * 0.5 / OBJ_SCALE
    run = _run(em, options, deadline, _hint_units(em.cand, hint) if hint else None, on_progress, slack)
    if run.infeasible:  # required jobs cannot all be placed together: place as many as possible
        hard, first = False, run.records
        em = build_model(P, False, eligible)
        run = _run(em, options, deadline, None, on_progress, slack)
        run.records = first + run.records
    c, found = em.cand, run.values is not None
    values = run.values if run.values is not None else np.zeros(len(c.job), np.int64)
    placed: dict[int, dict[int, int]] = {}
    for i in np.flatnonzero(values > 0):
        placed.setdefault(int(c.job[i]), {})[int(c.pool[i])] = int(values[i])
    status = ("time_limit" if not found else "infeasible" if not hard
              else "optimal" if len(run.proven) == len(em.stages) else "feasible")
    # Infeasible input: no optimum to bound, so bound every plan (greedy's in the pipeline too).
    bound = (run.bound_int if hard else sum(em.trivial.values())) / OBJ_SCALE + slack
    stats = {"stages": run.records, "variables": len(em.model.proto.variables),
             "constraints": len(em.model.proto.constraints), "objective": float(values @ c.net)}
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
    cur, at = P.job_current_pool, kept.pool == P.job_current_pool[kept.job]
    stay = np.bincount(kept.job[at], weights=kept.ub[at], minlength=n)  # units its pool holds
    away_units = np.bincount(kept.job, weights=np.where((cur[kept.job] >= 0) & ~at, values, 0), minlength=n)
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
    cap_w = _to_int(P.site_cap_mw * WATTS_PER_MW, up=False)[s]
    by_gpu = np.minimum(gpus.astype(np.int64), P.job_units[j])
    by_share = np.minimum(by_gpu, P.job_max_units_per_site[j])
    by_power = np.minimum(by_share, np.where(min_w > 0, cap_w // np.maximum(min_w, 1), UNLIMITED))

    def short(cap: np.ndarray, spread: bool) -> np.ndarray:
        total = np.bincount(j, weights=cap, minlength=n)
        sites = np.bincount(j, weights=cap > 0, minlength=n)
        return (total < P.job_units) | (spread & (sites < P.job_min_sites))

    return short(by_gpu, False), short(by_share, True), short(by_power, True)
