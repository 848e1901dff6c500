"""The solvers' clock: wall seconds by default, work done in deterministic mode.

Every budget in the solvers is a deadline on ``now()``. By default that is ``time.monotonic()``,
so a stage stops when the seconds run out and the plan depends on how fast the machine was.
Inside ``work_clock()`` (``SolveOptions.deterministic``) ``now()`` is instead a count of the work
done so far, and only the stages advance it (``tick``): kernel passes by the candidates they
score, CP-SAT by its deterministic time, HiGHS by its nodes and simplex iterations, the tight
search by its moves. Each count is scaled so that one unit is about one second of that work on
a 2-core machine, so ``time_limit_s`` keeps its meaning roughly; the plan then depends only on
the input, the seed and the backend, never on load.

Engines that take a wall-clock limit get ``wall_limit_s(units)``: the units themselves by
default, and in deterministic mode a generous safety net (``WALL_SAFETY``) that only a far
slower machine than the reference reaches; their work limits are what binds. A run that reaches
the net says so (``check_wall_net``, collected in ``Work.fallbacks``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar

log = logging.getLogger("placement")

# Work per second on the reference machine (2 cores), by kind of work.
KERNEL_CANDIDATES_PER_S = 4.5e7  # (job, pool) candidates scored by a kernel pass
TIGHT_MOVES_PER_S = 2.0e5  # candidate moves tried by the tight search (rough: a move scans its targets)
HIGHS_NODE_NONZEROS_PER_S = 1.0e5  # branch-and-bound nodes x matrix nonzeros (the root's work averaged in)
LP_ITERATIONS_SQRT_ROWS_PER_S = 1.3e6  # simplex iterations of an LP master x sqrt(its rows)
IPM_WORK_PER_S = 2.0e7  # interior-point iterations x matrix nonzeros
CPSAT_DETERMINISTIC_PER_S = 0.7  # CP-SAT's own deterministic time (its unit is about 1.4 s here)
# In deterministic mode, engines still get a wall-clock limit this many times their budget (plus
# a few seconds), so that no input can hang the process; reaching it breaks the guarantee and
# is logged at WARNING and recorded in the summary's ``stats.fallbacks``.
WALL_SAFETY = 20.0
WALL_SAFETY_S = 5.0


class Work:
    """Units of work done so far on one work clock (read from any thread: a float is atomic),
    and the fallbacks seen on it (``stats.fallbacks`` entries)."""

    def __init__(self, units: float = 0.0) -> None:
        self.units = units
        self.fallbacks: list[dict[str, str]] = []


_WORK: ContextVar[Work | None] = ContextVar("placement_work_clock", default=None)


def now() -> float:
    """Seconds (wall clock) or work units done (deterministic mode): what deadlines compare to."""
    work = _WORK.get()
    return time.monotonic() if work is None else work.units


def deterministic() -> bool:
    """True inside ``work_clock()``."""
    return _WORK.get() is not None


def tick(units: float) -> None:
    """Count ``units`` of work done (deterministic mode; a no-op on the wall clock)."""
    work = _WORK.get()
    if work is not None:
        work.units += max(units, 0.0)


def left(deadline: float) -> float:
    """Budget until ``deadline`` in the clock's units (may be negative)."""
    return deadline - now()


def wall_limit_s(units: float) -> float:
    """Wall-clock limit for an engine given ``units`` of budget; see the module docstring."""
    if not deterministic():
        return units
    return max(units, 0.0) * WALL_SAFETY + WALL_SAFETY_S


def check_wall_net(engine: str, reached: bool) -> None:
    """In deterministic mode, log and record that ``engine`` stopped on its wall-clock safety net
    (``reached``), not its work limit: that plan may differ from the same run on a faster or idle
    machine."""
    work = _WORK.get()
    if work is not None and reached:
        reason = (f"{engine} reached its wall-clock safety net before its work limit: "
                  "this deterministic run may not repeat exactly")
        log.warning("%s", reason)
        work.fallbacks.append({"stage": engine, "reason": reason})


def current() -> Work | None:
    """This thread's work clock (None on the wall clock), e.g. for another thread to read."""
    return _WORK.get()


def take_fallbacks() -> list[dict[str, str]]:
    """The fallbacks recorded on this thread's work clock since the last call (none on the wall
    clock), for the summary's ``stats.fallbacks``."""
    work = _WORK.get()
    if work is None:
        return []
    taken, work.fallbacks = work.fallbacks, []
    return taken


@contextlib.contextmanager
def work_clock(on: bool = True, work: Work | None = None) -> Iterator[None]:
    """Run the block on a work clock when ``on``: ``work`` if given (a second thread's own clock),
    else a fresh one; without ``work``, a nested call keeps the outer clock."""
    if not on or (work is None and deterministic()):
        yield
        return
    token = _WORK.set(work if work is not None else Work())
    try:
        yield
    finally:
        _WORK.reset(token)
