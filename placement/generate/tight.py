"""The ``tight`` families: hard generalized-assignment instances in the placement model's units.

The published recipes of the hard generalized-assignment types (Martello and Toth's types D and
E, the classic benchmark of tight-capacity assignment), with m agents and n jobs, job j on
agent i using r[i, j] of the agent's capacity b[i] at cost c[i, j]:

- type D (``tight-d``): r ~ U{1..100}, c = 111 − r + U{−10..10};
- type E (``tight-e``): r = ⌊1 − 10 ln U⌋, c = ⌊1000 / r − 10 U'⌋;
- both: b[i] = ⌊0.8 · Σ_j r[i, j] / m⌋.

Mapping: one site per agent with ``grid_mw`` = b[i] / 100, PUE 1, no energy or carbon price,
one H100 pool with a GPU per job (never binding); every job a required 1-GPU training job of
equal value; the pairs table carries each (job, site) its ``power_mw`` = r[i, j] / 100 and
``extra_cost_usd_per_hour`` = c[i, j]. Maximising the placement objective (n · value − Σ cost)
is then exactly the assignment problem's cost minimisation, and integer resources survive the
model's rounding to integer watts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from placement.model.jobs import job_schema

TIGHT_FAMILIES = ("tight-d", "tight-e")
VALUE_USD_PER_HOUR = 10_000.0  # above every cost, so placing a job always pays
CAPACITY_RATIO = 0.8


def gap_data(kind: str, n_sites: int, n_jobs: int, seed: int,
             capacity_ratio: float = CAPACITY_RATIO) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(r, c, b) for type ``'D'`` or ``'E'``: r and c of shape (sites, jobs), b per site; int64.

    ``capacity_ratio`` below the recipes' 0.8 makes instances tighter (infeasible well below it).
    """
    rng = np.random.default_rng([seed, n_sites, n_jobs, ord(kind)])
    if kind == "D":
        r = rng.integers(1, 101, size=(n_sites, n_jobs))
        c = 111 - r + rng.integers(-10, 11, size=(n_sites, n_jobs))
    elif kind == "E":
        u = 1.0 - rng.random((n_sites, n_jobs))  # (0, 1]: ln stays finite
        r = np.floor(1 - 10 * np.log(u)).astype(np.int64)
        c = np.floor(1000.0 / r - 10 * rng.random((n_sites, n_jobs))).astype(np.int64)
    else:
        raise ValueError(f"unknown generalized-assignment type '{kind}': expected D or E")
    b = np.floor(capacity_ratio * r.sum(axis=1) / n_sites).astype(np.int64)
    return r.astype(np.int64), c.astype(np.int64), b


def generate_tight(family: str, n_jobs: int, n_sites: int, seed: int,
                   capacity_ratio: float = CAPACITY_RATIO) -> tuple[dict[str, Any], pa.Table, pa.Table]:
    """``(portfolio config dict, jobs table, pairs table)`` for ``tight-d`` or ``tight-e``."""
    if family not in TIGHT_FAMILIES:
        raise ValueError(f"unknown tight family '{family}': expected one of {', '.join(TIGHT_FAMILIES)}")
    kind = family[-1].upper()
    r, c, b = gap_data(kind, n_sites, n_jobs, seed, capacity_ratio)
    sites = [{"id": f"agent-{i:03d}", "region": "gap", "grid_mw": float(b[i]) / 100, "reserve_mw": 0.0,
              "pue": 1.0, "price_usd_per_mwh": 0.0, "carbon_kg_per_mwh": 0.0, "pools": {"H100": n_jobs}}
             for i in range(n_sites)]
    config = {"name": f"{family}-{n_jobs}x{n_sites}-seed{seed}",
              "description": f"Generalized-assignment type {kind}: {n_sites} sites x {n_jobs} required 1-GPU "
                             f"jobs, capacity {capacity_ratio} x sum of resource / sites, seed {seed}",
              "sites": sites}
    width = max(6, len(str(n_jobs)))
    ids = [f"job-{j + 1:0{width}d}" for j in range(n_jobs)]
    schema = job_schema()
    cols = {"id": pa.array(ids), "kind": pa.array(["training"] * n_jobs), "priority": pa.array(np.zeros(n_jobs, np.int64)),
            "value_usd_per_hour": pa.array(np.full(n_jobs, VALUE_USD_PER_HOUR)),
            "required": pa.array(np.ones(n_jobs, bool)), "gpus": pa.array(np.ones(n_jobs, np.int64)),
            "gpu_types": pa.array(["H100"] * n_jobs)}
    jobs = pa.table({f.name: cols[f.name] if f.name in cols else pa.nulls(n_jobs, f.type) for f in schema},
                    schema=schema)
    jj, ii = (a.ravel() for a in np.meshgrid(np.arange(n_jobs), np.arange(n_sites), indexing="ij"))
    pairs = pa.table({"job_id": pa.array(np.asarray(ids, object)[jj]),
                      "site_id": pa.array(np.asarray([s["id"] for s in sites], object)[ii]),
                      "gpu_type": pa.array(["H100"] * len(jj)),
                      "extra_cost_usd_per_hour": pa.array(c[ii, jj].astype(np.float64)),
                      "power_mw": pa.array(r[ii, jj] / 100.0)})
    return config, jobs, pairs
