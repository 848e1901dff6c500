"""Solvers: each takes a compiled ``Problem`` and options and returns a ``Solution``."""
