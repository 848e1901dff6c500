"""Errors users see: every input problem names the file, the field or row, and the value."""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Iterable
from typing import Any

# At most this many characters of any value are quoted in a message.
MAX_SHOWN_CHARS = 200
_repr = reprlib.Repr()  # keyword arguments only from Python 3.12
_repr.maxlevel, _repr.maxdict, _repr.maxlist, _repr.maxtuple, _repr.maxset = 2, 4, 4, 4, 4
_repr.maxstring, _repr.maxother, _repr.maxlong = MAX_SHOWN_CHARS, MAX_SHOWN_CHARS, 40


def shown(value: Any) -> str:
    """``repr(value)`` bounded in size and in time (a huge or deeply nested value is elided)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # 8.0, not np.float64(8.0)
    text = _repr.repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "..."


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
        lines = [f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}" for loc, msg in problems[:MAX_LINES]]
        if len(problems) > MAX_LINES:
            lines.append(f"{source}: ... and {len(problems) - MAX_LINES} more")
        super().__init__("\n".join(line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + "..."
                                   for line in lines))


MAX_LINES = 50  # problems listed in one message
MAX_LINE_CHARS = 1000


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
