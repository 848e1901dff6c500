"""Plans: a solver's ``Solution`` turned into a readable table and a summary.

The plan table has one row per (job, site, GPU type) used by a placed job and one row per
unplaced job (with a reason code and a sentence); the validator reads it back from any of the
formats ``write`` produces. The summary carries the objective breakdown ($/h), bound, gap,
per-site use and the solver's shadow prices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from placement.core.problem import Filter, Problem
from placement.core.solution import TERMS, Reason, Solution, solution_terms
from placement.io.tables import write_json, write_table
from placement.summary import Summary

REASON_TEXT = {
    Reason.NO_ELIGIBLE_SITE: "no eligible site",
    Reason.GPUS: "not enough GPUs at any eligible site, even with nothing else placed",
    Reason.POWER: "not enough power at any eligible site, even with nothing else placed",
    Reason.OUT_VALUED: "fits alone, but the capacity went to higher-tier or higher-value jobs",
    Reason.TIME_LIMIT: "the time limit ran out before the solver could place it",
    Reason.NOT_PROFITABLE: "its value is below the energy, carbon, pair and migration cost of every eligible site",
    Reason.MIGRATION_BUDGET: "placing it would exceed the migration budget",
    Reason.SPREAD: "cannot be spread over min_sites sites within max_share_per_site",
}

FILTER_TEXT = {
    Filter.OFFLINE: "every site is offline",
    Filter.TENANT: "no online site admits its tenant",
    Filter.REGION: "no site in its allowed regions",
    Filter.GPU_TYPE: "no site in reach has an accepted GPU type",
    Filter.COOLING: "no site in reach can cool an accepted GPU type",
    Filter.LATENCY: "no site meets its latency limit from the demand region",
    Filter.GANG_SIZE: "the gang is larger than every eligible site's network fabric (max_gang_gpus)",
    Filter.INVENTORY: "the gang or replica is larger than every eligible pool",
    Filter.FORBIDDEN: "every eligible site is forbidden by pair overrides",
    Filter.PINNED: "it is pinned to a site and type where it is not eligible",
}


def package_version() -> str:
    """The installed package's version ("0+unknown" when run from a tree that is not installed)."""
    try:
        return version("placement")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass
class Plan:
    """A validated plan: ``table`` (rows), ``summary`` (a ``Summary``) and the raw ``solution``."""

    table: pa.Table
    summary: Summary
    solution: Solution

    @property
    def objective(self) -> float:
        """Net $/h of the plan."""
        return self.summary.objective

    def write(self, path: str | Path) -> None:
        """Write the plan table by extension (.parquet, .csv, .json, .arrow), atomically."""
        write_table(self.table, path)

    def write_summary(self, path: str | Path) -> None:
        """Write the summary JSON atomically."""
        write_json(self.summary.to_dict(), path)


def build_plan(problem: Problem, solution: Solution, *, seconds: float, seed: int,
               input_sha256: str = "") -> Plan:
    """Turn a Solution into the plan table and summary (not validated here: see ``placement.api``)."""
    P, S = problem, solution
    t = solution_terms(P, S)
    net = t["net"]
    j = S.row_job
    unplaced = np.flatnonzero(S.reason != Reason.PLACED)
    placed_cols = {
        "job": j, "site": P.pool_site[S.row_pool], "type": P.pool_type[S.row_pool],
        "replicas": S.row_units, "gpus": S.row_units * P.job_gpus_unit[j],
    }
    n_rows = len(j) + len(unplaced)
    job_idx = np.concatenate([j, unplaced])
    site_ids = np.array(P.site_ids, dtype=object)
    type_names = np.array(P.type_names, dtype=object)

    def cat(placed: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        return np.concatenate([placed.astype(dtype), np.full(len(unplaced), fill, dtype=dtype)])

    reasons = [Reason(int(r)) for r in S.reason[unplaced]]
    table = pa.table({
        "job_id": P.job_ids[job_idx],
        "kind": np.where(P.job_kind[job_idx] == 1, "inference", "training"),
        "tenant": np.array(P.tenant_names, dtype=object)[P.job_tenant[job_idx]],
        "priority": P.job_priority[job_idx],
        "status": np.array(["placed"] * len(j) + ["unplaced"] * len(unplaced)),
        "site_id": pa.array(list(site_ids[placed_cols["site"]]) + [None] * len(unplaced), pa.string()),
        "gpu_type": pa.array(list(type_names[placed_cols["type"]]) + [None] * len(unplaced), pa.string()),
        "replicas": cat(placed_cols["replicas"], 0, np.int64),
        "gpus": cat(placed_cols["gpus"], 0, np.int64),
        "it_mw": cat(t["it_mw"], 0.0, np.float64),
        "facility_mw": cat(t["mw"], 0.0, np.float64),
        **{f"{k}_usd_per_hour": cat(t[k], 0.0, np.float64) for k in TERMS},
        "net_usd_per_hour": cat(net, 0.0, np.float64),
        "moved": cat(t["moved"], False, bool),
        "reason": [""] * len(j) + [r.name.lower() for r in reasons],
        "reason_detail": [""] * len(j) + [_detail(P, int(x), r) for x, r in zip(unplaced, reasons)],
    })
    assert table.num_rows == n_rows
    summary = _summary(P, S, t, net, seconds=seconds, seed=seed, input_sha256=input_sha256)
    return Plan(table, summary, S)


def _detail(P: Problem, j: int, reason: Reason) -> str:
    if reason is Reason.NO_ELIGIBLE_SITE and P.job_filter[j] != Filter.OK:
        return f"no eligible site: {FILTER_TEXT[Filter(int(P.job_filter[j]))]}"
    return REASON_TEXT[reason]


def _summary(P: Problem, S: Solution, t: dict[str, np.ndarray], net: np.ndarray, *,
             seconds: float, seed: int, input_sha256: str) -> Summary:
    objective = float(net.sum())
    bound = float(S.bound)
    gap = None
    if math.isfinite(bound):
        gap = max(0.0, (bound - objective) / max(abs(bound), 1e-9))
    placed = S.reason == Reason.PLACED
    site_mw = np.bincount(P.pool_site[S.row_pool], weights=t["mw"], minlength=P.n_sites)
    pool_used = np.bincount(S.row_pool, weights=S.row_units * P.job_gpus_unit[S.row_job],
                            minlength=P.n_pools).astype(np.int64)
    tiers = np.unique(P.job_priority)
    by_tier = {}
    row_priority = P.job_priority[S.row_job]
    row_gpus = S.row_units * P.job_gpus_unit[S.row_job]
    for prio in tiers[::-1]:
        in_tier = P.job_priority == prio
        by_tier[str(int(prio))] = {
            "jobs": int(in_tier.sum()),
            "placed": int((in_tier & placed).sum()),
            "gpus_placed": int(row_gpus[row_priority == prio].sum()),
            "objective": float(net[row_priority == prio].sum()),
        }
    reasons = {Reason(int(r)).name.lower(): int(c) for r, c in zip(*np.unique(S.reason[~placed], return_counts=True))}
    sites = []
    for s in range(P.n_sites):
        pools = np.flatnonzero(P.pool_site == s)
        sites.append({
            "site_id": P.site_ids[s],
            "mw_used": float(site_mw[s]),
            "mw_cap": float(P.site_cap_mw[s]),
            "gpus": {P.type_names[P.pool_type[p]]: [int(pool_used[p]), int(P.pool_gpus[p])] for p in pools},
        })
    fields: dict[str, Any] = {
        "objective": objective,
        "bound": bound if math.isfinite(bound) else None,
        "gap": gap,
        "objective_breakdown": {f"{k}_usd_per_hour": float(t[k].sum()) for k in TERMS},
        "objective_by_tier": by_tier,
        "jobs_total": int(P.n_jobs),
        "jobs_placed": int(placed.sum()),
        "jobs_unplaced": int((~placed).sum()),
        "unplaced_by_reason": reasons,
        "gpus_placed": int(pool_used.sum()),
        "mw_used": float(site_mw.sum()),
        "moves": int(len(np.unique(S.row_job[t["moved"]]))),
        "sites": sites,
        "solver": S.solver,
        "status": S.status,
        "backend": S.backend,
        "seconds": float(seconds),
        "seed": int(seed),
        "input_sha256": input_sha256,
        "version": package_version(),
        "stats": S.stats,
    }
    if S.site_price_usd_per_mwh is not None:
        fields["shadow_price_usd_per_mwh"] = dict(zip(P.site_ids, map(float, S.site_price_usd_per_mwh)))
    if S.pool_price_usd_per_gpu_hour is not None:
        fields["shadow_price_usd_per_gpu_hour"] = {
            f"{P.site_ids[P.pool_site[p]]}/{P.type_names[P.pool_type[p]]}": float(S.pool_price_usd_per_gpu_hour[p])
            for p in range(P.n_pools)
        }
    return Summary.model_validate(fields)

