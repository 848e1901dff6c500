"""PNG figures of a benchmark run (matplotlib, Agg backend: no display needed).

- ``<stem>-scaling.png``: log-log, against jobs × sites: seconds per best-candidate kernel pass
  for each backend, and total solve seconds for each solver (median over families), slopes in
  the legend;
- ``<stem>-quality.png``: one panel per instance: each solver's gap to the best bound (%) against
  seconds, as a step curve through its improving solutions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

COLORS = {"ours": "tab:blue", "cpsat": "tab:orange", "highs": "tab:green", "ffd": "tab:red",
          "reference": "tab:gray", "cpu": "tab:blue", "gpu": "tab:purple"}


def _plt() -> Any:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def write_all(doc: dict[str, Any], stem: Path) -> dict[str, str]:
    """Write both figures next to ``stem``; returns their paths."""
    out = {"scaling_png": str(stem.parent / f"{stem.name}-scaling.png"),
           "quality_png": str(stem.parent / f"{stem.name}-quality.png")}
    scaling_figure(doc, Path(out["scaling_png"]))
    quality_figure(doc, Path(out["quality_png"]))
    return out


def _label(name: str, slope: float | None) -> str:
    return f"{name} (slope {slope:.2f})" if slope is not None else name


def scaling_figure(doc: dict[str, Any], path: Path) -> None:
    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8))
    sc = doc.get("scaling", {})
    for name, k in sc.get("kernel_pass", {}).items():
        if k["points"]:
            xs, ys = zip(*k["points"])
            a.loglog(xs, ys, "o-", color=COLORS.get(name), label=_label(name, k["slope"]))
    a.set(title="one best-candidate kernel pass", xlabel="jobs × sites", ylabel="seconds")
    for name, k in sc.get("solve", {}).items():
        if k["points"]:
            xs, ys = zip(*k["points"])
            b.loglog(xs, ys, "o-", color=COLORS.get(name), label=_label(name, k["slope"]))
    limit = doc["config"]["time_limit_s"]
    b.axhline(limit, color="k", ls=":", lw=1, label=f"time limit {limit:g} s")
    b.set(title="total solve time (median over families)", xlabel="jobs × sites", ylabel="seconds")
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f"{doc['host']} · backend {doc['backend']} · {doc['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def quality_figure(doc: dict[str, Any], path: Path) -> None:
    plt = _plt()
    insts = doc["instances"] or [None]
    cols = min(3, len(insts))
    rows = math.ceil(len(insts) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    limit = doc["config"]["time_limit_s"]
    for ax, inst in zip(axes.flat, insts):
        if inst is None:
            continue
        best = inst.get("best_bound")
        ax.set_title(f"{inst['family']} / {inst['size']}  (best bound {best:,.0f} $/h)" if best else
                     f"{inst['family']} / {inst['size']}  (no bound)", fontsize=9)
        for name, r in inst["results"].items():
            traj = [(t, o) for t, o, *_ in r.get("trajectory") or [] if o is not None]
            if not traj or not best:
                continue
            end = max(r.get("seconds") or traj[-1][0], traj[-1][0])
            ts = [t for t, _ in traj] + [end]
            gaps = [max((best - o) / abs(best) * 100, 1e-3) for _, o in traj]
            gaps.append(gaps[-1])
            ax.step(ts, gaps, where="post", color=COLORS.get(name), label=name)
            ax.plot(ts[-1], gaps[-1], "o", color=COLORS.get(name), ms=3)
        ax.axhline(1.0, color="k", ls=":", lw=1)
        ax.axvline(limit, color="gray", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set(xlabel="seconds", ylabel="gap to best bound (%)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(insts):]:
        ax.axis("off")
    fig.suptitle(f"quality against time · {doc['host']} · backend {doc['backend']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
