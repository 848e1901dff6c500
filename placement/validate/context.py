"""What every checker reads: the plan's columns, indexed into the portfolio and jobs, built once.

``build_context`` parses the plan rows, looks up each row's job, site and GPU type, and
recomputes each placed row's GPU and MW figures from the models (job kW, else pool kW, else
catalog kW; a pair's ``power_mw`` wins). The checkers only read the frozen ``PlanContext``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.io.columns import flag_column, number_column, text_column
from placement.model.portfolio import Portfolio, Site, SolveOptions

PLAN_COLUMNS = ("job_id", "status", "site_id", "gpu_type", "replicas", "gpus")
# A plan exactly at a cap is feasible; sums taken in another order may differ by rounding.
ABS_TOL = 1e-9
REL_TOL = 1e-9


@dataclass(frozen=True)
class Violation:
    """One broken hard constraint: a short ``kind`` code, the job and site involved, a sentence."""

    kind: str
    job_id: str | None
    site_id: str | None
    message: str


@dataclass(frozen=True, eq=False)
class PlanContext:
    """The inputs and the plan, as arrays. ``i`` indexes plan rows, ``j`` jobs, ``s`` sites, ``t`` types.

    Row lookups (``jr``, ``sr``, ``tr``) are -1 for a null or unknown name. ``ok`` are the placed
    rows of input jobs at a known site and type; ``oj``, ``os_``, ``ot`` and the per-row MW and
    pair figures are aligned with ``ok``.
    """

    portfolio: Portfolio
    jobs: pa.Table
    plan: pa.Table
    options: SolveOptions
    sites: list[Site]
    types: list[str]
    site_names: list[str]
    job_ids: np.ndarray  # job j's id
    # plan rows
    rows: np.ndarray
    row_job: np.ndarray  # the names each row gives, for messages
    row_site: np.ndarray
    row_type: np.ndarray
    row_named: np.ndarray  # the row names a site or a type
    jr: np.ndarray
    sr: np.ndarray
    tr: np.ndarray
    status: np.ndarray
    placed: np.ndarray
    unplaced: np.ndarray
    reps: np.ndarray
    gpus: np.ndarray
    known: np.ndarray  # the row names an input job
    p_rows: np.ndarray  # placed rows of input jobs
    n_placed: np.ndarray  # per job
    n_unplaced: np.ndarray
    # jobs
    inference: np.ndarray
    job_gpus: np.ndarray
    gpus_per_replica: np.ndarray
    job_reps: np.ndarray
    unit_gpus: np.ndarray  # GPUs of one replica (inference) or of the gang (training)
    required: np.ndarray
    pinned: np.ndarray
    cur_site_name: pa.Array
    cur_type_name: pa.Array
    cur_site: np.ndarray
    cur_type: np.ndarray
    # where jobs run now, as rows (job, site, type, units): the ``current`` table, else the jobs'
    # current_site / current_gpu_type with all their units
    now_job: np.ndarray
    now_site: np.ndarray
    now_type: np.ndarray
    now_units: np.ndarray
    # pools, (S, T); -1 GPUs where the site has no pool of the type
    pool_gpus: np.ndarray
    pool_kw: np.ndarray
    # placed rows at a known pool
    ok: np.ndarray
    oj: np.ndarray
    os_: np.ndarray
    ot: np.ndarray
    forbidden: np.ndarray
    it_mw: np.ndarray
    fac_mw: np.ndarray

    @property
    def n(self) -> int:
        return len(self.job_ids)

    @property
    def all_jobs(self) -> np.ndarray:
        return np.arange(self.n)

    @property
    def is_placed(self) -> np.ndarray:
        return self.n_placed > 0

    def job(self, i: int) -> str | None:
        """The job id plan row ``i`` names."""
        return self.row_job[i]

    def site(self, i: int) -> str | None:
        """The site id plan row ``i`` names."""
        return self.row_site[i]

    def type_name(self, i: int) -> str:
        """The catalog GPU type of plan row ``i`` (a known type)."""
        return self.types[self.tr[i]]

    def job_name(self, j: int) -> str:
        """The id of input job ``j``."""
        return str(self.job_ids[j])


def no_site(_: int) -> None:
    return None


def flag(kind: str, where: Iterable[int], job: Callable[[int], str | None],
         site: Callable[[int], str | None], message: Callable[[int], str]) -> list[Violation]:
    """One violation per flagged index, in order."""
    return [Violation(kind, job(int(i)), site(int(i)), message(int(i))) for i in where]


def flag_rows(ctx: PlanContext, kind: str, where: Iterable[int], message: Callable[[int], str]) -> list[Violation]:
    """One violation per flagged plan row, naming the row's job and site."""
    return flag(kind, where, ctx.job, ctx.site, message)


def flag_jobs(ctx: PlanContext, kind: str, where: Iterable[int], message: Callable[[int], str]) -> list[Violation]:
    """One violation per flagged input job, naming no site."""
    return flag(kind, where, ctx.job_name, no_site, message)


def index_of(values: pa.Array, names: list[str] | pa.Array) -> np.ndarray:
    """Position of each value in ``names``; -1 for null or unknown."""
    names = names if isinstance(names, pa.Array) else pa.array(names, pa.string())
    idx = pc.index_in(values, value_set=names)
    return np.asarray(pc.fill_null(idx, -1).to_numpy(zero_copy_only=False), np.int64)


def codes(column: pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Dictionary codes of a column (null gets its own code) and the distinct values."""
    enc = column.combine_chunks().dictionary_encode(null_encoding="encode")
    return np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64), enc.dictionary.to_pylist()


def per_combo(a: np.ndarray, b: np.ndarray, nb: int, fn: Callable[[int, int], Any], dtype: Any) -> np.ndarray:
    """Evaluate ``fn(a_i, b_i)`` once per distinct pair and broadcast the results back."""
    if a.size == 0:
        return np.zeros(0, dtype)
    uniq, inv = np.unique(a * nb + b, return_inverse=True)
    vals = np.array([fn(int(k // nb), int(k % nb)) for k in uniq], dtype)
    return vals[inv.reshape(-1)]


def over(total: np.ndarray, cap: np.ndarray) -> np.ndarray:
    """Where ``total`` exceeds ``cap`` beyond rounding."""
    return total > cap + ABS_TOL + REL_TOL * np.abs(cap)


def build_context(portfolio: Portfolio, jobs: pa.Table, plan: pa.Table, pairs: pa.Table | None,
                  options: SolveOptions, current: pa.Table | None = None) -> PlanContext:
    """Parse and index ``plan`` (which has every ``PLAN_COLUMNS`` column) against the inputs;
    ``current`` (a plan table) is where jobs run now, else the jobs' current columns say."""
    types = list(portfolio.gpu_types)
    site_names = [s.id for s in portfolio.sites]
    id_array = pc.cast(jobs.column("id").combine_chunks(), pa.string())
    rows = _row_fields(plan, id_array, site_names, types, jobs.num_rows)
    job = _job_fields(jobs, site_names, types)
    pool_gpus, pool_kw = _pools(portfolio, types)
    p_rows, jr, sr, tr = rows["p_rows"], rows["jr"], rows["sr"], rows["tr"]
    ok = p_rows[(sr[p_rows] >= 0) & (tr[p_rows] >= 0)]
    oj, os_, ot = jr[ok], sr[ok], tr[ok]
    pair_mw, forbidden = _pair_overrides(pairs, id_array, site_names, types, oj, os_, ot)
    job_kw = number_column(jobs, "kw_per_gpu")[oj]  # the job's measured kW wins over the pool's / catalog's
    kw = np.where(np.isnan(job_kw), pool_kw[os_, ot], job_kw)
    unit_mw = np.where(np.isnan(pair_mw), job["unit_gpus"][oj] * kw / 1000.0, pair_mw)
    it_mw = rows["reps"][ok] * unit_mw
    pue = np.array([s.pue for s in portfolio.sites])
    now = _now_rows(current, id_array, site_names, types, job)
    return PlanContext(
        portfolio=portfolio, jobs=jobs, plan=plan, options=options, sites=portfolio.sites, types=types,
        site_names=site_names, job_ids=id_array.to_numpy(zero_copy_only=False), **rows, **job,
        pool_gpus=pool_gpus, pool_kw=pool_kw, ok=ok, oj=oj, os_=os_, ot=ot, forbidden=forbidden,
        it_mw=it_mw, fac_mw=it_mw * pue[os_], **now)


def _now_rows(current: pa.Table | None, id_array: pa.Array, site_names: list[str], types: list[str],
              job: dict[str, Any]) -> dict[str, np.ndarray]:
    """Where jobs run now, as rows at known pools: ``current``'s placed rows, else each job's
    current_site / current_gpu_type holding all its units."""
    if current is None:
        j = np.flatnonzero((job["cur_site"] >= 0) & (job["cur_type"] >= 0))
        s, t = job["cur_site"][j], job["cur_type"][j]
        u = np.where(job["inference"][j], job["job_reps"][j], 1)
    else:
        rows = _row_fields(current, id_array, site_names, types, len(id_array))
        j = rows["jr"][rows["p_rows"]]
        s, t = rows["sr"][rows["p_rows"]], rows["tr"][rows["p_rows"]]
        u = np.where(job["inference"][j], rows["reps"][rows["p_rows"]], 1)
        keep = (s >= 0) & (t >= 0)
        j, s, t, u = j[keep], s[keep], t[keep], u[keep]
    return {"now_job": np.asarray(j, np.int64), "now_site": np.asarray(s, np.int64),
            "now_type": np.asarray(t, np.int64), "now_units": np.asarray(u, np.int64)}


def _row_fields(plan: pa.Table, id_array: pa.Array, site_names: list[str], types: list[str],
                n: int) -> dict[str, Any]:
    """The plan's rows: the names they give, their indices, status and counts per job."""
    raw_job, raw_site, raw_type = (text_column(plan, c) for c in ("job_id", "site_id", "gpu_type"))
    jr = index_of(raw_job, id_array)
    status = text_column(plan, "status").to_numpy(zero_copy_only=False)
    placed, unplaced = status == "placed", status == "unplaced"
    known = jr >= 0
    rows = np.arange(plan.num_rows)
    p_rows, u_rows = rows[known & placed], rows[known & unplaced]
    named = pc.or_(pc.is_valid(raw_site), pc.is_valid(raw_type))
    return {
        "rows": rows, "row_job": raw_job.to_numpy(zero_copy_only=False),
        "row_site": raw_site.to_numpy(zero_copy_only=False), "row_type": raw_type.to_numpy(zero_copy_only=False),
        "row_named": np.asarray(named.to_numpy(zero_copy_only=False), bool),
        "jr": jr, "sr": index_of(raw_site, site_names), "tr": index_of(raw_type, types),
        "status": status, "placed": placed, "unplaced": unplaced,
        "reps": number_column(plan, "replicas", 0.0), "gpus": number_column(plan, "gpus", 0.0),
        "known": known, "p_rows": p_rows,
        "n_placed": np.bincount(jr[p_rows], minlength=n), "n_unplaced": np.bincount(jr[u_rows], minlength=n),
    }


def _job_fields(jobs: pa.Table, site_names: list[str], types: list[str]) -> dict[str, Any]:
    """Per-job attributes every checker may need."""
    inference = np.asarray(pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False), bool)
    job_gpus, gpr = number_column(jobs, "gpus", 0), number_column(jobs, "gpus_per_replica", 0)
    cur_site_name, cur_type_name = text_column(jobs, "current_site"), text_column(jobs, "current_gpu_type")
    return {
        "inference": inference, "job_gpus": job_gpus, "gpus_per_replica": gpr,
        "job_reps": number_column(jobs, "replicas", 0), "unit_gpus": np.where(inference, gpr, job_gpus),
        "required": flag_column(jobs, "required"), "pinned": flag_column(jobs, "pinned"),
        "cur_site_name": cur_site_name, "cur_type_name": cur_type_name,
        "cur_site": index_of(cur_site_name, site_names), "cur_type": index_of(cur_type_name, types),
    }


def _pools(portfolio: Portfolio, types: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """GPUs per (site, type), -1 where there is no pool, and kW per GPU (the pool's, else the catalog's)."""
    S = len(portfolio.sites)
    pool_gpus = np.full((S, len(types)), -1, np.int64)
    pool_kw = np.array([[portfolio.gpu_types[t].kw_per_gpu for t in types]] * S, np.float64)
    for si, s in enumerate(portfolio.sites):
        for t, pool in s.pools.items():
            pool_gpus[si, types.index(t)] = pool.gpus
            if pool.kw_per_gpu is not None:
                pool_kw[si, types.index(t)] = pool.kw_per_gpu
    return pool_gpus, pool_kw


def _pair_overrides(pairs: pa.Table | None, id_array: pa.Array, site_names: list[str], types: list[str],
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
    pj = index_of(text_column(pairs, "job_id"), id_array)
    ps, pt = index_of(text_column(pairs, "site_id"), site_names), index_of(raw_type, types)
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
