"""``highs``: the shared MILP (``bench.peers.milp``) built as arrays and passed to HiGHS through
``highspy``; defaults (relative MIP gap 1e-4) except time limit, threads and seed.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from bench.peers.common import PeerResult, Phase, Progress, candidate_count, not_built, quiet_stdout
from bench.peers.milp import build_milp, finish, fmt_weights, incumbent_tiers, milp_solution, usd_bound
from placement.core.problem import Problem

# HiGHS holds the matrix several times over (presolve, LP, its transpose); above this many
# candidates it would need ~50 GB (measured ~1.0 kB per candidate at M: 2.1 GB RSS at 1.76M).
HIGHS_MAX_CANDIDATES = 50_000_000
HIGHS_BYTES_PER_CANDIDATE = 1.0e3


def run_highs(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
              on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """The shared MILP through highspy, matrices built as arrays."""
    # Lazy: only this peer's process pays for importing HiGHS.
    import highspy  # noqa: PLC0415

    P, t0 = problem, time.monotonic()
    n_cand = candidate_count(P)
    if n_cand > HIGHS_MAX_CANDIDATES:
        return not_built(f"{n_cand:,} candidates > {HIGHS_MAX_CANDIDATES:,}: the matrix and HiGHS's copies "
                         f"would need ~{n_cand * HIGHS_BYTES_PER_CANDIDATE / 1e9:,.0f} GB (1.0 kB per candidate "
                         "measured at M)", t0, n_cand)
    if on_phase:
        on_phase("build")
    milp = build_milp(P)
    with quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(max(time_limit, 0.01)))
    h.setOptionValue("random_seed", int(seed))
    if threads:
        h.setOptionValue("threads", int(threads))
    inf = highspy.kHighsInf
    order = np.lexsort((milp.row, milp.col))
    start = np.searchsorted(milp.col[order], np.arange(milp.n_cols + 1)).astype(np.int32)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = milp.n_cols, len(milp.row_lo)
    lp.col_cost_ = milp.obj
    lp.col_lower_, lp.col_upper_ = milp.col_lo, milp.col_hi
    lp.row_lower_ = np.where(np.isfinite(milp.row_lo), milp.row_lo, -inf)
    lp.row_upper_ = np.where(np.isfinite(milp.row_hi), milp.row_hi, inf)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = milp.row[order].astype(np.int32)
    lp.a_matrix_.value_ = milp.val[order]
    lp.integrality_ = [highspy.HighsVarType.kInteger] * milp.n_cols
    h.passModel(lp)
    t_build = time.monotonic() - t0
    if on_phase:
        on_phase("solve")
    traj: list[tuple[float, float, float | None]] = []

    def improving(e: Any) -> None:
        x = np.asarray(e.data_out.mip_solution, np.float64)
        if len(x) < milp.n_x:
            return
        ti = incumbent_tiers(milp, x)
        bound = e.data_out.mip_dual_bound
        b = usd_bound(milp, bound, ti) if math.isfinite(bound) else None
        traj.append((time.monotonic() - t0, float(milp.cand.net @ np.rint(x[:milp.n_x])), b))
        if on_progress:
            on_progress(*traj[-1])

    h.cbMipImprovingSolution.subscribe(improving)
    h.run()
    info = h.getInfo()
    status = h.modelStatusToString(h.getModelStatus())
    native = {"status": status, "q_usd_per_hour": milp.q, "weights": milp.weights.tolist(),
              "columns": milp.n_cols, "rows": len(milp.row_lo), "nonzeros": len(milp.val)}
    note = f"objective resolution q=${milp.q:g}/h; tiers as big-M weights {fmt_weights(milp.weights)}"
    sol_status = info.primal_solution_status
    if sol_status != highspy.kSolutionStatusFeasible:
        native["bound"] = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
        return finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                      "infeasible" if "nfeasible" in status else "no_solution")
    values = np.asarray(h.getSolution().col_value, np.float64)
    ti = incumbent_tiers(milp, values)
    nb = float(info.mip_dual_bound)
    native.update(objective=float(info.objective_function_value), bound=nb, gap=float(info.mip_gap),
                  bound_usd=usd_bound(milp, nb, ti) if math.isfinite(nb) else None)
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    sol = milp_solution(P, milp, values, "highs", "optimal" if optimal else "feasible",
                        native["bound_usd"] if native["bound_usd"] is not None else math.inf)
    if optimal:
        note += "; 'optimal' is HiGHS's default relative gap 1e-4 on the weighted objective"
    return finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)
