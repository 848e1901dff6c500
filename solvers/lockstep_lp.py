"""The LP bound beside the other stages in deterministic mode, the two threads in lockstep by work.

The default pipeline's background LP reads the incumbent whenever it starts a round and is read
whenever a stage wants prices, so what each side sees depends on which thread ran faster. Here
each thread has its own work clock (``placement.core.clock``), started at the same count, and a
value read across threads is the one *as of* the reader's clock:

- the LP starts a round at its clock c with the last plan the main thread published at or before
  c, waiting until the main thread's clock has passed c (or it is done);
- a stage at main clock m gets the best LP result published at or before m, waiting until the
  LP's clock has reached m (or the LP has ended).

Both wait only for work the other has still to do, never on each other at once (the LP waits
for strictly more, the main thread for at least as much), and read exactly what a run on any
other machine reads. The LP keeps a core, as in the default mode.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from placement.core import clock
from placement.core.problem import Problem
from placement.core.solution import Solution
from placement.kernels import Kernels
from placement.solvers.lp import LpResult, lp_bound
from placement.solvers.stages import Incumbent, attach_lp

log = logging.getLogger("placement")

POLL_S = 0.002  # how often a waiting thread looks at the other's clock


class LockstepLp:
    """The whole problem's LP bound with a budget of ``budget`` work units, in its own thread."""

    class _Stop(Exception):
        """Raised in the LP's progress callback to end it early (Ctrl-C in the main thread)."""

    def __init__(self, P: Problem, kernels: Kernels, inc: Incumbent, budget: float,
                 solve: Callable[..., LpResult] = lp_bound, **lp_options: object):
        main = clock.current()
        assert main is not None, "lockstep needs the main thread on a work clock"
        self._main, self._lp = main, clock.Work(main.units)
        self._plans: list[tuple[float, Solution]] = [(main.units, inc.best)]
        self._results: list[tuple[float, LpResult]] = []
        self._main_done, self._lp_done = False, False
        self._cond = threading.Condition()
        self.failed, self.stop = "", threading.Event()
        self.thread = threading.Thread(target=self._run, args=(P, kernels, main.units + budget, solve, lp_options),
                                       daemon=True, name="placement-lp")
        self.thread.start()

    # --- the LP thread -----------------------------------------------------------------------

    def _run(self, P: Problem, kernels: Kernels, deadline: float, solve, lp_options: dict) -> None:
        try:
            with clock.work_clock(work=self._lp):
                self._publish(solve(P, kernels, incumbent=self._plans[0][1], deadline=deadline,
                                    latest_incumbent=self._plan_as_of_now, on_round=self._publish, **lp_options))
        except self._Stop:
            pass
        except Exception as exc:  # the bound is an extra: a failure here must not lose the plan
            log.exception("background LP bound failed; keeping the bound found so far")
            self.failed = f"background LP failed, bound so far kept: {type(exc).__name__}: {exc}"[:500]
        finally:
            with self._cond:
                self._lp_done = True
                self._cond.notify_all()

    def _plan_as_of_now(self) -> Solution:
        c = self._lp.units
        with self._cond:
            while not (self._main_done or self._main.units > c or self.stop.is_set()):
                self._cond.wait(POLL_S)
            return [plan for stamp, plan in self._plans if stamp <= c][-1]

    def _publish(self, result: LpResult) -> None:
        with self._cond:
            self._results.append((self._lp.units, result))
            self._cond.notify_all()
        if self.stop.is_set():
            raise self._Stop

    # --- the main thread ---------------------------------------------------------------------

    def checkpoint(self, plan: Solution) -> None:
        """Publish the main thread's plan at its clock now (the LP's floor may follow it)."""
        with self._cond:
            self._plans.append((self._main.units, plan))
            self._cond.notify_all()

    @property
    def latest(self) -> LpResult | None:
        """The best LP result as of the main thread's clock (waits for the LP to get there)."""
        m = self._main.units
        with self._cond:
            while not (self._lp_done or self._lp.units >= m):
                self._cond.wait(POLL_S)
            return _best(r for stamp, r in self._results if stamp <= m)

    def spare(self, options):
        """``options`` unchanged: in deterministic mode every engine has one thread already."""
        return options

    def attach(self, inc: Incumbent, result: LpResult | None = None) -> None:
        """Give the incumbent the LP's bound and duals as of now (or ``result``); record why it
        stopped early."""
        lp = result if result is not None else self.latest
        attach_lp(inc, lp, self.failed)

    def collect(self, inc: Incumbent, deadline: float | None) -> None:
        """The run's end: wait for the LP to end by its budget (``deadline`` None: stop it now),
        then attach its best result."""
        with self._cond:
            self._main_done = True
            self._cond.notify_all()
        if deadline is None:
            self.stop.set()
        self.thread.join(None if deadline is not None else 0.0)
        with self._cond:
            final = _best(r for _, r in self._results)
        self.attach(inc, final)
        inc.best.record_fallbacks(self._lp.fallbacks)  # its engine on the wall-clock safety net


def _best(results) -> LpResult | None:
    """The result with the lowest bound (the first of equals: publication order is deterministic)."""
    return min(results, key=lambda r: r.bound, default=None)
