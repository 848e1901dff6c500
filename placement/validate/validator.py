"""Independent check of every hard constraint on a plan table (DESIGN.md §1, §6).

The validator shares no code with the compiler, kernels or solvers: it recomputes eligibility,
GPU use, power and migration from the models (``Portfolio``, the validated jobs and pairs
tables) and the plan's ``job_id, status, site_id, gpu_type, replicas, gpus`` columns. Work is
vectorised over plan rows; rules that need Python (type specs, region lists, tenants, latency)
run once per distinct (code, site/type) combination, so a million-row plan stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.io.columns import flag_column, number_column, text_column
from placement.model.jobs import parse_list, parse_type_spec
from placement.model.portfolio import Portfolio, SolveOptions

PLAN_COLUMNS = ("job_id", "status", "site_id", "gpu_type", "replicas", "gpus")
# A plan exactly at a cap is feasible; sums taken in another order may differ by rounding.
ABS_TOL = 1e-9
REL_TOL = 1e-9
# Reported it_mw / facility_mw are display figures: compare loosely.
REPORTED_REL_TOL = 1e-6


@dataclass(frozen=True)
class Violation:
    """One broken hard constraint: a short ``kind`` code, the job and site involved, a sentence."""

    kind: str
    job_id: str | None
    site_id: str | None
    message: str


def _index(values: pa.Array, names: list[str] | pa.Array) -> np.ndarray:
    """Position of each value in ``names``; -1 for null or unknown."""
    names = names if isinstance(names, pa.Array) else pa.array(names, pa.string())
    idx = pc.index_in(values, value_set=names)
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), np.int64)


def _codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes of a column (null gets its own code) and the distinct values."""
    enc = column.combine_chunks().dictionary_encode(null_encoding="encode")
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64), enc.dictionary.to_pylist()


def _per_combo(a: np.ndarray, b: np.ndarray, nb: int, fn: Callable[[int, int], Any],
               dtype: Any) -> np.ndarray:
    """Evaluate ``fn(a_i, b_i)`` once per distinct pair and broadcast the results back."""
    if a.size == 0:
        return np.zeros(0, dtype)
    uniq, inv = np.unique(a * nb + b, return_inverse=True)
    vals = np.array([fn(int(k // nb), int(k % nb)) for k in uniq], dtype)
    return vals[inv.reshape(-1)]


def _over(total: np.ndarray, cap: np.ndarray) -> np.ndarray:
    return total > cap + ABS_TOL + REL_TOL * np.abs(cap)


class _Report:
    """Collects violations; ``add`` formats one message per flagged index."""

    def __init__(self) -> None:
        self.items: list[Violation] = []

    def add(self, kind: str, where: Iterable[int], job: Callable[[int], str | None],
            site: Callable[[int], str | None], message: Callable[[int], str]) -> None:
        for i in where:
            self.items.append(Violation(kind, job(int(i)), site(int(i)), message(int(i))))


def validate_plan(portfolio: Portfolio, jobs: pa.Table, plan: pa.Table, pairs: pa.Table | None = None,
                  options: SolveOptions | None = None) -> list[Violation]:
    """Every hard-constraint violation of ``plan`` for these inputs; ``[]`` means valid."""
    options = options or portfolio.solve
    missing = [c for c in PLAN_COLUMNS if c not in plan.column_names]
    if missing:
        return [Violation("schema", None, None, f"the plan has no column(s) {', '.join(missing)}")]
    rep = _Report()
    sites, types = portfolio.sites, list(portfolio.gpu_types)
    S, T, n = len(sites), len(types), jobs.num_rows
    site_names = [s.id for s in sites]
    id_array = pc.cast(jobs.column("id").combine_chunks(), pa.string())
    job_ids = id_array.to_numpy(zero_copy_only=False)

    # --- plan rows -------------------------------------------------------------------------
    raw_job = text_column(plan, "job_id")
    row_job_name = raw_job.to_numpy(zero_copy_only=False)
    raw_site = text_column(plan, "site_id")
    row_site_name = raw_site.to_numpy(zero_copy_only=False)
    jr = _index(raw_job, id_array)
    sr = _index(raw_site, site_names)
    raw_type = text_column(plan, "gpu_type")
    gtype = raw_type.to_numpy(zero_copy_only=False)
    tr = _index(raw_type, types)
    status = text_column(plan, "status").to_numpy(zero_copy_only=False)
    placed, unplaced = status == "placed", status == "unplaced"
    reps, gpus = number_column(plan, "replicas", 0.0), number_column(plan, "gpus", 0.0)
    rows = np.arange(plan.num_rows)
    rj = lambda i: row_job_name[i]  # noqa: E731 - ids of row i, for messages
    rs = lambda i: row_site_name[i]  # noqa: E731
    jn = lambda j: str(job_ids[j])  # noqa: E731
    none = lambda _: None  # noqa: E731

    rep.add("unknown_job", rows[jr < 0], rj, rs,
            lambda i: f"plan row {i} names job '{rj(i)}', not an input job")
    rep.add("bad_status", rows[(jr >= 0) & ~placed & ~unplaced], rj, rs,
            lambda i: f"plan row {i} has status {status[i]!r}, expected 'placed' or 'unplaced'")
    known = jr >= 0
    p_rows = rows[known & placed]  # placed rows of input jobs
    u_rows = rows[known & unplaced]
    n_placed = np.bincount(jr[p_rows], minlength=n)
    n_unplaced = np.bincount(jr[u_rows], minlength=n)
    is_placed = n_placed > 0
    all_jobs = np.arange(n)

    # --- one entry per job ---------------------------------------------------------------
    rep.add("missing_job", all_jobs[(n_placed == 0) & (n_unplaced == 0)], jn, none,
            lambda j: f"job '{jn(j)}' is neither placed nor unplaced in the plan")
    rep.add("duplicate_job", all_jobs[n_unplaced > 1], jn, none,
            lambda j: f"job '{jn(j)}' has {n_unplaced[j]} unplaced rows, expected 1")
    rep.add("placed_and_unplaced", all_jobs[is_placed & (n_unplaced > 0)], jn, none,
            lambda j: f"job '{jn(j)}' has {n_placed[j]} placed and {n_unplaced[j]} unplaced rows")
    pool_key = jr[p_rows] * (S + 1) * (T + 1) + (sr[p_rows] + 1) * (T + 1) + (tr[p_rows] + 1)
    _, first, counts = np.unique(pool_key, return_index=True, return_counts=True)
    dup_rows = p_rows[first[counts > 1]]
    rep.add("duplicate_job", dup_rows, rj, rs,
            lambda i: f"job '{rj(i)}' has more than one placed row at site '{rs(i)}' for one GPU type")

    # --- unplaced rows -------------------------------------------------------------------
    reason = text_column(plan, "reason")
    no_reason = np.asarray(pc.is_null(reason).to_numpy(zero_copy_only=False), bool)
    rep.add("unplaced_reason", rows[unplaced & no_reason], rj, none,
            lambda i: f"unplaced job '{rj(i)}' has no reason code")
    named = pc.or_(pc.is_valid(raw_site), pc.is_valid(raw_type))
    odd = unplaced & ((reps != 0) | (gpus != 0) | np.asarray(named.to_numpy(zero_copy_only=False), bool))
    rep.add("unplaced_row", rows[odd], rj, rs,
            lambda i: f"unplaced row of job '{rj(i)}' has site '{rs(i)}', type '{gtype[i]}', "
                      f"{reps[i]:g} replicas and {gpus[i]:g} GPUs; expected none")

    # --- job attributes (by job index) ---------------------------------------------------
    inference = np.asarray(pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False), bool)
    job_gpus, gpr = number_column(jobs, "gpus", 0), number_column(jobs, "gpus_per_replica", 0)
    job_reps = number_column(jobs, "replicas", 0)
    unit_gpus = np.where(inference, gpr, job_gpus)
    required, pinned = flag_column(jobs, "required"), flag_column(jobs, "pinned")
    cur_site_name, cur_type_name = text_column(jobs, "current_site"), text_column(jobs, "current_gpu_type")
    cur_site, cur_type = _index(cur_site_name, site_names), _index(cur_type_name, types)

    rep.add("required", all_jobs[required & ~is_placed], jn, none,
            lambda j: f"required job '{jn(j)}' is not placed")

    # --- placed rows: shape of each job ---------------------------------------------------
    pj = jr[p_rows]
    bad_site, bad_type = p_rows[sr[p_rows] < 0], p_rows[tr[p_rows] < 0]
    rep.add("unknown_site", bad_site, rj, rs,
            lambda i: f"placed row of job '{rj(i)}' names site '{rs(i)}', not in the portfolio")
    rep.add("unknown_gpu_type", bad_type, rj, rs,
            lambda i: f"placed row of job '{rj(i)}' names GPU type '{gtype[i]}', not in the catalog")
    rep.add("replicas", p_rows[(reps[p_rows] < 1) | (reps[p_rows] != np.floor(reps[p_rows]))], rj, rs,
            lambda i: f"placed row of job '{rj(i)}' at site '{rs(i)}' has {reps[i]:g} replicas, "
                      "expected a whole number >= 1")
    training_rows = p_rows[~inference[pj]]
    rep.add("training_split", all_jobs[~inference & (n_placed > 1)], jn, none,
            lambda j: f"training job '{jn(j)}' has {n_placed[j]} placed rows, a gang needs exactly 1")
    rep.add("training_replicas", training_rows[reps[training_rows] != 1], rj, rs,
            lambda i: f"training job '{rj(i)}' row at site '{rs(i)}' has {reps[i]:g} replicas, expected 1")
    want_gpus = np.where(inference[pj], reps[p_rows] * gpr[pj], job_gpus[pj])
    bad = gpus[p_rows] != want_gpus
    rep.add("job_gpus", p_rows[bad], rj, rs, lambda i: (
        f"job '{rj(i)}' row at site '{rs(i)}' reports {gpus[i]:g} GPUs, expected "
        f"{want_gpus[np.searchsorted(p_rows, i)]:g}"))

    # Inference: replica total, spread over sites, share per site.
    inf_rows = p_rows[inference[pj]]
    rep_sum = np.bincount(jr[inf_rows], weights=reps[inf_rows], minlength=n)
    rep.add("replicas", all_jobs[inference & is_placed & (rep_sum != job_reps)], jn, none,
            lambda j: f"inference job '{jn(j)}' places {rep_sum[j]:g} replicas, expected {job_reps[j]:g}")
    inf_rows = inf_rows[sr[inf_rows] >= 0]
    js_key = jr[inf_rows] * S + sr[inf_rows]
    js, js_inv = np.unique(js_key, return_inverse=True)
    js_reps = np.bincount(js_inv.reshape(-1), weights=reps[inf_rows], minlength=len(js))
    n_sites = np.bincount(js // S, minlength=n)
    min_sites = number_column(jobs, "min_sites", 1)
    rep.add("min_sites", all_jobs[inference & is_placed & (n_sites < min_sites)], jn, none,
            lambda j: f"inference job '{jn(j)}' spans {n_sites[j]} sites, min_sites is {min_sites[j]:g}")
    max_units = np.floor(number_column(jobs, "max_share_per_site", 1.0) * job_reps + 1e-9)
    rep.add("max_share", np.flatnonzero(js_reps > max_units[js // S]), lambda k: jn(js[k] // S),
            lambda k: site_names[js[k] % S],
            lambda k: f"inference job '{jn(js[k] // S)}' puts {js_reps[k]:g} replicas at site "
                      f"'{site_names[js[k] % S]}', max_share_per_site allows {max_units[js[k] // S]:g}")

    # --- eligibility, per placed row at a known pool ---------------------------------------
    ok = p_rows[(sr[p_rows] >= 0) & (tr[p_rows] >= 0)]
    oj, os_, ot = jr[ok], sr[ok], tr[ok]
    tn = lambda i: types[tr[i]]  # noqa: E731
    pool_gpus = np.full((S, T), -1, np.int64)
    pool_kw = np.array([[portfolio.gpu_types[t].kw_per_gpu for t in types]] * S, np.float64)
    for si, s in enumerate(sites):
        for t, pool in s.pools.items():
            pool_gpus[si, types.index(t)] = pool.gpus
            if pool.kw_per_gpu is not None:
                pool_kw[si, types.index(t)] = pool.kw_per_gpu
    rep.add("no_pool", ok[pool_gpus[os_, ot] < 0], rj, rs,
            lambda i: f"job '{rj(i)}' is placed on {tn(i)} at site '{rs(i)}', which has no {tn(i)} pool")
    online = np.array([s.online for s in sites], bool)
    rep.add("eligibility_online", ok[~online[os_]], rj, rs,
            lambda i: f"job '{rj(i)}' is placed at offline site '{rs(i)}'")

    spec_code, spec_vals = _codes(jobs.column("gpu_types"))
    specs = [parse_type_spec(v or "") for v in spec_vals]
    type_ok = _per_combo(spec_code[oj], ot, T, lambda c, t: not specs[c] or types[t] in specs[c], bool)
    rep.add("eligibility_gpu_type", ok[~type_ok], rj, rs,
            lambda i: f"job '{rj(i)}' is placed on {tn(i)} at site '{rs(i)}'; it accepts only "
                      f"{jobs.column('gpu_types')[jr[i]].as_py()!r}")

    region_names = sorted({s.region for s in sites})
    site_region = np.array([region_names.index(s.region) for s in sites], np.int64)
    reg_code, reg_vals = _codes(jobs.column("regions"))
    allowed = [set(parse_list(v)) for v in reg_vals]
    region_ok = _per_combo(reg_code[oj], site_region[os_], len(region_names),
                           lambda c, r: not allowed[c] or region_names[r] in allowed[c], bool)
    rep.add("eligibility_region", ok[~region_ok], rj, rs,
            lambda i: f"job '{rj(i)}' is placed at site '{rs(i)}' in region '{sites[sr[i]].region}'; "
                      f"it allows only {jobs.column('regions')[jr[i]].as_py()!r}")

    ten_code, ten_vals = _codes(jobs.column("tenant"))
    tenant_ok = _per_combo(ten_code[oj], os_, S,
                           lambda c, s: sites[s].tenants is None or ten_vals[c] in sites[s].tenants, bool)
    rep.add("eligibility_tenant", ok[~tenant_ok], rj, rs,
            lambda i: f"job '{rj(i)}' of tenant '{ten_vals[ten_code[jr[i]]]}' is placed at site '{rs(i)}', "
                      f"which allows tenants {sites[sr[i]].tenants}")

    cooling_ok = np.array([[portfolio.gpu_types[t].cooling in s.cooling for t in types] for s in sites], bool)
    rep.add("eligibility_cooling", ok[~cooling_ok[os_, ot]], rj, rs,
            lambda i: f"job '{rj(i)}' runs {tn(i)} ({portfolio.gpu_types[tn(i)].cooling}-cooled) at site "
                      f"'{rs(i)}', which supports {sites[sr[i]].cooling}")

    max_lat = number_column(jobs, "max_latency_ms")
    dem_code, dem_vals = _codes(jobs.column("demand_region"))
    lat_rows = ok[inference[oj] & ~np.isnan(max_lat[oj])]

    def latency(c: int, s: int) -> float:
        lat = sites[s].latency_to(dem_vals[c]) if dem_vals[c] is not None else None
        return np.nan if lat is None else lat

    lat = _per_combo(dem_code[jr[lat_rows]], sr[lat_rows], S, latency, np.float64)
    bad_lat = ~(lat <= max_lat[jr[lat_rows]])  # NaN (unknown latency) fails too
    lat_of = dict(zip(lat_rows[bad_lat].tolist(), lat[bad_lat].tolist()))
    rep.add("eligibility_latency", lat_rows[bad_lat], rj, rs,
            lambda i: f"inference job '{rj(i)}' at site '{rs(i)}' has latency "
                      f"{'unknown' if np.isnan(lat_of[i]) else f'{lat_of[i]:g} ms'} to "
                      f"'{dem_vals[dem_code[jr[i]]]}', max_latency_ms is {max_lat[jr[i]]:g}")

    gang = np.array([s.max_gang_gpus if s.max_gang_gpus is not None else np.inf for s in sites])
    rep.add("eligibility_gang_size", ok[~inference[oj] & (job_gpus[oj] > gang[os_])], rj, rs,
            lambda i: f"training job '{rj(i)}' needs {job_gpus[jr[i]]:g} GPUs in one gang, site '{rs(i)}' "
                      f"holds at most {gang[sr[i]]:g}")

    pair_mw, forbidden = _pair_overrides(pairs, jobs, site_names, types, oj, os_, ot)
    rep.add("eligibility_forbidden", ok[forbidden], rj, rs,
            lambda i: f"job '{rj(i)}' is placed on {tn(i)} at site '{rs(i)}', a forbidden pair")

    cs, ct = cur_site[oj], cur_type[oj]
    rep.add("pinned", ok[pinned[oj] & ((os_ != cs) | (ot != ct))], rj, rs,
            lambda i: f"pinned job '{rj(i)}' is placed on {tn(i)} at site '{rs(i)}', not at its current "
                      f"{cur_type_name[jr[i]].as_py()} at '{cur_site_name[jr[i]].as_py()}'")

    # --- capacity: GPUs per pool, facility MW per site -----------------------------------
    used = np.bincount(os_ * T + ot, weights=reps[ok] * unit_gpus[oj], minlength=S * T).reshape(S, T)
    for si, ti in zip(*np.nonzero((pool_gpus >= 0) & (used > pool_gpus))):
        rep.items.append(Violation("gpus", None, site_names[si],
                                   f"site '{site_names[si]}' uses {used[si, ti]:g} {types[ti]} GPUs, "
                                   f"its pool has {pool_gpus[si, ti]}"))
    job_kw = number_column(jobs, "kw_per_gpu")[oj]  # the job's measured kW wins over the pool's / catalog's
    kw = np.where(np.isnan(job_kw), pool_kw[os_, ot], job_kw)
    unit_mw = np.where(np.isnan(pair_mw), unit_gpus[oj] * kw / 1000.0, pair_mw)
    it_mw = reps[ok] * unit_mw
    pue = np.array([s.pue for s in sites])
    fac_mw = it_mw * pue[os_]
    site_mw = np.bincount(os_, weights=fac_mw, minlength=S)
    cap = np.array([(s.grid_mw - s.reserve_mw) if s.online else 0.0 for s in sites])
    for si in np.flatnonzero(_over(site_mw, cap)):
        s = sites[si]
        why = f"grid {s.grid_mw:g} - reserve {s.reserve_mw:g}" if s.online else "the site is offline"
        rep.items.append(Violation("power", None, s.id, f"site '{s.id}' draws {site_mw[si]:.9g} facility MW, "
                                                        f"its limit is {cap[si]:.9g} ({why})"))
    for col, mine in (("it_mw", it_mw), ("facility_mw", fac_mw)):
        if col in plan.column_names:
            told = number_column(plan, col)
            expect = np.zeros(plan.num_rows)
            expect[ok] = mine
            check = (placed | unplaced) & known & ~np.isnan(told)
            check[p_rows[(sr[p_rows] < 0) | (tr[p_rows] < 0)]] = False  # no power known there
            tol = REPORTED_REL_TOL * np.maximum(np.abs(expect), np.abs(told)) + 1e-12
            off = check & (np.abs(told - expect) > tol)
            rep.add("reported_power", rows[off], rj, rs,
                    lambda i, c=col, e=expect, t=told: f"job '{rj(i)}' row at site '{rs(i)}' reports {c} "
                                                       f"{t[i]:.9g}, recomputed {e[i]:.9g}")

    # --- migration budget ----------------------------------------------------------------
    has_cur = (cur_site >= 0) & (cur_type >= 0)
    away = p_rows[has_cur[pj] & ((sr[p_rows] != cur_site[pj]) | (tr[p_rows] != cur_type[pj]))]
    moved = np.unique(jr[away])
    mig = number_column(jobs, "migration_cost_usd", 0.0)
    away_reps = np.bincount(jr[away], weights=reps[away], minlength=n)
    cost = np.where(inference, mig * away_reps, mig)[moved]
    if options.max_moves is not None and len(moved) > options.max_moves:
        names = ", ".join(map(jn, moved[:10])) + (", ..." if len(moved) > 10 else "")
        rep.items.append(Violation("max_moves", None, None,
                                   f"the plan moves {len(moved)} jobs, max_moves is {options.max_moves} "
                                   f"(moved: {names})"))
    budget = options.max_migration_usd
    if budget is not None and _over(np.array([cost.sum()]), np.array([budget]))[0]:
        rep.items.append(Violation("max_migration_usd", None, None,
                                   f"the plan spends {cost.sum():.2f} USD on migrations, "
                                   f"max_migration_usd is {budget:.2f} ({len(moved)} jobs moved)"))
    return rep.items


def _pair_overrides(pairs: pa.Table | None, jobs: pa.Table, site_names: list[str], types: list[str],
                    oj: np.ndarray, os_: np.ndarray, ot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the pair's ``power_mw`` (NaN if none) and ``forbidden`` flag.

    The row for (job, site, type) wins over a row for (job, site) with no type; among rows with
    the same key the last one wins.
    """
    mw, forb = np.full(len(oj), np.nan), np.zeros(len(oj), bool)
    if pairs is None or pairs.num_rows == 0 or len(oj) == 0:
        return mw, forb
    S, T = len(site_names), len(types)
    raw_type = text_column(pairs, "gpu_type")
    pj = _index(text_column(pairs, "job_id"), pc.cast(jobs.column("id").combine_chunks(), pa.string()))
    ps, pt = _index(text_column(pairs, "site_id"), site_names), _index(raw_type, types)
    typed = np.asarray(pc.is_valid(raw_type).to_numpy(zero_copy_only=False), bool)
    keep = (pj >= 0) & (ps >= 0) & (~typed | (pt >= 0))
    key = ((pj * S + ps) * (T + 1) + (pt + 1))[keep]
    p_mw, p_forb = number_column(pairs, "power_mw")[keep], flag_column(pairs, "forbidden")[keep]
    uniq, first_rev = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - first_rev
    p_mw, p_forb = p_mw[last], p_forb[last]
    if len(uniq) == 0:
        return mw, forb
    resolved = np.zeros(len(oj), bool)
    for t_part in (ot + 1, np.zeros_like(ot)):  # specific type first, then the site-wide row
        q = (oj * S + os_) * (T + 1) + t_part
        pos = np.minimum(np.searchsorted(uniq, q), len(uniq) - 1)
        hit = ~resolved & (uniq[pos] == q)
        mw[hit], forb[hit] = p_mw[pos[hit]], p_forb[pos[hit]]
        resolved |= hit
    return mw, forb
