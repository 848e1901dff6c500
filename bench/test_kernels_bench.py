"""Micro-benchmarks of the kernels on a small instance: ``pytest bench/ --benchmark-only``.

Timings are reported, never asserted; the full-size runs are ``python -m bench.kernels``.
"""

from __future__ import annotations

import numpy as np
import pytest
from placement.kernels import gpu_status, kernels_for

from bench.kernels import build_problem
from placement.core.problem import Problem

N_JOBS, N_SITES = 5_000, 50


@pytest.fixture(scope="module")
def problem() -> Problem:
    return build_problem(N_JOBS, N_SITES, seed=0)[0]


@pytest.fixture(scope="module")
def state(problem: Problem) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    P = problem
    return (np.arange(P.n_jobs), P.pool_gpus.copy(), P.site_cap_mw.copy(),
            rng.uniform(0, 20, P.n_sites), rng.uniform(0, 0.1, P.n_pools))


def _moves(P: Problem, n: int = 10_000) -> tuple[np.ndarray, ...]:
    """A current assignment (each training job on its first class pool) and random moves."""
    rng = np.random.default_rng(1)
    first = P.class_pool[np.minimum(P.class_ptr[P.job_class], len(P.class_pool) - 1)]
    job_pool = np.where((P.job_kind == 0) & (np.diff(P.class_ptr)[P.job_class] > 0), first, -1)
    move_job = rng.integers(0, P.n_jobs, n)
    lo, hi = P.class_ptr[P.job_class[move_job]], P.class_ptr[P.job_class[move_job] + 1]
    move_to = P.class_pool[np.minimum(lo + rng.integers(0, np.maximum(hi - lo, 1)), len(P.class_pool) - 1)]
    return job_pool, move_job, move_to, rng.integers(0, P.n_jobs, n), rng.integers(0, P.n_jobs, n)


BACKENDS = ["reference", "cpu", pytest.param("gpu", marks=pytest.mark.skipif(
    not gpu_status()[0], reason="needs a CUDA device CuPy can use"))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_best_candidate(benchmark, problem, state, backend):
    """One best-candidate pass over every job."""
    kern = kernels_for(problem, backend)
    kern.best_candidate(*state)  # JIT / upload outside the timing
    benchmark(kern.best_candidate, *state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk16(benchmark, problem, state, backend):
    """Top-16 candidates of every job."""
    kern = kernels_for(problem, backend)
    kern.topk(*state, 16)
    benchmark(kern.topk, *state, 16)


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_moves(benchmark, problem, state, backend):
    """10,000 relocations and 10,000 swaps."""
    kern = kernels_for(problem, backend)
    job_pool, move_job, move_to, swap_a, swap_b = _moves(problem)
    args = (job_pool, state[1], state[2], move_job, move_to, swap_a, swap_b)
    kern.evaluate_moves(*args)
    benchmark(kern.evaluate_moves, *args)
