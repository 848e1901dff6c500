"""Scenario files: their shape checks, grid expansion and each edit's effect (no solves here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from placement.io.config import load_config
from placement.errors import InputError
from placement.core.problem import compile_problem, same_structure, with_site_figures
from placement.sweep.scenarios import Scenario, ScenarioError, apply_scenario, load_scenarios

ROOT = Path(__file__).resolve().parents[1]
DEMO = load_config(ROOT / "configs" / "demo.toml")


def _apply(**edits: object):
    return apply_scenario(DEMO.portfolio, DEMO.jobs, DEMO.pairs, Scenario(name="s", **edits), seed=3)


def test_shipped_demo_scenarios_expand() -> None:
    """The demo file: five named scenarios plus a 2 x 2 grid without its all-base corner."""
    names = [s.name for s in load_scenarios(ROOT / "configs" / "scenarios" / "demo.toml")]
    assert names[:5] == ["dfw-curtailed-70", "hel-slips", "okc-conversion", "acme-demand-x2", "acme-lease-x2"]
    assert names[5:] == ["price=base,dfw-pue=1.12", "price=+50%,dfw-pue=1.25", "price=+50%,dfw-pue=1.12"]


@pytest.mark.parametrize(("text", "where"), [
    ('[[scenario]]\nname = "a"\nsites = [{ match = "*", grid_mw_scal = 0.5 }]\n', "grid_mw_scal"),
    ('[[scenario]]\nname = "a"\n[[scenario]]\nname = "a"\n', "used twice"),
    ('[[scenario]]\nname = "base"\n', "used twice"),
    ('[[scenario]]\nname = "a"\nsites = [{ match = "*", pue = 0.5 }]\n', "scenario[0].sites[0].pue"),
    ('title = "nothing"\n', "unknown field 'title'"),
    ("", "nothing to sweep"),
])
def test_bad_scenario_files_name_the_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_scenarios(path)
    assert str(path) in str(exc.value) and where in str(exc.value)


def test_site_edits() -> None:
    """Scale, set, switch off, re-pool and re-lease matching sites; others are untouched."""
    p, _, _ = _apply(sites=[{"match": "dfw-*", "grid_mw_scale": 0.5, "pools": {"H200": 32, "B200": 0}},
                            {"match": ["hel-1", "okc-1"], "online": False, "price_scale": 2.0},
                            {"match": "atl-1", "tenants": []}])
    base = DEMO.portfolio
    assert p.site("dfw-1").grid_mw == pytest.approx(base.site("dfw-1").grid_mw / 2)
    assert set(p.site("dfw-1").pools) == {"H100", "H200"} and p.site("dfw-1").pools["H200"].gpus == 32
    assert not p.site("hel-1").online and not p.site("okc-1").online
    assert p.site("okc-1").price_usd_per_mwh == pytest.approx(2 * base.site("okc-1").price_usd_per_mwh)
    assert p.site("atl-1").tenants is None and base.site("atl-1").tenants == ["acme"]
    assert p.site("dfw-1").pue == base.site("dfw-1").pue


def test_add_site_and_tenant_capacity() -> None:
    p, _, _ = _apply(add_sites=[{"id": "new-1", "region": "us-ok", "grid_mw": 0.3, "pools": {"H100": 64}}],
                     tenant_capacity=[{"tenant": "acme", "scale": 2.0}])
    assert p.site("new-1").pools["H100"].gpus == 64
    assert p.site("atl-1").grid_mw == pytest.approx(2 * DEMO.portfolio.site("atl-1").grid_mw)
    assert p.site("atl-1").pools["H200"].gpus == 2 * DEMO.portfolio.site("atl-1").pools["H200"].gpus


def test_demand_scaling() -> None:
    """Services scale replicas (value per replica kept); training gangs are cloned or dropped."""
    jobs = DEMO.jobs
    acme = pc.equal(jobs.column("tenant"), "acme").to_numpy(zero_copy_only=False)
    service = pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False)
    _, up, _ = _apply(demand=[{"tenant": "acme", "scale": 2.0}])
    assert up.num_rows == jobs.num_rows + int((acme & ~service).sum())
    ids = up.column("id").to_pylist()
    assert len(set(ids)) == len(ids) and any(i.endswith("#2") for i in ids)
    before = {r["id"]: r for r in jobs.to_pylist()}
    for r in up.to_pylist():
        if r["id"] in before and r["kind"] == "inference" and r["tenant"] == "acme":
            b = before[r["id"]]
            assert r["replicas"] == 2 * b["replicas"]
            assert r["value_usd_per_hour"] == pytest.approx(2 * b["value_usd_per_hour"])
    _, down, _ = _apply(demand=[{"kind": "training", "scale": 0.5}])
    n_training = int((~service).sum())
    assert down.num_rows == jobs.num_rows - (n_training - round(n_training * 0.5))


@pytest.mark.parametrize(("edits", "message"), [
    ({"sites": [{"match": "nowhere-*", "grid_mw": 1.0}]}, "matches no site"),
    ({"sites": [{"match": "dfw-1", "pools": {"H900": 8}}]}, "unknown GPU type 'H900'"),
    ({"sites": [{"match": "dfw-1", "grid_mw": 0.0, "reserve_mw": 0.1}]}, "exceeds grid_mw"),
    ({"demand": [{"tenant": "nobody", "scale": 2.0}]}, "no job matches"),
    ({"tenant_capacity": [{"tenant": "globex", "scale": 2.0}]}, "no site is leased only to 'globex'"),
])
def test_edits_that_do_not_fit_are_scenario_errors(edits: dict, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        _apply(**edits)


def test_site_figures_reuse_the_compiled_problem() -> None:
    """A curtailment or price change is applied to the compiled arrays, equal to a fresh compile."""
    edited, jobs, pairs = _apply(sites=[{"match": "*", "grid_mw_scale": 0.8, "price_scale": 1.5, "pue": 1.1}])
    assert jobs is DEMO.jobs and same_structure(DEMO.portfolio, edited)
    reused = with_site_figures(compile_problem(DEMO.portfolio, DEMO.jobs, DEMO.pairs), edited)
    fresh = compile_problem(edited, jobs, pairs)
    for name in ("site_cap_mw", "site_pue", "site_energy_usd_per_mwh", "site_carbon_usd_per_mwh", "class_pool"):
        np.testing.assert_array_equal(getattr(reused, name), getattr(fresh, name))
    offline, _, _ = _apply(sites=[{"match": "hel-1", "online": False}])
    assert not same_structure(DEMO.portfolio, offline)
