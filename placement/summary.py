"""A plan's summary: the typed, frozen record behind the summary JSON.

Built once per plan by ``placement.plan.build_plan``; ``solve`` and ``replan`` add the
validator's verdict with ``Summary.finished`` (a validated copy: the model is frozen).
``to_dict`` gives the JSON document: keys in field order, the optional sections (shadow prices,
``required_unplaced``, ``changes``) only when present. Dict-style reads (``summary["gap"]``,
``summary.get("bound")``, ``"stats" in summary``) follow that document, for callers written
against the plain dict this replaced.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypedDict  # pydantic needs this TypedDict on Python < 3.12


class PlanStatus(StrEnum):
    """How far the solver got: proven optimal, a feasible plan, out of time, stopped by a signal
    (SIGINT or SIGTERM: the best plan found so far), or an infeasible input."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    TIME_LIMIT = "time_limit"
    INTERRUPTED = "interrupted"
    INFEASIBLE = "infeasible"


class TierFigures(TypedDict):
    """One priority tier: its jobs, how many are placed, their GPUs and net $/h."""

    jobs: int
    placed: int
    gpus_placed: int
    objective: float


class SiteUse(TypedDict):
    """One site: facility MW used and its cap, and ``[used, total]`` GPUs per type."""

    site_id: str
    mw_used: float
    mw_cap: float
    gpus: dict[str, list[int]]


# Sections a summary has only when they apply; every other field is always in the JSON.
OPTIONAL = ("shadow_price_usd_per_mwh", "shadow_price_usd_per_gpu_hour", "required_unplaced", "changes")


class Summary(BaseModel):
    """The summary of a plan; field order is the JSON key order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    objective: float
    bound: float | None
    gap: float | None
    objective_breakdown: dict[str, float]
    objective_by_tier: dict[str, TierFigures]
    jobs_total: int
    jobs_placed: int
    jobs_unplaced: int
    unplaced_by_reason: dict[str, int]
    gpus_placed: int
    mw_used: float
    moves: int
    sites: list[SiteUse]
    solver: str
    status: PlanStatus
    backend: str
    seconds: float
    seed: int
    input_sha256: str
    version: str
    stats: dict[str, Any]
    shadow_price_usd_per_mwh: dict[str, float] | None = None
    shadow_price_usd_per_gpu_hour: dict[str, float] | None = None
    required_unplaced: list[str] | None = None
    changes: dict[str, Any] | None = None  # a re-plan's moves, stops, starts and MW shed

    def finished(self, required_unplaced: list[str], seconds: float, **more: Any) -> Summary:
        """This summary once the plan is validated: required jobs left unplaced make it infeasible.

        ``seconds`` is the whole call's wall time; ``more`` sets further fields (validated).
        """
        status = PlanStatus.INFEASIBLE if required_unplaced else self.status
        return self.model_validate({**dict(self), "status": status, "required_unplaced": required_unplaced,
                                    "seconds": seconds, **more})

    def to_dict(self) -> dict[str, Any]:
        """The summary JSON document as plain Python values (the status as its string)."""
        data = {name: getattr(self, name) for name in type(self).model_fields if name in self}
        data["status"] = self.status.value
        return data

    def __contains__(self, key: object) -> bool:
        """Whether the JSON document has ``key``: every field but an absent optional section."""
        return key in type(self).model_fields and not (key in OPTIONAL and getattr(self, str(key)) is None)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``summary[key]``, or ``default`` where the JSON document has no such key."""
        return self[key] if key in self else default
