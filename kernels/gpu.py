"""CUDA kernels (Numba) on device arrays: one thread per job, or per move.

The math is not re-written here: every per-candidate and per-job function of ``kernels/cpu.py``
(the objective among them, ``placement.core.objective``'s scalar form) is recompiled as a CUDA
device function from the same Python function (``_retarget``), with one primitive swapped: the
product ``mul`` becomes ``libdevice.dmul_rn`` so NVVM cannot fuse a product and a subtraction into
an FMA. Scores are then bit-identical to the CPU and NumPy backends, and so
are tie-breaks (lowest pool index).

Layout: one thread per job, 128 threads per block. Each thread scans its job's class list
(ascending pools, the job's pair list merged alongside), keeping best/second in registers
(``best_candidate``) or inserting into its own output row (``topk``). No atomics and no
cross-thread reductions, so results do not depend on scheduling. Threads take the jobs of a
chunk in class order (a CuPy argsort of the class ids, the one sort this backend needs), so a
warp's 32 threads walk the same class list: equal trip counts, and each load of
``class_pool``/``class_speed`` is one broadcast instead of 32 scattered sectors. The per-pool and
per-site tables (~50 B per pool) stay in L1/L2.

Memory bound (device): the problem arrays, uploaded once at construction (about 70 B per job,
16 B per class-list entry, 25 B per pair, 16 B per pool, 32 B per site), plus per call the
residuals and prices (16 B per pool and per site), and per launch a chunk of at most
``CHUNK_JOBS`` jobs: 16 B (job, launch order) in and 24 B out per job for ``best_candidate``;
16 + 16·k B for ``topk``, whose chunk is capped at ``TOPK_CHUNK_BYTES``; 25 B per move plus 8 B
per job for ``evaluate_moves``. The jobs × pools matrix is never built.

Transfers: CuPy when it sees a device (so CuPy's memory pool accounts for everything), else
``numba.cuda`` (the simulator, ``NUMBA_ENABLE_CUDASIM=1``, where CuPy cannot allocate). Callers
pass NumPy or device arrays (anything with ``__cuda_array_interface__``) and get NumPy back.
"""

from __future__ import annotations

from types import FunctionType
from typing import Any

import numpy as np
from numba import config, cuda
from placement.kernels import cpu

from placement.errors import BackendUnavailableError
from placement.core import objective
from placement.core.problem import Problem

SIMULATOR = bool(config.ENABLE_CUDASIM)
JOB_CLASS = cpu.PROBLEM_ARRAYS.index("job_class")
THREADS = 32 if SIMULATOR else 128
CHUNK_JOBS = 1 << 22
TOPK_CHUNK_BYTES = 1 << 29

# cpu.py functions compiled for the device, callees before callers.
SHARED = ("_unit_mw", "_unit_score", "_allowed", "_find", "_job_scan", "_at", "_move")


def _dmul(a, b):
    return cuda.libdevice.dmul_rn(a, b)


def _retarget() -> dict[str, Any]:
    """Device versions of ``SHARED``: the same code objects, globals rebound to device functions.

    Each function keeps the globals it sees on the CPU (constants such as NO_SCORE and
    MW_TOLERANCE, np, math), with its callees and the product ``mul`` replaced by device versions.
    """
    dev = cuda.jit(device=True) if SIMULATOR else cuda.jit(device=True, forceinline=True)
    # The simulator runs Python floats: the plain product is IEEE, no FMA.
    ns: dict[str, Any] = {"mul": dev(objective.mul if SIMULATOR else _dmul)}
    for name in SHARED:
        f = getattr(cpu, name).py_func
        ns[name] = dev(FunctionType(f.__code__, {**f.__globals__, **ns}, name, f.__defaults__, f.__closure__))
    return ns


_DEV = _retarget()
_job_scan = _DEV["_job_scan"]
_move = _DEV["_move"]

# Kernel arguments are spelled out (PROBLEM_ARRAYS order) rather than passed as a tuple: plain
# array arguments are the launch path every Numba version and the simulator handle alike.


@cuda.jit
def _best_kernel(jobs, slot, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
                 a16, a17, a18, a19, a20, a21, a22, a23, a24, a25, rg, rm, sp, pp, out_pool, out_best, out_second):
    t = cuda.grid(1)
    if t < slot.shape[0]:
        i = slot[t]  # threads run jobs grouped by class; results land at the job's own position
        A = (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
             a19, a20, a21, a22, a23, a24, a25)
        # Zero-length rows: the scan keeps no top-k list.
        p, best, second = _job_scan(jobs[i], A, (rg, rm, sp, pp), out_pool[i:i], out_best[i:i])
        out_pool[i] = p
        out_best[i] = best
        out_second[i] = second


@cuda.jit
def _topk_kernel(jobs, slot, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15,
                 a16, a17, a18, a19, a20, a21, a22, a23, a24, a25, rg, rm, sp, pp, out_pool, out_score):
    t = cuda.grid(1)
    if t < slot.shape[0]:
        i = slot[t]
        A = (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
             a19, a20, a21, a22, a23, a24, a25)
        _job_scan(jobs[i], A, (rg, rm, sp, pp), out_pool[i], out_score[i])


@cuda.jit
def _moves_kernel(first, n_reloc, job_pool, move_job, move_to, swap_a, swap_b, a0, a1, a2, a3, a4,
                  a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21,
                  a22, a23, a24, a25, rg, rm, sp, pp, out_delta, out_feasible):
    i = cuda.grid(1)
    if i < out_delta.shape[0]:
        A = (a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18,
             a19, a20, a21, a22, a23, a24, a25)
        d, ok = _move(first + i, n_reloc, job_pool, move_job, move_to, swap_a, swap_b, A,
                      (rg, rm, sp, pp))
        out_delta[i] = d
        out_feasible[i] = ok


class Device:
    """Thin transfer glue: CuPy arrays when CuPy sees a device, ``numba.cuda`` arrays otherwise."""

    def __init__(self) -> None:
        self.cupy: Any = None
        if not SIMULATOR:
            if not cuda.is_available():
                raise BackendUnavailableError("backend 'gpu': Numba sees no CUDA device")
            try:
                import cupy  # noqa: PLC0415  (only this module may import CuPy)

                if cupy.cuda.is_available():
                    self.cupy = cupy
            except ImportError:
                pass

    def put(self, x: Any, dtype: Any) -> Any:
        """A Numba device array of ``dtype`` holding ``x``; device inputs of that dtype stay in place.

        Under CuPy the memory is CuPy's (its pool accounts for it), wrapped once by Numba through
        ``__cuda_array_interface__`` so that launches do not re-import every argument.
        """
        if is_device_array(x):
            if np.dtype(x.dtype) == np.dtype(dtype):
                return x if SIMULATOR else cuda.as_cuda_array(x)
            if self.cupy is None:
                x = to_host(x)
            else:
                return cuda.as_cuda_array(self.cupy.asarray(x).astype(dtype))
        x = np.ascontiguousarray(x, dtype)
        return cuda.as_cuda_array(self.cupy.asarray(x)) if self.cupy is not None else cuda.to_device(x)

    def empty(self, shape: int | tuple[int, ...], dtype: Any) -> Any:
        if self.cupy is not None:
            return cuda.as_cuda_array(self.cupy.empty(shape, dtype))
        return cuda.device_array(shape, dtype)

    @staticmethod
    def get(x: Any) -> np.ndarray:
        return to_host(x)

    def argsort_by(self, table: Any, idx: Any) -> Any:
        """``argsort(table[idx])`` on the device (CuPy only), as a Numba device array."""
        cp = self.cupy
        return cuda.as_cuda_array(cp.argsort(cp.asarray(table)[cp.asarray(idx)]))


def is_device_array(x: Any) -> bool:
    """CuPy, Numba or simulator device array (the simulator's arrays lack the interface)."""
    return hasattr(x, "__cuda_array_interface__") or (SIMULATOR and hasattr(x, "copy_to_host"))


def to_host(x: Any) -> np.ndarray:
    """Copy a device array (any of ``is_device_array``'s kinds) to a NumPy array."""
    if hasattr(x, "copy_to_host"):
        return x.copy_to_host()
    return cuda.as_cuda_array(x).copy_to_host()


def _blocks(n: int) -> int:
    return (n + THREADS - 1) // THREADS


def _size(x: Any) -> int:
    return int(x.shape[0])


class GpuKernels:
    """CUDA kernels bound to one problem: its arrays go to the device once, here."""

    name = "gpu"

    def __init__(self, problem: Problem, chunk_jobs: int = CHUNK_JOBS):
        self.problem = problem
        self.device = Device()
        self.chunk_jobs = int(chunk_jobs)
        # Empty arrays (no pairs) are padded to one element: the CSR bounds keep kernels off them.
        self.arrays = tuple(self.device.put(a if a.size else np.zeros(1, a.dtype), a.dtype)
                            for a in cpu.problem_arrays(problem))

    def _residuals(self, residual_gpus, residual_mw, site_price, pool_price) -> tuple[Any, ...]:
        def put(x: Any, dtype: Any) -> Any:  # padded like the problem arrays when empty
            return self.device.put(x if is_device_array(x) or np.size(x) else np.zeros(1, dtype), dtype)

        return (put(residual_gpus, np.int64), put(residual_mw, np.float64), put(site_price, np.float64),
                put(pool_price, np.float64))

    def _launch_order(self, d_jobs: Any, jobs: Any) -> Any:
        """Positions of a chunk's jobs sorted by class (device array), so that a warp's threads
        walk the same class list: equal trip counts and one broadcast load instead of 32."""
        if self.device.cupy is not None:
            return self.device.argsort_by(self.arrays[JOB_CLASS], d_jobs)
        host = to_host(jobs) if is_device_array(jobs) else jobs
        return self.device.put(np.argsort(self.problem.job_class[host], kind="stable"), np.int64)

    def _jobs(self, jobs: Any) -> Any:
        if not is_device_array(jobs):
            jobs = np.ascontiguousarray(jobs, np.int64)
            cpu.check_index("jobs", jobs, 0, self.problem.n_jobs)
        return jobs

    def best_candidate(self, jobs: Any, residual_gpus: Any, residual_mw: Any, site_price: Any,
                       pool_price: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per job: best fitting pool (-1 none), best reduced score, second best (-inf none)."""
        jobs = self._jobs(jobs)
        n = _size(jobs)
        out = (np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64))
        if n == 0:
            return out
        R = self._residuals(residual_gpus, residual_mw, site_price, pool_price)
        chunk = min(n, self.chunk_jobs)
        d_out = (self.device.empty(chunk, np.int64), self.device.empty(chunk, np.float64),
                 self.device.empty(chunk, np.float64))
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            d_jobs = self.device.put(jobs[a:a + m], np.int64)
            slot = self._launch_order(d_jobs, jobs[a:a + m])
            _best_kernel[_blocks(m), THREADS](d_jobs, slot, *self.arrays, *R, *(x[:m] for x in d_out))
            for host, dev in zip(out, d_out):
                host[a:a + m] = self.device.get(dev[:m])
        return out

    def topk(self, jobs: Any, residual_gpus: Any, residual_mw: Any, site_price: Any, pool_price: Any,
             k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per job: up to ``k`` best fitting pools, best first (padded -1 / -inf)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        jobs = self._jobs(jobs)
        n = _size(jobs)
        out_pool, out_score = np.empty((n, k), np.int64), np.empty((n, k), np.float64)
        if n == 0 or k == 0:
            return out_pool, out_score
        R = self._residuals(residual_gpus, residual_mw, site_price, pool_price)
        chunk = max(1, min(n, self.chunk_jobs, TOPK_CHUNK_BYTES // (16 * k)))
        d_pool, d_score = self.device.empty((chunk, k), np.int64), self.device.empty((chunk, k), np.float64)
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            d_jobs = self.device.put(jobs[a:a + m], np.int64)
            slot = self._launch_order(d_jobs, jobs[a:a + m])
            _topk_kernel[_blocks(m), THREADS](d_jobs, slot, *self.arrays, *R, d_pool[:m], d_score[:m])
            out_pool[a:a + m] = self.device.get(d_pool[:m])
            out_score[a:a + m] = self.device.get(d_score[:m])
        return out_pool, out_score

    def evaluate_moves(self, job_pool: Any, residual_gpus: Any, residual_mw: Any, move_job: Any,
                       move_to_pool: Any, swap_a: Any, swap_b: Any, site_price: Any = None,
                       pool_price: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Delta and feasibility of relocations then swaps; see ``reference.evaluate_moves``."""
        # Moves are checked on the host (bounds, dtypes): a batch is small next to the problem.
        host = [to_host(x) if is_device_array(x) else x
                for x in (job_pool, move_job, move_to_pool, swap_a, swap_b)]
        job_pool, move_job, move_to, swap_a, swap_b, sp, pp = cpu.move_inputs(
            self.problem, *host, site_price, pool_price)
        n_reloc, n = len(move_job), len(move_job) + len(swap_a)
        delta, feasible = np.empty(n, np.float64), np.empty(n, np.bool_)
        if n == 0:
            return delta, feasible
        d = self.device
        R = self._residuals(residual_gpus, residual_mw, sp, pp)
        # Padded so that no argument is empty; the kernel reads only the first n_reloc / n - n_reloc.
        moves = tuple(d.put(x if x.size else np.zeros(1, np.int64), np.int64)
                      for x in (job_pool, move_job, move_to, swap_a, swap_b))
        chunk = min(n, self.chunk_jobs)
        d_delta, d_ok = d.empty(chunk, np.float64), d.empty(chunk, np.bool_)
        for a in range(0, n, chunk):
            m = min(chunk, n - a)
            _moves_kernel[_blocks(m), THREADS](a, n_reloc, *moves, *self.arrays, *R, d_delta[:m], d_ok[:m])
            delta[a:a + m] = d.get(d_delta[:m])
            feasible[a:a + m] = d.get(d_ok[:m])
        return delta, feasible
