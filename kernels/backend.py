"""Backend choice and the kernel interface every backend implements."""

from __future__ import annotations

import functools
import logging
from enum import Enum
from typing import Protocol

import numpy as np

from placement.core import clock
from placement.errors import BackendUnavailableError
from placement.kernels import reference
from placement.core.problem import Problem

log = logging.getLogger("placement")


class Backend(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    GPU = "gpu"
    REFERENCE = "reference"


class Kernels(Protocol):
    """Kernels bound to one problem (the GPU backend uploads its arrays once, at binding)."""

    name: str

    def best_candidate(self, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                       site_price: np.ndarray, pool_price: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per job: best fitting pool (-1 none), best reduced score, second-best score."""
        ...

    def topk(self, jobs: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
             site_price: np.ndarray, pool_price: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per job: up to k best fitting pools, best first (padded -1 / -inf)."""
        ...

    def evaluate_moves(self, job_pool: np.ndarray, residual_gpus: np.ndarray, residual_mw: np.ndarray,
                       move_job: np.ndarray, move_to_pool: np.ndarray, swap_a: np.ndarray,
                       swap_b: np.ndarray, site_price: np.ndarray | None = None,
                       pool_price: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per move (relocations, then swaps): objective delta ($/h) and feasibility.

        Contract: ``reference.evaluate_moves`` (training jobs only; net delta unless prices given).
        """
        ...


@functools.cache
def gpu_status() -> tuple[bool, str]:
    """(usable, description): a CUDA device CuPy can use, or why there is none."""
    try:
        import cupy  # noqa: PLC0415  (imported lazily: `import placement` must work without CUDA)
    except ImportError:
        return False, "CuPy is not installed (pip install 'placement[gpu]')"
    try:
        if not cupy.cuda.is_available():
            return False, "CuPy sees no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
        return True, props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    except Exception as exc:  # driver/runtime missing: report, do not crash
        return False, f"CUDA not usable: {exc}"


def resolve_backend(name: str | Backend) -> Backend:
    """Turn ``auto`` into a concrete backend; reject ``gpu`` when no device is usable."""
    backend = Backend(name)
    if backend is Backend.AUTO:
        ok, why = gpu_status()
        backend = Backend.GPU if ok else Backend.CPU
        log.info("backend auto -> %s (%s)", backend.value, why)
    elif backend is Backend.GPU:
        ok, why = gpu_status()
        if not ok:
            raise BackendUnavailableError(f"backend 'gpu' requested but unavailable: {why}")
    return backend


def kernels_for(problem: Problem, backend: str | Backend = Backend.AUTO) -> Kernels:
    """Kernels of the resolved backend, bound to ``problem``, counting their work on the clock."""
    backend = resolve_backend(backend)
    if backend is Backend.REFERENCE:
        return Metered(ReferenceKernels(problem), problem)
    if backend is Backend.CPU:
        from placement.kernels.cpu import CpuKernels  # noqa: PLC0415

        return Metered(CpuKernels(problem), problem)
    from placement.kernels.gpu import GpuKernels  # noqa: PLC0415

    return Metered(GpuKernels(problem), problem)


class Metered:
    """A backend's kernels that count their work on the solvers' clock (``placement.core.clock``).

    A pass over n jobs counts n times the mean candidates per job: the same figure on every
    backend and machine, so deterministic mode's budgets end at the same pass everywhere.
    """

    def __init__(self, inner: Kernels, problem: Problem):
        self.inner, self.name = inner, inner.name
        sizes = np.diff(problem.class_ptr)
        self._per_job = float(sizes[problem.job_class].mean()) if problem.n_jobs else 0.0

    def _count(self, n_jobs: int) -> None:
        clock.tick(n_jobs * self._per_job / clock.KERNEL_CANDIDATES_PER_S)

    def best_candidate(self, jobs, residual_gpus, residual_mw, site_price, pool_price):
        self._count(len(jobs))
        return self.inner.best_candidate(jobs, residual_gpus, residual_mw, site_price, pool_price)

    def topk(self, jobs, residual_gpus, residual_mw, site_price, pool_price, k):
        self._count(len(jobs))
        return self.inner.topk(jobs, residual_gpus, residual_mw, site_price, pool_price, k)

    def evaluate_moves(self, job_pool, residual_gpus, residual_mw, move_job, move_to_pool, swap_a, swap_b,
                       site_price=None, pool_price=None):
        clock.tick((len(move_job) + len(swap_a)) / clock.KERNEL_CANDIDATES_PER_S)
        return self.inner.evaluate_moves(job_pool, residual_gpus, residual_mw, move_job, move_to_pool, swap_a,
                                         swap_b, site_price, pool_price)


class ReferenceKernels:
    """The NumPy spec bound to a problem."""

    name = Backend.REFERENCE.value

    def __init__(self, problem: Problem):
        self.problem = problem

    def best_candidate(self, jobs, residual_gpus, residual_mw, site_price, pool_price):
        return reference.best_candidate(self.problem, jobs, residual_gpus, residual_mw, site_price, pool_price)

    def topk(self, jobs, residual_gpus, residual_mw, site_price, pool_price, k):
        return reference.topk_candidates(self.problem, jobs, residual_gpus, residual_mw, site_price, pool_price, k)

    def evaluate_moves(self, job_pool, residual_gpus, residual_mw, move_job, move_to_pool, swap_a, swap_b,
                       site_price=None, pool_price=None):
        return reference.evaluate_moves(self.problem, job_pool, residual_gpus, residual_mw, move_job,
                                        move_to_pool, swap_a, swap_b, site_price, pool_price)
