"""``cpsat``: the CP-SAT model an OR engineer writes in an afternoon.

One variable per eligible (job, pool) candidate (a bool for a training gang, an int of replicas
for a service), no decomposition, one weighted objective (``bench.peers.milp``), defaults except
time limit, 2 workers and the seed.
"""

from __future__ import annotations

import math
import time

import numpy as np
from ortools.sat.python import cp_model

from bench.peers.common import PeerResult, Phase, Progress, candidate_count, gap, not_built
from bench.peers.milp import build_milp, finish, fmt_weights, incumbent_tiers, milp_solution, usd_bound
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
    # Tier values as variables (what the objective weighs; cheap to read in the callback).
    tiers = []
    for k in range(len(milp.weights)):
        idx = np.flatnonzero(milp.col_tier == k)
        t = m.new_int_var(-int(milp.neg[k]), int(milp.pos[k]), f"tier{k}")
        m.add(t == Sum.weighted_sum([v[i] for i in idx.tolist()], milp.c_int[idx].astype(np.int64).tolist()))
        tiers.append(t)
    m.maximize(Sum.weighted_sum(tiers, milp.weights.astype(np.int64).tolist()))
    t_build = time.monotonic() - t0
    if on_phase:
        on_phase("solve")

    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit, 0.01)
    solver.parameters.num_workers = threads
    solver.parameters.random_seed = seed
    traj: list[tuple[float, float, float | None]] = []

    class Cb(cp_model.CpSolverSolutionCallback):
        def on_solution_callback(self) -> None:
            ti = np.array([self.value(t) for t in tiers], np.float64)
            b = usd_bound(milp, max(self.best_objective_bound, self.objective_value), ti)
            x = np.fromiter(self.response_proto.solution, np.float64, count=milp.n_x)  # x come first
            traj.append((time.monotonic() - t0, float(milp.cand.net @ x), b))
            if on_progress:
                on_progress(*traj[-1])

    status = solver.solve(m, Cb())
    name = solver.status_name(status)
    native = {"status": name, "q_usd_per_hour": milp.q, "weights": milp.weights.tolist(),
              "variables": len(m.proto.variables), "constraints": len(m.proto.constraints),
              "wall_time": solver.wall_time}
    note = f"objective resolution q=${milp.q:g}/h; tiers as big-M weights {fmt_weights(milp.weights)}"
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        native["bound"] = None
        return finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                      "infeasible" if status == cp_model.INFEASIBLE else "no_solution")
    values = np.array(solver.response_proto.solution, np.float64)
    ti = incumbent_tiers(milp, values)
    nb = max(solver.best_objective_bound, solver.objective_value)
    native.update(objective=solver.objective_value, bound=nb,
                  gap=gap(solver.objective_value, nb), bound_usd=usd_bound(milp, nb, ti))
    sol = milp_solution(P, milp, values, "cpsat", "optimal" if status == cp_model.OPTIMAL else "feasible",
                        native["bound_usd"])
    return finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)

