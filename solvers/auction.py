"""Price-based batched assignment: an auction on site power and pool GPUs, one kernel pass a round.

Every round, each job still bidding makes one bid at the current prices (λ $/MWh per site,
μ $/GPU-h per pool) against the capacity left: a training gang its best pool (one
``best_candidate`` pass for all of them), an inference service all its replicas over its best
pools (one ``topk`` pass, then the greedy binder's rule, vectorised over services: share cap per
site, replicas held back for ``min_sites``). Sites and pools accept bids in reduced-value-density
order while they fit: a segmented sort on (site, −density) with prefix sums of MW, and one on
(pool, −density) with prefix sums of GPUs (NumPy, or CuPy when the kernels run on the GPU); a
service is taken only if every one of its rows is. Accepted jobs keep their place; prices rise
where the bids asked for more than was left, by a step in proportion to the over-ask that shrinks
round by round, so the next round's bidders spread out. A job with no fitting candidate or no
positive reduced score drops out. Rounds end when no bid is accepted or time is up; then the
greedy, at the auction's prices, places what it can of the rest, so the plan is always feasible
and complete. Jobs that could move from where they run while a migration budget is set are left
to that greedy (it keeps the budget).

Every round's prices also give a valid upper bound on the problem's objective, the Lagrangian
value L(λ, μ) (``solvers.lagrangian.evaluate_dual``, one kernel pass); the best is returned.
Strict tiers are the caller's: run it tier by tier on what the higher tiers leave (the pipeline
does), since one price vector cannot keep a higher tier from being traded for a lower one.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from placement.core import clock
from placement.kernels import Kernels
from placement.model.portfolio import SolveOptions
from placement.core.objective import candidate_speed, unit_terms
from placement.core.problem import MW_TOLERANCE, UNLIMITED, Problem
from placement.core.solution import Reason, Solution
from placement.solvers.greedy import fill_unplaced
from placement.solvers.lagrangian import evaluate_dual

# Pools a service's bid may spread over (its best at the current prices).
TOPK_FOR_SERVICES = 16
# First price step, as a share of the bidders' median reduced value per MW (sites) or per GPU
# (pools); round t uses STEP / sqrt(t).
STEP = 0.1
MAX_ROUNDS = 200


@dataclass
class AuctionResult:
    """The auction's plan (feasible, every job listed), its final prices and best bound."""

    solution: Solution
    site_price: np.ndarray  # $/MWh
    pool_price: np.ndarray  # $/GPU-h
    bound: float  # min over rounds of L(λ, μ): a valid upper bound on the problem's objective
    rounds: int


@dataclass
class _Bids:
    """One row per (bidding job, pool): the job's position in the round's bidder list and its ask."""

    owner: np.ndarray
    pool: np.ndarray
    units: np.ndarray
    mw: np.ndarray  # facility MW of the row
    gpus: np.ndarray  # GPUs of the row
    density: np.ndarray  # the job's reduced value per GPU (inf: required)

    @staticmethod
    def concat(parts: list[_Bids]) -> _Bids:
        return _Bids(*(np.concatenate([getattr(b, f) for b in parts]) for f in _Bids.__dataclass_fields__))


def array_module(kernels: Kernels) -> ModuleType:
    """CuPy when the kernels run on the GPU (the acceptance step stays on the device), else NumPy."""
    if kernels.name != "gpu":
        return np
    try:
        import cupy  # noqa: PLC0415  (only with the gpu backend)
    except ImportError:  # the gpu kernels on Numba's CUDA simulator: host arrays
        return np
    return cupy


def segmented_accept(xp: ModuleType, seg, key, size, capacity, tol: float = 0.0):
    """Accept items per segment in descending ``key`` while the running ``size`` fits ``capacity``.

    ``seg`` indexes ``capacity``. Returns a boolean mask in the input order: an item is accepted
    when the sizes of the items before it in its segment (ties: lower index first) plus its own
    are at most ``capacity[seg] + tol``. One sort and one prefix sum for all segments at once.
    """
    n = len(seg)
    if n == 0:
        return xp.zeros(0, bool)
    order = xp.lexsort(xp.stack([xp.arange(n), -key, seg]))
    s, z = seg[order], size[order]
    total = xp.cumsum(z)
    start = xp.searchsorted(s, s, side="left")  # first position of each item's segment
    before = xp.concatenate([xp.zeros(1, total.dtype), total])[start]
    accepted = xp.zeros(n, bool)
    accepted[order] = total - before <= capacity[s] + tol
    return accepted


def _host(x) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy one."""
    return x.get() if hasattr(x, "get") else np.asarray(x)


def _gang_bids(P: Problem, kernels: Kernels, gangs: np.ndarray, gpus_left: np.ndarray, mw_left: np.ndarray,
               lam: np.ndarray, mu: np.ndarray) -> tuple[_Bids, np.ndarray]:
    """Each gang's bid for its best pool with room; and which gangs drop out."""
    pool, reduced, _ = kernels.best_candidate(gangs, gpus_left, mw_left, lam, mu)
    out = (pool < 0) | ((reduced <= 0) & ~P.job_required[gangs])
    bid = np.flatnonzero(~out)
    j, p = gangs[bid], pool[bid]
    gpus = P.job_gpus_unit[j].astype(np.float64)
    mw = unit_terms(P, j, p, candidate_speed(P, j, p))["mw"]
    density = np.where(P.job_required[j], np.inf, reduced[bid] / gpus)
    return _Bids(bid, p, np.ones(len(bid), np.int64), mw, gpus, density), out


def _service_bids(P: Problem, kernels: Kernels, services: np.ndarray, gpus_left: np.ndarray,
                  mw_left: np.ndarray, lam: np.ndarray, mu: np.ndarray) -> tuple[_Bids, np.ndarray]:
    """Each service's bid: all replicas over its best pools (the greedy binder's rule, batched).

    Going down a service's pools best first, each takes as many replicas as its GPUs, its site's
    MW, the share cap per site and the replicas still needed for ``min_sites`` allow. A service
    that cannot place them all, or whose reduced value is not positive, drops out.
    """
    n, k = len(services), TOPK_FOR_SERVICES
    pools, reduced = kernels.topk(services, gpus_left, mw_left, lam, mu, k)
    valid = pools >= 0
    site = np.where(valid, P.pool_site[np.maximum(pools, 0)], -1)
    j_flat = np.broadcast_to(services[:, None], pools.shape)[valid]
    mw_unit = np.zeros(pools.shape)
    mw_unit[valid] = unit_terms(P, j_flat, pools[valid], candidate_speed(P, j_flat, pools[valid]))["mw"]
    g = P.job_gpus_unit[services]
    left = P.job_units[services].copy()
    need = P.job_min_sites[services]
    share = P.job_max_units_per_site[services]
    take = np.zeros(pools.shape, np.int64)
    n_sites = np.zeros(n, np.int64)
    for c in range(k):
        same = site[:, :c] == site[:, c:c + 1]  # earlier columns at this column's site
        at_site = (take[:, :c] * same).sum(axis=1)
        mw_used = (take[:, :c] * mw_unit[:, :c] * same).sum(axis=1)
        new_site = at_site == 0
        room_mw = np.maximum(mw_left[np.maximum(site[:, c], 0)] - mw_used + MW_TOLERANCE, 0.0)
        by_mw = np.where(mw_unit[:, c] > 0, np.floor(room_mw / np.maximum(mw_unit[:, c], 1e-300)), left)
        cap = np.minimum.reduce([left - np.maximum(need - n_sites - new_site, 0), share - at_site,
                                 gpus_left[np.maximum(pools[:, c], 0)] // g, by_mw.astype(np.int64)])
        cap = np.where(valid[:, c], np.maximum(cap, 0), 0)
        take[:, c] = cap
        left -= cap
        n_sites += (cap > 0) & new_site
    value = (take * np.where(valid, reduced, 0.0)).sum(axis=1)
    required = P.job_required[services]
    out = (left > 0) | (n_sites < need) | ((value <= 0) & ~required)
    row = (take > 0) & ~out[:, None]
    owner = np.broadcast_to(np.arange(n)[:, None], pools.shape)[row]
    units = take[row]
    gpus = (units * g[owner]).astype(np.float64)
    density = np.where(required, np.inf, value / np.maximum(P.job_units[services] * g, 1))[owner]
    return _Bids(owner, pools[row], units, units * mw_unit[row], gpus, density), out


def _accept(xp: ModuleType, P: Problem, bids: _Bids, n_owners: int, gpus_left: np.ndarray,
            mw_left: np.ndarray) -> np.ndarray:
    """Owners whose every row fits: sites by MW and pools by GPUs, densest first.

    Refused rows still count in the prefix sums, so what is accepted fits whatever else is
    refused; a service refused one row gives up the others (they are freed for the next round).
    """
    site = xp.asarray(P.pool_site[bids.pool])
    pool, key = xp.asarray(bids.pool), xp.asarray(bids.density)
    ok = (segmented_accept(xp, site, key, xp.asarray(bids.mw), xp.asarray(mw_left), MW_TOLERANCE)
          & segmented_accept(xp, pool, key, xp.asarray(bids.gpus), xp.asarray(gpus_left.astype(np.float64))))
    return np.bincount(bids.owner, weights=~_host(ok), minlength=n_owners) == 0


def solve_auction(problem: Problem, options: SolveOptions, kernels: Kernels, deadline: float | None = None,
                  site_price: np.ndarray | None = None, pool_price: np.ndarray | None = None,
                  track_bound: bool = True) -> AuctionResult:
    """Auction rounds from the given prices (default zero) until no bid is accepted, then the greedy.

    ``track_bound``: evaluate L(λ, μ) at every round's prices (one more kernel pass a round);
    otherwise only at the final prices.
    """
    P = problem
    xp = array_module(kernels)
    lam = np.zeros(P.n_sites) if site_price is None else np.array(site_price, np.float64)
    mu = np.zeros(P.n_pools) if pool_price is None else np.array(pool_price, np.float64)
    gpus_left = P.pool_gpus.astype(np.int64).copy()
    mw_left = P.site_cap_mw.astype(np.float64).copy()
    eligible = np.flatnonzero(P.job_filter == 0).astype(np.int64)
    budget = P.max_moves < UNLIMITED or np.isfinite(P.max_migration_usd)
    could_move = (P.job_current_pool >= 0) & ~P.job_pinned
    bidders = eligible[~(budget & could_move[eligible])]
    active = np.ones(len(bidders), bool)
    rows: dict[int, dict[int, int]] = {}
    bound, rounds, scale = np.inf, 0, None
    while rounds < MAX_ROUNDS and (deadline is None or clock.now() < deadline):
        if track_bound and len(eligible):
            bound = min(bound, evaluate_dual(P, kernels, eligible, lam, mu))
        live = np.flatnonzero(active)
        if len(live) == 0:
            break
        rounds += 1
        bids, out = [], np.zeros(len(live), bool)
        for kind, make in ((0, _gang_bids), (1, _service_bids)):
            mine = np.flatnonzero(P.job_kind[bidders[live]] == kind)
            if len(mine):
                b, o = make(P, kernels, bidders[live[mine]], gpus_left, mw_left, lam, mu)
                b.owner = mine[b.owner]
                bids.append(b)
                out[mine] = o
        active[live[out]] = False
        b = _Bids.concat(bids)
        if len(b.owner) == 0:
            break
        won = _accept(xp, P, b, len(live), gpus_left, mw_left) & ~out
        if not won.any():
            break
        active[live[won]] = False
        keep = won[b.owner]
        for j, p, u in zip(bidders[live[b.owner[keep]]].tolist(), b.pool[keep].tolist(), b.units[keep].tolist()):
            rows.setdefault(j, {})[p] = u
        site = P.pool_site[b.pool]
        ask_mw = np.bincount(site, weights=b.mw, minlength=P.n_sites)
        ask_g = np.bincount(b.pool, weights=b.gpus, minlength=P.n_pools)
        room_mw, room_g = mw_left.copy(), gpus_left.astype(np.float64)
        np.subtract.at(gpus_left, b.pool[keep], b.gpus[keep].astype(np.int64))
        mw_left = np.maximum(mw_left - np.bincount(site[keep], weights=b.mw[keep], minlength=P.n_sites), 0.0)
        if scale is None:  # reduced $/h per MW and per GPU of a typical first-round bid
            finite = np.isfinite(b.density)
            per_gpu = float(np.median(b.density[finite])) if finite.any() else 0.0
            scale = (per_gpu * float(np.sum(b.gpus) / max(np.sum(b.mw), 1e-12)), per_gpu)
        step = STEP / np.sqrt(rounds)
        lam += step * max(scale[0], 0.0) * np.clip(ask_mw / np.maximum(room_mw, 1e-12) - 1, 0, 1)
        mu += step * max(scale[1], 0.0) * np.clip(ask_g / np.maximum(room_g, 1) - 1, 0, 1)
    if len(eligible):
        bound = min(bound, evaluate_dual(P, kernels, eligible, lam, mu))
    first = Solution.from_pool_units(rows, P.n_jobs, np.full(P.n_jobs, Reason.OUT_VALUED, np.int8),
                                     solver="auction", backend=kernels.name)
    # The greedy states the reason of every job the auction left out, those without a candidate too.
    sol = fill_unplaced(P, first, kernels, options, deadline=deadline, site_price=lam, pool_price=mu,
                        eligible_only=False).solution
    sol.site_price_usd_per_mwh, sol.pool_price_usd_per_gpu_hour = lam, mu
    return AuctionResult(sol, lam, mu, float(bound), rounds)
