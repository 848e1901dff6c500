"""How fast SIGTERM turns a running solve into a written, valid plan.

    python -m bench.sigterm --jobs 20000 --sites 200 --after 15

Generates a ``neocloud`` instance, starts ``placement solve`` with a long time limit, sends
SIGTERM ``--after`` seconds in, and reports the seconds from the signal to the process's exit,
its exit code, the plan's status and whether the plan passes the validator.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from placement.generate.families import write_instance
from placement.io.config import load_config
from placement.io.tables import read_jobs
from placement.validate.validator import validate_plan


def run(n_jobs: int, n_sites: int, after_s: float, limit_s: float) -> dict:
    """One measurement; returns the figures."""
    with tempfile.TemporaryDirectory() as d:
        paths = write_instance("neocloud", n_jobs, n_sites, 0, Path(d) / "inst")
        config = next(p for p in paths if p.suffix == ".toml")
        jobs = next(p for p in paths if p.name.startswith("jobs"))
        out = Path(d) / "out"
        proc = subprocess.Popen([sys.executable, "-m", "placement.cli.main", "solve", str(config), "--jobs",
                                 str(jobs), "--out", str(out / "plan.parquet"), "--summary",
                                 str(out / "summary.json"), "--time-limit", str(limit_s), "--quiet"])
        time.sleep(after_s)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=limit_s + 60)
        exit_s = time.monotonic() - sent
        summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
        valid = None
        if (out / "plan.parquet").exists():
            cfg = load_config(config)
            valid = validate_plan(cfg.portfolio, read_jobs(jobs, cfg.portfolio), pq.read_table(out / "plan.parquet")) == []
        return {"jobs": n_jobs, "sites": n_sites, "signal_after_s": after_s, "exit_code": code,
                "seconds_to_exit": round(exit_s, 2), "status": summary.get("status"),
                "stages": summary.get("stats", {}).get("stages"), "valid": valid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20_000)
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--after", type=float, default=15.0, help="seconds after the start to send SIGTERM")
    ap.add_argument("--time-limit", type=float, default=120.0)
    a = ap.parse_args()
    print(json.dumps(run(a.jobs, a.sites, a.after, a.time_limit), indent=2))


if __name__ == "__main__":
    main()
