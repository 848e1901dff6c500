"""The objective formula, in one place: per-candidate terms and net value ($/h per unit).

For one unit of job j on pool p at site s (a training gang, or one inference replica):

    it_mw     = pair_it_mw (if measured) else gpus_unit × (job kW override, else pool kW) / 1000
    mw        = it_mw × pue[s]                                           (facility MW)
    value     = value_unit × speed
    energy    = mw × energy_usd_per_mwh[s]        carbon = mw × carbon_usd_per_mwh[s]
    pair      = the pair override's extra $/h (0 without one)
    migration = migration_usd_per_hour if the job runs somewhere now but has no units on p, else 0
    net       = value − energy − carbon − pair − migration
    reduced   = net − λ[s] × mw − μ[p] × gpus_unit                     (under dual prices λ, μ)

The formula comes in two forms that subtract in the same order, so they agree bit for bit:

- vectorised NumPy over arrays of candidates (``unit_terms``, ``net_value``, ``reduced_score``),
  used by the reference kernels, the solvers and ``Solution``;
- scalar plain-Python functions (``unit_mw_scalar``, ``unit_score_scalar``) that the compiled
  backends compile: ``numba.njit`` on the CPU, CUDA device functions on the GPU. Every product in
  them goes through ``mul``, a global name each backend rebinds to its own compiled product when
  it compiles these functions. On the GPU that is ``dmul_rn``: NVVM would otherwise contract
  ``a * b - c`` into a fused multiply-add, whose single rounding changes the last bit of a score
  and could flip near-ties between backends.

A plan charges each (job, pool) row for the units beyond those the job runs there now
(``migration_units``): a service on three sites that stays is charged nothing, and one that
shifts a replica between its sites pays for that replica. A single unit's term above is the
marginal cost of its first unit on p, so a solver's objective never charges more than the
plan's and its bound stays valid.

This module imports neither Numba nor the kernels, so importing ``placement.core`` stays cheap.
Numba validates a cached function against the contents of its own source file only, so after an
edit to the scalar functions here the CPU kernels cached for ``kernels/cpu.py`` (which inline
them) still hold the old math: delete that cache (``kernels/__pycache__/cpu.*.nbi`` and
``.nbc``); touching the file is not enough.
"""

from __future__ import annotations

import math

import numpy as np

from placement.core.problem import Problem

# The objective's terms ($/h), in the order ``net_value`` subtracts the costs.
TERMS = ("value", "energy", "carbon", "pair", "migration")

# --- vectorised form ------------------------------------------------------------------------------


def _csr_lookup(ptr: np.ndarray, pools: np.ndarray, n_pools: int, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index of each (j, p) in a per-job CSR over ascending pools, or -1 where absent."""
    if pools.size == 0:
        return np.full(len(j), -1, np.int64)
    row_job = np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))
    keys = row_job * n_pools + pools
    want = np.asarray(j, np.int64) * n_pools + p
    pos = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[pos] == want, pos, -1)


def pair_entry(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Index into the pair arrays for each (j, p), or -1 where there is no override."""
    return _csr_lookup(P.pair_ptr, P.pair_pool, P.n_pools, j, p)


def current_units_at(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Units job ``j`` runs on pool ``p`` now (0 where none)."""
    e = _csr_lookup(P.current_ptr, P.current_pool, P.n_pools, j, p)
    return np.where(e >= 0, P.current_units[np.maximum(e, 0)], 0) if P.current_pool.size else np.zeros(len(j), np.int64)


def unit_moves(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Whether one unit of job ``j`` on pool ``p`` is a move: it runs somewhere now, not on ``p``."""
    return (P.job_current_pool[j] >= 0) & (current_units_at(P, j, p) == 0)


def migration_units(P: Problem, j: np.ndarray, p: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Units of row (j, p, units) charged migration: those beyond the job's current units on ``p``."""
    extra = np.maximum(np.asarray(units, np.int64) - current_units_at(P, j, p), 0)
    return np.where(P.job_current_pool[j] >= 0, extra, 0)


def candidate_speed(P: Problem, j: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Speed of job ``j`` on pool ``p`` from its class list (NaN where ``p`` is not in it)."""
    cls = P.job_class[j]
    class_of = np.repeat(np.arange(len(P.class_ptr) - 1), np.diff(P.class_ptr))
    keys = class_of * P.n_pools + P.class_pool  # sorted: classes in order, pools ascending
    want = cls * P.n_pools + p
    pos = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
    if len(keys) == 0:
        return np.full(len(j), np.nan)
    return np.where(keys[pos] == want, P.class_speed[pos], np.nan)


def unit_terms(P: Problem, j: np.ndarray, p: np.ndarray, speed: np.ndarray) -> dict[str, np.ndarray]:
    """Per-unit objective terms ($/h), power (``it_mw``, facility ``mw``) and the pair's
    ``forbidden`` flag of candidates (j, p) at ``speed``."""
    s = P.pool_site[p]
    e = pair_entry(P, j, p)
    has = e >= 0
    kw = np.where(P.job_kw_per_gpu[j] > 0, P.job_kw_per_gpu[j], P.pool_kw_per_gpu[p])
    it_mw = P.job_gpus_unit[j] * kw / 1000.0
    measured = np.where(has, P.pair_it_mw[np.maximum(e, 0)], np.nan) if P.pair_it_mw.size else np.full(len(j), np.nan)
    it_mw = np.where(np.isnan(measured), it_mw, measured)
    mw = it_mw * P.site_pue[s]
    moved = unit_moves(P, j, p)
    extra = np.where(has, P.pair_extra_usd_per_hour[np.maximum(e, 0)], 0.0) if P.pair_pool.size else np.zeros(len(j))
    forbidden = np.where(has, P.pair_forbidden[np.maximum(e, 0)], False) if P.pair_pool.size else np.zeros(len(j), bool)
    return {
        "value": P.job_value_unit[j] * speed,
        "energy": mw * P.site_energy_usd_per_mwh[s],
        "carbon": mw * P.site_carbon_usd_per_mwh[s],
        "pair": extra,
        "migration": np.where(moved, P.job_migration_usd_per_hour[j], 0.0),
        "it_mw": it_mw,
        "mw": mw,
        "forbidden": forbidden,
    }


def net_before_migration(t: dict[str, np.ndarray]) -> np.ndarray:
    """value − energy − carbon − pair of terms ``t`` (``unit_terms``, or terms scaled by units)."""
    return t["value"] - t["energy"] - t["carbon"] - t["pair"]


def net_value(t: dict[str, np.ndarray]) -> np.ndarray:
    """Net $/h of terms ``t``: value − energy − carbon − pair − migration."""
    return net_before_migration(t) - t["migration"]


def reduced_score(t: dict[str, np.ndarray], site_price: np.ndarray, pool_price: np.ndarray,
                  gpus: np.ndarray) -> np.ndarray:
    """Net $/h of unit terms ``t`` less the priced resources: λ[site] × MW and μ[pool] × GPUs
    (``site_price``/``pool_price`` already taken at each candidate's site and pool)."""
    return net_value(t) - t["mw"] * site_price - pool_price * gpus


# --- scalar form, for the compiled backends ---------------------------------------------------------


def mul(a, b):
    """``a × b`` rounded on its own; each compiled backend binds this name to its own product."""
    return a * b


def unit_mw_scalar(gpus, kw_job, kw_pool, pue, pair_mw):
    """Facility MW of one unit: GPUs × kW (job override, else pool) / 1000, a measured pair MW wins, × PUE."""
    kw = kw_job if kw_job > 0 else kw_pool
    it_mw = mul(float(gpus), kw) / 1000.0
    if not math.isnan(pair_mw):
        it_mw = pair_mw
    return mul(it_mw, pue)


def unit_score_scalar(value_unit, speed, gpus, moved, mig, mw, energy, carbon, extra, lam, mu):
    """Reduced score of one unit: value·speed − energy − carbon − pair − migration − λ·MW − μ·GPUs."""
    migration = mig if moved else 0.0
    return (mul(value_unit, speed) - mul(mw, energy) - mul(mw, carbon) - extra - migration
            - mul(mw, lam) - mul(mu, float(gpus)))
