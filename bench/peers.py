"""The peers ``placement`` is measured against, each run on the compiled ``Problem``.

- ``cpsat``: the CP-SAT model an OR engineer writes in an afternoon. One variable per eligible
  (job, pool) candidate (a bool for a training gang, an int of replicas for a service), no
  decomposition, one weighted objective, defaults except time limit, 2 workers and the seed.
- ``highs``: the same MILP, built as arrays and passed to HiGHS through ``highspy``; defaults
  (relative MIP gap 1e-4) except time limit, threads and seed.
- ``ffd``: first-fit-decreasing, the loop of a kube-scheduler without scoring plugins: required
  jobs first, then by GPUs descending, each on the FIRST eligible pool (lowest index) with room; a service's
  replicas filled first-fit over its pools, keeping one back for every site ``min_sites``
  still needs. No value awareness (it places loss-making jobs too), no priorities, no time limit.

The MILP (shared by ``cpsat`` and ``highs``), over ``solvers.exact.eligible_candidates``:
training ``Σ_p x ≤ 1``; services ``Σ_p x = replicas · y``, per site ``Σ x ≤ max_share`` and,
for ``min_sites > 1``, ``z[j,s]`` with ``Σ_s z ≥ min_sites · y``; GPUs per pool; facility power
per site in integer watts (loads rounded up, caps down, so plans pass the float validator);
required jobs placed; migration budget when one is set.

Objective: strict priority tiers as big-M weights on one objective. Net $/h per unit is
rounded to integers of ``q`` $/h, tier ``k``'s objective ``T_k`` ranges over
``[-neg_k, pos_k]`` and ``w_0 = 1, w_k = 1 + Σ_{i<k} w_i (pos_i + neg_i)``, so one unit of a
higher tier outweighs any change below it and the weighted optimum is the lexicographic one.
``q`` is the finest of 0.01, 0.1, 1, ... $/h that keeps ``Σ w·|c|·ub`` under 2^52 (exact in a
double for HiGHS, far inside CP-SAT's int64); the note says which ``q`` a run used. Big
weights are what an afternoon model does; they are also why both solvers close the top
tier's gap and leave lower tiers loose.

Bound in $/h: the solver's bound B on Σ w_k T_k bounds the lexicographic optimum tier by
tier (as ``solvers.exact`` does): walking down from the top tier, while the incumbent's tier
value equals ``floor((B - Σ_higher w·T) / w_k)`` that tier is proven; the first tier that is
not contributes that floor, lower tiers their trivial bound ``pos``. Plus ``units · q/2`` for
the rounding. ``PeerResult.gap`` and ``time_to_1pct`` use this bound; the solver's own
weighted objective, bound and gap are in ``PeerResult.native``.
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit

from placement.core.problem import MW_TOLERANCE, UNLIMITED, Problem
from placement.core.solution import Reason, Solution, solution_terms, tier_objectives

PEERS = ("cpsat", "highs", "ffd")
# Beyond this many candidates the plain CP-SAT model is not attempted (issue 6: ~5M).
CPSAT_MAX_CANDIDATES = 5_000_000
# HiGHS holds the matrix several times over (presolve, LP, its transpose); above this many
# candidates it would need ~50 GB (measured ~1.0 kB per candidate at M: 2.1 GB RSS at 1.76M).
HIGHS_MAX_CANDIDATES = 50_000_000
# Measured RSS per candidate at M (1.76M candidates): CP-SAT 2.6 GB, HiGHS 2.1 GB, ~0.3 GB of it imports.
CPSAT_BYTES_PER_CANDIDATE = 1.3e3
HIGHS_BYTES_PER_CANDIDATE = 1.0e3
OBJ_BITS = 52
WATTS_PER_MW = 1_000_000
CENTS_PER_USD = 100
Progress = Callable[[float, float, float | None], None]  # (seconds, objective $/h, bound $/h or None)
Phase = Callable[[str], None]  # "build", then "solve": lets a supervisor tell a failed build from a slow solve


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


def run(name: str, problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
        on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """Run peer ``name`` (one of ``PEERS``); ``threads`` is CP-SAT's workers and HiGHS's threads."""
    if name == "ffd":
        return run_ffd(problem, time_limit, seed, on_progress=on_progress, on_phase=on_phase)
    fn = {"cpsat": run_cpsat, "highs": run_highs}[name]
    return fn(problem, time_limit, seed, on_progress=on_progress, on_phase=on_phase, threads=threads)


# --- shared --------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / (1024 * 1024) if r > 1 << 32 else r / 1024


def candidate_count(problem: Problem) -> int:
    """Class candidates of the jobs that have any, before per-job filters (no expansion)."""
    P = problem
    sizes = np.diff(P.class_ptr)[P.job_class]
    return int(sizes[P.job_filter == 0].sum())


def _objective(problem: Problem, solution: Solution) -> float:
    return float(solution_terms(problem, solution)["net"].sum()) if len(solution.row_job) else 0.0


def _gap(objective: float | None, bound: float | None) -> float | None:
    if objective is None or bound is None or not math.isfinite(bound):
        return None
    return max(0.0, (bound - objective) / max(abs(bound), 1e-9))


def _not_built(why: str, t0: float, n: int, status: str = "not_built") -> PeerResult:
    return PeerResult(None, None, None, time.monotonic() - t0, None, peak_rss_mb(), False, status,
                      f"could not build: {why}", candidates=n)


@dataclass
class Milp:
    """The MILP as arrays: columns x (candidates), y (services), z (service × site), moved flags.

    Rows are COO triplets (``row``, ``col``, ``val``) with ``row_lo``/``row_hi``; ``amo`` marks the
    training rows (one gang, at most one pool) that CP-SAT gets as at-most-one constraints.
    """

    n_x: int
    col_lo: np.ndarray
    col_hi: np.ndarray
    col_bool: np.ndarray
    obj: np.ndarray  # weighted integer coefficient per column (0 for y, z, moved)
    col_tier: np.ndarray  # tier of each x column
    c_int: np.ndarray  # unweighted integer coefficient per x column (units of q $/h)
    row: np.ndarray
    col: np.ndarray
    val: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    amo: np.ndarray  # bool per row
    weights: np.ndarray  # w_k per tier
    pos: np.ndarray  # per tier: Σ units · max(0, best c)
    neg: np.ndarray
    negreq: np.ndarray  # per tier: the part of ``neg`` from required jobs (optional ones are dropped at a loss)
    q: float  # $/h per integer objective unit
    units: int  # Σ units of jobs with a candidate (rounding slack count)
    cand: Any  # solvers.exact.Candidates kept (ub >= 1)

    @property
    def n_cols(self) -> int:
        return len(self.col_lo)


class _Rows:
    def __init__(self) -> None:
        self.r: list[np.ndarray] = []
        self.c: list[np.ndarray] = []
        self.v: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.amo: list[np.ndarray] = []
        self.n = 0

    def add(self, row: np.ndarray, col: np.ndarray, val: np.ndarray, n_rows: int,
            lo: np.ndarray | float, hi: np.ndarray | float, amo: bool = False) -> None:
        """Rows numbered 0..n_rows-1 locally; ``row`` gives each triplet's local row."""
        self.r.append(np.asarray(row, np.int64) + self.n)
        self.c.append(np.asarray(col, np.int64))
        self.v.append(np.asarray(val, np.float64))
        self.lo.append(np.broadcast_to(np.asarray(lo, np.float64), (n_rows,)))
        self.hi.append(np.broadcast_to(np.asarray(hi, np.float64), (n_rows,)))
        self.amo.append(np.full(n_rows, amo))
        self.n += n_rows

    def cat(self, parts: list[np.ndarray], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _dense(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys (ascending) and each element's index among them."""
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


def build_milp(problem: Problem) -> Milp:
    """The shared MILP (see the module docstring)."""
    from placement.solvers.exact import _to_int, eligible_candidates  # noqa: PLC0415

    P = problem
    c = eligible_candidates(P)
    c = c.take(c.ub >= 1)
    n = len(c.job)
    g = P.job_gpus_unit[c.job]
    train = P.job_kind[c.job] == 0
    inf = ~train
    rows = _Rows()
    inf_inf = math.inf

    # Columns: x, then y per service, z per (service, site) needing spread, moved flags.
    services, svc_of = _dense(c.job[inf])
    n_y = len(services)
    y0 = n
    spread = inf & (P.job_min_sites[c.job] > 1)
    js_key = c.job * P.n_sites + c.site
    zkeys, z_of = _dense(js_key[spread])
    z0 = y0 + n_y
    n_z = len(zkeys)

    # Training: at most one pool (exactly one if required).
    tj, t_row = _dense(c.job[train])
    rows.add(t_row, np.flatnonzero(train), np.ones(int(train.sum())), len(tj),
             np.where(P.job_required[tj], 1.0, 0.0), 1.0, amo=True)
    # Services: Σ x − units · y = 0.
    xi = np.flatnonzero(inf)
    rows.add(np.concatenate([svc_of, np.arange(n_y)]), np.concatenate([xi, y0 + np.arange(n_y)]),
             np.concatenate([np.ones(len(xi)), -P.job_units[services].astype(np.float64)]), n_y, 0.0, 0.0)
    # Per-site share cap where it can bind (min_sites == 1) ...
    one = inf & ~spread
    keys1, r1 = _dense(js_key[one])
    if len(keys1):
        ub_sum = np.bincount(r1, weights=c.ub[one], minlength=len(keys1))
        cap1 = P.job_max_units_per_site[keys1 // P.n_sites]
        binding = ub_sum > cap1
        keep = binding[r1]
        new_row = np.cumsum(binding) - 1
        rows.add(new_row[r1[keep]], np.flatnonzero(one)[keep], np.ones(int(keep.sum())), int(binding.sum()),
                 0.0, cap1[binding])
    # ... and with min_sites > 1: Σ x ≤ cap · z, z ≤ Σ x, Σ_s z ≥ min_sites · y.
    if n_z:
        si = np.flatnonzero(spread)
        ub_sum = np.bincount(z_of, weights=c.ub[spread], minlength=n_z)
        capz = np.minimum(P.job_max_units_per_site[zkeys // P.n_sites], ub_sum)
        rows.add(np.concatenate([z_of, np.arange(n_z)]), np.concatenate([si, z0 + np.arange(n_z)]),
                 np.concatenate([np.ones(len(si)), -capz]), n_z, -inf_inf, 0.0)
        rows.add(np.concatenate([z_of, np.arange(n_z)]), np.concatenate([si, z0 + np.arange(n_z)]),
                 np.concatenate([-np.ones(len(si)), np.ones(n_z)]), n_z, -inf_inf, 0.0)
        zj = zkeys // P.n_sites
        sj, s_row = _dense(zj)
        y_col = y0 + np.searchsorted(services, sj)
        rows.add(np.concatenate([s_row, np.arange(len(sj))]), np.concatenate([z0 + np.arange(n_z), y_col]),
                 np.concatenate([np.ones(n_z), -P.job_min_sites[sj].astype(np.float64)]), len(sj), 0.0, inf_inf)
    # Capacities: GPUs per pool, facility watts per site.
    pools, p_row = _dense(c.pool)
    rows.add(p_row, np.arange(n), g.astype(np.float64), len(pools), -inf_inf, P.pool_gpus[pools].astype(np.float64))
    cap_w = _to_int(P.site_cap_mw * WATTS_PER_MW, up=False)
    sites, s_row = _dense(c.site)
    rows.add(s_row, np.arange(n), c.watts.astype(np.float64), len(sites), -inf_inf, cap_w[sites].astype(np.float64))
    # Migration budget (only for jobs that run somewhere now).
    cur = P.job_current_pool[c.job]
    away = np.flatnonzero((cur >= 0) & (c.pool != cur))
    n_m = 0
    m0 = z0 + n_z
    if len(away) and P.max_moves < UNLIMITED:
        mj, m_row = _dense(c.job[away])
        n_m = len(mj)
        # moved[j] ≥ Σ away x / units (a service moving any replica counts once).
        rows.add(np.concatenate([m_row, np.arange(n_m)]), np.concatenate([away, m0 + np.arange(n_m)]),
                 np.concatenate([np.ones(len(away)), -P.job_units[mj].astype(np.float64)]), n_m, -inf_inf, 0.0)
        rows.add(np.zeros(n_m, np.int64), m0 + np.arange(n_m), np.ones(n_m), 1, -inf_inf, float(P.max_moves))
    if len(away) and np.isfinite(P.max_migration_usd):
        cents = _to_int(P.job_migration_usd[c.job[away]] * CENTS_PER_USD, up=True)
        budget = float(_to_int(P.max_migration_usd * CENTS_PER_USD, up=False))
        rows.add(np.zeros(len(away), np.int64), away, cents.astype(np.float64), 1, -inf_inf, budget)

    n_cols = m0 + n_m
    col_lo = np.zeros(n_cols)
    col_hi = np.ones(n_cols)
    col_hi[:n] = c.ub
    col_lo[y0:y0 + n_y] = P.job_required[services]
    col_bool = np.ones(n_cols, bool)
    col_bool[:n] = train | (c.ub <= 1)

    # Objective: integer net per unit in q $/h, tiers as big-M weights.
    tier = P.job_tier[c.job]
    n_tiers = int(P.job_tier.max()) + 1 if P.n_jobs else 1
    best_pos = np.zeros(P.n_jobs)
    best_neg = np.zeros(P.n_jobs)
    np.maximum.at(best_pos, c.job, np.maximum(c.net, 0.0))
    np.maximum.at(best_neg, c.job, np.maximum(-c.net, 0.0))
    has = np.bincount(c.job, minlength=P.n_jobs) > 0
    units = int(P.job_units[has].sum())
    q = 0.01
    while True:
        c_int = np.rint(c.net / q)
        pos = np.bincount(P.job_tier, weights=P.job_units * np.rint(best_pos / q), minlength=n_tiers)
        neg = np.bincount(P.job_tier, weights=P.job_units * np.rint(best_neg / q), minlength=n_tiers)
        negreq = np.bincount(P.job_tier, weights=P.job_units * np.rint(best_neg / q) * P.job_required,
                             minlength=n_tiers)
        w = np.ones(n_tiers)
        for k in range(1, n_tiers):
            w[k] = 1.0 + float((w[:k] * (pos[:k] + neg[:k])).sum())
        total = float((w * (pos + neg)).sum()) + float((w[tier] * np.abs(c_int) * c.ub).sum())
        if total < 2.0 ** OBJ_BITS or q > 1e12:
            break
        q *= 10.0
    obj = np.zeros(n_cols)
    obj[:n] = w[tier] * c_int
    return Milp(n, col_lo, col_hi, col_bool, obj, tier, c_int,
                rows.cat(rows.r, np.int64), rows.cat(rows.c, np.int64), rows.cat(rows.v, np.float64),
                rows.cat(rows.lo, np.float64), rows.cat(rows.hi, np.float64), rows.cat(rows.amo, bool),
                w, pos, neg, negreq, q, units, c)


def usd_bound(milp: Milp, native_bound: float, tiers_int: np.ndarray) -> float:
    """$/h bound on the lexicographic optimum from a bound on Σ w·T (module docstring).

    ``tiers_int``: the incumbent's integer tier objectives (lowest tier first). A tier is
    proven when the incumbent reaches its cap: every higher tier being proven, the
    lexicographic optimum's value there is at least the incumbent's.
    """
    w, pos = milp.weights, milp.pos
    left = native_bound
    total = 0.0
    for k in range(len(w) - 1, -1, -1):
        # Lower tiers of the lexicographic optimum are >= -negreq (0 without required jobs).
        cap = math.floor((left + float((w[:k] * milp.negreq[:k]).sum())) / w[k] + 1e-9)
        cap = min(cap, pos[k])
        if tiers_int[k] >= cap:  # proven: the lexicographic optimum has exactly this tier value
            total += tiers_int[k]
            left -= w[k] * tiers_int[k]
            continue
        total += cap + pos[:k].sum()
        break
    return float(total * milp.q + milp.units * milp.q / 2)


def _solution(P: Problem, milp: Milp, values: np.ndarray, solver: str, status: str, bound: float) -> Solution:
    """Solution from the x values (units per kept candidate)."""
    c = milp.cand
    units = np.rint(values[:milp.n_x]).astype(np.int64)
    hit = units > 0
    rj, rp, ru = c.job[hit], c.pool[hit], units[hit]
    order = np.lexsort((rp, rj))
    reason = np.where(P.job_filter != 0, Reason.NO_ELIGIBLE_SITE, Reason.OUT_VALUED).astype(np.int8)
    reason[rj] = Reason.PLACED
    return Solution(rj[order], rp[order], ru[order], reason, solver=solver, status=status, bound=bound)


def _tiers_int(milp: Milp, values: np.ndarray) -> np.ndarray:
    x = np.rint(values[:milp.n_x])
    return np.bincount(milp.col_tier, weights=milp.c_int * x, minlength=len(milp.weights))


def _finish(P: Problem, milp: Milp, sol: Solution | None, native: dict, t0: float, t_build: float,
            traj: list, note: str, status: str) -> PeerResult:
    objective = _objective(P, sol) if sol is not None else None
    bound = native.get("bound_usd")
    t1 = next((t for t, o, b in traj if b is not None and _gap(o, b) is not None and _gap(o, b) <= 0.01), None)
    return PeerResult(objective, bound, _gap(objective, bound), time.monotonic() - t0, t1, peak_rss_mb(), True,
                      status, note, sol, traj, native, t_build, milp.n_x)


# --- CP-SAT --------------------------------------------------------------------------------


def run_cpsat(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
              on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """Plain CP-SAT on the shared MILP (module docstring)."""
    from ortools.sat.python import cp_model  # noqa: PLC0415

    P, t0 = problem, time.monotonic()
    n_cand = candidate_count(P)
    if n_cand > CPSAT_MAX_CANDIDATES:
        return _not_built(f"{n_cand:,} candidates > {CPSAT_MAX_CANDIDATES:,}: one variable each would need "
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
    note = f"objective resolution q=${milp.q:g}/h; tiers as big-M weights {_fmt_w(milp.weights)}"
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        native["bound"] = None
        return _finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                       "infeasible" if status == cp_model.INFEASIBLE else "no_solution")
    values = np.array(solver.response_proto.solution, np.float64)
    ti = _tiers_int(milp, values)
    nb = max(solver.best_objective_bound, solver.objective_value)
    native.update(objective=solver.objective_value, bound=nb,
                  gap=_gap(solver.objective_value, nb), bound_usd=usd_bound(milp, nb, ti))
    sol = _solution(P, milp, values, "cpsat", "optimal" if status == cp_model.OPTIMAL else "feasible",
                    native["bound_usd"])
    return _finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)


def _fmt_w(w: np.ndarray) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in w[::-1]) + ", highest tier first)"


# --- HiGHS ---------------------------------------------------------------------------------


def run_highs(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
              on_phase: Phase | None = None, threads: int = 2) -> PeerResult:
    """The shared MILP through highspy, matrices built as arrays (module docstring)."""
    import highspy  # noqa: PLC0415
    from placement.solvers.lp import _quiet_stdout  # noqa: PLC0415

    P, t0 = problem, time.monotonic()
    n_cand = candidate_count(P)
    if n_cand > HIGHS_MAX_CANDIDATES:
        return _not_built(f"{n_cand:,} candidates > {HIGHS_MAX_CANDIDATES:,}: the matrix and HiGHS's copies "
                          f"would need ~{n_cand * HIGHS_BYTES_PER_CANDIDATE / 1e9:,.0f} GB (1.0 kB per candidate "
                          "measured at M)", t0, n_cand)
    if on_phase:
        on_phase("build")
    milp = build_milp(P)
    with _quiet_stdout():
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
        ti = _tiers_int(milp, x)
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
    note = f"objective resolution q=${milp.q:g}/h; tiers as big-M weights {_fmt_w(milp.weights)}"
    sol_status = info.primal_solution_status
    if sol_status != highspy.kSolutionStatusFeasible:
        native["bound"] = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
        return _finish(P, milp, None, native, t0, t_build, traj, note + "; no solution in the time limit",
                       "infeasible" if "nfeasible" in status else "no_solution")
    values = np.asarray(h.getSolution().col_value, np.float64)
    ti = _tiers_int(milp, values)
    nb = float(info.mip_dual_bound)
    native.update(objective=float(info.objective_function_value), bound=nb, gap=float(info.mip_gap),
                  bound_usd=usd_bound(milp, nb, ti) if math.isfinite(nb) else None)
    optimal = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    sol = _solution(P, milp, values, "highs", "optimal" if optimal else "feasible",
                    native["bound_usd"] if native["bound_usd"] is not None else math.inf)
    if optimal:
        note += "; 'optimal' is HiGHS's default relative gap 1e-4 on the weighted objective"
    return _finish(P, milp, sol, native, t0, t_build, traj, note, sol.status)


# --- first-fit-decreasing ------------------------------------------------------------------


# The FFD loop is Numba (plain Python would take minutes at XL); compiled on first call, cached.
@njit(cache=True)
def _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue, pair_ptr, pair_pool, pair_it_mw):
    kw = job_kw[j] if job_kw[j] > 0 else pool_kw[p]
    it = job_gpus_unit[j] * kw / 1000.0
    for e in range(pair_ptr[j], pair_ptr[j + 1]):
        if pair_pool[e] == p and not np.isnan(pair_it_mw[e]):
            it = pair_it_mw[e]
    return it * site_pue[pool_site[p]]

@njit(cache=True)
def _allowed(j, p, job_kind, job_gpus_unit, job_pinned, job_current_pool, pool_site, pool_gpus,
            site_max_gang, pair_ptr, pair_pool, pair_forbidden):
    g = job_gpus_unit[j]
    if g > pool_gpus[p]:
        return False
    if job_kind[j] == 0 and g > site_max_gang[pool_site[p]]:
        return False
    if job_pinned[j] and p != job_current_pool[j]:
        return False
    for e in range(pair_ptr[j], pair_ptr[j + 1]):
        if pair_pool[e] == p and pair_forbidden[e]:
            return False
    return True

@njit(cache=True)
def _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end):
    """First class-list position >= k (before ``end``) whose pool may still take a plain job's GPU."""
    if not plain:
        return k
    while k < end:
        while nxt[k] != k:  # path halving
            nxt[k] = nxt[nxt[k]]
            k = nxt[k]
        if k >= end:
            return k
        p = class_pool[k]
        if res_gpus[p] >= 1 and res_mw[pool_site[p]] + tol >= pool_floor_mw[p]:
            return k
        nxt[k] = k + 1  # dead for good: capacity only shrinks
        k += 1
    return k


@njit(cache=True)
def _ffd(order, job_kind, job_filter, job_class, class_ptr, class_pool, job_units, job_gpus_unit, job_kw,
         job_pinned, job_current_pool, job_min_sites, job_max_units, job_plain, job_migration_usd, pool_site,
         pool_gpus, pool_kw, pool_floor_mw, site_pue, site_max_gang, site_cap_mw, pair_ptr, pair_pool, pair_it_mw,
         pair_forbidden, max_moves, max_migration_usd, tol, max_rows):
    """First-fit over each job's class pools, in ``order``.

    Shortcuts for *plain* jobs (pool kW, no pairs, not pinned, not running now) that change no
    decision, since capacity only shrinks: a class-list position whose pool cannot take one more
    GPU (GPUs or site power) is dead for good and skipped through ``nxt`` (union-find "next live position",
    path halving); a gang no smaller than one of its class that found no pool is not tried
    again (``fail_g``); nor is a service identical to its class's last failed one. A job that
    runs somewhere now may only move while the migration budget lasts (then it stays or waits).
    """
    n_classes = class_ptr.shape[0] - 1
    res_gpus = pool_gpus.copy()
    res_mw = site_cap_mw.copy()
    row_job = np.empty(max_rows, np.int64)
    row_pool = np.empty(max_rows, np.int64)
    row_units = np.empty(max_rows, np.int64)
    n_rows = 0
    at_site = np.zeros(site_cap_mw.shape[0], np.int64)
    nxt = np.arange(class_pool.shape[0] + 1)
    fail_g = np.full(n_classes, np.iinfo(np.int64).max, np.int64)
    fail_svc = np.full((n_classes, 4), -1, np.int64)  # g, units, min_sites, max_units
    moves_left, usd_left = max_moves, max_migration_usd
    for j in order:
        if job_filter[j] != 0:
            continue
        c = job_class[j]
        g = job_gpus_unit[j]
        end = class_ptr[c + 1]
        plain = job_plain[j]
        if job_kind[j] == 0:
            if plain and g >= fail_g[c]:
                continue
            placed = False
            k = class_ptr[c]
            while True:
                k = _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end)
                if k >= end:
                    break
                p = class_pool[k]
                k += 1
                if g > res_gpus[p] or not _allowed(j, p, job_kind, job_gpus_unit, job_pinned,
                                                   job_current_pool, pool_site, pool_gpus, site_max_gang,
                                                   pair_ptr, pair_pool, pair_forbidden):
                    continue
                cur = job_current_pool[j]
                away = cur >= 0 and p != cur
                if away and (moves_left < 1 or job_migration_usd[j] > usd_left + 1e-9):
                    continue
                mw = _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue,
                              pair_ptr, pair_pool, pair_it_mw)
                s = pool_site[p]
                if mw <= res_mw[s] + tol:
                    if away:
                        moves_left -= 1
                        usd_left -= job_migration_usd[j]
                    res_gpus[p] -= g
                    res_mw[s] -= mw
                    row_job[n_rows], row_pool[n_rows], row_units[n_rows] = j, p, 1
                    n_rows += 1
                    placed = True
                    break
            if not placed and job_plain[j]:
                fail_g[c] = min(fail_g[c], g)
            continue
        # A service: first-fit its replicas, one kept back for each site still needed.
        if (job_plain[j] and fail_svc[c, 0] == g and fail_svc[c, 1] == job_units[j]
                and fail_svc[c, 2] == job_min_sites[j] and fail_svc[c, 3] == job_max_units[j]):
            continue
        left = job_units[j]
        need = job_min_sites[j]
        used_sites = 0
        first = n_rows
        k = class_ptr[c]
        while left > 0:
            k = _live(nxt, k, plain, class_pool, res_gpus, res_mw, pool_site, pool_floor_mw, tol, end)
            if k >= end:
                break
            p = class_pool[k]
            k += 1
            if g > res_gpus[p] or not _allowed(j, p, job_kind, job_gpus_unit, job_pinned, job_current_pool,
                                               pool_site, pool_gpus, site_max_gang, pair_ptr, pair_pool,
                                               pair_forbidden):
                continue
            s = pool_site[p]
            mw = _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site, site_pue,
                          pair_ptr, pair_pool, pair_it_mw)
            after = used_sites + (1 if at_site[s] == 0 else 0)
            cap = min(left - max(need - after, 0), job_max_units[j] - at_site[s], res_gpus[p] // g)
            if mw > 0:
                cap = min(cap, int((res_mw[s] + tol) // mw))
            while cap > 0 and cap * mw > res_mw[s] + tol:  # floor division rounding
                cap -= 1
            if cap <= 0:
                continue
            if at_site[s] == 0:
                used_sites += 1
            at_site[s] += cap
            res_gpus[p] -= cap * g
            res_mw[s] -= cap * mw
            row_job[n_rows], row_pool[n_rows], row_units[n_rows] = j, p, cap
            n_rows += 1
            left -= cap
        ok = left == 0 and used_sites >= need
        cur = job_current_pool[j]
        away_units = 0
        if cur >= 0:
            for r in range(first, n_rows):
                if row_pool[r] != cur:
                    away_units += row_units[r]
        if ok and away_units > 0:
            ok = moves_left >= 1 and away_units * job_migration_usd[j] <= usd_left + 1e-9
            if ok:
                moves_left -= 1
                usd_left -= away_units * job_migration_usd[j]
        for r in range(first, n_rows):  # reset the per-site counts; roll back a partial service
            p = row_pool[r]
            at_site[pool_site[p]] = 0
            if not ok:
                res_gpus[p] += row_units[r] * g
                res_mw[pool_site[p]] += row_units[r] * _unit_mw(j, p, job_gpus_unit, job_kw, pool_kw, pool_site,
                                                               site_pue, pair_ptr, pair_pool, pair_it_mw)
        if not ok:
            n_rows = first
            if job_plain[j]:
                fail_svc[c, 0], fail_svc[c, 1] = g, job_units[j]
                fail_svc[c, 2], fail_svc[c, 3] = job_min_sites[j], job_max_units[j]
    return row_job[:n_rows], row_pool[:n_rows], row_units[:n_rows]


def first_fit_decreasing(problem: Problem) -> Solution:
    """The FFD plan (module docstring); loss-making placements included, as a scheduler would."""
    P = problem
    # Required jobs first (a scheduler's system-critical priority class), then GPUs descending.
    order = np.lexsort((np.arange(P.n_jobs), -(P.job_units * P.job_gpus_unit), ~P.job_required)).astype(np.int64)
    class_len = np.diff(P.class_ptr)[P.job_class]
    max_rows = int(np.where(P.job_kind == 0, 1, np.minimum(P.job_units, class_len)).sum())
    f64 = np.float64
    plain = (P.job_kw_per_gpu <= 0) & (np.diff(P.pair_ptr) == 0) & ~P.job_pinned & (P.job_current_pool < 0)
    # Facility MW of one GPU of a plain job on each pool: less power left than this is a dead pool.
    floor_mw = P.pool_kw_per_gpu * P.site_pue[P.pool_site] / 1000.0 * (1 - 1e-9)
    rj, rp, ru = _ffd(order, P.job_kind, P.job_filter, P.job_class, P.class_ptr, P.class_pool, P.job_units,
                      P.job_gpus_unit, P.job_kw_per_gpu.astype(f64), P.job_pinned, P.job_current_pool,
                      P.job_min_sites, P.job_max_units_per_site, plain, P.job_migration_usd.astype(f64),
                      P.pool_site, P.pool_gpus.astype(np.int64), P.pool_kw_per_gpu.astype(f64), floor_mw.astype(f64),
                      P.site_pue.astype(f64), P.site_max_gang, P.site_cap_mw.astype(f64), P.pair_ptr, P.pair_pool,
                      P.pair_it_mw.astype(f64), P.pair_forbidden.astype(np.bool_), int(min(P.max_moves, UNLIMITED)),
                      float(P.max_migration_usd), MW_TOLERANCE, max_rows)
    o = np.lexsort((rp, rj))
    reason = np.where(P.job_filter != 0, Reason.NO_ELIGIBLE_SITE, Reason.OUT_VALUED).astype(np.int8)
    reason[rj] = Reason.PLACED
    return Solution(rj[o], rp[o], ru[o], reason, solver="ffd", status="feasible")


def run_ffd(problem: Problem, time_limit: float, seed: int, *, on_progress: Progress | None = None,
            on_phase: Phase | None = None) -> PeerResult:
    """FFD ignores ``time_limit`` and ``seed`` (one deterministic pass); it has no bound."""
    P, t0 = problem, time.monotonic()
    if on_phase:
        on_phase("solve")
    sol = first_fit_decreasing(P)
    objective = _objective(P, sol)
    t = time.monotonic() - t0
    if on_progress:
        on_progress(t, objective, None)
    placed_gpus = int((sol.row_units * P.job_gpus_unit[sol.row_job]).sum())
    loss = int((solution_terms(P, sol)["net"] < 0).sum()) if len(sol.row_job) else 0
    note = (f"first-fit by GPUs descending, no value awareness: {int(sol.placed.sum()):,} jobs, "
            f"{placed_gpus:,} GPUs placed, {loss:,} rows at a loss")
    return PeerResult(objective, None, None, t, None, peak_rss_mb(), True, "feasible", note, sol,
                      [(t, objective, None)], {"tiers_usd": tier_objectives(P, sol).tolist()}, t, candidate_count(P))
