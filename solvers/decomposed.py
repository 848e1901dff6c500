"""Decomposed solve: K sub-problems solved in parallel, merged, then improved on the whole problem.

For instances too big for one process's time limit (``--solver decomposed [--parts K]
[--executor ray]``):

1. **Partition** (``partition``). *By region* where that is natural: the regions each job's
   eligible pools span link regions into components; components are packed into K groups of
   roughly balanced facility MW, and each part gets the whole sites of its group and the jobs
   eligible only there. Up to ``SPAN_SHARE`` of the jobs (by GPUs asked) may span groups: each
   goes to the group of its current placement, else to a group drawn (seeded) in proportion to
   its eligible GPUs there, and may then only use that group's sites. Otherwise *POP-style*:
   jobs are dealt to parts at random (seeded, stratified by tier and eligibility class), and
   every pool's GPUs and site's MW are split into K shares: first what each part's jobs use
   now (so a pinned or running job keeps room where it runs), then the rest evenly. The
   migration budget is split in proportion to the jobs that could move.
2. **Parts** run the normal pipeline (solver ``auto``) in parallel on ``placement.core.executors``
   (local process pool or Ray) within ``PARTS_SHARE`` of the time limit. The full problem is the
   shared payload (sent once per worker); each task carries only its part's arrays.
3. **Merge** the part plans into one plan of the full problem and ``repair`` it (a safety net:
   the shares already keep every cap, each part's ``MW_TOLERANCE`` included). Then, in the time left,
   as the pipeline would at this size: the exact model hinted with it on small instances, else
   preemption by higher tiers (split pools can strand a big gang), local search and LNS; the
   pipeline's final fill places what fits in the capacity the parts left unused.
4. **Bound**: the smallest of the relaxed bound and the Lagrangian dual of the *whole* problem at
   prices merged from the parts' LP duals (each site's and pool's price from the parts weighted
   by their share of it, or their maximum); after local search, also at the best of those prices
   with the top tier held to the plan's top tier (``TierFloor``, minimised over its multiplier),
   valid for the lexicographic optimum as the pipeline's LP bound is. The sum of the parts'
   bounds is *not* a bound: their capacity shares are a restriction of the whole problem.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from placement.core import clock
from placement.core.executors import make_executor, threads_per_worker
from placement.kernels import Kernels, kernels_for
from placement.model.portfolio import SolveOptions
from placement.core.problem import MW_TOLERANCE, UNLIMITED, Problem, subproblem
from placement.core.solution import Reason, Solution, tier_objectives, usage
from placement.solvers.bounds import relaxed_bound
from placement.solvers.lagrangian import TierFloor, evaluate_dual, plan_floor
from placement.solvers.repair import fill, preempt, repair
from placement.solvers.stages import (
    Incumbent,
    Progress,
    exact_stage,
    fill_stage,
    lns_stage,
    local_search_stage,
    re_explain,
)

log = logging.getLogger("placement")

SOLVER = "decomposed"
# Shares of the time limit: the parts end by the first; preemption + fill by the second, local
# search by the third; LNS polishes the merged plan until the deadline.
PARTS_SHARE = 0.65
PREEMPT_UNTIL = 0.72
LOCAL_SEARCH_UNTIL = 0.8
# A part whose window has passed (slow worker start) still gets this long: a greedy plan.
MIN_PART_SECONDS = 0.1
# Region partitions: at most this share of jobs (by GPUs asked) may span groups of regions, and
# no group may hold more than this times its even share of the facility MW.
SPAN_SHARE = 0.1
REGION_BALANCE = 1.5
# The top tier's floor multiplier ν (``solvers.lagrangian``): golden-section search over log ν
# in this range, this many steps after the first two points.
FLOOR_LOG_RANGE = (math.log(0.01), math.log(100.0))
FLOOR_STEPS = 8

# What each part runs: the single-process pipeline (``run_pipeline``: problem, options, kernels,
# ``initial=``). Its caller passes it in, as the pipeline is what hands ``decomposed`` here.
PartSolver = Callable[..., Solution]


@dataclass(frozen=True)
class Partition:
    """Which part each job belongs to and each part's capacities and migration budget."""

    kind: str  # "region" or "random"
    job_part: np.ndarray  # int64 per job; -1: no eligible candidate, in no part
    pool_gpus: np.ndarray  # (K, pools) int64
    site_cap_mw: np.ndarray  # (K, sites) float64
    max_moves: np.ndarray  # (K,) int64
    max_migration_usd: np.ndarray  # (K,) float64

    @property
    def k(self) -> int:
        return len(self.pool_gpus)

    def jobs(self, part: int) -> np.ndarray:
        """Sorted job indices of ``part``."""
        return np.flatnonzero(self.job_part == part)


def partition(problem: Problem, k: int, seed: int, current: Solution | None = None) -> Partition:
    """K parts by region where jobs split naturally, else POP-style (module docstring).

    ``current``: where jobs run now (rows in problem indices); default ``job_current_pool``.
    """
    P = problem
    current = current if current is not None else _current_rows(P)
    rng = np.random.default_rng(seed)
    groups = _region_groups(P, k) if k > 1 else None
    if groups is not None:
        return _by_region(P, groups, k, current, rng)
    return _at_random(P, k, current, rng)


def _current_rows(P: Problem) -> Solution:
    """The current placement as rows (the problem's ``current_*`` arrays)."""
    j = np.repeat(np.arange(P.n_jobs), np.diff(P.current_ptr))
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    reason[j] = Reason.PLACED
    return Solution(j, P.current_pool.copy(), P.current_units.copy(), reason, solver="current")


def _usable(P: Problem) -> np.ndarray:
    """Pools that can host anything: GPUs and an online site with power."""
    return (P.pool_gpus > 0) & (P.site_cap_mw[P.pool_site] > 0)


def _class_entries(P: Problem) -> tuple[np.ndarray, np.ndarray]:
    """For each usable class-list entry: its class and its pool."""
    n_classes = len(P.class_ptr) - 1
    cls = np.repeat(np.arange(n_classes), np.diff(P.class_ptr))
    ok = _usable(P)[P.class_pool]
    return cls[ok], P.class_pool[ok]


def _region_groups(P: Problem, k: int) -> np.ndarray | None:
    """Group (0..k-1) of each region, or None when jobs do not split by region into k balanced groups.

    Regions are linked by the classes that span them, narrowest classes (most jobs) first; a link
    is skipped (its jobs will span groups) when it would leave fewer than k components or one
    component too big for a balanced group.
    """
    jobs = np.flatnonzero(P.job_filter == 0)
    n_regions = int(P.site_region.max()) + 1 if P.n_sites else 0
    region_mw = np.bincount(P.site_region, weights=P.site_cap_mw, minlength=n_regions)
    total = float(region_mw.sum())
    if len(jobs) == 0 or total <= 0 or np.count_nonzero(region_mw) < k:
        return None
    cls, pool = _class_entries(P)
    n_classes = len(P.class_ptr) - 1
    spans = np.zeros((n_classes, n_regions), bool)
    spans[cls, P.site_region[P.pool_site[pool]]] = True
    demand = np.bincount(P.job_class[jobs], weights=P.job_gpus_unit[jobs] * P.job_units[jobs],
                         minlength=n_classes)
    used = np.flatnonzero(demand > 0)
    width = spans[used].sum(axis=1)
    parent = np.arange(n_regions)
    comp_mw = region_mw.copy()
    n_comp = int(np.count_nonzero(region_mw))
    limit = REGION_BALANCE * total / k
    spanning = 0.0

    def find(r: int) -> int:
        while parent[r] != r:
            parent[r] = parent[parent[r]]
            r = parent[r]
        return r

    for c in used[np.lexsort((-demand[used], width))].tolist():
        roots = sorted({find(r) for r in np.flatnonzero(spans[c]).tolist()})
        if len(roots) < 2:
            continue
        merged = float(comp_mw[roots].sum())
        if n_comp - (len(roots) - 1) < k or merged > limit:
            spanning += demand[c]
            continue
        for r in roots[1:]:
            parent[r] = roots[0]
        comp_mw[roots[0]] = merged
        n_comp -= len(roots) - 1
    if spanning > SPAN_SHARE * demand.sum():
        return None
    # Pack components into k groups, largest first into the lightest group.
    root = np.array([find(r) for r in range(n_regions)], np.int64)
    comps = np.unique(root[region_mw > 0])
    comp_group = np.full(n_regions, -1, np.int64)
    load = np.zeros(k)
    for c in comps[np.argsort(-comp_mw[comps], kind="stable")].tolist():
        g = int(np.argmin(load))
        comp_group[c] = g
        load[g] += comp_mw[c]
    if load.min() <= 0 or load.max() > limit:
        return None
    return np.where(region_mw > 0, comp_group[root], -1)


def _by_region(P: Problem, region_group: np.ndarray, k: int, current: Solution,
               rng: np.random.Generator) -> Partition:
    site_group = region_group[P.site_region]
    pool_group = site_group[P.pool_site]
    cls, pool = _class_entries(P)
    n_classes = len(P.class_ptr) - 1
    # Eligible GPUs of each class in each group: where a spanning job may go.
    room = np.zeros((n_classes, k))
    np.add.at(room, (cls, pool_group[pool]), P.pool_gpus[pool])
    jobs = np.flatnonzero(P.job_filter == 0)
    weights = room[P.job_class[jobs]]
    cum = np.cumsum(weights, axis=1)
    draw = rng.random(len(jobs)) * cum[:, -1]
    part = np.minimum((cum <= draw[:, None]).sum(axis=1), k - 1)  # the only group, if one
    # A job that runs in a group stays with it (a pinned job has no choice).
    now = np.full(P.n_jobs, -1, np.int64)
    now[current.row_job] = pool_group[current.row_pool]
    here = now[jobs]
    stay = (here >= 0) & (room[P.job_class[jobs], np.maximum(here, 0)] > 0)
    part[stay] = here[stay]
    job_part = np.full(P.n_jobs, -1, np.int64)
    job_part[jobs] = part
    owner = np.arange(k)[:, None]
    moves, usd = _split_budget(P, job_part, k)
    return Partition("region", job_part, np.where(pool_group == owner, P.pool_gpus, 0).astype(np.int64),
                     np.where(site_group == owner, P.site_cap_mw, 0.0), moves, usd)


def _at_random(P: Problem, k: int, current: Solution, rng: np.random.Generator) -> Partition:
    jobs = np.flatnonzero(P.job_filter == 0)
    # Dealt round-robin in (tier, class, random) order: every part gets its share of each kind.
    order = jobs[np.lexsort((rng.random(len(jobs)), P.job_class[jobs], P.job_tier[jobs]))]
    job_part = np.full(P.n_jobs, -1, np.int64)
    job_part[order] = (np.arange(len(order)) + int(rng.integers(k))) % k
    row_part = job_part[current.row_job]
    held = [usage(P, current, row_part == i) for i in range(k)]
    even = np.ones(k)
    gpus = _split(P.pool_gpus, np.stack([u.pool_gpus for u in held]).astype(np.float64), even, integer=True)
    mw = _split(P.site_cap_mw, np.stack([u.site_mw for u in held]), even, integer=False)
    moves, usd = _split_budget(P, job_part, k)
    return Partition("random", job_part, gpus, mw, moves, usd)


def _split(total: np.ndarray, reserved: np.ndarray, weights: np.ndarray, *, integer: bool) -> np.ndarray:
    """(K, n) shares of ``total`` [n]: each part's ``reserved`` first (cut pro rata where they
    exceed the total), the rest in proportion to ``weights`` [K]; shares never sum above the total.

    Integer shares hand out remainders by largest fraction, ties rotating across parts.
    """
    total = np.asarray(total, np.float64)
    k, n = reserved.shape
    want = reserved.sum(axis=0)
    scale = np.where(want > total, total / np.maximum(want, 1e-300), 1.0)
    held = reserved * scale
    if integer:
        held = np.floor(held)
    rest = np.maximum(total - held.sum(axis=0), 0.0)
    exact = rest * (weights / weights.sum())[:, None]
    if not integer:
        # Every part may overshoot by MW_TOLERANCE (as the kernels allow): the largest share gives
        # that room back, so the parts together stay within the cap's own tolerance.
        share = held + exact
        slack = MW_TOLERANCE * (k - 1)
        share[share.argmax(axis=0), np.arange(n)] -= slack
        share[:, total < slack] = 0.0  # a cap this small fits no job anyway
        return np.maximum(share, 0.0)
    base = np.floor(exact)
    left = rest - base.sum(axis=0)
    rotation = (np.arange(k)[:, None] - np.arange(n)[None, :]) % k
    order = np.lexsort((rotation, -(exact - base)), axis=0)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[:, None].repeat(n, axis=1), axis=0)
    return (held + base + (rank < left)).astype(np.int64)


def _split_budget(P: Problem, job_part: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The migration budget shared by the jobs that could move (those running somewhere)."""
    movers = np.bincount(job_part[(job_part >= 0) & (P.job_current_pool >= 0)], minlength=k).astype(np.float64)
    weights = movers if movers.sum() > 0 else np.ones(k)
    none = np.zeros((k, 1))
    moves = (np.full(k, UNLIMITED, np.int64) if P.max_moves >= UNLIMITED
             else _split(np.array([P.max_moves]), none, weights, integer=True)[:, 0])
    usd = (np.full(k, math.inf) if math.isinf(P.max_migration_usd)
           else P.max_migration_usd * weights / weights.sum())
    return moves, usd


# --- the parts, on workers --------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """One task: a part's jobs, capacities and budget, its solve options and time window."""

    jobs: np.ndarray
    pool_gpus: np.ndarray
    site_cap_mw: np.ndarray
    max_moves: int
    max_migration_usd: float
    options: SolveOptions
    solve: PartSolver  # a module-level function: it pickles by name
    backend: str
    seconds: float
    deadline: float  # wall clock (time.time(): comparable across machines, unlike monotonic)
    initial: tuple[np.ndarray, np.ndarray, np.ndarray] | None  # warm-start rows, part job indices


def _solve_part(problem: Problem, part: _Part) -> Solution:
    """Worker task (module level so it pickles): build the sub-problem and run the pipeline."""
    start = time.monotonic()
    sub = subproblem(problem, part.jobs, part.pool_gpus, part.site_cap_mw, max_moves=part.max_moves,
                     max_migration_usd=part.max_migration_usd)
    initial = None
    if part.initial is not None:
        j, p, u = part.initial
        reason = np.full(sub.n_jobs, Reason.OUT_VALUED, np.int8)
        reason[j] = Reason.PLACED
        initial = Solution(j, p, u, reason, solver="warm-start")
    kernels = kernels_for(sub, part.backend)  # binding (a GPU upload, say) counts against the window
    # Deterministic mode: the part's share of the work budget, whatever the wall clock says.
    limit = part.seconds if part.options.deterministic else max(min(part.seconds, part.deadline - time.time()),
                                                                MIN_PART_SECONDS)
    sol = part.solve(sub, part.options.model_copy(update={"time_limit_s": limit}), kernels, initial=initial)
    sol.stats = {**sol.stats, "part_seconds": time.monotonic() - start,
                 "part_objective": float(tier_objectives(sub, sol).sum())}
    return sol


def _tasks(parts: Partition, options: SolveOptions, solve: PartSolver, backend: str, workers: int,
           initial: Solution | None, deadline: float) -> list[_Part]:
    """One task per part; each gets the window up to ``deadline`` (wall clock), shared in turns
    when parts outnumber workers."""
    k = parts.k
    window = options.time_limit_s * PARTS_SHARE if options.deterministic else max(deadline - time.time(), 0.0)
    rounds = math.ceil(k / max(workers, 1))  # more parts than workers: they queue
    part_options = options.model_copy(update={
        "solver": "auto", "threads": max(1, options.threads // min(k, workers)) if options.threads
        else threads_per_worker(min(k, workers))})
    tasks = []
    for i in range(k):
        jobs = parts.jobs(i)
        rows = None
        if initial is not None:
            mine = parts.job_part[initial.row_job] == i
            rows = (np.searchsorted(jobs, initial.row_job[mine]), initial.row_pool[mine], initial.row_units[mine])
        tasks.append(_Part(jobs, parts.pool_gpus[i], parts.site_cap_mw[i], int(parts.max_moves[i]),
                           float(parts.max_migration_usd[i]),
                           part_options.model_copy(update={"seed": options.seed + i}), solve, backend,
                           window / rounds, deadline, rows))
    return tasks


# --- merge and bound ---------------------------------------------------------------------------


def merge(problem: Problem, parts: Partition, solutions: Sequence[Solution], backend: str) -> Solution:
    """The part plans as one plan of the full problem (rows sorted by job, pool)."""
    P = problem
    reason = np.full(P.n_jobs, Reason.OUT_VALUED, np.int8)
    rows = []
    for i, sol in enumerate(solutions):
        jobs = parts.jobs(i)
        reason[jobs] = sol.reason
        rows.append((jobs[sol.row_job], sol.row_pool, sol.row_units))
    job, pool, units = (np.concatenate(x).astype(np.int64) for x in zip(*rows))
    order = np.lexsort((pool, job))
    return Solution(job[order], pool[order], units[order], reason, solver=SOLVER, backend=backend)


def merged_prices(parts: Partition, solutions: Sequence[Solution]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Candidate full-problem prices (λ, μ) from the parts' duals: share-weighted mean, then maximum.

    A part's price for a site or pool counts in proportion to its share of it: for a region
    partition, the owning part's price. Any nonnegative prices give a valid bound; these are
    guesses at the full problem's duals, and the smallest bound wins.
    """
    have = [i for i, s in enumerate(solutions) if s.site_price_usd_per_mwh is not None
            and s.pool_price_usd_per_gpu_hour is not None]
    if not have:
        return []
    out = []
    for share, attr in ((parts.site_cap_mw, "site_price_usd_per_mwh"), (parts.pool_gpus, "pool_price_usd_per_gpu_hour")):
        price = np.maximum(np.stack([getattr(solutions[i], attr) for i in have]), 0.0)
        w = share[have].astype(np.float64)
        w = np.where(w.sum(axis=0) > 0, w, 1.0)
        out.append(((w * price).sum(axis=0) / w.sum(axis=0), np.where(w > 0, price, 0.0).max(axis=0)))
    (lam_mean, lam_max), (mu_mean, mu_max) = out
    return [(lam_mean, mu_mean), (lam_max, mu_max)]


def dual_bound(problem: Problem, kernels: Kernels, prices: Sequence[tuple[np.ndarray, np.ndarray]]
               ) -> tuple[float, int]:
    """The smallest Lagrangian bound over ``prices`` and which pair gave it (-1: none finite)."""
    jobs = np.flatnonzero(problem.job_filter == 0).astype(np.int64)
    values = [evaluate_dual(problem, kernels, jobs, lam, mu) for lam, mu in prices]
    which = int(np.argmin(values)) if values and np.isfinite(min(values)) else -1
    return (values[which] if which >= 0 else math.inf), which


def floored_bound(problem: Problem, kernels: Kernels, lam: np.ndarray, mu: np.ndarray, plan: Solution) -> float:
    """The Lagrangian bound at (λ, μ) with the top tier held to ``plan``'s, minimised over its multiplier ν.

    Valid for every plan whose top tier earns at least ``plan``'s, the lexicographic optimum among
    them (as the LP bound in ``solvers.lp``); much tighter than the plain one when tiers compete.
    The bound is convex in ν, so a golden-section search over log ν finds its minimum; only the
    top tier's term depends on ν, so each step scores only the top tier's jobs.
    """
    P = problem
    held = plan_floor(P, plan)
    if held is None:
        return math.inf
    tier, floor = held.tier, held.value
    jobs = np.flatnonzero(P.job_filter == 0).astype(np.int64)
    top, rest = jobs[P.job_tier[jobs] == tier], jobs[P.job_tier[jobs] != tier]
    # evaluate_dual adds λ·cap + μ·GPUs to each call: count it once.
    fixed = float(lam @ P.site_cap_mw + mu @ P.pool_gpus)
    others = evaluate_dual(P, kernels, rest, lam, mu) - fixed

    def bound(log_nu: float) -> float:
        return evaluate_dual(P, kernels, top, lam, mu, TierFloor(tier, floor, math.exp(log_nu))) + others

    lo, hi = FLOOR_LOG_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = bound(a), bound(b)
    best = min(fa, fb)
    for _ in range(FLOOR_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = bound(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = bound(b)
        best = min(best, fa, fb)
    return best


# --- the solver ---------------------------------------------------------------------------------


def solve_decomposed(problem: Problem, options: SolveOptions, kernels: Kernels, *, solve_part: PartSolver,
                     prove: bool, on_progress: Progress | None = None, initial: Solution | None = None) -> Solution:
    """Partition, solve parts in parallel, merge, repair and improve; see the module docstring.

    Each part runs ``solve_part`` (the pipeline). ``prove``: the whole problem is small enough for
    the exact model hinted with the merged plan (the pipeline's rule for ``auto``).
    ``initial`` (the placement running now) is split among the parts as their warm starts, and
    its repair is kept unless the merged and improved plan beats it. Ctrl-C during the parts
    merges the parts that returned and fills the rest greedily.
    """
    P = problem
    wall_start, start = time.monotonic(), clock.now()
    deadline = start + options.time_limit_s
    # Wall clock for the parts' window: workers may run on other machines (Ray), and starting the
    # executor is part of the window.
    parts_deadline = time.time() + options.time_limit_s * PARTS_SHARE
    warm = repair(P, initial, kernels) if initial is not None else None
    parts, returned, workers = _run_parts(P, options, solve_part, kernels.name, warm, parts_deadline)
    parts_s = time.monotonic() - wall_start
    clock.tick(options.time_limit_s * PARTS_SHARE)  # the parts' work (in other processes) is spent
    interrupted = any(s is None for s in returned)
    solutions = [s if s is not None else _nothing(len(parts.jobs(i))) for i, s in enumerate(returned)]
    merged = repair(P, merge(P, parts, solutions, kernels.name), kernels)
    prices = merged_prices(parts, solutions)
    relaxed = relaxed_bound(P, kernels)
    lagrangian, which = dual_bound(P, kernels, prices)
    lam, mu = prices[which] if which >= 0 else (None, None)
    inc = Incumbent(P, merged, min(relaxed, lagrangian), on_progress)
    if warm is not None:
        inc.offer(warm)
    stages = ["parts", "merge"]
    stats = {"bound_relaxed": relaxed, "bound_lagrangian": lagrangian}
    try:
        if interrupted:
            stages.append("interrupted")
        elif prove:
            exact_stage(P, options, inc, deadline)
            stages.append("exact")
        else:
            stages += _improve(P, options, kernels, inc, start, deadline, lam, mu, stats)
    except KeyboardInterrupt:
        log.warning("interrupted: returning the best plan so far")
        stages.append("interrupted")
    fill_stage(P, options, kernels, inc)
    stages.append("fill")
    best = inc.best
    best.solver, best.backend = SOLVER, kernels.name
    best.bound = min(best.bound, inc.bound)
    best.site_price_usd_per_mwh, best.pool_price_usd_per_gpu_hour = lam, mu
    if clock.now() > deadline and best.status == "optimal":
        best.status = "feasible"
    if "interrupted" in stages:
        best.status = "interrupted"
    re_explain(P, kernels, best)
    best.stats = {**best.stats, "stages": stages, "seconds_solve": time.monotonic() - wall_start, "decomposed": {
        "parts": parts.k, "partition": parts.kind, "executor": options.executor, "workers": workers,
        "seconds_parts": parts_s, "part_jobs": [len(parts.jobs(i)) for i in range(parts.k)],
        "part_seconds": [s.stats.get("part_seconds") for s in solutions],
        "part_objectives": [s.stats.get("part_objective") for s in solutions],
        "merged_objective": float(tier_objectives(P, merged).sum()),
        **{name: (v if math.isfinite(v) else None) for name, v in stats.items()}}}
    return best


def _run_parts(P: Problem, options: SolveOptions, solve: PartSolver, backend: str, warm: Solution | None,
               deadline: float) -> tuple[Partition, list[Solution | None], int]:
    """The partition, each part's plan (None where Ctrl-C came first) and the workers used."""
    with make_executor(options.executor, options.workers, options.address) as executor:
        k = max(1, min(options.parts or max(2, executor.workers), int(np.count_nonzero(P.job_filter == 0))))
        executor.workers = min(executor.workers, k)  # fewer parts than workers: more threads each
        parts = partition(P, k, options.seed, warm)
        solutions: list[Solution | None] = [None] * k
        try:
            tasks = _tasks(parts, options, solve, backend, executor.workers, warm, deadline)
            for i, sol in executor.map(_solve_part, P, tasks):
                solutions[i] = sol
        except KeyboardInterrupt:
            log.warning("interrupted: merging the parts that returned")
    return parts, solutions, executor.workers


def _nothing(n_jobs: int) -> Solution:
    """An empty plan of a part that did not return."""
    empty = np.zeros(0, np.int64)
    return Solution(empty, empty, empty, np.full(n_jobs, Reason.OUT_VALUED, np.int8), solver=SOLVER)


def _improve(P: Problem, options: SolveOptions, kernels: Kernels, inc: Incumbent, start: float,
             deadline: float, lam: np.ndarray | None, mu: np.ndarray | None, stats: dict) -> list[str]:
    """Large instances: higher tiers take what split pools stranded, local search, the floored
    bound, then LNS until the deadline. Returns the stages run."""
    t = options.time_limit_s
    moves_left, usd_left = usage(P, inc.best).budget_left(P)
    placed, stopped = preempt(P, inc.best, deadline=start + t * PREEMPT_UNTIL, moves_left=moves_left,
                              usd_left=usd_left)
    if len(stopped):
        placed = fill(P, placed, kernels, options, deadline=start + t * PREEMPT_UNTIL)
    inc.offer(placed)
    local_search_stage(P, kernels, inc, start + t * LOCAL_SEARCH_UNTIL)
    stages = ["preempt", "ls"]
    if lam is not None and mu is not None:
        stats["bound_floored"] = floored_bound(P, kernels, lam, mu, inc.best)
        inc.tighten(stats["bound_floored"])
        stages.append("bound")
        inc.best.site_price_usd_per_mwh, inc.best.pool_price_usd_per_gpu_hour = lam, mu  # LNS weighs sites by them
    lns_stage(P, options, inc, deadline)
    return [*stages, "lns"]
