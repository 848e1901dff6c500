"""The data model: portfolio and job schemas, and the events that edit a portfolio (pydantic, no I/O)."""
