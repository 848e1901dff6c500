"""The decomposed solver: partitions that never oversell capacity, valid merged plans, valid bounds.

Most tests run the parts in this process (``_Inline``: the shared payload and each task go
through pickle, as they do to a spawned worker); one test uses the real process pool and one
Ray, since each spawned worker costs seconds of imports.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from placement.kernels import kernels_for
from placement.solvers import decomposed, pipeline
from placement.solvers.compare import lex_better
from placement.solvers.exact import solve_exact
from placement.solvers.lp import lp_bound

from placement import solve, validate_plan
from placement.core.executors import Executor, Task
from placement.core.problem import MW_TOLERANCE, UNLIMITED, compile_problem
from placement.core.solution import tier_objectives, usage
from placement.io.config import portfolio_from_dict
from placement.model.jobs import jobs_table
from placement.model.portfolio import SolveOptions
from tests.strategies import Instance, random_instance

COLUMNS = ["job_id", "status", "site_id", "gpu_type", "replicas"]


class _Inline(Executor):
    """Runs tasks one after another in this process, through pickle like a worker."""

    kind = "local"

    def map(self, fn: Task, shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        shared = pickle.loads(pickle.dumps(shared))
        for i, item in enumerate(items):
            yield i, fn(shared, pickle.loads(pickle.dumps(item)))


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decomposed, "make_executor", lambda kind, workers=0, address=None: _Inline(1))


def _opts(**kw: Any) -> SolveOptions:
    return SolveOptions(**{"solver": "decomposed", "backend": "reference", "parts": 2, "time_limit_s": 5.0, **kw})


def _table(plan) -> Any:
    return plan.table.select(COLUMNS)


def _regional() -> Instance:
    """Jobs restricted to regions {a, b} or {c, d} (one job may go anywhere): two natural halves."""
    sites = [{"id": f"{r}{i}", "region": r, "grid_mw": 0.05, "pue": 1.2, "pools": {"H100": 32},
              "price_usd_per_mwh": 40.0 + 5 * i} for r in "abcd" for i in range(2)]
    portfolio = portfolio_from_dict({"sites": sites}, "regional")
    rng = np.random.default_rng(0)
    regions = ["a", "b", "a,b", "c", "d", "c,d"]
    jobs = [{"id": f"j{i}", "gpus": int(rng.choice([4, 8, 16])), "value_usd_per_hour": float(rng.uniform(5, 80)),
             "regions": regions[i % len(regions)], "priority": int(rng.integers(2))} for i in range(30)]
    jobs.append({"id": "anywhere", "gpus": 8, "value_usd_per_hour": 50.0})
    return Instance(portfolio, jobs_table(jobs, portfolio), None)


@pytest.mark.parametrize("seed", range(6))
def test_partition_never_oversells_and_keeps_running_jobs_room(seed: int) -> None:
    """Shares sum to at most each pool's GPUs and site's MW (with every part's tolerance), every
    job with a candidate is in one part, running jobs keep room where they run, budgets add up."""
    inst = random_instance(seed, 4, 14, with_required=True)
    problem = compile_problem(inst.portfolio, inst.jobs, inst.pairs, SolveOptions(max_moves=3, max_migration_usd=900))
    for k in (1, 2, 3):
        parts = decomposed.partition(problem, k, seed)
        ok = problem.job_filter == 0
        assert np.all((parts.job_part >= 0) == ok) and parts.job_part.max(initial=0) < k
        assert np.all(parts.pool_gpus >= 0) and np.all(parts.pool_gpus.sum(axis=0) <= problem.pool_gpus)
        assert np.all(parts.site_cap_mw >= 0)
        # Each part may overshoot its share by MW_TOLERANCE, as the kernels allow: all of them together
        # stay within the cap's own tolerance.
        room = np.maximum(problem.site_cap_mw - (k - 1) * MW_TOLERANCE, 0.0)
        assert np.all(parts.site_cap_mw.sum(axis=0) <= room + 1e-15)
        assert parts.max_moves.sum() <= 3 and parts.max_migration_usd.sum() <= 900 + 1e-9
        if parts.kind == "random":
            current = decomposed._current_rows(problem)
            row_part = parts.job_part[current.row_job]
            total = usage(problem, current)
            for i in range(k):
                held = usage(problem, current, row_part == i)
                fits = total.pool_gpus <= problem.pool_gpus
                assert np.all(parts.pool_gpus[i][fits] >= held.pool_gpus[fits])


def test_no_migration_budget_stays_unlimited() -> None:
    """An unlimited budget is not split into finite shares (local search would treat it as set)."""
    inst = random_instance(1, 3, 10)
    parts = decomposed.partition(compile_problem(inst.portfolio, inst.jobs, inst.pairs), 2, 0)
    assert np.all(parts.max_moves == UNLIMITED) and np.all(np.isinf(parts.max_migration_usd))


def test_region_partition_keeps_jobs_with_their_sites(inline: None) -> None:
    """Jobs that split by region get whole sites: every job's usable pools are in its part, but
    the one job that spans the groups."""
    inst = _regional()
    problem = compile_problem(inst.portfolio, inst.jobs)
    parts = decomposed.partition(problem, 2, 0)
    assert parts.kind == "region"
    for j in range(problem.n_jobs):
        if problem.job_ids[j] == "anywhere":
            continue
        pools, _ = problem.candidates(j)
        assert np.all(parts.pool_gpus[parts.job_part[j], pools] == problem.pool_gpus[pools])
    plan = solve(inst.portfolio, inst.jobs, None, _opts(time_limit_s=2.0))
    assert plan.summary["stats"]["decomposed"]["partition"] == "region"


@pytest.mark.parametrize("seed", range(5))
def test_bounds_never_below_the_proven_optimum(seed: int) -> None:
    """The Lagrangian bound at merged prices, with and without the top tier's floor, is never below
    CP-SAT's proven optimum (the floor taken from any feasible plan, here the optimum itself)."""
    inst = random_instance(seed, 3, 10, with_required=True)
    problem = compile_problem(inst.portfolio, inst.jobs, inst.pairs)
    kernels = kernels_for(problem, "reference")
    exact = solve_exact(problem, SolveOptions(time_limit_s=10.0))
    assert exact.status == "optimal"  # 3 sites x 10 jobs: proven in milliseconds
    optimum = float(tier_objectives(problem, exact).sum())
    lp = lp_bound(problem, kernels)
    rng = np.random.default_rng(seed)
    prices = [(lp.site_price, lp.pool_price), (lp.site_price * rng.uniform(0, 3, problem.n_sites),
                                               rng.uniform(0, 2, problem.n_pools))]
    assert decomposed.dual_bound(problem, kernels, prices)[0] >= optimum - 1e-6
    for lam, mu in prices:
        assert decomposed.floored_bound(problem, kernels, lam, mu, exact) >= optimum - 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_merged_plans_validate_with_a_valid_bound(inline: None, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """The large-instance path (parts priced by the LP, merged, repaired, preemption, local search,
    LNS) gives validated plans whose bound is at least the proven optimum."""
    inst = random_instance(seed, 4, 14, with_required=True)
    exact = solve(inst.portfolio, inst.jobs, inst.pairs, SolveOptions(solver="exact", backend="reference",
                                                                      time_limit_s=10.0))
    monkeypatch.setattr(pipeline, "EXACT_MAX_CANDIDATES", 0)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(time_limit_s=2.0, seed=seed))  # validates
    stats = plan.summary["stats"]
    assert plan.summary["solver"] == "decomposed" and stats["decomposed"]["parts"] == 2
    assert "lns" in stats["stages"] and stats["decomposed"]["bound_lagrangian"] is not None  # parts' LP prices
    if exact.summary["status"] == "optimal":
        assert plan.summary["bound"] >= exact.objective - 1e-6
        assert not lex_better(np.array(_tiers(plan)), np.array(_tiers(exact)))


def _tiers(plan) -> list[float]:
    return [row["objective"] for row in plan.summary["objective_by_tier"].values()]


def test_same_seed_same_plan_and_one_part(inline: None) -> None:
    """Same seed, same plan (parts solved to optimality); one part works too."""
    inst = random_instance(7, 4, 14, with_required=True)
    a, b = (solve(inst.portfolio, inst.jobs, inst.pairs, _opts(seed=3)) for _ in range(2))
    assert _table(a).equals(_table(b))
    one = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(parts=1))
    assert one.summary["stats"]["decomposed"]["parts"] == 1
    found = validate_plan(inst.portfolio, inst.jobs, one.table, inst.pairs)
    assert [v.kind for v in found] == ["required"]  # j0 fits nowhere: CP-SAT proves it


def test_interrupt_during_the_parts_merges_what_returned(inline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while parts run: the parts that returned are merged, the rest filled greedily."""
    real = decomposed._solve_part
    done: list[int] = []

    def interrupted(problem, part):
        if done:
            raise KeyboardInterrupt
        done.append(1)
        return real(problem, part)

    monkeypatch.setattr(decomposed, "_solve_part", interrupted)
    inst = random_instance(5, 4, 14)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(time_limit_s=30.0))  # validates
    assert "interrupted" in plan.summary["stats"]["stages"] and plan.summary["seconds"] < 10


def test_warm_start_is_kept_unless_beaten(inline: None) -> None:
    """A warm start is split among the parts, and the result is lexicographically no worse than it."""
    inst = random_instance(4, 4, 14)
    first = solve(inst.portfolio, inst.jobs, inst.pairs, _opts())
    again = solve(inst.portfolio, inst.jobs, inst.pairs, _opts(), initial_plan=first.table)
    assert not lex_better(np.array(_tiers(first)), np.array(_tiers(again)))


def test_process_pool_and_ray_give_the_inline_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawned workers and Ray tasks solve the same parts to the same plan as in-process."""
    inst = random_instance(7, 4, 14, with_required=True)
    opts = _opts(seed=3, workers=2, time_limit_s=20.0)
    local = solve(inst.portfolio, inst.jobs, inst.pairs, opts)
    assert local.summary["stats"]["decomposed"]["workers"] == 2
    with monkeypatch.context() as m:
        m.setattr(decomposed, "make_executor", lambda kind, workers=0, address=None: _Inline(1))
        assert _table(solve(inst.portfolio, inst.jobs, inst.pairs, opts)).equals(_table(local))
    pytest.importorskip("ray")
    ray = solve(inst.portfolio, inst.jobs, inst.pairs, opts.model_copy(update={"executor": "ray"}))
    assert ray.summary["stats"]["decomposed"]["executor"] == "ray"
    assert _table(ray).equals(_table(local))
