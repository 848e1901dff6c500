"""Re-planning from a current placement: events, warm start, settling, and the per-job changes."""

from placement.replan.run import ReplanOptions, ReplanPlan, replan, replan_options

__all__ = ["ReplanOptions", "ReplanPlan", "replan", "replan_options"]
