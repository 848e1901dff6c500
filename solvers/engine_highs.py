"""HiGHS MILP as an engine of the exact and LNS stages: an ``IntModel`` solved stage by stage.

HiGHS takes the float coefficients ($/h per unit) directly, so no objective scaling is
needed; capacities keep their integer rows. Each stage maximises its net value, then
``stage ≥ found − tolerance`` is added for the stages below it. The tolerance is HiGHS's own
relative MIP gap on that stage, so a later stage can never gain by an amount the engine could
not tell apart from zero above it. Solutions are rounded to integers and checked exactly
against the integer rows; one that fails (HiGHS accepts 1e-6 integrality slack) is dropped.
"""

from __future__ import annotations

from collections.abc import Callable

import highspy
import numpy as np

from placement.core import clock
from placement.core.clock import HIGHS_NODE_NONZEROS_PER_S, IPM_WORK_PER_S
from placement.model.portfolio import SolveOptions
from placement.solvers.int_model import NO_LIMIT, IntModel, LexResult
from placement.solvers.quiet import quiet_stdout

Progress = Callable[[float, float], None]
# Stop a stage when its bound is within this fraction of its incumbent.
RELATIVE_GAP = 1e-6


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance.

    Never with a ``threads`` option: HiGHS sizes one scheduler per process, the first time it
    runs, and any later instance asking for another count fails with no solution (measured on
    highspy 1.16: threads 1, then 2, gives status "Not Set"). A tier LP with N-1 threads beside
    the background LP's 1, or a second solve with other options, did exactly that.
    """
    with quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


def _nodes_per_s(im: IntModel) -> float:
    """Branch-and-bound nodes a second on the reference machine, for deterministic budgets: a
    node's LPs cost about the matrix's size (measured 7-23 nodes/s at 4k-16k nonzeros)."""
    return HIGHS_NODE_NONZEROS_PER_S / max(len(im.a_col), 1)


def _bounds(a: np.ndarray) -> np.ndarray:
    inf = highspy.kHighsInf
    out = a.astype(np.float64)
    out[a <= -NO_LIMIT] = -inf
    out[a >= NO_LIMIT] = inf
    return out


def _load(h: highspy.Highs, im: IntModel) -> None:
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = im.n_cols, im.n_rows
    lp.col_cost_ = np.zeros(im.n_cols)
    lp.col_lower_ = im.col_lb.astype(np.float64)
    lp.col_upper_ = im.col_ub.astype(np.float64)
    lp.row_lower_, lp.row_upper_ = _bounds(im.row_lo), _bounds(im.row_hi)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = im.a_ptr.astype(np.int32)
    lp.a_matrix_.index_ = im.a_col.astype(np.int32)
    lp.a_matrix_.value_ = im.a_val.astype(np.float64)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * im.n_cols
    h.passModel(lp)


def _set_objective(h: highspy.Highs, im: IntModel, cols: np.ndarray, net: np.ndarray) -> None:
    cost = np.zeros(im.n_cols)
    cost[cols] = net
    h.changeColsCost(im.n_cols, np.arange(im.n_cols, dtype=np.int32), cost)


def _hint(h: highspy.Highs, values: np.ndarray) -> None:
    # The indexed form with every column: a dense HighsSolution without row values leaves HiGHS
    # with a wrong incumbent objective after the costs change, and listing only the nonzeros
    # makes it complete the rest by a sub-solve that ignores the time limit (highspy 1.16).
    every = np.arange(len(values), dtype=np.int32)
    h.setSolution(len(values), every, values.astype(np.float64))


def solve_highs(im: IntModel, options: SolveOptions, deadline: float, hint: np.ndarray | None = None,
                on_progress: Progress | None = None, total_net: np.ndarray | None = None) -> LexResult:
    """Solve ``im``'s stages in order, each under an even share of the time left.

    ``hint``: candidate values to start from; ``total_net``: $/h per candidate for progress.
    """
    run = LexResult()
    if not im.stages:
        run.values, run.bound = np.zeros(im.n_cols, np.int64), 0.0
        return run
    h = new_highs()
    h.setOptionValue("random_seed", int(options.seed) % 2_147_483_647)
    h.setOptionValue("mip_rel_gap", RELATIVE_GAP)
    _load(h, im)
    full = im.complete(hint) if hint is not None else None
    if full is not None and not im.feasible(full):
        full = None
    solved = 0.0
    stage_bound: list[Callable[[float], float] | None] = [None]  # the running stage's $/h bound
    if on_progress is not None and total_net is not None:
        _subscribe(h, im, on_progress, total_net, stage_bound)
    for i, st in enumerate(im.stages):
        later = sum(s.trivial for s in im.stages[i:] if s.tier is not None)
        left = deadline - clock.now()
        if left <= 0:
            run.bound = solved + later
            return run
        rest = later - st.trivial if st.tier is not None else later
        _set_objective(h, im, st.cols, st.net)
        if full is not None:
            _hint(h, full)
        # Per run (measured on highspy 1.16: the limit does not accumulate over runs of a MIP).
        share = left / (len(im.stages) - i)
        h.setOptionValue("time_limit", float(max(clock.wall_limit_s(share), 0.01)))
        if clock.deterministic():  # a node limit instead: the same search on any machine
            h.setOptionValue("mip_max_nodes", max(int(share * _nodes_per_s(im)), 1))
        stage_bound[0] = (None if st.tier is None
                          else lambda b, st=st, rest=rest, base=solved: base + min(st.trivial, b) + rest)
        status, info, values = _run_stage(h, im, st)
        rec = {"stage": st.label, "tier": st.tier, "status": h.modelStatusToString(status), "engine": "highs"}
        run.records.append(rec)
        if status == highspy.HighsModelStatus.kInfeasible:
            run.infeasible = True
            return run
        if values is None:
            run.bound = solved + later
            return run
        run.values = full = values
        found = float(st.net @ values[st.cols])
        rec["objective"] = found
        bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else np.inf
        if st.tier is not None:
            solved += min(st.trivial, max(bound, found))
        if status == highspy.HighsModelStatus.kOptimal:
            run.proven.add(st.tier)
        tol = RELATIVE_GAP * max(abs(found), 1.0)
        h.addRow(found - tol, highspy.kHighsInf, len(st.cols), st.cols.astype(np.int32), st.net.astype(np.float64))
    run.bound = solved
    return run


def _run_stage(h: highspy.Highs, im: IntModel, st) -> tuple:
    """Run one stage; (status, info, integer values or None).

    A solution is kept only if, rounded, it satisfies every integer row and its value matches
    the objective HiGHS reports: a hinted run has been seen to return the hint as "optimal"
    with the objective of another solution (highspy 1.16). Then the stage is solved again from
    scratch; if it still disagrees, it gives no solution (and so no bound).
    """
    for attempt in range(2):
        if attempt:
            h.clearSolver()
        h.run()
        status, info = h.getModelStatus(), h.getInfo()
        clock.tick(max(info.mip_node_count, 0) / _nodes_per_s(im))
        clock.check_wall_net("HiGHS", status == highspy.HighsModelStatus.kTimeLimit)
        if status == highspy.HighsModelStatus.kInfeasible:
            return status, info, None
        if info.primal_solution_status != highspy.kSolutionStatusFeasible:
            return status, info, None
        values = np.rint(np.asarray(h.getSolution().col_value)).astype(np.int64)
        reported = float(info.objective_function_value)
        found = float(st.net @ values[st.cols])
        if im.feasible(values) and abs(found - reported) <= 1e-6 * max(1.0, abs(reported)):
            return status, info, values
    return status, info, None


def _subscribe(h: highspy.Highs, im: IntModel, fn: Progress, total_net: np.ndarray,
               stage_bound: list[Callable[[float], float] | None]) -> None:
    """Report (total $/h, bound) on each improving solution of a tier stage."""

    def improving(e) -> None:
        x = np.asarray(e.data_out.mip_solution, np.float64)
        bound = stage_bound[0]
        if bound is not None and len(x) >= im.n_cand:
            b = e.data_out.mip_dual_bound
            fn(float(total_net @ np.rint(x[: im.n_cand])), bound(b if np.isfinite(b) else np.inf))

    h.cbMipImprovingSolution.subscribe(improving)


def solve_relaxation(im: IntModel, cost: np.ndarray, deadline: float) -> tuple[np.ndarray, np.ndarray] | None:
    """(column values, row duals) of the LP relaxation of ``im`` maximising ``cost · x``;
    None if unsolved in time.

    Interior point without crossover: at 128k candidates it solves in under a second where
    simplex takes several. The duals only price a Lagrangian bound, which is valid at any
    prices, so their accuracy affects the bound's tightness, never its validity.
    """
    left = deadline - clock.now()
    if left <= 0:
        return None
    h = new_highs()
    _load(h, im)
    everything = np.arange(im.n_cols, dtype=np.int32)
    h.changeColsIntegrality(im.n_cols, everything, np.full(im.n_cols, highspy.HighsVarType.kContinuous))
    h.changeColsCost(im.n_cols, everything, cost.astype(np.float64))
    h.setOptionValue("solver", "ipm")
    h.setOptionValue("run_crossover", "off")
    h.setOptionValue("time_limit", float(clock.wall_limit_s(left)))
    if clock.deterministic():
        h.setOptionValue("ipm_iteration_limit", max(int(left * IPM_WORK_PER_S / max(len(im.a_col), 1)), 1))
    h.run()
    clock.tick(max(h.getInfo().ipm_iteration_count, 0) * max(len(im.a_col), 1) / IPM_WORK_PER_S)
    clock.check_wall_net("HiGHS interior point", h.getModelStatus() == highspy.HighsModelStatus.kTimeLimit)
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    sol = h.getSolution()
    return np.asarray(sol.col_value, np.float64), np.asarray(sol.row_dual, np.float64)
