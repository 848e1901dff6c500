"""Run independent tasks in parallel: a local process pool (the default) or Ray tasks.

Both executors take one *shared* payload (the compiled problem, the jobs table) and a list of
small *items* (a scenario, a part); ``fn(shared, item)`` runs in a worker. The shared payload
crosses once per worker process (local) or goes into Ray's object store once (``ray.put``),
never once per task. A worker that dies mid-task (OOM killer, a lost node) has its task
retried, up to ``retries`` times; results come back keyed by item index, so none is lost or
duplicated. Exceptions raised by ``fn`` itself are not retried: they are bugs or bad input,
and the caller decides (a sweep catches them per scenario inside ``fn``).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from placement.errors import BackendUnavailableError, PlacementError

log = logging.getLogger("placement")

ExecutorKind = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")
Task = Callable[[Any, Any], Any]


class WorkerLostError(PlacementError):
    """A task's worker died more often than the retry limit allows."""


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Numba/HiGHS/CP-SAT threads each worker should use so that workers do not oversubscribe."""
    return max(1, cores() // max(1, workers))


class Executor(ABC):
    """Runs ``fn(shared, item)`` for each item on ``workers`` workers; see the module docstring."""

    kind: ExecutorKind

    def __init__(self, workers: int = 0, retries: int = 2):
        self.workers = workers or cores()
        self.retries = retries

    @abstractmethod
    def map(self, fn: Task, shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Yield ``(index, fn(shared, items[index]))`` as tasks finish (any order)."""

    def close(self) -> None:
        """Release workers (the executors are also context managers)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- local: a process pool ------------------------------------------------------------------

_shared: Any = None


def _init_worker(shared: Any, threads: int) -> None:
    global _shared
    _shared = shared
    _limit_threads(threads)


def _limit_threads(threads: int) -> None:
    import numba  # noqa: PLC0415

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def _call_local(fn: Task, item: Any) -> Any:
    return fn(_shared, item)


class LocalExecutor(Executor):
    """A process pool (spawned, so no forked copy of Numba's or HiGHS's threads).

    The pool lives until ``close`` and is reused by every ``map`` with the same shared payload
    (the payload is bound to the workers when they start); another payload starts a new pool.
    """

    kind = "local"

    def __init__(self, workers: int = 0, retries: int = 2):
        super().__init__(workers, retries)
        self._pool: ProcessPoolExecutor | None = None
        self._shared: Any = None  # held, so the identity check below cannot match a recycled id

    def _pool_for(self, shared: Any) -> ProcessPoolExecutor:
        if self._pool is None or self._shared is not shared:
            self.close()
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(shared, threads_per_worker(self.workers)))
            self._shared = shared
        return self._pool

    def map(self, fn: Task, shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        pending = set(range(len(items)))
        attempts = dict.fromkeys(pending, 0)
        while pending:
            lost: list[int] = []
            pool = self._pool_for(shared)
            futures = {pool.submit(_call_local, fn, items[i]): i for i in sorted(pending)}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for f in done:
                    i = futures.pop(f)
                    if isinstance(f.exception(), BrokenProcessPool):
                        lost.append(i)
                        continue
                    result = f.result()  # an exception from fn propagates: not retried
                    pending.discard(i)
                    yield i, result
            if lost:
                self.close()  # a broken pool takes no more work: the retry starts a fresh one
                log.warning("a worker died: retrying %d unfinished task(s)", len(lost))
            for i in lost:
                attempts[i] += 1
                if attempts[i] > self.retries:
                    raise WorkerLostError(f"task {i}: its worker died {attempts[i]} times; giving up")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool, self._shared = None, None


# --- ray --------------------------------------------------------------------------------------


def _call_ray(fn: Task, shared: Any, item: Any, threads: int) -> Any:
    _limit_threads(threads)
    return fn(shared, item)


class RayExecutor(Executor):
    """Ray tasks: a local Ray instance by default, an existing cluster with ``address``."""

    kind = "ray"

    def __init__(self, workers: int = 0, retries: int = 2, address: str | None = None):
        try:
            import ray  # noqa: PLC0415
        except ImportError:
            raise BackendUnavailableError(
                "--executor ray needs Ray, an optional extra: pip install -e '.[distributed]'") from None
        super().__init__(workers, retries)
        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            # A local instance gets exactly `workers` CPUs, so at most that many tasks run at once.
            ray.init(address=address, num_cpus=None if address else self.workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        if address:
            self.workers = int(ray.cluster_resources().get("CPU", self.workers))

    def map(self, fn: Task, shared: Any, items: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        shared_ref = ray.put(shared)  # once: every task reads the same object
        remote = ray.remote(_call_ray).options(num_cpus=1, max_retries=self.retries, retry_exceptions=False)
        threads = threads_per_worker(self.workers)
        refs = {remote.remote(fn, shared_ref, item, threads): i for i, item in enumerate(items)}
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            for ref in done:
                i = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.WorkerCrashedError as exc:
                    raise WorkerLostError(f"task {i}: its worker died more than {self.retries} times") from exc
                except ray.exceptions.RayTaskError as exc:
                    raise exc.as_instanceof_cause() from None
                yield i, result

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def make_executor(kind: str, workers: int = 0, address: str | None = None, retries: int = 2) -> Executor:
    """The executor named ``kind`` (``local`` or ``ray``); ``address`` is Ray's cluster address."""
    if kind == "local":
        if address:
            raise ValueError("--address is for --executor ray")
        return LocalExecutor(workers, retries)
    if kind == "ray":
        return RayExecutor(workers, retries, address)
    raise ValueError(f"unknown executor '{kind}': expected one of {', '.join(EXECUTORS)}")
