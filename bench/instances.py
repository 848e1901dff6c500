"""Benchmark instances: the size table and generated instances cached on disk.

Sizes are jobs × sites of ``placement generate`` instances (every family draws from 4 GPU
types). ``XS`` is not part of the issue's table: it is the CI smoke size, small enough that
the whole runner finishes in well under a minute on two cores.

Instances are written once with ``placement.generate.families.write_instance`` (``portfolio.toml`` and
``jobs.parquet``) under ``<cache>/<family>-<jobs>x<sites>-seed<seed>/`` and read back with the
same loaders the CLI uses, so every solver (in its own process) sees identical inputs. The
default cache is ``$TMPDIR/placement-bench`` (``--cache`` overrides it); a cached instance is
reused when its header says it was made by the same generator call.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from placement.generate.families import write_instance
from placement.generate.tight import TIGHT_FAMILIES
from placement.io.config import load_config
from placement.io.tables import read_jobs, read_pairs
from placement.model.portfolio import Portfolio


@dataclass(frozen=True)
class Size:
    name: str
    n_jobs: int
    n_sites: int

    @property
    def cells(self) -> int:
        """jobs × sites, the x axis of the scaling plots."""
        return self.n_jobs * self.n_sites


SIZES: dict[str, Size] = {s.name: s for s in (
    Size("XS", 200, 8),  # CI smoke only
    Size("S", 1_000, 20),
    Size("M", 10_000, 100),
    Size("L", 100_000, 1_000),
    Size("XL", 1_000_000, 2_000),
)}


# The tight families' sizes (sites x jobs 5x100 ... 80x1600 in the recipes' order), as jobs x sites.
TIGHT_SIZES = "100x5,200x10,200x20,400x20,400x40,1600x80"


def parse_sizes(text: str) -> list[Size]:
    """``'S,M'`` → sizes; also accepts custom ``JOBSxSITES`` such as ``5000x40`` (k/M suffixes)."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if part.upper() in SIZES:
            out.append(SIZES[part.upper()])
            continue
        try:
            jobs, sites = part.lower().replace("×", "x").split("x")
            out.append(Size(part, _num(jobs), _num(sites)))
        except ValueError:
            raise ValueError(f"unknown size '{part}': expected one of {', '.join(SIZES)} or JOBSxSITES") from None
    return out


def _num(s: str) -> int:
    mult = {"k": 1_000, "m": 1_000_000}.get(s[-1:], 1)
    return int(float(s[:-1] if mult > 1 else s) * mult)


def default_cache() -> Path:
    return Path(tempfile.gettempdir()) / "placement-bench"


@dataclass(frozen=True)
class Instance:
    """Where one generated instance lives on disk, and what it is."""

    family: str
    size: Size
    seed: int
    dir: Path

    @property
    def name(self) -> str:
        return f"{self.family}/{self.size.name}"

    @property
    def config(self) -> Path:
        return self.dir / "portfolio.toml"

    @property
    def jobs(self) -> Path:
        return self.dir / "jobs.parquet"

    @property
    def pairs(self) -> Path | None:
        """The pair overrides table, for families that have one (``tight-d``, ``tight-e``)."""
        return self.dir / "pairs.parquet" if self.family in TIGHT_FAMILIES else None


def instance(family: str, size: Size, seed: int, cache: Path | None = None) -> Instance:
    """The cached instance, generated (atomically) if missing or made by another call."""
    cache = Path(cache) if cache is not None else default_cache()
    d = cache / f"{family}-{size.n_jobs}x{size.n_sites}-seed{seed}"
    inst = Instance(family, size, seed, d)
    header = f"# placement generate: family={family} seed={seed} n_jobs={size.n_jobs} n_sites={size.n_sites}"
    have = inst.jobs.is_file() and inst.config.is_file() and (inst.pairs is None or inst.pairs.is_file())
    if not (have and _first_line(inst.config) == header):
        write_instance(family, size.n_jobs, size.n_sites, seed, d)
    return inst


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n")


def load(inst: Instance) -> tuple[Portfolio, pa.Table, pa.Table | None]:
    """The portfolio and the validated jobs and pairs tables, read the way ``placement solve`` reads them."""
    portfolio = load_config(inst.config).portfolio
    jobs = read_jobs(inst.jobs, portfolio)
    return portfolio, jobs, read_pairs(inst.pairs, portfolio, jobs) if inst.pairs is not None else None


def host_memory_bytes() -> tuple[int, int]:
    """(total, available) physical memory from /proc/meminfo; (0, 0) where there is none."""
    try:
        info = {}
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, value = line.split(":", 1)
                info[key] = int(value.split()[0]) * 1024
        return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except OSError:
        return 0, 0


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
