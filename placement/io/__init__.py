"""Reading and writing files: configs (TOML/YAML/JSON), job and pair tables, atomic writers, digests."""
