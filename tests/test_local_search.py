"""Local search moves: ejection chains and tier-by-tier judgement, on hand-made two-site cases."""

from __future__ import annotations

import time

import numpy as np
import pytest

from placement.io.config import portfolio_from_dict
from placement.model.jobs import jobs_table
from placement.kernels import kernels_for
from placement.core.problem import compile_problem
from placement.core.solution import Reason, Solution, tier_objectives
from placement.solvers.local_search import improve


def _problem(jobs: list[dict], price_b: float = 60.0):
    """Site a (region ra) and site b (region rb), 8 H100 each, power for one 8-GPU gang each."""
    portfolio = portfolio_from_dict({"sites": [
        {"id": "a", "region": "ra", "grid_mw": 0.011, "pue": 1.0, "pools": {"H100": 8}, "price_usd_per_mwh": 60.0},
        {"id": "b", "region": "rb", "grid_mw": 0.011, "pue": 1.0, "pools": {"H100": 8}, "price_usd_per_mwh": price_b},
    ]}, "test")
    return compile_problem(portfolio, jobs_table(jobs, portfolio, source="test"))


def _start(P, placed: dict[int, int]) -> Solution:
    """A plan with ``{job: pool}`` placed and every other job out-valued."""
    return Solution.from_pool_units({j: {p: 1} for j, p in placed.items()}, P.n_jobs,
                                    np.full(P.n_jobs, Reason.OUT_VALUED), solver="test")


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_ejection_chain_places_both(backend: str) -> None:
    """a fits only at site a, where b sits; b is worth more at a than at b (dearer power), so the
    swap alone loses, but the chain (a in, b moves on to site b) gains."""
    jobs = [{"id": "a", "gpus": 8, "value_usd_per_hour": 20.0, "regions": "ra"},
            {"id": "b", "gpus": 8, "value_usd_per_hour": 25.0}]
    P = _problem(jobs, price_b=400.0)
    start = _start(P, {1: 0})
    sol = improve(P, start, kernels_for(P, backend), deadline=time.monotonic() + 10)
    assert sorted(zip(sol.row_job.tolist(), sol.row_pool.tolist())) == [(0, 0), (1, 1)]
    assert sol.stats["ls_chains"] == 1
    assert tier_objectives(P, sol).sum() > tier_objectives(P, start).sum()


def test_a_higher_tier_gain_beats_a_lower_tier_loss() -> None:
    """An unplaced high-tier gang ejects a much more valuable low-tier one: lexicographically better."""
    jobs = [{"id": "hi", "gpus": 8, "value_usd_per_hour": 5.0, "priority": 1, "regions": "ra"},
            {"id": "lo", "gpus": 8, "value_usd_per_hour": 50.0, "priority": 0, "regions": "ra"}]
    P = _problem(jobs)
    sol = improve(P, _start(P, {1: 0}), kernels_for(P, "reference"), deadline=time.monotonic() + 10)
    assert sol.row_job.tolist() == [0] and sol.reason[1] == Reason.OUT_VALUED
    assert tier_objectives(P, sol)[0] > 0  # the high tier now earns


def test_no_move_without_a_gain() -> None:
    """Equal-value gangs: nothing moves (no churn), and the plan is returned as it was."""
    jobs = [{"id": "x", "gpus": 8, "value_usd_per_hour": 20.0, "regions": "ra"},
            {"id": "y", "gpus": 8, "value_usd_per_hour": 20.0, "regions": "ra"}]
    P = _problem(jobs)
    sol = improve(P, _start(P, {1: 0}), kernels_for(P, "reference"), deadline=time.monotonic() + 10)
    assert sol.row_job.tolist() == [1] and sol.stats["ls_moves"] == 0
