"""What-if scenarios: a TOML file of named edits to a base portfolio and its jobs.

A planner asks "what if this interconnect slips", "what if the grid caps Texas at 70%",
"what if 300 MW of converted mining capacity comes online", "what if a tenant's demand or
reserved capacity doubles". Each question is a ``Scenario``; a ``[[grid]]`` of factors
expands to every combination of its levels. The file::

    [[scenario]]
    name = "tx-curtailed"
    description = "ERCOT caps the Texas campuses at 70% for the summer"
    sites = [{ match = "tx-*", grid_mw_scale = 0.7 }]

    [[scenario]]
    name = "mining-conversion"
    add_sites = [{ id = "ok-conv-1", region = "us-ok", grid_mw = 300, pools = { H100 = 100000 } }]

    [[scenario]]
    name = "acme-doubles"
    demand = [{ tenant = "acme", scale = 2.0 }]
    tenant_capacity = [{ tenant = "acme", scale = 2.0 }]

    [[grid]]                       # 3 x 2 = 6 more scenarios, named "curtail=70%,price=high" etc.
    factor = "curtail"
    levels = [{ name = "100%" }, { name = "85%", sites = [{ match = "*", grid_mw_scale = 0.85 }] },
              { name = "70%", sites = [{ match = "*", grid_mw_scale = 0.7 }] }]
    [[grid]]
    factor = "price"
    levels = [{ name = "base" }, { name = "high", sites = [{ match = "*", price_scale = 1.5 }] }]

The file's *shape* (unknown keys, wrong types) is checked up front: a typo fails the whole
sweep before any solve, naming the field. Edits that do not fit the portfolio (a pattern that
matches no site, an unknown GPU type, a grid below its reserve) fail only their scenario,
whose row in the sweep says why.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from placement.errors import InputError, shown
from placement.io.config import read_document, validation_problems
from placement.model.jobs import validate_jobs, validate_pairs
from placement.model.portfolio import Portfolio, Site

BASE = "base"
Scale = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ScenarioError(Exception):
    """An edit that does not fit the portfolio; the sweep reports it in the scenario's row."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteChange(_Strict):
    """Edits to every site whose id matches ``match`` (shell patterns: ``*``, ``tx-*``)."""

    match: str | list[str]
    online: bool | None = None
    grid_mw: Scale | None = None
    grid_mw_scale: Scale | None = None
    reserve_mw: Scale | None = None
    pue: Annotated[float, Field(ge=1.0, le=3.0)] | None = None
    price_usd_per_mwh: float | None = None
    price_scale: Scale | None = None
    carbon_kg_per_mwh: Scale | None = None
    # GPU pools: set a type's count (a new type adds a pool; 0 removes it), or scale them all.
    pools: dict[str, Annotated[int, Field(ge=0)]] | None = None
    pools_scale: Scale | None = None
    tenants: list[str] | None = None  # the lease: only these tenants; [] opens the site to all

    def patterns(self) -> list[str]:
        return [self.match] if isinstance(self.match, str) else list(self.match)


class DemandChange(_Strict):
    """Scale demand of a tenant and/or kind: replicas of services, the number of training jobs.

    A service keeps its $ per replica-hour (value scales with replicas, at least one replica
    stays). Training jobs are dropped (scale < 1) or cloned (scale > 1, ids suffixed ``#2``,
    ``#3``..., new jobs with no current placement or pair overrides) by a seeded draw.
    """

    tenant: str | None = None
    kind: Literal["training", "inference"] | None = None
    scale: Scale


class TenantCapacity(_Strict):
    """Scale the capacity reserved for a tenant: grid MW and GPUs of the sites leased only to it."""

    tenant: str
    scale: Scale


class Edits(_Strict):
    """The edits a scenario (or one level of a grid factor) makes, applied in this order."""

    sites: list[SiteChange] = Field(default_factory=list)
    add_sites: list[dict[str, Any]] = Field(default_factory=list)
    tenant_capacity: list[TenantCapacity] = Field(default_factory=list)
    demand: list[DemandChange] = Field(default_factory=list)

    def __add__(self, other: Edits) -> Edits:
        return Edits(**{k: getattr(self, k) + getattr(other, k) for k in Edits.model_fields})


class Scenario(Edits):
    """A named what-if: the base inputs with these edits."""

    name: str = Field(min_length=1, max_length=120, pattern=r"^[^/\\\x00-\x1f\x7f]+$")
    description: str = ""

    @field_validator("name")
    @classmethod
    def _a_safe_folder_name(cls, name: str) -> str:
        """The name is a folder under the sweep's output: '.', '..' and hidden names would escape it."""
        if name.startswith(".") or name.strip() != name:
            raise ValueError("must be a plain folder name: not starting with '.', no leading or trailing spaces")
        return name

    def edits(self) -> Edits:
        return Edits(**{k: getattr(self, k) for k in Edits.model_fields})


class GridFactor(_Strict):
    """One axis of a grid: each level is a named set of edits (a level with none is the base)."""

    factor: str = Field(min_length=1)
    levels: list[Scenario] = Field(min_length=1)


class ScenarioFile(_Strict):
    scenario: list[Scenario] = Field(default_factory=list)
    grid: list[GridFactor] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ScenarioFile:
        seen = {BASE}
        for s in self.expand():
            if s.name in seen:
                raise ValueError(f"scenario name '{s.name}' is used twice ('{BASE}' is the unedited inputs)")
            seen.add(s.name)
        return self

    def expand(self) -> list[Scenario]:
        """Named scenarios, then the grid's combinations (the all-empty combination dropped)."""
        out = list(self.scenario)
        if self.grid:
            for combo in itertools.product(*(f.levels for f in self.grid)):
                edits = sum((level.edits() for level in combo), Edits())
                if edits == Edits():
                    continue
                name = ",".join(f"{f.factor}={level.name}" for f, level in zip(self.grid, combo))
                out.append(Scenario(name=name, description="; ".join(l.description for l in combo if l.description),
                                    **edits.model_dump()))
        return out


def load_scenarios(path: str | Path) -> list[Scenario]:
    """Read and check a scenarios file; shape errors raise ``InputError`` naming the field."""
    data = read_document(path)
    try:
        scenarios = ScenarioFile.model_validate(data).expand()
    except ValidationError as exc:
        raise InputError(str(path), validation_problems(exc)) from None
    if not scenarios:
        raise InputError(str(path), [("", "no [[scenario]] and no [[grid]]: nothing to sweep")])
    return scenarios


def apply_scenario(portfolio: Portfolio, jobs: pa.Table, pairs: pa.Table | None, scenario: Edits,
                   seed: int = 0) -> tuple[Portfolio, pa.Table, pa.Table | None]:
    """The scenario's portfolio, jobs and pairs; ``ScenarioError`` says which edit does not fit."""
    data = portfolio.model_dump()
    for i, change in enumerate(scenario.sites):
        _edit_sites(data, change, f"sites[{i}]")
    for i, site in enumerate(scenario.add_sites):
        try:
            data["sites"].append(Site.model_validate(site).model_dump())
        except ValidationError as exc:
            raise ScenarioError("; ".join(f"add_sites[{i}].{loc}: {msg}" for loc, msg in validation_problems(exc))) from None
    for i, cap in enumerate(scenario.tenant_capacity):
        _scale_tenant(data, cap, f"tenant_capacity[{i}]")
    try:
        edited = Portfolio.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError("; ".join(f"{loc}: {msg}" for loc, msg in validation_problems(exc))) from None
    if not scenario.demand:
        return edited, jobs, pairs  # the same table: sites are never removed, so job rows stay valid
    for i, change in enumerate(scenario.demand):
        jobs = _scale_demand(jobs, change, seed + i, f"demand[{i}]")
    try:
        jobs = validate_jobs(jobs, edited, "scenario jobs")
        if pairs is not None:
            pairs = pairs.filter(pc.is_in(pairs.column("job_id"), value_set=jobs.column("id")))
            pairs = validate_pairs(pairs, edited, jobs, "scenario pairs")
    except InputError as exc:
        raise ScenarioError(str(exc)) from None
    return edited, jobs, pairs


def _edit_sites(data: dict[str, Any], change: SiteChange, where: str) -> None:
    hits = [s for s in data["sites"] if any(fnmatch.fnmatchcase(s["id"], p) for p in change.patterns())]
    if not hits:
        raise ScenarioError(f"{where}.match: {shown(change.match)} matches no site")
    for gpu in change.pools or {}:
        if gpu not in data["gpu_types"]:
            raise ScenarioError(f"{where}.pools: unknown GPU type '{gpu}'")
    for site in hits:
        for name in ("online", "grid_mw", "reserve_mw", "pue", "price_usd_per_mwh", "carbon_kg_per_mwh", "tenants"):
            value = getattr(change, name)
            if value is not None:
                site[name] = value if name != "tenants" or value else None
        if change.grid_mw_scale is not None:
            site["grid_mw"] *= change.grid_mw_scale
            site["reserve_mw"] *= change.grid_mw_scale
        if change.price_scale is not None:
            site["price_usd_per_mwh"] *= change.price_scale
        if change.pools_scale is not None:
            for pool in site["pools"].values():
                pool["gpus"] = int(math.floor(pool["gpus"] * change.pools_scale))
        for gpu, count in (change.pools or {}).items():
            if count == 0:
                site["pools"].pop(gpu, None)
            else:
                site["pools"].setdefault(gpu, {"gpus": 0, "kw_per_gpu": None})["gpus"] = count


def _scale_tenant(data: dict[str, Any], cap: TenantCapacity, where: str) -> None:
    leased = [s for s in data["sites"] if s["tenants"] == [cap.tenant]]
    if not leased:
        raise ScenarioError(f"{where}.tenant: no site is leased only to '{cap.tenant}'")
    for site in leased:
        site["grid_mw"] *= cap.scale
        site["reserve_mw"] *= cap.scale
        for pool in site["pools"].values():
            pool["gpus"] = int(math.floor(pool["gpus"] * cap.scale))


def _scale_demand(jobs: pa.Table, change: DemandChange, seed: int, where: str) -> pa.Table:
    hit = np.ones(jobs.num_rows, bool)
    if change.tenant is not None:
        hit &= pc.equal(jobs.column("tenant"), change.tenant).to_numpy(zero_copy_only=False)
    if change.kind is not None:
        hit &= pc.equal(jobs.column("kind"), change.kind).to_numpy(zero_copy_only=False)
    if not hit.any():
        raise ScenarioError(f"{where}: no job matches tenant={shown(change.tenant)} kind={shown(change.kind)}")
    service = hit & pc.equal(jobs.column("kind"), "inference").to_numpy(zero_copy_only=False)
    if service.any():
        replicas = jobs.column("replicas").to_numpy(zero_copy_only=False)
        scaled = np.where(service, np.maximum(1, np.round(replicas * change.scale)), replicas)
        per_replica = jobs.column("value_usd_per_hour").to_numpy() / np.where(service, replicas, 1)
        value = np.where(service, per_replica * scaled, jobs.column("value_usd_per_hour").to_numpy())
        min_sites = np.minimum(jobs.column("min_sites").to_numpy(zero_copy_only=False), scaled)
        jobs = _set(jobs, replicas=scaled.astype(np.int64), value_usd_per_hour=value,
                    min_sites=np.where(service, min_sites, jobs.column("min_sites").to_numpy(zero_copy_only=False)))
    training = np.flatnonzero(hit & ~service)
    if len(training) == 0 or change.scale == 1.0:
        return jobs
    rng = np.random.default_rng(seed)
    whole, frac = divmod(change.scale, 1.0)
    extra = rng.permutation(training)[: int(round(len(training) * frac))]
    if change.scale < 1.0:
        drop = np.setdiff1d(training, extra)
        return jobs.filter(pa.array(~np.isin(np.arange(jobs.num_rows), drop)))
    copies = [np.repeat(training, int(whole) - 1), np.sort(extra)]
    return pa.concat_tables([jobs, _clones(jobs, np.concatenate(copies))])


def _clones(jobs: pa.Table, rows: np.ndarray) -> pa.Table:
    """New jobs copied from ``rows``: ids suffixed by copy number, nothing running, not pinned."""
    ids = jobs.column("id").to_numpy(zero_copy_only=False)[rows]
    copy_no = np.zeros(len(rows), np.int64)
    seen: dict[str, int] = {}
    for k, job_id in enumerate(ids):
        seen[job_id] = seen.get(job_id, 1) + 1
        copy_no[k] = seen[job_id]
    out = jobs.take(pa.array(rows))
    return _set(out, id=np.array([f"{i}#{n}" for i, n in zip(ids, copy_no)], object),
                current_site=[None] * len(rows), current_gpu_type=[None] * len(rows),
                migration_cost_usd=np.zeros(len(rows)), pinned=np.zeros(len(rows), bool))


def _set(table: pa.Table, **columns: Sequence[Any] | np.ndarray) -> pa.Table:
    for name, values in columns.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))
    return table
