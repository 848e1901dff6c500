"""The peers ``placement`` is measured against, each run on the compiled ``Problem``.

- ``cpsat`` (``bench.peers.cpsat``): the CP-SAT model an OR engineer writes in an afternoon.
- ``highs`` (``bench.peers.highs``): the same MILP (``bench.peers.milp``) through ``highspy``.
- ``ffd`` (``bench.peers.ffd``): first-fit-decreasing, a kube-scheduler's loop without scoring.

Each returns a ``PeerResult`` (``bench.peers.common``).
"""

from __future__ import annotations

from bench.peers.common import PeerResult, Phase, Progress
from placement.core.problem import Problem

PEERS = ("cpsat", "highs", "ffd")


def run(name: str, problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
        on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """Run peer ``name`` (one of ``PEERS``); ``threads`` is CP-SAT's workers and HiGHS's threads.

    Each peer's module is imported only when it runs: the benchmark runs every peer in its own
    process and reports that process's peak RSS, so it must load only that peer's solver library
    (OR-Tools for the MILP peers, Numba for FFD; OR-Tools alone is ~55 MB).
    """
    if name == "ffd":
        from bench.peers.ffd import run_ffd  # noqa: PLC0415

        return run_ffd(problem, time_limit, seed, on_progress=on_progress, on_phase=on_phase)
    if name == "cpsat":
        from bench.peers.cpsat import run_cpsat  # noqa: PLC0415

        return run_cpsat(problem, time_limit, seed, on_progress=on_progress, on_phase=on_phase, threads=threads)
    if name == "highs":
        from bench.peers.highs import run_highs  # noqa: PLC0415

        return run_highs(problem, time_limit, seed, on_progress=on_progress, on_phase=on_phase, threads=threads)
    raise KeyError(name)
