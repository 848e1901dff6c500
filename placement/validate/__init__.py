"""The independent plan validator: every hard constraint recomputed from the models."""

from placement.validate.validator import Violation, validate_plan

__all__ = ["Violation", "validate_plan"]
