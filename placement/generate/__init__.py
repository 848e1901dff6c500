"""Synthetic instance families shaped like real portfolios and job traces."""

from placement.generate.families import FAMILIES, generate, write_instance

__all__ = ["FAMILIES", "generate", "write_instance"]
