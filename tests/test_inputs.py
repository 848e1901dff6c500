"""Bad input: every case exits 2 naming the file, the field or row, and the value; no output left."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from placement.cli.main import app
from placement.io.config import load_config
from placement.errors import InputError
from placement.io.tables import read_jobs

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny.toml"
runner = CliRunner()


def _config(tmp_path: Path, text: str, name: str = "c.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _site(**overrides: str) -> str:
    fields = {"id": '"a"', "region": '"us-tx"', "grid_mw": "10.0", "pue": "1.2", "pools": "{ H100 = 64 }"}
    fields.update(overrides)
    return "[[sites]]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()) + "\n"


JOB = '[[jobs]]\nid = "j1"\ngpus = 8\nvalue_usd_per_hour = 20.0\n'


def _solve_fails(args: list[str], tmp_path: Path, *needles: str) -> str:
    out = tmp_path / "plan.parquet"
    result = runner.invoke(app, ["solve", *args, "--out", str(out), "--backend", "reference"])
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, (needle, result.output)
    assert not out.exists()
    assert not list(tmp_path.glob(".plan.parquet.*"))
    return result.output


@pytest.mark.parametrize(
    ("site", "needles"),
    [
        ({"grid_mw": "-5.0"}, ["sites[0].grid_mw", "-5.0"]),
        ({"grid_mw": "nan"}, ["sites[0].grid_mw", "nan"]),
        ({"grid_mw": "inf"}, ["sites[0].grid_mw", "inf"]),
        ({"pue": "0.9"}, ["sites[0].pue", "0.9"]),
        ({"grid_mw": '"ten"'}, ["sites[0].grid_mw", "ten"]),
        ({"pools": "{ H10 = 8 }"}, ["sites[0].pools", "H10", "did you mean 'H100'"]),
        ({"pools": "{ H100 = -8 }"}, ["sites[0].pools.H100", "-8"]),
        ({"gird_mw": "3.0"}, ["sites[0].gird_mw", "did you mean 'grid_mw'"]),
    ],
)
def test_bad_site_field(tmp_path: Path, site: dict, needles: list[str]) -> None:
    """Impossible or misspelt site fields are rejected with the path and value."""
    path = _config(tmp_path, _site(**site) + JOB)
    _solve_fails([str(path)], tmp_path, "c.toml", *needles)


def test_missing_file(tmp_path: Path) -> None:
    """A missing config names the file."""
    _solve_fails([str(tmp_path / "nope.toml")], tmp_path, "nope.toml", "file not found")


def test_unknown_extension(tmp_path: Path) -> None:
    """An unknown config extension is rejected."""
    path = _config(tmp_path, "x", name="c.ini")
    _solve_fails([str(path)], tmp_path, "c.ini", "unknown extension '.ini'")


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    """TOML syntax errors carry the line number."""
    path = _config(tmp_path, _site() + "grid_mw = = 3\n")
    _solve_fails([str(path)], tmp_path, "c.toml", "TOML syntax error", "line 7")


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    """YAML syntax errors carry the line number."""
    path = _config(tmp_path, "sites:\n  - id: a\n    region: [unclosed\n", name="c.yaml")
    _solve_fails([str(path)], tmp_path, "c.yaml", "YAML syntax error", "line")


def test_yaml_and_json_configs_load(tmp_path: Path) -> None:
    """The same portfolio loads from YAML and JSON."""
    import json

    import yaml

    data = {"sites": [{"id": "a", "region": "us-tx", "grid_mw": 1.0, "pools": {"H100": 8}}],
            "jobs": [{"id": "j", "gpus": 8, "value_usd_per_hour": 10.0}]}
    for name, text in (("c.yaml", yaml.safe_dump(data)), ("c.json", json.dumps(data))):
        cfg = load_config(_config(tmp_path, text, name=name))
        assert cfg.portfolio.sites[0].pools["H100"].gpus == 8
        assert cfg.jobs.num_rows == 1


def test_duplicate_site_ids(tmp_path: Path) -> None:
    """Duplicate site ids are rejected naming the id."""
    path = _config(tmp_path, _site() + _site() + JOB)
    _solve_fails([str(path)], tmp_path, "duplicate site id 'a'")


@pytest.mark.parametrize(
    ("job", "needles"),
    [
        ({"gpu_types": '"H1000"'}, ["column gpu_types", "H1000", "did you mean 'H100'"]),
        ({"gpus": "0"}, ["column gpus", "0"]),
        ({"value_usd_per_hour": "nan"}, ["value_usd_per_hour", "nan"]),
        ({"gpus": '"eight"'}, ["jobs[0].gpus", "eight"]),
        ({"gpsu": "8"}, ["jobs[0].gpsu", "did you mean 'gpus'"]),
    ],
)
def test_bad_inline_job(tmp_path: Path, job: dict, needles: list[str]) -> None:
    """Bad inline job fields are rejected naming the row and value."""
    fields = {"id": '"j1"', "gpus": "8", "value_usd_per_hour": "20.0", **job}
    path = _config(tmp_path, _site() + "[[jobs]]\n" + "\n".join(f"{k} = {v}" for k, v in fields.items()) + "\n")
    _solve_fails([str(path)], tmp_path, *needles)


def test_duplicate_job_ids(tmp_path: Path) -> None:
    """Duplicate job ids are rejected naming the second row."""
    path = _config(tmp_path, _site() + JOB + JOB)
    _solve_fails([str(path)], tmp_path, "jobs[1] (id 'j1')", "duplicate job id")


def test_min_sites_above_replicas(tmp_path: Path) -> None:
    """An inference service with min_sites > replicas is rejected."""
    job = ('[[jobs]]\nid = "s"\nkind = "inference"\ngpus_per_replica = 1\nreplicas = 2\nmin_sites = 3\n'
           'value_usd_per_hour = 5.0\n')
    path = _config(tmp_path, _site() + job)
    _solve_fails([str(path)], tmp_path, "column min_sites", "min_sites must not exceed replicas", "3")


def test_jobs_csv_wrong_type(tmp_path: Path) -> None:
    """A CSV column with the wrong type names the column and value."""
    _solve_fails([str(TINY), "--jobs", str(DATA / "jobs_bad_type.csv")], tmp_path,
                 "jobs_bad_type.csv", "column 'gpus'", "eight")


def test_jobs_missing_required_column(tmp_path: Path) -> None:
    """A jobs table without value_usd_per_hour is rejected naming the column."""
    _solve_fails([str(TINY), "--jobs", str(DATA / "jobs_missing.csv")], tmp_path,
                 "jobs_missing.csv", "value_usd_per_hour", "required column is missing")


def test_parquet_wrong_column_type(tmp_path: Path) -> None:
    """A Parquet column of the wrong type is rejected naming the column."""
    path = tmp_path / "jobs.parquet"
    pq.write_table(pa.table({"id": ["a"], "gpus": [8.5], "value_usd_per_hour": [1.0]}), path)
    _solve_fails([str(TINY), "--jobs", str(path)], tmp_path, "jobs.parquet", "column 'gpus'", "8.5")


def test_unknown_jobs_column_suggests(tmp_path: Path) -> None:
    """An unknown column in a jobs table gets a did-you-mean."""
    path = tmp_path / "jobs.parquet"
    pq.write_table(pa.table({"id": ["a"], "gpus": [8], "value_usd_per_hour": [1.0], "tenat": ["x"]}), path)
    _solve_fails([str(TINY), "--jobs", str(path)], tmp_path, "column 'tenat'", "did you mean 'tenant'")


def test_unknown_jobs_extension(tmp_path: Path) -> None:
    """A jobs file with an unknown extension is rejected."""
    path = tmp_path / "jobs.xlsx"
    path.write_text("x")
    _solve_fails([str(TINY), "--jobs", str(path)], tmp_path, "jobs.xlsx", "unknown extension")


def test_csv_jobs_load_with_defaults() -> None:
    """CSV jobs load; blank cells take the documented defaults."""
    cfg = load_config(TINY)
    table = read_jobs(DATA / "jobs_ok.csv", cfg.portfolio)
    rows = table.to_pylist()
    assert rows[0]["gpus"] == 8 and rows[0]["tenant"] == "default" and rows[0]["min_sites"] == 1
    assert rows[1]["kind"] == "inference" and rows[1]["replicas"] == 2


def test_input_error_lists_every_problem(tmp_path: Path) -> None:
    """One error lists all bad rows, not only the first."""
    path = _config(tmp_path, _site() + JOB.replace("gpus = 8", "gpus = 0")
                   + JOB.replace('"j1"', '"j2"').replace("gpus = 8", "gpus = -1"))
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert len(exc.value.problems) == 2


def test_required_job_that_cannot_fit_exits_3(tmp_path: Path) -> None:
    """A required job too big for any site: exit 3, reason printed, plan written with it unplaced."""
    path = _config(tmp_path, _site(pools="{ H100 = 8 }") + JOB.replace("gpus = 8", "gpus = 16")
                   + "required = true\n")
    out = tmp_path / "plan.csv"
    result = runner.invoke(app, ["solve", str(path), "--out", str(out), "--backend", "reference", "--quiet"])
    assert result.exit_code == 3, result.output
    assert "j1" in result.output and "no eligible site" in result.output
    assert "unplaced" in out.read_text()
