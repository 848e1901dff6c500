"""placement: assign AI training jobs and inference services to power-limited data-center sites."""

import logging

from placement.api import solve as solve
from placement.config import load_config as load_config
from placement.config import load_portfolio as load_portfolio
from placement.io import read_jobs as read_jobs
from placement.io import read_pairs as read_pairs
from placement.model import Portfolio as Portfolio
from placement.model import SolveOptions as SolveOptions
from placement.plan import Plan as Plan
from placement.plan import package_version
from placement.problem import Problem as Problem
from placement.problem import compile_problem as compile_problem
from placement.replan import ReplanOptions as ReplanOptions
from placement.replan import replan as replan
from placement.validate import validate_plan as validate_plan

__version__ = package_version()

logging.getLogger("placement").addHandler(logging.NullHandler())
