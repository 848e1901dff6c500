"""The library entry points: ``solve`` a portfolio's jobs into a validated ``Plan``."""

from __future__ import annotations

import logging
import time

import pyarrow as pa

from placement.core import clock
from placement.core.problem import Problem, compile_problem
from placement.current_plan import warm_start
from placement.errors import InvalidPlanError
from placement.io.digest import input_digest
from placement.kernels import kernels_for
from placement.model.portfolio import Portfolio, SolveOptions
from placement.plan import Plan, build_plan
from placement.solvers.pipeline import Progress, run_pipeline
from placement.validate.validator import validate_plan

log = logging.getLogger("placement")

# The validator's code for a required job left unplaced: an infeasible input, not a solver bug.
REQUIRED_UNPLACED = "required"


def solve(portfolio: Portfolio, jobs: pa.Table, pairs: pa.Table | None = None,
          options: SolveOptions | None = None, *, on_progress: Progress | None = None,
          initial_plan: pa.Table | None = None, problem: Problem | None = None) -> Plan:
    """Compile, solve and validate. ``jobs``/``pairs`` are validated tables (``read_jobs``).

    Raises ``InvalidPlanError`` if the solver broke a hard constraint (a bug). A required job
    that cannot be placed is not an error here: the plan's summary has status ``infeasible``
    and lists it under ``required_unplaced``. ``initial_plan`` (a plan table) warm-starts the
    solvers: ``placement.current_plan.warm_start`` maps, repairs and fills it. ``problem``, when
    given, must be these inputs already compiled (sweeps reuse one across scenarios).
    """
    options = options or portfolio.solve
    start = time.monotonic()
    if problem is None:
        problem = compile_problem(portfolio, jobs, pairs, options)
    kernels = kernels_for(problem, options.backend)
    with clock.work_clock(options.deterministic):  # the warm start's fill shares the work budget
        initial = None
        if initial_plan is not None:
            initial = warm_start(problem, initial_plan, kernels, options)
        solution = run_pipeline(problem, options, kernels, on_progress=on_progress, initial=initial)
    plan = build_plan(problem, solution, seconds=time.monotonic() - start, seed=options.seed,
                      input_sha256=input_digest(portfolio, jobs, pairs))
    violations = validate_plan(portfolio, jobs, plan.table, pairs, options)
    bugs = [v for v in violations if v.kind != REQUIRED_UNPLACED]
    if bugs:
        raise InvalidPlanError(f"solver '{solution.solver}' produced an invalid plan (a bug): "
                               + "; ".join(v.message for v in bugs[:10]))
    required = sorted(v.job_id for v in violations if v.kind == REQUIRED_UNPLACED)
    plan.summary = plan.summary.finished(required, time.monotonic() - start)
    return plan
