"""Independent check of every hard constraint on a plan table.

The validator shares no code with the problem compiler, kernels or solvers: it recomputes
eligibility, GPU use, power and migration from the models (``Portfolio``, the validated jobs and
pairs tables) and the plan's ``job_id, status, site_id, gpu_type, replicas, gpus`` columns, so a
bug there cannot hide itself here. It does share the input-format parsers, ``parse_list`` and
``parse_type_spec`` (placement.model.jobs) and the column readers (placement.io.columns): they
decide how a table cell reads (type specs, lists, ``''`` as null), not what a constraint means,
and reading the inputs differently from the loader would flag plans for format reasons.

``build_context`` indexes the plan once; each checker in ``CHECKS`` tests one constraint on it.
Work is vectorised over plan rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from placement.model.portfolio import Portfolio, SolveOptions
from placement.validate.checks import CHECKS, Checker
from placement.validate.context import PLAN_COLUMNS, Violation, build_context

__all__ = ["Violation", "validate_plan"]


def validate_plan(portfolio: Portfolio, jobs: pa.Table, plan: pa.Table, pairs: pa.Table | None = None,
                  options: SolveOptions | None = None, current: pa.Table | None = None,
                  checks: Sequence[Checker] = CHECKS) -> list[Violation]:
    """Every hard-constraint violation of ``plan`` for these inputs; ``[]`` means valid.

    ``checks``: the checkers to run (default all, ``CHECKS``), for a caller that needs only some.

    ``current``: the plan running now (a plan table); the migration budget counts moves against
    its rows. Without it, each job runs where the jobs table's ``current_site`` /
    ``current_gpu_type`` say, with all its units.
    """
    missing = [c for c in PLAN_COLUMNS if c not in plan.column_names]
    if missing:
        return [Violation("schema", None, None, f"the plan has no column(s) {', '.join(missing)}")]
    ctx = build_context(portfolio, jobs, plan, pairs, options or portfolio.solve, current)
    return [v for check in checks for v in check(ctx)]
