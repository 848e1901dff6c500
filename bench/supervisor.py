"""One solver run per process, supervised: a spawned child runs one task, the parent watches it.

The child (``_child``, the ``multiprocessing`` spawn target) loads the instance, runs our solver,
a peer, a kernel pass or the warm-up, and sends ``(seconds, kind, ...)`` messages on a pipe:
``phase`` (load, build, solve), ``progress``, then ``result`` or ``error``. The parent
(``supervise``) kills a child that overruns its phase's time limit or the memory limit, and
records why there is no result. Peak RSS is the child's own, a crash or a runaway solve is
contained. Every plan is validated with ``placement.validate.validator.validate_plan``.

A spawned child imports this module afresh, so what it imports at the top loads in every child
and counts in every reported RSS: nothing here imports a solver library (``placement.solve`` and
``bench.peers.run`` load theirs when called).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from bench import peers
from bench.instances import Instance, Size, load
from bench.peers.common import candidate_count, peak_rss_mb
from bench.report import jsonable
from placement import SolveOptions, solve
from placement.core.problem import compile_problem
from placement.errors import InvalidPlanError
from placement.kernels import kernels_for
from placement.plan import build_plan
from placement.validate.validator import validate_plan

# The NumPy reference kernels are the spec, not a production path: not timed above this size.
REFERENCE_MAX_CANDIDATES = 50_000_000


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


def _load(task: dict[str, Any]) -> tuple[Any, Any, Any]:
    return load(Instance(task["family"], Size(*task["size"]), task["seed"], Path(task["dir"])))


def _validate(portfolio: Any, jobs: Any, pairs: Any, problem: Any, solution: Any, seconds: float,
              seed: int) -> dict[str, Any]:
    plan = build_plan(problem, solution, seconds=seconds, seed=seed)
    found = validate_plan(portfolio, jobs, plan.table, pairs)
    # As in placement.solve: a required job left unplaced is reported, not a broken plan.
    bad = [v for v in found if v.kind != "required"]
    return {"objective": plan.summary["objective"], "valid": not bad, "violations": len(bad),
            "required_unplaced": len(found) - len(bad),
            "violation_examples": [v.message for v in bad[:5]], "jobs_placed": plan.summary["jobs_placed"],
            "gpus_placed": plan.summary["gpus_placed"], "mw_used": plan.summary["mw_used"],
            "tiers": [v["objective"] for v in plan.summary["objective_by_tier"].values()]}


def _child_ours(task: dict[str, Any], send: Any) -> dict[str, Any]:
    portfolio, jobs, pairs = _load(task)
    opts = SolveOptions(solver="auto", backend=task["backend"], time_limit_s=task["time_limit"], seed=task["seed"],
                        threads=task["threads"])
    send("phase", "solve")
    t0 = time.monotonic()
    traj: list[tuple[float, float, float | None]] = []

    def progress(objective: float, bound: float) -> None:
        traj.append((time.monotonic() - t0, float(objective), float(bound) if math.isfinite(bound) else None))
        send("progress", *traj[-1])

    try:
        plan = solve(portfolio, jobs, pairs, opts, on_progress=progress)
    except InvalidPlanError as exc:
        return {"built": True, "status": "invalid", "valid": False, "note": str(exc)[:500],
                "seconds": time.monotonic() - t0, "trajectory": traj, "peak_rss_mb": peak_rss_mb()}
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
            "native": {"solver": s["solver"], "backend": s["backend"], "stats": jsonable(s.get("stats", {}))},
            "note": note, "peak_rss_mb": peak_rss_mb()}


def _child_peer(task: dict[str, Any], send: Any) -> dict[str, Any]:
    portfolio, jobs, pairs = _load(task)
    t = time.monotonic()
    problem = compile_problem(portfolio, jobs, pairs)
    compile_s = time.monotonic() - t
    r = peers.run(task["solver"], problem, task["time_limit"], task["seed"], threads=task["threads"],
                  on_progress=lambda *a: send("progress", *a), on_phase=lambda ph: send("phase", ph))
    out = jsonable(r.summary())
    out["compile_seconds"] = compile_s
    out["peak_rss_mb"] = peak_rss_mb()
    if r.solution is not None:
        out.update(_validate(portfolio, jobs, pairs, problem, r.solution, r.seconds, task["seed"]))
        if abs(out["objective"] - r.objective) > 1e-6 * max(1.0, abs(r.objective)):
            out["note"] += f"; peer objective {r.objective:.2f} != plan objective {out['objective']:.2f}"
    return out


def _child_kernel(task: dict[str, Any], send: Any) -> dict[str, Any]:
    portfolio, jobs, pairs = _load(task)
    problem = compile_problem(portfolio, jobs, pairs)
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
               peak_rss_mb=peak_rss_mb())
    return out


def _child_warmup(task: dict[str, Any], send: Any) -> dict[str, Any]:
    """Fill Numba's on-disk caches (our kernels, FFD) so no timed run pays for compilation."""
    portfolio, jobs, pairs = _load(task)
    send("phase", "solve")
    t = time.monotonic()
    solve(portfolio, jobs, pairs, SolveOptions(solver="auto", backend=task["backend"], time_limit_s=1.0,
                                              threads=task["threads"]))
    peers.run("ffd", compile_problem(portfolio, jobs, pairs), 1.0, task["seed"])
    return {"status": "ok", "seconds": time.monotonic() - t}


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

