"""Re-planning: events, warm start and repair, stability, migration budget, and the replan CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
import typer
from typer.testing import CliRunner

from placement import solve, validate_plan
from placement.io.config import portfolio_from_dict
from placement.errors import InputError
from placement.io.tables import write_table
from placement.model.jobs import jobs_table
from placement.kernels import kernels_for
from placement.model.portfolio import SolveOptions
from placement.plan import build_plan
from placement.core.problem import compile_problem
from placement.current_plan import plan_to_solution
from placement.replan.run import (
    Curtail,
    Outage,
    ReplanOptions,
    SetOnline,
    SetPool,
    apply_events,
    parse_event,
    replan,
)
from placement.cli.replan import replan as replan_command
from placement.solvers import pipeline
from placement.solvers.repair import repair, shed_rank
from tests.strategies import random_instance

app = typer.Typer()
app.command()(replan_command)
runner = CliRunner()
REF = {"backend": "reference"}


def _portfolio(grid_mw: float = 0.05, n_sites: int = 3, **site_kw):
    """Sites s0..s{n-1}: PUE 1, 32 H100 each (1.275 kW per GPU), prices rising with the index."""
    sites = [{"id": f"s{i}", "region": "us-tx", "grid_mw": grid_mw, "pue": 1.0, "pools": {"H100": 32},
              "price_usd_per_mwh": 40.0 + 10 * i, **site_kw} for i in range(n_sites)]
    return portfolio_from_dict({"name": "rp", "sites": sites}, "rp")


def _jobs(portfolio, rows):
    return jobs_table(rows, portfolio)


def _opts(**kw) -> ReplanOptions:
    return ReplanOptions(**{"solver": "auto", "time_limit_s": 5.0, **REF, **kw})


def _status(plan) -> dict:
    """job -> (status, sorted rows) of a plan table."""
    out: dict = {}
    for r in plan.table.to_pylist():
        _, rows = out.get(r["job_id"], (r["status"], []))
        if r["status"] == "placed":
            rows = sorted([*rows, (r["site_id"], r["gpu_type"], r["replicas"])])
        out[r["job_id"]] = ("placed" if rows else r["status"], rows)
    return out


def _site_mw(plan, site: str) -> float:
    return sum(r["facility_mw"] for r in plan.table.to_pylist() if r["site_id"] == site)


def _changes(plan) -> dict:
    return {r["job_id"]: r for r in plan.changes.to_pylist()}


def _valid(plan, pairs=None) -> None:
    violations = validate_plan(plan.portfolio, plan.jobs, plan.table, pairs, plan.options, current=plan.current)
    assert [v for v in violations if v.kind != "required"] == []


def _budget_held(plan, max_moves=None, max_usd=None) -> None:
    rows = [r for r in plan.changes.to_pylist() if r["change"] == "moved"]
    assert plan.summary["changes"]["moved"] == len(rows)
    if max_moves is not None:
        assert len(rows) <= max_moves
    if max_usd is not None:
        assert sum(r["migration_usd"] for r in rows) <= max_usd + 1e-6


# --- events -----------------------------------------------------------------------------------


def test_parse_event_reads_every_form() -> None:
    """Each CLI event form parses to its event, and its text parses back to the same event."""
    pf = _portfolio()
    cases = {
        "curtail site=s0 grid_mw=0.02": Curtail("s0", 0.02),
        "outage site=s1": Outage("s1"),
        "online site=s2": SetOnline("s2", True),
        "offline site=s2": SetOnline("s2", False),
        "pool gpu_type=A100 site=s0 gpus=16": SetPool("s0", "A100", 16),
    }
    for text, want in cases.items():
        got = parse_event(text, pf)
        assert got == want
        assert parse_event(got.text, pf) == want


@pytest.mark.parametrize("text, field", [
    ("", ""),
    ("curtial site=s0 grid_mw=1", "kind"),
    ("curtail site=s0 grid=1", "grid"),
    ("curtail site=s0", "grid_mw"),
    ("curtail site=s0 grid_mw=lots", "grid_mw"),
    ("curtail site=s0 grid_mw=-2", "grid_mw"),
    ("curtail site=nowhere grid_mw=1", "site"),
    ("pool site=s0 gpu_type=H900 gpus=8", "gpu_type"),
    ("pool site=s0 gpu_type=H100 gpus=2.5", "gpus"),
    ("outage s0", "s0"),
])
def test_parse_event_errors_name_the_event_and_field(text: str, field: str) -> None:
    """A bad event raises InputError naming the event text and the field at fault."""
    with pytest.raises(InputError) as exc:
        parse_event(text, _portfolio())
    assert exc.value.source == f"event '{text}'"
    assert field in [loc for loc, _ in exc.value.problems]


def test_apply_events_returns_a_new_validated_portfolio() -> None:
    """Events give a new portfolio (input untouched): curtail caps the reserve, pool 0 empties the pool."""
    pf = portfolio_from_dict({"sites": [{"id": "a", "region": "r", "grid_mw": 10.0, "reserve_mw": 2.0,
                                         "pools": {"H100": 8}, "online": False}]}, "t")
    new = apply_events(pf, ["curtail site=a grid_mw=1.5", "online site=a", SetPool("a", "H100", 0),
                            SetPool("a", "B200", 4)])
    assert pf.sites[0].grid_mw == 10.0 and pf.sites[0].online is False and pf.sites[0].pools["H100"].gpus == 8
    site = new.sites[0]
    assert (site.grid_mw, site.reserve_mw, site.online) == (1.5, 1.5, True)
    assert site.pools["H100"].gpus == 0 and site.pools["B200"].gpus == 4
    with pytest.raises(InputError):
        apply_events(pf, [Outage("b")])


# --- repair -----------------------------------------------------------------------------------


def test_repair_sheds_lowest_tier_then_lowest_density() -> None:
    """Over a curtailed cap, repair sheds the low tier first, then the lowest value per GPU."""
    pf = _portfolio(grid_mw=1.0, n_sites=1)
    jobs = _jobs(pf, [
        {"id": "hi", "gpus": 8, "value_usd_per_hour": 10.0, "priority": 1, "current_site": "s0", "current_gpu_type": "H100"},
        {"id": "dense", "gpus": 8, "value_usd_per_hour": 80.0, "current_site": "s0", "current_gpu_type": "H100"},
        {"id": "sparse", "gpus": 8, "value_usd_per_hour": 20.0, "current_site": "s0", "current_gpu_type": "H100"},
    ])
    curtailed = apply_events(pf, [Curtail("s0", 0.0204 + 1e-6)])  # room for two 8-GPU gangs
    P = compile_problem(curtailed, jobs)
    sol = repair(P, plan_to_solution(P, pa.table({"job_id": ["hi", "dense", "sparse"], "status": ["placed"] * 3,
                                                   "site_id": ["s0"] * 3, "gpu_type": ["H100"] * 3,
                                                   "replicas": [1, 1, 1]})), kernels_for(P, "reference"))
    assert sorted(P.job_ids[sol.row_job].tolist()) == ["dense", "hi"]
    assert shed_rank(P)[list(P.job_ids).index("sparse")] == 0


@pytest.mark.parametrize("seed", range(10))
def test_repair_never_exceeds_caps_on_random_instances(seed: int) -> None:
    """A plan repaired after random curtailments, outages and pool cuts passes the validator."""
    inst = random_instance(seed, 4, 12)
    plan = solve(inst.portfolio, inst.jobs, inst.pairs, SolveOptions(solver="greedy", **REF))
    rng = np.random.default_rng(seed)
    events = []
    for s in inst.portfolio.sites:
        r = rng.random()
        if r < 0.4:
            events.append(Curtail(s.id, round(s.grid_mw * rng.uniform(0, 0.8), 5)))
        elif r < 0.55:
            events.append(Outage(s.id))
        elif r < 0.75:
            t = next(iter(s.pools))
            events.append(SetPool(s.id, t, int(s.pools[t].gpus * rng.uniform(0, 0.7))))
    after = apply_events(inst.portfolio, events)
    P = compile_problem(after, inst.jobs, inst.pairs)
    sol = repair(P, plan_to_solution(P, plan.table), kernels_for(P, "reference"))
    table = build_plan(P, sol, seconds=0.0, seed=0).table
    violations = validate_plan(after, inst.jobs, table, inst.pairs)
    assert [v for v in violations if v.kind != "required"] == []
    placed_before = {r["job_id"] for r in plan.table.to_pylist() if r["status"] == "placed"}
    assert set(P.job_ids[sol.row_job].tolist()) <= placed_before  # repair never starts a job


# --- replan -----------------------------------------------------------------------------------


def _running(pf, jobs, **kw):
    """An optimal plan of ``jobs`` (the plan running now)."""
    return solve(pf, jobs, None, SolveOptions(solver="exact", time_limit_s=10.0, **REF, **kw))


def _fleet(pf):
    rows = []
    for i in range(9):
        rows.append({"id": f"t{i}", "gpus": 8, "priority": i % 2, "value_usd_per_hour": 30.0 + 7 * i})
    rows.append({"id": "svc", "kind": "inference", "gpus_per_replica": 2, "replicas": 4, "min_sites": 2,
                 "max_share_per_site": 0.5, "value_usd_per_hour": 60.0})
    return _jobs(pf, rows)


def test_curtailed_site_is_within_its_new_cap() -> None:
    """After a curtailment the site is within its new cap and the plan passes the validator."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    busiest = max((s.id for s in pf.sites), key=lambda s: _site_mw(now, s))
    cap = _site_mw(now, busiest) / 2
    plan = replan(pf, jobs, now.table, [f"curtail site={busiest} grid_mw={cap}"], _opts())
    _valid(plan)
    assert _site_mw(plan, busiest) <= cap + 1e-9
    site = next(s for s in plan.summary["changes"]["sites"] if s["site_id"] == busiest)
    assert site["mw_shed"] >= _site_mw(now, busiest) - cap - 1e-9
    assert plan.summary["changes"]["events"] == [f"curtail site={busiest} grid_mw={cap:.12g}"]


def test_outage_empties_the_site_and_explains_every_change() -> None:
    """An outage leaves nothing at the site; its jobs move elsewhere or stop, each with a reason."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    plan = replan(pf, jobs, now.table, [Outage("s0")], _opts())
    _valid(plan)
    assert _site_mw(plan, "s0") == 0
    was_at_s0 = {r["job_id"] for r in now.table.to_pylist() if r["site_id"] == "s0"}
    assert was_at_s0
    ch = _changes(plan)
    for job in was_at_s0:
        assert ch[job]["change"] in ("moved", "stopped")
        assert ch[job]["reason"] and "s0" in ch[job]["from_rows"]
        if ch[job]["change"] == "moved":
            assert ch[job]["reason"] == "displaced" and "outage site=s0" in ch[job]["detail"]
            assert "s0" not in ch[job]["to_rows"]


def test_pool_removed_moves_its_jobs_off_it() -> None:
    """A pool cut to 0 GPUs holds nothing afterwards."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    plan = replan(pf, jobs, now.table, ["pool site=s1 gpu_type=H100 gpus=0"], _opts())
    _valid(plan)
    assert not [r for r in plan.table.to_pylist() if r["site_id"] == "s1" and r["status"] == "placed"]


@pytest.mark.parametrize("max_moves, max_usd", [(0, None), (1, None), (None, 150.0), (2, 400.0)])
def test_migration_budget_is_never_exceeded(max_moves, max_usd) -> None:
    """However strong the pull to move, moved jobs and their $ stay within the budget."""
    pf = _portfolio(grid_mw=0.05)
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    for events in ([Outage("s0")], [Curtail("s1", 0.0)], ["online site=s2"], []):
        plan = replan(pf, jobs, now.table, events,
                      _opts(max_moves=max_moves, max_migration_usd=max_usd, default_migration_cost_usd=100.0))
        _valid(plan)
        _budget_held(plan, max_moves, max_usd)


@pytest.mark.parametrize("seed", range(6))
def test_migration_budget_holds_on_random_instances(seed: int) -> None:
    """On random instances with an outage, a one-move budget holds and every plan validates."""
    inst = random_instance(seed, 4, 12, with_current=False)
    now = solve(inst.portfolio, inst.jobs, inst.pairs, SolveOptions(solver="greedy", **REF))
    site = max(inst.portfolio.sites, key=lambda s: _site_mw(now, s.id)).id
    plan = replan(inst.portfolio, inst.jobs, now.table, [Outage(site)], _opts(max_moves=1, time_limit_s=2.0),
                  inst.pairs)
    _valid(plan, inst.pairs)
    _budget_held(plan, 1)


@pytest.mark.parametrize("cap_mw, stays", [(0.0103, True), (0.005, False)])
def test_pinned_job_on_a_curtailed_site_stays_or_stops(cap_mw: float, stays: bool) -> None:
    """A pinned job on a curtailed site stays if the cap allows, else stops; it never moves."""
    pf = _portfolio()
    jobs = _jobs(pf, [
        {"id": "pin", "gpus": 8, "value_usd_per_hour": 5.0, "pinned": True,
         "current_site": "s0", "current_gpu_type": "H100"},
        {"id": "other", "gpus": 8, "value_usd_per_hour": 90.0, "current_site": "s0", "current_gpu_type": "H100"},
    ])
    plan = replan(pf, jobs, None, [Curtail("s0", cap_mw)], _opts())
    _valid(plan)
    status, rows = _status(plan)["pin"]
    if stays:
        assert rows == [("s0", "H100", 1)]
    else:
        assert status == "unplaced" and _changes(plan)["pin"]["change"] == "stopped"
    assert _changes(plan)["pin"]["change"] != "moved"


def test_required_jobs_stay_placed_when_feasible() -> None:
    """Shedding takes an optional job, however valuable, before a required one."""
    pf = _portfolio(n_sites=1)
    jobs = _jobs(pf, [
        {"id": "must", "gpus": 8, "value_usd_per_hour": 1.0, "required": True,
         "current_site": "s0", "current_gpu_type": "H100"},
        {"id": "rich", "gpus": 8, "value_usd_per_hour": 500.0, "priority": 3,
         "current_site": "s0", "current_gpu_type": "H100"},
    ])
    plan = replan(pf, jobs, None, [Curtail("s0", 0.011)], _opts())
    _valid(plan)
    assert _status(plan)["must"][0] == "placed"
    assert plan.summary["required_unplaced"] == []


@pytest.mark.parametrize("solver", ["auto", "greedy", "price", "lns", "exact"])
def test_no_change_replan_is_a_noop(solver: str) -> None:
    """Without events or job changes a re-plan keeps every job where it runs."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    plan = replan(pf, jobs, now.table, [], _opts(solver=solver, time_limit_s=2.0))
    _valid(plan)
    c = plan.summary["changes"]
    assert (c["moved"], c["stopped"], c["started"]) == (0, 0, 0)
    assert _status(plan) == _status(now)


def test_no_change_replan_is_a_noop_on_the_price_and_lns_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--improve`` with ``auto`` on a large instance (LNS from the warm start) moves nothing either."""
    monkeypatch.setattr(pipeline, "EXACT_MAX_CANDIDATES", 0)
    inst = random_instance(5, 5, 14, with_current=False)
    now = solve(inst.portfolio, inst.jobs, inst.pairs, SolveOptions(solver="auto", time_limit_s=1.5, **REF))
    plan = replan(inst.portfolio, inst.jobs, now.table, [], _opts(time_limit_s=1.5, improve=True), inst.pairs)
    assert "lns" in plan.summary["stats"]["stages"]
    c = plan.summary["changes"]
    assert (c["moved"], c["stopped"]) == (0, 0)


def test_a_spread_service_that_stays_is_not_a_move() -> None:
    """A service over two sites that keeps its rows is unchanged, even with max_moves 0."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    assert len(_status(now)["svc"][1]) >= 2
    plan = replan(pf, jobs, now.table, [], _opts(max_moves=0))
    _valid(plan)
    assert _changes(plan)["svc"]["change"] == "unchanged"
    assert _status(plan)["svc"] == _status(now)["svc"]


def test_threshold_holds_back_a_small_gain() -> None:
    """With ``improve``, a job moves to a cheaper site only when the gain beats its migration cost
    plus the threshold; without it, an unchanged plan stays (next test)."""
    pf = _portfolio(grid_mw=0.05, n_sites=2)  # s1 costs $10/MWh more: moving there->s0 gains ~$0.10/h
    jobs = _jobs(pf, [{"id": "j", "gpus": 8, "value_usd_per_hour": 20.0,
                       "current_site": "s1", "current_gpu_type": "H100"}])
    free = replan(pf, jobs, None, [], _opts(default_migration_hours=0.0, improve=True))
    assert _changes(free)["j"]["change"] == "moved" and _changes(free)["j"]["reason"] == "better_placement"
    held = replan(pf, jobs, None, [], _opts(default_migration_hours=0.0, move_threshold_usd_per_hour=0.5,
                                            improve=True))
    assert _changes(held)["j"]["change"] == "unchanged"
    costly = replan(pf, jobs, None, [], _opts(improve=True))  # default: an hour of its value, over 24 h
    assert _changes(costly)["j"]["change"] == "unchanged"


def test_arrivals_and_departures_are_listed() -> None:
    """Jobs gone from the table are departed; new ones are arrivals, started when they fit."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    gone = next(r["job_id"] for r in now.table.to_pylist() if r["status"] == "placed")
    rows = [r for r in jobs.to_pylist() if r["id"] != gone]
    rows.append({"id": "new", "gpus": 8, "value_usd_per_hour": 400.0, "priority": 1})
    later = _jobs(pf, [{k: v for k, v in r.items() if v is not None} for r in rows])
    plan = replan(pf, later, now.table, [], _opts())
    _valid(plan)
    ch = _changes(plan)
    assert ch[gone]["change"] == "departed" and ch[gone]["reason"] == "departed"
    assert ch["new"]["arrived"] and ch["new"]["change"] == "started" and ch["new"]["reason"] == "arrived"
    assert plan.summary["changes"]["departed"] == 1 and plan.summary["changes"]["arrived"] == 1
    assert gone not in set(plan.table.column("job_id").to_pylist())


@pytest.mark.parametrize("large, polish", [(False, True), (True, True), (True, False)])
def test_a_high_tier_arrival_preempts_the_lowest_tier(monkeypatch: pytest.MonkeyPatch, large: bool,
                                                      polish: bool) -> None:
    """A top-tier arrival that fits nowhere stops lower-tier work (least value first) and starts."""
    if large:  # the warm path of big instances: repair, fill, preempt, then LNS unless polish is off
        monkeypatch.setattr(pipeline, "EXACT_MAX_CANDIDATES", 0)
    pf = _portfolio(grid_mw=1.0, n_sites=2)
    rows = [{"id": f"low{i}", "gpus": 8, "value_usd_per_hour": 20.0 + i, "current_site": f"s{i % 2}",
             "current_gpu_type": "H100"} for i in range(8)]
    rows.append({"id": "vip", "gpus": 8, "value_usd_per_hour": 15.0, "priority": 2})
    jobs = _jobs(pf, rows)
    plan = replan(pf, jobs, None, [], _opts(time_limit_s=1.0, polish=polish))
    _valid(plan)
    ch = _changes(plan)
    assert ch["vip"]["change"] == "started"
    stopped = [k for k, r in ch.items() if r["change"] == "stopped"]
    assert len(stopped) == 1 and stopped[0] in ("low0", "low1")
    assert plan.summary["changes"]["moved"] == 0


def test_solve_accepts_an_initial_plan() -> None:
    """``solve(initial_plan=...)`` warm-starts from a plan and still validates."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    again = solve(pf, jobs, None, SolveOptions(solver="greedy", **REF), initial_plan=now.table)
    assert validate_plan(pf, jobs, again.table) == []
    assert again.objective >= now.objective - 1e-9


def test_a_plan_naming_an_unknown_site_is_an_input_error() -> None:
    """A current plan with a site the portfolio lacks is rejected, naming the row."""
    pf = _portfolio()
    jobs = _fleet(pf)
    bad = pa.table({"job_id": ["t0"], "status": ["placed"], "site_id": ["zz"], "gpu_type": ["H100"], "replicas": [1]})
    with pytest.raises(InputError) as exc:
        replan(pf, jobs, bad, [], _opts())
    assert "zz" in str(exc.value)


# --- CLI --------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A config, a jobs table and the plan running now, written to disk."""
    pf = _portfolio()
    jobs = _fleet(pf)
    now = _running(pf, jobs)
    config = tmp_path / "portfolio.json"
    config.write_text(json.dumps({"name": "rp", "sites": [s.model_dump(exclude_none=True) for s in pf.sites]}))
    write_table(jobs, tmp_path / "jobs.parquet")
    now.write(tmp_path / "now.csv")
    return {"config": config, "jobs": tmp_path / "jobs.parquet", "plan": tmp_path / "now.csv", "dir": tmp_path}


def _cli(files, *args: str):
    return runner.invoke(app, [str(files["config"]), "--jobs", str(files["jobs"]), "--plan", str(files["plan"]),
                               "--backend", "reference", "--time-limit", "3", *args])


def test_cli_writes_the_plan_and_prints_the_diff(files) -> None:
    """replan writes the plan, summary and changes and prints moved/stopped/started and MW shed."""
    out, summary, changes = files["dir"] / "new.parquet", files["dir"] / "s.json", files["dir"] / "c.csv"
    result = _cli(files, "--event", "outage site=s0", "--out", str(out), "--summary", str(summary),
                  "--changes", str(changes))
    assert result.exit_code == 0, result.output
    for word in ("moved", "stopped", "started", "MW shed", "outage site=s0"):
        assert word in result.output
    data = json.loads(summary.read_text())
    assert data["changes"]["events"] == ["outage site=s0"]
    assert pacsv.read_csv(changes).num_rows == 10
    next_round = runner.invoke(app, [str(files["config"]), "--jobs", str(files["jobs"]), "--plan", str(out),
                                     "--event", "outage site=s0", "--backend", "reference", "--json"])
    assert next_round.exit_code == 0, next_round.output
    assert json.loads(next_round.output)["changes"]["moved"] == 0


def test_cli_max_moves_zero_moves_nothing(files) -> None:
    """--max-moves 0 moves nothing, even when an outage displaces jobs."""
    result = _cli(files, "--event", "outage site=s0", "--max-moves", "0", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["changes"]["moved"] == 0 and data["moves"] == 0


@pytest.mark.parametrize("event, needle", [
    ("curtail site=nowhere grid_mw=1", "unknown site 'nowhere'"),
    ("curtail site=s0 grid_mw=many", "grid_mw"),
    ("explode site=s0", "unknown event 'explode'"),
    ("pool site=s0 gpu_type=H100 gpu=3", "unknown keyword"),
])
def test_cli_bad_event_exits_2_naming_it(files, event: str, needle: str) -> None:
    """An event naming an unknown site (or malformed) is a clear error: exit 2, the event quoted."""
    result = _cli(files, "--event", event)
    assert result.exit_code == 2
    assert f"event '{event}'" in result.output and needle in result.output


def test_cli_required_job_that_cannot_stay_exits_3(tmp_path: Path) -> None:
    """A required pinned job on a site that goes dark cannot be placed: exit 3, plan still written."""
    pf = _portfolio()
    jobs = _jobs(pf, [{"id": "must", "gpus": 8, "value_usd_per_hour": 9.0, "required": True, "pinned": True,
                       "current_site": "s0", "current_gpu_type": "H100"}])
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"name": "rp", "sites": [s.model_dump(exclude_none=True) for s in pf.sites]}))
    write_table(jobs, tmp_path / "jobs.parquet")
    out = tmp_path / "new.csv"
    result = runner.invoke(app, [str(config), "--jobs", str(tmp_path / "jobs.parquet"), "--event", "outage site=s0",
                                 "--backend", "reference", "--out", str(out), "--quiet"])
    assert result.exit_code == 3, result.output
    assert "must" in result.output and out.exists()


# --- the fixed point: an unchanged plan stays as it is ------------------------------------------


def _placement(table: pa.Table) -> dict:
    """job -> sorted (site, type, replicas) rows of the placed jobs."""
    out: dict = {}
    for r in table.select(["job_id", "status", "site_id", "gpu_type", "replicas"]).to_pylist():
        if r["status"] == "placed":
            out.setdefault(r["job_id"], []).append((r["site_id"], r["gpu_type"], r["replicas"]))
    return {k: sorted(v) for k, v in out.items()}


@pytest.mark.parametrize("family, seed", [("neocloud", 1), ("inference", 2), ("power-bound", 3), ("frontier", 4)])
@pytest.mark.parametrize("solver, limit_s", [("greedy", 1.0), ("auto", 1.0), ("exact", 5.0)])
def test_an_unchanged_plan_is_a_fixed_point(family: str, seed: int, solver: str, limit_s: float) -> None:
    """With no event, arrival or departure, a re-plan moves and stops nothing, whatever the plan's
    quality (greedy, a 1 s solve, an exact solve); the same placement scores the same objective
    (no phantom migration on multi-site services); and re-planning the re-plan changes nothing."""
    from placement.generate.families import generate  # noqa: PLC0415

    config, table = generate(family, 60, 6, seed)
    pf = portfolio_from_dict(config, "generated")
    jobs = jobs_table(table.to_pylist(), pf)
    now = solve(pf, jobs, None, SolveOptions(solver=solver, time_limit_s=limit_s, seed=seed, **REF))
    once = replan(pf, jobs, now.table, [], _opts(time_limit_s=2.0, seed=seed))
    _valid(once)
    c = once.summary["changes"]
    assert (c["moved"], c["stopped"]) == (0, 0)
    before = _placement(now.table)
    after = _placement(once.table)
    assert {k: v for k, v in after.items() if k in before} == before
    if c["started"] == 0:
        assert once.objective == pytest.approx(now.objective, rel=1e-12, abs=1e-9)
    twice = replan(pf, jobs, once.table, [], _opts(time_limit_s=2.0, seed=seed))
    assert _placement(twice.table) == after
    assert twice.objective == pytest.approx(once.objective, rel=1e-12, abs=1e-9)
