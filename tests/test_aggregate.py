"""Buckets of interchangeable jobs: the bucket LP relaxes the LP, and its bounds stay valid."""

from __future__ import annotations

import numpy as np
import pytest

from placement import solve
from placement.core.problem import compile_problem
from placement.generate.families import SHAPED_FAMILIES, generate
from placement.io.config import portfolio_from_dict
from placement.kernels import kernels_for
from placement.model.jobs import validate_jobs
from placement.model.portfolio import SolveOptions
from placement.solvers.aggregate import aggregate
from placement.solvers.greedy import solve_greedy
from placement.solvers.lagrangian import evaluate_dual
from placement.solvers.lp import lp_bound
from tests.strategies import random_instance


def _generated(family: str, n_jobs: int = 300, n_sites: int = 6, seed: int = 5):
    config, jobs = generate(family, n_jobs, n_sites, seed=seed)
    portfolio = portfolio_from_dict(config, family)
    return compile_problem(portfolio, validate_jobs(jobs, portfolio, family))


@pytest.mark.parametrize("family", SHAPED_FAMILIES)
def test_buckets_keep_every_gpu_and_merge_jobs(family: str) -> None:
    """Each job lands in one bucket, the buckets hold exactly the jobs' GPUs, and there are fewer of them."""
    P = _generated(family)
    b = aggregate(P, 0.1)
    B = b.problem
    assert np.all(b.of_job[P.job_filter == 0] >= 0)
    assert (B.job_units * B.job_gpus_unit).sum() == (P.job_units * P.job_gpus_unit)[P.job_filter == 0].sum()
    assert B.n_jobs < P.n_jobs
    # A bucket is worth per GPU at least what each of its members is.
    j = np.flatnonzero(P.job_filter == 0)
    per_gpu = P.job_value_unit[j] / P.job_gpus_unit[j]
    bucket_per_gpu = (B.job_value_unit / B.job_gpus_unit)[b.of_job[j]]
    assert np.all(bucket_per_gpu >= per_gpu - 1e-12)


@pytest.mark.parametrize("family", SHAPED_FAMILIES)
def test_bucket_lp_never_undercuts_the_lp(family: str) -> None:
    """The bucket LP's value is at least the LP's, and its bound at least that too.

    Both masters start from every candidate column, so their first solve is each LP's optimum.
    """
    P = _generated(family)
    kernels = kernels_for(P, "reference")
    full = lp_bound(P, kernels, max_rounds=1, initial_columns=P.n_pools)
    coarse = lp_bound(P, kernels, max_rounds=1, initial_columns=P.n_pools, aggregate_width=0.1)
    assert coarse.lp_objective >= full.lp_objective - 1e-6 * abs(full.lp_objective)
    assert coarse.bound >= full.lp_objective - 1e-6 * abs(full.lp_objective)


@pytest.mark.parametrize("seed", range(8))
def test_bucket_bound_never_below_the_proven_optimum(seed: int) -> None:
    """With tiers, pairs and current pools, the bucket LP's bound stays above CP-SAT's optimum."""
    inst = random_instance(seed, 3, 10)
    exact = solve(inst.portfolio, inst.jobs, inst.pairs,
                  SolveOptions(solver="exact", backend="reference", time_limit_s=5.0))
    assert exact.summary.status == "optimal"  # 3 sites x 10 jobs: CP-SAT proves these well inside 5 s
    P = compile_problem(inst.portfolio, inst.jobs, inst.pairs)
    kernels = kernels_for(P, "reference")
    first = solve_greedy(P, SolveOptions(backend="reference"), kernels)  # sets the top tier's floor
    for incumbent in (None, first):
        lp = lp_bound(P, kernels, incumbent=incumbent, aggregate_width=0.5)
        assert lp.bound >= exact.objective - 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_dual_evaluation_agrees_on_every_backend(seed: int) -> None:
    """The Lagrangian value at random prices is the same on reference, cpu and gpu (the
    simulator here), over the original jobs and over the buckets."""
    from tests.test_kernels import _gpu_kernels  # noqa: PLC0415  (skips where no GPU path exists)

    P = _generated("neocloud", 200, 5, seed)
    rng = np.random.default_rng(seed)
    lam = rng.uniform(0, 400, P.n_sites) * (rng.random(P.n_sites) < 0.7)
    mu = rng.uniform(0, 3, P.n_pools) * (rng.random(P.n_pools) < 0.7)
    for problem in (P, aggregate(P, 0.1).problem):
        jobs = np.flatnonzero(problem.job_filter == 0).astype(np.int64)
        values = [evaluate_dual(problem, k, jobs, lam, mu)
                  for k in (kernels_for(problem, "reference"), kernels_for(problem, "cpu"), _gpu_kernels(problem))]
        assert np.allclose(values, values[0], rtol=1e-12)
