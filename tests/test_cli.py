"""The CLI: solve, validate, info and their exit codes and outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.kernels import gpu_status

DATA = Path(__file__).parent / "data"
TINY = str(DATA / "tiny.toml")
runner = CliRunner()


def test_solve_writes_plan_and_summary(tmp_path: Path) -> None:
    """solve writes the plan and summary and prints the report."""
    plan, summary = tmp_path / "plan.parquet", tmp_path / "summary.json"
    result = runner.invoke(app, ["solve", TINY, "--out", str(plan), "--summary", str(summary),
                                 "--backend", "reference", "--solver", "greedy", "--seed", "4"])
    assert result.exit_code == 0, result.output
    assert "objective" in result.output and "tx-1" in result.output
    data = json.loads(summary.read_text())
    assert data["seed"] == 4 and data["solver"] == "greedy" and data["jobs_total"] == 4
    assert plan.stat().st_size > 0


def test_solve_json_is_machine_readable() -> None:
    """--json prints only the summary JSON."""
    result = runner.invoke(app, ["solve", TINY, "--json", "--backend", "reference"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["jobs_total"] == 4


def test_solve_quiet_prints_nothing() -> None:
    """--quiet prints nothing on success."""
    result = runner.invoke(app, ["solve", TINY, "--quiet", "--backend", "reference"])
    assert result.exit_code == 0 and result.output == ""


def test_validate_accepts_then_rejects_a_broken_plan(tmp_path: Path) -> None:
    """validate exits 0 on a solver's plan and 1 with the violation after the plan is broken."""
    plan = tmp_path / "plan.csv"
    assert runner.invoke(app, ["solve", TINY, "--out", str(plan), "--quiet", "--backend", "reference"]).exit_code == 0
    ok = runner.invoke(app, ["validate", TINY, "--plan", str(plan)])
    assert ok.exit_code == 0, ok.output
    table = pacsv.read_csv(plan)
    broken = tmp_path / "broken.csv"
    pacsv.write_csv(table.slice(1), broken)  # drop a row: a job goes missing or loses replicas
    bad = runner.invoke(app, ["validate", TINY, "--plan", str(broken)])
    assert bad.exit_code == 1, bad.output
    assert "violation" in bad.output


@pytest.mark.skipif(gpu_status()[0], reason="a GPU is present")
def test_gpu_backend_without_gpu_exits_2() -> None:
    """Asking for the GPU backend where there is none is a clear error, not a fallback."""
    result = runner.invoke(app, ["solve", TINY, "--backend", "gpu"])
    assert result.exit_code == 2
    assert "gpu" in result.output


def test_unknown_solver_exits_2() -> None:
    """An unknown solver name is rejected."""
    result = runner.invoke(app, ["solve", TINY, "--solver", "magic", "--backend", "reference"])
    assert result.exit_code == 2
    assert "magic" in result.output


def test_info_lists_backends() -> None:
    """info names the version, cores, Numba and the GPU status."""
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 0
    for word in ("placement", "cpu cores", "numba", "gpu"):
        assert word in result.output


def test_outputs_get_the_umask_mode_and_appear_together(tmp_path) -> None:
    """Plan and summary are written with the umask's mode (not mkstemp's 0600), and a failure in
    the second leaves neither."""
    import os  # noqa: PLC0415

    from placement.io.tables import FILE_MODE, json_writer, write_together  # noqa: PLC0415

    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    out, summary = tmp_path / "plan.csv", tmp_path / "summary.json"
    result = runner.invoke(app, ["solve", TINY, "--out", str(out), "--summary", str(summary), "--backend", "reference"])
    assert result.exit_code in (0, 3), result.output
    assert out.stat().st_mode & 0o777 == FILE_MODE and summary.stat().st_mode & 0o777 == FILE_MODE

    def broken(path) -> None:
        raise OSError("disk full")

    a, b = tmp_path / "a.json", tmp_path / "b.json"
    with pytest.raises(OSError, match="disk full"):
        write_together([(a, json_writer({"x": 1})), (b, broken)])
    assert not a.exists() and not b.exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "plan.csv", "summary.json"]
