"""The MILP shared by the ``cpsat`` and ``highs`` peers, as arrays, the lexicographic tier
stages both solve, the bound they report, and what they read back.

Over ``placement.solvers.candidates.eligible_candidates`` (the candidates every model of the problem
starts from), one variable per candidate: training ``Σ_p x ≤ 1``; services ``Σ_p x = replicas · y``,
per site ``Σ x ≤ max_share`` and, for ``min_sites > 1``, ``z[j,s]`` with ``Σ_s z ≥ min_sites · y``;
GPUs per pool; facility power per site in integer watts (loads rounded up, caps down, so plans
pass the float validator); required jobs placed; migration budget when one is set.

Objective: strict priority tiers, solved lexicographically as an OR engineer would (no weights).
Stage 1 maximises the top tier's net $/h ``T_top``; then ``T_top ≥ found − tol`` is added and
stage 2 maximises the next tier, hinted with stage 1's solution; and so on down to the lowest
tier with a candidate. Each stage gets an even share of the solve time still left (time a stage
does not use carries over); a stage that finds nothing holds its tier at the last plan's value
(no bound from it); stages never reached keep the last plan. A single-tier instance is
one plain solve. The peers differ only in the coefficients and ``tol``:

- ``highs``: float net $/h per unit, ``tol = 1e-6 · max(|found|, 1)``, with ``mip_rel_gap = 1e-6``
  (``LEX_REL_GAP``) so that a stage HiGHS calls optimal is within the tolerance the next stage
  may give up;
- ``cpsat``: net per unit rounded to integers of ``q`` $/h (``q`` the finest of 0.01, 0.1, 1, ...
  keeping every stage objective under 2^52; the note says which), ``tol = 0``: integer
  coefficients are exact, so the row is ``T_top ≥ found``.

Bound in $/h (``lex_bound``; ``PeerResult.gap`` and ``time_to_1pct`` use it): a solved stage
contributes the solver's bound for that stage, capped by the tier's trivial bound ``pos_usd``
(Σ units · best positive net of its jobs); a stage never reached contributes ``pos_usd``; CP-SAT
adds ``units_k · q/2`` per tier for the rounding. This bounds the total of the lexicographic
optimum ``x*`` (of the model's coefficients, tiers equal within ``tol`` counting as ties): while
every stage above is proven, ``x*`` satisfies every ``tier ≥ found`` row (``found`` is its own
tier value), so it lies in the next stage's feasible set and that stage's bound covers its tier.
Once a stage ``k`` is not proven (time limit), ``x*`` still satisfies row ``k`` (``found`` is at
most the optimum), so stage ``k+1``'s bound still covers it, but row ``k+1`` may cut ``x*`` off
(a plan worse on tier ``k`` can be better on ``k+1``): tiers below ``k+1`` contribute ``pos_usd``.
Per-stage objectives, bounds and statuses are in ``PeerResult.native["stages"]``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.peers.common import CENTS_PER_USD, WATTS_PER_MW, PeerResult, gap, peak_rss_mb, plan_objective, to_int
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Reason, Solution
from placement.solvers.candidates import Candidates, eligible_candidates

OBJ_BITS = 52


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
    col_tier: np.ndarray  # tier of each x column (higher = more important)
    c_int: np.ndarray  # integer net per x column (units of q $/h; CP-SAT's coefficients)
    row: np.ndarray
    col: np.ndarray
    val: np.ndarray
    row_lo: np.ndarray
    row_hi: np.ndarray
    amo: np.ndarray  # bool per row
    stages: list[int]  # tiers with a candidate, highest first: the lexicographic solve order
    pos_usd: np.ndarray  # per tier: Σ units · max(0, best net) ($/h), the trivial bound
    slack_usd: np.ndarray  # per tier: units · q/2, the rounding of ``c_int`` ($/h)
    q: float  # $/h per integer objective unit
    cand: Candidates  # those kept (ub >= 1)

    @property
    def n_cols(self) -> int:
        return len(self.col_lo)

    def tier_cols(self, k: int) -> np.ndarray:
        """The x columns of tier ``k``."""
        return np.flatnonzero(self.col_tier == k)


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
    """The shared MILP (see the module docstring).

    One long function on purpose: each row block reads the same column layout (x, y, z, moved
    offsets and the dense keys), and it reads top to bottom as the model is written down.
    """
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
    cap_w = to_int(P.site_cap_mw * WATTS_PER_MW, up=False)
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
        cents = to_int(P.job_migration_usd[c.job[away]] * CENTS_PER_USD, up=True)
        budget = float(to_int(P.max_migration_usd * CENTS_PER_USD, up=False))
        rows.add(np.zeros(len(away), np.int64), away, cents.astype(np.float64), 1, -inf_inf, budget)

    n_cols = m0 + n_m
    col_lo = np.zeros(n_cols)
    col_hi = np.ones(n_cols)
    col_hi[:n] = c.ub
    col_lo[y0:y0 + n_y] = P.job_required[services]
    col_bool = np.ones(n_cols, bool)
    col_bool[:n] = train | (c.ub <= 1)

    # Objective: per tier, net $/h per unit (HiGHS) and its integer rounding in q $/h (CP-SAT).
    tier = P.job_tier[c.job]
    n_tiers = int(P.job_tier.max()) + 1 if P.n_jobs else 1
    best_pos = np.zeros(P.n_jobs)
    np.maximum.at(best_pos, c.job, np.maximum(c.net, 0.0))
    has = np.bincount(c.job, minlength=P.n_jobs) > 0
    units_tier = np.bincount(P.job_tier[has], weights=P.job_units[has], minlength=n_tiers)
    pos_usd = np.bincount(P.job_tier, weights=P.job_units * best_pos, minlength=n_tiers)
    q = 0.01
    while True:
        c_int = np.rint(c.net / q)
        total = np.bincount(tier, weights=np.abs(c_int) * c.ub, minlength=n_tiers)
        if total.max(initial=0.0) < 2.0 ** OBJ_BITS or q > 1e12:
            break
        q *= 10.0
    stages = [k for k in range(n_tiers - 1, -1, -1) if np.any(tier == k)]
    return Milp(n, col_lo, col_hi, col_bool, tier, c_int,
                rows.cat(rows.r, np.int64), rows.cat(rows.c, np.int64), rows.cat(rows.v, np.float64),
                rows.cat(rows.lo, np.float64), rows.cat(rows.hi, np.float64), rows.cat(rows.amo, bool),
                stages, pos_usd, units_tier * q / 2, q, c)


def lex_bound(milp: Milp, records: list[dict[str, Any]], live: float | None = None) -> float:
    """$/h bound on the lexicographic optimum's total (module docstring).

    ``records``: the stages solved so far, in ``milp.stages`` order, each with ``bound_usd``
    (the solver's bound on its tier in $/h, rounding slack included; None: none) and ``proven``;
    ``live``: the same bound for the stage being solved now (progress callbacks).
    """
    bounds = [r.get("bound_usd") for r in records] + ([live] if live is not None else [])
    first_open: int | None = None  # the first stage not proven
    total = 0.0
    for i, k in enumerate(milp.stages):
        trivial = float(milp.pos_usd[k])
        valid = first_open is None or i <= first_open + 1
        b = bounds[i] if i < len(bounds) else None
        total += min(trivial, b) if valid and b is not None else trivial
        if first_open is None and i < len(records) and not records[i]["proven"]:
            first_open = i
    return total


def stage_record(milp: Milp, k: int, status: str, proven: bool, values: np.ndarray, bound_usd: float | None,
                 seconds: float) -> dict[str, Any]:
    """What ``native["stages"]`` keeps of one stage: tier ``k``'s objective in $/h and its bound."""
    idx = milp.tier_cols(k)
    objective = float(milp.cand.net[idx] @ np.rint(values[idx]))
    if bound_usd is not None:
        bound_usd = min(float(milp.pos_usd[k]), max(bound_usd, objective))
    return {"tier": int(k), "status": status, "proven": bool(proven), "objective_usd": objective,
            "bound_usd": bound_usd, "seconds": seconds}


def milp_solution(P: Problem, milp: Milp, values: np.ndarray, solver: str, status: str, bound: float) -> Solution:
    """Solution from the x values (units per kept candidate)."""
    c = milp.cand
    units = np.rint(values[:milp.n_x]).astype(np.int64)
    hit = units > 0
    rj, rp, ru = c.job[hit], c.pool[hit], units[hit]
    order = np.lexsort((rp, rj))
    reason = np.where(P.job_filter != 0, Reason.NO_ELIGIBLE_SITE, Reason.OUT_VALUED).astype(np.int8)
    reason[rj] = Reason.PLACED
    return Solution(rj[order], rp[order], ru[order], reason, solver=solver, status=status, bound=bound)


def finish(P: Problem, milp: Milp, sol: Solution | None, native: dict, t0: float, t_build: float,
           traj: list, note: str, status: str) -> PeerResult:
    """A MILP peer's result: objective of ``sol``, ``native["bound_usd"]`` as the bound."""
    objective = plan_objective(P, sol) if sol is not None else None
    bound = native.get("bound_usd")
    t1 = next((t for t, o, b in traj if b is not None and gap(o, b) is not None and gap(o, b) <= 0.01), None)
    return PeerResult(objective, bound, gap(objective, bound), time.monotonic() - t0, t1, peak_rss_mb(), True,
                      status, note, sol, traj, native, t_build, milp.n_x)
