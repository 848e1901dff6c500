"""Scenario sweeps end to end: directions of change, executors agreeing, resume, dead workers, CLI."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.io.config import load_config
from placement.core.executors import make_executor
from placement.sweep.scenarios import Scenario
from placement.sweep.run import run_sweep, solve_scenario, table_rows

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_config(ROOT / "configs" / "demo.toml")
# The demo solves to proven optimality in about a second, so objectives are reproducible.
OPTIONS = DEMO.portfolio.solve.model_copy(update={"time_limit_s": 20.0, "backend": "cpu", "seed": 7})
SCENARIOS = [
    Scenario(name="dfw-curtailed", sites=[{"match": "dfw-1", "grid_mw_scale": 0.6}]),
    Scenario(name="okc-2-online", add_sites=[{"id": "okc-2", "region": "us-ok", "grid_mw": 0.3,
                                              "pools": {"H100": 128}, "price_usd_per_mwh": 62.6}]),
    Scenario(name="typo", sites=[{"match": "dfx-*", "grid_mw_scale": 0.5}]),
]


def _rows(table) -> dict[str, dict]:
    return {r["scenario"]: r for r in table_rows(table)}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    out = tmp_path_factory.mktemp("sweep")
    with make_executor("local", 2) as ex:
        table = run_sweep(DEMO.portfolio, DEMO.jobs, DEMO.pairs, SCENARIOS, OPTIONS, out, ex)
    return out, _rows(table)


def test_directions_of_change(local_sweep: tuple[Path, dict[str, dict]]) -> None:
    """A curtailed site stays under its new cap; an added site never lowers the objective."""
    out, rows = local_sweep
    base, curtailed, added = rows["base"], rows["dfw-curtailed"], rows["okc-2-online"]
    assert base["status"] == curtailed["status"] == added["status"] == "ok"
    cap = 0.6 * DEMO.portfolio.site("dfw-1").grid_mw
    assert curtailed["site_mw_cap"]["dfw-1"] == pytest.approx(cap)
    assert curtailed["site_mw_used"]["dfw-1"] <= cap + 1e-9
    assert curtailed["objective_usd_per_hour"] <= base["objective_usd_per_hour"] + 1e-6
    assert added["objective_usd_per_hour"] >= base["objective_usd_per_hour"] - 1e-6
    assert added["delta_vs_base_usd_per_hour"] == pytest.approx(
        added["objective_usd_per_hour"] - base["objective_usd_per_hour"])
    # A pure site-figure change reuses the compiled base problem; a new site compiles afresh.
    assert json.loads((out / "scenarios" / "dfw-curtailed" / "row.json").read_text())["reused_problem"]
    assert not json.loads((out / "scenarios" / "okc-2-online" / "row.json").read_text())["reused_problem"]


def test_a_bad_scenario_fails_alone(local_sweep: tuple[Path, dict[str, dict]]) -> None:
    out, rows = local_sweep
    assert rows["typo"]["status"] == "error: input" and "matches no site" in rows["typo"]["error"]
    assert [r for r in rows.values() if r["status"].startswith("error")] == [rows["typo"]]
    table = pq.read_table(out / "sweep.parquet")
    assert table.column("scenario").to_pylist() == ["base", "dfw-curtailed", "okc-2-online", "typo"]
    assert (out / "sweep.png").stat().st_size > 0 and "matches no site" in (out / "sweep.md").read_text()
    for name in ("base", "dfw-curtailed", "okc-2-online"):
        assert (out / "scenarios" / name / "plan.parquet").is_file()


def test_resume_skips_finished_scenarios(local_sweep: tuple[Path, dict[str, dict]]) -> None:
    """Finished scenarios with the same inputs are skipped; a changed one is solved again."""
    out, rows = local_sweep
    stamp = (out / "scenarios" / "base" / "row.json").stat().st_mtime_ns
    changed = [SCENARIOS[0], SCENARIOS[1].model_copy(update={"description": "edited"}),
               Scenario(name="okc-2-bigger", add_sites=[{"id": "okc-2", "region": "us-ok", "grid_mw": 0.5,
                                                          "pools": {"H100": 128}}])]
    with make_executor("local", 1) as ex:
        again = _rows(run_sweep(DEMO.portfolio, DEMO.jobs, DEMO.pairs, changed, OPTIONS, out, ex, resume=True))
    assert again["base"]["resumed"] and again["dfw-curtailed"]["resumed"]
    assert not again["okc-2-online"]["resumed"] and not again["okc-2-bigger"]["resumed"]
    assert (out / "scenarios" / "base" / "row.json").stat().st_mtime_ns == stamp
    assert again["base"]["objective_usd_per_hour"] == rows["base"]["objective_usd_per_hour"]


def test_ray_matches_local(local_sweep: tuple[Path, dict[str, dict]], tmp_path: Path) -> None:
    """Ray in local mode (2 CPUs) gives the same results as the process pool for the same seed."""
    pytest.importorskip("ray")
    _, local = local_sweep
    with make_executor("ray", 2) as ex:
        rows = _rows(run_sweep(DEMO.portfolio, DEMO.jobs, DEMO.pairs, SCENARIOS, OPTIONS, tmp_path, ex))
    assert rows.keys() == local.keys()
    for name, row in rows.items():
        assert row["status"] == local[name]["status"]
        if row["status"] == "ok":
            assert row["objective_usd_per_hour"] == pytest.approx(local[name]["objective_usd_per_hour"], rel=1e-9)


def solve_or_die(inputs, scenario: Scenario) -> dict:
    """``solve_scenario``, except that the first attempt at 'victim' kills its own worker."""
    marker = inputs.out / "victim-killed-once"
    if scenario.name == "victim" and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return solve_scenario(inputs, scenario)


@pytest.mark.parametrize("kind", ["local", "ray"])
def test_dead_worker_is_retried(kind: str, tmp_path: Path) -> None:
    """A worker killed mid-sweep: its scenario runs again; no row is lost or duplicated."""
    if kind == "ray":
        pytest.importorskip("ray")
    scenarios = [Scenario(name="victim", sites=[{"match": "okc-1", "grid_mw_scale": 0.5}]), SCENARIOS[0]]
    with make_executor(kind, 2) as ex:
        table = run_sweep(DEMO.portfolio, DEMO.jobs, DEMO.pairs, scenarios, OPTIONS, tmp_path, ex, task=solve_or_die)
    names = table.column("scenario").to_pylist()
    assert names == ["base", "victim", "dfw-curtailed"]
    assert (tmp_path / "victim-killed-once").exists()
    assert table.column("status").to_pylist() == ["ok", "ok", "ok"]


def test_sweep_cli(tmp_path: Path) -> None:
    """The command: exit 1 when a scenario failed (the rest written), 2 for a bad file or executor."""
    scenarios = tmp_path / "s.toml"
    scenarios.write_text('[[scenario]]\nname = "hel-off"\nsites = [{ match = "hel-1", online = false }]\n'
                         '[[scenario]]\nname = "typo"\nsites = [{ match = "hel-9", online = false }]\n')
    runner = CliRunner()
    result = runner.invoke(app, ["sweep", str(ROOT / "configs" / "demo.toml"), "--scenarios", str(scenarios),
                                 "--out", str(tmp_path / "out"), "--workers", "1", "--time-limit", "10", "--json"])
    assert result.exit_code == 1, result.output
    rows = {r["scenario"]: r for r in json.loads(result.output)}
    assert rows["hel-off"]["status"] == "ok" and rows["hel-off"]["site_mw_used"]["hel-1"] == 0.0
    assert rows["typo"]["status"] == "error: input"
    scenarios.write_text('[[scenario]]\nname = "x"\nsites = [{ match = "*", grid_mw_scael = 1 }]\n')
    result = runner.invoke(app, ["sweep", str(ROOT / "configs" / "demo.toml"), "--scenarios", str(scenarios)])
    assert result.exit_code == 2 and "grid_mw_scael" in result.output
    result = runner.invoke(app, ["sweep", str(ROOT / "configs" / "demo.toml"), "--scenarios",
                                 str(ROOT / "configs" / "scenarios" / "demo.toml"), "--executor", "dask"])
    assert result.exit_code == 2 and "executor" in result.output


def test_ray_missing_is_a_clear_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without Ray installed, --executor ray exits 2 naming the extra to install."""
    import sys

    from placement.errors import BackendUnavailableError

    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(BackendUnavailableError, match=r"\[distributed\]"):
        make_executor("ray", 1)
    result = CliRunner().invoke(app, ["sweep", str(ROOT / "configs" / "demo.toml"), "--scenarios",
                                      str(ROOT / "configs" / "scenarios" / "demo.toml"), "--executor", "ray",
                                      "--out", str(tmp_path)])
    assert result.exit_code == 2 and "distributed" in result.output
