"""``cpsat``: the CP-SAT model an OR engineer writes in an afternoon.

One variable per eligible (job, pool) candidate (a bool for a training gang, an int of replicas
for a service), no decomposition, the tiers solved lexicographically (``bench.peers.milp``): one
solve per tier, highest first, each maximising that tier's integer net (units of ``q`` $/h) under
``tier ≥ found`` rows for the tiers above, hinted with the previous stage's solution, under an
even share of the time left. Defaults except time limit, workers (2) and the seed;
``interleave_search`` stays off (it aborts the process on a hinted infeasible model, OR-Tools 9.15).
"""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.sat.python import cp_model

from bench.peers.common import PeerResult, Phase, Progress, candidate_count, not_built
from bench.peers.milp import build_milp, finish, lex_bound, milp_solution, stage_record
from placement.core.problem import Problem

# Beyond this many candidates the plain CP-SAT model is not attempted (issue 6: ~5M).
CPSAT_MAX_CANDIDATES = 5_000_000
# Measured RSS per candidate at M (1.76M candidates): CP-SAT 2.6 GB, ~0.3 GB of it imports.
CPSAT_BYTES_PER_CANDIDATE = 1.3e3


def run_cpsat(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
              on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """Plain CP-SAT on the shared MILP.

    Build, solve and read-back in one function, as the afternoon model is written: the solution
    callback closes over the model's variables.
    """
    P, t0 = problem, time.monotonic()
    n_cand = candidate_count(P)
    if n_cand > CPSAT_MAX_CANDIDATES:
        return not_built(f"{n_cand:,} candidates > {CPSAT_MAX_CANDIDATES:,}: one variable each would need "
                         f"~{n_cand * CPSAT_BYTES_PER_CANDIDATE / 1e9:,.0f} GB (1.3 kB per candidate measured at M)",
                         t0, n_cand)
    if on_phase:
        on_phase("build")
    milp = build_milp(P)
    m = cp_model.CpModel()
    lo, hi = milp.col_lo.astype(np.int64).tolist(), milp.col_hi.astype(np.int64).tolist()
    v = [m.new_bool_var(f"b{i}") if b else m.new_int_var(a, z, f"i{i}")
         for i, (a, z, b) in enumerate(zip(lo, hi, milp.col_bool.tolist()))]
    for i in np.flatnonzero(milp.col_bool & (milp.col_lo > 0)).tolist():
        m.add(v[i] == 1)
    order = np.argsort(milp.row, kind="stable")
    cuts = np.searchsorted(milp.row[order], np.arange(len(milp.row_lo) + 1))
    cols, vals = milp.col[order], milp.val[order].astype(np.int64)
    Sum = cp_model.LinearExpr
    for r in range(len(milp.row_lo)):
        a, b = cuts[r], cuts[r + 1]
        xs = [v[i] for i in cols[a:b].tolist()]
        if milp.amo[r]:
            (m.add_exactly_one if milp.row_lo[r] >= 1 else m.add_at_most_one)(xs)
            continue
        expr = Sum.weighted_sum(xs, vals[a:b].tolist())
        rlo, rhi = milp.row_lo[r], milp.row_hi[r]
        if rlo == rhi:
            m.add(expr == int(rlo))
        else:
            if math.isfinite(rlo):
                m.add(expr >= int(rlo))
            if math.isfinite(rhi):
                m.add(expr <= int(rhi))
    t_build = time.monotonic() - t0
    if on_phase:
        on_phase("solve")

    deadline = time.monotonic() + max(time_limit, 0.01)
    traj: list[tuple[float, float, float | None]] = []
    records: list[dict] = []
    live: list = [None]  # (stage expression's tier, slack) while a stage runs
    values: np.ndarray | None = None if milp.stages else np.zeros(milp.n_cols, np.int64)  # no candidate: empty plan
    infeasible = False
    net = milp.cand.net

    class Cb(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            k = live[0]
            x = np.fromiter(self.response_proto.solution, np.float64, count=milp.n_x)  # x come first
            b = max(self.best_objective_bound, self.objective_value) * milp.q + float(milp.slack_usd[k])
            traj.append((time.monotonic() - t0, float(net @ x), lex_bound(milp, records, b)))
            if on_progress:
                on_progress(*traj[-1])

    for i, k in enumerate(milp.stages):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        idx = milp.tier_cols(k)
        expr = Sum.weighted_sum([v[j] for j in idx.tolist()], milp.c_int[idx].astype(np.int64).tolist())
        m.maximize(expr)
        m.clear_hints()
        if values is not None:
            m.proto.solution_hint.vars.extend(range(len(v)))
            m.proto.solution_hint.values.extend(values.tolist())
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(left / (len(milp.stages) - i), 0.01)
        solver.parameters.num_workers = threads
        solver.parameters.random_seed = seed
        live[0] = k
        status = solver.solve(m, Cb())
        name = solver.status_name(status)
        if status == cp_model.INFEASIBLE:  # only required jobs make the first stage infeasible
            records.append({"tier": int(k), "status": name, "proven": True, "bound_usd": None,
                            "seconds": solver.wall_time})
            infeasible = True
            break
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if values is None:
                records.append({"tier": int(k), "status": name, "proven": False, "bound_usd": None,
                                "seconds": solver.wall_time})
                break
            # Nothing in its share (often presolve used it): hold the tier at the last plan's value, go on.
            records.append(stage_record(milp, k, name, False, values, None, solver.wall_time))
            m.add(expr >= int(milp.c_int[idx].astype(np.int64) @ values[idx]))
            continue
        values = np.array(solver.response_proto.solution, np.int64)
        found = round(solver.objective_value)
        nb = max(solver.best_objective_bound, found) * milp.q + float(milp.slack_usd[k])
        records.append(stage_record(milp, k, name, status == cp_model.OPTIMAL, values, nb, solver.wall_time))
        m.add(expr >= found)  # integer coefficients are exact: later stages never give any of it up

    native = {"status": records[-1]["status"] if records else "UNKNOWN", "q_usd_per_hour": milp.q,
              "stages": records, "variables": len(m.proto.variables), "constraints": len(m.proto.constraints)}
    note = (f"objective resolution q=${milp.q:g}/h; {len(milp.stages)} tier(s) solved lexicographically "
            f"({len(records)} reached, highest first)")
    if values is None:
        return finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                      "infeasible" if infeasible else "no_solution")
    native["bound_usd"] = lex_bound(milp, records)
    proven = len(records) == len(milp.stages) and all(r["proven"] for r in records)
    sol = milp_solution(P, milp, values.astype(np.float64), "cpsat", "optimal" if proven else "feasible",
                        native["bound_usd"])
    return finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)
