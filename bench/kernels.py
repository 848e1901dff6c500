"""Kernel benchmark: one best-candidate pass per backend and size, against the device's roofline.

Run ``python -m bench.kernels [--backend reference,cpu,gpu] [--sizes 10kx100,100kx1000,1Mx2000]
[--out bench/results]``. Each size is jobs × sites; the instance comes from
``placement.generate.families.generate("neocloud", ...)`` (``--source synthetic``:
every site has the same 4 GPU types and every job may use every pool). Per backend and size it
records: problem build time, JIT time (first call − median), median time per pass after a warm-up,
candidate evaluations per second (Σ class-list lengths of all jobs / time), peak memory, and the
result as a fraction of the roofline derived in ``roofline()``; JSON and Markdown go to ``--out``.

Peak memory: reference/cpu: tracemalloc peak during one pass (NumPy allocations; the kernels
allocate nothing inside Numba) and the process's max RSS; gpu: CuPy's memory pool after binding and
one pass (the pool keeps freed blocks, so its total is the peak).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from placement.core.problem import Problem, compile_problem
from placement.generate.families import generate
from placement.io.config import portfolio_from_dict
from placement.kernels import kernels_for
from placement.model.jobs import validate_jobs

log = logging.getLogger("bench.kernels")

DEFAULT_SIZES = "10kx100,100kx1000,1Mx2000"
H100_HBM_BYTES_PER_S = 3.35e12  # H100 SXM5 HBM3
H100_FP64_FLOPS = 33.5e12  # H100 SXM5 FP64, non-tensor (the kernel is scalar code)
# Per candidate, as the kernel is written (kernels/cpu.py ``_job_scan``):
STREAM_BYTES = 16  # class_pool (8) + class_speed (8): read once per candidate, in order
GATHER_BYTES = 80  # residual GPUs, pool site/kW/price (4 × 8) + six per-site figures (6 × 8): cache-resident
JOB_BYTES = 104  # per job: 9 job fields, the job index and 3 outputs, 8 B each
FLOPS = 15  # 7 mul, 1 div, 6 sub, 1 add (residual + tolerance); compares not counted
SCALAR_FP_PER_CYCLE = 2  # two scalar FP64 pipes; no FMA (products are rounded on their own)


def parse_size(text: str) -> tuple[int, int]:
    """``'100kx1000'`` → (100_000, 1000); k and M suffixes, ``x`` or ``×``."""
    jobs, sites = text.lower().replace("×", "x").split("x")

    def num(s: str) -> int:
        mult = {"k": 1_000, "m": 1_000_000}.get(s[-1], 1)
        return int(float(s[:-1] if s[-1] in "km" else s) * mult)

    return num(jobs), num(sites)


def build_problem(n_jobs: int, n_sites: int, seed: int = 0, source: str = "generate") -> tuple[Problem, str]:
    """The instance of one size: the ``neocloud`` generator, or (``source="synthetic"``) a synthetic one."""
    if source == "generate":
        config, jobs = generate("neocloud", n_jobs, n_sites, seed)
        label = "generate('neocloud')"
    else:
        config, jobs = _synthetic(n_jobs, n_sites, seed)
        label = "synthetic (4 GPU types per site, every pool eligible)"
    portfolio = portfolio_from_dict(config, label)
    return compile_problem(portfolio, validate_jobs(jobs, portfolio, label)), label


def _synthetic(n_jobs: int, n_sites: int, seed: int) -> tuple[dict[str, Any], Any]:
    rng = np.random.default_rng(seed)
    types = ["H100", "H200", "B200", "GB200"]
    sites = [{"id": f"s{i}", "region": "us-tx", "grid_mw": float(rng.uniform(20, 200)),
              "pue": float(rng.uniform(1.1, 1.4)), "price_usd_per_mwh": float(rng.uniform(30, 90)),
              "carbon_kg_per_mwh": float(rng.uniform(0, 500)),
              "pools": {t: int(rng.integers(1, 64)) * 64 for t in types}} for i in range(n_sites)]
    gpus = rng.choice([1, 2, 4, 8, 16, 64, 256], size=n_jobs, p=[.5, .1, .1, .15, .1, .04, .01])
    jobs = pa.table({"id": pa.array(np.char.add("j", np.arange(n_jobs).astype(str))),
                     "gpus": pa.array(gpus.astype(np.int64)),
                     "value_usd_per_hour": pa.array(gpus * rng.uniform(2.0, 4.0, n_jobs))})
    return {"name": "synthetic", "sites": sites}, jobs


def memory_bandwidth(n_bytes: int = 1 << 28, repeats: int = 5) -> float:
    """This machine's memory bandwidth (B/s) from a NumPy copy: read + write of ``n_bytes``."""
    src = np.ones(n_bytes // 8)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return 2 * n_bytes / min(times)


def cpu_ghz() -> float:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return max(float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")) / 1000
    except (OSError, ValueError):
        return 2.5  # assumption when the frequency cannot be read


def roofline(device: str, cands_per_job: float, bandwidth: float, cores: int, ghz: float) -> dict[str, Any]:
    """Candidates/s ceilings: memory (compulsory bytes / bandwidth) and arithmetic (flops / peak)."""
    bytes_per_cand = STREAM_BYTES + JOB_BYTES / max(cands_per_job, 1.0)
    if device == "gpu":
        bw, flops, fp_note = H100_HBM_BYTES_PER_S, H100_FP64_FLOPS, "H100 SXM FP64 33.5 TFLOP/s"
    else:
        bw, flops = bandwidth, cores * ghz * 1e9 * SCALAR_FP_PER_CYCLE
        fp_note = f"{cores} cores × {ghz:.2f} GHz × {SCALAR_FP_PER_CYCLE} scalar FP64/cycle"
    mem, arith = bw / bytes_per_cand, flops / FLOPS
    return {"bytes_per_candidate": bytes_per_cand, "bandwidth_bytes_per_s": bw, "memory_cands_per_s": mem,
            "flops_per_s": flops, "flops_note": fp_note, "arith_cands_per_s": arith,
            "roofline_cands_per_s": min(mem, arith), "bound": "memory" if mem < arith else "arithmetic"}


def cold_jit_s(backend: str) -> float | None:
    """JIT compile time of ``best_candidate`` with an empty Numba cache (a fresh process): the cost
    of the first run on a machine; later processes load the compiled code (``cache=True``)."""
    if backend != "cpu":
        return None  # reference: nothing to compile; gpu: compiled per process, in "first − median"
    code = ("import time, numpy as np\n"
            "from bench.kernels import build_problem\n"
            "from placement.kernels.cpu import CpuKernels\n"
            "P = build_problem(200, 5, source='synthetic')[0]\n"
            "a = (np.arange(P.n_jobs), P.pool_gpus, P.site_cap_mw, np.zeros(P.n_sites), np.zeros(P.n_pools))\n"
            "k = CpuKernels(P); t = time.perf_counter(); k.best_candidate(*a); first = time.perf_counter() - t\n"
            "t = time.perf_counter(); k.best_candidate(*a); print(first - (time.perf_counter() - t))\n")
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], check=False)
    try:
        return float(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        log.info("cold JIT measurement failed: %s", res.stderr[-500:])
        return None


def run_one(P: Problem, backend: str, repeats: int, budget_s: float) -> dict[str, Any]:
    """Bind, warm up (JIT), time ``repeats`` passes within ``budget_s``, then measure memory."""
    rng = np.random.default_rng(1)
    args = (np.arange(P.n_jobs), P.pool_gpus.copy(), P.site_cap_mw.copy(),
            rng.uniform(0, 20, P.n_sites), rng.uniform(0, 0.1, P.n_pools))
    pool = _cupy_pool() if backend == "gpu" else None
    t = time.perf_counter()
    kern = kernels_for(P, backend)
    bind_s = time.perf_counter() - t
    traced = backend == "reference"  # no JIT: trace the warm-up pass itself
    if traced:
        tracemalloc.start()
    t = time.perf_counter()
    kern.best_candidate(*args)
    first_s = time.perf_counter() - t
    peak = None
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    times: list[float] = []
    spent = first_s
    while len(times) < repeats and (not times or spent + statistics.median(times) < budget_s):
        t = time.perf_counter()
        kern.best_candidate(*args)
        times.append(time.perf_counter() - t)
        spent += times[-1]
    if not traced and pool is None:
        tracemalloc.start()
        kern.best_candidate(*args)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    median = statistics.median(times)
    out = {"backend": backend, "bind_s": bind_s, "first_call_s": first_s,
           "jit_s": max(first_s - median, 0.0) if backend != "reference" else 0.0,
           "pass_s": times, "median_pass_s": median, "peak_pass_bytes": peak,
           "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    if pool is not None:
        out["device_pool_bytes"] = pool.total_bytes()
    return out


def _cupy_pool():
    import cupy  # noqa: PLC0415

    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    return pool


def _available_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 34


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.kernels", description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="reference,cpu", help="comma list of reference,cpu,gpu")
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="comma list of JOBSxSITES, e.g. 100kx1000")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--source", choices=["generate", "synthetic"], default="generate")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=400.0,
                    help="skip a backend at a size whose estimated pass exceeds this; caps timed passes")
    ap.add_argument("--seed", type=int, default=0)
    opts = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    backends = [b.strip() for b in opts.backend.split(",") if b.strip()]
    load_start = os.getloadavg()
    cores, ghz = os.cpu_count() or 1, cpu_ghz()
    bandwidth = memory_bandwidth()
    log.info("host %s: %d cores at %.2f GHz, NumPy copy bandwidth %.1f GB/s", socket.gethostname(),
             cores, ghz, bandwidth / 1e9)
    cold = {b: cold_jit_s(b) for b in backends}
    for b, sec in cold.items():
        if sec is not None:
            log.info("%s: JIT compile with an empty cache %.1f s", b, sec)
    rates: dict[str, float] = {}  # last measured candidates/s per backend, to estimate the next size
    rows: list[dict[str, Any]] = []
    for size in opts.sizes.split(","):
        n_jobs, n_sites = parse_size(size)
        if n_jobs * 4096 > _available_bytes():
            log.info("skip %s: ~%d GB needed to build it, %.1f GB available", size, n_jobs * 4096 >> 30,
                     _available_bytes() / 2**30)
            rows.append({"size": size, "skipped": "does not fit in memory"})
            continue
        t = time.perf_counter()
        P, label = build_problem(n_jobs, n_sites, opts.seed, opts.source)
        build_s = time.perf_counter() - t
        cands = int(np.diff(P.class_ptr)[P.job_class].sum())
        log.info("%s: %d jobs, %d sites, %d pools, %d candidates (built in %.1f s, %s)", size, P.n_jobs,
                 P.n_sites, P.n_pools, cands, build_s, label)
        for backend in backends:
            base = {"size": size, "jobs": P.n_jobs, "sites": P.n_sites, "pools": P.n_pools,
                    "candidates": cands, "build_s": build_s, "source": label, "backend": backend}
            est = cands / rates[backend] if backend in rates else 0.0
            if est > opts.budget_s:
                msg = f"estimated {est:.0f} s per pass (at {rates[backend] / 1e6:.1f} M candidates/s) > budget"
                log.info("skip %s at %s: %s", backend, size, msg)
                rows.append({**base, "skipped": msg})
                continue
            try:
                res = run_one(P, backend, opts.repeats, opts.budget_s)
            except Exception as exc:  # a missing device: record why and go on
                log.info("skip %s at %s: %s", backend, size, exc)
                rows.append({**base, "skipped": str(exc)})
                continue
            rate = cands / res["median_pass_s"]
            rates[backend] = rate
            roof = roofline(backend, cands / P.n_jobs, bandwidth, cores, ghz)
            rows.append({**base, **res, "cands_per_s": rate, "roofline": roof,
                         "fraction_of_roofline": rate / roof["roofline_cands_per_s"]})
            log.info("  %-9s %8.3f s/pass  %7.1f M cand/s  %5.1f%% of roofline  (JIT %.1f s)", backend,
                     res["median_pass_s"], rate / 1e6, 100 * rows[-1]["fraction_of_roofline"], res["jit_s"])
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "host": socket.gethostname(),
            "source": opts.source, "load_average_start": load_start, "cold_jit_s": cold,
            "cpu": platform.processor() or platform.machine(), "cores": cores, "ghz": ghz,
            "numpy_copy_bandwidth_bytes_per_s": bandwidth, "load_average": os.getloadavg(),
            "command": "python -m bench.kernels " + " ".join(argv if argv is not None else sys.argv[1:])}
    write_results(opts.out, meta, rows, backends)
    return 0


def write_results(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], backends: list[str]) -> Path:
    """``<date>_<host>_<backends>.json`` and ``.md`` under ``out``; returns the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"kernels_{meta['date'][:10]}_{meta['host']}_{'+'.join(backends)}_{meta['source']}"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    md = out / f"{stem}.md"
    md.write_text(markdown(meta, rows))
    log.info("wrote %s and .json", md)
    return md


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    bw = meta["numpy_copy_bandwidth_bytes_per_s"]
    cpu_arith = meta["cores"] * meta["ghz"] * 1e9 * SCALAR_FP_PER_CYCLE / FLOPS
    lines = [
        f"# Kernel benchmark: best-candidate pass ({meta['date']}, host `{meta['host']}`)", "",
        f"Command: `{meta['command']}`. CPU: {meta['cores']} cores at {meta['ghz']:.2f} GHz; "
        f"load average (1/5/15 min) at the start {', '.join(f'{x:.1f}' for x in meta['load_average_start'])}, "
        f"at the end {', '.join(f'{x:.1f}' for x in meta['load_average'])} "
        "(a shared machine: other processes compete for the cores).", "",
        "| size | backend | pools | candidates | build s | first − median s | s/pass (median) | M cand/s | roofline M cand/s "
        "| % of roofline | pass peak MB | max RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['size']} | {r.get('backend', '')} | {r.get('pools', '')} | "
                         f"{r.get('candidates', '')} | | | skipped: {r['skipped']} | | | | | |")
            continue
        peak = r.get("device_pool_bytes", r["peak_pass_bytes"]) or 0
        lines.append(
            f"| {r['size']} | {r['backend']} | {r['pools']} | {r['candidates']:,} | {r['build_s']:.1f} | "
            f"{r['jit_s']:.2f} | {r['median_pass_s']:.4f} | {r['cands_per_s'] / 1e6:.1f} | "
            f"{r['roofline']['roofline_cands_per_s'] / 1e6:.0f} ({r['roofline']['bound']}) | "
            f"{100 * r['fraction_of_roofline']:.1f} | {peak / 2**20:.1f} | {r['max_rss_bytes'] / 2**20:.0f} |")
    by = {(r["size"], r["backend"]): r for r in rows if "skipped" not in r}
    ratios = [f"{size}: {by[(size, 'cpu')]['cands_per_s'] / by[(size, 'reference')]['cands_per_s']:.1f}×"
              for size, b in by if b == "cpu" and (size, "reference") in by]
    if ratios:
        lines += ["", "cpu / reference speed-up: " + ", ".join(ratios) + "."]
    jit = ", ".join(f"{b} {sec:.1f} s" for b, sec in meta.get("cold_jit_s", {}).items() if sec is not None)
    if jit:
        lines += ["", f"JIT compile of the best-candidate kernel with an empty Numba cache: {jit} (once per "
                  "machine: `cache=True`). \"first − median\" is the first call's extra time in this "
                  "process (cache load, cold caches and page faults; the GPU's JIT compile lands here)."]
    source = next((r["source"] for r in rows if "source" in r), "")
    lines += ["", f"Instances: {source}, seed 0. Residuals = full capacity; random λ, μ. A candidate is "
              "one (job, pool) of the job's class list; candidates/s = Σ candidates / median pass time.",
              "", "## Roofline", "",
              f"Per candidate the kernel streams {STREAM_BYTES} B (pool index and speed of the class "
              f"list, read in order), gathers {GATHER_BYTES} B from per-pool and per-site tables that "
              f"stay in cache (a few hundred KB at 8,000 pools), and pays {JOB_BYTES} B per job (job "
              "fields, index, outputs) spread over its candidates. Compulsory memory traffic is "
              f"therefore {STREAM_BYTES} + {JOB_BYTES}/(candidates per job) B per candidate: an upper "
              "bound with no reuse of class lists between jobs of the same class (jobs of a class "
              "share one list, so caches often do better).",
              f"Arithmetic: {FLOPS} FP64 operations (7 mul, 1 div, 6 sub, 1 add) per candidate plus "
              "compares; scalar code (gathers and branches), so the CPU ceiling is the scalar issue "
              f"rate ({SCALAR_FP_PER_CYCLE} FP64 operations per cycle per core; no FMA, by design), "
              "and the GPU's is its FP64 rate.",
              f"- This machine: NumPy copy bandwidth {bw / 1e9:.1f} GB/s (read + write, one thread); "
              f"{meta['cores']} × {meta['ghz']:.2f} GHz × {SCALAR_FP_PER_CYCLE} = "
              f"{meta['cores'] * meta['ghz'] * SCALAR_FP_PER_CYCLE:.1f} GFLOP/s → "
              f"{meta['cores'] * meta['ghz'] * SCALAR_FP_PER_CYCLE * 1e3 / FLOPS:.0f} M candidates/s "
              f"arithmetic; memory ceiling {bw / STREAM_BYTES / 1e6:.0f} M candidates/s at "
              f"{STREAM_BYTES} B each. "
              f"{'Arithmetic' if cpu_arith < bw / STREAM_BYTES else 'Memory'}-bound.",
              f"- One H100 SXM: {H100_HBM_BYTES_PER_S / 1e12:.2f} TB/s HBM3 / {STREAM_BYTES} B = "
              f"{H100_HBM_BYTES_PER_S / STREAM_BYTES / 1e9:.0f} G candidates/s; FP64 "
              f"{H100_FP64_FLOPS / 1e12:.1f} TFLOP/s / {FLOPS} = {H100_FP64_FLOPS / FLOPS / 1e12:.1f} T "
              "candidates/s (a DP divide is several instructions on a GPU, so less in practice). "
              "Memory-bound: at 1M × 2000 with 4 types (8·10⁹ candidates) the ceiling is "
              f"{8e9 / (H100_HBM_BYTES_PER_S / STREAM_BYTES) * 1e3:.0f} ms per pass.",
              "", "Each row's fraction is its candidates/s over min(memory, arithmetic) for its device."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
