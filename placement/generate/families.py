"""Generate real-world-shaped instances: a portfolio config (a dict ready for TOML) and a jobs table.

Five families (``FAMILIES``); every distribution is cited to the shared reference files
(``shared/REFERENCE-DATA.md`` = RD, ``shared/REAL-PORTFOLIOS.md`` = RP). "Assumption" marks a
number the files do not give.

- Training gang sizes, neocloud / inference: Helios 2020 share of jobs by GPU count
  (1: 72.2%, 2-4: 8.3%, 5-8: 14.2%, 9-64: 5.0%, >64: 0.3%), RD §1. power-bound / gpu-bound: Seren
  2023 LLM-development mix (54.0 / 13.9 / 28.8 / 2.6 / 0.7%), RD §1. Within a bucket: "5-8 is mostly
  8-GPU (1 node)" (RD §1); multi-node jobs are whole 8-GPU nodes; the >64 tail stops at 512
  (Helios max 2,048, Seren/Kalos 1,024, RD §1 table 2) -- the split inside buckets is an assumption.
- Frontier gangs: log-uniform on 4,096-32,768 GPUs in 512-GPU steps, spanning Llama 3.1 405B on
  16K H100 of a 24K cluster and GPT-4 on ~20-25k A100 (RD §2); DeepSeek-V3's 2,048 H800 is the
  floor's order of magnitude. Fabric limits (``max_gang_gpus``) of 16K-64K echo the 24K RoCE cluster.
- Inference replicas: NVIDIA NIM profiles, 1 GPU (8B), 2 (70B FP8 TP2), 4 (70B TP4, Llama 2 70B),
  8 (405B FP8 MP8), 16 (405B BF16 MP16) (RD §3). Replica counts: log-normal, median 4 (assumption).
- Latency budgets: 20-150 ms network round trip, inspired by DistServe TTFT SLOs of 125-400 ms
  (code completion to chatbot) and NIM TTFT ~0.4-0.8 s, of which the network is a share (RD §3).
  Budgets too tight for any site are widened to the nearest ``min_sites`` sites.
- Power per GPU: the shipped catalog (RD §4); PUE 1.1-1.45 (RD §4: Google 1.10, Ellendale 1.18,
  liquid 1.05-1.25, industry 1.56-1.58; new AI builds sit well below the average).
- Energy price: EIA 2023 industrial retail by state; Nordic day-ahead 2024 at ~1.08 $/EUR; carbon:
  Google region-carbon-info 2024 (ERCOT 303, PJM 323, MISO 413, Finland 39, Stockholm 2.7), RD §5.
  OK/GA/NM have no figure: US 2023 average ~345 kg/MWh (RD §5); AL, WI prices are assumptions.
- Values: $2-4 per H100-GPU-hour by tier (spot 2.0, reserved 2.6, on-demand 3.0; inference +15%),
  log-normal noise (sigma 0.2) -- market-rental assumption, not in the reference files.
- Site sizes (synthetic): site GPU shares log-normal; inventory = demand / ``gpu_ratio``, grid MW =
  inventory power x PUE / ``overprov``, so each family's tightness is exact by construction:
  neocloud balanced, frontier power binds at 1.35x, power-bound 1.75x MW, gpu-bound 1.7x GPUs.
  Given a ``base`` portfolio, the sites are kept and job sizes are scaled instead (shape kept on a
  log scale, multi-node jobs in whole nodes). Frontier sizes are never scaled: choose tens to
  hundreds of frontier jobs (about capacity GPUs / 13,000); a mismatch is logged with a count.

Columns are NumPy arrays turned into Arrow once, so 1,000,000 jobs take about a second.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import tomli_w

from placement.generate.tight import TIGHT_FAMILIES, generate_tight
from placement.io.config import gpu_catalog, load_config
from placement.io.tables import atomic_write
from placement.model.jobs import WINDOW_COLUMNS, job_schema
from placement.model.portfolio import Portfolio

SHAPED_FAMILIES = ("neocloud", "frontier", "inference", "power-bound", "gpu-bound")
FAMILIES = SHAPED_FAMILIES + TIGHT_FAMILIES
log = logging.getLogger("placement")
SOURCES = "shared/REFERENCE-DATA.md §1-5, shared/REAL-PORTFOLIOS.md (see placement/generate.py)"


class Region(NamedTuple):
    """A supply region: energy price, grid carbon and a centre for latency."""

    price_usd_per_mwh: float
    carbon_kg_per_mwh: float
    lat: float
    lon: float


# RD §5. Nordic: EUR 45.6 (FI) / ~36 (SE) x 1.08; wholesale only, no grid fees.
REGIONS: dict[str, Region] = {
    "us-tx": Region(66.0, 303.0, 32.6, -98.5),  # ERCOT (Dallas)
    "us-ok": Region(62.6, 345.0, 35.7, -95.4),  # carbon not found: US average
    "us-ga": Region(68.8, 345.0, 34.8, -85.0),  # carbon not found: US average
    "us-nd": Region(73.7, 413.0, 47.9, -97.0),  # MISO (Iowa) figure
    "us-va": Region(89.2, 323.0, 39.0, -77.5),  # PJM (N. Virginia)
    "us-oh": Region(70.3, 323.0, 41.1, -80.8),  # PJM (Columbus)
    "us-ky": Region(65.5, 413.0, 37.0, -88.3),  # MISO figure as a stand-in
    "us-nc": Region(71.5, 576.0, 35.2, -84.0),  # Carolinas (Google S. Carolina)
    "us-nm": Region(57.5, 345.0, 32.3, -106.8),  # carbon not found: US average
    "us-mi": Region(81.6, 413.0, 42.2, -83.7),  # MISO
    "us-al": Region(68.0, 345.0, 32.6, -85.5),  # price: assumption (like GA)
    "us-wi": Region(78.0, 413.0, 43.4, -87.9),  # price: assumption; MISO
    "eu-fi": Region(49.0, 39.0, 60.6, 27.0),
    "eu-se": Region(39.0, 3.0, 65.6, 22.1),
}

# Where users are (metros), distinct from where power is: inference latency is measured to these.
DEMAND_REGIONS: dict[str, tuple[float, float, float]] = {  # lat, lon, share of services
    "us-east": (39.0, -77.5, 0.30),
    "us-west": (37.4, -122.0, 0.18),
    "us-central": (41.9, -87.6, 0.15),
    "us-south": (32.8, -96.8, 0.15),
    "eu-west": (50.1, 8.7, 0.14),
    "eu-north": (59.3, 18.1, 0.08),
}


def rtt_ms(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> Any:
    """Rough network round trip: great-circle km x 1.5 route factor at 200 km/ms each way, +1 ms."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon2 - lon1) / 2) ** 2
    km = 2 * 6371.0 * np.arcsin(np.sqrt(a))
    return np.round(1.0 + km * 1.5 * 2 / 200.0, 1)


# Share of jobs by GPU-count bucket (1, 2-4, 5-8, 9-64, >64), RD §1; the within-bucket split is ours.
_BUCKETS: tuple[dict[int, float], ...] = (
    {1: 1.0},
    {2: 0.55, 3: 0.05, 4: 0.40},
    {8: 0.92, 6: 0.05, 5: 0.03},
    {16: 0.50, 24: 0.05, 32: 0.30, 64: 0.15},
    {128: 0.55, 256: 0.35, 512: 0.10},
)
HELIOS = (72.2, 8.3, 14.2, 5.0, 0.3)
SEREN = (54.0, 13.9, 28.8, 2.6, 0.7)


@dataclass(frozen=True)
class Family:
    """How one family draws sites and jobs; ratios set its tightness."""

    inference_share: float
    trace: tuple[float, ...] | None  # gang mix (None: frontier gangs)
    replica_gpus: dict[int, float]  # NIM profiles, RD §3
    replicas_median: float
    slo_share: float  # inference services with a latency budget
    gpu_ratio: float  # demand GPUs / inventory
    overprov: float  # inventory / GPUs the grid can power (power ratio = gpu_ratio x overprov)
    priorities: tuple[float, float, float]
    n_tenants: int
    regions: dict[str, float]
    types: dict[str, float]
    types_per_site: int
    pue: tuple[float, float]
    min_site_gpus: int
    fabric: tuple[int, ...]  # max_gang_gpus choices; 0 = no limit
    gang_bounds: tuple[int, int] = (1, 1 << 40)  # kept when scaling to a base portfolio


_MINING = {"us-tx": 0.28, "us-ok": 0.08, "us-ga": 0.10, "us-nd": 0.10, "us-ky": 0.07, "us-nc": 0.07,
           "us-al": 0.05, "us-va": 0.08, "us-oh": 0.06, "us-nm": 0.04, "eu-fi": 0.04, "eu-se": 0.03}
_MIXED = {"A100": 0.2, "H100": 0.4, "H200": 0.25, "B200": 0.15}
_NIM = {1: 0.35, 2: 0.30, 4: 0.20, 8: 0.15}

SPECS: dict[str, Family] = {
    "neocloud": Family(0.20, HELIOS, _NIM, 4, 0.5, 1.0, 1.05, (0.6, 0.3, 0.1), 24, _MINING, _MIXED, 3,
                       (1.2, 1.45), 16, (0, 0, 512, 1024, 2048, 4096)),
    "frontier": Family(0.10, None, {8: 0.7, 16: 0.3}, 32, 0.5, 1.0, 1.35, (0.2, 0.5, 0.3), 5,
                       {"us-tx": 0.35, "us-nm": 0.1, "us-oh": 0.12, "us-mi": 0.12, "us-wi": 0.1,
                        "us-nd": 0.06, "us-va": 0.07, "eu-fi": 0.04, "eu-se": 0.04},
                       {"GB200": 0.55, "H100": 0.2, "H200": 0.1, "B200": 0.15}, 1,
                       (1.1, 1.25), 8192, (16384, 24576, 32768, 65536, 0), (4096, 32768)),
    "inference": Family(0.90, HELIOS, _NIM, 6, 0.9, 0.85, 1.05, (0.3, 0.5, 0.2), 12,
                        {"us-va": 0.2, "us-oh": 0.1, "us-tx": 0.2, "us-ga": 0.12, "us-nc": 0.05,
                         "us-mi": 0.08, "us-ky": 0.05, "us-ok": 0.05, "eu-fi": 0.08, "eu-se": 0.07},
                        _MIXED, 3, (1.15, 1.4), 16, (0,)),
    "power-bound": Family(0.20, SEREN, _NIM, 4, 0.5, 0.7, 2.5, (0.6, 0.3, 0.1), 16, _MINING, _MIXED, 3,
                          (1.2, 1.45), 16, (0, 0, 1024, 4096)),
    "gpu-bound": Family(0.20, SEREN, _NIM, 4, 0.5, 1.7, 0.4, (0.6, 0.3, 0.1), 16, _MINING, _MIXED, 3,
                        (1.2, 1.45), 16, (0, 0, 1024, 4096)),
}
RATE_BY_TIER = np.array([2.0, 3.0, 2.6])  # $/H100-GPU-h: spot, on-demand, reserved (assumption)
# Restrictions some jobs carry: a validated software stack (types), data residency (regions).
TYPE_RESTRICTIONS = (("H100", "H200"), ("B200", "GB200"), ("A100",), ("H200:1.3", "B200"))
RESTRICT_SHARE, RESIDENCY_SHARE, MEASURED_KW_SHARE = 0.04, 0.02, 0.01


@dataclass
class _Supply:
    """What job generation needs to know about the sites, before or after they are sized."""

    sites: list[dict[str, Any]]
    share: np.ndarray  # capacity share per site (0 if offline)
    latency: np.ndarray  # sites x demand regions, ms (inf: unknown)
    demand: list[str]
    demand_p: np.ndarray
    types: list[str]
    regions: list[str]


def generate(family: str, n_jobs: int, n_sites: int, seed: int,
             base: Portfolio | None = None) -> tuple[dict[str, Any], pa.Table]:
    """Return ``(portfolio config dict, jobs table)`` for a family; deterministic in ``seed``.

    With ``base`` its sites are reused (``n_sites`` ignored) and job sizes scaled to its capacity.
    """
    if family not in SPECS:
        raise ValueError(f"unknown family '{family}': expected one of {', '.join(SHAPED_FAMILIES)}")
    if n_jobs < 1 or (base is None and n_sites < 1):
        raise ValueError("n_jobs and n_sites must be >= 1")
    fam = SPECS[family]
    rng = np.random.default_rng(seed)
    supply = _base_supply(base) if base is not None else _skeleton(fam, n_sites, rng)

    n_inf = round(n_jobs * fam.inference_share)
    is_inf = np.zeros(n_jobs, bool)
    is_inf[rng.choice(n_jobs, size=n_inf, replace=False)] = True
    gpus = np.where(is_inf, 0, _gang_sizes(fam, n_jobs, rng))
    gpr = np.where(is_inf, _categorical(fam.replica_gpus, n_jobs, rng), 0)
    reps = np.where(is_inf, np.clip(np.rint(rng.lognormal(math.log(fam.replicas_median), 0.9, n_jobs)),
                                    1, 512), 0).astype(np.int64)
    tenants, tenant_idx = _tenants(fam, supply, n_jobs, rng)
    allowed = np.array([[s.get("tenants") is None or t in s["tenants"] for t in tenants]
                        for s in supply.sites], bool).reshape(len(supply.sites), len(tenants))
    if base is not None:
        gpus, reps = _scale_to(base, fam, gpus, gpr, reps, _gang_caps(base, tenants, allowed)[tenant_idx])

    tier = rng.choice(3, size=n_jobs, p=fam.priorities)
    rate = RATE_BY_TIER[tier] * rng.lognormal(0.0, 0.2, n_jobs) * np.where(is_inf, 1.15, 1.0)
    value = np.round((gpus + gpr * reps) * rate, 2)

    # Inference: demand region, latency budget widened until min_sites sites the tenant may use
    # are within reach (kth[t, k-1, d]: latency of the k-th nearest such site), spread.
    d_idx = rng.choice(len(supply.demand), size=n_jobs, p=supply.demand_p)
    has_slo = is_inf & (rng.random(n_jobs) < fam.slo_share)
    per_tenant = np.where(allowed.T[:, :, None], supply.latency[None, :, :], np.inf)
    kth = np.sort(per_tenant, axis=1)
    reachable = np.isfinite(kth).sum(axis=1)[tenant_idx, d_idx]
    min_sites = np.minimum(rng.choice([1, 2, 3], size=n_jobs, p=[0.45, 0.35, 0.2]), reps)
    min_sites = np.where(is_inf, np.clip(min_sites, 1, np.maximum(reachable, 1)), 1)
    share = np.where(min_sites > 1, np.minimum(1.0, np.round(1.0 / min_sites + 0.25, 2)), 1.0)
    need = kth[tenant_idx, np.minimum(min_sites, kth.shape[1]) - 1, d_idx]
    budget = rng.choice([20.0, 30.0, 50.0, 80.0, 150.0], size=n_jobs, p=[0.15, 0.2, 0.3, 0.2, 0.15])
    budget = np.maximum(budget, np.ceil(np.where(np.isfinite(need), need, 0.0)))

    # At most one restriction per job, only on single-node jobs (or replicas) without a latency
    # budget, so a restricted job still fits wherever it is allowed.
    free = ~has_slo & (np.where(is_inf, gpr, gpus) <= 8)
    types_opts = [""] + [",".join(t) for t in TYPE_RESTRICTIONS
                         if all(x.split(":")[0] in supply.types for x in t)]
    draw = rng.random(n_jobs)
    typed = free & (draw < RESTRICT_SHARE) & (len(types_opts) > 1)
    type_idx = np.where(typed, rng.integers(1, max(len(types_opts), 2), n_jobs), 0)
    region_opts = [""] + [",".join(g) for g in _residency_groups(supply)]
    resident = free & ~is_inf & (draw >= 1 - RESIDENCY_SHARE) & (len(region_opts) > 1)
    region_idx = np.where(resident, rng.integers(1, max(len(region_opts), 2), n_jobs), 0)
    measured = is_inf & (rng.random(n_jobs) < MEASURED_KW_SHARE)
    # Decode-heavy services draw well under server max (splitwise-sim H100 decode 380 W, RD §3).
    kw = np.round(rng.uniform(0.7, 1.1, n_jobs), 2)

    width = max(6, len(str(n_jobs)))
    ids = pc.binary_join_element_wise(
        "job-", pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n_jobs + 1)), pa.string()), width, "0"), "")
    cols: dict[str, Any] = {
        "id": ids,
        "kind": _strings(["training", "inference"], is_inf.astype(np.int8)),
        "tenant": _strings(tenants, tenant_idx),
        "priority": pa.array(tier, pa.int64()),
        "value_usd_per_hour": pa.array(value, pa.float64()),
        "required": pa.array(np.zeros(n_jobs, bool)),
        "gpus": pa.array(gpus, pa.int64()),
        "gpus_per_replica": pa.array(gpr, pa.int64()),
        "replicas": pa.array(reps, pa.int64()),
        "gpu_types": _strings(types_opts, type_idx),
        "regions": _strings(region_opts, region_idx),
        "kw_per_gpu": pa.array(kw, pa.float64(), mask=~measured),
        "demand_region": _strings(supply.demand, d_idx, mask=~has_slo),
        "max_latency_ms": pa.array(budget, pa.float64(), mask=~has_slo),
        "min_sites": pa.array(min_sites, pa.int64()),
        "max_share_per_site": pa.array(share, pa.float64()),
        "current_site": pa.nulls(n_jobs, pa.string()),
        "current_gpu_type": pa.nulls(n_jobs, pa.string()),
        "migration_cost_usd": pa.array(np.zeros(n_jobs)),
        "pinned": pa.array(np.zeros(n_jobs, bool)),
    }
    schema = job_schema()
    cols.update({c: pa.nulls(n_jobs, schema.field(c).type) for c in WINDOW_COLUMNS})
    table = pa.table(cols, schema=schema)

    if base is not None:
        return _base_config(base), table
    _size_sites(fam, supply, int(gpus.sum() + (gpr * reps).sum()), int(gpus.max(initial=0)))
    config = {
        "name": f"{family}-{n_jobs}x{n_sites}-seed{seed}",
        "description": f"Generated '{family}' instance ({n_jobs} jobs, {n_sites} sites, seed {seed}); "
                       f"sources: {SOURCES}",
        "sites": supply.sites,
    }
    return config, table


def write_instance(family: str, n_jobs: int, n_sites: int, seed: int, out_dir: Path,
                   base_config: Path | None = None) -> tuple[Path, ...]:
    """Write ``out_dir/portfolio.toml``, ``out_dir/jobs.parquet`` and, for the ``tight`` families,
    ``out_dir/pairs.parquet``, each atomically; return the paths written."""
    out_dir = Path(out_dir)
    if family in TIGHT_FAMILIES:
        if base_config is not None:
            raise ValueError(f"family '{family}' makes its own sites: --portfolio does not apply")
        config, jobs, pairs = generate_tight(family, n_jobs, n_sites, seed)
        sources = "generalized-assignment recipes (placement/generate/tight.py)"
    else:
        base = load_config(base_config).portfolio if base_config is not None else None
        (config, jobs), pairs, sources = generate(family, n_jobs, n_sites, seed, base), None, SOURCES
    where = f"base={base_config}" if base_config is not None else f"n_sites={n_sites}"
    header = (f"# placement generate: family={family} seed={seed} n_jobs={n_jobs} {where}\n"
              f"# sources: {sources}\n")
    text = header + tomli_w.dumps(config)
    paths = [out_dir / "portfolio.toml", out_dir / "jobs.parquet"]
    atomic_write(paths[0], lambda tmp: tmp.write_text(text, encoding="utf-8"))
    atomic_write(paths[1], lambda tmp: pq.write_table(jobs, tmp))
    if pairs is not None:
        paths.append(out_dir / "pairs.parquet")
        atomic_write(paths[2], lambda tmp: pq.write_table(pairs, tmp))
    return tuple(paths)


def _categorical(weights: dict[int, float], n: int, rng: np.random.Generator) -> np.ndarray:
    values = np.fromiter(weights, np.int64)
    p = np.fromiter(weights.values(), float)
    return values[rng.choice(len(values), size=n, p=p / p.sum())]


def _gang_sizes(fam: Family, n: int, rng: np.random.Generator) -> np.ndarray:
    """Training GPUs per job: trace bucket mix, or frontier log-uniform 4K-32K in 512 steps."""
    if fam.trace is None:
        raw = np.exp(rng.uniform(math.log(4096), math.log(32768), n))
        return np.clip(np.rint(raw / 512) * 512, 4096, 32768).astype(np.int64)
    flat: dict[int, float] = {}
    for bucket_p, sizes in zip(fam.trace, _BUCKETS):
        for size, p in sizes.items():
            flat[size] = flat.get(size, 0.0) + bucket_p * p
    return _categorical(flat, n, rng)


def _strings(values: list[str], idx: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """A string column from a few distinct values and one small int per row (no per-row objects)."""
    indices = pa.array(np.asarray(idx, np.int32), mask=mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string())).cast(pa.string())


def _skeleton(fam: Family, n_sites: int, rng: np.random.Generator) -> _Supply:
    """Synthetic sites without sizes: region, PUE, prices, latency, types, tenants, fabric."""
    names = list(fam.regions)
    p = np.fromiter(fam.regions.values(), float)
    region = rng.choice(len(names), size=n_sites, p=p / p.sum())
    jitter = rng.uniform(-1.5, 1.5, (n_sites, 2))  # sites spread around the region centre
    lat = np.array([REGIONS[names[r]].lat for r in region]) + jitter[:, 0]
    lon = np.array([REGIONS[names[r]].lon for r in region]) + jitter[:, 1]
    demand = list(DEMAND_REGIONS)
    latency = np.stack([rtt_ms(lat, lon, d[0], d[1]) for d in DEMAND_REGIONS.values()], axis=1)
    weight = rng.lognormal(0.0, 0.8 if fam.types_per_site > 1 else 0.5, n_sites)
    tnames = list(fam.types)
    tp = np.fromiter(fam.types.values(), float)
    sites = []
    for i in range(n_sites):
        reg = REGIONS[names[region[i]]]
        k = int(rng.integers(1, fam.types_per_site + 1))
        types = sorted(rng.choice(tnames, size=k, replace=False, p=tp / tp.sum()).tolist())
        liquid = "GB200" in types
        lo, hi = (fam.pue[0], fam.pue[0] + 0.1) if liquid else fam.pue
        site: dict[str, Any] = {
            "id": f"{names[region[i]]}-{i + 1:04d}",
            "region": names[region[i]],
            "pue": round(float(rng.uniform(lo, hi)), 2),
            # Tariffs and PPAs vary within a state: +-8% around the state average.
            "price_usd_per_mwh": round(reg.price_usd_per_mwh * float(rng.uniform(0.92, 1.08)), 1),
            "carbon_kg_per_mwh": reg.carbon_kg_per_mwh,
            "latency_ms": {d: float(latency[i, j]) for j, d in enumerate(demand)},
            "cooling": ["air", "liquid"] if liquid else ["air"],
            "_types": types,
            "_mix": rng.dirichlet(np.full(k, 2.0)).tolist(),
        }
        fabric = int(rng.choice(fam.fabric))
        if fabric:
            site["max_gang_gpus"] = fabric
        sites.append(site)
    # About one site in ten is leased whole to an anchor tenant (like CoreWeave at Core Scientific, RP §1).
    # Never the largest site: it hosts the largest gang, which any tenant may own.
    if fam.n_tenants > 6 and n_sites >= 5:
        others = np.delete(np.arange(n_sites), np.argmax(weight))
        for i in rng.choice(others, size=max(1, n_sites // 10), replace=False):
            sites[int(i)]["tenants"] = ["anchor"]
    demand_p = np.array([d[2] for d in DEMAND_REGIONS.values()])
    near = latency.min(0) <= 60.0  # serve metros that some site is near
    demand_p = np.where(near, demand_p, 0.0) if near.any() else demand_p
    return _Supply(sites, weight / weight.sum(), latency, demand, demand_p / demand_p.sum(),
                   sorted({t for s in sites for t in s["_types"]}), sorted({s["region"] for s in sites}))


def _size_sites(fam: Family, supply: _Supply, demand_gpus: int, max_gang: int) -> None:
    """Size pools and grid MW from demand: inventory = demand / gpu_ratio, MW = power / overprov."""
    catalog = gpu_catalog()
    total = demand_gpus / fam.gpu_ratio
    sizes = np.maximum(fam.min_site_gpus, supply.share * total)
    biggest = int(np.argmax(supply.share))  # the site _skeleton kept free of tenant leases
    for i, site in enumerate(supply.sites):
        types, mix = site.pop("_types"), site.pop("_mix")
        pools = {t: max(8, math.ceil(sizes[i] * f / 8.0) * 8) for t, f in zip(types, mix)}
        if i == biggest:  # the largest gang fits at the largest site, on its fabric
            main = max(pools, key=pools.__getitem__)
            pools[main] = max(pools[main], math.ceil(max_gang / 8.0) * 8)
            site.pop("max_gang_gpus", None)
        it_mw = sum(n * catalog[t]["kw_per_gpu"] for t, n in pools.items()) / 1000.0
        site["grid_mw"] = math.ceil(it_mw * site["pue"] / fam.overprov * 100) / 100
        site["pools"] = pools
        # Keys in Site field order for readable TOML.
        ordered: dict[str, Any] = {k: site[k] for k in ("id", "region", "grid_mw", "pue", "pools", "price_usd_per_mwh",
                                        "carbon_kg_per_mwh", "max_gang_gpus", "cooling", "tenants",
                                        "latency_ms") if k in site}
        site.clear()
        site.update(ordered)


def _pool_power(base: Portfolio) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per online site: GPUs, facility kW of all its GPUs, usable grid MW."""
    gpus, kw, mw = [], [], []
    for s in base.sites:
        n = sum(p.gpus for p in s.pools.values()) if s.online else 0
        k = sum(p.gpus * (p.kw_per_gpu or base.gpu_types[t].kw_per_gpu) for t, p in s.pools.items())
        gpus.append(n)
        kw.append(k * s.pue if s.online else 0.0)
        mw.append(s.grid_mw - s.reserve_mw if s.online else 0.0)
    return np.array(gpus, float), np.array(kw), np.array(mw)


def _base_supply(base: Portfolio) -> _Supply:
    """Supply facts of a loaded portfolio: capacity shares, latency to its demand regions, gangs."""
    gpus, _, _ = _pool_power(base)
    if gpus.sum() == 0:
        raise ValueError(f"portfolio '{base.name}' has no online GPUs to generate demand for")
    demand = sorted({d for s in base.sites for d in s.latency_ms}) or sorted({s.region for s in base.sites})
    latency = np.array([[(lat if (lat := s.latency_to(d)) is not None and s.online else np.inf)
                         for d in demand] for s in base.sites])
    demand = [d for j, d in enumerate(demand) if np.isfinite(latency[:, j]).any()] or demand[:1]
    latency = latency[:, [j for j in range(latency.shape[1]) if np.isfinite(latency[:, j]).any()] or [0]]
    p = np.array([DEMAND_REGIONS.get(d, (0, 0, 0.1))[2] for d in demand])
    types = sorted({t for s in base.sites if s.online for t, p_ in s.pools.items() if p_.gpus > 0})
    sites = [{"tenants": s.tenants, "region": s.region} for s in base.sites]
    return _Supply(sites, gpus / gpus.sum(), latency, demand, p / p.sum(), types,
                   sorted({s.region for s in base.sites if s.online}))


def _scale_to(base: Portfolio, fam: Family, gpus: np.ndarray, gpr: np.ndarray, reps: np.ndarray,
              cap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale gang sizes and replica counts by one factor so demand meets the family's tightness.

    The binding ratio (GPUs or MW, whichever is tighter) aims at max(gpu_ratio, gpu_ratio x
    overprov). Multi-node gangs stay whole 8-GPU nodes, within the family's gang bounds and the
    largest gang the job's tenant can run (``cap``); a few passes correct rounding. Too many or too
    few jobs for the portfolio (always possible for frontier, whose sizes are kept) miss the target:
    that is logged with a job count that would meet it.
    """
    cap_gpus, cap_kw, cap_mw = _pool_power(base)
    kw_per_gpu = cap_kw.sum() / cap_gpus.sum()  # facility kW per GPU, capacity-weighted
    target = max(fam.gpu_ratio, fam.gpu_ratio * fam.overprov)
    raw_g, raw_r = gpus.astype(float), reps.astype(float)
    f, achieved = 1.0, 0.0
    # Frontier gangs are run sizes from named runs (RD §2), not a trace shape: never rescaled.
    for _ in range(5 if fam.trace is not None else 1):
        g = np.where(raw_g > 0, np.maximum(1.0, np.rint(raw_g * f)), 0.0)
        g = np.where(g > 8, np.ceil(g / 8) * 8, g)
        g = np.where(raw_g > 0, np.clip(g, *fam.gang_bounds), 0.0)
        g = np.minimum(g, cap).astype(np.int64)
        r = np.where(raw_r > 0, np.clip(np.rint(raw_r * f), 1, 8192), 0).astype(np.int64)
        d = float(g.sum() + (gpr * r).sum())
        achieved = max(d / cap_gpus.sum(), d * kw_per_gpu / 1000.0 / max(cap_mw.sum(), 1e-9))
        if abs(achieved / target - 1) < 0.02:
            break
        f *= target / achieved
    if abs(achieved / target - 1) > 0.25:
        log.warning("demand is %.2fx the capacity of '%s', not the %.2fx the family aims at: "
                    "try about %d jobs instead of %d", achieved, base.name, target,
                    max(1, round(len(gpus) * target / max(achieved, 1e-9))), len(gpus))
    return g, r


def _gang_caps(base: Portfolio, tenants: list[str], allowed: np.ndarray) -> np.ndarray:
    """Per tenant: the largest gang one online site it may use can hold (fabric and pool)."""
    hold = np.array([min(s.max_gang_gpus or 1 << 40, max((p.gpus for p in s.pools.values()), default=0))
                     if s.online else 0 for s in base.sites], np.int64)
    return np.where(allowed, hold[:, None], 0).max(axis=0, initial=0)


def _tenants(fam: Family, supply: _Supply, n: int, rng: np.random.Generator) -> tuple[list[str], np.ndarray]:
    """Generic tenants with Zipf-like shares, plus anchor tenants sized to the sites leased to them."""
    anchors: dict[str, float] = {}
    for site, share in zip(supply.sites, supply.share):
        for t in site.get("tenants") or []:
            anchors[t] = anchors.get(t, 0.0) + share / len(site["tenants"])
    generic = [f"t{k:02d}" for k in range(1, fam.n_tenants + 1) if f"t{k:02d}" not in anchors]
    zipf = 1.0 / np.arange(1, len(generic) + 1) ** 1.1
    rest = max(0.0, 1.0 - sum(anchors.values()))
    p = np.concatenate([zipf / zipf.sum() * rest, np.fromiter(anchors.values(), float)])
    return generic + list(anchors), rng.choice(len(p), size=n, p=p / p.sum())


def _residency_groups(supply: _Supply) -> list[list[str]]:
    """Data-residency choices: EU-only, US-only, and the three US states with most open capacity."""
    eu = [r for r in supply.regions if r.startswith("eu-")]
    us = [r for r in supply.regions if not r.startswith("eu-")]
    groups = [g for g in (eu, us) if g and len(g) < len(supply.regions)]
    open_share: dict[str, float] = {}
    for site, share in zip(supply.sites, supply.share):
        if not site.get("tenants") and site["region"] in us:  # leased sites would leave it nowhere
            open_share[site["region"]] = open_share.get(site["region"], 0.0) + float(share)
    states = sorted(open_share, key=lambda r: (-open_share[r], r))[:3]
    return groups + [[r] for r in states if open_share[r] > 0]


def _base_config(base: Portfolio) -> dict[str, Any]:
    """The base portfolio as a plain dict (catalog entries it does not change are left out)."""
    catalog = gpu_catalog()
    data = base.model_dump(exclude_none=True, exclude={"gpu_types"})
    changed = {k: v.model_dump() for k, v in base.gpu_types.items() if catalog.get(k) != v.model_dump()}
    if changed:
        data["gpu_types"] = changed
    return data
