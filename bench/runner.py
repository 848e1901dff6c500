"""The benchmark runner: our solver and its peers side by side, then the scaling section.

For each family × size, one generated instance (``bench.instances``) is solved by ``placement.solve``
(solver ``auto``, the chosen backend) and by each peer (``bench.peers``), one after another, each
in its own supervised process (``bench.supervisor``: time and memory limits per phase, every plan
validated).

Per instance, the *best bound* is the smallest valid $/h bound any solver proved on the
lexicographic optimum's total net value; each solver is scored against it (``gap_to_best``) and
its improving-solution trajectory gives the time at which it first came within 1% of it
(``t_1pct_best``; None: never). Then, per backend, one best-candidate kernel pass is timed on each
size, and log-log slopes are fitted to pass time and to total solve time against jobs × sites.

Results: ``<out>/<date>-<host>-<backend>.json`` and ``.md``, plus ``-scaling.png`` and
``-quality.png`` (``bench.report``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import platform
import socket
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from bench.instances import SIZES, Instance, Size, cpu_count, host_memory_bytes, instance
from bench.report import write
from bench.supervisor import supervise
from placement.kernels import gpu_status
from placement.kernels import resolve_backend as resolve

log = logging.getLogger("bench")

SOLVERS = ("ours", "cpsat", "highs", "ffd")
KERNEL_BACKENDS = ("reference", "cpu", "gpu")
SCHEMA = 1


@dataclass
class Config:
    backend: str = "auto"
    sizes: list[Size] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    solvers: list[str] = field(default_factory=lambda: list(SOLVERS))
    time_limit: float = 60.0
    seed: int = 0
    threads: int = 2
    out: Path = Path(__file__).resolve().parent / "results"
    cache: Path | None = None
    kernel_backends: list[str] | None = None  # None: every available one
    build_timeout: float = 600.0
    load_timeout: float = 900.0
    mem_limit_gb: float | None = None  # None: 75% of the memory available at start
    plots: bool = True
    kernel_passes: int = 5


# --- the suite -----------------------------------------------------------------------------


def resolve_backend(name: str) -> tuple[str, str]:
    """(concrete backend, device description)."""
    backend = resolve(name).value
    ok, gpu = gpu_status()
    if backend == "gpu":
        return backend, gpu
    return backend, f"CPU: {cpu_model()} ({cpu_count()} cores available)" + ("" if ok else f"; GPU: {gpu}")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    """Python's and the installed versions of the packages the results depend on."""
    out = {"python": platform.python_version()}
    for pkg in ("placement", "numpy", "numba", "ortools", "highspy", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def available_kernel_backends() -> list[str]:
    """The kernel backends this host can time (gpu only with a usable device)."""
    return [b for b in KERNEL_BACKENDS if b != "gpu" or gpu_status()[0]]


def _task(kind: str, inst: Instance, cfg: Config, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "family": inst.family, "size": (inst.size.name, inst.size.n_jobs, inst.size.n_sites),
            "seed": inst.seed, "dir": str(inst.dir), "time_limit": cfg.time_limit, "threads": cfg.threads, **kw}


def _limits(cfg: Config, solver: str) -> dict[str, float]:
    # Solvers overrun a little (presolve, validation); one that overruns by more is killed and
    # recorded as such, its progress kept. FFD has no time limit.
    solve = max(3.0 * cfg.time_limit, cfg.time_limit + 120.0)
    return {"start": cfg.load_timeout, "load": cfg.load_timeout, "build": cfg.build_timeout,
            "solve": solve if solver != "ffd" else cfg.build_timeout + solve}


def run_instance(inst: Instance, cfg: Config, backend: str, mem_limit: float) -> dict[str, Any]:
    """Every solver on one instance, then the cross-solver figures."""
    results: dict[str, dict[str, Any]] = {}
    for solver in cfg.solvers:
        kind = "ours" if solver == "ours" else "peer"
        task = _task(kind, inst, cfg, solver=solver, backend=backend)
        log.info("%s: %s ...", inst.name, solver)
        r = supervise(task, _limits(cfg, solver), mem_limit)
        results[solver] = r
        log.info("%s: %s %s objective=%s bound=%s %.1fs %s", inst.name, solver, r.get("status"),
                 _f(r.get("objective")), _f(r.get("bound")), r.get("seconds", 0.0), r.get("note", "")[:120])
    return {"family": inst.family, "size": inst.size.name, "jobs": inst.size.n_jobs, "sites": inst.size.n_sites,
            "cells": inst.size.cells, "seed": inst.seed, **score(results)}


def score(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Best bound over solvers, each solver's gap to it, time to 1% of it, lexicographic rank."""
    bounds = {k: r["bound"] for k, r in results.items() if r.get("bound") is not None and math.isfinite(r["bound"])}
    best_from = min(bounds, key=bounds.__getitem__) if bounds else None
    best = bounds[best_from] if best_from else None
    for r in results.values():
        ok = r.get("objective") is not None and r.get("valid", False)
        r["gap_to_best"] = ((best - r["objective"]) / max(abs(best), 1e-9)) if ok and best is not None else None
        r["t_1pct_best"] = None
        if best is not None and ok:
            hits = [t for t, o, *_ in r.get("trajectory", []) if best - o <= 0.01 * abs(best)]
            r["t_1pct_best"] = min(hits) if hits else None
            if r["t_1pct_best"] is None and r["gap_to_best"] <= 0.01:
                r["t_1pct_best"] = r.get("seconds")
    # Lexicographic order of the valid plans by tier objective (highest tier first), 1 = best.
    plans = {k: r["tiers"] for k, r in results.items() if r.get("valid") and r.get("tiers") is not None}
    ranked = sorted(plans, key=lambda k: [-round(v, 6) for v in plans[k]])
    for k, r in results.items():
        r["lex_rank"] = ranked.index(k) + 1 if k in plans else None
    return {"best_bound": best, "best_bound_from": best_from, "results": results}


def _f(x: Any) -> str:
    return "-" if x is None else f"{x:,.1f}"


def run_kernels(insts: list[Instance], cfg: Config, backends: list[str], mem_limit: float) -> list[dict[str, Any]]:
    """One best-candidate pass timed per backend and size (on each size's first family)."""
    out = []
    for inst in insts:
        for b in backends:
            log.info("kernel pass: %s on %s ...", b, inst.name)
            task = _task("kernel", inst, cfg, backend=b, passes=cfg.kernel_passes)
            r = supervise(task, {"start": cfg.load_timeout, "load": cfg.load_timeout,
                                 "solve": cfg.build_timeout}, mem_limit)
            r.update(backend=b, family=inst.family, size=inst.size.name, jobs=inst.size.n_jobs,
                     sites=inst.size.n_sites, cells=inst.size.cells)
            log.info("kernel pass: %s on %s: %s s", b, inst.name, _f(r.get("pass_seconds")))
            out.append(r)
    return out


def loglog_slope(x: list[float], y: list[float]) -> float | None:
    """Slope of log y against log x (numpy.polyfit), or None with fewer than 2 distinct x."""
    pts = [(a, b) for a, b in zip(x, y) if a and b and a > 0 and b > 0]
    if len({a for a, _ in pts}) < 2:
        return None
    return float(np.polyfit(np.log([a for a, _ in pts]), np.log([b for _, b in pts]), 1)[0])


def scaling(instances: list[dict[str, Any]], kernels: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    """Log-log slopes: kernel pass time per backend, total solve time per solver (median over families)."""
    kern: dict[str, Any] = {}
    for b in sorted({k["backend"] for k in kernels}):
        pts = [(k["cells"], k["pass_seconds"]) for k in kernels if k["backend"] == b and k.get("pass_seconds")]
        kern[b] = {"points": pts, "slope": loglog_slope([p[0] for p in pts], [p[1] for p in pts])}
    solve: dict[str, Any] = {}
    for s in cfg.solvers:
        by_cells: dict[int, list[float]] = {}
        capped = False
        for inst in instances:
            r = inst["results"].get(s, {})
            if r.get("built") and r.get("seconds") and r.get("objective") is not None:
                by_cells.setdefault(inst["cells"], []).append(r["seconds"])
                capped |= s != "ffd" and r["seconds"] >= 0.9 * cfg.time_limit
        pts = sorted((c, float(np.median(v))) for c, v in by_cells.items())
        solve[s] = {"points": pts, "slope": loglog_slope([p[0] for p in pts], [p[1] for p in pts]),
                    "capped_by_time_limit": capped}
    return {"kernel_pass": kern, "solve": solve}


def run_suite(cfg: Config) -> dict[str, Any]:
    """Run everything in ``cfg``; write JSON, Markdown and PNGs; return the JSON document."""
    backend, device = resolve_backend(cfg.backend)
    total, avail = host_memory_bytes()
    mem_limit = (cfg.mem_limit_gb * 2**30) if cfg.mem_limit_gb else (0.75 * avail if avail else float("inf"))
    started = dt.datetime.now()
    host = socket.gethostname().split(".")[0] or "host"
    doc: dict[str, Any] = {
        "schema": SCHEMA, "date": started.isoformat(timespec="seconds"), "host": host, "backend": backend,
        "device": device, "cpus": cpu_count(), "memory_gb": round(total / 2**30, 1),
        "memory_limit_gb": round(mem_limit / 2**30, 1) if math.isfinite(mem_limit) else None,
        "versions": versions(), "argv": sys.argv[1:],
        "config": {"sizes": [asdict(s) for s in cfg.sizes], "families": cfg.families, "solvers": cfg.solvers,
                   "time_limit_s": cfg.time_limit, "seed": cfg.seed, "threads": cfg.threads},
        "instances": [], "kernels": [],
    }
    stem = f"{started.strftime('%Y-%m-%dT%H%M%S')}-{host}-{backend}"
    cfg.out.mkdir(parents=True, exist_ok=True)
    if cfg.families and cfg.sizes:  # JIT compilation is a one-off per install, not per solve: pay it here
        log.info("warm-up: filling the Numba caches ...")
        warm = instance(cfg.families[0], SIZES["XS"], cfg.seed, cfg.cache)
        doc["warmup"] = supervise(_task("warmup", warm, cfg, backend=backend), _limits(cfg, "warmup"), mem_limit)
    first_of_size = []
    for size in cfg.sizes:
        for fam in cfg.families:
            log.info("instance %s/%s (%d jobs x %d sites) ...", fam, size.name, size.n_jobs, size.n_sites)
            inst = instance(fam, size, cfg.seed, cfg.cache)
            if fam == cfg.families[0]:
                first_of_size.append(inst)
            doc["instances"].append(run_instance(inst, cfg, backend, mem_limit))
            write(doc, cfg.out, stem, plots=False)  # partial results survive an interrupted run
    backends = cfg.kernel_backends if cfg.kernel_backends is not None else available_kernel_backends()
    doc["kernels"] = run_kernels(first_of_size, cfg, backends, mem_limit)
    doc["scaling"] = scaling(doc["instances"], doc["kernels"], cfg)
    doc["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    doc["paths"] = write(doc, cfg.out, stem, plots=cfg.plots)
    return doc
