"""The exact CP-SAT solver: plan feasibility, brute-force optimality, tiers, required, budgets."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

from placement.io.config import portfolio_from_dict
from placement.model.jobs import jobs_table
from placement.kernels.reference import unit_terms
from placement.model.portfolio import SolveOptions
from placement.core.problem import MW_TOLERANCE, UNLIMITED, Problem, compile_problem
from placement.core.solution import Reason, Solution
from placement.solvers.exact import solve_exact
from tests.strategies import random_instance

OPTS = SolveOptions(time_limit_s=20, seed=0)


def _solve(portfolio, jobs, pairs=None, engine: str = "cpsat", **options: Any) -> tuple[Problem, Solution]:
    opts = OPTS.model_copy(update=options)
    problem = compile_problem(portfolio, jobs, pairs, opts)
    return problem, solve_exact(problem, opts, engine=engine)


def _eligible(P: Problem, j: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pools job ``j`` may use (recomputed from the arrays, per-job rules included) and their terms."""
    pools, speeds = P.candidates(j)
    if P.job_filter[j] != 0 or len(pools) == 0:
        return np.zeros(0, np.int64), {}
    jj = np.full(len(pools), j, np.int64)
    t = unit_terms(P, jj, pools, speeds)
    ok = ~t["forbidden"] & (P.job_gpus_unit[j] <= P.pool_gpus[pools])
    if P.job_kind[j] == 0:
        ok &= P.job_gpus_unit[j] <= P.site_max_gang[P.pool_site[pools]]
    if P.job_pinned[j]:
        ok &= pools == P.job_current_pool[j]
    return pools[ok], {k: v[ok] for k, v in t.items()}


def _row_terms(P: Problem, S: Solution) -> dict[str, np.ndarray]:
    """Per-row unit terms of a solution, asserting each row's pool is eligible for its job."""
    out: dict[str, list[float]] = {"mw": [], "net": []}
    for j, p in zip(S.row_job.tolist(), S.row_pool.tolist()):
        pools, t = _eligible(P, j)
        assert p in pools.tolist(), f"job {j} placed on ineligible pool {p}"
        k = pools.tolist().index(p)
        out["mw"].append(t["mw"][k])
        out["net"].append(t["value"][k] - t["energy"][k] - t["carbon"][k] - t["pair"][k] - t["migration"][k])
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def check_plan(P: Problem, S: Solution) -> np.ndarray:
    """Assert every hard constraint from the Problem arrays; return the objective per tier (highest first)."""
    n = P.n_jobs
    assert len(S.reason) == n and np.all(S.row_units > 0)
    placed = S.placed
    assert sorted(set(S.row_job.tolist())) == np.flatnonzero(placed).tolist()  # each job once
    assert len(set(zip(S.row_job.tolist(), S.row_pool.tolist()))) == len(S.row_job)
    units = np.bincount(S.row_job, weights=S.row_units, minlength=n)
    assert np.array_equal(units[placed], P.job_units[placed])
    t = _row_terms(P, S)
    u = S.row_units.astype(np.float64)
    gpus = np.bincount(S.row_pool, weights=u * P.job_gpus_unit[S.row_job], minlength=P.n_pools)
    assert np.all(gpus <= P.pool_gpus)
    site = P.pool_site[S.row_pool]
    mw = np.bincount(site, weights=u * t["mw"], minlength=P.n_sites)
    assert np.all(mw <= P.site_cap_mw + MW_TOLERANCE)
    for j in np.flatnonzero(placed & (P.job_kind == 1)):
        per_site = np.bincount(site[S.row_job == j], weights=S.row_units[S.row_job == j], minlength=P.n_sites)
        assert per_site.max() <= P.job_max_units_per_site[j]
        assert (per_site > 0).sum() >= P.job_min_sites[j]
    assert np.all((P.job_kind[S.row_job] == 1) | (S.row_units == 1))
    cur = P.job_current_pool[S.row_job]
    away = (cur >= 0) & (S.row_pool != cur)
    assert not np.any(away & P.job_pinned[S.row_job])
    assert len(np.unique(S.row_job[away])) <= P.max_moves
    assert (S.row_units[away] * P.job_migration_usd[S.row_job[away]]).sum() <= P.max_migration_usd + 1e-6
    if S.status != "infeasible":
        assert placed[P.job_required].all()
    n_tiers = int(P.job_tier.max()) + 1 if n else 0
    tiers = np.bincount(P.job_tier[S.row_job], weights=u * t["net"], minlength=n_tiers)[::-1]
    assert S.bound >= tiers.sum() - 1e-9
    return tiers


@pytest.mark.parametrize("seed", range(40))
def test_random_plans_respect_every_constraint(seed: int) -> None:
    """Random instances: GPUs, power, spread, pinned, budgets and one entry per job all hold."""
    inst = random_instance(seed, 1 + seed % 5, 4 + seed % 9, with_required=seed % 3 == 0)
    budgets: list[dict[str, Any]] = [{}, {"max_moves": 0}, {"max_moves": 1}, {"max_migration_usd": 200.0}]
    budget = budgets[seed % 4]
    P, S = _solve(inst.portfolio, inst.jobs, inst.pairs, **budget)
    assert S.status in ("optimal", "infeasible")
    assert S.solver == "exact" and S.stats["variables"] >= 0
    check_plan(P, S)
    if budget.get("max_moves") == 0:
        rows_cur = P.job_current_pool[S.row_job]
        assert np.all((rows_cur < 0) | (S.row_pool == rows_cur))


def _training_only(seed: int):
    """Up to 6 training jobs of a random instance on 1-2 sites (pairs kept for those jobs)."""
    inst = random_instance(seed, 1 + seed % 2, 9, with_required=seed % 4 == 0)
    jobs = inst.jobs.filter(pc.equal(inst.jobs["kind"], "training")).slice(0, 6)
    pairs = inst.pairs
    if pairs is not None:
        pairs = pairs.filter(pc.is_in(pairs["job_id"], value_set=jobs["id"]))
    return inst.portfolio, jobs, pairs


def brute_force(P: Problem) -> np.ndarray | None:
    """Lexicographic optimum (tier objectives, highest first) by enumeration; None if infeasible."""
    opts = []
    for j in range(P.n_jobs):
        pools, t = _eligible(P, j)
        net = t["value"] - t["energy"] - t["carbon"] - t["pair"] - t["migration"] if len(pools) else []
        opts.append([(-1, 0.0, 0.0)] + list(zip(pools.tolist(), list(t.get("mw", [])), list(net))))
    combos = np.array(list(itertools.product(*[range(len(o)) for o in opts])), np.int64).reshape(-1, P.n_jobs)

    def pick(col: int) -> np.ndarray:  # (combos, jobs) array of one field of each job's chosen option
        return np.array([[opts[j][k][col] for k in combos[:, j]] for j in range(P.n_jobs)]).T

    pool, mw, net = pick(0).astype(np.int64), pick(1), pick(2)
    ok = np.ones(len(combos), bool)
    for p in range(P.n_pools):
        ok &= ((pool == p) * P.job_gpus_unit).sum(1) <= P.pool_gpus[p]
    for s in range(P.n_sites):
        ok &= (np.where(pool >= 0, P.pool_site[np.maximum(pool, 0)] == s, False) * mw).sum(1) <= P.site_cap_mw[s] + MW_TOLERANCE
    ok &= np.all((pool >= 0) | ~P.job_required, axis=1)
    moved = (P.job_current_pool >= 0) & (pool >= 0) & (pool != P.job_current_pool)
    ok &= moved.sum(1) <= P.max_moves
    ok &= (moved * P.job_migration_usd).sum(1) <= P.max_migration_usd + 1e-9
    if not ok.any():
        return None
    n_tiers = int(P.job_tier.max()) + 1
    tiers = np.stack([((P.job_tier == k) * net)[ok].sum(1) for k in reversed(range(n_tiers))], axis=1)
    keep = np.ones(len(tiers), bool)
    for k in range(n_tiers):
        keep &= tiers[:, k] >= tiers[keep, k].max() - 1e-9
    return tiers[keep][np.argmax(tiers[keep].sum(1))]


@pytest.mark.parametrize("engine", ["cpsat", "highs"])
@pytest.mark.parametrize("seed", range(30))
def test_matches_brute_force_on_tiny_training_instances(seed: int, engine: str) -> None:
    """Tiny training-only instances: exact equals the enumerated lexicographic optimum, bound above
    it, on both engines of the exact stage (tiers included)."""
    portfolio, jobs, pairs = _training_only(seed)
    if jobs.num_rows == 0:
        pytest.skip("no training job drawn")
    P, S = _solve(portfolio, jobs, pairs, engine=engine, max_moves=[None, 0, 1][seed % 3])
    best = brute_force(P)
    tiers = check_plan(P, S)
    if best is None:
        assert S.status == "infeasible"
        return
    assert S.status == "optimal"
    np.testing.assert_allclose(tiers, best, rtol=1e-6, atol=1e-6)
    assert S.bound >= best.sum() - 1e-6
    assert S.bound - best.sum() <= 1e-3  # proven: the bound is the optimum plus rounding slack or gap limit


def _portfolio(*sites: dict, **extra: Any):
    """Sites in us-tx with 64 H100, PUE 1 and free power unless a site says otherwise."""
    base = {"region": "us-tx", "pue": 1.0, "price_usd_per_mwh": 0.0, "pools": {"H100": 64}}
    return portfolio_from_dict({"name": "t", "sites": [{**base, **s} for s in sites], **extra}, "test")


def _jobs(portfolio, *rows: dict):
    """A validated jobs table of training jobs unless a row says otherwise."""
    return jobs_table([{"kind": "training", **r} for r in rows], portfolio)


def test_higher_tier_is_never_traded_for_lower_tier_value() -> None:
    """One small high-tier job beats four lower-tier jobs worth far more that need the same power."""
    pf = _portfolio({"id": "s0", "grid_mw": 0.0105})  # 8 H100 (10.2 kW) fit, not 10
    jobs = _jobs(pf, {"id": "hi", "gpus": 8, "priority": 5, "value_usd_per_hour": 10.0},
                 *({"id": f"lo{i}", "gpus": 2, "value_usd_per_hour": 100.0} for i in range(4)))
    P, S = _solve(pf, jobs)
    assert S.status == "optimal" and S.placed.tolist() == [True, False, False, False, False]
    assert set(S.reason[1:].tolist()) == {Reason.OUT_VALUED}
    assert check_plan(P, S)[0] == pytest.approx(10.0)


def test_required_job_forces_placement() -> None:
    """A required job is placed even when an optional one is worth more."""
    pf = _portfolio({"id": "s0", "grid_mw": 0.0105})
    P, S = _solve(pf, _jobs(pf, {"id": "a", "gpus": 8, "value_usd_per_hour": 100.0},
                            {"id": "b", "gpus": 8, "value_usd_per_hour": 1.0, "required": True}))
    assert S.status == "optimal" and S.placed.tolist() == [False, True]
    check_plan(P, S)


def test_impossible_required_job_makes_it_infeasible() -> None:
    """A required job no pool can hold: status infeasible, it is unplaced, the rest still placed."""
    pf = _portfolio({"id": "s0", "grid_mw": 1.0})
    P, S = _solve(pf, _jobs(pf, {"id": "a", "gpus": 8, "value_usd_per_hour": 100.0},
                            {"id": "big", "gpus": 128, "value_usd_per_hour": 1.0, "required": True}))
    assert S.status == "infeasible" and S.placed.tolist() == [True, False]
    assert S.reason[1] == Reason.NO_ELIGIBLE_SITE
    check_plan(P, S)


def test_required_jobs_that_do_not_fit_together() -> None:
    """Two required jobs that each fit alone but not together: infeasible, one placed."""
    pf = _portfolio({"id": "s0", "grid_mw": 0.0105})
    P, S = _solve(pf, _jobs(pf, *({"id": f"r{i}", "gpus": 8, "value_usd_per_hour": 5.0 + i, "required": True}
                                  for i in range(2))))
    assert S.status == "infeasible" and S.placed.sum() == 1
    assert S.reason[~S.placed].tolist() == [Reason.OUT_VALUED]
    assert S.stats["stages"][0]["status"] == "INFEASIBLE"
    check_plan(P, S)


def _move_case(**options: Any) -> int:
    """Site of the one job that runs on expensive s0 and gains 4.1 $/h by moving to free s1."""
    pf = _portfolio({"id": "s0", "grid_mw": 1.0, "price_usd_per_mwh": 500.0}, {"id": "s1", "grid_mw": 1.0})
    jobs = _jobs(pf, {"id": "m", "gpus": 8, "value_usd_per_hour": 50.0, "current_site": "s0",
                      "current_gpu_type": "H100", "migration_cost_usd": 24.0})  # 1 $/h over 24 h
    P, S = _solve(pf, jobs, **options)
    check_plan(P, S)
    assert S.status == "optimal" and S.placed[0]
    return int(P.pool_site[S.row_pool[0]])


@pytest.mark.parametrize(("options", "site"), [
    ({}, 1), ({"max_moves": 0}, 0), ({"max_moves": 1}, 1),
    ({"max_migration_usd": 10.0}, 0), ({"max_migration_usd": 24.0}, 1)])
def test_migration_budget(options: dict, site: int) -> None:
    """max_moves and max_migration_usd keep a job where it runs unless the budget allows the move."""
    assert _move_case(**options) == site


def test_unplaced_reasons() -> None:
    """Each static reason: no eligible site, GPUs, spread, power, not profitable."""
    pf = _portfolio({"id": "s0", "grid_mw": 0.02, "price_usd_per_mwh": 100.0, "pools": {"H100": 16}})
    jobs = jobs_table([
        {"id": "noregion", "kind": "training", "gpus": 1, "value_usd_per_hour": 9.0, "regions": "eu-fi"},
        {"id": "gpus", "kind": "inference", "gpus_per_replica": 8, "replicas": 3, "value_usd_per_hour": 90.0},
        {"id": "spread", "kind": "inference", "gpus_per_replica": 1, "replicas": 2, "min_sites": 2,
         "value_usd_per_hour": 90.0},
        {"id": "power", "kind": "training", "gpus": 16, "value_usd_per_hour": 90.0},
        {"id": "cheap", "kind": "training", "gpus": 1, "value_usd_per_hour": 0.01},
    ], pf)
    P, S = _solve(pf, jobs)
    assert S.reason.tolist() == [Reason.NO_ELIGIBLE_SITE, Reason.GPUS, Reason.SPREAD, Reason.POWER,
                                 Reason.NOT_PROFITABLE]
    check_plan(P, S)


def test_same_seed_same_solution() -> None:
    """Two runs with the same seed give identical plans and stats objectives."""
    inst = random_instance(7, 5, 14)
    runs = [_solve(inst.portfolio, inst.jobs, inst.pairs, seed=3)[1] for _ in range(2)]
    for field in ("row_job", "row_pool", "row_units", "reason"):
        assert np.array_equal(getattr(runs[0], field), getattr(runs[1], field))
    assert runs[0].stats["objective"] == runs[1].stats["objective"] and runs[0].bound == runs[1].bound


def test_progress_and_hint() -> None:
    """on_progress sees objectives under their bound; hinting the optimum reproduces its value."""
    inst = random_instance(11, 4, 12)
    P = compile_problem(inst.portfolio, inst.jobs, inst.pairs, OPTS)
    seen: list[tuple[float, float]] = []
    first = solve_exact(P, OPTS, on_progress=lambda obj, bound: seen.append((obj, bound)))
    assert seen and all(obj <= bound + 1e-9 for obj, bound in seen)
    again = solve_exact(P, OPTS, hint=first)
    assert again.stats["objective"] == pytest.approx(first.stats["objective"], abs=1e-6)


def test_plans_pass_the_independent_validator() -> None:
    """Exact plans on random instances pass placement.validate.validator (only required jobs may be flagged)."""
    from placement import plan  # noqa: PLC0415
    from placement.validate import validator as validate  # noqa: PLC0415

    for seed in range(20):
        inst = random_instance(seed, 1 + seed % 5, 12, with_required=seed % 2 == 0)
        P, S = _solve(inst.portfolio, inst.jobs, inst.pairs)
        table = plan.build_plan(P, S, seconds=0.0, seed=0).table
        issues = validate.validate_plan(inst.portfolio, inst.jobs, table, inst.pairs, OPTS)
        assert all(v.kind == "required" and S.status == "infeasible" for v in issues), issues


def test_no_jobs_or_unlimited_defaults() -> None:
    """Only unplaceable jobs: an empty optimal plan with bound 0 and UNLIMITED budgets untouched."""
    pf = _portfolio({"id": "s0", "grid_mw": 1.0})
    P, S = _solve(pf, _jobs(pf, {"id": "x", "gpus": 1, "value_usd_per_hour": 1.0, "regions": "eu-fi"}))
    assert S.status == "optimal" and not S.placed.any() and S.bound == 0.0
    assert P.max_moves == UNLIMITED
