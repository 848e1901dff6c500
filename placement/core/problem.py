"""Compile a portfolio and its jobs into ``Problem``: flat NumPy arrays, the only thing solvers see.

Layout (struct of arrays):

- sites ``s``: capacity, PUE, $ per facility MWh (energy and carbon separately), gang limit;
- pools ``p`` (one per site and GPU type, ordered by site): site, type, inventory, kW per GPU;
- jobs ``j``: a *unit* is the thing one candidate places, a whole gang for training and one
  replica for inference (``job_units`` of them, value split evenly);
- eligibility by *class*: jobs with the same (kind, accepted types, regions, tenant, demand
  region, latency limit) share one CSR list of eligible pools with their speeds, so a million
  jobs over 8,000 pools never materialise a jobs × pools matrix. Per-job rules that vary within
  a class (gang size, inventory, pinned, forbidden pairs) are checked on the fly by kernels;
- pair overrides: a per-job CSR over pools (``pair_*``);
- the current placement: a per-job CSR over pools of the units running there now
  (``current_*``). ``job_current_pool`` is the job's home, its largest current row: the pool a
  pinned job is held to. A unit is charged migration when it lands on a pool where the job had
  no units (one home: ``placement.core.objective``).

Capacities and site figures have a period axis in ``timeline`` (``placement.core.timeline``):
``cap_mw[t, s]``, ``pool_gpus[t, p]``, ... and each job's start window. The flat vectors here
(``site_cap_mw``, ``pool_gpus``, ``pool_kw_per_gpu``, the site prices) are its first period:
without a horizon, or with one period, they are the whole problem, and the single-period solvers
read only them. With more periods the horizon solvers read the timeline.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.core.timeline import Timeline, compile_timeline
from placement.model.jobs import parse_list, parse_type_spec
from placement.model.portfolio import Portfolio, SolveOptions

# Effectively unlimited gang size / budget, kept integral for Numba and CP-SAT.
UNLIMITED = np.iinfo(np.int64).max // 4
# Float slack when comparing summed MW to a cap: a plan exactly at the cap is feasible.
MW_TOLERANCE = 1e-9


class Filter(IntEnum):
    """Why a job has no eligible candidate (first filter that left none)."""

    OK = 0
    OFFLINE = 1
    TENANT = 2
    REGION = 3
    GPU_TYPE = 4
    COOLING = 5
    LATENCY = 6
    GANG_SIZE = 7
    INVENTORY = 8
    FORBIDDEN = 9
    PINNED = 10


@dataclass(frozen=True, eq=False)
class Problem:
    """Compiled arrays of one placement problem. Index maps: ``site_ids``, ``type_names``, ``job_ids``."""

    # sites
    site_ids: list[str]
    site_region: np.ndarray  # int32
    site_cap_mw: np.ndarray  # float64, facility MW available (grid - reserve; 0 if offline)
    site_pue: np.ndarray  # float64
    site_energy_usd_per_mwh: np.ndarray  # float64
    site_carbon_usd_per_mwh: np.ndarray  # float64, carbon_kg_per_mwh * $/t / 1000
    site_max_gang: np.ndarray  # int64
    # pools
    type_names: list[str]
    pool_site: np.ndarray  # int64
    pool_type: np.ndarray  # int64
    pool_gpus: np.ndarray  # int64
    pool_kw_per_gpu: np.ndarray  # float64
    # jobs
    job_ids: np.ndarray  # object (str)
    job_kind: np.ndarray  # int8: 0 training, 1 inference
    tenant_names: list[str]
    job_tenant: np.ndarray  # int32 index into tenant_names
    job_priority: np.ndarray  # int64
    job_tier: np.ndarray  # int64, dense rank of priority (0 = lowest)
    job_units: np.ndarray  # int64: 1 for training, replicas for inference
    job_gpus_unit: np.ndarray  # int64
    job_value_unit: np.ndarray  # float64 $/h per unit at speed 1
    job_kw_per_gpu: np.ndarray  # float64, 0 = use the pool's figure
    job_required: np.ndarray  # bool
    job_pinned: np.ndarray  # bool
    job_current_pool: np.ndarray  # int64, -1 none
    job_migration_usd: np.ndarray  # float64 one-off per unit moved
    job_migration_usd_per_hour: np.ndarray  # float64 per unit moved, amortised
    job_min_sites: np.ndarray  # int64
    job_max_units_per_site: np.ndarray  # int64
    job_class: np.ndarray  # int64
    job_filter: np.ndarray  # int8 Filter: static reason no candidate can ever host it
    # eligibility classes (CSR over pools)
    class_ptr: np.ndarray  # int64 (n_classes + 1)
    class_pool: np.ndarray  # int64
    class_speed: np.ndarray  # float64
    # pair overrides (CSR per job over pools)
    pair_ptr: np.ndarray  # int64 (n_jobs + 1)
    pair_pool: np.ndarray  # int64
    pair_extra_usd_per_hour: np.ndarray  # float64 per unit
    pair_it_mw: np.ndarray  # float64 per unit, NaN = computed from kW per GPU
    pair_forbidden: np.ndarray  # bool
    # current placement (CSR per job over pools, ascending)
    current_ptr: np.ndarray  # int64 (n_jobs + 1)
    current_pool: np.ndarray  # int64
    current_units: np.ndarray  # int64, units running there now
    # migration budget
    max_moves: int  # UNLIMITED if none
    max_migration_usd: float  # inf if none
    timeline: Timeline
    meta: dict = field(default_factory=dict)

    @property
    def n_jobs(self) -> int:
        return len(self.job_ids)

    @property
    def n_sites(self) -> int:
        return len(self.site_ids)

    @property
    def n_pools(self) -> int:
        return len(self.pool_site)

    @property
    def n_periods(self) -> int:
        return self.timeline.n_periods

    @property
    def site_usd_per_mwh(self) -> np.ndarray:
        """Energy plus carbon cost per facility MWh at each site."""
        return self.site_energy_usd_per_mwh + self.site_carbon_usd_per_mwh

    def candidates(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Pools a job's class admits and the speed on each (before per-job filters)."""
        c = self.job_class[j]
        lo, hi = self.class_ptr[c], self.class_ptr[c + 1]
        return self.class_pool[lo:hi], self.class_speed[lo:hi]

    def pairs(self, j: int) -> slice:
        """Slice of the pair arrays holding job ``j``'s overrides."""
        return slice(self.pair_ptr[j], self.pair_ptr[j + 1])

    def unit_it_mw(self, j: int, p: int) -> float:
        """IT MW of one unit of job ``j`` on pool ``p`` (a pair's measured MW wins).

        The scalar twin of ``kernels.reference.unit_terms``'s power, for sequential loops.
        """
        if self.pair_ptr[j] != self.pair_ptr[j + 1]:
            sl = self.pairs(j)
            hit = np.flatnonzero(self.pair_pool[sl] == p)
            if hit.size and not math.isnan(self.pair_it_mw[sl][hit[0]]):
                return float(self.pair_it_mw[sl][hit[0]])
        kw = self.job_kw_per_gpu[j] if self.job_kw_per_gpu[j] > 0 else self.pool_kw_per_gpu[p]
        return float(self.job_gpus_unit[j] * kw / 1000.0)


def compile_problem(
    portfolio: Portfolio,
    jobs: pa.Table,
    pairs: pa.Table | None = None,
    options: SolveOptions | None = None,
) -> Problem:
    """Compile validated inputs into arrays. ``jobs``/``pairs`` come from ``placement.model.jobs``.

    Steps: pools (one per site and GPU type), the job columns, eligibility classes, the
    per-job filters (gang size and inventory against the class's best pool, then pinned and
    forbidden pairs), and the pair overrides.
    """
    options = options or portfolio.solve
    sites = portfolio.sites
    type_names = list(portfolio.gpu_types)
    type_index = {t: i for i, t in enumerate(type_names)}
    site_index = {s.id: i for i, s in enumerate(sites)}
    region_index = {r: i for i, r in enumerate(sorted({s.region for s in sites}))}
    pools = _pools(portfolio, type_index)
    timeline = compile_timeline(portfolio, jobs, pools.site, pools.type, type_names)
    # Eligibility by size looks at a pool's largest inventory over the horizon (a delivery counts).
    pools = dataclasses.replace(pools, gpus=timeline.pool_gpus.max(axis=0), kw=timeline.pool_kw_per_gpu[0])
    n = jobs.num_rows
    cols = _job_columns(jobs)
    current_pool = _current_pools(jobs, site_index, type_index, pools.index)
    classes = _classes(portfolio, jobs, pools, type_names)
    site_max_gang = np.array([s.max_gang_gpus or UNLIMITED for s in sites], np.int64)
    job_filter = _size_filters(classes, cols, pools, site_max_gang)
    pair_ptr, pair_pool, pair_extra, pair_mw, pair_forbidden = _compile_pairs(
        pairs, jobs, n, site_index, type_index, pools.site, pools.type
    )
    _per_job_filters(job_filter, cols["pinned"], current_pool, classes.job_class, classes.ptr, classes.pool,
                     pair_ptr, pair_pool, pair_forbidden)
    mig = cols["migration_usd"]
    return Problem(
        site_ids=[s.id for s in sites],
        site_region=np.array([region_index[s.region] for s in sites], np.int32),
        site_cap_mw=timeline.cap_mw[0].copy(),
        site_pue=np.array([s.pue for s in sites]),
        site_energy_usd_per_mwh=timeline.energy_usd_per_mwh[0].copy(),
        site_carbon_usd_per_mwh=timeline.carbon_usd_per_mwh[0].copy(),
        site_max_gang=site_max_gang,
        type_names=type_names,
        pool_site=pools.site,
        pool_type=pools.type,
        pool_gpus=timeline.pool_gpus[0].copy(),
        pool_kw_per_gpu=pools.kw,
        job_ids=jobs.column("id").to_numpy(zero_copy_only=False),
        job_kind=cols["kind"],
        tenant_names=cols["tenant_names"],
        job_tenant=cols["tenant"],
        job_priority=cols["priority"],
        job_tier=cols["tier"],
        job_units=cols["units"],
        job_gpus_unit=cols["gpus_unit"],
        job_value_unit=cols["value"] / cols["units"],
        job_kw_per_gpu=cols["kw_override"],
        job_required=cols["required"],
        job_pinned=cols["pinned"],
        job_current_pool=current_pool,
        job_migration_usd=mig,
        job_migration_usd_per_hour=mig / portfolio.objective.migration_horizon_hours,
        job_min_sites=cols["min_sites"],
        job_max_units_per_site=cols["max_units"],
        job_class=classes.job_class,
        job_filter=job_filter,
        class_ptr=classes.ptr,
        class_pool=classes.pool,
        class_speed=classes.speed,
        pair_ptr=pair_ptr,
        pair_pool=pair_pool,
        pair_extra_usd_per_hour=pair_extra,
        pair_it_mw=pair_mw,
        pair_forbidden=pair_forbidden,
        **_current_csr(n, *_home_rows(current_pool, cols["units"])),
        max_moves=UNLIMITED if options.max_moves is None else int(options.max_moves),
        max_migration_usd=math.inf if options.max_migration_usd is None else float(options.max_migration_usd),
        timeline=timeline,
        meta={"portfolio": portfolio.name},
    )


@dataclass(frozen=True)
class _Pools:
    """One pool per (site, GPU type), ordered by site then catalog type order."""

    site: np.ndarray
    type: np.ndarray
    gpus: np.ndarray
    kw: np.ndarray
    index: dict[tuple[int, int], int]  # (site, type) -> pool


def _pools(portfolio: Portfolio, type_index: dict[str, int]) -> _Pools:
    site, typ, gpus, kw = [], [], [], []
    for si, s in enumerate(portfolio.sites):
        for t in sorted(s.pools, key=type_index.__getitem__):
            site.append(si)
            typ.append(type_index[t])
            gpus.append(s.pools[t].gpus)
            kw.append(s.pools[t].kw_per_gpu or portfolio.gpu_types[t].kw_per_gpu)
    index = {(site[p], typ[p]): p for p in range(len(site))}
    return _Pools(np.asarray(site, np.int64), np.asarray(typ, np.int64), np.asarray(gpus, np.int64),
                  np.asarray(kw, np.float64), index)


def _job_columns(jobs: pa.Table) -> dict[str, object]:
    """The per-job arrays read straight from the table: units, sizes, value, tiers, tenants."""

    def col(name: str) -> pa.ChunkedArray:
        return jobs.column(name)

    def ints(name: str) -> np.ndarray:
        return col(name).to_numpy().astype(np.int64)

    kind = (pc.equal(col("kind"), "inference")).to_numpy(zero_copy_only=False).astype(np.int8)
    units = np.where(kind == 1, ints("replicas"), 1).astype(np.int64)
    priority = ints("priority")
    _, tier = np.unique(priority, return_inverse=True)
    share = col("max_share_per_site").to_numpy()
    tenant_enc = col("tenant").combine_chunks().dictionary_encode()
    return {
        "kind": kind,
        "units": units,
        "gpus_unit": np.where(kind == 1, ints("gpus_per_replica"), ints("gpus")).astype(np.int64),
        "value": col("value_usd_per_hour").to_numpy().astype(np.float64),
        "priority": priority,
        "tier": tier.reshape(-1).astype(np.int64),
        "max_units": np.where(kind == 1, np.floor(share * units + 1e-9), 1).astype(np.int64),
        "min_sites": np.where(kind == 1, ints("min_sites"), 1).astype(np.int64),
        "kw_override": pc.fill_null(col("kw_per_gpu"), 0.0).to_numpy().astype(np.float64),
        "migration_usd": col("migration_cost_usd").to_numpy().astype(np.float64),
        "tenant_names": [str(x) for x in tenant_enc.dictionary.to_pylist()],
        "tenant": tenant_enc.indices.to_numpy(zero_copy_only=False).astype(np.int32),
        "required": col("required").to_numpy(zero_copy_only=False).astype(bool),
        "pinned": col("pinned").to_numpy(zero_copy_only=False).astype(bool),
    }


@dataclass(frozen=True)
class _Classes:
    """Eligibility classes: each job's class and, per class, a CSR list of pools and speeds."""

    job_class: np.ndarray
    ptr: np.ndarray
    pool: np.ndarray
    speed: np.ndarray
    filter: np.ndarray  # Filter per class: why no pool is eligible (OK if some is)


CLASS_KEY = ("kind", "gpu_types", "regions", "tenant", "demand_region", "max_latency_ms")


def _classes(portfolio: Portfolio, jobs: pa.Table, pools: _Pools, type_names: list[str]) -> _Classes:
    """Unique combinations of the class key columns, and the pools each admits."""
    n = jobs.num_rows
    job_class = np.zeros(n, np.int64)
    for c in CLASS_KEY:
        # Mixed-radix combine, re-densified after each column so the key never overflows
        # (np.unique over rows of a 2-D array sorts structured values: 10x slower at 1M jobs).
        codes = _codes(jobs.column(c))
        key = job_class * (int(codes.max()) + 1 if n else 1) + codes
        _, job_class = np.unique(key, return_inverse=True)
        job_class = job_class.reshape(-1).astype(np.int64)
    n_classes = int(job_class.max()) + 1 if n else 0
    first_row = np.zeros(n_classes, np.int64)
    first_row[job_class[::-1]] = np.arange(n)[::-1]
    ptr, class_pool, class_speed = [0], [], []
    class_filter = np.zeros(n_classes, np.int8)
    pool_view = _PoolView(portfolio, pools.site, pools.type, type_names)
    for c, key in enumerate(jobs.select(list(CLASS_KEY)).take(pa.array(first_row)).to_pylist()):
        eligible, speeds, why = pool_view.eligible(key)
        class_pool.append(eligible)
        class_speed.append(speeds)
        ptr.append(ptr[-1] + len(eligible))
        class_filter[c] = why
    return _Classes(job_class, np.asarray(ptr, np.int64),
                    np.concatenate(class_pool).astype(np.int64) if class_pool else np.zeros(0, np.int64),
                    np.concatenate(class_speed).astype(np.float64) if class_speed else np.zeros(0),
                    class_filter)


def _size_filters(classes: _Classes, cols: dict, pools: _Pools, site_max_gang: np.ndarray) -> np.ndarray:
    """Each job's class filter, then gang size and inventory against the class's best pool."""
    n_classes = len(classes.ptr) - 1
    job_filter = classes.filter[classes.job_class].copy()
    best_gang = np.zeros(n_classes, np.int64)
    best_inv = np.zeros(n_classes, np.int64)
    for c in range(n_classes):
        ps = classes.pool[classes.ptr[c]:classes.ptr[c + 1]]
        if ps.size:
            best_gang[c] = site_max_gang[pools.site[ps]].max()
            best_inv[c] = pools.gpus[ps].max()
    kind, gpus_unit, jc = cols["kind"], cols["gpus_unit"], classes.job_class
    ok = job_filter == Filter.OK
    job_filter[ok & (kind == 0) & (gpus_unit > best_gang[jc])] = Filter.GANG_SIZE
    ok = job_filter == Filter.OK
    job_filter[ok & (gpus_unit > best_inv[jc])] = Filter.INVENTORY
    return job_filter


def _site_figures(portfolio: Portfolio) -> dict[str, np.ndarray]:
    """The per-site numbers that change no eligibility: capacity, PUE and $ per facility MWh."""
    sites, carbon_price = portfolio.sites, portfolio.objective.carbon_usd_per_tonne
    return {
        "site_cap_mw": np.array([(s.grid_mw - s.reserve_mw) if s.online else 0.0 for s in sites]),
        "site_pue": np.array([s.pue for s in sites]),
        "site_energy_usd_per_mwh": np.array([s.price_usd_per_mwh for s in sites], np.float64),
        "site_carbon_usd_per_mwh": np.array([s.carbon_kg_per_mwh * carbon_price / 1000.0 for s in sites]),
    }


def same_structure(a: Portfolio, b: Portfolio) -> bool:
    """True if ``b`` differs from ``a`` only in figures ``with_site_figures`` can apply.

    Those are grid and reserve MW (of online sites), PUE, energy price and carbon intensity.
    Anything else (sites on or off, pools, regions, leases, types, objective settings) changes
    eligibility or job terms and needs a fresh ``compile_problem``.
    """
    figures = {"grid_mw", "reserve_mw", "pue", "price_usd_per_mwh", "carbon_kg_per_mwh"}
    if a.horizon is not None or b.horizon is not None:
        return False  # per-period figures live in the timeline: recompile
    if a.model_dump(exclude={"sites", "solve"}) != b.model_dump(exclude={"sites", "solve"}) or len(a.sites) != len(b.sites):
        return False
    return all(x.model_dump(exclude=figures) == y.model_dump(exclude=figures) for x, y in zip(a.sites, b.sites))


def with_site_figures(problem: Problem, portfolio: Portfolio) -> Problem:
    """``problem`` with the site figures of ``portfolio`` (which must pass ``same_structure``).

    What-if sweeps over curtailment, PUE or prices reuse one compiled problem this way.
    """
    figures = _site_figures(portfolio)
    timeline = dataclasses.replace(problem.timeline, cap_mw=figures["site_cap_mw"][None],
                                   energy_usd_per_mwh=figures["site_energy_usd_per_mwh"][None],
                                   carbon_usd_per_mwh=figures["site_carbon_usd_per_mwh"][None])
    return dataclasses.replace(problem, **figures, timeline=timeline)


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """Integer code per row of a column (nulls get their own code)."""
    enc = column.combine_chunks().dictionary_encode(null_encoding="encode")
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _current_pools(jobs: pa.Table, site_index: dict, type_index: dict, pool_of: dict) -> np.ndarray:
    sites = jobs.column("current_site").to_numpy(zero_copy_only=False)
    types = jobs.column("current_gpu_type").to_numpy(zero_copy_only=False)
    out = np.full(jobs.num_rows, -1, np.int64)
    for j in np.flatnonzero(np.array([s is not None for s in sites], bool)):
        t = types[j]
        if t is None:
            continue
        out[j] = pool_of.get((site_index[sites[j]], type_index[t]), -1)
    return out


def _home_rows(current_pool: np.ndarray, units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each job with a current pool running all its units there (what a jobs table can say)."""
    j = np.flatnonzero(current_pool >= 0)
    return j, current_pool[j], units[j]


def _current_csr(n_jobs: int, job: np.ndarray, pool: np.ndarray, units: np.ndarray) -> dict[str, np.ndarray]:
    """The ``current_*`` CSR arrays of rows (job, pool, units); rows on one (job, pool) add up."""
    job, pool, units = (np.asarray(a, np.int64) for a in (job, pool, units))
    keep = units > 0
    job, pool, units = job[keep], pool[keep], units[keep]
    order = np.lexsort((pool, job))
    job, pool, units = job[order], pool[order], units[order]
    first = np.ones(len(job), bool)
    first[1:] = (job[1:] != job[:-1]) | (pool[1:] != pool[:-1])
    starts = np.flatnonzero(first)
    summed = np.add.reduceat(units, starts) if len(starts) else units
    job, pool = job[starts], pool[starts]
    ptr = np.zeros(n_jobs + 1, np.int64)
    np.add.at(ptr, job + 1, 1)
    return {"current_ptr": np.cumsum(ptr), "current_pool": pool, "current_units": summed.astype(np.int64)}


def with_current(problem: Problem, job: np.ndarray, pool: np.ndarray, units: np.ndarray, *,
                 keep_home: bool = False) -> Problem:
    """``problem`` with the current placement given as rows (job, pool, units) in its indices.

    A service may run on several pools now; its home (``job_current_pool``) becomes its largest
    row, ties to the lowest pool. Jobs without rows have no current placement, unless
    ``keep_home``: then they keep the home they have (a pinned job's only place to start), with
    all their units counted there, so starting there is not a move.
    """
    P = problem
    job, pool, units = (np.asarray(a, np.int64) for a in (job, pool, units))
    if keep_home:
        has_rows = np.zeros(P.n_jobs, bool)
        has_rows[job] = True
        home_only = np.flatnonzero(~has_rows & (P.job_current_pool >= 0))
        job = np.concatenate([job, home_only])
        pool = np.concatenate([pool, P.job_current_pool[home_only]])
        units = np.concatenate([units, P.job_units[home_only]])
    csr = _current_csr(P.n_jobs, job, pool, units)
    ptr, cp, cu = csr["current_ptr"], csr["current_pool"], csr["current_units"]
    row = largest_rows(np.repeat(np.arange(P.n_jobs), np.diff(ptr)), cu, cp, P.n_jobs)
    home = np.where(row >= 0, cp[np.maximum(row, 0)] if len(cp) else -1, -1)
    return dataclasses.replace(P, job_current_pool=home, **csr)


def largest_rows(job: np.ndarray, units: np.ndarray, tie: np.ndarray, n_jobs: int) -> np.ndarray:
    """Per job, the index of its row with the most units (ties to the lowest ``tie``); -1 if none.

    A job running on several rows (a multi-site service) is *at* this row: its home, and the
    site and type a jobs table names as its current ones.
    """
    out = np.full(n_jobs, -1, np.int64)
    if len(job) == 0:
        return out
    order = np.lexsort((tie, -np.asarray(units), job))
    first = np.ones(len(order), bool)
    first[1:] = job[order][1:] != job[order][:-1]
    out[job[order][first]] = order[first]
    return out


class _PoolView:
    """Per-pool attributes as arrays, so a class's eligible pools are a few vector masks.

    Filters apply in the order of ``Filter`` and the first one that leaves no pool is the
    class's reason. A million jobs fall into a few thousand classes; each costs O(pools).
    """

    def __init__(self, portfolio: Portfolio, pool_site: np.ndarray, pool_type: np.ndarray, type_names: list[str]):
        self.portfolio, self.type_names = portfolio, type_names
        self.pool_site, self.pool_type = pool_site, pool_type
        sites = portfolio.sites
        self.online = np.array([s.online for s in sites], bool)[pool_site]
        self.region = np.array([s.region for s in sites], object)[pool_site]
        gpu = [portfolio.gpu_types[t] for t in type_names]
        self.cooling_ok = np.array([gpu[t].cooling in sites[s].cooling for s, t in zip(pool_site, pool_type)], bool)
        self.training_speed = np.array([g.training_speed for g in gpu])[pool_type]
        self.inference_speed = np.array([g.inference_speed for g in gpu])[pool_type]
        self._tenant_ok: dict[str, np.ndarray] = {}
        self._latency: dict[str, np.ndarray] = {}

    def tenant_ok(self, tenant: str) -> np.ndarray:
        if tenant not in self._tenant_ok:
            ok = np.array([s.tenants is None or tenant in s.tenants for s in self.portfolio.sites], bool)
            self._tenant_ok[tenant] = ok[self.pool_site]
        return self._tenant_ok[tenant]

    def latency(self, region: str) -> np.ndarray:
        if region not in self._latency:
            lat = [s.latency_to(region) for s in self.portfolio.sites]
            self._latency[region] = np.array([np.inf if x is None else x for x in lat])[self.pool_site]
        return self._latency[region]

    def eligible(self, key: dict) -> tuple[np.ndarray, np.ndarray, int]:
        """Eligible pools and speeds for one class key, or the filter that left none."""
        types = parse_type_spec(key["gpu_types"])
        regions = parse_list(key["regions"])
        type_index = {t: i for i, t in enumerate(self.type_names)}
        steps = [
            (Filter.OFFLINE, lambda: self.online),
            (Filter.TENANT, lambda: self.tenant_ok(key["tenant"])),
            (Filter.REGION, lambda: np.isin(self.region, regions) if regions else None),
            (Filter.GPU_TYPE, lambda: np.isin(self.pool_type, [type_index[t] for t in types]) if types else None),
            (Filter.COOLING, lambda: self.cooling_ok),
            (Filter.LATENCY, lambda: None if key["max_latency_ms"] is None
             else self.latency(key["demand_region"]) <= key["max_latency_ms"]),
        ]
        alive = np.ones(len(self.pool_site), bool)
        for code, mask in steps:
            m = mask()
            if m is not None:
                alive &= m
            if not alive.any():
                return np.zeros(0, np.int64), np.zeros(0), int(code)
        pools = np.flatnonzero(alive)
        inference = key["kind"] == "inference"
        speed = (self.inference_speed if inference else self.training_speed)[pools].copy()
        for name, own in types.items():
            if own is not None:
                speed[self.pool_type[pools] == type_index[name]] = own
        return pools, speed, int(Filter.OK)


def _compile_pairs(pairs: pa.Table | None, jobs: pa.Table, n: int, site_index: dict, type_index: dict,
                   pool_site: np.ndarray, pool_type: np.ndarray):
    if pairs is None or pairs.num_rows == 0:
        empty_f = np.zeros(0, np.float64)
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int64), empty_f, empty_f, np.zeros(0, bool)
    job_row = pc.index_in(pairs.column("job_id"), value_set=jobs.column("id")).to_numpy(zero_copy_only=False)
    site = np.array([site_index[s] for s in pairs.column("site_id").to_pylist()], np.int64)
    gtype = pairs.column("gpu_type").to_pylist()
    extra = pairs.column("extra_cost_usd_per_hour").to_numpy()
    mw = pc.fill_null(pairs.column("power_mw"), np.nan).to_numpy()
    forb = pairs.column("forbidden").to_numpy(zero_copy_only=False)
    # Each row applies to every pool at its site, or to the one of its GPU type when it names one.
    row_type = np.array([type_index[t] if t else -1 for t in gtype], np.int64)
    by_site = np.argsort(pool_site, kind="stable")
    site_ptr = np.searchsorted(pool_site[by_site], np.arange(len(site_index) + 1))
    counts = site_ptr[site + 1] - site_ptr[site]
    rows_i_a = np.repeat(np.arange(pairs.num_rows, dtype=np.int64), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    rows_p_a = by_site[np.repeat(site_ptr[site], counts) + offset].astype(np.int64)
    typed = row_type[rows_i_a] >= 0
    keep = ~typed | (pool_type[rows_p_a] == row_type[rows_i_a])
    rows_i_a, rows_p_a, typed = rows_i_a[keep], rows_p_a[keep], typed[keep]
    rows_j_a = job_row[rows_i_a].astype(np.int64)
    order = np.lexsort((rows_i_a, typed, rows_p_a, rows_j_a))
    rows_j_a, rows_p_a, rows_i_a = rows_j_a[order], rows_p_a[order], rows_i_a[order]
    # One entry per (job, pool): a row naming the GPU type wins over a site-wide row; among
    # rows equally specific, the later one wins.
    last = np.ones(len(rows_j_a), bool)
    last[:-1] = (rows_j_a[1:] != rows_j_a[:-1]) | (rows_p_a[1:] != rows_p_a[:-1])
    rows_j_a, rows_p_a, rows_i_a = rows_j_a[last], rows_p_a[last], rows_i_a[last]
    ptr = np.zeros(n + 1, np.int64)
    np.add.at(ptr, rows_j_a + 1, 1)
    return (np.cumsum(ptr), rows_p_a, extra[rows_i_a].astype(np.float64),
            mw[rows_i_a].astype(np.float64), forb[rows_i_a].astype(bool))


def _per_job_filters(job_filter, pinned, current_pool, job_class, class_ptr, class_pool,
                     pair_ptr, pair_pool, pair_forbidden) -> None:
    for j in np.flatnonzero(pinned & (job_filter == Filter.OK)):
        pools = class_pool[class_ptr[job_class[j]]:class_ptr[job_class[j] + 1]]
        if current_pool[j] < 0 or current_pool[j] not in pools:
            job_filter[j] = Filter.PINNED
    pair_job = np.repeat(np.arange(len(pair_ptr) - 1), np.diff(pair_ptr))
    for j in np.unique(pair_job[pair_forbidden]):
        if job_filter[j] != Filter.OK:
            continue
        pools = class_pool[class_ptr[job_class[j]]:class_ptr[job_class[j] + 1]]
        sl = slice(pair_ptr[j], pair_ptr[j + 1])
        banned = set(pair_pool[sl][pair_forbidden[sl]].tolist())
        if banned.issuperset(pools.tolist()):
            job_filter[j] = Filter.FORBIDDEN


def subproblem(problem: Problem, jobs: np.ndarray, pool_gpus: np.ndarray, site_cap_mw: np.ndarray,
               max_moves: int | None = None, max_migration_usd: float | None = None) -> Problem:
    """The same problem restricted to ``jobs`` (sorted indices) with the given capacities.

    Large-neighbourhood search frees some jobs, fixes the rest, and hands this to an exact
    solver: capacities are what the fixed jobs leave, the migration budget what they leave.
    """
    P = problem
    jobs = np.asarray(jobs, np.int64)
    pair_ptr, pair_idx = _csr_rows(P.pair_ptr, jobs)
    current_ptr, current_idx = _csr_rows(P.current_ptr, jobs)
    per_job = {name: getattr(P, name)[jobs] for name in vars(P)
               if name.startswith("job_") and name != "job_ids"}
    return dataclasses.replace(
        P,
        job_ids=P.job_ids[jobs],
        **per_job,
        pool_gpus=np.asarray(pool_gpus, np.int64),
        site_cap_mw=np.asarray(site_cap_mw, np.float64),
        pair_ptr=pair_ptr,
        pair_pool=P.pair_pool[pair_idx],
        pair_extra_usd_per_hour=P.pair_extra_usd_per_hour[pair_idx],
        pair_it_mw=P.pair_it_mw[pair_idx],
        pair_forbidden=P.pair_forbidden[pair_idx],
        current_ptr=current_ptr,
        current_pool=P.current_pool[current_idx],
        current_units=P.current_units[current_idx],
        max_moves=P.max_moves if max_moves is None else int(max_moves),
        max_migration_usd=P.max_migration_usd if max_migration_usd is None else float(max_migration_usd),
        timeline=dataclasses.replace(P.timeline, job_first_start=P.timeline.job_first_start[jobs],
                                     job_last_start=P.timeline.job_last_start[jobs],
                                     job_duration=P.timeline.job_duration[jobs]),
        meta={**P.meta, "parent_jobs": jobs},
    )


def _csr_rows(ptr: np.ndarray, jobs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A per-job CSR restricted to ``jobs``: its new pointer and the entries' old indices."""
    lo, hi = ptr[jobs], ptr[jobs + 1]
    counts = hi - lo
    idx = np.repeat(lo - np.concatenate(([0], np.cumsum(counts)[:-1])), counts) + np.arange(counts.sum())
    return np.concatenate(([0], np.cumsum(counts))).astype(np.int64), idx.astype(np.int64)
