"""Reading plan and job table columns as arrays, the one way every reader does it.

CSV and JSON round trips turn nulls into empty strings, so ``''`` reads as null; a missing
column reads as all null (or the given fill).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def text_column(table: pa.Table, name: str) -> pa.Array:
    """A column as strings with ``''`` read as null; all null if absent."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    arr = table.column(name).combine_chunks()
    arr = pa.nulls(len(arr), pa.string()) if pa.types.is_null(arr.type) else pc.cast(arr, pa.string())
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def text_values(table: pa.Table, name: str) -> np.ndarray:
    """``text_column`` as a NumPy object array with ``None`` for null."""
    return np.asarray(text_column(table, name).to_numpy(zero_copy_only=False), object)


def number_column(table: pa.Table, name: str, fill: float = np.nan) -> np.ndarray:
    """A numeric column as float64 with nulls, ``''`` and a missing column read as ``fill``.

    Raises ``pyarrow.ArrowInvalid`` when a value is not a number.
    """
    if name not in table.column_names:
        return np.full(table.num_rows, fill)
    arr = table.column(name).combine_chunks()
    if pa.types.is_null(arr.type):
        return np.full(len(arr), fill)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, arr.type), arr)
    return np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), fill).to_numpy(zero_copy_only=False), float)


def flag_column(table: pa.Table, name: str) -> np.ndarray:
    """A boolean column with nulls (or a missing column) as False."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, bool)
    return np.asarray(pc.fill_null(table.column(name), False).to_numpy(zero_copy_only=False), bool)
