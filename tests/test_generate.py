"""Instance generator and shipped configs: files load and validate, seeds reproduce, shapes hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from placement.io.config import load_config, portfolio_from_dict
from placement.generate.families import SHAPED_FAMILIES, generate, write_instance
from placement.io.tables import read_jobs
from placement.model.jobs import JOB_COLUMNS, validate_jobs
from placement.core.problem import Filter, compile_problem

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SHIPPED = sorted(CONFIGS.glob("*.toml"))


def _load(toml: Path, parquet: Path):
    portfolio = load_config(toml).portfolio
    return portfolio, read_jobs(parquet, portfolio)


@pytest.mark.parametrize("family", SHAPED_FAMILIES)
def test_family_writes_files_that_load(family: str, tmp_path: Path) -> None:
    """Each family at 300 jobs x 10 sites writes a portfolio and jobs that load and validate."""
    toml, parquet = write_instance(family, 300, 10, seed=1, out_dir=tmp_path)
    assert toml == tmp_path / "portfolio.toml" and parquet == tmp_path / "jobs.parquet"
    assert toml.read_text().startswith(f"# placement generate: family={family} seed=1")
    portfolio, jobs = _load(toml, parquet)
    assert len(portfolio.sites) == 10
    assert jobs.num_rows == 300
    assert jobs.column_names == [c.name for c in JOB_COLUMNS]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jobs.parquet", "portfolio.toml"]  # no temp files


@pytest.mark.parametrize("family", SHAPED_FAMILIES)
def test_every_job_has_an_eligible_site(family: str) -> None:
    """Generated jobs are all eligible somewhere (filters leave none without a candidate)."""
    config, jobs = generate(family, 400, 12, seed=3)
    portfolio = portfolio_from_dict(config, family)
    problem = compile_problem(portfolio, validate_jobs(jobs, portfolio, family))
    assert not np.any(problem.job_filter != Filter.OK)


def test_same_seed_same_instance() -> None:
    """Same seed gives the identical portfolio and jobs table."""
    a_cfg, a_jobs = generate("neocloud", 500, 8, seed=42)
    b_cfg, b_jobs = generate("neocloud", 500, 8, seed=42)
    assert a_jobs.equals(b_jobs)
    assert a_cfg == b_cfg


def test_different_seed_different_instance() -> None:
    """A different seed gives a different jobs table."""
    _, a = generate("neocloud", 500, 8, seed=1)
    _, b = generate("neocloud", 500, 8, seed=2)
    assert not a.equals(b)


def test_frontier_gangs_are_4k_to_32k() -> None:
    """Frontier training gangs stay within 4,096-32,768 GPUs (Llama 3 405B, GPT-4 scale)."""
    _, jobs = generate("frontier", 300, 10, seed=5)
    kind = jobs.column("kind").to_numpy(zero_copy_only=False)
    gpus = jobs.column("gpus").to_numpy()[kind == "training"]
    assert gpus.size > 0
    assert gpus.min() >= 4096 and gpus.max() <= 32768


def test_neocloud_gang_mix_follows_trace() -> None:
    """Neocloud gangs are mostly 1-8 GPUs with a thin tail above 64 (Helios mix)."""
    _, jobs = generate("neocloud", 20_000, 50, seed=0)
    kind = jobs.column("kind").to_numpy(zero_copy_only=False)
    gpus = jobs.column("gpus").to_numpy()[kind == "training"]
    assert 0.68 < np.mean(gpus == 1) < 0.76
    assert np.mean(gpus <= 8) > 0.9
    assert 0 < np.mean(gpus > 64) < 0.01
    assert abs(np.mean(kind == "inference") - 0.2) < 0.01


def _ratios(portfolio, jobs) -> tuple[float, float]:
    """Demand / inventory in GPUs, and in facility MW at the inventory's mean kW x PUE per GPU."""
    gpus = sum(p.gpus for s in portfolio.sites for p in s.pools.values())
    kw = sum(p.gpus * portfolio.gpu_types[t].kw_per_gpu * s.pue for s in portfolio.sites for t, p in s.pools.items())
    grid = sum(s.grid_mw for s in portfolio.sites)
    demand = pc.sum(jobs["gpus"]).as_py() + pc.sum(pc.multiply(jobs["gpus_per_replica"], jobs["replicas"])).as_py()
    return demand / gpus, demand * kw / gpus / 1000 / grid


@pytest.mark.parametrize("family, gpu_lo, gpu_hi, mw_lo, mw_hi", [
    ("neocloud", 0.9, 1.1, 0.9, 1.2),
    ("frontier", 0.9, 1.1, 1.2, 1.5),
    ("power-bound", 0.5, 0.8, 1.5, 2.0),
    ("gpu-bound", 1.5, 2.0, 0.5, 0.8),
])
def test_families_bind_as_named(family: str, gpu_lo: float, gpu_hi: float, mw_lo: float, mw_hi: float) -> None:
    """Demand over inventory (GPUs) and over grid (MW) match each family's tightness."""
    config, jobs = generate(family, 20_000 if family != "frontier" else 400, 40, seed=0)
    gpu_ratio, mw_ratio = _ratios(portfolio_from_dict(config, family), jobs)
    assert gpu_lo < gpu_ratio < gpu_hi
    assert mw_lo < mw_ratio < mw_hi


def test_inference_services_are_well_formed() -> None:
    """Inference jobs carry latency budgets, spread within replicas, and reachable demand regions."""
    _, jobs = generate("inference", 2000, 20, seed=9)
    inf = jobs.filter(pc.equal(jobs["kind"], "inference")).to_pydict()
    assert len(inf["id"]) > 1500
    budgets = [b for b in inf["max_latency_ms"] if b is not None]
    assert len(budgets) > 0.8 * len(inf["id"]) and min(budgets) >= 20
    for reps, k, share in zip(inf["replicas"], inf["min_sites"], inf["max_share_per_site"]):
        assert 1 <= k <= min(reps, 3) and np.floor(share * reps + 1e-9) >= 1
    assert set(inf["gpus_per_replica"]) <= {1, 2, 4, 8}


@pytest.mark.parametrize("config", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_config_loads(config: Path) -> None:
    """Every config in configs/ loads, starts with a comment header and keeps power and pools consistent."""
    loaded = load_config(config)
    assert config.read_text().startswith("#")
    for site in loaded.portfolio.sites:
        it_mw = sum(p.gpus * (p.kw_per_gpu or loaded.portfolio.gpu_types[t].kw_per_gpu)
                    for t, p in site.pools.items()) / 1000
        assert 0.5 < it_mw * site.pue / site.grid_mw < 1.6, site.id


def test_expected_configs_are_shipped() -> None:
    """The three named portfolios exist."""
    assert {p.stem for p in SHIPPED} >= {"demo", "neocloud-1gw", "hyperscale-buildout"}


def test_demo_has_required_and_unplaceable_jobs() -> None:
    """The demo has ~40 inline jobs, two tiers, one required job and one with no eligible site."""
    cfg = load_config(CONFIGS / "demo.toml")
    assert cfg.jobs is not None and 30 <= cfg.jobs.num_rows <= 50
    assert set(cfg.jobs["priority"].to_pylist()) == {0, 1}
    problem = compile_problem(cfg.portfolio, cfg.jobs)
    assert problem.job_required.sum() == 1
    assert problem.job_filter[problem.job_required][0] == Filter.OK
    assert list(problem.job_filter[problem.job_filter != Filter.OK]) == [Filter.REGION]


def test_hyperscale_has_an_offline_site_and_liquid_pools() -> None:
    """The build-out has tens of sites, GB200 pools on liquid-cooled sites, one not yet online."""
    portfolio = load_config(CONFIGS / "hyperscale-buildout.toml").portfolio
    assert len(portfolio.sites) >= 20
    assert any(not s.online for s in portfolio.sites)
    assert all("liquid" in s.cooling for s in portfolio.sites if "GB200" in s.pools)


@pytest.mark.parametrize("family", SHAPED_FAMILIES)
def test_generate_on_base_portfolio(family: str, tmp_path: Path) -> None:
    """With base=neocloud-1gw the sites are reused and demand is sized to the portfolio."""
    base_path = CONFIGS / "neocloud-1gw.toml"
    n_jobs = 60 if family == "frontier" else 3000
    toml, parquet = write_instance(family, n_jobs, 0, seed=2, out_dir=tmp_path, base_config=base_path)
    portfolio, jobs = _load(toml, parquet)
    base = load_config(base_path).portfolio
    assert [s.id for s in portfolio.sites] == [s.id for s in base.sites]
    assert portfolio.sites == base.sites
    gpus = sum(p.gpus for s in base.sites for p in s.pools.values())
    demand = pc.sum(jobs["gpus"]).as_py() + pc.sum(pc.multiply(jobs["gpus_per_replica"], jobs["replicas"])).as_py()
    assert 0.5 * gpus < demand < 2.5 * gpus
    problem = compile_problem(portfolio, jobs)
    assert np.mean(problem.job_filter != Filter.OK) < 0.01
    # Jobs of the tenant holding the leased sites exist, so that capacity is usable.
    assert "coreweave" in set(jobs["tenant"].to_pylist())


def test_bad_arguments() -> None:
    """Unknown family and empty sizes are errors."""
    with pytest.raises(ValueError, match="unknown family"):
        generate("cloud", 10, 2, 0)
    with pytest.raises(ValueError):
        generate("neocloud", 0, 2, 0)
