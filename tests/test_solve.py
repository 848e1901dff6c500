"""End to end through ``solve()``: every plan validates, every job appears once, solvers compare."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from placement import load_config, solve, validate_plan
from placement.model.portfolio import SolveOptions
from tests.strategies import instances, random_instance

TINY = Path(__file__).parent / "data" / "tiny.toml"
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _options(solver: str, **kw) -> SolveOptions:
    return SolveOptions(solver=solver, backend="reference", time_limit_s=10, **kw)


def _each_job_once(plan, jobs) -> None:
    status = Counter()
    for row in plan.table.select(["job_id", "status"]).to_pylist():
        status[(row["job_id"], row["status"])] += 1
    ids = jobs.column("id").to_pylist()
    for job_id in ids:
        placed, unplaced = status[(job_id, "placed")], status[(job_id, "unplaced")]
        assert (placed >= 1) != (unplaced == 1), job_id
        assert unplaced <= 1
    assert {k[0] for k in status} == set(ids)


@PROPERTY
@given(instances())
def test_greedy_plans_validate(inst) -> None:
    """Greedy plans pass the validator and list every job exactly once."""
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, _options("greedy"))
    assert validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs) == []
    _each_job_once(plan, inst.jobs)
    assert plan.summary["jobs_placed"] + plan.summary["jobs_unplaced"] == inst.jobs.num_rows


@PROPERTY
@given(instances(max_sites=3, max_jobs=10))
def test_exact_plans_validate_and_beat_greedy(inst) -> None:
    """Exact (CP-SAT) plans validate and are never worse than greedy, tier by tier."""
    greedy = solve(inst.portfolio, inst.jobs, inst.pairs, _options("greedy"))
    exact = solve(inst.portfolio, inst.jobs, inst.pairs, _options("exact"))
    assert validate_plan(inst.portfolio, inst.jobs, exact.table, inst.pairs) == []
    _each_job_once(exact, inst.jobs)
    tiers_g = [greedy.summary["objective_by_tier"][k]["objective"] for k in greedy.summary["objective_by_tier"]]
    tiers_e = [exact.summary["objective_by_tier"][k]["objective"] for k in exact.summary["objective_by_tier"]]
    for g, e in zip(tiers_g, tiers_e):
        if abs(g - e) > 1e-3:
            assert e > g, (tiers_e, tiers_g)
            break
    if exact.summary["status"] == "optimal":
        assert exact.summary["bound"] >= exact.objective - 1e-6


def test_bound_never_below_objective() -> None:
    """Every plan's bound is at least its objective (a lower 'bound' would be a bug)."""
    for seed in range(30):
        inst = random_instance(seed, 3, 10)
        for solver in ("greedy", "auto"):
            plan = solve(inst.portfolio, inst.jobs, inst.pairs, _options(solver))
            assert plan.summary["bound"] is None or plan.summary["bound"] >= plan.objective - 1e-6


def test_tiny_config_solves_and_reports() -> None:
    """The tiny config solves; the EU-only job is unplaced with the region filter named."""
    cfg = load_config(TINY)
    plan = solve(cfg.portfolio, cfg.jobs, cfg.pairs, _options("auto"))
    rows = {r["job_id"]: r for r in plan.table.to_pylist()}
    assert rows["eu-only"]["status"] == "unplaced"
    assert rows["eu-only"]["reason"] == "no_eligible_site"
    assert "region" in rows["eu-only"]["reason_detail"]
    for key in ("objective", "bound", "gap", "jobs_total", "jobs_placed", "jobs_unplaced", "solver",
                "backend", "seconds", "seed", "input_sha256", "version"):
        assert key in plan.summary
    assert plan.summary["jobs_total"] == 4
    assert len(plan.summary["input_sha256"]) == 64


def test_same_seed_same_plan() -> None:
    """Same input and seed give the same plan."""
    inst = random_instance(7, 4, 12)
    a = solve(inst.portfolio, inst.jobs, inst.pairs, _options("auto", seed=3))
    b = solve(inst.portfolio, inst.jobs, inst.pairs, _options("auto", seed=3))
    assert a.table.drop_columns([]).equals(b.table)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".json", ".arrow"])
def test_plan_round_trips_through_every_format(tmp_path: Path, suffix: str) -> None:
    """A written plan reads back and still validates, in every output format."""
    from placement.io.tables import read_plan_table

    cfg = load_config(TINY)
    plan = solve(cfg.portfolio, cfg.jobs, cfg.pairs, _options("greedy"))
    path = tmp_path / f"plan{suffix}"
    plan.write(path)
    back = read_plan_table(path)
    assert back.num_rows == plan.table.num_rows
    assert validate_plan(cfg.portfolio, cfg.jobs, back, cfg.pairs) == []
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_spent_budget_never_keeps_a_job_where_it_no_longer_fits_the_rules() -> None:
    """With max_moves=0 a gang too big for its current site's fabric is unplaced, not kept there."""
    from placement.io.config import portfolio_from_dict
    from placement.model.jobs import jobs_table

    portfolio = portfolio_from_dict({"sites": [
        {"id": "small", "region": "r", "grid_mw": 1.0, "pools": {"H100": 64}, "max_gang_gpus": 8},
        {"id": "big", "region": "r", "grid_mw": 1.0, "pools": {"H100": 64}}]}, "t")
    jobs = jobs_table([{"id": "g", "gpus": 16, "value_usd_per_hour": 50.0, "current_site": "small",
                        "current_gpu_type": "H100", "migration_cost_usd": 10.0}], portfolio)
    for solver in ("greedy", "auto"):
        plan = solve(portfolio, jobs, None, _options(solver, max_moves=0))
        row = plan.table.to_pylist()[0]
        assert row["status"] == "unplaced" and row["reason"] == "migration_budget", (solver, row)
