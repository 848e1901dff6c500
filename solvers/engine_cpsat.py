"""CP-SAT as an engine of the exact and LNS stages: an ``IntModel`` solved stage by stage.

Each stage maximises its integer objective (coefficients scaled from the data, see
``solvers.int_model``), then ``stage ≥ found`` is added and the next stage is solved, hinted
with the last solution.

``interleave_search`` makes a multi-worker run deterministic (same seed, same plan), but with a
solution hint on a model that has no solution it aborts the whole process inside CP-SAT (a
failed check on ``heuristics.fixed_search``, OR-Tools 9.15). It is therefore set only on models
known to have a solution, checked exactly in integer arithmetic before the solve: the hint (or
the previous stage's solution) or the empty plan satisfies every row. Other models run the
default parallel portfolio, which is not deterministic across runs with several workers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
from ortools.sat.python import cp_model

from placement.core import clock
from placement.core.clock import CPSAT_DETERMINISTIC_PER_S
from placement.model.portfolio import SolveOptions
from placement.solvers.int_model import NO_LIMIT, IntModel, LexResult

Progress = Callable[[float, float], None]
# A stage is proven when its bound is within this fraction of its incumbent: about what the
# integer rounding of the coefficients (≤ 2^-30 of the largest) leaves certain anyway.
RELATIVE_GAP = 1e-6
# Interleaved search is 2-8x slower to prove above a few thousand candidates (measured); large
# models, whose runs end at the time limit anyway, get the parallel portfolio and no probing.
LARGE_MODEL_CANDIDATES = 5_000


def _model(im: IntModel) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    m = cp_model.CpModel()
    x = [m.new_int_var(int(lo), int(hi), f"x{i}") for i, (lo, hi) in enumerate(zip(im.col_lb.tolist(), im.col_ub.tolist()))]
    ptr, col, val = im.a_ptr, im.a_col.tolist(), im.a_val.tolist()
    for r in range(im.n_rows):
        a, b = int(ptr[r]), int(ptr[r + 1])
        if a == b:
            continue
        ct = m.proto.constraints.add()
        ct.linear.vars.extend(col[a:b])
        ct.linear.coeffs.extend(val[a:b])
        lo, hi = int(im.row_lo[r]), int(im.row_hi[r])
        ct.linear.domain.extend([lo if lo > -NO_LIMIT else cp_model.INT_MIN, hi if hi < NO_LIMIT else cp_model.INT_MAX])
    return m, x


class _Callback(cp_model.CpSolverSolutionCallback):
    """Reports (total objective, bound) in $/h on each improving solution of a tier stage."""

    def __init__(self, fn: Progress, x: list, net: np.ndarray, bound: Callable[[float], float]):
        super().__init__()
        self._fn, self._x, self._net, self._bound = fn, x, net, bound

    def on_solution_callback(self) -> None:
        values = np.array([self.value(v) for v in self._x], np.float64)
        self._fn(float(values @ self._net), self._bound(max(self.best_objective_bound, self.objective_value)))


def _solver(options: SolveOptions, limit_s: float, n_cand: int, has_solution: bool) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(clock.wall_limit_s(limit_s), 0.001)
    solver.parameters.random_seed = int(options.seed)
    solver.parameters.num_workers = options.threads or os.cpu_count() or 1
    solver.parameters.relative_gap_limit = RELATIVE_GAP
    small = n_cand <= LARGE_MODEL_CANDIDATES
    if clock.deterministic():  # one worker under a work limit: the same search on any machine
        solver.parameters.max_deterministic_time = max(limit_s * CPSAT_DETERMINISTIC_PER_S, 0.001)
        solver.parameters.num_workers = 1
    solver.parameters.interleave_search = small and has_solution and not clock.deterministic()  # see the docstring
    solver.parameters.cp_model_probing_level = 2 if small else 0  # 2: the default
    # SIGINT is the caller's: the command line turns it (and SIGTERM) into KeyboardInterrupt, and
    # the pipeline returns its best plan marked interrupted; CP-SAT swallowing it would hide that.
    solver.parameters.catch_sigint_signal = False
    return solver


def solve_cpsat(im: IntModel, options: SolveOptions, deadline: float, hint: np.ndarray | None = None,
                on_progress: Progress | None = None, total_net: np.ndarray | None = None) -> LexResult:
    """Solve ``im``'s stages in order, each under an even share of the time left.

    ``hint``: candidate values to start from; ``total_net``: $/h per candidate for progress.
    """
    m, x = _model(im)
    run = LexResult()
    cand = x[: im.n_cand]
    if not im.stages:  # no candidate: the empty plan is trivially optimal
        run.values, run.bound = np.zeros(im.n_cols, np.int64), 0.0
        return run
    full = im.complete(hint) if hint is not None else None
    has_solution = (full is not None and im.feasible(full)) or im.feasible(np.zeros(im.n_cols, np.int64))
    solved = 0.0  # Σ bounds of the tier stages solved so far ($/h)
    for i, st in enumerate(im.stages):
        later = sum(s.trivial for s in im.stages[i:] if s.tier is not None)
        left = deadline - clock.now()
        if left <= 0:
            run.bound = solved + later
            return run
        expr = cp_model.LinearExpr.weighted_sum([x[k] for k in st.cols.tolist()], st.coef.tolist())
        m.maximize(expr)
        m.clear_hints()
        if full is not None:
            m.proto.solution_hint.vars.extend(range(im.n_cols))
            m.proto.solution_hint.values.extend(full.tolist())
        rest = later - st.trivial if st.tier is not None else later

        def usd(bound_int: float, st=st, rest=rest) -> float:
            own = min(st.trivial, bound_int / st.scale + st.slack) if st.tier is not None else 0.0
            return solved + own + rest

        solver = _solver(options, left / (len(im.stages) - i), im.n_cand, has_solution)
        cb = (_Callback(on_progress, cand, total_net, usd)
              if on_progress is not None and total_net is not None and st.tier is not None else None)
        status = solver.solve(m, cb)
        clock.tick(solver.response_proto.deterministic_time / CPSAT_DETERMINISTIC_PER_S)
        clock.check_wall_net("CP-SAT", solver.wall_time >= 0.99 * solver.parameters.max_time_in_seconds)
        rec = {"stage": st.label, "tier": st.tier, "status": solver.status_name(status),
               "wall_time": solver.wall_time, "engine": "cpsat"}
        run.records.append(rec)
        if status == cp_model.INFEASIBLE:  # only required jobs can make the model infeasible
            run.infeasible = True
            return run
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            # Nothing found (often: presolve used the time): no bound from CP-SAT, keep the last plan.
            run.bound = solved + later
            return run
        full = np.array(solver.response_proto.solution, np.int64)
        run.values, has_solution = full, True
        found = round(solver.objective_value)
        rec["objective"] = found / st.scale if st.tier is not None else found
        if st.tier is not None:
            solved = usd(max(solver.best_objective_bound, found)) - rest
        if status == cp_model.OPTIMAL:
            run.proven.add(st.tier)
        ct = m.proto.constraints.add()  # later stages never trade this one away
        ct.linear.vars.extend(st.cols.tolist())
        ct.linear.coeffs.extend(st.coef.tolist())
        ct.linear.domain.extend([found, cp_model.INT_MAX])
    run.bound = solved
    return run
