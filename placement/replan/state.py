"""What a re-plan starts from: its options (move costs on top of ``SolveOptions``) and the current placement.

Shared by ``placement.replan.run`` (which solves) and ``placement.replan.changes`` (which
reports the per-job diff).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from placement.current_plan import PlanRows
from placement.io.columns import text_values
from placement.model.portfolio import Portfolio, SolveOptions

# --- options --------------------------------------------------------------------------------

_Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ReplanOptions(SolveOptions):
    """``SolveOptions`` (solver, limits, seed, backend, ``max_moves``, ``max_migration_usd``) plus move costs.

    - ``move_threshold_usd_per_hour``: added to every unit's amortised move cost, so a move must
      gain more than its migration cost plus this ($/h per gang or replica moved);
    - ``default_migration_cost_usd``: one-off cost of a move for running jobs whose
      ``migration_cost_usd`` is 0 (per replica for services); None: use
      ``default_migration_hours`` hours of the job's value instead (0 lets them move freely);
    - ``migration_cost_usd``: per-job one-off move cost by job id, overriding both;
    - ``improve``: improve the whole plan, moving running jobs wherever a move pays (its gain
      beats its migration cost plus the threshold), within ``max_moves`` / ``max_migration_usd``.
      False (the default): react only to what changed. A running job moves or stops only when an
      event displaces it or an arriving or displaced job of a higher tier needs its room; jobs
      that arrived, were displaced or are not running are placed in the room left. Re-planning
      an unchanged plan then moves and stops nothing.
    - ``polish``: with ``improve``, solver ``auto`` on instances too big to prove: improve the warm start by
      large-neighbourhood search (each step strictly better, strict tiers: a higher-tier gain may
      move or stop lower-tier jobs). False keeps the warm start (repair, fill, preemption): the
      fewest changes.
    """

    move_threshold_usd_per_hour: _Usd = 0.0
    default_migration_cost_usd: _Usd | None = None
    default_migration_hours: _Usd = 1.0
    migration_cost_usd: dict[str, _Usd] = Field(default_factory=dict)
    improve: bool = False
    polish: bool = True

    def solve_options(self, **update: Any) -> SolveOptions:
        """The plain ``SolveOptions`` part, with ``update`` applied."""
        data = {k: getattr(self, k) for k in SolveOptions.model_fields}
        return SolveOptions.model_validate({**data, **update})


def replan_options(portfolio: Portfolio, options: SolveOptions | None = None, **overrides: Any) -> ReplanOptions:
    """``ReplanOptions`` from the portfolio's ``[solve]`` defaults, ``options`` and keyword overrides."""
    base = (options or portfolio.solve).model_dump()
    return ReplanOptions.model_validate({**base, **{k: v for k, v in overrides.items() if v is not None}})


# --- the current placement ------------------------------------------------------------------


@dataclass
class CurrentState:
    """Where each job of the jobs table runs now (rows by job row index), and who came and went."""

    job: np.ndarray  # int64 row index in the jobs table
    site: np.ndarray  # int64
    gpu_type: np.ndarray  # int64
    units: np.ndarray  # int64
    arrived: np.ndarray  # bool per job: not listed in the plan (all False without a plan)
    departed: PlanRows  # plan rows (placed) of jobs gone from the table; ``listed``: every departed id
    before_mw: np.ndarray  # facility MW per site as the plan reports it (NaN: compute)


def current_state(portfolio: Portfolio, jobs: pa.Table, plan: PlanRows | None) -> CurrentState:
    """The current placement from the plan rows and the jobs' ``current_site`` / ``current_gpu_type``."""
    n = jobs.num_rows
    ids = np.asarray(jobs.column("id").to_numpy(zero_copy_only=False), object)
    site_ids = [s.id for s in portfolio.sites]
    types = list(portfolio.gpu_types)
    s_idx = {s: i for i, s in enumerate(site_ids)}
    t_idx = {t: i for i, t in enumerate(types)}
    listed = np.zeros(n, bool)
    rows_j, rows_s, rows_t, rows_u = [], [], [], []
    empty = PlanRows(np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                     np.zeros(0), set())
    departed = empty
    before_mw = np.full(len(site_ids), np.nan)
    if plan is not None:
        pos = {k: i for i, k in enumerate(ids.tolist())}
        listed = np.array([k in plan.listed for k in ids.tolist()], bool)
        j = np.array([pos.get(k, -1) for k in plan.job_id.tolist()], np.int64)
        known = j >= 0
        rows_j, rows_s, rows_t, rows_u = j[known], plan.site[known], plan.gpu_type[known], plan.units[known]
        gone = plan.listed - set(ids.tolist())
        departed = PlanRows(plan.job_id[~known], plan.site[~known], plan.gpu_type[~known], plan.units[~known],
                            plan.facility_mw[~known], gone)
        if len(plan.facility_mw) and not np.isnan(plan.facility_mw).any():
            before_mw = np.bincount(plan.site, weights=plan.facility_mw, minlength=len(site_ids))
    # Jobs the plan does not list: their own current_site / current_gpu_type, if any.
    cs = text_values(jobs, "current_site")
    ct = text_values(jobs, "current_gpu_type")
    inference = np.asarray(pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False), bool)
    reps = jobs.column("replicas").to_numpy()
    own = np.flatnonzero(~listed & np.array([s is not None for s in cs], bool) & np.array([t is not None for t in ct], bool))
    own_j = own.astype(np.int64)
    own_s = np.array([s_idx[cs[i]] for i in own], np.int64)
    own_t = np.array([t_idx[ct[i]] for i in own], np.int64)
    own_u = np.where(inference[own], reps[own], 1).astype(np.int64)
    has_pool = np.array([types[t] in portfolio.sites[s].pools for s, t in zip(own_s, own_t)], bool)
    job = np.concatenate([np.asarray(rows_j, np.int64), own_j[has_pool]])
    site = np.concatenate([np.asarray(rows_s, np.int64), own_s[has_pool]])
    gtype = np.concatenate([np.asarray(rows_t, np.int64), own_t[has_pool]])
    units = np.concatenate([np.asarray(rows_u, np.int64), own_u[has_pool]])
    # Merge duplicate (job, site, type) rows.
    T = max(len(types), 1)
    S = max(len(site_ids), 1)
    key, inv = np.unique((job * S + site) * T + gtype, return_inverse=True)
    units = np.bincount(inv.reshape(-1), weights=units, minlength=len(key)).astype(np.int64)
    job, rest = key // (S * T), key % (S * T)
    arrived = ~listed if plan is not None else np.zeros(n, bool)
    return CurrentState(job, rest // T, rest % T, units, arrived, departed, before_mw)


def current_table(portfolio: Portfolio, jobs: pa.Table, cur: CurrentState) -> pa.Table:
    """The current placement as plan rows (``job_id, status, site_id, gpu_type, replicas``): what
    the validator counts moves against."""
    ids = np.asarray(jobs.column("id").to_numpy(zero_copy_only=False), object)
    site_ids = np.array([s.id for s in portfolio.sites], object)
    types = np.array(list(portfolio.gpu_types), object)
    return pa.table({
        "job_id": pa.array(ids[cur.job].tolist(), pa.string()),
        "status": pa.array(["placed"] * len(cur.job), pa.string()),
        "site_id": pa.array(site_ids[cur.site].tolist() if len(cur.job) else [], pa.string()),
        "gpu_type": pa.array(types[cur.gpu_type].tolist() if len(cur.job) else [], pa.string()),
        "replicas": pa.array(cur.units, pa.int64()),
    })


__all__ = ["CurrentState", "ReplanOptions", "current_state", "current_table", "replan_options"]
