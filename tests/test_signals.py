"""Stopping a solve: SIGTERM and SIGINT write the best valid plan so far; SIGKILL never leaves a
partial plan or summary at the target path. These run the real command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from placement.generate.families import write_instance
from placement.io.config import load_config
from placement.io.tables import read_jobs
from placement.validate.validator import validate_plan

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _instance(tmp_path: Path) -> tuple[Path, Path]:
    paths = write_instance("neocloud", 3000, 30, 0, tmp_path / "inst")
    return next(p for p in paths if p.suffix == ".toml"), next(p for p in paths if p.name.startswith("jobs"))


def _start(config: Path, jobs: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "placement.cli.main", "solve", str(config), "--jobs", str(jobs),
           "--out", str(out / "plan.parquet"), "--summary", str(out / "summary.json"), "--time-limit", "60",
           "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_solving(proc: subprocess.Popen, seconds: float) -> None:
    """Let the process get past its imports and into the solve (a 60 s limit leaves it there)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_writes_the_best_plan_and_says_interrupted(sig: signal.Signals, tmp_path: Path) -> None:
    """SIGTERM (Kubernetes, Slurm) and SIGINT stop the solve: exit 128 + signal, a plan that passes
    the validator, and a summary whose status is ``interrupted``."""
    config, jobs = _instance(tmp_path)
    out = tmp_path / "out"
    proc = _start(config, jobs, out)
    _wait_for_solving(proc, 8.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + int(sig), err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    cfg = load_config(config)
    table = read_jobs(jobs, cfg.portfolio)
    plan = pq.read_table(out / "plan.parquet")
    assert validate_plan(cfg.portfolio, table, plan) == []
    assert sorted(set(plan.column("job_id").to_pylist())) == sorted(table.column("id").to_pylist())
    assert "Traceback" not in err


def test_sigkill_never_leaves_a_partial_output(tmp_path: Path) -> None:
    """Killed at seeded random moments, a solve leaves either no plan and summary, or complete ones."""
    config, jobs = _instance(tmp_path)
    rng = np.random.default_rng(7)
    for k, delay in enumerate(rng.uniform(2.0, 7.0, size=3)):
        out = tmp_path / f"out{k}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "placement.cli.main", "solve", str(config), "--jobs", str(jobs),
             "--out", str(out / "plan.parquet"), "--summary", str(out / "summary.json"), "--time-limit",
             f"{delay / 2:.2f}", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait(timeout=60)
        if (out / "plan.parquet").exists():
            assert pq.read_table(out / "plan.parquet").num_rows >= 3000
        if (out / "summary.json").exists():
            assert json.loads((out / "summary.json").read_text())["jobs_total"] == 3000
        os.sync()


def _sweep(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "placement.cli.main", "sweep", str(ROOT / "configs" / "demo.toml"),
            "--scenarios", str(ROOT / "configs" / "scenarios" / "demo.toml"), "--out", str(out),
            "--workers", "1", "--time-limit", "1", "--backend", "cpu", "--quiet", *extra]


def test_sweep_resume_after_sigkill_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """A sweep killed (with its workers) at seeded moments, then resumed, has every scenario
    exactly once; those finished before the kill are resumed as they were, not solved again."""
    rng = np.random.default_rng(11)
    out = tmp_path / "sweep"
    full = subprocess.run(_sweep(tmp_path / "reference"), capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    expected = sorted(pq.read_table(tmp_path / "reference" / "sweep.parquet").column("scenario").to_pylist())
    for delay in rng.uniform(3.0, 9.0, size=2):
        proc = subprocess.Popen(_sweep(out, "--resume"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)  # the process pool's workers die with it
        proc.wait(timeout=60)
    finished = {p.parent.name: json.loads(p.read_text()) for p in (out / "scenarios").glob("*/row.json")}
    done = subprocess.run(_sweep(out, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(out / "sweep.parquet").to_pylist()
    assert sorted(r["scenario"] for r in rows) == expected  # each once: none lost, none twice
    for r in rows:
        was = finished.get(r["scenario"])
        assert r["resumed"] == (was is not None)
        if was is not None:
            assert r["objective_usd_per_hour"] == was["objective_usd_per_hour"]
        if r["status"] == "ok":
            assert pq.read_table(out / "scenarios" / r["scenario"] / "plan.parquet").num_rows > 0
