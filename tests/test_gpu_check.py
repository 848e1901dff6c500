"""bench/gpu_check.sh, the one-call GPU host check, cannot fail there on a typo: its CPU parts run here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_its_results(tmp_path: Path) -> None:
    """``--dry-run`` runs every step at tiny sizes on the CPU and writes the kernel and solve results."""
    env = {**os.environ, "RESULTS": str(tmp_path), "WHEELS": str(tmp_path / "no-wheels")}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert any(n.startswith("kernels_") and n.endswith("_generate.json") for n in names), names
    assert any(n.startswith("kernels_") and n.endswith("_synthetic.json") for n in names), names
    summary = json.loads(next(tmp_path.glob("gpu_check_*_solve_*.json")).read_text())
    assert summary["device"] and summary["jobs_total"] == 2000 and summary["bound"] >= summary["objective"]


def test_gpu_check_refuses_a_host_without_a_gpu(tmp_path: Path) -> None:
    """Without a device the real run stops before any step with exit 3 and says why (devices are
    hidden, so this holds on a GPU host too)."""
    env = {**os.environ, "RESULTS": str(tmp_path), "WHEELS": str(tmp_path / "no-wheels"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "no usable GPU" in proc.stderr
    assert list(tmp_path.iterdir()) == []
