"""Deterministic mode: the same input and seed give the identical plan, idle or under load."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from bench.deterministic import loaded_cpu
from placement import solve
from placement.cli.main import app
from placement.core import clock
from placement.core.problem import compile_problem
from placement.generate.families import generate, write_instance
from placement.generate.tight import generate_tight
from placement.io.config import portfolio_from_dict
from placement.model.jobs import validate_jobs, validate_pairs
from placement.model.portfolio import SolveOptions
from placement.replan.run import ReplanOptions, replan
from placement.solvers import pipeline
from placement.solvers.exact import solve_exact

runner = CliRunner()


def _shaped(family: str, n_jobs: int, n_sites: int):
    config, jobs = generate(family, n_jobs, n_sites, 0)
    portfolio = portfolio_from_dict(config, family)
    return portfolio, validate_jobs(jobs, portfolio, family), None


def _tight(n_jobs: int, n_sites: int):
    config, jobs, pairs = generate_tight("tight-d", n_jobs, n_sites, 0)
    portfolio = portfolio_from_dict(config, "tight-d")
    jobs = validate_jobs(jobs, portfolio, "tight-d")
    return portfolio, jobs, validate_pairs(pairs, portfolio, jobs, "tight-d")


def _same(a: pa.Table, b: pa.Table) -> bool:
    return a.schema == b.schema and a.equals(b)


def _det(solver: str = "auto", limit_s: float = 1.0, **kw) -> SolveOptions:
    return SolveOptions(solver=solver, time_limit_s=limit_s, seed=3, backend="cpu", deterministic=True, **kw)


# Every path of ``auto``: the exact model (small), the LP, price construction, local search and
# LNS (beyond the exact model's size), and the tight feasibility-first path.
CASES = {
    "exact": lambda: _shaped("neocloud", 120, 4),
    "lp-price-ls-lns": lambda: _shaped("neocloud", 900, 20),
    "tight": lambda: _tight(120, 8),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_plan_idle_and_under_load(case: str) -> None:
    portfolio, jobs, pairs = CASES[case]()
    idle = solve(portfolio, jobs, pairs, _det())
    with loaded_cpu():
        loaded = [solve(portfolio, jobs, pairs, _det(threads=t)) for t in (0, 2)]
    for plan in loaded:
        assert _same(plan.table, idle.table)
        assert plan.summary.objective == idle.summary.objective
        assert plan.summary.bound == idle.summary.bound
        assert plan.summary.stats["stages"] == idle.summary.stats["stages"]
        assert plan.summary.stats["work_units"] == idle.summary.stats["work_units"]
    if case == "lp-price-ls-lns":
        problem = compile_problem(portfolio, jobs, None, _det())
        assert pipeline.candidate_count(problem) > pipeline.EXACT_MAX_CANDIDATES
        assert {"price", "lp", "lns"} <= set(idle.summary.stats["stages"])


def test_budget_is_work_not_seconds() -> None:
    """The budget is spent in work units: a run ends within about one stage's work of it."""
    portfolio, jobs, _ = _shaped("neocloud", 900, 20)
    plan = solve(portfolio, jobs, None, _det(limit_s=0.5))
    assert 0.0 < plan.summary.stats["work_units"] <= 0.5 * 1.5
    more = solve(portfolio, jobs, None, _det(limit_s=2.0))
    assert more.summary.stats["work_units"] > plan.summary.stats["work_units"]


def test_decomposed_is_deterministic_for_given_parts_and_workers() -> None:
    portfolio, jobs, _ = _shaped("neocloud", 600, 12)
    opts = _det(solver="decomposed", parts=2, workers=2)
    first = solve(portfolio, jobs, None, opts)
    with loaded_cpu():
        again = solve(portfolio, jobs, None, opts)
    assert _same(first.table, again.table)


def test_replan_is_deterministic() -> None:
    portfolio, jobs, _ = _shaped("neocloud", 300, 6)
    base = solve(portfolio, jobs, None, _det())
    opts = ReplanOptions(solver="auto", time_limit_s=1.0, seed=3, backend="cpu", deterministic=True)
    site = portfolio.sites[0]
    event = [f"curtail site={site.id} grid_mw={site.grid_mw * 0.5}"]
    first = replan(portfolio, jobs, base.table, event, options=opts)
    with loaded_cpu():
        again = replan(portfolio, jobs, base.table, event, options=opts)
    assert _same(first.table, again.table)
    assert _same(first.changes, again.changes)


def test_cli_deterministic_flag(tmp_path: Path) -> None:
    config, jobs_path = write_instance("neocloud", 400, 8, 1, tmp_path)[:2]
    outs = []
    for i in range(2):
        out = tmp_path / f"plan{i}.parquet"
        result = runner.invoke(app, ["solve", str(config), "--jobs", str(jobs_path), "--deterministic",
                                     "--time-limit", "1", "--backend", "cpu", "--out", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        outs.append(pq.read_table(out))
    assert _same(*outs)


def test_work_clock_nests_and_the_wall_clock_ignores_ticks() -> None:
    assert not clock.deterministic()
    clock.tick(1e9)  # no work clock: a no-op
    with clock.work_clock():
        assert clock.deterministic() and clock.now() == 0.0
        clock.tick(0.25)
        with clock.work_clock():  # nested: the same clock
            clock.tick(0.5)
        assert clock.now() == 0.75
        assert clock.wall_limit_s(1.0) > 1.0
    with clock.work_clock(on=False):
        assert not clock.deterministic()
    assert clock.wall_limit_s(1.0) == 1.0


def test_the_wall_clock_safety_net_is_recorded() -> None:
    """An engine that stops on its wall-clock net in deterministic mode is a recorded fallback,
    taken once; on the wall clock there is nothing to record."""
    with clock.work_clock():
        clock.check_wall_net("CP-SAT", False)
        clock.check_wall_net("CP-SAT", True)
        taken = clock.take_fallbacks()
        assert [f["stage"] for f in taken] == ["CP-SAT"] and "safety net" in taken[0]["reason"]
        assert clock.take_fallbacks() == []
    clock.check_wall_net("CP-SAT", True)
    assert clock.take_fallbacks() == []


def test_a_deterministic_solve_leaves_highs_usable_at_other_thread_counts() -> None:
    """HiGHS sizes one scheduler per process: a one-thread deterministic solve followed by a
    two-thread HiGHS solve must still find a plan (it used to return none)."""
    portfolio, jobs, pairs = CASES["tight"]()
    solve(portfolio, jobs, pairs, _det())
    problem = compile_problem(portfolio, jobs, pairs, _det())
    exact = solve_exact(problem, SolveOptions(time_limit_s=5, seed=0, threads=2), engine="highs")
    assert exact.status in ("optimal", "feasible") and exact.placed.all()
