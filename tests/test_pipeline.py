"""The solver pipeline: valid plans from every stage, bounds never below the proven optimum."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from placement.kernels import kernels_for
from placement.solvers import pipeline
from placement.solvers.compare import lex_better
from placement.solvers.lp import lp_bound

from placement import solve, validate_plan
from placement.core.problem import compile_problem
from placement.model.portfolio import SolveOptions
from tests.strategies import instances, random_instance, tier_temptation


def _opts(solver: str, **kw) -> SolveOptions:
    return SolveOptions(solver=solver, backend="reference", **{"time_limit_s": 5.0, **kw})


def _tiers(plan) -> list[float]:
    return [row["objective"] for row in plan.summary["objective_by_tier"].values()]


@pytest.mark.parametrize("seed", range(12))
def test_no_bound_below_the_proven_optimum(seed: int) -> None:
    """LP, relaxed and pipeline bounds are never below CP-SAT's proven optimum; plans never above it."""
    inst = random_instance(seed, 3, 10)
    exact = solve(inst.portfolio, inst.jobs, inst.pairs, _opts("exact"))
    assert exact.summary["status"] == "optimal"  # 3 sites x 10 jobs: proven in milliseconds
    optimum = exact.objective
    problem = compile_problem(inst.portfolio, inst.jobs, inst.pairs)
    lp = lp_bound(problem, kernels_for(problem, "reference"))
    assert lp.bound >= optimum - 1e-6
    for solver in ("price", "lns"):
        plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(solver, time_limit_s=1.0))
        assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []
        assert plan.summary["bound"] >= optimum - 1e-6, solver
        # Lexicographically never better than the proven lexicographic optimum.
        assert not lex_better(np.array(_tiers(plan)), np.array(_tiers(exact))), solver


@pytest.mark.parametrize("solver", ["greedy", "price", "lns", "auto"])
def test_tiny_time_limit_still_gives_a_valid_plan(solver: str) -> None:
    """A time limit of a millisecond still returns a validated plan listing every job."""
    inst = random_instance(3, 4, 14)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(solver, time_limit_s=0.001))
    assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []
    assert plan.summary["jobs_placed"] + plan.summary["jobs_unplaced"] == inst.jobs.num_rows


def test_strict_tiers_hold_in_every_solver() -> None:
    """A cheap high-tier job keeps the power that denser low-tier jobs would pay more for."""
    portfolio, jobs = tier_temptation()
    for solver in ("greedy", "price", "lns", "exact", "auto"):
        plan = solve(portfolio, jobs, None, _opts(solver, time_limit_s=2.0))
        status = {r["job_id"]: r["status"] for r in plan.table.to_pylist()}
        assert status["high"] == "placed", solver


@pytest.mark.parametrize("solver", ["greedy", "price"])
def test_same_seed_same_plan_on_reference_and_cpu(solver: str) -> None:
    """Same input and seed give the same plan on the reference and the Numba CPU backend."""
    inst = random_instance(11, 5, 40, with_current=False)
    plans = [solve(inst.portfolio, inst.jobs, inst.pairs,
                   SolveOptions(solver=solver, backend=b, time_limit_s=30.0, seed=2)) for b in ("reference", "cpu")]
    cols = ["job_id", "status", "site_id", "gpu_type", "replicas"]
    assert plans[0].table.select(cols).equals(plans[1].table.select(cols))


def test_interrupt_returns_the_best_plan_so_far(monkeypatch) -> None:
    """Ctrl-C during a stage returns the best validated plan found before it."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "tiered_price_stage", interrupted)
    inst = random_instance(5, 4, 14)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts("price", time_limit_s=30.0))
    assert "interrupted" in plan.summary["stats"]["stages"]
    assert plan.summary["status"] == "interrupted"
    assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []


def test_shadow_prices_in_summary() -> None:
    """LP-based solvers report a $/MWh shadow price per site and $/GPU-h per pool."""
    inst = random_instance(2, 3, 14, with_current=False)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts("price"))
    prices = plan.summary["shadow_price_usd_per_mwh"]
    assert set(prices) == {s.id for s in inst.portfolio.sites}
    assert all(v >= 0 for v in prices.values())
    assert all(v >= 0 for v in plan.summary["shadow_price_usd_per_gpu_hour"].values())


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(instances(max_sites=4, max_jobs=14))
def test_price_and_lns_plans_validate(inst) -> None:
    """The LP-priced and LNS stages give validated plans with a bound at least their objective."""
    for solver, limit in (("price", 2.0), ("lns", 0.3)):
        plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(solver, time_limit_s=limit))
        assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []
        assert plan.summary["bound"] >= plan.objective - 1e-6


def test_local_search_never_worsens_and_stays_valid() -> None:
    """Local search rounds keep the plan valid and never lose objective in any tier order."""
    from placement.solvers.greedy import solve_greedy
    from placement.solvers.local_search import improve

    from placement.core.solution import tier_objectives
    from placement.plan import build_plan

    for seed in range(15):
        inst = random_instance(seed, 4, 30, with_current=False)
        problem = compile_problem(inst.portfolio, inst.jobs, inst.pairs)
        kernels = kernels_for(problem, "reference")
        start = solve_greedy(problem, SolveOptions(), kernels)
        after = improve(problem, start, kernels, deadline=time.monotonic() + 5)
        assert not lex_better(tier_objectives(problem, start), tier_objectives(problem, after))
        plan = build_plan(problem, after, seconds=0.0, seed=0)
        assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []
