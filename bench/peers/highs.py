"""``highs``: the shared MILP (``bench.peers.milp``) built as arrays and passed to HiGHS through
``highspy``, the tiers solved lexicographically: one run per tier, highest first, each maximising
that tier's net $/h (float coefficients, no rounding) under ``tier ≥ found − 1e-6·max(|found|, 1)``
rows for the tiers above, hinted with the previous stage's solution, under an even share of the
time left. Defaults except time limit, threads, seed and ``mip_rel_gap = 1e-6`` (``LEX_REL_GAP``,
the tolerance the rows give up, instead of the default 1e-4).

Three highspy details (highspy 1.16, measured on the S neocloud instance and
``tests.strategies.random_instance(3, 4, 8)``):

- the hint uses the sparse ``setSolution(n, index, value)`` form with every column listed (a
  dense ``HighsSolution`` without row values leaves a stale incumbent objective after the costs
  change, which HiGHS then returns as "Optimal"; listing only the nonzeros makes HiGHS complete
  the solution with a sub-MIP that ignores the time limit: a 1.7 s share ran 6.8 s);
- even so, a hinted stage that presolve solves can come back stale (stage 2 reported 157.72 $/h
  "Optimal" and returned the hint, worth 41.15): a stage whose returned solution is worth less
  than HiGHS's reported objective is solved again without the hint (``clearSolver``) in what is
  left of its share, and its record says so;
- ``time_limit`` counts from zero in each run after the model changed (``getRunTime`` is
  cumulative, the limit is not: ``time_limit = getRunTime() + share`` let stage 2 run 3.3 s for
  a 1.7 s share), so each stage sets it to its share.

A later stage that finds nothing in its share holds its tier at the last plan's value.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from bench.peers.common import PeerResult, Phase, Progress, candidate_count, not_built, quiet_stdout
from bench.peers.milp import build_milp, finish, lex_bound, milp_solution, stage_record
from placement.core.problem import Problem

# HiGHS holds the matrix several times over (presolve, LP, its transpose); above this many
# candidates it would need ~50 GB (measured ~1.0 kB per candidate at M: 2.1 GB RSS at 1.76M).
HIGHS_MAX_CANDIDATES = 50_000_000
HIGHS_BYTES_PER_CANDIDATE = 1.0e3
# Relative MIP gap of each stage, and the relative tolerance of its ``tier ≥ found`` row.
LEX_REL_GAP = 1e-6


def _stale(h: Any, info: Any, cost: np.ndarray, idx: np.ndarray) -> bool:
    """Whether the returned solution is worth less than the objective HiGHS reports for it."""
    if info.primal_solution_status == 0 or not math.isfinite(info.objective_function_value):
        return False
    x = np.rint(np.asarray(h.getSolution().col_value, np.float64)[idx])
    got = float(cost @ x)
    return info.objective_function_value > got + LEX_REL_GAP * max(abs(got), 1.0)


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
    h.setOptionValue("random_seed", int(seed))
    h.setOptionValue("mip_rel_gap", LEX_REL_GAP)
    if threads:
        h.setOptionValue("threads", int(threads))
    inf = highspy.kHighsInf
    order = np.lexsort((milp.row, milp.col))
    start = np.searchsorted(milp.col[order], np.arange(milp.n_cols + 1)).astype(np.int32)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = milp.n_cols, len(milp.row_lo)
    lp.col_cost_ = np.zeros(milp.n_cols)
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
    deadline = time.monotonic() + max(time_limit, 0.01)
    traj: list[tuple[float, float, float | None]] = []
    records: list[dict] = []
    live: list = [None]  # the tier being solved
    net = milp.cand.net

    def improving(e: Any) -> None:
        x = np.asarray(e.data_out.mip_solution, np.float64)
        if len(x) < milp.n_x or live[0] is None:
            return
        bound = e.data_out.mip_dual_bound
        b = lex_bound(milp, records, float(bound) if math.isfinite(bound) else None)
        traj.append((time.monotonic() - t0, float(net @ np.rint(x[:milp.n_x])), b))
        if on_progress:
            on_progress(*traj[-1])

    h.cbMipImprovingSolution.subscribe(improving)
    all_cols = np.arange(milp.n_cols, dtype=np.int32)
    values: np.ndarray | None = None if milp.stages else np.zeros(milp.n_cols)  # no candidate: empty plan
    infeasible = False
    for i, k in enumerate(milp.stages):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        idx = milp.tier_cols(k)
        cost = np.zeros(milp.n_cols)
        cost[idx] = net[idx]
        h.changeColsCost(milp.n_cols, all_cols, cost)
        if values is not None:  # every column, so HiGHS has nothing to complete (module docstring)
            h.setSolution(milp.n_cols, all_cols, values.astype(np.float64))
        share = max(left / (len(milp.stages) - i), 0.01)
        h.setOptionValue("time_limit", float(share))  # per run: see the module docstring
        live[0] = k
        started, wall = h.getRunTime(), time.monotonic()
        h.run()
        status, info = h.getModelStatus(), h.getInfo()
        rerun = values is not None and _stale(h, info, net[idx], idx)
        if rerun:  # see the module docstring: solve the stage again, unhinted, in what is left of its share
            h.clearSolver()
            h.setOptionValue("time_limit", float(max(wall + share - time.monotonic(), 0.01)))
            h.run()
            status, info = h.getModelStatus(), h.getInfo()
        live[0] = None
        name, seconds = h.modelStatusToString(status), h.getRunTime() - started
        if status == highspy.HighsModelStatus.kInfeasible:  # only required jobs make the first stage infeasible
            records.append({"tier": int(k), "status": name, "proven": True, "bound_usd": None, "seconds": seconds})
            infeasible = True
            break
        if info.primal_solution_status != highspy.kSolutionStatusFeasible:
            if values is None:
                records.append({"tier": int(k), "status": name, "proven": False, "bound_usd": None,
                                "seconds": seconds})
                break
            # Nothing new in its share: hold the tier at the last plan's value and go on.
            records.append(stage_record(milp, k, name, False, values, None, seconds))
        else:
            values = np.rint(np.asarray(h.getSolution().col_value, np.float64))
            nb = float(info.mip_dual_bound)
            records.append(stage_record(milp, k, name, status == highspy.HighsModelStatus.kOptimal, values,
                                        nb if math.isfinite(nb) else None, seconds))
        if rerun:
            records[-1]["rerun"] = "hinted run returned a stale incumbent; solved again without the hint"
        found = float(net[idx] @ values[idx])
        h.addRow(found - LEX_REL_GAP * max(abs(found), 1.0), inf, len(idx), idx.astype(np.int32), net[idx])

    native = {"status": records[-1]["status"] if records else "none", "stages": records,
              "columns": milp.n_cols, "rows": len(milp.row_lo), "nonzeros": len(milp.val)}
    note = (f"{len(milp.stages)} tier(s) solved lexicographically ({len(records)} reached, highest first); "
            f"'optimal' is each stage within relative gap {LEX_REL_GAP:g}")
    if values is None:
        return finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                      "infeasible" if infeasible else "no_solution")
    native["bound_usd"] = lex_bound(milp, records)
    proven = len(records) == len(milp.stages) and all(r["proven"] for r in records)
    sol = milp_solution(P, milp, values, "highs", "optimal" if proven else "feasible", native["bound_usd"])
    return finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)
