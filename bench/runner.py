"""The benchmark runner: our solver and its peers side by side, then the scaling section.

For each family × size, one generated instance (``bench.instances``) is solved by ``placement.solve``
(solver ``auto``, the chosen backend) and by each peer (``bench.peers``), one after another, each
in its own process (``multiprocessing`` spawn): peak RSS is that process's, a crash or a runaway
solve is contained, and a supervisor kills a process that overruns its phase (build, solve) or
the memory limit. Every plan is validated with ``placement.validate.validator.validate_plan``.

Per instance, the *best bound* is the smallest valid $/h bound any solver proved on the
lexicographic optimum's total net value; each solver is scored against it (``gap_to_best``) and
its improving-solution trajectory gives the time at which it first came within 1% of it
(``t_1pct_best``; None: never). Then, per backend, one best-candidate kernel pass is timed on each
size, and log-log slopes are fitted to pass time and to total solve time against jobs × sites.

Results: ``<out>/<date>-<host>-<backend>.json`` and ``.md``, plus ``-scaling.png`` and
``-quality.png`` (``bench.plots``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.instances import SIZES, Instance, Size, cpu_count, host_memory_bytes, instance

log = logging.getLogger("bench")

SOLVERS = ("ours", "cpsat", "highs", "ffd")
KERNEL_BACKENDS = ("reference", "cpu", "gpu")
# The NumPy reference kernels are the spec, not a production path: not timed above this size.
REFERENCE_MAX_CANDIDATES = 50_000_000
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


# --- child processes -----------------------------------------------------------------------


def _child(conn: Any, task: dict[str, Any]) -> None:
    """Entry point of a solver/kernel process: runs ``task`` and sends messages on ``conn``."""
    t0 = time.monotonic()

    def send(*msg: Any) -> None:
        conn.send((time.monotonic() - t0, *msg))

    try:
        logging.basicConfig(level=logging.WARNING)
        send("phase", "load")
        kinds = {"ours": _child_ours, "peer": _child_peer, "kernel": _child_kernel, "warmup": _child_warmup}
        result = kinds[task["kind"]](task, send)
        send("result", result)
    except BaseException as exc:  # report, then exit non-zero: the supervisor records the crash
        send("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8))
    finally:
        conn.close()


def _load(task: dict[str, Any]) -> tuple[Any, Any]:
    from bench.instances import load  # noqa: PLC0415

    return load(Instance(task["family"], Size(*task["size"]), task["seed"], Path(task["dir"])))


def _validate(portfolio: Any, jobs: Any, problem: Any, solution: Any, seconds: float, seed: int) -> dict[str, Any]:
    from placement.plan import build_plan  # noqa: PLC0415
    from placement.validate.validator import validate_plan  # noqa: PLC0415

    plan = build_plan(problem, solution, seconds=seconds, seed=seed)
    found = validate_plan(portfolio, jobs, plan.table)
    # As in placement.solve: a required job left unplaced is reported, not a broken plan.
    bad = [v for v in found if v.kind != "required"]
    return {"objective": plan.summary["objective"], "valid": not bad, "violations": len(bad),
            "required_unplaced": len(found) - len(bad),
            "violation_examples": [v.message for v in bad[:5]], "jobs_placed": plan.summary["jobs_placed"],
            "gpus_placed": plan.summary["gpus_placed"], "mw_used": plan.summary["mw_used"],
            "tiers": [v["objective"] for v in plan.summary["objective_by_tier"].values()]}


def _child_ours(task: dict[str, Any], send: Any) -> dict[str, Any]:
    from placement import SolveOptions, solve  # noqa: PLC0415
    from placement.errors import InvalidPlanError  # noqa: PLC0415

    portfolio, jobs = _load(task)
    opts = SolveOptions(solver="auto", backend=task["backend"], time_limit_s=task["time_limit"], seed=task["seed"],
                        threads=task["threads"])
    send("phase", "solve")
    t0 = time.monotonic()
    traj: list[tuple[float, float, float | None]] = []

    def progress(objective: float, bound: float) -> None:
        traj.append((time.monotonic() - t0, float(objective), float(bound) if math.isfinite(bound) else None))
        send("progress", *traj[-1])

    try:
        plan = solve(portfolio, jobs, None, opts, on_progress=progress)
    except InvalidPlanError as exc:
        return {"built": True, "status": "invalid", "valid": False, "note": str(exc)[:500],
                "seconds": time.monotonic() - t0, "trajectory": traj, "peak_rss_mb": _peak_rss_mb()}
    seconds = time.monotonic() - t0
    s = plan.summary
    bound = s.get("bound")
    gap = s.get("gap")
    t1 = next((t for t, o, b in traj if b is not None and b - o <= 0.01 * abs(b)), None)
    if t1 is None and gap is not None and gap <= 0.01:
        t1 = seconds
    traj.append((seconds, float(s["objective"]), bound))
    stages = s.get("stats", {}).get("stages")
    note = f"solver={s['solver']} backend={s['backend']}"
    if stages:  # the pipeline's own record; its shape is the pipeline's business
        note += " stages: " + ", ".join(f"{st.get('stage')} {st.get('status')}" if isinstance(st, dict) else str(st)
                                        for st in stages)
    return {"built": True, "status": s["status"], "objective": s["objective"], "bound": bound, "gap": gap,
            "seconds": seconds, "solve_seconds": s["seconds"], "time_to_1pct": t1, "trajectory": traj,
            "valid": True, "violations": 0, "jobs_placed": s["jobs_placed"], "gpus_placed": s["gpus_placed"],
            "mw_used": s["mw_used"], "tiers": [v["objective"] for v in s["objective_by_tier"].values()],
            "native": {"solver": s["solver"], "backend": s["backend"], "stats": _jsonable(s.get("stats", {}))},
            "note": note, "peak_rss_mb": _peak_rss_mb()}


def _child_peer(task: dict[str, Any], send: Any) -> dict[str, Any]:
    from bench import peers  # noqa: PLC0415
    from placement.core.problem import compile_problem  # noqa: PLC0415

    portfolio, jobs = _load(task)
    t = time.monotonic()
    problem = compile_problem(portfolio, jobs)
    compile_s = time.monotonic() - t
    r = peers.run(task["solver"], problem, task["time_limit"], task["seed"], threads=task["threads"],
                  on_progress=lambda *a: send("progress", *a), on_phase=lambda ph: send("phase", ph))
    out = _jsonable(r.summary())
    out["compile_seconds"] = compile_s
    out["peak_rss_mb"] = _peak_rss_mb()
    if r.solution is not None:
        out.update(_validate(portfolio, jobs, problem, r.solution, r.seconds, task["seed"]))
        if abs(out["objective"] - r.objective) > 1e-6 * max(1.0, abs(r.objective)):
            out["note"] += f"; peer objective {r.objective:.2f} != plan objective {out['objective']:.2f}"
    return out


def _child_kernel(task: dict[str, Any], send: Any) -> dict[str, Any]:
    from placement.kernels import kernels_for  # noqa: PLC0415

    from bench.peers import candidate_count  # noqa: PLC0415
    from placement.core.problem import compile_problem  # noqa: PLC0415

    portfolio, jobs = _load(task)
    problem = compile_problem(portfolio, jobs)
    P = problem
    n_cand = candidate_count(P)
    out: dict[str, Any] = {"candidates": n_cand, "jobs": P.n_jobs, "pools": P.n_pools, "sites": P.n_sites}
    if task["backend"] == "reference" and n_cand > REFERENCE_MAX_CANDIDATES:
        out.update(status="skipped", note=f"reference kernels not timed above {REFERENCE_MAX_CANDIDATES:,} candidates")
        return out
    send("phase", "solve")
    t = time.monotonic()
    kern = kernels_for(P, task["backend"])
    bind_s = time.monotonic() - t
    jobs_all = np.arange(P.n_jobs, dtype=np.int64)
    args = (jobs_all, P.pool_gpus.astype(np.int64).copy(), P.site_cap_mw.astype(np.float64).copy(),
            np.zeros(P.n_sites), np.zeros(P.n_pools))
    t = time.monotonic()
    kern.best_candidate(*args)
    first = time.monotonic() - t
    times = []
    budget = time.monotonic() + max(10.0, 3 * first)
    while len(times) < task["passes"] and (not times or time.monotonic() < budget):
        t = time.monotonic()
        kern.best_candidate(*args)
        times.append(time.monotonic() - t)
    sec = float(np.median(times))
    out.update(status="ok", backend=kern.name, bind_seconds=bind_s, first_call_seconds=first, pass_seconds=sec,
               passes=len(times), candidates_per_second=n_cand / sec if sec > 0 else None,
               peak_rss_mb=_peak_rss_mb())
    return out


def _child_warmup(task: dict[str, Any], send: Any) -> dict[str, Any]:
    """Fill Numba's on-disk caches (our kernels, FFD) so no timed run pays for compilation."""
    from bench.peers import first_fit_decreasing  # noqa: PLC0415
    from placement import SolveOptions, solve  # noqa: PLC0415
    from placement.core.problem import compile_problem  # noqa: PLC0415

    portfolio, jobs = _load(task)
    send("phase", "solve")
    t = time.monotonic()
    solve(portfolio, jobs, None, SolveOptions(solver="auto", backend=task["backend"], time_limit_s=1.0,
                                              threads=task["threads"]))
    first_fit_decreasing(compile_problem(portfolio, jobs))
    return {"status": "ok", "seconds": time.monotonic() - t}


def _peak_rss_mb() -> float:
    from bench.peers import peak_rss_mb  # noqa: PLC0415

    return peak_rss_mb()


def _jsonable(x: Any) -> Any:
    """Plain JSON types (NumPy scalars/arrays, tuples, inf/nan as None)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


# --- supervisor ----------------------------------------------------------------------------


def _rss_bytes(pid: int) -> tuple[int, int]:
    """(current, peak) resident bytes of a process from /proc; (0, 0) if unreadable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            kv = dict(line.split(":", 1) for line in f if ":" in line)
        return int(kv["VmRSS"].split()[0]) * 1024, int(kv["VmHWM"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 0, 0


def supervise(task: dict[str, Any], limits: dict[str, float], mem_limit: float) -> dict[str, Any]:
    """Run ``task`` in a spawned process; kill it when a phase overruns ``limits`` or memory
    exceeds ``mem_limit`` bytes. Returns the child's result dict, or a record of why there is none."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, task), daemon=True)
    start = time.monotonic()
    proc.start()
    send.close()
    phase, phase_start = "start", start
    progress: list[list[Any]] = []
    result: dict[str, Any] | None = None
    error: tuple[str, str] | None = None
    killed: str | None = None
    peak = 0
    while True:
        try:
            ready = recv.poll(0.2)
        except (EOFError, OSError):
            ready = False
        while ready:
            try:
                msg = recv.recv()
            except (EOFError, OSError):
                ready = False
                break
            kind = msg[1]
            if kind == "phase":
                phase, phase_start = msg[2], time.monotonic()
            elif kind == "progress":
                progress.append(list(msg[2:]))
            elif kind == "result":
                result = msg[2]
            elif kind == "error":
                error = (msg[2], msg[3])
            ready = recv.poll(0)
        rss, hwm = _rss_bytes(proc.pid)
        peak = max(peak, hwm, rss)
        if not proc.is_alive():
            break
        over = time.monotonic() - phase_start > limits.get(phase, limits["start"])
        if over or rss > mem_limit:
            killed = (f"memory {rss / 2**30:.1f} GB > limit {mem_limit / 2**30:.1f} GB" if rss > mem_limit
                      else f"{phase} phase exceeded {limits.get(phase, limits['start']):.0f} s")
            proc.kill()
            proc.join(10)
            break
    proc.join(10)
    wall = time.monotonic() - start
    if result is not None:
        result.setdefault("peak_rss_mb", peak / 2**20)
        result["process_seconds"] = wall
        return result
    built = phase == "solve"
    why = killed or (f"crashed: {error[0]}" if error else f"process exited with code {proc.exitcode}")
    out = {"built": built, "status": "killed" if killed else "error", "objective": None, "bound": None,
           "gap": None, "seconds": wall, "time_to_1pct": None, "trajectory": progress, "valid": False,
           "peak_rss_mb": peak / 2**20, "process_seconds": wall,
           "note": (f"could not build: {why}" if not built and phase in ("build", "load", "start") else why)}
    if error:
        out["traceback"] = error[1]
    return out


# --- the suite -----------------------------------------------------------------------------


def resolve_backend(name: str) -> tuple[str, str]:
    """(concrete backend, device description)."""
    from placement.kernels import gpu_status  # noqa: PLC0415
    from placement.kernels import resolve_backend as resolve

    backend = resolve(name).value
    ok, gpu = gpu_status()
    if backend == "gpu":
        return backend, gpu
    return backend, f"CPU: {_cpu_model()} ({cpu_count()} cores available)" + ("" if ok else f"; GPU: {gpu}")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    out = {"python": platform.python_version()}
    for pkg in ("placement", "numpy", "numba", "ortools", "highspy", "pyarrow"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def available_kernel_backends() -> list[str]:
    from placement.kernels import gpu_status  # noqa: PLC0415

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
        "versions": _versions(), "argv": sys.argv[1:],
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
            _write(doc, cfg, stem, plots=False)  # partial results survive an interrupted run
    backends = cfg.kernel_backends if cfg.kernel_backends is not None else available_kernel_backends()
    doc["kernels"] = run_kernels(first_of_size, cfg, backends, mem_limit)
    doc["scaling"] = scaling(doc["instances"], doc["kernels"], cfg)
    doc["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    doc["paths"] = _write(doc, cfg, stem, plots=cfg.plots)
    return doc


def _write(doc: dict[str, Any], cfg: Config, stem: str, plots: bool) -> dict[str, str]:
    from bench import plots as plotting  # noqa: PLC0415

    paths = {"json": str(cfg.out / f"{stem}.json"), "markdown": str(cfg.out / f"{stem}.md")}
    if plots:
        paths.update(plotting.write_all(doc, cfg.out / stem))
        doc["paths"] = paths
    _atomic(Path(paths["json"]), json.dumps(_jsonable(doc), indent=1) + "\n")
    _atomic(Path(paths["markdown"]), markdown(doc))
    return paths


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- Markdown ------------------------------------------------------------------------------


def _usd(x: Any) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _sec(x: Any) -> str:
    return "never" if x is None else f"{x:.1f}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any]) -> str:
    """The human-readable report of one run."""
    c = doc["config"]
    v = doc["versions"]
    lines = [
        f"# placement benchmark — {doc['date']} on {doc['host']}, backend `{doc['backend']}`",
        "",
        f"- Device: {doc['device']}; {doc['cpus']} CPUs, {doc['memory_gb']} GB RAM "
        f"(solver processes killed above {doc.get('memory_limit_gb')} GB).",
        f"- Time limit {c['time_limit_s']:g} s per solver, {c['threads']} threads (CP-SAT workers, HiGHS "
        f"threads, our exact stage), seed {c['seed']}; every solver in its own process, one at a time.",
        "- Versions: " + ", ".join(f"{k} {x}" for k, x in v.items()) + ".",
        "- Timings are wall-clock on this host; on a shared machine they are noisy.",
        "",
        "Columns: **objective** Σ net $/h of the validated plan; **tiers** the same per priority tier, highest "
        "first; **lex** rank of the plan when tiers are compared highest first (1 = best); **bound** the "
        "solver's own upper bound on the lexicographic optimum's total $/h; **own gap** (bound − objective) / "
        "bound; **gap to best** against the smallest bound any solver proved; **t→1%** seconds until the "
        "incumbent was within 1% of the best bound (never: not in the time limit); **time** wall seconds of "
        "the solve (ours: compile + solve + validate; peers: model build + solve); **RSS** peak resident MB "
        "of the solver's process. A negative gap to best means the plan beats the lexicographic optimum's "
        "total by giving up value in a higher tier.",
        "",
    ]
    losses = []
    for inst in doc["instances"]:
        res = inst["results"]
        lines += [f"## {inst['family']} / {inst['size']} ({inst['jobs']:,} jobs × {inst['sites']:,} sites)", ""]
        bb = inst.get("best_bound")
        lines += [f"Best bound: {_usd(bb)} $/h (from {inst.get('best_bound_from') or '—'}).", ""]
        lines += ["| solver | built | status | objective $/h | tiers $/h | lex | bound $/h | own gap | gap to best "
                  "| t→1% s | time s | RSS MB | note |",
                  "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"]
        for name, r in res.items():
            tiers = " / ".join(_usd(t) for t in r.get("tiers") or []) or "—"
            status = r.get("status", "?") + ("" if r.get("valid", True) or r.get("objective") is None else " INVALID")
            lines.append(
                f"| {name} | {'yes' if r.get('built') else 'no'} | {status} | {_usd(r.get('objective'))} | "
                f"{tiers} | {r.get('lex_rank') or '—'} | {_usd(r.get('bound'))} | {_pct(r.get('gap'))} | "
                f"{_pct(r.get('gap_to_best'))} | {_sec(r.get('t_1pct_best'))} | {_sec(r.get('seconds'))} | "
                f"{r.get('peak_rss_mb', 0):,.0f} | {_cell(r.get('note', ''))[:200]} |")
        lines.append("")
        losses += _losses(inst)
    lines += ["## Where ours loses", "",
              "Strict tiers are the product's objective, so a peer *beats* ours only when its plan is "
              "lexicographically better; a peer with a higher total but a worse higher tier is listed apart.", ""]
    lines += losses or ["- Nowhere in this run."]
    lines.append("")
    if doc.get("kernels"):
        lines += ["## Scaling: one best-candidate kernel pass", "",
                  "Every job scored against every pool of its class with full residuals and zero prices "
                  "(median of up to 5 passes after a first, JIT/upload, call).", "",
                  "| backend | instance | jobs × sites | candidates | pass s | M cand/s | first call s | RSS MB "
                  "| status |", "|---|---|--:|--:|--:|--:|--:|--:|---|"]
        for k in doc["kernels"]:
            cps, first, sec = k.get("candidates_per_second"), k.get("first_call_seconds"), k.get("pass_seconds")
            lines.append(f"| {k['backend']} | {k['family']}/{k['size']} | {k['cells']:,} | "
                         f"{k.get('candidates', 0):,} | {'—' if sec is None else f'{sec:.3g}'} | "
                         f"{'—' if not cps else f'{cps / 1e6:,.3g}'} | "
                         f"{'—' if first is None else f'{first:.2f}'} | {k.get('peak_rss_mb', 0):,.0f} | "
                         f"{k.get('status', '')} {_cell(k.get('note', ''))} |")
        lines.append("")
    sc = doc.get("scaling")
    if sc:
        lines += ["## Scaling: log-log slopes against jobs × sites", "",
                  "| series | points (jobs × sites: seconds) | slope |", "|---|---|--:|"]
        for b, k in sc["kernel_pass"].items():
            lines.append(f"| kernel pass, {b} | {_pts(k['points'])} | {_slope(k['slope'])} |")
        for s_, k in sc["solve"].items():
            cap = " (capped by the time limit: not a complexity)" if k["capped_by_time_limit"] else ""
            lines.append(f"| total solve, {s_} (median over families) | {_pts(k['points'])} | "
                         f"{_slope(k['slope'])}{cap} |")
        lines.append("")
    if doc.get("paths", {}).get("scaling_png"):
        lines += [f"![scaling]({Path(doc['paths']['scaling_png']).name})",
                  f"![quality]({Path(doc['paths']['quality_png']).name})", ""]
    return "\n".join(lines)


def _losses(inst: dict[str, Any]) -> list[str]:
    """Lines for each peer that beats ours on this instance (lexicographically, or on total only)."""
    res, out = inst["results"], []
    where = f"{inst['family']}/{inst['size']}"
    ours = res.get("ours", {})
    for name, r in res.items():
        if name == "ours" or r.get("objective") is None or not r.get("valid"):
            continue
        if ours.get("objective") is None or not ours.get("valid"):
            out.append(f"- {where}: ours has no valid plan ({ours.get('note', '')[:120]}); **{name}** has one.")
            continue
        d = r["objective"] - ours["objective"]
        rel = d / max(abs(ours["objective"]), 1e-9)
        tiers = list(zip(r.get("tiers") or [], ours.get("tiers") or []))
        first = next(((k, a - b) for k, (a, b) in enumerate(tiers)
                      if abs(a - b) > 1e-7 * max(1.0, abs(a), abs(b))), None)
        times = f"(ours {ours.get('seconds', 0):.1f} s, {name} {r.get('seconds', 0):.1f} s)"
        if first is not None and first[1] > 0:
            out.append(f"- {where}: **{name} beats ours**: ${first[1]:,.0f}/h more in tier {first[0] + 1} "
                       f"(counting from the highest); total {d:+,.0f} $/h ({100 * rel:+.2f}%) {times}.")
        elif d > 1e-6 * max(1.0, abs(ours["objective"])):
            lead = f"${-first[1]:,.0f}/h more in tier {first[0] + 1}" if first else "equal tiers"
            out.append(f"- {where}: {name} has a higher total, {d:+,.0f} $/h ({100 * rel:+.2f}%), but ours is "
                       f"lexicographically better ({lead}) {times}.")
    return out


def _pts(points: list) -> str:
    return ", ".join(f"{c:,.0f}: {t:.3g}" for c, t in points) or "—"


def _slope(x: float | None) -> str:
    return "n/a (one size)" if x is None else f"{x:.2f}"
