"""Table files: read jobs and pair overrides (Parquet, Arrow IPC, CSV); write tables atomically."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from placement.io.config import CONFIG_SUFFIXES, load_config
from placement.errors import InputError
from placement.model.jobs import JOB_COLUMNS, PAIR_COLUMNS, Column, validate_jobs, validate_pairs
from placement.model.portfolio import Portfolio

TABLE_SUFFIXES = (".parquet", ".arrow", ".feather", ".ipc", ".csv")


# A table file bigger than this is refused before reading (1M jobs take ~100 MB of CSV).
MAX_TABLE_BYTES = 1 << 30


def read_table(path: str | Path, columns: tuple[Column, ...]) -> tuple[pa.Table, str]:
    """Read a table file by extension; return it and how its rows are named (``row_name``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), [("", "file not found")])
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise InputError(str(path), [("", f"the file is {size:,} bytes, over the limit of {MAX_TABLE_BYTES:,}")])
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pq.read_table(path), "table"
        if suffix in (".arrow", ".feather", ".ipc"):
            return feather.read_table(path), "table"
        if suffix == ".csv":
            # Declared types for known columns so that "8" is an int and "" a null.
            types = {c.name: c.type for c in columns}
            # Only an empty cell is null: "nan", "NA" or "null" must not become a silent default.
            opts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True, null_values=[""])
            return pacsv.read_csv(path, convert_options=opts), "csv"
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(str(path), [(_csv_column(path, str(exc)), f"cannot read {suffix[1:]} table: "
                                      f"{str(exc).splitlines()[0]}")]) from None
    raise InputError(str(path), [("", f"unknown extension '{suffix}': expected one of {', '.join(TABLE_SUFFIXES)}")])


def _csv_column(path: Path, message: str) -> str:
    """Name the column of a CSV conversion error ("In CSV column #1: ...") from the header."""
    match = re.search(r"CSV column #(\d+)", message)
    if not match or path.suffix.lower() != ".csv":
        return ""
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    k = int(match.group(1))
    return f"column '{header[k]}'" if k < len(header) else ""


def read_jobs(path: str | Path, portfolio: Portfolio) -> pa.Table:
    """Read and validate a jobs table; a config file path gives its inline ``[[jobs]]``."""
    if Path(path).suffix.lower() in CONFIG_SUFFIXES:
        jobs = load_config(path).jobs
        if jobs is None:
            raise InputError(str(path), [("jobs", "the config has no inline [[jobs]]")])
        return jobs
    table, rows = read_table(path, JOB_COLUMNS)
    return validate_jobs(table, portfolio, str(path), rows=rows)


def read_pairs(path: str | Path, portfolio: Portfolio, jobs: pa.Table) -> pa.Table:
    """Read and validate a pair-override table."""
    table, rows = read_table(path, PAIR_COLUMNS)
    return validate_pairs(table, portfolio, jobs, str(path), rows=rows)


def _file_mode() -> int:
    """The mode new files get under this process's umask (``0o666 & ~umask``)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


FILE_MODE = _file_mode()  # read once: os.umask is process-wide, so it is not touched later


def write_together(files: Sequence[tuple[str | Path, Callable[[Path], None]]]) -> None:
    """Write each ``(path, write)`` via ``write(tmp)`` to a temp file beside ``path``, then rename
    them all into place: the outputs of one command appear together or not at all (a failure or a
    kill before the renames leaves none, and never a partial file). Files get the umask's mode."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in files:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            staged.append((Path(tmp), path))
            write(Path(tmp))
            os.chmod(tmp, FILE_MODE)
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Write via ``write(tmp)`` to a temp file in the same folder, then rename over ``path``."""
    write_together([(path, write)])


def check_writable(paths: Sequence[str | Path | None]) -> None:
    """Raise ``InputError`` for an output path that cannot be written, before any work is done:
    a folder, or a place where a file cannot be created (probed with a temp file that is removed)."""
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.is_dir():
            raise InputError(str(path), [("", "is a folder: give a file name")])
        folder = path.parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        except OSError as exc:
            raise InputError(str(path), [("", f"cannot write here: {exc.strerror or exc}")]) from None
        os.close(fd)
        os.unlink(probe)


def table_writer(table: pa.Table, path: str | Path) -> Callable[[Path], None]:
    """The writer of ``table`` for ``path``'s extension (.parquet, .csv, .json, .arrow/.feather)."""
    suffix = Path(path).suffix.lower()
    writers: dict[str, Callable[[Path], None]] = {
        ".parquet": lambda p: pq.write_table(table, p),
        ".csv": lambda p: pacsv.write_csv(table, p),
        ".json": lambda p: p.write_text(json.dumps(table.to_pylist(), indent=1, default=str)),
        ".arrow": lambda p: feather.write_feather(table, p),
        ".feather": lambda p: feather.write_feather(table, p),
    }
    if suffix not in writers:
        raise InputError(str(path), [("", f"unknown output extension '{suffix}': expected one of {', '.join(writers)}")])
    return writers[suffix]


def json_writer(data: Any) -> Callable[[Path], None]:
    """The writer of ``data`` as indented JSON."""
    return lambda p: p.write_text(json.dumps(data, indent=2, default=str) + "\n")


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write a table by extension (.parquet, .csv, .json, .arrow/.feather), atomically."""
    atomic_write(path, table_writer(table, path))


def write_json(data: Any, path: str | Path) -> None:
    """Write JSON atomically."""
    atomic_write(path, json_writer(data))


PLAN_FILE_COLUMNS = ("job_id", "status", "site_id", "gpu_type", "replicas")


def read_plan_table(path: str | Path) -> pa.Table:
    """Read a plan written by ``write_table`` (any of its formats); a file that is not a plan
    (a summary, a jobs table) is an ``InputError`` naming the columns it lacks."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise InputError(str(path), [("", "file not found")])
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                raise InputError(str(path), [("", "not a plan: expected a JSON list of plan rows "
                                                  "(written by `placement solve --out plan.json`)")])
            table = pa.Table.from_pylist(rows)
        except (json.JSONDecodeError, UnicodeDecodeError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(str(path), [("", f"cannot read plan: {str(exc)[:200]}")]) from None
    else:
        table, _ = read_table(path, ())
    missing = [c for c in PLAN_FILE_COLUMNS if c not in table.column_names]
    if missing and table.num_rows:
        raise InputError(str(path), [("", f"not a plan: no column(s) {', '.join(missing)}")])
    return table
