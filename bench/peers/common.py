"""What every peer shares: its result record, the progress callbacks, and small helpers.

The helpers are the peers' own (integer rounding, silencing a C++ banner), so a peer depends on
nothing private of ``placement``'s solvers.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placement.core.problem import Problem
from placement.core.solution import Solution, solution_terms
from placement.solvers.int_model import to_int as to_int  # the exact model's rounding: loads up, caps down
from placement.solvers.quiet import quiet_stdout as quiet_stdout

Progress = Callable[[float, float, float | None], None]  # (seconds, objective $/h, bound $/h or None)
Phase = Callable[[str], None]  # "build", then "solve": lets a supervisor tell a failed build from a slow solve
WATTS_PER_MW = 1_000_000
CENTS_PER_USD = 100


@dataclass
class PeerResult:
    """What a peer reports. ``objective``/``bound`` are $/h; ``gap`` is (bound − objective)/|bound|.

    ``bound`` bounds the lexicographic optimum's total $/h (None: the peer has none);
    ``time_to_1pct`` is the first second at which the peer's own gap was ≤ 1% (None: never);
    ``peak_mem_mb`` is the peak RSS of the process at the end of the run; ``built`` is False
    when the model could not be built (``note`` says why); ``trajectory`` holds
    (seconds, objective, bound) at each improving solution.
    """

    objective: float | None
    bound: float | None
    gap: float | None
    seconds: float
    time_to_1pct: float | None
    peak_mem_mb: float
    built: bool
    status: str
    note: str = ""
    solution: Solution | None = None
    trajectory: list[tuple[float, float, float | None]] = field(default_factory=list)
    native: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    candidates: int = 0

    def summary(self) -> dict[str, Any]:
        """JSON-ready fields (no solution)."""
        return {k: v for k, v in self.__dict__.items() if k != "solution"}


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if r > 1 << 32 else r / 1024


def candidate_count(problem: Problem) -> int:
    """Class candidates of the jobs that have any, before per-job filters (no expansion)."""
    P = problem
    sizes = np.diff(P.class_ptr)[P.job_class]
    return int(sizes[P.job_filter == 0].sum())


def plan_objective(problem: Problem, solution: Solution) -> float:
    """Σ net $/h of a plan (0 for an empty one)."""
    return float(solution_terms(problem, solution)["net"].sum()) if len(solution.row_job) else 0.0


def gap(objective: float | None, bound: float | None) -> float | None:
    """(bound − objective)/|bound|, clipped at 0; None without both."""
    if objective is None or bound is None or not math.isfinite(bound):
        return None
    return max(0.0, (bound - objective) / max(abs(bound), 1e-9))


def not_built(why: str, t0: float, n: int, status: str = "not_built") -> PeerResult:
    """The result of a peer that declined to build its model (``why``), ``t0`` its start."""
    return PeerResult(None, None, None, time.monotonic() - t0, None, peak_rss_mb(), False, status,
                      f"could not build: {why}", candidates=n)
