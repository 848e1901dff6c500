"""The auction: segmented acceptance, validated plans, valid bounds, strict tiers, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement.kernels import kernels_for
from placement.solvers import pipeline
from placement.solvers.auction import segmented_accept, solve_auction
from placement.solvers.stages import Incumbent

from placement import solve, validate_plan
from placement.core.problem import compile_problem
from placement.core.solution import Reason, Solution, tier_objectives
from placement.model.portfolio import SolveOptions
from placement.plan import build_plan
from tests.strategies import instances, random_instance, tier_temptation


def _auction_plan(inst, options: SolveOptions, backend: str = "reference"):
    problem = compile_problem(inst.portfolio, inst.jobs, inst.pairs, options)
    result = solve_auction(problem, options, kernels_for(problem, backend))
    return problem, result


def _violations(inst, problem, solution, options):
    plan = build_plan(problem, solution, seconds=0.0, seed=0)
    # A required job nobody can place makes the input infeasible; that is not the solver's fault.
    return [v for v in validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs, options)
            if v.kind != "required"]


def _loop_accept(seg, key, size, capacity, tol):
    """The spec of ``segmented_accept``: per segment, densest first, a running total against the cap."""
    out = np.zeros(len(seg), bool)
    for s in np.unique(seg):
        members = sorted(np.flatnonzero(seg == s), key=lambda i: (-key[i], i))
        total = 0.0
        for i in members:
            total += size[i]
            out[i] = total <= capacity[s] + tol
    return out


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.integers(0, 2**31 - 1), st.integers(0, 60), st.integers(1, 6))
def test_segmented_accept_matches_a_per_segment_loop(seed: int, n: int, n_seg: int) -> None:
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, n_seg, n)
    key = rng.choice([0.5, 1.0, 2.0, np.inf], n) if seed % 2 else rng.normal(size=n)  # ties and inf
    size = rng.integers(1, 5, n).astype(np.float64)
    capacity = rng.integers(0, 12, n_seg).astype(np.float64)
    got = segmented_accept(np, seg, key, size, capacity, 1e-9)
    assert np.array_equal(got, _loop_accept(seg, key, size, capacity, 1e-9))


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_sites=4, max_jobs=14, with_required=True))
def test_auction_plans_validate_and_stay_under_their_bound(inst) -> None:
    """Every plan passes the validator, lists every job once, and its bound is at least its value."""
    options = SolveOptions(backend="reference")
    problem, result = _auction_plan(inst, options)
    sol = result.solution
    assert _violations(inst, problem, sol, options) == []
    assert len(np.unique(sol.row_job)) == int(sol.placed.sum())
    assert result.bound >= tier_objectives(problem, sol).sum() - 1e-6
    assert np.all(result.site_price >= 0) and np.all(result.pool_price >= 0)


@pytest.mark.parametrize("seed", range(6))
def test_migration_budget_holds(seed: int) -> None:
    """With a budget of one move, jobs running elsewhere are left to the budget-aware greedy."""
    inst = random_instance(seed, 3, 14)
    options = SolveOptions(backend="reference", max_moves=1, max_migration_usd=200.0)
    problem, result = _auction_plan(inst, options)
    assert _violations(inst, problem, result.solution, options) == []


@pytest.mark.parametrize("seed", range(8))
def test_bound_never_below_the_proven_optimum(seed: int) -> None:
    """The auction's Lagrangian bound is at least CP-SAT's proven optimum; its plan at most that."""
    inst = random_instance(seed, 3, 10)
    options = SolveOptions(solver="exact", backend="reference", time_limit_s=5.0)
    exact = solve(inst.portfolio, inst.jobs, inst.pairs, options)
    assert exact.summary["status"] == "optimal"  # 3 sites x 10 jobs: proven in milliseconds
    problem, result = _auction_plan(inst, options)
    assert result.bound >= exact.objective - 1e-6
    assert tier_objectives(problem, result.solution).sum() <= result.bound + 1e-6


def test_tiers_stay_strict_in_the_tiered_construction(monkeypatch) -> None:
    """Run tier by tier, the auction keeps a cheap high-tier job's power from denser low-tier jobs."""
    portfolio, jobs = tier_temptation()
    problem = compile_problem(portfolio, jobs, None)
    kernels = kernels_for(problem, "reference")
    nothing = Solution(*(np.zeros(0, np.int64),) * 3, np.full(problem.n_jobs, Reason.OUT_VALUED, np.int8), "none")

    def empty_greedy(sub, *args, **kwargs) -> Solution:  # leave the auction as the only plan
        return Solution(*(np.zeros(0, np.int64),) * 3, np.full(sub.n_jobs, Reason.OUT_VALUED, np.int8), "none")

    monkeypatch.setattr(pipeline, "solve_greedy", empty_greedy)
    inc = Incumbent(problem, nothing, np.inf, None)
    pipeline.tiered_price_stage(problem, SolveOptions(backend="reference"), kernels, inc, 1e18, 1e18)
    placed = set(problem.job_ids[inc.best.row_job].tolist())
    assert placed == {"high"}


@pytest.mark.parametrize("seed", [11, 12])
def test_same_seed_same_plan_on_reference_and_cpu(seed: int) -> None:
    inst = random_instance(seed, 5, 40, with_current=False)
    options = SolveOptions(backend="reference", seed=2)
    (_, ref), (_, cpu) = (_auction_plan(inst, options, b) for b in ("reference", "cpu"))
    for field in ("row_job", "row_pool", "row_units", "reason"):
        assert np.array_equal(getattr(ref.solution, field), getattr(cpu.solution, field)), field
    assert np.array_equal(ref.site_price, cpu.site_price) and np.array_equal(ref.pool_price, cpu.pool_price)
    assert ref.rounds == cpu.rounds > 0 and ref.bound == cpu.bound
