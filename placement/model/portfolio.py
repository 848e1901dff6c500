"""The portfolio model: GPU types, sites with pools, objective settings and solve options.

Units are part of every field name. Jobs are columnar (``placement.model.jobs``): a million of them
are one Arrow table, not a million objects; ``TrainingJob`` and ``InferenceJob`` below are the
typed row shapes for library callers and inline config jobs, and go through the same
column-wise checks as a Parquet file.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from placement.errors import did_you_mean
from placement.model.base import Strict
from placement.model.horizon import Horizon

Megawatts = Annotated[float, Field(ge=0, allow_inf_nan=False)]
KilowattsPerGpu = Annotated[float, Field(gt=0, le=20, allow_inf_nan=False)]
Speed = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]
UsdPerMwh = Annotated[float, Field(ge=-1000, le=100_000, allow_inf_nan=False)]
Cooling = Literal["air", "liquid"]
# The solvers the pipeline runs and the scoring backends: a typo fails validation, naming the choices.
SolverName = Literal["auto", "greedy", "exact", "price", "lns", "decomposed"]
BackendName = Literal["auto", "cpu", "gpu", "reference"]


class GpuType(Strict):
    """A GPU model with its all-in IT power per GPU (server/rack level, not chip TDP)."""

    name: str = Field(min_length=1)
    kw_per_gpu: KilowattsPerGpu
    cooling: Cooling
    training_speed: Speed = 1.0
    inference_speed: Speed = 1.0
    source: str = ""


class PoolStep(Strict):
    """A pool's figures from one period on (deliveries, decommissioning, a refresh)."""

    gpus: Annotated[int, Field(ge=0)] | None = None
    kw_per_gpu: KilowattsPerGpu | None = None


class Pool(Strict):
    """GPUs of one type at one site; ``kw_per_gpu`` overrides the catalog's figure there.

    ``schedule`` (with a ``[horizon]``): figures by period, each holding until the next key.
    """

    gpus: Annotated[int, Field(ge=0)]
    kw_per_gpu: KilowattsPerGpu | None = None
    schedule: dict[str, PoolStep] = Field(default_factory=dict)


class SiteStep(Strict):
    """A site's figures from one period on (a phase energised, a curtailment, a new tariff)."""

    grid_mw: Megawatts | None = None
    reserve_mw: Megawatts | None = None
    price_usd_per_mwh: UsdPerMwh | None = None
    carbon_kg_per_mwh: Annotated[float, Field(ge=0, le=2000, allow_inf_nan=False)] | None = None


class Site(Strict):
    """A data-center site limited by its grid interconnect (facility side) and its GPU pools."""

    id: str = Field(min_length=1)
    region: str = Field(min_length=1)
    grid_mw: Megawatts
    reserve_mw: Megawatts = 0.0
    pue: Annotated[float, Field(ge=1.0, le=3.0, allow_inf_nan=False)] = 1.3
    pools: dict[str, Pool] = Field(default_factory=dict)
    price_usd_per_mwh: UsdPerMwh = 60.0
    carbon_kg_per_mwh: Annotated[float, Field(ge=0, le=2000, allow_inf_nan=False)] = 0.0
    latency_ms: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    max_gang_gpus: Annotated[int, Field(gt=0)] | None = None
    cooling: list[Cooling] = Field(default_factory=lambda: ["air", "liquid"])
    tenants: list[str] | None = None
    online: bool = True
    # With a [horizon]: the first period the site is powered (construction finished), and
    # figures by period, each holding until the next key.
    online_from: str | None = None
    schedule: dict[str, SiteStep] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _pool_shorthand(cls, data: object) -> object:
        """Accept ``pools = {H100 = 4096}`` as shorthand for ``{H100 = {gpus = 4096}}``."""
        if isinstance(data, dict) and isinstance(data.get("pools"), dict):
            data = dict(data)
            data["pools"] = {
                k: ({"gpus": v} if isinstance(v, int) and not isinstance(v, bool) else v)
                for k, v in data["pools"].items()
            }
        return data

    @model_validator(mode="after")
    def _reserve_within_grid(self) -> Site:
        if self.reserve_mw > self.grid_mw:
            raise ValueError(f"reserve_mw {self.reserve_mw} exceeds grid_mw {self.grid_mw}")
        return self

    def latency_to(self, region: str) -> float | None:
        """Latency to a demand region: listed value, 0 within the site's own region, else unknown."""
        if region in self.latency_ms:
            return self.latency_ms[region]
        return 0.0 if region == self.region else None


class ObjectiveSettings(Strict):
    """Prices that turn power and moves into dollars per hour."""

    carbon_usd_per_tonne: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    # A move's one-off migration_cost_usd is spread over this horizon in the per-hour objective.
    migration_horizon_hours: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 24.0


class SolveOptions(Strict):
    """How to solve: solver, limits, seed, backend, the migration budget and the parallel executor."""

    solver: SolverName = "auto"
    time_limit_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 30.0
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0  # every engine (CP-SAT, HiGHS, NumPy) accepts these
    backend: BackendName = "auto"
    threads: Annotated[int, Field(ge=0)] = 0  # CP-SAT workers; 0: all cores (HiGHS sizes its own, once per process)
    max_moves: Annotated[int, Field(ge=0)] | None = None
    max_migration_usd: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    # The decomposed solver and sweeps: how many parts, on which executor, with how many workers.
    parts: Annotated[int, Field(ge=0)] = 0  # 0: one per worker
    executor: Literal["local", "ray"] = "local"
    workers: Annotated[int, Field(ge=0)] = 0  # 0: all cores (local) or the cluster's CPUs (ray)
    address: str | None = None  # an existing Ray cluster; None: start a local one
    # Work budgets instead of wall-clock ones, one thread per engine: the same input, seed and
    # backend give the same plan under any load (see ``placement.core.clock``).
    deterministic: bool = False


class Portfolio(Strict):
    """Sites, the GPU catalog they use, and the objective settings."""

    name: str = "portfolio"
    description: str = ""
    gpu_types: dict[str, GpuType]
    sites: list[Site] = Field(min_length=1)
    objective: ObjectiveSettings = ObjectiveSettings()
    solve: SolveOptions = SolveOptions()
    horizon: Horizon | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> Portfolio:
        seen: set[str] = set()
        for i, site in enumerate(self.sites):
            if site.id in seen:
                raise ValueError(f"sites[{i}].id: duplicate site id '{site.id}'")
            seen.add(site.id)
            for gpu in site.pools:
                if gpu not in self.gpu_types:
                    raise ValueError(
                        f"sites[{i}].pools: unknown GPU type '{gpu}'"
                        f"{did_you_mean(gpu, self.gpu_types)}"
                    )
        _check_schedules(self)
        for key, gpu_type in self.gpu_types.items():
            if gpu_type.name != key:
                raise ValueError(f"gpu_types.{key}.name is '{gpu_type.name}', expected '{key}'")
        return self

    def site(self, site_id: str) -> Site:
        """The site with this id (KeyError if none)."""
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)


def _check_schedules(portfolio: Portfolio) -> None:
    """Schedule keys and ``online_from`` name horizon periods, keys in horizon order; each
    period's reserve stays within its grid. Without a horizon there may be none."""
    horizon = portfolio.horizon
    for i, site in enumerate(portfolio.sites):
        keyed = [(f"sites[{i}].schedule", site.schedule)]
        keyed += [(f"sites[{i}].pools.{t}.schedule", pool.schedule) for t, pool in site.pools.items()]
        if horizon is None:
            for where, sched in keyed:
                if sched:
                    raise ValueError(f"{where}: a schedule needs a [horizon] section")
            if site.online_from is not None:
                raise ValueError(f"sites[{i}].online_from: needs a [horizon] section, got '{site.online_from}'")
            continue
        if site.online_from is not None and not horizon.after_end(site.online_from):
            try:
                horizon.index(site.online_from)
            except ValueError as exc:
                raise ValueError(f"sites[{i}].online_from: {exc}") from None
        for where, sched in keyed:
            at = []
            for key in sched:
                try:
                    at.append(horizon.index(key))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
            if at != sorted(at):
                raise ValueError(f"{where}: keys out of order: {', '.join(sched)} (give them in horizon order)")
        grid, reserve = site.grid_mw, site.reserve_mw
        for key, step in site.schedule.items():
            grid = step.grid_mw if step.grid_mw is not None else grid
            reserve = step.reserve_mw if step.reserve_mw is not None else reserve
            if reserve > grid:
                raise ValueError(f"sites[{i}].schedule.{key}: reserve_mw {reserve} exceeds grid_mw {grid}")


class _JobBase(Strict):
    id: str = Field(min_length=1)
    tenant: str = "default"
    priority: int = 0
    value_usd_per_hour: float
    required: bool = False
    gpu_types: str = ""  # "H100,H200:1.4" (optional per-type speed); empty: any type
    regions: str = ""  # "us-tx,us-ok"; empty: any region
    kw_per_gpu: float | None = None
    current_site: str | None = None
    current_gpu_type: str | None = None
    migration_cost_usd: float = 0.0
    pinned: bool = False


class TrainingJob(_JobBase):
    """A gang: all ``gpus`` at one site, of one GPU type."""

    kind: Literal["training"] = "training"
    gpus: int


class InferenceJob(_JobBase):
    """A service: ``replicas`` of ``gpus_per_replica``, split across sites and types, all or none."""

    kind: Literal["inference"] = "inference"
    gpus_per_replica: int
    replicas: int
    demand_region: str | None = None
    max_latency_ms: float | None = None
    min_sites: int = 1
    max_share_per_site: float = 1.0


Job = Annotated[TrainingJob | InferenceJob, Field(discriminator="kind")]
