"""``python -m bench``: our solver against plain CP-SAT, HiGHS and first-fit-decreasing.

Run from the repository root. See ``bench/README.md`` for the columns and the GPU-host command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.instances import SIZES, TIGHT_SIZES, default_cache, parse_sizes
from bench.runner import SOLVERS, Config, run_suite
from placement.errors import BackendUnavailableError
from placement.generate.families import FAMILIES
from placement.generate.tight import TIGHT_FAMILIES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", default="auto", choices=["auto", "cpu", "gpu", "reference"],
                   help="kernel backend of our solver (auto: gpu if a CUDA device is usable, else cpu)")
    p.add_argument("--sizes", default=None,
                   help="comma list of " + ", ".join(f"{s.name}={s.n_jobs:,}x{s.n_sites:,}" for s in SIZES.values())
                   + f" or JOBSxSITES (default: S,M; {TIGHT_SIZES} when every family is a tight one)")
    p.add_argument("--families", default="neocloud,frontier,inference,power-bound,gpu-bound",
                   help="comma list of generator families; 'tight' stands for tight-d,tight-e")
    p.add_argument("--solvers", default=",".join(SOLVERS), help="comma list of " + ", ".join(SOLVERS))
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per solver and instance")
    p.add_argument("--seed", type=int, default=0, help="instance and solver seed")
    p.add_argument("--threads", type=int, default=2,
                   help="CP-SAT workers, HiGHS threads and our solver's threads (same for all)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                   help="folder for <date>-<host>-<backend>.json/.md/-*.png")
    p.add_argument("--cache", type=Path, default=default_cache(), help="folder of generated instances")
    p.add_argument("--kernel-backends", default=None,
                   help="comma list of backends for the kernel-pass scaling (default: every available one)")
    p.add_argument("--build-timeout", type=float, default=600.0,
                   help="seconds a model build may take before the solver counts as 'could not build'")
    p.add_argument("--mem-limit-gb", type=float, default=None,
                   help="kill a solver process above this RSS (default: 75%% of the memory available at start)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    families = [g for f in args.families.split(",") if f.strip()
                for g in (TIGHT_FAMILIES if f.strip() == "tight" else (f.strip(),))]
    default_sizes = TIGHT_SIZES if families and set(families) <= set(TIGHT_FAMILIES) else "S,M"
    try:
        sizes = parse_sizes(args.sizes if args.sizes is not None else default_sizes)
    except ValueError as exc:
        parser().error(str(exc))
    bad = [f for f in families if f not in FAMILIES]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    bad += [s for s in solvers if s not in SOLVERS]
    if bad or not families or not solvers:
        parser().error(f"unknown family/solver {bad}: families are {', '.join(FAMILIES)}; "
                       f"solvers are {', '.join(SOLVERS)}")
    cfg = Config(backend=args.backend, sizes=sizes, families=families, solvers=solvers, time_limit=args.time_limit,
                 seed=args.seed, threads=args.threads, out=args.out, cache=args.cache,
                 kernel_backends=[b.strip() for b in args.kernel_backends.split(",") if b.strip()]
                 if args.kernel_backends is not None else None,
                 build_timeout=args.build_timeout, mem_limit_gb=args.mem_limit_gb, plots=not args.no_plots)
    try:
        doc = run_suite(cfg)
    except BackendUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"device: {doc['device']}")
    for kind, path in doc["paths"].items():
        print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
