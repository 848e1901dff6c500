"""The exact stage's integer program as plain arrays, shared by every engine (CP-SAT, HiGHS).

Columns: one per kept candidate (job, pool) first, in the order of ``Candidates`` (a gang's is
0/1, a service's counts units), then a placed flag ``y`` per service, a site-used flag ``z`` per
(service, site) where ``min_sites > 1``, and a moved flag per service when moves are capped.
Rows ``lo ≤ A x ≤ hi`` (CSR, integer coefficients):

- one placement per job: a gang takes at most one pool (exactly one when required); a service
  places all its units or none (``Σ x − units · y = 0``);
- spread: ``Σ_{x at s} x ≤ cap · z`` and ``z ≤ Σ_{x at s} x``, ``Σ_s z ≥ min_sites · y``; without
  a spread rule, ``Σ_{x at s} x ≤ max units per site`` where it can bind;
- GPUs per pool and facility watts per site (loads rounded up, caps down, so every integer
  plan passes the float validator), each only where it can bind;
- the migration budget: moved count and one-off cents.

Stage objectives (solved lexicographically by the caller): the count of placed required jobs
(only for an infeasible input, to explain it), then each tier's net $/h from the highest.
Each stage carries float coefficients (``net``, $/h per unit) for engines that take them and
integer ones scaled from the data (``scale`` units per $/h) for CP-SAT: the scale keeps the
largest coefficient at or below 2^30 and the stage's whole range below 2^52, and never exceeds
one unit per micro-dollar per hour, so the numbers stay well inside every engine's exact range.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from placement.core.objective import unit_moves
from placement.core.problem import UNLIMITED, Problem

WATTS_PER_MW = 1_000_000
CENTS_PER_USD = 100
# Float noise (10200.000000000002 W) must not cost a watt; far below MW_TOLERANCE.
_ROUND_REL = 1e-14
# Integer stage objectives: largest coefficient and whole range, in bits; finest resolution.
COEF_BITS = 30
RANGE_BITS = 52
MAX_SCALE = 1e6  # integer units per $/h: a micro-dollar per hour is finer than any input
NO_LIMIT = np.iinfo(np.int64).max // 4


def to_int(a: np.ndarray | float, up: bool) -> np.ndarray:
    """Scaled floats to int64, rounded up (loads, costs) or down (capacities, budgets)."""
    a = np.minimum(np.asarray(a, np.float64), UNLIMITED)
    return (np.ceil(a * (1 - _ROUND_REL)) if up else np.floor(a * (1 + _ROUND_REL))).astype(np.int64)


@dataclass(frozen=True)
class Objective:
    """One lexicographic stage: maximise ``Σ net · x`` (or the integer ``Σ coef · x``) over ``cols``."""

    label: str
    tier: int | None  # None: the count of placed required jobs
    cols: np.ndarray  # int64 column indices
    net: np.ndarray  # float64 coefficient per column ($/h per unit, or 1 per placed job)
    coef: np.ndarray  # int64: rint(net * scale)
    scale: float  # integer units per objective unit
    trivial: float  # Σ units · max(0, best net) over the stage's jobs: a bound on any plan
    units: int  # Σ units of the stage's jobs: the integer objective is off by ≤ units · 0.5 / scale

    @property
    def slack(self) -> float:
        """How far the float objective of any plan can exceed its integer objective / scale."""
        return 0.5 * self.units / self.scale if self.tier is not None else 0.0


@dataclass(frozen=True)
class IntModel:
    """``max`` stage objectives lexicographically s.t. ``row_lo ≤ A x ≤ row_hi``, ``col_lb ≤ x ≤ col_ub``, x integer."""

    n_cand: int  # the first n_cand columns are candidates
    col_lb: np.ndarray
    col_ub: np.ndarray
    row_lo: np.ndarray  # -NO_LIMIT where unbounded below
    row_hi: np.ndarray  # NO_LIMIT where unbounded above
    a_ptr: np.ndarray  # CSR over rows
    a_col: np.ndarray
    a_val: np.ndarray
    stages: list[Objective]
    n_units: int  # Σ units of jobs with a candidate (rounding slack count)
    aux_ptr: np.ndarray  # CSR over the non-candidate columns: each is 1 iff any member candidate is > 0
    aux_cand: np.ndarray
    pool_row: np.ndarray  # per pool, its GPU row (-1: it cannot bind)
    site_row: np.ndarray  # per site, its watts row (-1: it cannot bind)

    def complete(self, cand_values: np.ndarray) -> np.ndarray:
        """Every column's value from the candidates' (the flags follow from them)."""
        pos = (cand_values[self.aux_cand] > 0).astype(np.int64)
        counts = np.diff(self.aux_ptr)
        flags = np.zeros(len(counts), np.int64)
        if len(pos):
            sums = np.add.reduceat(pos, np.minimum(self.aux_ptr[:-1], len(pos) - 1))
            flags = np.where(counts > 0, sums > 0, 0).astype(np.int64)
        return np.concatenate([np.asarray(cand_values, np.int64), flags])

    @property
    def n_cols(self) -> int:
        return len(self.col_lb)

    @property
    def n_rows(self) -> int:
        return len(self.row_lo)

    def activity(self, values: np.ndarray) -> np.ndarray:
        """``A x`` in exact integer arithmetic."""
        prod = self.a_val * values[self.a_col]
        return np.add.reduceat(prod, self.a_ptr[:-1]) if len(prod) else np.zeros(self.n_rows, np.int64)

    def feasible(self, values: np.ndarray) -> bool:
        """Whether integer ``values`` satisfy every bound and row exactly."""
        if len(values) != self.n_cols or (values < self.col_lb).any() or (values > self.col_ub).any():
            return False
        act = self.activity(values)
        empty = self.a_ptr[1:] == self.a_ptr[:-1]
        act = np.where(empty, 0, act)
        return bool(((act >= self.row_lo) & (act <= self.row_hi)).all())


class _Rows:
    """Accumulates rows as COO triplets."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.n = 0

    def add(self, row: np.ndarray, col: np.ndarray, val: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        """Rows ``self.n + row`` (row indices local to this batch, 0..len(lo)-1)."""
        self.rows.append(np.asarray(row, np.int64) + self.n)
        self.cols.append(np.asarray(col, np.int64))
        self.vals.append(np.asarray(val, np.int64))
        self.lo.append(np.broadcast_to(np.asarray(lo, np.int64), (len(lo),)).copy())
        self.hi.append(np.broadcast_to(np.asarray(hi, np.int64), (len(hi),)).copy())
        self.n += len(lo)

    def csr(self) -> tuple[np.ndarray, ...]:
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64))
        row, col, val = cat(self.rows), cat(self.cols), cat(self.vals)
        order = np.lexsort((col, row))
        row, col, val = row[order], col[order], val[order]
        ptr = np.zeros(self.n + 1, np.int64)
        np.add.at(ptr, row + 1, 1)
        return np.cumsum(ptr), col, val, cat(self.lo), cat(self.hi)


def _dense(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys ascending and each entry's index into them."""
    return np.unique(keys, return_inverse=True)


def _binding(load: np.ndarray, group: np.ndarray, cap: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """Per group, whether the group's candidates at their bounds could exceed ``cap``."""
    most = np.bincount(group, weights=(load * ub).astype(np.float64), minlength=len(cap))
    return most > cap


def build_int_model(problem: Problem, cand, required_hard: bool) -> IntModel:
    """The integer program over kept candidates ``cand`` (``exact.Candidates`` with ub ≥ 1).

    ``required_hard=False`` makes required jobs optional and adds a first stage that
    maximises how many of them are placed (used to explain an infeasible input).
    """
    P, c = problem, cand
    n = len(c.job)
    lb = [np.zeros(n, np.int64)]
    ub = [c.ub.astype(np.int64)]
    rows = _Rows()
    members: list[np.ndarray] = []  # per non-candidate column, in column order: its candidates
    jobs, job_of = _dense(c.job)
    is_train = P.job_kind[jobs] == 0
    hard = required_hard & P.job_required[jobs]
    # Services' placed flags y: columns n .. n + n_services.
    svc = np.flatnonzero(~is_train)
    y_col = np.full(len(jobs), -1, np.int64)
    y_col[svc] = n + np.arange(len(svc))
    lb.append(hard[svc].astype(np.int64))
    ub.append(np.ones(len(svc), np.int64))
    by_job = np.split(np.arange(n), np.flatnonzero(np.diff(job_of)) + 1) if n else []
    members += [by_job[k] for k in svc]
    n_cols = n + len(svc)
    # One placement per job (one row per job, in job order).
    units = P.job_units[jobs]
    cand_i = np.arange(n)
    rows.add(np.concatenate([job_of, svc]), np.concatenate([cand_i, y_col[svc]]),
             np.concatenate([np.ones(n, np.int64), -units[svc]]),
             lo=np.where(is_train, hard.astype(np.int64), 0), hi=np.where(is_train, 1, 0))
    placed_cols = np.where(is_train, -1, y_col)  # gangs: the job's row sum is its placed flag
    n_cols = _spread_rows(P, c, rows, lb, ub, n_cols, members, jobs, y_col)
    # GPUs per pool and watts per site, where they can bind.
    g = P.job_gpus_unit[c.job]
    pools, pool_of = _dense(c.pool)
    bind = np.flatnonzero(_binding(g, pool_of, P.pool_gpus[pools], c.ub))
    pool_row = np.full(P.n_pools, -1, np.int64)
    pool_row[pools[bind]] = rows.n + np.arange(len(bind))
    sel = np.isin(pool_of, bind)
    rows.add(np.searchsorted(bind, pool_of[sel]), cand_i[sel], g[sel],
             lo=np.full(len(bind), -NO_LIMIT), hi=P.pool_gpus[pools[bind]])
    cap_w = to_int(P.site_cap_mw * WATTS_PER_MW, up=False)
    sites, site_of = _dense(c.site)
    bind = np.flatnonzero(_binding(c.watts, site_of, cap_w[sites], c.ub))
    site_row = np.full(P.n_sites, -1, np.int64)
    site_row[sites[bind]] = rows.n + np.arange(len(bind))
    sel = np.isin(site_of, bind)
    rows.add(np.searchsorted(bind, site_of[sel]), cand_i[sel], c.watts[sel],
             lo=np.full(len(bind), -NO_LIMIT), hi=cap_w[sites[bind]])
    n_cols = _migration_rows(P, c, rows, lb, ub, n_cols, members)
    ptr, col, val, lo, hi = rows.csr()
    stages = _stages(P, c, jobs, job_of, placed_cols, required_hard)
    aux_ptr = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    aux_cand = np.concatenate(members).astype(np.int64) if members else np.zeros(0, np.int64)
    return IntModel(n, np.concatenate(lb), np.concatenate(ub), lo, hi, ptr, col, val, stages,
                    int(units.sum()), aux_ptr, aux_cand, pool_row, site_row)


def _spread_rows(P: Problem, c, rows: _Rows, lb: list, ub: list, n_cols: int, members: list,
                 jobs: np.ndarray, y_col: np.ndarray) -> int:
    """Per (service, site): a site-used flag z where ``min_sites > 1`` (``Σ x ≤ cap · z``,
    ``z ≤ Σ x``, ``Σ_s z ≥ min_sites · y``), else ``Σ x ≤ max units per site`` where it binds."""
    inf = np.flatnonzero(P.job_kind[c.job] == 1)
    if not len(inf):
        return n_cols
    js_keys, js_of = _dense(c.job[inf] * P.n_sites + c.site[inf])
    js_job, js_sum = js_keys // P.n_sites, np.bincount(js_of, weights=c.ub[inf], minlength=len(js_keys))
    cap = P.job_max_units_per_site[js_job]
    spread = P.job_min_sites[js_job] > 1
    zk = np.flatnonzero(spread)
    z_col = np.full(len(js_keys), -1, np.int64)
    z_col[zk] = n_cols + np.arange(len(zk))
    lb.append(np.zeros(len(zk), np.int64))
    ub.append(np.ones(len(zk), np.int64))
    order = np.argsort(js_of, kind="stable")
    by_key = np.split(inf[order], np.flatnonzero(np.diff(js_of[order])) + 1)
    members += [by_key[k] for k in zk]
    n_cols += len(zk)
    # Σ x − min(cap, Σub) · z ≤ 0 and z − Σ x ≤ 0, for spread keys.
    sel = spread[js_of]
    kz = np.searchsorted(zk, js_of[sel])
    big = np.minimum(cap[zk], js_sum[zk].astype(np.int64))
    rows.add(np.concatenate([kz, np.arange(len(zk))]), np.concatenate([inf[sel], z_col[zk]]),
             np.concatenate([np.ones(sel.sum(), np.int64), -big]), lo=np.full(len(zk), -NO_LIMIT), hi=np.zeros(len(zk)))
    rows.add(np.concatenate([np.arange(len(zk)), kz]), np.concatenate([z_col[zk], inf[sel]]),
             np.concatenate([np.ones(len(zk), np.int64), -np.ones(sel.sum(), np.int64)]),
             lo=np.full(len(zk), -NO_LIMIT), hi=np.zeros(len(zk)))
    # Σ_s z − min_sites · y ≥ 0 per spread service.
    zj, zj_of = _dense(js_job[zk])
    yj = y_col[np.searchsorted(jobs, zj)]
    rows.add(np.concatenate([zj_of, np.arange(len(zj))]), np.concatenate([z_col[zk], yj]),
             np.concatenate([np.ones(len(zk), np.int64), -P.job_min_sites[zj]]),
             lo=np.zeros(len(zj)), hi=np.full(len(zj), NO_LIMIT))
    # Without spread: Σ x ≤ cap where the site could hold more.
    capped = np.flatnonzero(~spread & (js_sum > cap))
    sel = np.isin(js_of, capped)
    rows.add(np.searchsorted(capped, js_of[sel]), inf[sel], np.ones(sel.sum(), np.int64),
             lo=np.full(len(capped), -NO_LIMIT), hi=cap[capped])
    return n_cols


def _migration_rows(P: Problem, c, rows: _Rows, lb: list, ub: list, n_cols: int, members: list) -> int:
    """Move count and one-off migration cents, only for jobs that run somewhere now."""
    away = np.flatnonzero(unit_moves(P, c.job, c.pool))
    if not len(away):
        return n_cols
    if P.max_moves < UNLIMITED:
        mj, mj_of = _dense(c.job[away])
        if len(mj) > P.max_moves:
            svc = P.job_kind[mj] == 1
            flag = np.full(len(mj), -1, np.int64)
            flag[svc] = n_cols + np.arange(svc.sum())
            lb.append(np.zeros(svc.sum(), np.int64))
            ub.append(np.ones(svc.sum(), np.int64))
            members += [away[mj_of == k] for k in np.flatnonzero(svc)]
            n_cols += int(svc.sum())
            # Services: Σ away x − units · flag ≤ 0.
            sk = np.flatnonzero(svc)
            sel = svc[mj_of]
            rows.add(np.concatenate([np.searchsorted(sk, mj_of[sel]), np.arange(len(sk))]),
                     np.concatenate([away[sel], flag[sk]]),
                     np.concatenate([np.ones(sel.sum(), np.int64), -P.job_units[mj[sk]]]),
                     lo=np.full(len(sk), -NO_LIMIT), hi=np.zeros(len(sk)))
            # Σ moved ≤ max_moves: gangs count their away candidates, services their flag.
            gang = away[~sel]
            rows.add(np.zeros(len(gang) + len(sk), np.int64), np.concatenate([gang, flag[sk]]),
                     np.ones(len(gang) + len(sk), np.int64), lo=[-NO_LIMIT], hi=[int(P.max_moves)])
    if np.isfinite(P.max_migration_usd):
        cents = to_int(P.job_migration_usd[c.job[away]] * CENTS_PER_USD, up=True)
        budget = int(to_int(P.max_migration_usd * CENTS_PER_USD, up=False))
        if (cents * c.ub[away]).sum() > budget:
            rows.add(np.zeros(len(away), np.int64), away, cents, lo=[-NO_LIMIT], hi=[budget])
    return n_cols


def integer_scale(net: np.ndarray, ub: np.ndarray) -> float:
    """Integer units per $/h for one stage: the finest power of two within the module's limits."""
    top = float(np.abs(net).max()) if len(net) else 0.0
    span = float((np.abs(net) * ub).sum())
    if top == 0.0:
        return 1.0
    scale = min(MAX_SCALE, 2.0**COEF_BITS / top, 2.0**RANGE_BITS / max(span, top))
    return float(2.0 ** np.floor(np.log2(scale)))


def _stages(P: Problem, c, jobs: np.ndarray, job_of: np.ndarray, placed_cols: np.ndarray,
            required_hard: bool) -> list[Objective]:
    """The required-count stage (relaxed model only), then one net-value stage per tier, highest first."""
    stages: list[Objective] = []
    req = P.job_required[jobs]
    if not required_hard and req.any():
        # A gang's candidates each count 1; a service counts through its y flag.
        gang_c = np.flatnonzero(req[job_of] & (P.job_kind[c.job] == 0))
        svc_y = placed_cols[req & (placed_cols >= 0)]
        cols = np.concatenate([gang_c, svc_y])
        ones = np.ones(len(cols))
        stages.append(Objective("required", None, cols, ones, ones.astype(np.int64), 1.0, float(req.sum()), 0))
    tiers = P.job_tier[c.job]
    best = np.zeros(P.n_jobs)
    np.maximum.at(best, c.job, c.net)
    for k in sorted(set(tiers.tolist()), reverse=True):
        idx = np.flatnonzero(tiers == k)
        net = c.net[idx]
        scale = integer_scale(net, c.ub[idx])
        in_tier = P.job_tier[jobs] == k
        trivial = float((P.job_units[jobs] * best[jobs])[in_tier].sum())
        stages.append(Objective(f"tier {k}", k, idx, net, np.rint(net * scale).astype(np.int64), scale, trivial,
                                int(P.job_units[jobs][in_tier].sum())))
    return stages


@dataclass
class LexResult:
    """What an engine found over the stages, in order.

    ``bound`` ($/h) bounds the total objective of the lexicographic optimum: each solved stage
    contributes its engine bound (capped by its trivial bound), every later one its trivial
    bound. Valid whatever was proven, because the lexicographic optimum satisfies every
    ``stage ≥ found`` row added on the way.
    """

    values: np.ndarray | None = None  # every column; None: no solution found
    records: list[dict] = field(default_factory=list)
    infeasible: bool = False
    proven: set = field(default_factory=set)  # tiers (None: the required stage) proven optimal
    bound: float = np.inf
