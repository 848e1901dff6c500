"""Re-planning events: what happened to the portfolio since the plan now running.

**Events** (``Curtail``, ``Outage``, ``SetOnline``, ``SetPool``; ``parse_event`` reads the CLI
form) change the portfolio *now*: ``apply_events`` returns a new, re-validated ``Portfolio`` and
never mutates its input. Grammar, one event per string, ``KEYWORD=VALUE`` in any order, values
without spaces::

    curtail site=ID grid_mw=X          the grid interconnect drops (or is restored) to X MW;
                                       reserve_mw is lowered to X if it was above
    outage site=ID                     the site goes dark (online = false)
    offline site=ID / online site=ID   a site leaves service / a new hall comes online
    pool site=ID gpu_type=T gpus=N     the pool has N GPUs now (added if new); N = 0 empties it.
                                       An emptied pool is kept with 0 GPUs, so jobs that ran
                                       there are still known to move when they go elsewhere.

Errors raise ``InputError`` whose source is ``event '<text>'`` and whose location names the
field: unknown event kind, keyword, site or GPU type (with a did-you-mean), a missing or
repeated keyword, or a bad number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from placement.errors import InputError, did_you_mean, shown
from placement.model.portfolio import Pool, Portfolio


def _fmt(x: float) -> str:
    return f"{x:.12g}"


@dataclass(frozen=True)
class Curtail:
    """The site's grid interconnect is ``grid_mw`` now (facility MW; ``reserve_mw`` capped at it)."""

    site: str
    grid_mw: float

    @property
    def text(self) -> str:
        return f"curtail site={self.site} grid_mw={_fmt(self.grid_mw)}"


@dataclass(frozen=True)
class Outage:
    """The site went dark: it is offline now."""

    site: str

    @property
    def text(self) -> str:
        return f"outage site={self.site}"


@dataclass(frozen=True)
class SetOnline:
    """The site comes online (a new hall, a repaired site) or goes offline (planned)."""

    site: str
    online: bool

    @property
    def text(self) -> str:
        return f"{'online' if self.online else 'offline'} site={self.site}"


@dataclass(frozen=True)
class SetPool:
    """The site's pool of ``gpu_type`` has ``gpus`` GPUs now (a new pool is added; 0 empties it)."""

    site: str
    gpu_type: str
    gpus: int

    @property
    def text(self) -> str:
        return f"pool site={self.site} gpu_type={self.gpu_type} gpus={self.gpus}"


Event = Curtail | Outage | SetOnline | SetPool

# kind -> (keyword, type) in order; "float" values are MW >= 0, "int" values counts >= 0.
_GRAMMAR: dict[str, tuple[tuple[str, str], ...]] = {
    "curtail": (("site", "str"), ("grid_mw", "float")),
    "outage": (("site", "str"),),
    "online": (("site", "str"),),
    "offline": (("site", "str"),),
    "pool": (("site", "str"), ("gpu_type", "str"), ("gpus", "int")),
}
EVENT_GRAMMAR = (
    "curtail site=ID grid_mw=X | outage site=ID | online site=ID | offline site=ID | "
    "pool site=ID gpu_type=T gpus=N"
)


def parse_event(text: str, portfolio: Portfolio | None = None) -> Event:
    """Parse the CLI form of an event (module docstring); with ``portfolio``, names are checked too.

    Raises ``InputError`` with source ``event '<text>'`` naming the field at fault.
    """
    source = f"event '{text}'"
    tokens = str(text).split()
    if not tokens:
        raise InputError(source, [("", f"empty event: expected {EVENT_GRAMMAR}")])
    kind = tokens[0].lower()
    if kind not in _GRAMMAR:
        raise InputError(source, [("kind", f"unknown event '{tokens[0]}'{did_you_mean(kind, _GRAMMAR)}: "
                                           f"expected one of {', '.join(_GRAMMAR)}")])
    allowed = dict(_GRAMMAR[kind])
    values: dict[str, str] = {}
    problems: list[tuple[str, str]] = []
    for tok in tokens[1:]:
        key, eq, value = tok.partition("=")
        if not eq or not key or not value:
            problems.append((tok, "expected KEYWORD=VALUE"))
        elif key not in allowed:
            problems.append((key, f"unknown keyword for '{kind}'{did_you_mean(key, allowed)}: "
                                  f"expected {', '.join(allowed)}"))
        elif key in values:
            problems.append((key, "given twice"))
        else:
            values[key] = value
    for key in allowed:
        if key not in values and not any(loc == key for loc, _ in problems):
            problems.append((key, f"missing: '{kind}' needs {' '.join(f'{k}=...' for k in allowed)}"))
    parsed: dict[str, Any] = {}
    for key, value in values.items():
        if allowed[key] == "float":
            try:
                x = float(value)
            except ValueError:
                x = math.nan
            if not (math.isfinite(x) and x >= 0):
                problems.append((key, f"expected a number of MW >= 0, got {shown(value)}"))
            parsed[key] = x
        elif allowed[key] == "int":
            if not value.isdigit():
                problems.append((key, f"expected a whole number >= 0, got {shown(value)}"))
            parsed[key] = int(value) if value.isdigit() else 0
        else:
            parsed[key] = value
    if problems:
        raise InputError(source, problems)
    event: Event
    if kind == "curtail":
        event = Curtail(parsed["site"], parsed["grid_mw"])
    elif kind == "outage":
        event = Outage(parsed["site"])
    elif kind in ("online", "offline"):
        event = SetOnline(parsed["site"], kind == "online")
    else:
        event = SetPool(parsed["site"], parsed["gpu_type"], parsed["gpus"])
    if portfolio is not None:
        check_event(event, portfolio, source)
    return event


def check_event(event: Event, portfolio: Portfolio, source: str | None = None) -> None:
    """Raise ``InputError`` if the event names an unknown site or GPU type, or a bad value."""
    source = source or f"event '{event.text}'"
    ids = [s.id for s in portfolio.sites]
    problems = []
    if event.site not in ids:
        problems.append(("site", f"unknown site '{event.site}'{did_you_mean(event.site, ids)}"))
    if isinstance(event, SetPool):
        if event.gpu_type not in portfolio.gpu_types:
            problems.append(("gpu_type", f"unknown GPU type '{event.gpu_type}'"
                                         f"{did_you_mean(event.gpu_type, portfolio.gpu_types)}"))
        if not isinstance(event.gpus, int) or event.gpus < 0:
            problems.append(("gpus", f"expected a whole number >= 0, got {shown(event.gpus)}"))
    if isinstance(event, Curtail) and not (math.isfinite(event.grid_mw) and event.grid_mw >= 0):
        problems.append(("grid_mw", f"expected a number of MW >= 0, got {shown(event.grid_mw)}"))
    if problems:
        raise InputError(source, problems)


def apply_events(portfolio: Portfolio, events: Iterable[Event | str]) -> Portfolio:
    """A new, re-validated Portfolio with ``events`` applied in order (strings are parsed)."""
    sites = list(portfolio.sites)
    index = {s.id: i for i, s in enumerate(sites)}
    for ev in events:
        ev = parse_event(ev, portfolio) if isinstance(ev, str) else ev
        check_event(ev, portfolio)
        i = index[ev.site]
        site = sites[i]
        update: dict[str, Any]
        if isinstance(ev, Curtail):
            update = {"grid_mw": float(ev.grid_mw), "reserve_mw": min(site.reserve_mw, float(ev.grid_mw))}
        elif isinstance(ev, Outage):
            update = {"online": False}
        elif isinstance(ev, SetOnline):
            update = {"online": ev.online}
        else:
            pools = dict(site.pools)
            if ev.gpu_type in pools:
                pools[ev.gpu_type] = pools[ev.gpu_type].model_copy(update={"gpus": int(ev.gpus)})
            elif ev.gpus > 0:
                pools[ev.gpu_type] = Pool(gpus=int(ev.gpus))
            update = {"pools": pools}
        sites[i] = site.model_copy(update=update)
    try:
        return Portfolio.model_validate(portfolio.model_copy(update={"sites": sites}).model_dump())
    except ValidationError as exc:
        raise InputError("events", [(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors()]) from None


def parse_events(events: Iterable[Event | str], portfolio: Portfolio) -> list[Event]:
    out = []
    for ev in events:
        ev = parse_event(ev, portfolio) if isinstance(ev, str) else ev
        check_event(ev, portfolio)
        out.append(ev)
    return out


__all__ = ["EVENT_GRAMMAR", "Curtail", "Event", "Outage", "SetOnline", "SetPool", "apply_events", "check_event",
           "parse_event", "parse_events"]
