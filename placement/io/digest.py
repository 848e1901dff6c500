"""The fingerprint of a solve's inputs, recorded in every plan's summary as ``input_sha256``."""

from __future__ import annotations

import hashlib

import pyarrow as pa

from placement.model.portfolio import Portfolio


def input_digest(portfolio: Portfolio, jobs: pa.Table, pairs: pa.Table | None) -> str:
    """SHA-256 over the canonical portfolio JSON and the jobs/pairs tables (Arrow IPC)."""
    h = hashlib.sha256(portfolio.model_dump_json().encode())
    for table in (jobs, pairs):
        if table is not None:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            h.update(sink.getvalue())
    return h.hexdigest()


__all__ = ["input_digest"]
