"""placement: assign AI training jobs and inference services to power-limited data-center sites."""

import logging

from placement.api import solve as solve
from placement.io.config import load_config as load_config
from placement.io.config import load_portfolio as load_portfolio
from placement.io.tables import read_jobs as read_jobs
from placement.io.tables import read_pairs as read_pairs
from placement.model.portfolio import Portfolio as Portfolio
from placement.model.portfolio import SolveOptions as SolveOptions
from placement.plan import Plan as Plan
from placement.plan import package_version
from placement.core.problem import Problem as Problem
from placement.core.problem import compile_problem as compile_problem
from placement.replan.run import ReplanOptions as ReplanOptions
from placement.replan.run import replan as replan
from placement.validate.validator import validate_plan as validate_plan

__version__ = package_version()

logging.getLogger("placement").addHandler(logging.NullHandler())
