"""Errors users see: every input problem names the file, the field or row, and the value."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class PlacementError(Exception):
    """Base class of the errors this package raises on purpose."""


class InputError(PlacementError):
    """Bad input: the CLI prints it and exits 2.

    ``problems`` lists every problem found, each as ``(location, message)`` where location
    names the field path or row (``sites[2].pue``, ``row 17, column gpus``).
    """

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}" for loc, msg in problems]
        super().__init__("\n".join(lines))


class InfeasibleError(PlacementError):
    """A required job cannot be placed; the CLI exits 3 (the plan is still written)."""


class BackendUnavailableError(PlacementError):
    """An explicitly requested backend (e.g. ``gpu``) is not usable on this machine."""


class InvalidPlanError(PlacementError):
    """A solver produced a plan that fails the validator: always a bug, never an output."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
