"""Numba CPU kernels: ``njit(parallel=True, cache=True)`` with ``prange`` over jobs (or moves).

One source for the math on every compiled backend. The per-candidate objective (``_unit_mw``,
``_unit_score``) is ``placement.core.objective``'s scalar form, compiled here with its product
``mul`` bound to ``_mul``; the per-candidate rules (``_allowed``) and the per-job scan and move
(``_job_scan``, ``_move``) are plain ``@njit`` functions. ``kernels/gpu.py`` recompiles *the same
Python functions* as CUDA device functions (``cuda.jit(device=True)`` of each ``py_func`` with its
globals rebound to the device versions). The only primitive that differs is the product: on the
GPU it is ``libdevice.dmul_rn``, because NVVM may contract ``a * b - c`` into an FMA (its default,
fastmath or not), which changes the last bit of a score and so could flip near-ties between
backends. With every product rounded on its own, scores are bit-identical to NumPy's on all
backends, and so are tie-breaks (lowest pool index wins).

Numba validates each cached kernel against this file's contents only: after an edit to the
scalar objective, delete this file's cache (``__pycache__/cpu.*.nbi``/``.nbc``), or the kernels
keep inlining the old math.

Work and memory: one pass streams each job's class list once (O(candidates) time) and keeps
O(1) state per job (``best_candidate``) or writes straight into the caller's ``k``-wide output
row (``topk``); class lists are read in order, which hardware prefetchers stream well (running
jobs in class order, as the GPU does, measured no faster here). Memory beyond the bound problem
is the outputs only: 24 B per job for ``best_candidate``, 16·k B per job for ``topk``, 9 B per
move; the jobs × pools matrix is never built, so there is nothing to chunk beyond the
per-thread ``prange`` blocks.
"""

from __future__ import annotations

import contextlib
from types import FunctionType

import numba
import numpy as np
from numba import njit, prange

from placement.core import objective
from placement.core.problem import MW_TOLERANCE, Problem

NO_SCORE = -np.inf

# The problem arrays every kernel reads, in the order of the tuple ``A`` (the GPU backend uploads
# exactly these, once). The tuple unpacks at the top of ``_job_scan``, ``_at`` and ``_move`` follow it.
PROBLEM_ARRAYS: tuple[str, ...] = (
    "class_ptr", "class_pool", "class_speed",
    "pair_ptr", "pair_pool", "pair_extra_usd_per_hour", "pair_it_mw", "pair_forbidden",
    "job_class", "job_kind", "job_gpus_unit", "job_value_unit", "job_kw_per_gpu", "job_pinned",
    "job_required", "job_current_pool", "job_migration_usd_per_hour", "job_filter",
    "pool_site", "pool_kw_per_gpu",
    "site_pue", "site_energy_usd_per_mwh", "site_carbon_usd_per_mwh", "site_max_gang",
    "current_ptr", "current_pool",
)


def problem_arrays(problem: Problem) -> tuple[np.ndarray, ...]:
    """The kernels' view of a problem: contiguous arrays in ``PROBLEM_ARRAYS`` order."""
    return tuple(np.ascontiguousarray(getattr(problem, name)) for name in PROBLEM_ARRAYS)


# --- per-candidate math (the score formula lives in placement.core.objective) -------------------

_mul = njit(cache=True)(objective.mul)  # the GPU rebinds ``mul`` to ``dmul_rn``: no FMA contraction


def _with_mul(f: FunctionType) -> FunctionType:
    """``f`` (an ``objective`` scalar function) with its global ``mul`` bound to the compiled ``_mul``."""
    return FunctionType(f.__code__, {**f.__globals__, "mul": _mul}, f.__name__, f.__defaults__, f.__closure__)


_unit_mw = njit(cache=True)(_with_mul(objective.unit_mw_scalar))
_unit_score = njit(cache=True)(_with_mul(objective.unit_score_scalar))


@njit(cache=True)
def _allowed(gpus, inference, pinned, cur, p, max_gang, forbidden):
    """Per-job rules the class list does not cover: gang size, forbidden pair, pinned."""
    return (inference or gpus <= max_gang) and not forbidden and (not pinned or p == cur)


@njit(cache=True, inline="always")
def _find(arr, lo, hi, x):
    """Index of ``x`` in the ascending run ``arr[lo:hi]``, or -1 (binary search)."""
    end = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if arr[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo if (lo < end and arr[lo] == x) else -1


# --- the per-job scan ----------------------------------------------------------------------------
# Arrays are unpacked once per job and the candidate loop calls only scalar functions: passing
# arrays into a per-candidate call would cost NRT reference counting (atomics) per candidate.


@njit(cache=True)
def _job_scan(j, A, R, row_pool, row_score):
    """Scan job ``j``'s candidates: (best pool or -1, best, second best), ties to the lowest index.

    Also fills ``row_pool``/``row_score`` (length k, may be 0) with the k best, best first, padded
    -1/-inf. Candidates that do not fit score -inf and are never kept.
    """
    (class_ptr, class_pool, class_speed, pair_ptr, pair_pool, pair_extra, pair_it_mw, pair_forbidden,
     job_class, job_kind, job_gpus, job_value, job_kw, job_pinned, _, job_cur, job_mig, job_filter,
     pool_site, pool_kw, site_pue, site_energy, site_carbon, site_max_gang, cur_ptr, cur_pool) = A
    residual_gpus, residual_mw, site_price, pool_price = R
    k = row_pool.shape[0]
    for t in range(k):
        row_pool[t] = -1
        row_score[t] = NO_SCORE
    best_pool = -1
    best = NO_SCORE
    second = NO_SCORE
    if job_filter[j] != 0:
        return best_pool, best, second
    gpus, kw_job, value_unit = job_gpus[j], job_kw[j], job_value[j]
    cur, mig, inference, pinned = job_cur[j], job_mig[j], job_kind[j] == 1, job_pinned[j]
    q, qe = pair_ptr[j], pair_ptr[j + 1]  # the job's pair list, merged alongside (both ascending)
    m = 0
    c = job_class[j]
    for i in range(class_ptr[c], class_ptr[c + 1]):
        p = class_pool[i]
        while q < qe and pair_pool[q] < p:
            q += 1
        pe = q if (q < qe and pair_pool[q] == p) else -1
        if gpus > residual_gpus[p]:  # cheapest rejection first
            continue
        s = pool_site[p]
        if not _allowed(gpus, inference, pinned, cur, p, site_max_gang[s], pe >= 0 and pair_forbidden[pe]):
            continue
        mw = _unit_mw(gpus, kw_job, pool_kw[p], site_pue[s], pair_it_mw[pe] if pe >= 0 else np.nan)
        if not mw <= residual_mw[s] + MW_TOLERANCE:
            continue
        moved = cur >= 0 and _find(cur_pool, cur_ptr[j], cur_ptr[j + 1], p) < 0
        sc = _unit_score(value_unit, class_speed[i], gpus, moved, mig, mw, site_energy[s],
                         site_carbon[s], pair_extra[pe] if pe >= 0 else 0.0, site_price[s], pool_price[p])
        if sc > best:  # strict: an equal later candidate never displaces the earlier one
            second = best
            best = sc
            best_pool = p
        elif sc > second:
            second = sc
        if k > 0 and (m < k or sc > row_score[k - 1]):  # top-k insertion; equal scores keep order
            pos = m if m < k else k - 1
            m = min(m + 1, k)
            while pos > 0 and row_score[pos - 1] < sc:
                row_score[pos] = row_score[pos - 1]
                row_pool[pos] = row_pool[pos - 1]
                pos -= 1
            row_score[pos] = sc
            row_pool[pos] = p
    return best_pool, best, second


# --- move evaluation ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def _at(j, p, A, site_price, pool_price):
    """Job ``j`` placed at pool ``p`` >= 0: (p in j's class list, allowed, reduced score, MW)."""
    (class_ptr, class_pool, class_speed, pair_ptr, pair_pool, pair_extra, pair_it_mw, pair_forbidden,
     job_class, job_kind, job_gpus, job_value, job_kw, job_pinned, _, job_cur, job_mig, job_filter,
     pool_site, pool_kw, site_pue, site_energy, site_carbon, site_max_gang, cur_ptr, cur_pool) = A
    c = job_class[j]
    i = _find(class_pool, class_ptr[c], class_ptr[c + 1], p)
    if i < 0:
        return False, False, 0.0, 0.0
    pe = _find(pair_pool, pair_ptr[j], pair_ptr[j + 1], p)
    s = pool_site[p]
    gpus, cur = job_gpus[j], job_cur[j]
    mw = _unit_mw(gpus, job_kw[j], pool_kw[p], site_pue[s], pair_it_mw[pe] if pe >= 0 else np.nan)
    moved = cur >= 0 and _find(cur_pool, cur_ptr[j], cur_ptr[j + 1], p) < 0
    score = _unit_score(job_value[j], class_speed[i], gpus, moved, job_mig[j], mw,
                        site_energy[s], site_carbon[s], pair_extra[pe] if pe >= 0 else 0.0,
                        site_price[s], pool_price[p])
    ok = job_filter[j] == 0 and _allowed(gpus, job_kind[j] == 1, job_pinned[j], cur, p, site_max_gang[s],
                                         pe >= 0 and pair_forbidden[pe])
    return True, ok, score, mw


@njit(cache=True, inline="always")
def _move(i, n_reloc, job_pool, move_job, move_to, swap_a, swap_b, A, R):
    """(objective delta, feasible) of move ``i``: relocation ``i`` or swap ``i - n_reloc``."""
    (_, _, _, _, _, _, _, _, _, job_kind, job_gpus, _, _, job_pinned, job_required, _, _, _,
     pool_site, _, _, _, _, _, _, _) = A
    residual_gpus, residual_mw, site_price, pool_price = R
    n_pools = pool_site.shape[0]
    if i < n_reloc:
        a = move_job[i]
        b = -1
        new_a = move_to[i]
    else:
        a = swap_a[i - n_reloc]
        b = swap_b[i - n_reloc]
        new_a = job_pool[b]
    old_a = job_pool[a]
    old_b = job_pool[b] if b >= 0 else -1
    new_b = old_a if b >= 0 else -1
    if job_kind[a] != 0 or (b >= 0 and job_kind[b] != 0):  # inference services: not movable here
        return np.nan, False
    if (new_a == old_a and new_b == old_b) or a == b:  # no-op
        return 0.0, True
    delta_new = 0.0
    delta_old = 0.0
    feasible = True
    mw_old_a = mw_new_a = mw_old_b = mw_new_b = 0.0
    for t in range(2 if b >= 0 else 1):
        x = a if t == 0 else b
        old = old_a if t == 0 else old_b
        new = new_a if t == 0 else new_b
        if old < -1 or old >= n_pools or new < -1 or new >= n_pools:
            return np.nan, False
        mw_old = mw_new = 0.0
        if old >= 0:
            known, _, score, mw_old = _at(x, old, A, site_price, pool_price)
            if not known:  # current assignment outside the job's class list: undefined
                return np.nan, False
            delta_old += score
        if new >= 0:
            known, ok, score, mw_new = _at(x, new, A, site_price, pool_price)
            if not known:
                return np.nan, False
            delta_new += score
            feasible = feasible and ok
        else:  # unplacing: never for required or pinned jobs
            feasible = feasible and not job_required[x] and not job_pinned[x]
        if t == 0:
            mw_old_a, mw_new_a = mw_old, mw_new
        else:
            mw_old_b, mw_new_b = mw_old, mw_new
    ga = job_gpus[a]
    gb = job_gpus[b] if b >= 0 else 0
    # Capacity at each target: what arrives there minus what leaves it must fit the residual.
    for t in range(2 if b >= 0 else 1):
        x = new_a if t == 0 else new_b
        if x < 0:
            continue
        used = (ga if new_a == x else 0) + (gb if new_b == x else 0)
        freed = (ga if old_a == x else 0) + (gb if old_b == x else 0)
        if used - freed > residual_gpus[x]:
            feasible = False
        s = pool_site[x]
        used_mw = ((mw_new_a if new_a >= 0 and pool_site[new_a] == s else 0.0)
                   + (mw_new_b if new_b >= 0 and pool_site[new_b] == s else 0.0))
        freed_mw = ((mw_old_a if old_a >= 0 and pool_site[old_a] == s else 0.0)
                    + (mw_old_b if old_b >= 0 and pool_site[old_b] == s else 0.0))
        if not used_mw - freed_mw <= residual_mw[s] + MW_TOLERANCE:
            feasible = False
    return delta_new - delta_old, feasible


# --- launchers -----------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _best_kernel(jobs, A, R, out_pool, out_best, out_second):
    for i in prange(jobs.shape[0]):
        # Zero-length rows: the scan keeps no top-k list.
        out_pool[i], out_best[i], out_second[i] = _job_scan(jobs[i], A, R, out_pool[i:i], out_best[i:i])


@njit(parallel=True, cache=True)
def _topk_kernel(jobs, A, R, out_pool, out_score):
    for i in prange(jobs.shape[0]):
        _job_scan(jobs[i], A, R, out_pool[i], out_score[i])


@njit(parallel=True, cache=True)
def _moves_kernel(job_pool, move_job, move_to, swap_a, swap_b, A, R, out_delta, out_feasible):
    n_reloc = move_job.shape[0]
    for i in prange(n_reloc + swap_a.shape[0]):
        out_delta[i], out_feasible[i] = _move(i, n_reloc, job_pool, move_job, move_to, swap_a, swap_b, A, R)


# Below this many jobs a launch runs on the calling thread: waking a worker pool costs more than
# the scan, and on a loaded machine (the greedy loop re-scores single jobs) it can cost a millisecond.
SERIAL_BELOW = 64


@contextlib.contextmanager
def _threads_for(n_items: int):
    """Run the enclosed launch single-threaded when it is too small to share."""
    if n_items >= SERIAL_BELOW:
        yield
        return
    saved = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(saved)


def _ints(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.int64)


def _floats(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float64)


def check_index(name: str, x: np.ndarray, lo: int, hi: int) -> None:
    """Kernels trust indices (an out-of-range one would read foreign memory): check at the boundary."""
    if x.size and (int(x.min()) < lo or int(x.max()) >= hi):
        raise IndexError(f"{name} must lie in [{lo}, {hi}), got values in [{x.min()}, {x.max()}]")


def move_inputs(problem: Problem, job_pool, move_job, move_to_pool, swap_a, swap_b,
                site_price, pool_price) -> tuple[np.ndarray, ...]:
    """Normalise and bounds-check ``evaluate_moves`` arguments (None prices: zeros, net delta)."""
    n = problem.n_jobs
    job_pool, move_job, move_to_pool = _ints(job_pool), _ints(move_job), _ints(move_to_pool)
    swap_a, swap_b = _ints(swap_a), _ints(swap_b)
    if len(job_pool) != n or len(move_job) != len(move_to_pool) or len(swap_a) != len(swap_b):
        raise ValueError("job_pool needs one entry per job; move_job/move_to_pool and swap_a/swap_b pair up")
    for name, x in (("move_job", move_job), ("swap_a", swap_a), ("swap_b", swap_b)):
        check_index(name, x, 0, n)
    site_price = np.zeros(problem.n_sites) if site_price is None else _floats(site_price)
    pool_price = np.zeros(problem.n_pools) if pool_price is None else _floats(pool_price)
    return job_pool, move_job, move_to_pool, swap_a, swap_b, site_price, pool_price


class CpuKernels:
    """Numba CPU kernels bound to one problem (NumPy in, NumPy out)."""

    name = "cpu"

    def __init__(self, problem: Problem):
        self.problem = problem
        self.arrays = problem_arrays(problem)

    def _residuals(self, residual_gpus, residual_mw, site_price, pool_price) -> tuple[np.ndarray, ...]:
        return _ints(residual_gpus), _floats(residual_mw), _floats(site_price), _floats(pool_price)

    def best_candidate(self, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                       site_price: np.ndarray, pool_price: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per job: best fitting pool (-1 none), best reduced score, second best (-inf none)."""
        jobs = _ints(jobs)
        check_index("jobs", jobs, 0, self.problem.n_jobs)
        out_pool = np.empty(len(jobs), np.int64)
        out_best = np.empty(len(jobs), np.float64)
        out_second = np.empty(len(jobs), np.float64)
        R = self._residuals(residual_gpus, residual_mw, site_price, pool_price)
        with _threads_for(len(jobs)):
            _best_kernel(jobs, self.arrays, R, out_pool, out_best, out_second)
        return out_pool, out_best, out_second

    def topk(self, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
             site_price: np.ndarray, pool_price: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per job: up to ``k`` best fitting pools, best first (padded -1 / -inf)."""
        jobs = _ints(jobs)
        check_index("jobs", jobs, 0, self.problem.n_jobs)
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        out_pool = np.empty((len(jobs), k), np.int64)
        out_score = np.empty((len(jobs), k), np.float64)
        if k:
            R = self._residuals(residual_gpus, residual_mw, site_price, pool_price)
            with _threads_for(len(jobs)):
                _topk_kernel(jobs, self.arrays, R, out_pool, out_score)
        return out_pool, out_score

    def evaluate_moves(self, job_pool: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                       move_job: np.ndarray, move_to_pool: np.ndarray, swap_a: np.ndarray,
                       swap_b: np.ndarray, site_price: np.ndarray | None = None,
                       pool_price: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Delta and feasibility of relocations then swaps; see ``reference.evaluate_moves``."""
        job_pool, move_job, move_to, swap_a, swap_b, sp, pp = move_inputs(
            self.problem, job_pool, move_job, move_to_pool, swap_a, swap_b, site_price, pool_price)
        n = len(move_job) + len(swap_a)
        out_delta = np.empty(n, np.float64)
        out_feasible = np.empty(n, np.bool_)
        R = (_ints(residual_gpus), _floats(residual_mw), sp, pp)
        _moves_kernel(job_pool, move_job, move_to, swap_a, swap_b, self.arrays, R, out_delta, out_feasible)
        return out_delta, out_feasible
