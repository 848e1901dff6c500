"""The build-out horizon: named periods, their hours, and schedules that change figures by period.

A horizon is either a list of period names (``periods = ["2026-Q1", "2026-Q2"]``) or a
calendar: ``start = "2026-Q1"``, ``step = "quarter"`` (or ``"month"``), ``count = 12``, which
names periods ``YYYY-Qn`` or ``YYYY-MM``. Hours per period come from the calendar (a quarter of
2026-Q1 has 2,160 hours), or from ``hours`` (one figure for all, or one per period); a plain list
of names needs them. ``discount_rate_per_year`` discounts later periods by
``(1 + rate) ** -years`` from the horizon's start.

A *schedule* maps period names to figures that hold from that period until the next key, in
horizon order; before the first key the base figure holds.
"""

from __future__ import annotations

import calendar
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from placement.model.base import Strict

Hours = Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def calendar_index(name: str) -> tuple[str, int] | None:
    """(step, months since year 0) of a calendar period name (``2027-Q1``, ``2027-01``), else None."""
    if m := _QUARTER.match(name):
        return "quarter", int(m[1]) * 12 + (int(m[2]) - 1) * 3
    if m := _MONTH.match(name):
        return "month", int(m[1]) * 12 + int(m[2]) - 1
    return None


def _month_hours(months: int) -> float:
    year, month = divmod(months, 12)
    return 24.0 * calendar.monthrange(year, month + 1)[1]


class Horizon(Strict):
    """Named periods with hours each, and the yearly discount rate applied to later ones."""

    periods: list[Annotated[str, Field(min_length=1)]] | None = None
    start: str | None = None
    step: Literal["month", "quarter"] | None = None
    count: Annotated[int, Field(ge=1, le=1000)] | None = None
    hours: Hours | list[Hours] | None = None
    discount_rate_per_year: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0

    @field_validator("start")
    @classmethod
    def _calendar_start(cls, v: str | None) -> str | None:
        if v is not None and calendar_index(v) is None:
            raise ValueError(f"start '{v}' is not a period like 2026-Q1 or 2026-01")
        return v

    @model_validator(mode="after")
    def _one_form(self) -> Horizon:
        listed = self.periods is not None
        generated = (self.start, self.step, self.count)
        if listed == any(x is not None for x in generated):
            raise ValueError("give either periods = [...] or start, step and count")
        if not listed and None in generated:
            raise ValueError("a calendar horizon needs start, step and count")
        if self.start is not None and calendar_index(self.start)[0] != self.step:
            raise ValueError(f"start '{self.start}' does not name a {self.step}")
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError("periods: names must be unique")
        if isinstance(self.hours, list) and len(self.hours) != len(names):
            raise ValueError(f"hours: {len(self.hours)} figures for {len(names)} periods")
        if self.hours is None and any(calendar_index(n) is None for n in names):
            raise ValueError("hours: needed when period names are not calendar months or quarters")
        return self

    @property
    def names(self) -> list[str]:
        """The period names, in order."""
        if self.periods is not None:
            return list(self.periods)
        step, first = calendar_index(self.start)
        months = 3 if step == "quarter" else 1
        out = []
        for i in range(self.count):
            year, m = divmod(first + i * months, 12)
            out.append(f"{year}-Q{m // 3 + 1}" if step == "quarter" else f"{year}-{m + 1:02d}")
        return out

    def period_hours(self) -> list[float]:
        """Hours in each period: given, or from the calendar."""
        names = self.names
        if isinstance(self.hours, list):
            return list(self.hours)
        if self.hours is not None:
            return [float(self.hours)] * len(names)
        out = []
        for n in names:
            step, first = calendar_index(n)
            out.append(sum(_month_hours(first + k) for k in range(3 if step == "quarter" else 1)))
        return out

    def discount(self) -> list[float]:
        """Discount factor at the start of each period: ``(1 + rate) ** -years since the first``."""
        out, hours = [], 0.0
        for h in self.period_hours():
            out.append((1.0 + self.discount_rate_per_year) ** -(hours / 8760.0))
            hours += h
        return out

    def index(self, name: str) -> int:
        """Position of a period name (``ValueError`` naming the horizon if absent)."""
        names = self.names
        if name in names:
            return names.index(name)
        raise ValueError(f"period '{name}' is not in the horizon ({names[0]} … {names[-1]})")

    def after_end(self, name: str) -> bool:
        """Whether ``name`` is a calendar period later than the horizon's last one."""
        a, b = calendar_index(name), calendar_index(self.names[-1])
        return a is not None and b is not None and a[1] > b[1]
