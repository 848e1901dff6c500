"""Jobs and pair overrides as validated Arrow tables: the column schema and its checks.

Every job source (Parquet, Arrow IPC, CSV, inline config tables, ``TrainingJob`` objects) ends
here as one table with exactly ``JOB_COLUMNS``, checked column-wise with NumPy so that a
million rows validate in well under a second. Rules need the portfolio (GPU type and site
names), so checks take it as an argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from placement.errors import InputError, did_you_mean, shown
from placement.model.portfolio import InferenceJob, Portfolio, TrainingJob

MAX_REPORTED_PROBLEMS = 20
MAX_ID_CHARS = 256
# Bounds well past any real job, so that counts stay exact in int64 arithmetic everywhere.
MAX_GPUS = 1_000_000
MAX_REPLICAS = 1_000_000
MAX_PRIORITY = 1_000_000_000
_CONTROL = "".join(map(chr, [*range(32), 127]))


@dataclass(frozen=True)
class Column:
    """One column of a table schema: Arrow type, default (None: nullable), unit and meaning."""

    name: str
    type: pa.DataType
    default: Any
    required: bool
    doc: str


JOB_COLUMNS: tuple[Column, ...] = (
    Column("id", pa.string(), None, True, "unique job id"),
    Column("kind", pa.string(), "training", False, "'training' (a gang) or 'inference' (a service)"),
    Column("tenant", pa.string(), "default", False, "tenant; sites may restrict tenants"),
    Column("priority", pa.int64(), 0, False, "integer tier, higher first; tiers are strict"),
    Column("value_usd_per_hour", pa.float64(), None, True, "value of the whole job per hour at speed 1.0 (H100)"),
    Column("required", pa.bool_(), False, False, "must be placed, else the problem is infeasible"),
    Column("gpus", pa.int64(), 0, False, "training: gang size (all at one site, one type)"),
    Column("gpus_per_replica", pa.int64(), 0, False, "inference: GPUs per replica"),
    Column("replicas", pa.int64(), 0, False, "inference: replicas, all placed or none"),
    Column("gpu_types", pa.string(), "", False, "accepted types, e.g. 'H100,H200:1.4' (optional speed); empty: any"),
    Column("regions", pa.string(), "", False, "allowed site regions, comma-separated; empty: any"),
    Column("kw_per_gpu", pa.float64(), None, False, "measured IT kW per GPU, overrides the pool's figure"),
    Column("demand_region", pa.string(), None, False, "inference: region whose users it serves"),
    Column("max_latency_ms", pa.float64(), None, False, "inference: latency limit from the demand region"),
    Column("min_sites", pa.int64(), 1, False, "inference: spread over at least this many sites"),
    Column("max_share_per_site", pa.float64(), 1.0, False, "inference: at most this share of replicas per site, in (0, 1]"),
    Column("current_site", pa.string(), None, False, "re-planning: where it runs now"),
    Column("current_gpu_type", pa.string(), None, False, "re-planning: the GPU type it runs on now"),
    Column("migration_cost_usd", pa.float64(), 0.0, False, "one-off cost of a move (per replica for inference)"),
    Column("pinned", pa.bool_(), False, False, "must stay at current_site / current_gpu_type"),
    Column("earliest_period", pa.string(), None, False, "horizon: first period it may start; empty: the first"),
    Column("latest_start_period", pa.string(), None, False, "horizon: last period it may start; empty: any that finishes"),
    Column("duration_periods", pa.int64(), None, False, "horizon: consecutive periods it runs; empty: to the end"),
    Column("start_period", pa.string(), None, False, "horizon, re-planning: the period it started (held there)"),
)

PAIR_COLUMNS: tuple[Column, ...] = (
    Column("job_id", pa.string(), None, True, "job id"),
    Column("site_id", pa.string(), None, True, "site id"),
    Column("gpu_type", pa.string(), None, False, "GPU type; empty: every type at the site"),
    Column("extra_cost_usd_per_hour", pa.float64(), 0.0, False, "added cost per hour (per replica for inference)"),
    Column("power_mw", pa.float64(), None, False, "measured IT MW there (per replica for inference); PUE applies"),
    Column("forbidden", pa.bool_(), False, False, "the job may not run there"),
)


def job_schema() -> pa.Schema:
    """The Arrow schema of a normalised jobs table."""
    return pa.schema([pa.field(c.name, c.type) for c in JOB_COLUMNS])


def parse_type_spec(spec: str) -> dict[str, float | None]:
    """Parse ``'H100,H200:1.4'`` into ``{'H100': None, 'H200': 1.4}`` (None: catalog speed)."""
    out: dict[str, float | None] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, speed = part.partition(":")
        out[name.strip()] = float(speed) if speed.strip() else None
    return out


def parse_list(spec: str | None) -> list[str]:
    """Parse a comma-separated list; empty or None gives []."""
    return [p.strip() for p in (spec or "").split(",") if p.strip()]


def normalise_table(
    table: pa.Table, columns: tuple[Column, ...], source: str, label: str = "column"
) -> pa.Table:
    """Cast to the schema, fill defaults, reject unknown or missing columns and wrong types."""
    problems: list[tuple[str, str]] = []
    names = {c.name for c in columns}
    for name in table.column_names:
        if name not in names:
            problems.append((f"{label} '{name}'", f"unknown {label}{did_you_mean(name, names)}"))
    arrays = []
    for col in columns:
        if col.name not in table.column_names:
            if col.required:
                problems.append((f"{label} '{col.name}'", "required column is missing"))
                continue
            arrays.append(pa.array([col.default] * table.num_rows, type=col.type))
            continue
        arr = table.column(col.name)
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            arr = pc.binary_join(arr, ",")
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if pa.types.is_null(arr.type):
            arr = pa.nulls(table.num_rows, col.type)
        try:
            arr = _cast(arr, col.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            problems.append(
                (f"{label} '{col.name}'", f"expected {col.type}, got {arr.type}: {_short(exc)}")
            )
            continue
        if col.default is not None:
            arr = pc.fill_null(arr, pa.scalar(col.default, type=col.type))
        arrays.append(arr)
    if problems:
        raise InputError(source, problems)
    return pa.table(arrays, names=[c.name for c in columns])


def _cast(arr: pa.ChunkedArray | pa.Array, to: pa.DataType) -> pa.ChunkedArray | pa.Array:
    if pa.types.is_floating(arr.type) and pc.any(pc.is_nan(arr)).as_py():
        first = int(np.flatnonzero(np.isnan(arr.to_numpy(zero_copy_only=False)))[0])
        raise pa.ArrowInvalid(f"row {first + 1} is nan: NaN is not a value (leave the cell empty for the default)")
    if arr.type == to:
        return arr
    if pa.types.is_integer(to) and pa.types.is_floating(arr.type):
        # Whole floats (CSV/JSON often give 8.0) are accepted; 8.5 GPUs is an error.
        vals = arr.to_numpy(zero_copy_only=False)
        finite = vals[~np.isnan(vals)]
        if np.any(finite != np.round(finite)):
            bad = finite[finite != np.round(finite)][0]
            raise pa.ArrowInvalid(f"value {bad} is not a whole number")
    if pa.types.is_string(to) and not (pa.types.is_string(arr.type) or pa.types.is_null(arr.type)):
        raise pa.ArrowInvalid("text expected")
    if not pa.types.is_string(to) and (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        raise pa.ArrowInvalid("a number or flag expected, not text")  # types are enforced, not coerced
    return arr.cast(to, safe=True)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160]


def row_name(i: int, rows: str) -> str:
    """How row ``i`` (0-based) is named: ``row i+1`` (the first data row is row 1), with its line
    in a CSV file (``rows='csv'``: the header is line 1), or ``jobs[i]`` for inline config jobs."""
    if rows == "inline":
        return f"jobs[{i}]"
    return f"row {i + 1}" + (f" (line {i + 2})" if rows == "csv" else "")


class _Problems:
    """Collects row problems, naming row number and job id."""

    def __init__(self, source: str, ids: np.ndarray, rows: str):
        self.source, self.ids, self.rows = source, ids, rows
        self.items: list[tuple[str, str]] = []

    def check(self, bad: np.ndarray, column: str, values: np.ndarray, rule: str) -> None:
        for i in np.flatnonzero(bad)[: MAX_REPORTED_PROBLEMS - len(self.items)]:
            loc = f"{row_name(int(i), self.rows)} (id {shown(self.ids[i])}), column {column}"
            self.items.append((loc, f"{rule}, got {shown(values[i])}"))

    def raise_if_any(self) -> None:
        if self.items:
            raise InputError(self.source, self.items)


def validate_jobs(table: pa.Table, portfolio: Portfolio, source: str, rows: str = "table") -> pa.Table:
    """Normalise and check a jobs table against the portfolio; raise ``InputError`` listing rows.

    ``rows`` says how rows are named (``row_name``): ``table`` (Parquet, Arrow), ``csv`` (with
    the line number too) or ``inline`` (``jobs[i]`` of a config).
    """
    table = normalise_table(table, JOB_COLUMNS, source)
    col = {c.name: table.column(c.name) for c in JOB_COLUMNS}

    def num(name: str, fill: float = np.nan) -> np.ndarray:
        return pc.fill_null(col[name], fill).to_numpy() if col[name].null_count else col[name].to_numpy()

    ids = col["id"].to_numpy(zero_copy_only=False)
    p = _Problems(source, ids, rows)
    kind = col["kind"].to_numpy(zero_copy_only=False)
    training = kind == "training"
    inference = kind == "inference"
    p.check(~(training | inference), "kind", kind, "must be 'training' or 'inference'")
    p.check(pc.is_null(col["id"]).to_numpy(zero_copy_only=False) | (ids == ""), "id", ids, "must be non-empty")
    _check_ids(p, col["id"], "id")
    uniq, first, counts = np.unique(ids.astype(str), return_index=True, return_counts=True)
    dup = np.zeros(len(ids), bool)
    if np.any(counts > 1):
        dup_ids = set(uniq[counts > 1])
        first_of = set(first[counts > 1])
        dup = np.array([(x in dup_ids) and (i not in first_of) for i, x in enumerate(ids)])
    p.check(dup, "id", ids, "duplicate job id")
    value = num("value_usd_per_hour")
    p.check(~np.isfinite(value) | (value < 0), "value_usd_per_hour", value, "must be finite and >= 0")
    gpus = num("gpus")
    p.check(training & (gpus < 1), "gpus", gpus, "a training job needs gpus >= 1")
    for name, top in (("gpus", MAX_GPUS), ("gpus_per_replica", MAX_GPUS), ("replicas", MAX_REPLICAS),
                      ("min_sites", MAX_REPLICAS)):
        v = num(name)
        p.check(v > top, name, v, f"must be at most {top:,}")
    prio = num("priority")
    p.check(np.abs(prio) > MAX_PRIORITY, "priority", prio, f"must be within ±{MAX_PRIORITY:,}")
    gpr, reps, min_sites = num("gpus_per_replica"), num("replicas"), num("min_sites")
    share = num("max_share_per_site")
    p.check(inference & (gpr < 1), "gpus_per_replica", gpr, "must be >= 1")
    p.check(inference & (reps < 1), "replicas", reps, "must be >= 1")
    p.check(inference & (min_sites < 1), "min_sites", min_sites, "must be >= 1")
    p.check(inference & (min_sites > reps) & (reps >= 1), "min_sites", min_sites, "min_sites must not exceed replicas")
    p.check(inference & ~((share > 0) & (share <= 1)), "max_share_per_site", share, "must be in (0, 1]")
    p.check(
        inference & (share > 0) & (np.floor(share * reps + 1e-9) < 1) & (reps >= 1),
        "max_share_per_site", share, "allows less than one replica per site",
    )
    lat = num("max_latency_ms")
    p.check(lat < 0, "max_latency_ms", lat, "must be >= 0")
    no_region = pc.is_null(col["demand_region"]).to_numpy(zero_copy_only=False)
    p.check(~np.isnan(lat) & no_region, "demand_region", lat, "max_latency_ms needs a demand_region")
    kw = num("kw_per_gpu")
    p.check(~np.isnan(kw) & ~((kw > 0) & (kw <= 20)), "kw_per_gpu", kw, "must be in (0, 20] kW")
    mig = num("migration_cost_usd")
    p.check(~np.isfinite(mig) | (mig < 0), "migration_cost_usd", mig, "must be finite and >= 0")
    pinned = col["pinned"].to_numpy(zero_copy_only=False)
    cur_site = col["current_site"].to_numpy(zero_copy_only=False)
    cur_type = col["current_gpu_type"].to_numpy(zero_copy_only=False)
    p.check(pinned & (pd_null(cur_site) | pd_null(cur_type)), "pinned", pinned,
            "a pinned job needs current_site and current_gpu_type")
    _check_names(p, col["gpu_types"], "gpu_types", portfolio.gpu_types, spec=True)
    _check_names(p, col["current_site"], "current_site", {s.id for s in portfolio.sites})
    _check_names(p, col["current_gpu_type"], "current_gpu_type", portfolio.gpu_types)
    _check_windows(p, col, portfolio)
    p.raise_if_any()
    return table


WINDOW_COLUMNS = ("earliest_period", "latest_start_period", "duration_periods", "start_period")


def _check_windows(p: _Problems, col: dict[str, pa.ChunkedArray], portfolio: Portfolio) -> None:
    """Start windows name horizon periods, run 1 … T periods and open before they close."""
    horizon = portfolio.horizon
    if horizon is None:
        for name in WINDOW_COLUMNS:
            given = ~pc.is_null(col[name]).to_numpy(zero_copy_only=False)
            p.check(given, name, col[name].to_numpy(zero_copy_only=False), "needs a [horizon] section in the config")
        return
    names = horizon.names
    index = {n: i for i, n in enumerate(names)}
    at = {}
    for name in ("earliest_period", "latest_start_period", "start_period"):
        values = col[name].to_numpy(zero_copy_only=False)
        known = np.array([v is None or v in index for v in values], bool)
        p.check(~known, name, values, f"is not a period of the horizon ({names[0]} … {names[-1]})")
        at[name] = np.array([index.get(v, -1) if v is not None else -1 for v in values], np.int64)
    dur = pc.fill_null(col["duration_periods"], 1).to_numpy()
    p.check((dur < 1) | (dur > len(names)), "duration_periods", dur, f"must be in 1 … {len(names)} (the horizon's periods)")
    first, last = at["earliest_period"], at["latest_start_period"]
    late = (first >= 0) & (last >= 0) & (last < first)
    p.check(late, "latest_start_period", col["latest_start_period"].to_numpy(zero_copy_only=False),
            "is before earliest_period")


def _check_ids(p: _Problems, column: pa.ChunkedArray, name: str) -> None:
    """Ids are data: at most ``MAX_ID_CHARS`` characters and no control characters (newlines,
    tabs, escapes) that would break CSV rows, logs and terminals."""
    values = column.to_numpy(zero_copy_only=False)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(column), MAX_ID_CHARS), False).to_numpy(zero_copy_only=False)
    p.check(too_long, name, values, f"must be at most {MAX_ID_CHARS} characters")
    control = pc.fill_null(pc.match_substring_regex(column, "[\\x00-\\x1f\\x7f]"), False)
    p.check(control.to_numpy(zero_copy_only=False), name, values, "must not contain control characters")


def pd_null(values: np.ndarray) -> np.ndarray:
    """Null mask of an object array converted from Arrow (None entries)."""
    return np.array([v is None for v in values], dtype=bool) if values.dtype == object else np.zeros(len(values), bool)


def _check_names(p: _Problems, column: pa.ChunkedArray, name: str, known: Any, spec: bool = False) -> None:
    """Check names in a column (or a type spec) against known names, on unique values only."""
    encoded = column.combine_chunks().dictionary_encode()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    for k, value in enumerate(encoded.dictionary.to_pylist()):
        if value is None or value == "":
            continue
        try:
            names = parse_type_spec(value) if spec else {value: None}
        except ValueError:
            bad_rows = np.asarray(indices == k)
            p.check(bad_rows, name, np.full(len(bad_rows), value, object), "speed after ':' must be a number")
            continue
        for n, speed in names.items():
            rule = None
            if n not in known:
                rule = f"unknown name '{n}'{did_you_mean(n, known)}"
            elif speed is not None and not (0 < speed <= 100 and np.isfinite(speed)):
                rule = f"speed for '{n}' must be in (0, 100]"
            if rule:
                bad_rows = np.asarray(indices == k)
                p.check(bad_rows, name, np.full(len(bad_rows), value, object), rule)


def validate_pairs(table: pa.Table, portfolio: Portfolio, jobs: pa.Table, source: str, rows: str = "table") -> pa.Table:
    """Normalise and check a pair-override table against the portfolio and the jobs; a
    (job, site, GPU type) given twice is an error (which row wins would be a guess)."""
    table = normalise_table(table, PAIR_COLUMNS, source)
    job_ids = jobs.column("id").to_numpy(zero_copy_only=False)
    ids = table.column("job_id").to_numpy(zero_copy_only=False)
    p = _Problems(source, ids, rows)
    known_jobs = pc.is_in(table.column("job_id"), value_set=pa.array(job_ids)).to_numpy(zero_copy_only=False)
    p.check(~known_jobs, "job_id", ids, "unknown job id")
    _check_names(p, table.column("site_id"), "site_id", {s.id for s in portfolio.sites})
    _check_names(p, table.column("gpu_type"), "gpu_type", portfolio.gpu_types)
    cost = table.column("extra_cost_usd_per_hour").to_numpy()
    p.check(~np.isfinite(cost), "extra_cost_usd_per_hour", cost, "must be finite")
    mw = pc.fill_null(table.column("power_mw"), 0.0).to_numpy()
    p.check(~np.isfinite(mw) | (mw < 0), "power_mw", mw, "must be finite and >= 0")
    keys = [f"{j}\x00{s}\x00{t}" for j, s, t in zip(ids.tolist(), table.column("site_id").to_pylist(),
                                                   table.column("gpu_type").to_pylist())]
    seen: set[str] = set()
    dup = np.zeros(len(keys), bool)
    for i, k in enumerate(keys):
        dup[i] = k in seen
        seen.add(k)
    p.check(dup, "job_id", ids, "this (job_id, site_id, gpu_type) is given on an earlier row too")
    p.raise_if_any()
    return table


def jobs_table(jobs: list[TrainingJob | InferenceJob | dict[str, Any]], portfolio: Portfolio,
               source: str = "jobs") -> pa.Table:
    """Build a validated jobs table from job objects or plain dicts (inline config jobs)."""
    rows = [j.model_dump(exclude_none=True) if hasattr(j, "model_dump") else dict(j) for j in jobs]
    problems = []
    for i, row in enumerate(rows):
        unknown = set(row) - {c.name for c in JOB_COLUMNS}
        for name in sorted(unknown):
            problems.append((f"jobs[{i}].{name}", f"unknown field{did_you_mean(name, [c.name for c in JOB_COLUMNS])}"))
    if problems:
        raise InputError(source, problems)
    types = {c.name: c.type for c in JOB_COLUMNS}
    arrays = {}
    for name in dict.fromkeys(k for r in rows for k in r):
        values = [r.get(name) for r in rows]
        try:
            arrays[name] = pa.array(values, type=types[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            bad = next(i for i, v in enumerate(values) if v is not None and not _fits(v, types[name]))
            raise InputError(source, [(f"jobs[{bad}].{name}", f"expected {types[name]}, got {shown(values[bad])}")]) from None
    table = pa.table(arrays) if arrays else pa.table({"id": pa.array([], pa.string())})
    return validate_jobs(table, portfolio, source, rows="inline")


def _fits(value: Any, type_: pa.DataType) -> bool:
    try:
        pa.array([value], type=type_)
        return True
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return False
