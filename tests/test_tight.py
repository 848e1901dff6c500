"""Tight capacity with required jobs: no native abort, feasibility first, every stage's plan valid."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from placement.kernels import kernels_for
from placement.solvers import pipeline
from placement.solvers.construct import construct_required
from placement.solvers.exact import solve_exact
from placement.solvers.greedy import fill_unplaced, solve_greedy
from placement.solvers.stages import kept_candidates
from placement.solvers.tight_search import improve_tight

from bench.tight_gaps import rows
from placement import solve
from placement.core.problem import Problem, compile_problem
from placement.core.solution import Solution
from placement.generate.families import write_instance
from placement.generate.tight import TIGHT_FAMILIES, generate_tight
from placement.io.config import load_config, portfolio_from_dict
from placement.io.tables import read_jobs, read_pairs
from placement.model.jobs import validate_jobs, validate_pairs
from placement.model.portfolio import SolveOptions
from placement.plan import build_plan
from placement.validate import validate_plan

ROOT = Path(__file__).resolve().parents[1]


def _instance(family: str, n_jobs: int, n_sites: int, seed: int = 0, capacity_ratio: float = 0.8):
    config, jobs, pairs = generate_tight(family, n_jobs, n_sites, seed, capacity_ratio)
    portfolio = portfolio_from_dict(config, family)
    jobs = validate_jobs(jobs, portfolio, family)
    return portfolio, jobs, validate_pairs(pairs, portfolio, jobs, family)


def _valid(portfolio, jobs, pairs, P: Problem, sol: Solution) -> list:
    plan = build_plan(P, sol, seconds=0.0, seed=0)
    return validate_plan(portfolio, jobs, plan.table, pairs)


def test_tight_family_files_load(tmp_path: Path) -> None:
    """``write_instance`` writes the portfolio, jobs and pairs, and they load as the CLI loads them."""
    paths = write_instance("tight-e", 60, 4, seed=2, out_dir=tmp_path)
    assert [p.name for p in paths] == ["portfolio.toml", "jobs.parquet", "pairs.parquet"]
    portfolio = load_config(paths[0]).portfolio
    jobs = read_jobs(paths[1], portfolio)
    pairs = read_pairs(paths[2], portfolio, jobs)
    assert len(portfolio.sites) == 4 and jobs.num_rows == 60 and pairs.num_rows == 240
    assert all(jobs.column("required").to_pylist())


def test_abort_regression_auto_places_every_required_job() -> None:
    """20 sites x 400 required 1-GPU jobs, tight MW, pair overrides: ``auto`` returns a valid plan.

    This shape used to abort the process inside CP-SAT (interleaved search on a hinted model with
    no solution) and greedy alone places no feasible plan on it.
    """
    portfolio, jobs, pairs = _instance("tight-d", 400, 20)
    P = compile_problem(portfolio, jobs, pairs, SolveOptions())
    assert (~solve_greedy(P, SolveOptions(), kernels_for(P, "cpu")).placed).any()  # greedy alone fails
    plan = solve(portfolio, jobs, pairs, SolveOptions(time_limit_s=3, seed=0, threads=2))
    assert plan.summary["required_unplaced"] == []
    assert plan.summary["jobs_placed"] == 400
    assert "construct" in plan.summary["stats"]["stages"]


def test_hinted_infeasible_model_does_not_abort() -> None:
    """The exact case that aborted: an infeasible required model, 2 workers, hinted with greedy.

    Run in a child process, so a native abort fails this test instead of killing the suite.
    """
    code = textwrap.dedent("""
        from placement.core.problem import compile_problem
        from placement.kernels import kernels_for
        from placement.model.portfolio import SolveOptions
        from placement.solvers.exact import solve_exact
        from placement.solvers.greedy import solve_greedy
        from tests.test_tight import _instance
        portfolio, jobs, pairs = _instance("tight-d", 100, 5, capacity_ratio=0.2)
        opts = SolveOptions(time_limit_s=3, seed=0, threads=2)
        P = compile_problem(portfolio, jobs, pairs, opts)
        hint = solve_greedy(P, opts, kernels_for(P, "cpu"))
        print(solve_exact(P, opts, hint=hint).status)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "infeasible"


@pytest.mark.parametrize("family", TIGHT_FAMILIES)
@pytest.mark.parametrize("seed", range(6))
def test_construction_places_every_required_job_when_a_plan_exists(family: str, seed: int) -> None:
    """On small tight instances where the exact model finds a plan, the construction places every
    required job, and its plan passes the validator."""
    n_jobs, n_sites = [(20, 3), (30, 4), (40, 5)][seed % 3]
    portfolio, jobs, pairs = _instance(family, n_jobs, n_sites, seed)
    P = compile_problem(portfolio, jobs, pairs, SolveOptions())
    exact = solve_exact(P, SolveOptions(time_limit_s=20, seed=0, threads=1))
    assert exact.status in ("optimal", "feasible")  # a plan placing everyone exists
    built = construct_required(P, kept_candidates(P), time.monotonic() + 10)
    assert built is not None
    assert built.placed[P.job_required].all()
    assert _valid(portfolio, jobs, pairs, P, built) == []


@pytest.mark.parametrize("family", TIGHT_FAMILIES)
def test_every_stage_plan_on_tight_instances_is_valid(family: str) -> None:
    """Construction, fill, penalty search (from the plan and from an infeasible start) and both
    exact engines each give a plan the validator accepts, every job exactly once."""
    portfolio, jobs, pairs = _instance(family, 120, 6, seed=1)
    opts = SolveOptions(time_limit_s=2, seed=0, threads=2)
    P = compile_problem(portfolio, jobs, pairs, opts)
    kernels = kernels_for(P, "cpu")
    cand = kept_candidates(P)
    built = construct_required(P, cand, time.monotonic() + 5)
    filled = fill_unplaced(P, built, kernels, opts).solution
    cheapest = np.full(P.n_jobs, -1, np.int64)  # every job on its best-value pool: overloaded
    for i in range(len(cand.job) - 1, -1, -1):
        j = cand.job[i]
        if cheapest[j] < 0 or cand.net[i] >= cand.net[cheapest[j]]:
            cheapest[j] = i
    searched = improve_tight(P, cand, filled, deadline=time.monotonic() + 1.0)
    from_lp_like = improve_tight(P, cand, filled, deadline=time.monotonic() + 1.0, start=cheapest)
    plans = {"construct": built, "fill": filled, "search": searched, "search-from-start": from_lp_like}
    for engine in ("cpsat", "highs"):
        plans[engine] = solve_exact(P, opts, hint=searched, engine=engine)
    for name, sol in plans.items():
        assert _valid(portfolio, jobs, pairs, P, sol) == [], name
        assert sol.placed.all(), name
    assert searched.stats.get("tight_gain", 0.0) >= 0.0


def test_search_never_returns_a_worse_plan() -> None:
    portfolio, jobs, pairs = _instance("tight-e", 80, 5, seed=4)
    P = compile_problem(portfolio, jobs, pairs, SolveOptions())
    cand = kept_candidates(P)
    built = construct_required(P, cand, time.monotonic() + 5)
    searched = improve_tight(P, cand, built, deadline=time.monotonic() + 0.5)
    net = dict(zip(zip(cand.job.tolist(), cand.pool.tolist()), cand.net.tolist()))
    value = lambda s: sum(net[(j, p)] for j, p in zip(s.row_job.tolist(), s.row_pool.tolist()))  # noqa: E731
    assert value(searched) >= value(built) - 1e-9


def test_a_stage_that_raises_is_dropped_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stage raising (a solver library failing) leaves the incumbent, and the summary names it."""
    portfolio, jobs, pairs = _instance("tight-d", 60, 4, seed=3)

    def broken(*args, **kwargs):
        raise RuntimeError("engine failed")

    monkeypatch.setattr(pipeline, "exact_stage", broken)
    plan = solve(portfolio, jobs, pairs, SolveOptions(time_limit_s=2, seed=0, threads=2))
    failed = plan.summary["stats"]["fallbacks"]
    assert [f["stage"] for f in failed] == ["exact"]
    assert "RuntimeError: engine failed" in failed[0]["reason"]
    assert plan.summary["required_unplaced"] == []  # the construction's plan survived
    assert validate_plan(portfolio, jobs, plan.table, pairs) == []


def test_tight_gaps_table_reads_costs_from_a_results_document() -> None:
    """``bench.tight_gaps`` turns objectives into assignment costs against the run's best bound."""
    ok = {"valid": True, "jobs_placed": 10}
    doc = {"instances": [{"family": "tight-d", "sites": 2, "jobs": 10, "best_bound": 99_900.0, "results": {
        "ours": {**ok, "objective": 99_890.0}, "cpsat": {**ok, "objective": 99_880.0},
        "highs": {"valid": True, "jobs_placed": 9, "objective": 99_990.0}}}]}
    (row,) = rows(doc)
    assert row["bound_cost"] == 100.0 and row["ours_cost"] == 110.0 and row["cpsat_cost"] == 120.0
    assert row["highs_cost"] is None  # a plan missing a required job has no assignment cost
    assert abs(row["ours_gap"] - 0.10) < 1e-12 and abs(row["ours_vs_best"]) < 1e-12
