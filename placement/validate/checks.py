"""One checker per hard constraint: each takes a ``PlanContext`` and returns its violations.

``CHECKS`` lists them in the order ``validate_plan`` reports. Rules that need Python (type
specs, region lists, tenants, latency) run once per distinct (code, site/type) combination,
so a million-row plan stays fast.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow.compute as pc

from placement.io.columns import number_column, text_column
from placement.model.jobs import parse_list, parse_type_spec
from placement.validate.context import (
    PlanContext,
    Violation,
    codes,
    flag,
    flag_jobs,
    flag_rows,
    no_site,
    over,
    per_combo,
)

# Reported it_mw / facility_mw are display figures: compare loosely.
REPORTED_REL_TOL = 1e-6

Checker = Callable[[PlanContext], list[Violation]]


def check_once(ctx: PlanContext) -> list[Violation]:
    """Every row names an input job and a known status; every job appears exactly once."""
    status, rows, jr = ctx.status, ctx.rows, ctx.jr
    n_placed, n_unplaced, jobs = ctx.n_placed, ctx.n_unplaced, ctx.all_jobs
    found = flag_rows(ctx, "unknown_job", rows[jr < 0],
                      lambda i: f"plan row {i} names job '{ctx.job(i)}', not an input job")
    found += flag_rows(ctx, "bad_status", rows[(jr >= 0) & ~ctx.placed & ~ctx.unplaced],
                       lambda i: f"plan row {i} has status {status[i]!r}, expected 'placed' or 'unplaced'")
    found += flag_jobs(ctx, "missing_job", jobs[(n_placed == 0) & (n_unplaced == 0)],
                       lambda j: f"job '{ctx.job_name(j)}' is neither placed nor unplaced in the plan")
    found += flag_jobs(ctx, "duplicate_job", jobs[n_unplaced > 1],
                       lambda j: f"job '{ctx.job_name(j)}' has {n_unplaced[j]} unplaced rows, expected 1")
    found += flag_jobs(ctx, "placed_and_unplaced", jobs[ctx.is_placed & (n_unplaced > 0)],
                       lambda j: f"job '{ctx.job_name(j)}' has {n_placed[j]} placed and {n_unplaced[j]} "
                                 "unplaced rows")
    p_rows, S, T = ctx.p_rows, len(ctx.sites), len(ctx.types)
    pool_key = jr[p_rows] * (S + 1) * (T + 1) + (ctx.sr[p_rows] + 1) * (T + 1) + (ctx.tr[p_rows] + 1)
    _, first, counts = np.unique(pool_key, return_index=True, return_counts=True)
    found += flag_rows(ctx, "duplicate_job", p_rows[first[counts > 1]],
                       lambda i: f"job '{ctx.job(i)}' has more than one placed row at site '{ctx.site(i)}' "
                                 "for one GPU type")
    return found


def check_unplaced(ctx: PlanContext) -> list[Violation]:
    """An unplaced row carries a reason code and no site, type, replicas or GPUs."""
    reps, gpus, unplaced = ctx.reps, ctx.gpus, ctx.unplaced
    no_reason = np.asarray(pc.is_null(text_column(ctx.plan, "reason")).to_numpy(zero_copy_only=False), bool)
    found = flag(
        "unplaced_reason", ctx.rows[unplaced & no_reason], ctx.job, no_site,
        lambda i: f"unplaced job '{ctx.job(i)}' has no reason code")
    odd = unplaced & ((reps != 0) | (gpus != 0) | ctx.row_named)
    found += flag_rows(ctx, "unplaced_row", ctx.rows[odd],
                       lambda i: f"unplaced row of job '{ctx.job(i)}' has site '{ctx.site(i)}', type "
                                 f"'{ctx.row_type[i]}', {reps[i]:g} replicas and {gpus[i]:g} GPUs; expected none")
    return found


def check_required(ctx: PlanContext) -> list[Violation]:
    """Every required job is placed."""
    return flag_jobs(ctx, "required", ctx.all_jobs[ctx.required & ~ctx.is_placed],
                     lambda j: f"required job '{ctx.job_name(j)}' is not placed")


def check_placed_rows(ctx: PlanContext) -> list[Violation]:
    """A placed row names a known site and type, whole replicas and the job's GPUs; a gang is one row."""
    p_rows, reps, gpus, inference = ctx.p_rows, ctx.reps, ctx.gpus, ctx.inference
    pj = ctx.jr[p_rows]
    found = flag_rows(ctx, "unknown_site", p_rows[ctx.sr[p_rows] < 0],
                      lambda i: f"placed row of job '{ctx.job(i)}' names site '{ctx.site(i)}', not in the portfolio")
    found += flag_rows(ctx, "unknown_gpu_type", p_rows[ctx.tr[p_rows] < 0],
                       lambda i: f"placed row of job '{ctx.job(i)}' names GPU type '{ctx.row_type[i]}', "
                                 "not in the catalog")
    found += flag_rows(ctx, "replicas", p_rows[(reps[p_rows] < 1) | (reps[p_rows] != np.floor(reps[p_rows]))],
                       lambda i: f"placed row of job '{ctx.job(i)}' at site '{ctx.site(i)}' has {reps[i]:g} "
                                 "replicas, expected a whole number >= 1")
    training_rows = p_rows[~inference[pj]]
    found += flag_jobs(ctx, "training_split", ctx.all_jobs[~inference & (ctx.n_placed > 1)],
                       lambda j: f"training job '{ctx.job_name(j)}' has {ctx.n_placed[j]} placed rows, "
                                 "a gang needs exactly 1")
    found += flag_rows(ctx, "training_replicas", training_rows[reps[training_rows] != 1],
                       lambda i: f"training job '{ctx.job(i)}' row at site '{ctx.site(i)}' has {reps[i]:g} "
                                 "replicas, expected 1")
    want = np.where(inference[pj], reps[p_rows] * ctx.gpus_per_replica[pj], ctx.job_gpus[pj])
    found += flag_rows(ctx, "job_gpus", p_rows[gpus[p_rows] != want], lambda i: (
        f"job '{ctx.job(i)}' row at site '{ctx.site(i)}' reports {gpus[i]:g} GPUs, expected "
        f"{want[np.searchsorted(p_rows, i)]:g}"))
    return found


def check_spread(ctx: PlanContext) -> list[Violation]:
    """Inference: exactly its replicas, over at least ``min_sites`` sites, at most its share per site."""
    n, S, jobs, site_names = ctx.n, len(ctx.sites), ctx.all_jobs, ctx.site_names
    placed_inf = ctx.inference & ctx.is_placed
    inf_rows = ctx.p_rows[ctx.inference[ctx.jr[ctx.p_rows]]]
    rep_sum = np.bincount(ctx.jr[inf_rows], weights=ctx.reps[inf_rows], minlength=n)
    found = flag_jobs(ctx, "replicas", jobs[placed_inf & (rep_sum != ctx.job_reps)],
                      lambda j: f"inference job '{ctx.job_name(j)}' places {rep_sum[j]:g} replicas, "
                                f"expected {ctx.job_reps[j]:g}")
    inf_rows = inf_rows[ctx.sr[inf_rows] >= 0]
    js, js_inv = np.unique(ctx.jr[inf_rows] * S + ctx.sr[inf_rows], return_inverse=True)
    js_reps = np.bincount(js_inv.reshape(-1), weights=ctx.reps[inf_rows], minlength=len(js))
    n_sites = np.bincount(js // S, minlength=n)
    min_sites = number_column(ctx.jobs, "min_sites", 1)
    found += flag_jobs(ctx, "min_sites", jobs[placed_inf & (n_sites < min_sites)],
                       lambda j: f"inference job '{ctx.job_name(j)}' spans {n_sites[j]} sites, "
                                 f"min_sites is {min_sites[j]:g}")
    max_units = np.floor(number_column(ctx.jobs, "max_share_per_site", 1.0) * ctx.job_reps + 1e-9)
    found += flag("max_share", np.flatnonzero(js_reps > max_units[js // S]), lambda k: ctx.job_name(js[k] // S),
                  lambda k: site_names[js[k] % S],
                  lambda k: f"inference job '{ctx.job_name(js[k] // S)}' puts {js_reps[k]:g} replicas at site "
                            f"'{site_names[js[k] % S]}', max_share_per_site allows {max_units[js[k] // S]:g}")
    return found


def check_pool(ctx: PlanContext) -> list[Violation]:
    """The site has a pool of the row's GPU type, and is online."""
    ok, tn = ctx.ok, ctx.type_name
    found = flag_rows(ctx, "no_pool", ok[ctx.pool_gpus[ctx.os_, ctx.ot] < 0],
                      lambda i: f"job '{ctx.job(i)}' is placed on {tn(i)} at site '{ctx.site(i)}', which has "
                                f"no {tn(i)} pool")
    online = np.array([s.online for s in ctx.sites], bool)
    found += flag_rows(ctx, "eligibility_online", ok[~online[ctx.os_]],
                       lambda i: f"job '{ctx.job(i)}' is placed at offline site '{ctx.site(i)}'")
    return found


def check_gpu_type(ctx: PlanContext) -> list[Violation]:
    """The job accepts the row's GPU type."""
    types, column = ctx.types, ctx.jobs.column("gpu_types")
    spec_code, spec_vals = codes(column)
    specs = [parse_type_spec(v or "") for v in spec_vals]
    type_ok = per_combo(spec_code[ctx.oj], ctx.ot, len(types),
                        lambda c, t: not specs[c] or types[t] in specs[c], bool)
    return flag_rows(ctx, "eligibility_gpu_type", ctx.ok[~type_ok],
                     lambda i: f"job '{ctx.job(i)}' is placed on {ctx.type_name(i)} at site '{ctx.site(i)}'; "
                               f"it accepts only {column[ctx.jr[i]].as_py()!r}")


def check_region(ctx: PlanContext) -> list[Violation]:
    """The site lies in one of the job's allowed regions."""
    sites, column = ctx.sites, ctx.jobs.column("regions")
    region_names = sorted({s.region for s in sites})
    site_region = np.array([region_names.index(s.region) for s in sites], np.int64)
    reg_code, reg_vals = codes(column)
    allowed = [set(parse_list(v)) for v in reg_vals]
    region_ok = per_combo(reg_code[ctx.oj], site_region[ctx.os_], len(region_names),
                          lambda c, r: not allowed[c] or region_names[r] in allowed[c], bool)
    return flag_rows(ctx, "eligibility_region", ctx.ok[~region_ok],
                     lambda i: f"job '{ctx.job(i)}' is placed at site '{ctx.site(i)}' in region "
                               f"'{sites[ctx.sr[i]].region}'; it allows only {column[ctx.jr[i]].as_py()!r}")


def check_tenant(ctx: PlanContext) -> list[Violation]:
    """The site admits the job's tenant."""
    sites = ctx.sites
    ten_code, ten_vals = codes(ctx.jobs.column("tenant"))
    tenant_ok = per_combo(ten_code[ctx.oj], ctx.os_, len(sites),
                          lambda c, s: sites[s].tenants is None or ten_vals[c] in sites[s].tenants, bool)
    return flag_rows(ctx, "eligibility_tenant", ctx.ok[~tenant_ok],
                     lambda i: f"job '{ctx.job(i)}' of tenant '{ten_vals[ten_code[ctx.jr[i]]]}' is placed at "
                               f"site '{ctx.site(i)}', which allows tenants {sites[ctx.sr[i]].tenants}")


def check_cooling(ctx: PlanContext) -> list[Violation]:
    """The site supports the cooling of the row's GPU type."""
    catalog, sites, tn = ctx.portfolio.gpu_types, ctx.sites, ctx.type_name
    cooling_ok = np.array([[catalog[t].cooling in s.cooling for t in ctx.types] for s in sites], bool)
    return flag_rows(ctx, "eligibility_cooling", ctx.ok[~cooling_ok[ctx.os_, ctx.ot]],
                     lambda i: f"job '{ctx.job(i)}' runs {tn(i)} ({catalog[tn(i)].cooling}-cooled) at site "
                               f"'{ctx.site(i)}', which supports {sites[ctx.sr[i]].cooling}")


def check_latency(ctx: PlanContext) -> list[Violation]:
    """An inference replica is within ``max_latency_ms`` of its demand region (unknown latency fails)."""
    sites, jr = ctx.sites, ctx.jr
    max_lat = number_column(ctx.jobs, "max_latency_ms")
    dem_code, dem_vals = codes(ctx.jobs.column("demand_region"))
    lat_rows = ctx.ok[ctx.inference[ctx.oj] & ~np.isnan(max_lat[ctx.oj])]

    def latency(c: int, s: int) -> float:
        lat = sites[s].latency_to(dem_vals[c]) if dem_vals[c] is not None else None
        return np.nan if lat is None else lat

    lat = per_combo(dem_code[jr[lat_rows]], ctx.sr[lat_rows], len(sites), latency, np.float64)
    bad = ~(lat <= max_lat[jr[lat_rows]])  # NaN (unknown latency) fails too
    lat_of = dict(zip(lat_rows[bad].tolist(), lat[bad].tolist()))
    return flag_rows(ctx, "eligibility_latency", lat_rows[bad],
                     lambda i: f"inference job '{ctx.job(i)}' at site '{ctx.site(i)}' has latency "
                               f"{'unknown' if np.isnan(lat_of[i]) else f'{lat_of[i]:g} ms'} to "
                               f"'{dem_vals[dem_code[jr[i]]]}', max_latency_ms is {max_lat[jr[i]]:g}")


def check_gang_size(ctx: PlanContext) -> list[Violation]:
    """A training gang fits the site's ``max_gang_gpus``."""
    gang = np.array([s.max_gang_gpus if s.max_gang_gpus is not None else np.inf for s in ctx.sites])
    job_gpus, oj = ctx.job_gpus, ctx.oj
    return flag_rows(ctx, "eligibility_gang_size", ctx.ok[~ctx.inference[oj] & (job_gpus[oj] > gang[ctx.os_])],
                     lambda i: f"training job '{ctx.job(i)}' needs {job_gpus[ctx.jr[i]]:g} GPUs in one gang, "
                               f"site '{ctx.site(i)}' holds at most {gang[ctx.sr[i]]:g}")


def check_forbidden(ctx: PlanContext) -> list[Violation]:
    """No row uses a forbidden (job, site) or (job, site, type) pair."""
    return flag_rows(ctx, "eligibility_forbidden", ctx.ok[ctx.forbidden],
                     lambda i: f"job '{ctx.job(i)}' is placed on {ctx.type_name(i)} at site '{ctx.site(i)}', "
                               "a forbidden pair")


ELIGIBILITY_CHECKS: tuple[Checker, ...] = (
    check_pool, check_gpu_type, check_region, check_tenant, check_cooling, check_latency, check_gang_size,
    check_forbidden,
)


def check_eligibility(ctx: PlanContext) -> list[Violation]:
    """Every placed row at a known pool passes each eligibility filter."""
    return [v for check in ELIGIBILITY_CHECKS for v in check(ctx)]


def check_pinned(ctx: PlanContext) -> list[Violation]:
    """A pinned job, if placed, stays on its current site and GPU type."""
    jr, oj = ctx.jr, ctx.oj
    moved = ctx.pinned[oj] & ((ctx.os_ != ctx.cur_site[oj]) | (ctx.ot != ctx.cur_type[oj]))
    return flag_rows(ctx, "pinned", ctx.ok[moved],
                     lambda i: f"pinned job '{ctx.job(i)}' is placed on {ctx.type_name(i)} at site "
                               f"'{ctx.site(i)}', not at its current {ctx.cur_type_name[jr[i]].as_py()} at "
                               f"'{ctx.cur_site_name[jr[i]].as_py()}'")


def check_gpus(ctx: PlanContext) -> list[Violation]:
    """GPUs used on each pool stay within its inventory."""
    S, T, names = len(ctx.sites), len(ctx.types), ctx.site_names
    weights = ctx.reps[ctx.ok] * ctx.unit_gpus[ctx.oj]
    used = np.bincount(ctx.os_ * T + ctx.ot, weights=weights, minlength=S * T).reshape(S, T)
    return [Violation("gpus", None, names[si], f"site '{names[si]}' uses {used[si, ti]:g} {ctx.types[ti]} GPUs, "
                                               f"its pool has {ctx.pool_gpus[si, ti]}")
            for si, ti in zip(*np.nonzero((ctx.pool_gpus >= 0) & (used > ctx.pool_gpus)))]


def check_power(ctx: PlanContext) -> list[Violation]:
    """Facility MW per site stays within grid - reserve (zero at an offline site)."""
    sites = ctx.sites
    site_mw = np.bincount(ctx.os_, weights=ctx.fac_mw, minlength=len(sites))
    cap = np.array([(s.grid_mw - s.reserve_mw) if s.online else 0.0 for s in sites])
    found = []
    for si in np.flatnonzero(over(site_mw, cap)):
        s = sites[si]
        why = f"grid {s.grid_mw:g} - reserve {s.reserve_mw:g}" if s.online else "the site is offline"
        found.append(Violation("power", None, s.id, f"site '{s.id}' draws {site_mw[si]:.9g} facility MW, "
                                                    f"its limit is {cap[si]:.9g} ({why})"))
    return found


def check_reported_figures(ctx: PlanContext) -> list[Violation]:
    """A row's reported ``it_mw`` / ``facility_mw`` (where given) match the recomputed figures."""
    p_rows, plan = ctx.p_rows, ctx.plan
    found = []
    for col, mine in (("it_mw", ctx.it_mw), ("facility_mw", ctx.fac_mw)):
        if col not in plan.column_names:
            continue
        told = number_column(plan, col)
        expect = np.zeros(plan.num_rows)
        expect[ctx.ok] = mine
        check = (ctx.placed | ctx.unplaced) & ctx.known & ~np.isnan(told)
        check[p_rows[(ctx.sr[p_rows] < 0) | (ctx.tr[p_rows] < 0)]] = False  # no power known there
        tol = REPORTED_REL_TOL * np.maximum(np.abs(expect), np.abs(told)) + 1e-12
        found += flag_rows(ctx, "reported_power", ctx.rows[check & (np.abs(told - expect) > tol)],
                           lambda i, c=col, e=expect, t=told: f"job '{ctx.job(i)}' row at site '{ctx.site(i)}' "
                                                              f"reports {c} {t[i]:.9g}, recomputed {e[i]:.9g}")
    return found


def moved_jobs(ctx: PlanContext) -> tuple[np.ndarray, np.ndarray]:
    """Jobs the plan moves, and per job the units it places beyond what ran on each pool before.

    A job moves when it runs now and in the plan, on rows that differ: a unit lands on a pool
    where it had fewer, or it keeps fewer units than it had. Starting and stopping are not moves.
    """
    p_rows = ctx.p_rows
    pj, ps, pt = ctx.jr[p_rows], ctx.sr[p_rows], ctx.tr[p_rows]
    units = np.where(ctx.inference[pj], ctx.reps[p_rows], 1).astype(np.int64)
    S, T = len(ctx.site_names) + 1, len(ctx.types) + 1  # +1: unknown names (-1) get their own key
    now_key = (ctx.now_job * S + ctx.now_site + 1) * T + ctx.now_type + 1
    keys, inv = np.unique(now_key, return_inverse=True)
    before = np.bincount(inv.reshape(-1), weights=ctx.now_units, minlength=len(keys))
    new_key = (pj * S + ps + 1) * T + pt + 1
    pos = np.minimum(np.searchsorted(keys, new_key), max(len(keys) - 1, 0))
    old = np.where(keys[pos] == new_key, before[pos], 0) if len(keys) else np.zeros(len(pj))
    away = np.bincount(pj, weights=np.maximum(units - old, 0), minlength=ctx.n)
    kept = np.bincount(pj, weights=np.minimum(units, old), minlength=ctx.n)
    total_now = np.bincount(ctx.now_job, weights=ctx.now_units, minlength=ctx.n)
    total_new = np.bincount(pj, weights=units, minlength=ctx.n)
    runs_now, runs_new = total_now > 0, ctx.n_placed > 0
    moved = runs_now & runs_new & ((away > 0) | (kept != total_now) | (total_new != total_now))
    return np.flatnonzero(moved), away


def check_migration_budget(ctx: PlanContext) -> list[Violation]:
    """Moved jobs stay within ``max_moves`` and ``max_migration_usd`` (one-off cost per unit
    landing where the job had fewer units)."""
    options = ctx.options
    moved, away = moved_jobs(ctx)
    mig = number_column(ctx.jobs, "migration_cost_usd", 0.0)
    cost = (mig * away)[moved]
    found = []
    if options.max_moves is not None and len(moved) > options.max_moves:
        names = ", ".join(map(ctx.job_name, moved[:10])) + (", ..." if len(moved) > 10 else "")
        found.append(Violation("max_moves", None, None, f"the plan moves {len(moved)} jobs, max_moves is "
                                                        f"{options.max_moves} (moved: {names})"))
    budget = options.max_migration_usd
    if budget is not None and over(np.array([cost.sum()]), np.array([budget]))[0]:
        found.append(Violation("max_migration_usd", None, None,
                               f"the plan spends {cost.sum():.2f} USD on migrations, "
                               f"max_migration_usd is {budget:.2f} ({len(moved)} jobs moved)"))
    return found


CHECKS: tuple[Checker, ...] = (
    check_once, check_unplaced, check_required, check_placed_rows, check_spread, check_eligibility,
    check_pinned, check_gpus, check_power, check_reported_figures, check_migration_budget,
)
