"""The ``placement`` command line: one module per command, one shared wrapper for errors and progress."""
