"""Load a portfolio config (TOML, YAML or JSON) with the GPU catalog merged in.

A config holds top-level ``name``/``description``, ``[objective]``, ``[solve]``,
``[gpu_types.NAME]`` (partial overrides of the shipped catalog, or new types), ``[[sites]]``,
and optionally inline ``[[jobs]]`` and ``[[pairs]]``. Every error names the file, the field
path and the value.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pyarrow as pa
import yaml
from pydantic import BaseModel, ValidationError

from placement.model import portfolio as model
from placement.errors import InputError, did_you_mean, shown
from placement.model.jobs import jobs_table, validate_pairs

CONFIG_SUFFIXES = (".toml", ".yaml", ".yml", ".json")
# A config bigger than this is refused before parsing (10,000 sites take about 2 MB).
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# YAML aliases may repeat a node; the document expanded may hold at most this many nodes.
MAX_YAML_NODES = 1_000_000


class DuplicateKeyError(ValueError):
    """A key given twice in one mapping of a config document."""


class _StrictYamlLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise DuplicateKeyError(f"line {line}: key {shown(key)} given twice")
            seen.add(key)
        return super().construct_mapping(node, deep)


def _expanded_nodes(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded (counted once per node object, memoised)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a recursive alias counts once
        children = (node.value if isinstance(node, yaml.SequenceNode)
                    else [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        memo[key] = 1 + sum(_expanded_nodes(c, memo) for c in children)
    return memo[key]


def _load_yaml(text: str) -> Any:
    """Parse YAML with duplicate keys refused and alias expansion bounded by ``MAX_YAML_NODES``."""
    loader = _StrictYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_nodes(node, {})
        if size > MAX_YAML_NODES:
            raise DuplicateKeyError(f"the document expands to {size:,} nodes through aliases, over the limit "
                                    f"of {MAX_YAML_NODES:,}")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON object hook: refuse a key given twice in one object."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"key {shown(key)} given twice")
        out[key] = value
    return out


@dataclass(frozen=True)
class Config:
    """A loaded config: the portfolio, and inline jobs and pair overrides if it had any."""

    portfolio: model.Portfolio
    jobs: pa.Table | None
    pairs: pa.Table | None
    path: Path


def read_document(path: str | Path) -> dict[str, Any]:
    """Parse a TOML/YAML/JSON file into a dict; syntax errors name the line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), [("", "file not found")])
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise InputError(str(path), [("", f"unknown extension '{suffix}': expected one of {', '.join(CONFIG_SUFFIXES)}")])
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise InputError(str(path), [("", f"the file is {size:,} bytes, over the limit of {MAX_CONFIG_BYTES:,} "
                                          "for a config: put jobs in a --jobs table")])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(str(path), [(f"byte {exc.start}", "not UTF-8 text")]) from None
    try:
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        else:
            data = _load_yaml(text)
    except DuplicateKeyError as exc:
        raise InputError(str(path), [("", str(exc))]) from None
    except RecursionError:
        raise InputError(str(path), [("", "nested too deeply")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(str(path), [("", f"TOML syntax error: {exc}")]) from None
    except json.JSONDecodeError as exc:
        raise InputError(str(path), [(f"line {exc.lineno}", f"JSON syntax error: {exc.msg}")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise InputError(str(path), [(where, f"YAML syntax error: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(data, dict):
        raise InputError(str(path), [("", "the top level must be a table/mapping")])
    return data


def gpu_catalog() -> dict[str, dict[str, Any]]:
    """The shipped GPU catalog (``placement/data/gpu_catalog.toml``) as plain dicts."""
    text = resources.files("placement").joinpath("data/gpu_catalog.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def portfolio_from_dict(data: dict[str, Any], source: str) -> model.Portfolio:
    """Validate a config mapping (without jobs/pairs) into a Portfolio, catalog merged."""
    data = dict(data)
    catalog = gpu_catalog()
    overrides = data.pop("gpu_types", {}) or {}
    if not isinstance(overrides, dict):
        raise InputError(source, [("gpu_types", f"expected a table of GPU types, got {shown(overrides)}")])
    for name, fields in overrides.items():
        if not isinstance(fields, dict):
            raise InputError(source, [(f"gpu_types.{name}", f"expected a table, got {shown(fields)}")])
        catalog[name] = {**catalog.get(name, {"name": name}), **fields}
    data["gpu_types"] = catalog
    try:
        return model.Portfolio.model_validate(data)
    except ValidationError as exc:
        raise InputError(source, validation_problems(exc)) from None


def load_config(path: str | Path) -> Config:
    """Load a config file: portfolio plus any inline jobs and pairs."""
    path = Path(path)
    data = read_document(path)
    inline_jobs = data.pop("jobs", None)
    inline_pairs = data.pop("pairs", None)
    portfolio = portfolio_from_dict(data, str(path))
    jobs = None
    if inline_jobs is not None:
        if not isinstance(inline_jobs, list):
            raise InputError(str(path), [("jobs", "expected a list of job tables ([[jobs]])")])
        jobs = jobs_table(inline_jobs, portfolio, source=str(path))
    pairs = None
    if inline_pairs:
        if jobs is None:
            raise InputError(str(path), [("pairs", "inline pairs need inline jobs; pass --pairs with --jobs")])
        pairs = validate_pairs(pa.Table.from_pylist(inline_pairs), portfolio, jobs, str(path))
    return Config(portfolio, jobs, pairs, path)


def load_portfolio(path: str | Path) -> model.Portfolio:
    """Load just the portfolio of a config file."""
    return load_config(path).portfolio


def _known_fields() -> set[str]:
    names: set[str] = set()
    for cls in vars(model).values():
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            names.update(cls.model_fields)
    return names


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    known = _known_fields()
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            field = str(err["loc"][-1])
            msg = f"unknown field '{field}'{did_you_mean(field, known)}"
        elif err["type"] != "value_error" or "input" in err:
            msg = f"{msg}, got {shown(err.get('input'))}"
        problems.append((loc, msg))
    return problems
