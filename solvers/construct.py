"""Feasibility first: place every required gang when capacity is tight, where a greedy pass fails.

A value-ordered greedy fills the cheapest sites first and then has nowhere to put the last
required jobs. This construction instead places required gangs by *regret*: at each step, the
job whose best and second-best feasible candidates differ most (by a desirability) goes to its
best one, so jobs with one good option take it before others crowd it out. Desirabilities, tried
in turn until every required gang is placed: the share of the site's capacity a candidate uses
(small first), then its net value. Jobs the regret pass leaves out are placed by ejection
chains of length one or two: a job at the wanted site moves on to another site, making room;
if it cannot, a third job moves on from there. Everything else (optional jobs, services) is
left to the greedy fill that follows.

Cost: the regret pass is O(n² k) for n required gangs with k candidates each (Numba); the
module runs it only up to ``MAX_WORK`` so it stays well under a second.
"""

from __future__ import annotations


import numpy as np
from numba import njit

from placement.core import clock
from placement.core.objective import unit_moves
from placement.core.problem import UNLIMITED, Problem
from placement.core.solution import Reason, Solution
from placement.solvers.candidates import Candidates
from placement.solvers.int_model import WATTS_PER_MW, to_int

MAX_WORK = 2e9  # n² k of the regret pass (~1 s on one core)
_NONE = -1


@njit(cache=True)
def _fits(c, c_pool, c_site, c_g, c_w, pool_left, site_left):
    return c_g[c] <= pool_left[c_pool[c]] and c_w[c] <= site_left[c_site[c]]


@njit(cache=True)
def _take(c, sign, c_pool, c_site, c_g, c_w, pool_left, site_left):
    pool_left[c_pool[c]] -= sign * c_g[c]
    site_left[c_site[c]] -= sign * c_w[c]


@njit(cache=True)
def _regret(job_ptr, todo, c_pool, c_site, c_g, c_w, c_f, pool_left, site_left, assigned):
    """Assign jobs ``todo`` by largest regret; ``assigned[j]`` gets a candidate or stays -1."""
    active = np.zeros(len(job_ptr) - 1, np.bool_)
    for j in todo:
        active[j] = True
    for _ in range(len(todo)):
        pick, pick_c, pick_regret = -1, -1, -np.inf
        for j in todo:
            if not active[j]:
                continue
            b1, b2, c1 = -np.inf, -np.inf, -1
            for c in range(job_ptr[j], job_ptr[j + 1]):
                if _fits(c, c_pool, c_site, c_g, c_w, pool_left, site_left):
                    f = c_f[c]
                    if f > b1:
                        b1, b2, c1 = f, b1, c
                    elif f > b2:
                        b2 = f
            if c1 < 0:
                active[j] = False  # capacity only shrinks: it will not fit later either
                continue
            regret = b1 - b2 if b2 > -np.inf else np.inf
            if regret > pick_regret:
                pick, pick_c, pick_regret = j, c1, regret
        if pick < 0:
            break
        assigned[pick] = pick_c
        active[pick] = False
        _take(pick_c, 1, c_pool, c_site, c_g, c_w, pool_left, site_left)


@njit(cache=True)
def _place_anywhere(k, skip_site, job_ptr, c_pool, c_site, c_g, c_w, c_f, pool_left, site_left, assigned):
    """Put job ``k`` on its best fitting candidate away from ``skip_site``; True if it went."""
    best, best_f = -1, -np.inf
    for c in range(job_ptr[k], job_ptr[k + 1]):
        if c_site[c] != skip_site and c_f[c] > best_f and _fits(c, c_pool, c_site, c_g, c_w, pool_left, site_left):
            best, best_f = c, c_f[c]
    if best < 0:
        return False
    assigned[k] = best
    _take(best, 1, c_pool, c_site, c_g, c_w, pool_left, site_left)
    return True


@njit(cache=True)
def _eject(j, depth, job_ptr, c_pool, c_site, c_g, c_w, c_f, pool_left, site_left, assigned, movable):
    """Place job ``j`` by moving others on (chains up to ``depth``); True if it was placed."""
    n = len(job_ptr) - 1
    for c in range(job_ptr[j], job_ptr[j + 1]):
        s = c_site[c]
        for k in range(n):
            ck = assigned[k]
            if ck < 0 or k == j or not movable[k] or (c_site[ck] != s and c_pool[ck] != c_pool[c]):
                continue
            _take(ck, -1, c_pool, c_site, c_g, c_w, pool_left, site_left)
            assigned[k] = -1
            if _fits(c, c_pool, c_site, c_g, c_w, pool_left, site_left):
                _take(c, 1, c_pool, c_site, c_g, c_w, pool_left, site_left)
                assigned[j] = c
                if _place_anywhere(k, s, job_ptr, c_pool, c_site, c_g, c_w, c_f, pool_left, site_left, assigned):
                    return True
                if depth > 1:
                    movable[j] = False
                    ok = _eject(k, depth - 1, job_ptr, c_pool, c_site, c_g, c_w, c_f, pool_left,
                                site_left, assigned, movable)
                    movable[j] = True
                    if ok:
                        return True
                _take(c, -1, c_pool, c_site, c_g, c_w, pool_left, site_left)
                assigned[j] = -1
            assigned[k] = ck
            _take(ck, 1, c_pool, c_site, c_g, c_w, pool_left, site_left)
    return False


def _required_gangs(P: Problem, c: Candidates) -> tuple[np.ndarray, Candidates]:
    """Required training jobs and their candidates (no moves of running jobs when moves are budgeted)."""
    gang = (P.job_kind == 0) & P.job_required
    keep = gang[c.job]
    if P.max_moves < UNLIMITED or np.isfinite(P.max_migration_usd):
        keep &= ~unit_moves(P, c.job, c.pool)
    return np.flatnonzero(gang), c.take(keep)


def construct_required(problem: Problem, cand: Candidates, deadline: float) -> Solution | None:
    """A plan placing every required gang, or None if neither desirability nor the chains manage.

    ``cand``: the eligible candidates (``candidates.eligible_candidates``, kept where ub ≥ 1).
    Only required gangs are placed; the caller fills the rest.
    """
    P = problem
    jobs, c = _required_gangs(P, cand)
    if not len(jobs) or not len(c.job):
        return None
    k = len(c.job) / len(jobs)
    if len(jobs) ** 2 * k > MAX_WORK:
        return None
    job_ptr = np.searchsorted(c.job, np.arange(P.n_jobs + 1)).astype(np.int64)
    site_w = to_int(P.site_cap_mw * WATTS_PER_MW, up=False)
    share = c.watts / np.maximum(site_w[c.site], 1).astype(np.float64)
    g = P.job_gpus_unit[c.job].astype(np.int64)
    for desirability in (-share, c.net):
        if clock.now() > deadline:
            return None
        assigned = np.full(P.n_jobs, _NONE, np.int64)
        pool_left, site_left = P.pool_gpus.astype(np.int64).copy(), site_w.astype(np.int64).copy()
        f = np.asarray(desirability, np.float64)
        _regret(job_ptr, jobs, c.pool, c.site, g, c.watts, f, pool_left, site_left, assigned)
        clock.tick(len(jobs) * k / clock.KERNEL_CANDIDATES_PER_S)
        movable = np.ones(P.n_jobs, np.bool_)
        for j in jobs[assigned[jobs] < 0]:
            _eject(j, 2, job_ptr, c.pool, c.site, g, c.watts, f, pool_left, site_left, assigned, movable)
        if (assigned[jobs] >= 0).all():
            rows = assigned[jobs]
            reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
            reason[jobs] = Reason.PLACED
            return Solution(jobs.astype(np.int64), c.pool[rows].astype(np.int64), np.ones(len(jobs), np.int64),
                            reason, solver="construct")
    return None
