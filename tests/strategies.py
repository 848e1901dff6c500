"""Random small portfolios for property tests: a seeded builder and hypothesis strategies.

Instances are small (≤ 5 sites, ≤ 14 jobs) and tight (power and GPUs bind) so that exact
solvers prove optimality in well under a second and every constraint is exercised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from hypothesis import strategies as st

from placement.io.config import portfolio_from_dict
from placement.model.jobs import jobs_table, validate_pairs
from placement.model.portfolio import Portfolio

TYPES = ["H100", "A100", "B200", "GB200"]
REGIONS = ["us-tx", "us-ok", "eu-fi"]
TENANTS = ["acme", "globex"]


@dataclass(frozen=True)
class Instance:
    portfolio: Portfolio
    jobs: pa.Table
    pairs: pa.Table | None


def random_instance(seed: int, n_sites: int = 3, n_jobs: int = 8, *, with_current: bool = True,
                    with_pairs: bool = True, with_required: bool = False) -> Instance:
    """A random, tight instance; every knob of the model appears with some probability."""
    rng = np.random.default_rng(seed)
    sites = []
    for s in range(n_sites):
        pools = {}
        for t in rng.choice(TYPES, size=rng.integers(1, 3), replace=False):
            pools[str(t)] = int(rng.choice([8, 16, 32, 64]))
        site = {
            "id": f"s{s}",
            "region": str(rng.choice(REGIONS)),
            "grid_mw": float(np.round(rng.uniform(0.02, 0.12), 4)),
            "pue": float(np.round(rng.uniform(1.05, 1.5), 2)),
            "pools": pools,
            "price_usd_per_mwh": float(np.round(rng.uniform(20, 90), 1)),
            "carbon_kg_per_mwh": float(np.round(rng.uniform(0, 500), 0)),
            "latency_ms": {r: float(rng.integers(1, 80)) for r in REGIONS if rng.random() < 0.7},
        }
        if rng.random() < 0.3:
            site["max_gang_gpus"] = int(rng.choice([8, 16, 32]))
        if rng.random() < 0.2:
            site["cooling"] = ["air"]
        if rng.random() < 0.2:
            site["tenants"] = [str(rng.choice(TENANTS))]
        if rng.random() < 0.1:
            site["online"] = False
        if rng.random() < 0.2:
            site["reserve_mw"] = 0.005
        sites.append(site)
    portfolio = portfolio_from_dict(
        {"name": f"random-{seed}", "sites": sites,
         "objective": {"carbon_usd_per_tonne": float(rng.choice([0.0, 50.0]))}},
        f"random-{seed}",
    )
    jobs = []
    for i in range(n_jobs):
        job: dict = {
            "id": f"j{i}",
            "tenant": str(rng.choice(TENANTS)),
            "priority": int(rng.choice([0, 0, 1, 2])),
            "value_usd_per_hour": float(np.round(rng.uniform(1, 120), 2)),
        }
        if rng.random() < 0.35:
            reps = int(rng.integers(1, 6))
            job.update(kind="inference", gpus_per_replica=int(rng.choice([1, 2, 4, 8])), replicas=reps)
            job["min_sites"] = int(rng.integers(1, min(reps, 3) + 1))
            if rng.random() < 0.4 and reps >= 2:
                job["max_share_per_site"] = float(rng.choice([0.5, 0.75]))
            if rng.random() < 0.5:
                job["demand_region"] = str(rng.choice(REGIONS))
                job["max_latency_ms"] = float(rng.integers(10, 90))
        else:
            job.update(kind="training", gpus=int(rng.choice([1, 2, 4, 8, 16, 32])))
        if rng.random() < 0.4:
            chosen = rng.choice(TYPES, size=rng.integers(1, 3), replace=False)
            job["gpu_types"] = ",".join(
                f"{t}:{rng.uniform(0.5, 2.5):.2f}" if rng.random() < 0.3 else str(t) for t in chosen)
        if rng.random() < 0.2:
            job["regions"] = ",".join(rng.choice(REGIONS, size=2, replace=False))
        if rng.random() < 0.15:
            job["kw_per_gpu"] = float(np.round(rng.uniform(0.6, 1.9), 2))
        if with_required and rng.random() < 0.15:
            job["required"] = True
        if with_current and rng.random() < 0.25:
            site = sites[int(rng.integers(n_sites))]
            job["current_site"] = site["id"]
            job["current_gpu_type"] = str(rng.choice(list(site["pools"])))
            job["migration_cost_usd"] = float(np.round(rng.uniform(0, 500), 0))
            job["pinned"] = bool(rng.random() < 0.3)
        jobs.append(job)
    table = jobs_table(jobs, portfolio, source=f"random-{seed}")
    pairs = None
    if with_pairs and rng.random() < 0.5:
        rows = []
        for _ in range(int(rng.integers(1, 5))):
            s = int(rng.integers(n_sites))
            row = {"job_id": f"j{int(rng.integers(n_jobs))}", "site_id": f"s{s}"}
            if rng.random() < 0.4:  # a row for one pool of the site, which wins over a site-wide row
                row["gpu_type"] = str(rng.choice(list(sites[s]["pools"])))
            r = rng.random()
            if r < 0.3:
                row["forbidden"] = True
            elif r < 0.6:
                row["extra_cost_usd_per_hour"] = float(np.round(rng.uniform(-5, 20), 2))
            else:
                row["power_mw"] = float(np.round(rng.uniform(0.001, 0.03), 4))
            key = (row["job_id"], row["site_id"], row.get("gpu_type"))
            if key not in {(r["job_id"], r["site_id"], r.get("gpu_type")) for r in rows}:  # one row per pair
                rows.append(row)
        keys = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist keeps only the first row's keys
        pairs = validate_pairs(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), portfolio,
                               table, "pairs")
    return Instance(portfolio, table, pairs)


@st.composite
def instances(draw, max_sites: int = 4, max_jobs: int = 12, **kw) -> Instance:
    """Hypothesis strategy over ``random_instance``."""
    seed = draw(st.integers(0, 2**31 - 1))
    n_sites = draw(st.integers(1, max_sites))
    n_jobs = draw(st.integers(1, max_jobs))
    return random_instance(seed, n_sites, n_jobs, **kw)


def tier_temptation() -> tuple[Portfolio, pa.Table]:
    """One site with power for 8 GPUs: a cheap high-tier gang of 8 against two dense low-tier
    gangs of 4 that would pay more together. Strict tiers place the high one."""
    portfolio = portfolio_from_dict({"sites": [{"id": "a", "region": "r", "grid_mw": 0.012, "pue": 1.0,
                                                "pools": {"H100": 16}}]}, "t")
    jobs = jobs_table([
        {"id": "high", "gpus": 8, "value_usd_per_hour": 5.0, "priority": 2},
        {"id": "low1", "gpus": 4, "value_usd_per_hour": 40.0},
        {"id": "low2", "gpus": 4, "value_usd_per_hour": 40.0},
    ], portfolio)
    return portfolio, jobs
