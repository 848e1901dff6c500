"""Kernel backends against the NumPy spec: best candidate, top-k, move evaluation, backend choice.

The GPU kernels run on Numba's CUDA simulator here when the host has no GPU (``conftest.py``),
so their instances stay tiny (≤ 12 jobs × ≤ 8 pools).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement.kernels import gpu_status, kernels_for, reference
from placement.kernels.backend import ReferenceKernels
from placement.kernels.cpu import CpuKernels

from placement.io.config import portfolio_from_dict
from placement.errors import BackendUnavailableError
from placement.model.jobs import jobs_table
from placement.core.problem import MW_TOLERANCE, Problem, compile_problem
from tests.strategies import Instance, instances, random_instance

SETTINGS = settings(max_examples=40, derandomize=True, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _gpu_kernels(P: Problem):
    """GpuKernels on the simulator or a real device; skip when neither is available."""
    from numba import config  # noqa: PLC0415

    if not config.ENABLE_CUDASIM and not gpu_status()[0]:
        pytest.skip("no CUDA device and the CUDA simulator is off")
    from placement.kernels.gpu import GpuKernels  # noqa: PLC0415

    return GpuKernels(P)


def _backends(P: Problem) -> list:
    return [CpuKernels(P), _gpu_kernels(P)]


def _compile(inst: Instance) -> Problem:
    return compile_problem(inst.portfolio, inst.jobs, inst.pairs)


def _state(P: Problem, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random residual GPUs/MW (sometimes binding) and dual prices (sometimes zero)."""
    rng = np.random.default_rng(seed)
    rg = rng.integers(0, 2 * P.pool_gpus.max(initial=1) + 1, P.n_pools)
    rm = rng.uniform(0, 1.2, P.n_sites) * np.maximum(P.site_cap_mw, 0.01)
    sp = rng.normal(0, 80, P.n_sites) * (rng.random() < 0.7)
    pp = rng.normal(0, 2, P.n_pools) * (rng.random() < 0.7)
    return rg, rm, sp, pp


def _same_scores(a: np.ndarray, b: np.ndarray) -> None:
    assert np.array_equal(np.isneginf(a), np.isneginf(b))
    assert np.allclose(a, b, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(inst=instances(max_sites=4, max_jobs=12), seed=st.integers(0, 2**31 - 1), k=st.sampled_from([1, 3, 64]))
def test_backends_match_reference(inst: Instance, seed: int, k: int) -> None:
    """best_candidate and topk: pool indices exactly, scores within tolerance, on every backend."""
    P = _compile(inst)
    rg, rm, sp, pp = _state(P, seed)
    jobs = np.random.default_rng(seed).integers(0, P.n_jobs, P.n_jobs + 2)  # any order, repeats
    want = reference.best_candidate(P, jobs, rg, rm, sp, pp)
    want_k = reference.topk_candidates(P, jobs, rg, rm, sp, pp, k)
    for kern in _backends(P):
        got = kern.best_candidate(jobs, rg, rm, sp, pp)
        assert np.array_equal(got[0], want[0]), kern.name
        _same_scores(got[1], want[1])
        _same_scores(got[2], want[2])
        got_k = kern.topk(jobs, rg, rm, sp, pp, k)
        assert np.array_equal(got_k[0], want_k[0]), kern.name
        _same_scores(got_k[1], want_k[1])


def test_cpu_scores_are_bit_identical() -> None:
    """No FMA contraction, same order of operations: CPU scores equal NumPy's to the bit."""
    for seed in range(5):
        P = _compile(random_instance(seed, 4, 12))
        rg, rm, sp, pp = _state(P, seed)
        jobs = np.arange(P.n_jobs)
        for want, got in zip(reference.best_candidate(P, jobs, rg, rm, sp, pp),
                             CpuKernels(P).best_candidate(jobs, rg, rm, sp, pp)):
            assert np.array_equal(want, got)


def _tie_problem() -> Problem:
    """One job, two identical sites: both candidates score exactly the same."""
    site = {"region": "us-tx", "grid_mw": 1.0, "pue": 1.2, "pools": {"H100": 16},
            "price_usd_per_mwh": 50.0, "carbon_kg_per_mwh": 100.0}
    portfolio = portfolio_from_dict({"name": "tie", "sites": [{"id": "a", **site}, {"id": "b", **site}]}, "tie")
    jobs = jobs_table([{"id": "j", "gpus": 8, "value_usd_per_hour": 100.0}], portfolio)
    return compile_problem(portfolio, jobs)


@pytest.mark.parametrize("backend", ["reference", "cpu", "gpu"])
def test_ties_go_to_lowest_index(backend: str) -> None:
    """Equal scores: the lower pool wins, second best equals best, top-k keeps pool order."""
    P = _tie_problem()
    kern = _gpu_kernels(P) if backend == "gpu" else kernels_for(P, backend)
    rg, rm = P.pool_gpus.copy(), P.site_cap_mw.copy()
    sp, pp = np.zeros(P.n_sites), np.zeros(P.n_pools)
    pool, best, second = kern.best_candidate(np.array([0]), rg, rm, sp, pp)
    assert pool[0] == 0 and best[0] == second[0] and np.isfinite(best[0])
    pools, scores = kern.topk(np.array([0]), rg, rm, sp, pp, 3)
    assert pools.tolist() == [[0, 1, -1]] and scores[0, 0] == scores[0, 1] and scores[0, 2] == -np.inf
    assert kern.topk(np.array([0]), rg, rm, sp, pp, 1)[0].tolist() == [[0]]  # a full row keeps the first
    # Take the tie away: the second pool is now cheaper, so it wins.
    pool, _, _ = kern.best_candidate(np.array([0]), rg, rm, sp, np.array([1.0, 0.0]))
    assert pool[0] == 1


@pytest.mark.parametrize("backend", ["reference", "cpu", "gpu"])
def test_no_fit_conventions(backend: str) -> None:
    """No fitting candidate: pool -1, best and second -inf; one fitting: second -inf; top-k padded."""
    P = _tie_problem()
    kern = _gpu_kernels(P) if backend == "gpu" else kernels_for(P, backend)
    sp, pp = np.zeros(P.n_sites), np.zeros(P.n_pools)
    rm = P.site_cap_mw.copy()
    pool, best, second = kern.best_candidate(np.array([0]), np.zeros(P.n_pools, np.int64), rm, sp, pp)
    assert (pool[0], best[0], second[0]) == (-1, -np.inf, -np.inf)
    pool, best, second = kern.best_candidate(np.array([0]), np.array([0, 16]), rm, sp, pp)
    assert pool[0] == 1 and np.isfinite(best[0]) and second[0] == -np.inf
    pools, scores = kern.topk(np.array([0]), np.array([0, 16]), rm, sp, pp, 4)
    assert pools.tolist() == [[1, -1, -1, -1]] and np.isneginf(scores[0, 1:]).all()
    pools, scores = kern.topk(np.array([0]), np.array([0, 16]), rm, sp, pp, 0)
    assert pools.shape == scores.shape == (1, 0)


@pytest.mark.parametrize("seed", range(6))
def test_topk_ordering(seed: int) -> None:
    """Rows are best first, padding only at the end, and column 0 is the best candidate."""
    P = _compile(random_instance(seed, 5, 14))
    rg, rm, sp, pp = _state(P, seed)
    jobs = np.arange(P.n_jobs)
    kern = CpuKernels(P)
    pools, scores = kern.topk(jobs, rg, rm, sp, pp, 5)
    both = np.isfinite(scores[:, 1:])
    assert (scores[:, 1:][both] <= scores[:, :-1][both]).all()
    assert np.array_equal(pools == -1, np.isneginf(scores))
    assert ((pools == -1)[:, :-1] <= (pools == -1)[:, 1:]).all()  # once padded, padded to the end
    assert np.array_equal(pools[:, 0], kern.best_candidate(jobs, rg, rm, sp, pp)[0])


# --- move evaluation ---------------------------------------------------------------------------


def _assignment(P: Problem, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random feasible assignment of training jobs and the residuals it leaves."""
    rg = P.pool_gpus.copy()
    rm = P.site_cap_mw.copy()
    job_pool = np.full(P.n_jobs, -1, np.int64)
    zero_s, zero_p = np.zeros(P.n_sites), np.zeros(P.n_pools)
    for j in rng.permutation(P.n_jobs):
        if P.job_kind[j] != 0 or rng.random() < 0.2:
            continue
        pools, speed = P.candidates(j)
        if not len(pools):
            continue
        jj = np.full(len(pools), j)
        sc = reference.score_candidates(P, jj, pools, speed, rg, rm, zero_s, zero_p)
        fit = np.flatnonzero(np.isfinite(sc))
        if fit.size:
            p = int(pools[rng.choice(fit)])
            job_pool[j] = p
            rg[p] -= P.job_gpus_unit[j]
            rm[P.pool_site[p]] -= reference.unit_terms(P, jj[:1], np.array([p]), speed[:1])["mw"][0]
    return job_pool, rg, rm


def _objective_and_usage(P: Problem, job_pool: np.ndarray, sp: np.ndarray, pp: np.ndarray):
    """Σ reduced net $/h of placed training jobs, and GPUs per pool / MW per site they use."""
    j = np.flatnonzero((job_pool >= 0) & (P.job_kind == 0))
    p = job_pool[j]
    t = reference.unit_terms(P, j, p, reference.candidate_speed(P, j, p))
    s = P.pool_site[p]
    net = (t["value"] - t["energy"] - t["carbon"] - t["pair"] - t["migration"]
           - t["mw"] * sp[s] - pp[p] * P.job_gpus_unit[j])
    gpus = np.bincount(p, weights=P.job_gpus_unit[j], minlength=P.n_pools)
    mw = np.bincount(s, weights=t["mw"], minlength=P.n_sites)
    return net.sum(), gpus, mw


def _oracle(P: Problem, job_pool, rg, rm, changes: list[tuple[int, int]], sp, pp) -> tuple[float, bool]:
    """Apply the changes (job, new pool) and recompute everything from scratch."""
    if any(P.job_kind[j] != 0 for j, _ in changes):
        return np.nan, False
    after = job_pool.copy()
    for j, p in changes:
        after[j] = p
    if np.array_equal(after, job_pool):
        return 0.0, True
    for j, p in list(changes) + [(j, job_pool[j]) for j, _ in changes]:
        if p >= 0 and p not in P.candidates(j)[0]:
            return np.nan, False
    ok = True
    for j, p in changes:
        if p == job_pool[j]:
            continue
        if p < 0:
            ok &= not P.job_required[j] and not P.job_pinned[j]
        else:
            speed = reference.candidate_speed(P, np.array([j]), np.array([p]))
            big = np.full(P.n_pools, 10**9)
            ok &= bool(np.isfinite(reference.score_candidates(
                P, np.array([j]), np.array([p]), speed, big, np.full(P.n_sites, 1e9), sp, pp))[0])
    obj0, g0, m0 = _objective_and_usage(P, job_pool, sp, pp)
    obj1, g1, m1 = _objective_and_usage(P, after, sp, pp)
    ok &= bool((rg + g0 - g1 >= 0).all() and (rm + m0 - m1 >= -MW_TOLERANCE).all())
    return obj1 - obj0, ok


def _random_moves(P: Problem, job_pool: np.ndarray, rng: np.random.Generator):
    n = 10
    training = np.flatnonzero(P.job_kind == 0)

    def some_jobs() -> np.ndarray:  # mostly training jobs: inference services are never movable
        any_job = rng.integers(0, P.n_jobs, n)
        return np.where((rng.random(n) < 0.8) & (training.size > 0),
                        rng.choice(training, n) if training.size else any_job, any_job)

    move_job = some_jobs()
    move_to = np.where(rng.random(n) < 0.2, -1, rng.integers(0, P.n_pools, n))
    for i in range(n):  # mostly pools the job may use, so that feasibility is often true
        pools = P.candidates(move_job[i])[0]
        if len(pools) and rng.random() < 0.6:
            move_to[i] = rng.choice(pools)
    move_to[0] = job_pool[move_job[0]]  # a no-op
    swap_a, swap_b = some_jobs(), some_jobs()
    swap_b[0] = swap_a[0]
    return move_job, move_to, swap_a, swap_b


@SETTINGS
@given(inst=instances(max_sites=4, max_jobs=12), seed=st.integers(0, 2**31 - 1), priced=st.booleans())
def test_evaluate_moves(inst: Instance, seed: int, priced: bool) -> None:
    """Delta equals the objective recomputed before/after; feasibility matches; backends agree."""
    P = _compile(inst)
    rng = np.random.default_rng(seed)
    job_pool, rg, rm = _assignment(P, rng)
    move_job, move_to, swap_a, swap_b = _random_moves(P, job_pool, rng)
    sp = rng.normal(0, 80, P.n_sites) if priced else None
    pp = rng.normal(0, 2, P.n_pools) if priced else None
    delta, feasible = reference.evaluate_moves(P, job_pool, rg, rm, move_job, move_to, swap_a, swap_b, sp, pp)
    zs = np.zeros(P.n_sites) if sp is None else sp
    zp = np.zeros(P.n_pools) if pp is None else pp
    changes = [[(a, p)] for a, p in zip(move_job, move_to)]
    changes += [[(a, job_pool[b]), (b, job_pool[a])] for a, b in zip(swap_a, swap_b)]
    for i, ch in enumerate(changes):
        want_d, want_ok = _oracle(P, job_pool, rg, rm, ch, zs, zp)
        assert feasible[i] == want_ok, (i, ch)
        assert np.isnan(want_d) == np.isnan(delta[i]) and (np.isnan(want_d) or np.isclose(delta[i], want_d)), (i, ch)
    for kern in _backends(P):
        d, ok = kern.evaluate_moves(job_pool, rg, rm, move_job, move_to, swap_a, swap_b, sp, pp)
        assert np.array_equal(ok, feasible), kern.name
        assert np.allclose(d, delta, rtol=1e-12, atol=1e-9, equal_nan=True), kern.name


def test_moves_no_op_and_unplace_rules() -> None:
    """A job moved to where it is, or swapped with itself, is a feasible 0; required jobs stay placed."""
    inst = random_instance(3, 3, 10, with_required=True)
    P = _compile(inst)
    job_pool, rg, rm = _assignment(P, np.random.default_rng(0))
    placed = np.flatnonzero(job_pool >= 0)
    assert placed.size
    j = int(placed[0])
    for kern in [ReferenceKernels(P), *_backends(P)]:
        d, ok = kern.evaluate_moves(job_pool, rg, rm, [j, j], [job_pool[j], -1], [j], [j])
        assert d[0] == 0.0 and ok[0] and d[2] == 0.0 and ok[2]
        assert ok[1] == (not P.job_required[j] and not P.job_pinned[j])
        assert np.isclose(d[1], -_objective_and_usage(P, np.where(np.arange(P.n_jobs) == j, job_pool, -1),
                                                      np.zeros(P.n_sites), np.zeros(P.n_pools))[0])


# --- backend selection and the device glue ----------------------------------------------------


def test_backend_selection(caplog: pytest.LogCaptureFixture) -> None:
    """auto → cpu here (and says so); gpu without a device is an error; reference works."""
    if gpu_status()[0]:
        pytest.skip("this host has a usable GPU")
    P = _tie_problem()
    with caplog.at_level(logging.INFO, logger="placement"):
        kern = kernels_for(P, "auto")
    assert kern.name == "cpu" and "backend auto -> cpu" in caplog.text
    with pytest.raises(BackendUnavailableError, match="gpu"):
        kernels_for(P, "gpu")
    assert kernels_for(P, "reference").best_candidate(
        np.array([0]), P.pool_gpus, P.site_cap_mw, np.zeros(2), np.zeros(2))[0][0] == 0


def test_bad_indices_raise() -> None:
    """Kernels trust indices, so the boundary checks them."""
    P = _tie_problem()
    z = np.zeros(P.n_pools)
    with pytest.raises(IndexError):
        CpuKernels(P).best_candidate(np.array([1]), P.pool_gpus, P.site_cap_mw, np.zeros(P.n_sites), z)
    with pytest.raises(IndexError):
        CpuKernels(P).evaluate_moves(np.full(1, -1), P.pool_gpus, P.site_cap_mw, [5], [0], [], [])


def test_gpu_accepts_device_arrays() -> None:
    """Device inputs (CuPy on a GPU, numba.cuda arrays on the simulator) give the NumPy result."""
    from numba import cuda  # noqa: PLC0415

    P = _compile(random_instance(7, 3, 8))
    kern = _gpu_kernels(P)
    rg, rm, sp, pp = _state(P, 7)
    jobs = np.arange(P.n_jobs)
    want = kern.best_candidate(jobs, rg, rm, sp, pp)
    got = kern.best_candidate(*(cuda.to_device(np.ascontiguousarray(x)) for x in (jobs, rg, rm, sp, pp)))
    for w, g in zip(want, got):
        assert isinstance(g, np.ndarray) and np.array_equal(w, g)


@pytest.mark.skipif(not gpu_status()[0], reason="needs a CUDA device CuPy can use")
def test_cupy_glue_on_device() -> None:
    """The CuPy-only glue: upload, dtype conversion on the device, download, CuPy inputs."""
    import cupy  # noqa: PLC0415
    from placement.kernels.gpu import Device, GpuKernels  # noqa: PLC0415

    dev = Device()
    assert dev.cupy is not None
    x = dev.put(np.arange(5), np.int64)
    assert np.array_equal(dev.get(x), np.arange(5))
    y = dev.put(cupy.arange(5, dtype=cupy.int32), np.int64)
    assert y.dtype == np.int64 and np.array_equal(dev.get(y), np.arange(5))
    table, idx = np.array([3, 1, 2, 0]), np.array([0, 1, 2, 3, 1])
    order = dev.get(dev.argsort_by(dev.put(table, np.int64), dev.put(idx, np.int64)))
    assert sorted(order.tolist()) == list(range(5)) and (np.diff(table[idx][order]) >= 0).all()
    P = _compile(random_instance(11, 4, 12))
    rg, rm, sp, pp = _state(P, 11)
    jobs = np.arange(P.n_jobs)
    want = reference.best_candidate(P, jobs, rg, rm, sp, pp)
    got = GpuKernels(P).best_candidate(*(cupy.asarray(a) for a in (jobs, rg, rm, sp, pp)))
    assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1])
