"""The period axis of a compiled problem: per-period capacities and figures, and job start windows.

With a ``[horizon]`` of T periods, every capacity and site figure gains a leading period axis
(``cap_mw[t, s]``, ``pool_gpus[t, p]``, ...), schedules resolved: a key's figure holds from its
period until the next key, and a site is powered from ``online_from`` on. A job runs ``duration``
consecutive periods from one start in ``[first_start, last_start]`` (the last start that finishes
inside the horizon), on one placement for its whole term.

The objective is an *average discounted $/h over the horizon*: period t's net $/h counts with
``weight[t] = hours[t] × discount[t] / Σ hours``. A one-period horizon has weight 1, so its
objective is today's $/h and a one-period problem is the special case T = 1 of the same arrays.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from placement.model.horizon import Horizon
from placement.model.portfolio import Pool, Portfolio, Site

log = logging.getLogger("placement")


@dataclass(frozen=True, eq=False)
class Timeline:
    """Per-period arrays ``[T, sites]`` / ``[T, pools]`` and per-job windows (period indices)."""

    names: list[str]  # [] without a horizon
    hours: np.ndarray  # float64 [T]
    weight: np.ndarray  # float64 [T]: hours × discount / total hours
    online: np.ndarray  # bool [T, S]
    cap_mw: np.ndarray  # float64 [T, S], facility MW (grid − reserve; 0 while offline)
    energy_usd_per_mwh: np.ndarray  # float64 [T, S]
    carbon_usd_per_mwh: np.ndarray  # float64 [T, S]
    pool_gpus: np.ndarray  # int64 [T, P]
    pool_kw_per_gpu: np.ndarray  # float64 [T, P]
    job_first_start: np.ndarray  # int64 [J]
    job_last_start: np.ndarray  # int64 [J], < first_start: no start fits the horizon
    job_duration: np.ndarray  # int64 [J]

    @property
    def n_periods(self) -> int:
        return len(self.hours)

    @property
    def total_hours(self) -> float:
        return float(self.hours.sum())


def site_at(site: Site, horizon: Horizon | None, t: int) -> dict[str, float | bool]:
    """A site's effective grid and reserve MW, prices and power state in period ``t``."""
    out: dict[str, float | bool] = {"grid_mw": site.grid_mw, "reserve_mw": site.reserve_mw,
                                    "price_usd_per_mwh": site.price_usd_per_mwh,
                                    "carbon_kg_per_mwh": site.carbon_kg_per_mwh, "online": site.online}
    if horizon is None:
        return out
    for key, step in site.schedule.items():
        if horizon.index(key) <= t:
            out.update({k: v for k, v in step.model_dump().items() if v is not None})
    if site.online_from is not None:
        powered = not horizon.after_end(site.online_from) and horizon.index(site.online_from) <= t
        out["online"] = bool(site.online and powered)
    return out


def pool_at(pool: Pool, horizon: Horizon | None, t: int) -> tuple[int, float | None]:
    """A pool's GPUs and kW-per-GPU override (None: the catalog's) in period ``t``."""
    gpus, kw = pool.gpus, pool.kw_per_gpu
    if horizon is not None:
        for key, step in pool.schedule.items():
            if horizon.index(key) <= t:
                gpus = step.gpus if step.gpus is not None else gpus
                kw = step.kw_per_gpu if step.kw_per_gpu is not None else kw
    return gpus, kw


def compile_timeline(portfolio: Portfolio, jobs: pa.Table, pool_site: np.ndarray, pool_type: np.ndarray,
                     type_names: list[str]) -> Timeline:
    """Resolve schedules and job windows into arrays (pools given by site and type index)."""
    horizon = portfolio.horizon
    T = len(horizon.names) if horizon else 1
    hours = np.array(horizon.period_hours() if horizon else [1.0])
    discount = np.array(horizon.discount() if horizon else [1.0])
    carbon_price = portfolio.objective.carbon_usd_per_tonne
    for s in portfolio.sites:
        if horizon and s.online_from is not None and horizon.after_end(s.online_from):
            log.warning("site %s: online_from %s is after the horizon's end: it never comes online",
                        s.id, s.online_from)
    figures = [[site_at(s, horizon, t) for s in portfolio.sites] for t in range(T)]
    online = np.array([[f["online"] for f in row] for row in figures], bool).reshape(T, -1)
    cap = np.array([[f["grid_mw"] - f["reserve_mw"] for f in row] for row in figures], np.float64).reshape(T, -1)
    gpus = np.zeros((T, len(pool_site)), np.int64)
    kw = np.zeros((T, len(pool_site)), np.float64)
    for p, (s, ty) in enumerate(zip(pool_site.tolist(), pool_type.tolist())):
        name = type_names[ty]
        for t in range(T):
            g, k = pool_at(portfolio.sites[s].pools[name], horizon, t)
            gpus[t, p], kw[t, p] = g, k or portfolio.gpu_types[name].kw_per_gpu
    return Timeline(
        names=list(horizon.names) if horizon else [],
        hours=hours,
        weight=hours * discount / hours.sum(),
        online=online,
        cap_mw=np.where(online, cap, 0.0),
        energy_usd_per_mwh=np.array([[f["price_usd_per_mwh"] for f in r] for r in figures], np.float64).reshape(T, -1),
        carbon_usd_per_mwh=np.array([[f["carbon_kg_per_mwh"] * carbon_price / 1000.0 for f in r] for r in figures],
                                    np.float64).reshape(T, -1),
        pool_gpus=gpus,
        pool_kw_per_gpu=kw,
        **_windows(jobs, horizon),
    )


def _windows(jobs: pa.Table, horizon: Horizon | None) -> dict[str, np.ndarray]:
    """Per job: first and last start and duration; a running job's start is held where it is."""
    n = jobs.num_rows
    if horizon is None:
        return {"job_first_start": np.zeros(n, np.int64), "job_last_start": np.zeros(n, np.int64),
                "job_duration": np.ones(n, np.int64)}
    index = {name: i for i, name in enumerate(horizon.names)}
    T = len(index)

    def at(column: str, missing: int) -> np.ndarray:
        values = jobs.column(column).to_pylist()
        return np.array([missing if v is None else index[v] for v in values], np.int64)

    first = at("earliest_period", 0)
    held = at("start_period", -1)
    dur = np.array([T - f if d is None else d for d, f in zip(jobs.column("duration_periods").to_pylist(),
                                                            np.where(held >= 0, held, first))], np.int64)
    last = np.minimum(at("latest_start_period", T - 1), T - dur)
    first = np.where(held >= 0, held, first)
    last = np.where(held >= 0, np.where(held <= T - dur, held, -1), last)
    return {"job_first_start": first, "job_last_start": last, "job_duration": dur}
