"""placement: assign AI training jobs and inference services to power-limited data-center sites."""

import logging

from placement.api import solve
from placement.core.problem import Problem, compile_problem
from placement.errors import BackendUnavailableError, InfeasibleError, InputError, InvalidPlanError, PlacementError
from placement.io.config import load_config, load_portfolio
from placement.io.tables import read_jobs, read_pairs
from placement.model.portfolio import Portfolio, SolveOptions
from placement.plan import Plan, package_version
from placement.replan import ReplanOptions, replan
from placement.summary import PlanStatus, Summary
from placement.validate import Violation, validate_plan

__all__ = [
    "BackendUnavailableError", "InfeasibleError", "InputError", "InvalidPlanError", "PlacementError", "Plan",
    "PlanStatus", "Portfolio", "Problem", "ReplanOptions", "SolveOptions", "Summary", "Violation",
    "compile_problem", "load_config", "load_portfolio", "read_jobs", "read_pairs", "replan", "solve",
    "validate_plan",
]

__version__ = package_version()

logging.getLogger("placement").addHandler(logging.NullHandler())
