"""The bad-input corpus: each kind of hostile or broken input, through every command that reads it.

Every case must exit 2 with a message naming the file and the field or value, print no
traceback, and leave no output file. A table of hand cases covers the kinds; hypothesis adds
random junk in a jobs cell. Time and memory stay bounded: the corpus as a whole runs in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from placement.cli.main import app
from placement.errors import InputError

runner = CliRunner()

CONFIG = """name = "corpus"
[[sites]]
id = "a"
region = "us-tx"
grid_mw = 1.0
pue = 1.2
pools = { H100 = 64 }

[[sites]]
id = "b"
region = "us-ok"
grid_mw = 1.0
pue = 1.3
pools = { H100 = 64 }
"""
JOBS = "id,gpus,value_usd_per_hour\nj1,8,20.0\nj2,8,30.0\n"
PAIRS = "job_id,site_id,extra_cost_usd_per_hour\nj1,a,1.0\n"
PLAN = "job_id,status,site_id,gpu_type,replicas,gpus\nj1,placed,a,H100,1,8\nj2,unplaced,,,,\n"
SCENARIOS = '[[scenario]]\nname = "half"\nsites = [{ match = "a", grid_mw_scale = 0.5 }]\n'
FILES = {"c.toml": CONFIG, "jobs.csv": JOBS, "pairs.csv": PAIRS, "plan.csv": PLAN, "sc.toml": SCENARIOS}

# Which commands read which input.
READERS = {
    "config": ("solve", "validate", "replan", "sweep"),
    "jobs": ("solve", "validate", "replan", "sweep"),
    "pairs": ("solve", "validate", "replan", "sweep"),
    "plan": ("validate", "replan"),
    "event": ("replan",),
    "scenarios": ("sweep",),
    "option": ("solve", "replan"),
}


@dataclass
class Case:
    """One kind of bad input: files to replace (name -> text, bytes or a writer), the role it plays,
    the text the message must contain, and extra command-line words."""

    kind: str
    role: str
    files: dict[str, str | bytes | Callable[[Path], None]]
    needles: tuple[str, ...]
    args: tuple[str, ...] = ()
    file: str | None = None  # the file the message must name (default: the only file replaced)
    commands: tuple[str, ...] = field(default=())


def _jobs(*rows: str, header: str = "id,gpus,value_usd_per_hour") -> str:
    return header + "\n" + "\n".join(rows) + "\n"


def _parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


def _sparse(size: int, head: bytes) -> Callable[[Path], None]:
    """A file of ``size`` bytes that takes no disk: ``head``, then a hole."""
    def write(path: Path) -> None:
        with path.open("wb") as f:
            f.write(head)
            f.truncate(size)
    return write


def _many_sites(n: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        site = '[[sites]]\nid = "s{i}"\nregion = "r"\ngrid_mw = 1.0\npue = 1.2\npools = {{ H100 = 8 }}\n'
        path.write_text('name = "huge"\n' + "".join(site.format(i=i) for i in range(n)))
    return write


ALIAS_BOMB = "\n".join(["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
                       + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
                       + ["name: bomb", "sites: *a8"]) + "\n"

CASES = [
    # --- configs
    Case("config: negative grid_mw", "config", {"c.toml": CONFIG.replace("grid_mw = 1.0", "grid_mw = -1.0", 1)},
         ("sites[0].grid_mw", "-1.0")),
    Case("config: NaN grid_mw", "config", {"c.toml": CONFIG.replace("grid_mw = 1.0", "grid_mw = nan", 1)},
         ("sites[0].grid_mw", "nan")),
    Case("config: inf pue", "config", {"c.toml": CONFIG.replace("pue = 1.2", "pue = inf", 1)}, ("sites[0].pue", "inf")),
    Case("config: wrong type", "config", {"c.toml": CONFIG.replace("grid_mw = 1.0", 'grid_mw = "ten"', 1)},
         ("sites[0].grid_mw", "ten")),
    Case("config: empty site id", "config", {"c.toml": CONFIG.replace('id = "a"', 'id = ""', 1)}, ("sites[0].id",)),
    Case("config: duplicate site id", "config", {"c.toml": CONFIG.replace('id = "b"', 'id = "a"')}, ("'a'",)),
    Case("config: unknown GPU type", "config", {"c.toml": CONFIG.replace("H100 = 64", "H10 = 64", 1)},
         ("sites[0].pools", "H10")),
    Case("config: unknown field", "config", {"c.toml": CONFIG.replace("pue = 1.2", "pue = 1.2\ngird_mw = 3", 1)},
         ("gird_mw", "did you mean 'grid_mw'")),
    Case("config: TOML syntax", "config", {"c.toml": CONFIG + "[[sites]\n"}, ("TOML syntax error",)),
    Case("config: TOML duplicate key", "config", {"c.toml": CONFIG.replace("pue = 1.2", "pue = 1.2\npue = 1.5", 1)},
         ("TOML syntax error",)),
    Case("config: JSON duplicate key", "config",
         {"c.json": '{"name": "x", "sites": [{"id": "a", "region": "r", "grid_mw": 1.0, "grid_mw": 500.0, '
                    '"pue": 1.2, "pools": {"H100": 8}}]}'}, ("'grid_mw' given twice",)),
    Case("config: YAML duplicate key", "config",
         {"c.yaml": "name: x\nsites:\n- id: a\n  region: r\n  grid_mw: 1.0\n  grid_mw: 500.0\n  pue: 1.2\n"
                    "  pools: {H100: 8}\n"}, ("line 6", "'grid_mw' given twice")),
    Case("config: YAML alias bomb", "config", {"c.yaml": ALIAS_BOMB}, ("expands to", "aliases")),
    Case("config: YAML syntax", "config", {"c.yaml": "name: [x\n"}, ("YAML syntax error",)),
    Case("config: not a mapping", "config", {"c.json": "[1, 2]"}, ("top level",)),
    Case("config: not UTF-8", "config", {"c.toml": b"name = \"\xff\xfe\"\n"}, ("not UTF-8",)),
    Case("config: 10^6 sites", "config", {"c.toml": _many_sites(1_000_000)}, ("over the limit",)),
    Case("config: unknown extension", "config", {"c.ini": CONFIG}, ("unknown extension",)),
    Case("config: missing file", "config", {}, ("file not found",), file="missing.toml"),
    # --- jobs tables
    Case("jobs: wrong type", "jobs", {"jobs.csv": _jobs("j1,eight,20.0")}, ("gpus",)),
    Case("jobs: NaN value", "jobs", {"jobs.csv": _jobs("j1,8,nan")}, ("value_usd_per_hour", "NaN")),
    Case("jobs: 'NA' as a number", "jobs", {"jobs.csv": _jobs("j1,NA,20.0")}, ("gpus",)),
    Case("jobs: inf value", "jobs", {"jobs.csv": _jobs("j1,8,inf")}, ("value_usd_per_hour", "inf")),
    Case("jobs: negative gpus", "jobs", {"jobs.csv": _jobs("j1,-8,20.0")}, ("row 1 (line 2)", "gpus", "-8")),
    Case("jobs: empty id", "jobs", {"jobs.csv": _jobs("j1,8,20.0", '"",8,20.0')}, ("row 2 (line 3)", "id")),
    Case("jobs: id with a newline", "jobs", {"jobs.csv": _jobs('"j\n1",8,20.0')}, ("control characters",)),
    Case("jobs: id with a control character", "jobs", {"jobs.csv": _jobs("j\x1b[31m1,8,20.0")},
         ("control characters",)),
    Case("jobs: duplicate ids", "jobs", {"jobs.csv": _jobs("j1,8,20.0", "j1,8,30.0")}, ("row 2", "duplicate job id")),
    Case("jobs: header only", "jobs", {"jobs.csv": "id,gpus,value_usd_per_hour\n"}, ("no jobs", "--allow-empty")),
    Case("jobs: missing column", "jobs", {"jobs.csv": "id,gpus\nj1,8\n"}, ("value_usd_per_hour", "missing")),
    Case("jobs: unknown column", "jobs", {"jobs.csv": "id,gpus,value_usd_per_hour,gpuz\nj1,8,20,1\n"},
         ("gpuz", "unknown column")),
    Case("jobs: stray quote", "jobs", {"jobs.csv": _jobs('j1,8,"20.0')}, ("cannot read csv",)),
    Case("jobs: CSV with a BOM and a bad cell", "jobs", {"jobs.csv": "\ufeff" + _jobs("j1,-8,20.0")}, ("gpus", "-8")),
    Case("jobs: truncated Parquet", "jobs", {"jobs.parquet": b"PAR1\x00\x00\x00truncated"}, ("cannot read parquet",)),
    Case("jobs: 2 GB string field", "jobs", {"jobs.csv": _sparse(2 << 30, b"id,gpus,value_usd_per_hour\n\"")},
         ("over the limit",)),
    Case("jobs: 1 MB id", "jobs", {"jobs.csv": _jobs("x" * 1_000_000 + ",8,20.0")}, ("at most 256 characters",)),
    Case("jobs: string-typed gpus in Parquet", "jobs",
         {"jobs.parquet": _parquet(pa.table({"id": ["j1"], "gpus": ["8"], "value_usd_per_hour": [20.0]}))},
         ("gpus", "not text")),
    Case("jobs: 2^62 gpus in Parquet", "jobs",
         {"jobs.parquet": _parquet(pa.table({"id": ["j1"], "gpus": [2 ** 62], "value_usd_per_hour": [20.0]}))},
         ("row 1", "gpus", "at most")),
    Case("jobs: unknown current site", "jobs",
         {"jobs.csv": _jobs("j1,8,20.0,zz,H100", header="id,gpus,value_usd_per_hour,current_site,current_gpu_type")},
         ("current_site", "zz")),
    Case("jobs: markup in an id", "jobs", {"jobs.csv": _jobs("[bold red]ALL CLEAR[/],8,-1")}, ("ALL CLEAR[/]",)),
    # --- pair tables
    Case("pairs: NaN cost", "pairs", {"pairs.csv": "job_id,site_id,extra_cost_usd_per_hour\nj1,a,nan\n"},
         ("extra_cost_usd_per_hour", "NaN")),
    Case("pairs: unknown job", "pairs", {"pairs.csv": "job_id,site_id\nzz,a\n"}, ("unknown job id", "zz")),
    Case("pairs: unknown site", "pairs", {"pairs.csv": "job_id,site_id\nj1,zz\n"}, ("site_id", "zz")),
    Case("pairs: the same pair twice", "pairs",
         {"pairs.csv": "job_id,site_id,forbidden\nj1,a,true\nj1,a,false\n"}, ("row 2", "earlier row")),
    # --- plans given to validate / replan
    Case("plan: a summary given as a plan", "plan", {"plan.json": '{"objective": 1.0, "status": "optimal"}'},
         ("not a plan",)),
    Case("plan: a jobs table given as a plan", "plan", {"plan.csv": JOBS}, ("not a plan", "job_id")),
    Case("plan: a bad status", "plan", {"plan.csv": PLAN.replace("j1,placed", "j1,running")}, ("running",),
         commands=("replan",)),
    Case("plan: a site not in the config", "plan",
         {"plan.csv": PLAN.replace("j1,placed,a,", "j1,placed,zz,")}, ("zz",), commands=("replan",)),
    Case("plan: truncated Parquet", "plan", {"plan.parquet": b"PAR1junk"}, ("cannot read parquet",)),
    Case("plan: a running plan that validate rejects (a job placed twice)", "plan",
         {"plan.csv": PLAN.replace("j2,unplaced,,,,", "j2,placed,a,H100,1,8\nj2,placed,b,H100,1,8")},
         ("breaks a hard constraint", "j2"), commands=("replan",)),
    Case("plan: a running plan that validate rejects (a gang with 9 replicas)", "plan",
         {"plan.csv": PLAN.replace("j1,placed,a,H100,1,8", "j1,placed,a,H100,9,72")},
         ("breaks a hard constraint", "j1"), commands=("replan",)),
    # --- events
    Case("event: a unit in the number", "event", {}, ("300MW",), args=("--event", "curtail site=a grid_mw=300MW"),
         file="event '"),
    Case("event: unknown site", "event", {}, ("zz",), args=("--event", "outage site=zz"), file="event '"),
    Case("event: unknown kind", "event", {}, ("melt",), args=("--event", "melt site=a"), file="event '"),
    # --- scenario files
    Case("scenarios: name '..'", "scenarios", {"sc.toml": SCENARIOS.replace('"half"', '".."')}, ("name",)),
    Case("scenarios: name with a slash", "scenarios", {"sc.toml": SCENARIOS.replace('"half"', '"a/b"')}, ("name",)),
    Case("scenarios: unknown field", "scenarios", {"sc.toml": SCENARIOS.replace("grid_mw_scale", "grid_scale")},
         ("grid_scale",)),
    Case("scenarios: duplicate names", "scenarios", {"sc.toml": SCENARIOS + SCENARIOS}, ("half",)),
    # --- options
    Case("option: seed past 2^31", "option", {}, ("--seed", "2147483648"), args=("--seed", "2147483648"),
         file="command line"),
    Case("option: output to /proc", "option", {}, ("/proc/x.parquet", "cannot write"),
         args=("--out", "/proc/x.parquet"), file="/proc/x.parquet"),
    Case("option: output is a folder", "option", {}, ("is a folder",), args=("--summary", "{out}/sub.json"),
         file="sub.json"),
]


def _command(name: str, d: Path, out: Path, files: dict[str, Path], args: tuple[str, ...]) -> list[str]:
    """The command line of ``name`` on the case's files, writing under ``out``."""
    config, jobs = files["config"], files["jobs"]
    common = [str(config), "--jobs", str(jobs), "--pairs", str(files["pairs"])]
    fast = ["--backend", "reference", "--time-limit", "1"]
    if name == "solve":
        cmd = ["solve", *common, "--out", str(out / "plan.parquet"), "--summary", str(out / "s.json"), *fast]
    elif name == "validate":
        cmd = ["validate", *common, "--plan", str(files["plan"])]
    elif name == "replan":
        cmd = ["replan", *common, "--plan", str(files["plan"]), "--out", str(out / "plan.parquet"),
               "--summary", str(out / "s.json"), "--changes", str(out / "c.csv"), *fast]
    else:
        cmd = ["sweep", *common, "--scenarios", str(files["scenarios"]), "--out", str(out / "sweep"), *fast]
    return cmd + [a.replace("{out}", str(out)) for a in args]


def _setup(d: Path, case: Case) -> dict[str, Path]:
    """Write the good files, then the case's replacements; return the file per role."""
    for name, text in FILES.items():
        (d / name).write_text(text)
    roles = {"config": d / "c.toml", "jobs": d / "jobs.csv", "pairs": d / "pairs.csv", "plan": d / "plan.csv",
             "scenarios": d / "sc.toml"}
    for name, content in case.files.items():
        path = d / name
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        roles[case.role] = path
    if case.role == "config" and not case.files:
        roles["config"] = d / "missing.toml"
    return roles


def test_the_corpus_has_forty_kinds() -> None:
    """The corpus covers at least 40 distinct kinds of bad input."""
    assert len({c.kind for c in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_exits_2_naming_it(case: Case, tmp_path: Path) -> None:
    """Every command that reads the input exits 2, names the file and value, and writes nothing."""
    files = _setup(tmp_path, case)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub.json").mkdir()
    named = case.file or (files[case.role].name if case.role in files else "")
    for command in case.commands or READERS[case.role]:
        out = tmp_path / "out"
        result = runner.invoke(app, _command(command, tmp_path, out, files, case.args))
        text = result.output
        assert result.exit_code == 2, (command, text)
        assert "Traceback" not in text
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert named in text, (command, named, text)
        for needle in case.needles:
            assert needle in text, (command, needle, text)
        left = [p for p in out.rglob("*") if p.name != "sub.json"]
        assert left == [], (command, left)


def test_header_only_jobs_pass_with_allow_empty(tmp_path: Path) -> None:
    """``--allow-empty`` makes a header-only jobs table a valid, empty solve."""
    files = _setup(tmp_path, Case("empty", "jobs", {"jobs.csv": "id,gpus,value_usd_per_hour\n"}, ()))
    out = tmp_path / "plan.csv"
    result = runner.invoke(app, ["solve", str(files["config"]), "--jobs", str(files["jobs"]), "--allow-empty",
                                 "--out", str(out), "--backend", "reference"])
    assert result.exit_code == 0, result.output
    assert pa.csv.read_csv(out).num_rows == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=st.text(min_size=1, max_size=30).filter(lambda s: s.strip() and not s.strip().lstrip("+").isdigit()))
def test_random_junk_in_gpus_exits_2(cell: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any non-number in the gpus column of a Parquet jobs table is exit 2 naming the column."""
    d = tmp_path_factory.mktemp("junk")
    files = _setup(d, Case("junk", "jobs", {"jobs.parquet": _parquet(
        pa.table({"id": ["j1"], "gpus": [cell], "value_usd_per_hour": [20.0]}))}, ()))
    out = d / "plan.parquet"
    result = runner.invoke(app, ["solve", str(files["config"]), "--jobs", str(files["jobs"]), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "gpus" in result.output and not out.exists()


def test_the_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """The billion-laughs document is refused from its node graph, without building the expansion."""
    from placement.io.config import read_document  # noqa: PLC0415

    path = tmp_path / "c.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(InputError, match="expands to"):
        read_document(path)
