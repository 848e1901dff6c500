"""The validator: a valid hand plan passes, and each hard constraint broken by hand is caught."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from placement.io.config import portfolio_from_dict
from placement.model.jobs import jobs_table, validate_pairs
from placement.model.portfolio import Portfolio, SolveOptions
from placement.validate.checks import (
    CHECKS,
    check_gpus,
    check_migration_budget,
    check_once,
    check_pinned,
    check_power,
    check_region,
)
from placement.validate.context import PlanContext, build_context
from placement.validate.validator import Violation, validate_plan
from tests.strategies import random_instance

SITES = [
    {"id": "tx1", "region": "us-tx", "grid_mw": 1.0, "pue": 1.25,
     "pools": {"H100": 96, "A100": {"gpus": 32, "kw_per_gpu": 0.9}, "GB200": 8},
     "latency_ms": {"us-ok": 10.0}, "max_gang_gpus": 32, "cooling": ["air"]},
    {"id": "ok1", "region": "us-ok", "grid_mw": 0.5, "reserve_mw": 0.1, "pue": 1.5,
     "pools": {"H100": 20}, "latency_ms": {"us-tx": 10.0}},
    {"id": "fi1", "region": "eu-fi", "grid_mw": 0.02, "reserve_mw": 0.005, "pue": 1.2,
     "pools": {"H100": 32}, "latency_ms": {"us-tx": 120.0}, "tenants": ["acme"]},
    {"id": "off1", "region": "us-tx", "grid_mw": 1.0, "pools": {"H100": 16}, "online": False},
]
JOBS = [
    {"id": "t1", "tenant": "acme", "value_usd_per_hour": 100.0, "gpus": 16},
    {"id": "t2", "value_usd_per_hour": 50.0, "gpus": 8, "kw_per_gpu": 1.0, "current_site": "tx1",
     "current_gpu_type": "H100", "migration_cost_usd": 200.0},
    {"id": "t3", "value_usd_per_hour": 50.0, "gpus": 8, "current_site": "ok1", "current_gpu_type": "H100",
     "pinned": True},
    {"id": "i1", "kind": "inference", "tenant": "acme", "value_usd_per_hour": 80.0, "gpus_per_replica": 2,
     "replicas": 4, "min_sites": 2, "max_share_per_site": 0.5, "demand_region": "us-tx",
     "max_latency_ms": 50.0,
     "current_site": "tx1", "current_gpu_type": "H100", "migration_cost_usd": 50.0},
    {"id": "i2", "kind": "inference", "tenant": "acme", "value_usd_per_hour": 30.0, "gpus_per_replica": 1,
     "replicas": 3, "min_sites": 3},
    {"id": "r1", "value_usd_per_hour": 10.0, "gpus": 4, "required": True},
    {"id": "g1", "value_usd_per_hour": 10.0, "gpus": 4, "gpu_types": "A100,B200:2.0"},
    {"id": "u1", "tenant": "acme", "value_usd_per_hour": 5.0, "gpus": 8},
    {"id": "reg", "tenant": "acme", "value_usd_per_hour": 5.0, "gpus": 4, "regions": "us-tx,us-ok"},
    {"id": "glx", "tenant": "globex", "value_usd_per_hour": 5.0, "gpus": 2},
    {"id": "big", "value_usd_per_hour": 5.0, "gpus": 48},
]
# Valid: i1 already has 2 replicas away from its current tx1/H100 (1 move, 100 USD).
BASE: dict[str, list[tuple[str, str, int]]] = {
    "t1": [("tx1", "H100", 1)],
    "t2": [("tx1", "H100", 1)],
    "t3": [("ok1", "H100", 1)],
    "i1": [("tx1", "H100", 2), ("ok1", "H100", 2)],
    "i2": [("tx1", "H100", 1), ("ok1", "H100", 1), ("fi1", "H100", 1)],
    "r1": [("ok1", "H100", 1)],
    "g1": [("tx1", "A100", 1)],
}
PLAN_SCHEMA = pa.schema([
    ("job_id", pa.string()), ("kind", pa.string()), ("tenant", pa.string()), ("priority", pa.int64()),
    ("status", pa.string()), ("site_id", pa.string()), ("gpu_type", pa.string()), ("replicas", pa.int64()),
    ("gpus", pa.int64()), ("it_mw", pa.float64()), ("facility_mw", pa.float64()),
    ("value_usd_per_hour", pa.float64()), ("energy_usd_per_hour", pa.float64()),
    ("carbon_usd_per_hour", pa.float64()), ("pair_usd_per_hour", pa.float64()),
    ("migration_usd_per_hour", pa.float64()), ("net_usd_per_hour", pa.float64()), ("moved", pa.bool_()),
    ("reason", pa.string()), ("reason_detail", pa.string()),
])


def portfolio(**site_changes: dict) -> Portfolio:
    """The test portfolio, with ``site_id={field: value}`` changes applied."""
    sites = [{**s, **site_changes.get(s["id"], {})} for s in SITES]
    return portfolio_from_dict({"name": "validate-test", "sites": sites}, "test")


PORTFOLIO = portfolio()
JOBS_TABLE = jobs_table(JOBS, PORTFOLIO)
JOB = {j["id"]: j for j in JOBS}


def plan_rows(placements: dict[str, list[tuple[str, str, int]]], pf: Portfolio = PORTFOLIO,
              power: bool = True) -> list[dict]:
    """Rows of a plan: listed jobs placed (gpus from the jobs), the rest unplaced 'out_valued'."""
    rows = []
    for job in JOBS:
        base = {"job_id": job["id"], "kind": job.get("kind", "training"),
                "tenant": job.get("tenant", "default"), "priority": 0, "moved": False, "reason_detail": ""}
        if job["id"] not in placements:
            rows.append({**base, "status": "unplaced", "site_id": None, "gpu_type": None, "replicas": 0,
                         "gpus": 0, "it_mw": 0.0, "facility_mw": 0.0, "reason": "out_valued"})
            continue
        for site_id, gpu_type, reps in placements[job["id"]]:
            unit = job.get("gpus_per_replica", 0) if base["kind"] == "inference" else job["gpus"]
            gpus = reps * unit if base["kind"] == "inference" else job["gpus"]
            it_mw = fac_mw = None
            if power:  # unit kW: the job's, else the pool's, else the catalog's
                site = next((s for s in pf.sites if s.id == site_id), None)
                pool = site.pools.get(gpu_type) if site else None
                kw = job.get("kw_per_gpu") or (pool and pool.kw_per_gpu) or pf.gpu_types[gpu_type].kw_per_gpu
                it_mw = reps * unit * kw / 1000.0
                fac_mw = it_mw * site.pue
            rows.append({**base, "status": "placed", "site_id": site_id, "gpu_type": gpu_type,
                         "replicas": reps, "gpus": gpus, "it_mw": it_mw, "facility_mw": fac_mw, "reason": ""})
    return rows


def to_table(rows: list[dict]) -> pa.Table:
    """A plan table with the solvers' schema."""
    return pa.Table.from_pylist(rows, schema=PLAN_SCHEMA)


def make_plan(changes: dict[str, list[tuple[str, str, int]] | None] | None = None, **kw) -> pa.Table:
    """The base plan with some jobs re-placed (``None``: left unplaced)."""
    placements = {**BASE, **(changes or {})}
    return to_table(plan_rows({k: v for k, v in placements.items() if v is not None}, **kw))


def check(plan: pa.Table, pf: Portfolio = PORTFOLIO, pairs: pa.Table | None = None,
          options: SolveOptions | None = None) -> list[Violation]:
    """Validate against the test jobs; every message is one non-empty sentence."""
    found = validate_plan(pf, JOBS_TABLE, plan, pairs, options)
    assert all(v.message and "\n" not in v.message for v in found)
    return found


def kinds(found: list[Violation]) -> set[str]:
    return {v.kind for v in found}


def hits(found: list[Violation]) -> set[tuple[str, str | None, str | None]]:
    return {(v.kind, v.job_id, v.site_id) for v in found}


def pairs_table(rows: list[dict]) -> pa.Table:
    keys = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist keeps only the first row's keys
    return validate_pairs(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), PORTFOLIO,
                          JOBS_TABLE, "pairs")


def test_valid_plan_passes():
    """The hand-built base plan obeys every constraint."""
    assert check(make_plan()) == []


def test_helper_power_figures_match_hand_numbers():
    """The helper's reported MW (job, pool and catalog kW) are right, so the base plan checks them."""
    rows = {(r["job_id"], r["site_id"]): r for r in plan_rows(BASE)}
    assert rows[("t1", "tx1")]["it_mw"] == pytest.approx(16 * 1.275 / 1000)
    assert rows[("t1", "tx1")]["facility_mw"] == pytest.approx(16 * 1.275 / 1000 * 1.25)
    assert rows[("t2", "tx1")]["it_mw"] == pytest.approx(8 * 1.0 / 1000)
    assert rows[("g1", "tx1")]["it_mw"] == pytest.approx(4 * 0.9 / 1000)


def test_missing_job():
    """A job with no row at all is reported missing."""
    plan = to_table([r for r in plan_rows(BASE) if r["job_id"] != "i1"])
    assert hits(check(plan)) == {("missing_job", "i1", None)}


def test_duplicate_unplaced_row():
    """Two unplaced rows of one job are a duplicate."""
    rows = plan_rows(BASE)
    rows.append(next(r for r in rows if r["job_id"] == "u1"))
    assert hits(check(to_table(rows))) == {("duplicate_job", "u1", None)}


def test_duplicate_placed_row():
    """Two placed rows of one job on the same pool are a duplicate."""
    found = check(make_plan({"t1": [("tx1", "H100", 1), ("tx1", "H100", 1)]}))
    assert ("duplicate_job", "t1", "tx1") in hits(found)
    assert kinds(found) == {"duplicate_job", "training_split"}


def test_unknown_job():
    """A row for a job id not in the input is reported."""
    rows = plan_rows(BASE) + [{**plan_rows(BASE)[-1], "job_id": "ghost"}]
    assert hits(check(to_table(rows))) == {("unknown_job", "ghost", None)}


def test_placed_and_unplaced():
    """A job both placed and unplaced is reported."""
    rows = plan_rows(BASE) + [{**plan_rows({})[0]}]  # t1's unplaced row
    assert hits(check(to_table(rows))) == {("placed_and_unplaced", "t1", None)}


def test_training_split_over_two_rows():
    """A training gang on two pools is split."""
    found = check(make_plan({"t1": [("tx1", "H100", 1), ("tx1", "A100", 1)]}))
    assert hits(found) == {("training_split", "t1", None)}


def test_training_replicas():
    """A training row must carry exactly one unit."""
    found = check(make_plan({"t1": [("tx1", "H100", 2)]}))
    assert hits(found) == {("training_replicas", "t1", "tx1")}


def test_wrong_gpus():
    """A row whose gpus disagrees with the job is caught."""
    rows = plan_rows(BASE)
    next(r for r in rows if r["job_id"] == "t1")["gpus"] = 8
    next(r for r in rows if (r["job_id"], r["site_id"]) == ("i2", "tx1"))["gpus"] = 2  # 1 replica x 1 GPU
    assert hits(check(to_table(rows))) == {("job_gpus", "t1", "tx1"), ("job_gpus", "i2", "tx1")}


def test_inference_replica_count():
    """An inference service must place exactly its replicas."""
    found = check(make_plan({"i1": [("tx1", "H100", 2), ("ok1", "H100", 1)]}))
    assert hits(found) == {("replicas", "i1", None)}


def test_min_sites():
    """An inference service spread over fewer than min_sites sites is caught."""
    found = check(make_plan({"i2": [("tx1", "H100", 2), ("ok1", "H100", 1)]}))
    assert hits(found) == {("min_sites", "i2", None)}


def test_max_share_per_site():
    """More than floor(share x replicas) replicas at one site is caught, naming the site."""
    found = check(make_plan({"i1": [("tx1", "H100", 3), ("ok1", "H100", 1)]}))
    assert hits(found) == {("max_share", "i1", "tx1")}


def test_gpu_inventory():
    """GPUs used on a pool beyond its inventory are caught at that site."""
    found = check(make_plan({"u1": [("ok1", "H100", 1)]}))  # 17 + 8 > 20
    assert hits(found) == {("gpus", None, "ok1")}


def test_power():
    """Facility MW beyond grid - reserve at a site is caught."""
    found = check(make_plan({"t1": [("fi1", "H100", 1)]}))  # 17 H100 x 1.275 kW x 1.2 > 15 kW
    assert hits(found) == {("power", None, "fi1")}


def test_power_reserve():
    """The reserve_mw headroom counts: a plan that fits 15 kW fails when the reserve leaves 12 kW."""
    plan = make_plan({"u1": [("fi1", "H100", 1)]})  # 9 H100 x 1.275 kW x 1.2 = 13.77 kW
    assert check(plan) == []
    assert hits(check(plan, portfolio(fi1={"reserve_mw": 0.008}))) == {("power", None, "fi1")}


def test_pair_power_override():
    """A pair's power_mw replaces the kW figure; a typed pair row wins over the site-wide one."""
    plan = make_plan({"u1": [("fi1", "H100", 1)]}, power=False)
    site_wide = {"job_id": "u1", "site_id": "fi1", "power_mw": 0.02}
    assert hits(check(plan, pairs=pairs_table([site_wide]))) == {("power", None, "fi1")}
    typed = {"job_id": "u1", "site_id": "fi1", "gpu_type": "H100", "power_mw": 0.001}
    assert check(plan, pairs=pairs_table([site_wide, typed])) == []
    assert check(plan, pairs=pairs_table([typed, site_wide])) == []
    # And it lowers the draw: the reserve that broke the plan above now leaves room.
    low = {"job_id": "u1", "site_id": "fi1", "power_mw": 0.005}
    assert check(plan, portfolio(fi1={"reserve_mw": 0.008}), pairs=pairs_table([low])) == []


def test_reported_power_mismatch():
    """A row whose reported it_mw disagrees with the recomputation is caught."""
    rows = plan_rows(BASE)
    next(r for r in rows if r["job_id"] == "t1")["it_mw"] *= 1.01
    assert hits(check(to_table(rows))) == {("reported_power", "t1", "tx1")}


def test_offline_site():
    """An offline site accepts nothing: eligibility and zero capacity."""
    found = check(make_plan({"u1": [("off1", "H100", 1)]}))
    assert hits(found) == {("eligibility_online", "u1", "off1"), ("power", None, "off1")}


def test_gpu_type():
    """A type the job does not accept is caught."""
    found = check(make_plan({"g1": [("tx1", "H100", 1)]}))
    assert hits(found) == {("eligibility_gpu_type", "g1", "tx1")}


def test_region():
    """A site outside the job's allowed regions is caught."""
    found = check(make_plan({"reg": [("fi1", "H100", 1)]}))
    assert hits(found) == {("eligibility_region", "reg", "fi1")}


def test_tenant():
    """A site that does not admit the job's tenant is caught."""
    found = check(make_plan({"glx": [("fi1", "H100", 1)]}))
    assert hits(found) == {("eligibility_tenant", "glx", "fi1")}


def test_cooling():
    """A liquid-cooled type at an air-only site is caught."""
    found = check(make_plan({"glx": [("tx1", "GB200", 1)]}))
    assert hits(found) == {("eligibility_cooling", "glx", "tx1")}


def test_latency():
    """Replicas beyond max_latency_ms from the demand region, or at unknown latency, are caught."""
    found = check(make_plan({"i1": [("tx1", "H100", 2), ("fi1", "H100", 2)]}))
    assert hits(found) == {("eligibility_latency", "i1", "fi1")}
    unknown = check(make_plan(), portfolio(ok1={"latency_ms": {}}))
    assert hits(unknown) == {("eligibility_latency", "i1", "ok1")}


def test_gang_size():
    """A training gang larger than the site's max_gang_gpus is caught."""
    found = check(make_plan({"big": [("tx1", "H100", 1)]}))
    assert hits(found) == {("eligibility_gang_size", "big", "tx1")}


def test_forbidden_pair():
    """A forbidden (job, site) or (job, site, type) pair is caught; other types stay allowed."""
    found = check(make_plan(), pairs=pairs_table([{"job_id": "t1", "site_id": "tx1", "forbidden": True}]))
    assert hits(found) == {("eligibility_forbidden", "t1", "tx1")}
    typed = pairs_table([{"job_id": "t1", "site_id": "tx1", "gpu_type": "A100", "forbidden": True}])
    assert check(make_plan(), pairs=typed) == []
    found = check(make_plan({"t1": [("tx1", "A100", 1)]}), pairs=typed)
    assert hits(found) == {("eligibility_forbidden", "t1", "tx1")}


def test_unknown_site_type_and_missing_pool():
    """Placed rows naming an unknown site, an unknown type or an absent pool are caught."""
    found = check(make_plan({"glx": [("zz9", "H100", 1)]}, power=False))
    assert hits(found) == {("unknown_site", "glx", "zz9")}
    found = check(make_plan({"glx": [("tx1", "X999", 1)]}, power=False))
    assert hits(found) == {("unknown_gpu_type", "glx", "tx1")}
    assert hits(check(make_plan({"glx": [("ok1", "A100", 1)]}))) == {("no_pool", "glx", "ok1")}


def test_required_unplaced():
    """A required job left unplaced is caught."""
    assert hits(check(make_plan({"r1": None}))) == {("required", "r1", None)}


def test_pinned_moved():
    """A pinned job placed away from its current site/type is caught."""
    found = check(make_plan({"t3": [("tx1", "H100", 1)]}))
    assert hits(found) == {("pinned", "t3", "tx1")}
    assert check(make_plan({"t3": None})) == []  # unplaced and not required: fine


def test_max_moves():
    """More moved jobs than max_moves is caught (i1 counts as moved in the base plan)."""
    assert check(make_plan(), options=SolveOptions(max_moves=1)) == []
    assert kinds(check(make_plan(), options=SolveOptions(max_moves=0))) == {"max_moves"}
    moved = make_plan({"t2": [("tx1", "A100", 1)]})
    assert kinds(check(moved, options=SolveOptions(max_moves=1))) == {"max_moves"}


def test_max_migration_usd():
    """Migration dollars (per replica moved for inference) beyond the budget are caught."""
    assert check(make_plan(), options=SolveOptions(max_migration_usd=100.0)) == []  # 2 replicas x 50
    assert kinds(check(make_plan(), options=SolveOptions(max_migration_usd=99.0))) == {"max_migration_usd"}
    moved = make_plan({"t2": [("tx1", "A100", 1)]})  # + 200
    assert kinds(check(moved, options=SolveOptions(max_migration_usd=250.0))) == {"max_migration_usd"}
    assert check(moved, options=SolveOptions(max_migration_usd=300.0)) == []


def test_options_default_to_portfolio_solve():
    """Without options, the portfolio's [solve] budget applies."""
    pf = portfolio_from_dict({"name": "b", "sites": SITES, "solve": {"max_moves": 0}}, "test")
    assert kinds(validate_plan(pf, jobs_table(JOBS, pf), make_plan())) == {"max_moves"}


def test_unplaced_without_reason():
    """An unplaced row needs a reason code."""
    rows = plan_rows(BASE)
    next(r for r in rows if r["job_id"] == "u1")["reason"] = ""
    assert hits(check(to_table(rows))) == {("unplaced_reason", "u1", None)}


def test_bad_status_and_odd_unplaced_row():
    """An unknown status, and an unplaced row that claims GPUs, are caught."""
    rows = plan_rows(BASE)
    u1 = next(r for r in rows if r["job_id"] == "u1")
    u1["gpus"] = 8
    assert hits(check(to_table(rows))) == {("unplaced_row", "u1", None)}
    u1["gpus"], u1["status"] = 0, "maybe"
    assert kinds(check(to_table(rows))) == {"bad_status", "missing_job"}


def test_missing_column():
    """A plan without a needed column is a schema violation, not a crash."""
    assert kinds(check(make_plan().drop_columns(["gpus"]))) == {"schema"}


def test_every_violation_reported():
    """Several broken constraints in one plan are all returned."""
    found = check(make_plan({"g1": [("tx1", "H100", 1)], "big": [("tx1", "H100", 1)], "r1": None}))
    assert kinds(found) == {"eligibility_gpu_type", "eligibility_gang_size", "required"}


def test_csv_round_trip():
    """A valid plan written to CSV and read back (nulls as empty strings) still validates."""
    buf = io.BytesIO()
    pacsv.write_csv(make_plan(), buf)
    back = pacsv.read_csv(io.BytesIO(buf.getvalue()))
    assert back.column("site_id").null_count == 0  # unplaced sites came back as ""
    assert check(back) == []
    broken = make_plan({"t1": [("fi1", "H100", 1)]})
    buf = io.BytesIO()
    pacsv.write_csv(broken, buf)
    assert kinds(check(pacsv.read_csv(io.BytesIO(buf.getvalue())))) == {"power"}


def test_all_unplaced_random_instances():
    """On random instances, the all-unplaced plan is valid unless a job is required."""
    for seed in range(10):
        inst = random_instance(seed, with_required=seed % 2 == 1)
        ids = inst.jobs.column("id").to_pylist()
        plan = to_table([{"job_id": j, "status": "unplaced", "replicas": 0, "gpus": 0, "reason": "out_valued"}
                         for j in ids])
        found = validate_plan(inst.portfolio, inst.jobs, plan, inst.pairs)
        required = set(inst.jobs.filter(inst.jobs.column("required")).column("id").to_pylist())
        assert hits(found) == {("required", j, None) for j in required}


def context(plan: pa.Table, pairs: pa.Table | None = None, options: SolveOptions | None = None) -> PlanContext:
    """The checkers' shared view of ``plan`` against the test inputs."""
    return build_context(PORTFOLIO, JOBS_TABLE, plan, pairs, options or PORTFOLIO.solve)


def test_every_checker_passes_the_valid_plan():
    """Alone, each checker finds nothing wrong with the base plan."""
    ctx = context(make_plan())
    assert all(checker(ctx) == [] for checker in CHECKS)


def test_validate_plan_is_the_checkers_in_order():
    """validate_plan returns exactly the checkers' violations, in ``CHECKS`` order."""
    plan = make_plan({"g1": [("tx1", "H100", 1)], "big": [("tx1", "H100", 1)], "r1": None,
                      "u1": [("ok1", "H100", 1)]})
    ctx = context(plan, options=SolveOptions(max_moves=0))
    found = validate_plan(PORTFOLIO, JOBS_TABLE, plan, None, SolveOptions(max_moves=0))
    assert found == [v for checker in CHECKS for v in checker(ctx)]
    assert len(kinds(found)) == 5


def test_check_once_alone():
    """check_once flags a job with no row, and nothing else does."""
    ctx = context(to_table([r for r in plan_rows(BASE) if r["job_id"] != "i1"]))
    assert hits(check_once(ctx)) == {("missing_job", "i1", None)}
    assert len(check_once(ctx)) == 1


def test_check_gpus_alone():
    """check_gpus flags one over-full pool, naming the site and both GPU counts."""
    found = check_gpus(context(make_plan({"u1": [("ok1", "H100", 1)]})))
    assert found == [Violation("gpus", None, "ok1", "site 'ok1' uses 25 H100 GPUs, its pool has 20")]


def test_check_power_alone():
    """check_power flags the one site past grid - reserve."""
    found = check_power(context(make_plan({"t1": [("fi1", "H100", 1)]})))
    assert [(v.kind, v.site_id) for v in found] == [("power", "fi1")]
    assert "grid 0.02 - reserve 0.005" in found[0].message


def test_check_region_alone():
    """check_region flags the one row outside the job's regions."""
    found = check_region(context(make_plan({"reg": [("fi1", "H100", 1)]})))
    assert hits(found) == {("eligibility_region", "reg", "fi1")} and len(found) == 1


def test_check_pinned_alone():
    """check_pinned flags a pinned job placed away from its current pool."""
    found = check_pinned(context(make_plan({"t3": [("tx1", "H100", 1)]})))
    assert hits(found) == {("pinned", "t3", "tx1")} and len(found) == 1


def test_check_migration_budget_alone():
    """check_migration_budget flags a plan over max_moves once, listing the moved job."""
    found = check_migration_budget(context(make_plan(), options=SolveOptions(max_moves=0)))
    assert [v.kind for v in found] == ["max_moves"]
    assert "(moved: i1)" in found[0].message
