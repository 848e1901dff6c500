"""The benchmark runner end to end on a tiny size, so ``python -m bench`` cannot rot (issue 6).

Speed is never asserted here: only that every solver builds, returns a plan the
validator accepts, and that the JSON, Markdown and PNG files are written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import peers
from bench.instances import parse_sizes
from bench.runner import loglog_slope
from placement import SolveOptions, compile_problem, validate_plan
from placement.core.solution import tier_objectives
from placement.plan import build_plan
from placement.solvers.exact import solve_exact
from tests.strategies import random_instance

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "bench", "--sizes", "XS", "--families", "neocloud", "--time-limit", "2",
           "--backend", "cpu", "--kernel-backends", "cpu", "--out", str(out / "results"),
           "--cache", str(out / "cache"), "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((out / "results").glob("*.json"))
    assert len(files) == 1
    return json.loads(files[0].read_text()), out / "results", proc


def test_runner_writes_every_output(smoke):
    """JSON, Markdown and both PNGs land in --out, named <date>-<host>-<backend>."""
    doc, out, proc = smoke
    stem = Path(doc["paths"]["json"]).stem
    assert stem.endswith("-cpu")
    for suffix in (".md", "-scaling.png", "-quality.png"):
        assert (out / f"{stem}{suffix}").stat().st_size > 0
    md = (out / f"{stem}.md").read_text()
    assert "## neocloud / XS" in md and "| ours |" in md and "## Where ours loses" in md
    assert "device:" in proc.stdout


def test_every_solver_builds_a_valid_plan(smoke):
    """Ours and the three peers each return a plan that passes the validator."""
    doc, _, _ = smoke
    (inst,) = doc["instances"]
    assert set(inst["results"]) == {"ours", "cpsat", "highs", "ffd"}
    for name, r in inst["results"].items():
        assert r["built"], (name, r.get("note"))
        assert r["valid"], (name, r.get("violation_examples"), r.get("note"))
        assert r["objective"] is not None and math.isfinite(r["objective"]), name
        assert r["peak_rss_mb"] > 0


def test_bounds_and_gaps_are_consistent(smoke):
    """The best bound is the smallest solver bound; a peer's bound covers its own plan; gaps use the best."""
    doc, _, _ = smoke
    (inst,) = doc["instances"]
    res = inst["results"]
    best = inst["best_bound"]
    assert best == min(r["bound"] for r in res.values() if r.get("bound") is not None)
    for name in ("cpsat", "highs"):
        assert res[name]["bound"] >= res[name]["objective"] - 1e-9 * abs(res[name]["objective"])
    for r in res.values():
        assert r["gap_to_best"] == pytest.approx((best - r["objective"]) / abs(best))
    assert sorted(r["lex_rank"] for r in res.values()) == [1, 2, 3, 4]


def test_scaling_section(smoke):
    """One kernel pass is timed for the requested backend; slopes need two sizes, so none here."""
    doc, _, _ = smoke
    (k,) = doc["kernels"]
    assert k["backend"] == "cpu" and k["status"] == "ok" and k["pass_seconds"] > 0
    assert doc["scaling"]["kernel_pass"]["cpu"]["slope"] is None


@pytest.mark.parametrize("seed", range(12))
def test_peers_plans_pass_the_validator(seed):
    """On random small instances (pairs, pinned, current placements, budgets, required jobs) every
    peer's plan is valid, and a CP-SAT peer that proves optimality matches the exact top tier."""
    inst = random_instance(seed, 1 + seed % 4, 5 + seed % 8, with_required=seed % 3 == 0)
    budget = [{}, {"max_moves": 0}, {"max_moves": 1}, {"max_migration_usd": 200.0}][seed % 4]
    opts = SolveOptions(time_limit_s=5, seed=0, **budget)
    P = compile_problem(inst.portfolio, inst.jobs, inst.pairs, opts)
    exact = solve_exact(P, opts)
    for name in peers.PEERS:
        r = peers.run(name, P, 5.0, 0)
        assert r.built
        if r.solution is None:  # only an infeasible required job leaves a MILP peer without a plan
            assert name != "ffd" and exact.status == "infeasible", (name, r.status, r.note)
            continue
        plan = build_plan(P, r.solution, seconds=r.seconds, seed=0)
        bad = [v for v in validate_plan(inst.portfolio, inst.jobs, plan.table, inst.pairs, opts)
               if v.kind != "required"]
        assert not bad, (name, [v.message for v in bad])
        assert r.objective == pytest.approx(plan.summary["objective"], rel=1e-9, abs=1e-9)
        if name == "cpsat" and r.status == "optimal" and exact.status == "optimal":
            tol = P.job_units.sum() * r.native["q_usd_per_hour"] + 1e-6
            assert tier_objectives(P, r.solution)[0] == pytest.approx(tier_objectives(P, exact)[0], abs=tol)
            assert r.bound >= r.objective - 1e-9


def test_loglog_slope():
    """A power law's exponent comes back from the fit."""
    xs = [1e3, 1e4, 1e5]
    assert loglog_slope(xs, [2 * x**1.5 for x in xs]) == pytest.approx(1.5)
    assert loglog_slope([1e3], [1.0]) is None


@pytest.mark.parametrize("text, expect", [("S", [(1_000, 20)]), ("XS,M", [(200, 8), (10_000, 100)]),
                                          ("5kx40", [(5_000, 40)])])
def test_parse_sizes(text, expect):
    """Named sizes and JOBSxSITES both parse."""
    assert [(s.n_jobs, s.n_sites) for s in parse_sizes(text)] == expect


def test_parse_sizes_rejects_unknown():
    """A typo is an error, not a silent default."""
    with pytest.raises(ValueError):
        parse_sizes("XXL")
