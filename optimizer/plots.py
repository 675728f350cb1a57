"""PNG/SVG plots of the frontier and the by-batch view (matplotlib, an optional extra).

Figures are made with matplotlib's object API (matplotlib.figure.Figure), never pyplot: no
global backend is switched and no figure registry grows in a process that embeds servesat.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optimizer.errors import InputError
from optimizer.frontier import BatchPoint, FrontierPoint

if TYPE_CHECKING:
    from optimizer.api import Search
    from optimizer.profiles import Profile
    from optimizer.result import OptimizeResult
    from optimizer.workload import Workload

PLOT_SUFFIXES = (".png", ".svg")


def require_matplotlib() -> Any:
    """matplotlib's Figure class, or an InputError saying how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("PNG/SVG output needs matplotlib: pip install 'servesat[plot]'") from None
    return Figure


def _colormap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name]


def check_plot_path(path: str | Path, flag: str = "--plot") -> None:
    """Before any solving: a known suffix, a writable folder, matplotlib installed."""
    if Path(path).suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"{flag} {path}: unknown suffix; valid: {', '.join(PLOT_SUFFIXES)}")
    folder = Path(path).resolve().parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InputError(f"{flag} {path}: cannot be written (no writable folder {folder})")
    require_matplotlib()


def _save(fig: Any, path: str | Path) -> None:
    try:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    except OSError as e:
        raise InputError(f"{path}: cannot be written ({e.strerror})") from None


def plot_frontier(
    points: Sequence[FrontierPoint],
    path: str | Path,
    title: str,
    *,
    chosen: Sequence[tuple[float, float, str]] = (),
    slo_ms: float | None = None,
) -> None:
    """$ per million output tokens against per-token latency, one line per context, points
    coloured by chip; each `chosen` (step_ms, $/Mtok, label) and the SLO are marked."""
    fig = require_matplotlib()(figsize=(11, 5.4))
    ax = fig.subplots()
    chips = sorted({p.chip for p in points})
    colours = {c: _colormap("tab10")(k % 10) for k, c in enumerate(chips)}
    contexts = sorted({p.context for p in points})
    styles = ["-", "--", "-.", ":"]
    for k, context in enumerate(contexts):
        pts = [p for p in points if p.context == context]
        # the cheapest cost reachable within a latency is a staircase: no configurations in between
        ax.step(
            [p.step_ms for p in pts],
            [p.usd_per_million_tokens for p in pts],
            where="post",
            ls=styles[k % len(styles)],
            color="0.55",
            lw=1,
            zorder=1,
            label=f"frontier, {context:,}-token context",
        )
    for chip in chips:
        pts = [p for p in points if p.chip == chip]
        ax.scatter(
            [p.step_ms for p in pts],
            [p.usd_per_million_tokens for p in pts],
            s=14,
            color=colours[chip],
            label=chip,
            zorder=2,
        )
    if slo_ms is not None:
        ax.axvline(slo_ms, color="crimson", ls="--", lw=1.2, label=f"latency target {slo_ms:g} ms")
    for x, y, label in chosen:
        ax.scatter(
            [x], [y], marker="*", s=170, color="gold", edgecolor="black", lw=0.8, alpha=0.85, zorder=3, label=label
        )
    xs = [p.step_ms for p in points] + ([slo_ms] if slo_ms else []) + [x for x, _, _ in chosen]
    right = max(xs) * 1.5 if xs else 1.0
    plateau = False
    for context in contexts:
        last = [p for p in points if p.context == context][-1]
        if last.compute_bound:  # past here a bigger batch costs the same per token and is slower
            ax.hlines(
                last.usd_per_million_tokens, last.step_ms, right, colors="0.75", linestyles=(0, (1, 2)), lw=1, zorder=1
            )
            plateau = True
    if plateau:
        ax.plot([], [], ls=(0, (1, 2)), color="0.75", label="compute-bound: more batch, same cost")
    ys = [p.usd_per_million_tokens for p in points]
    if xs and max(xs) / min(xs) > 20:
        ax.set_xscale("log")
    if ys and max(ys) / min(ys) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("per-token latency: decode step (ms)")
    ax.set_ylabel("cost ($ per million output tokens)")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    _save(fig, path)


def plot_optimum(
    model: str | Path, result: OptimizeResult, workload: Workload, profile: Profile, search: Search, path: str | Path
) -> None:
    """optimize --plot: the decode frontier for optimize's inputs, the chosen replica and the SLO marked."""
    from optimizer import load_model, render
    from optimizer.frontier import frontier

    catalog, names, weights, kv = search.resolve()
    chips = {n: catalog[n] for n in names}
    points = frontier(load_model(model), workload, profile=profile, chips=chips, weights=weights, kv=kv)
    b = result.best
    chosen = [] if b is None else [(b.step_ms, b.usd_per_million_output_tokens, render.optimum_label(b))]
    plot_frontier(points, path, render.optimum_plot_title(result), chosen=chosen, slo_ms=workload.slo_ms)


def plot_by_batch(rows: Sequence[BatchPoint], path: str | Path, title: str) -> None:
    """Left: decode step and its parts against batch; right: throughput per chip. One colour
    per context; the compute-bound region (T_flops >= T_params) shaded."""
    fig = require_matplotlib()(figsize=(12, 4.8))
    left, right = fig.subplots(1, 2)
    contexts = sorted({r.context for r in rows})
    colours = {c: _colormap("viridis")(k / max(len(contexts) - 1, 1) * 0.85) for k, c in enumerate(contexts)}
    turn = min((r.batch for r in rows if r.compute_bound), default=None)
    longest = max(rows, key=lambda r: r.batch)
    for context in contexts:
        pts = [r for r in rows if r.context == context]
        b = [r.batch for r in pts]
        left.plot(b, [r.step_ms for r in pts], color=colours[context], lw=2, label=f"step, {context:,} tokens")
        left.plot(b, [r.kv_ms for r in pts], color=colours[context], lw=1, ls="--")
        right.plot(
            b, [r.tokens_per_ms_per_chip for r in pts], color=colours[context], lw=2, label=f"{context:,} tokens"
        )
    full = [r for r in rows if r.context == longest.context]
    left.plot(
        [r.batch for r in full],
        [r.params_ms for r in full],
        color="black",
        lw=1,
        ls=":",
        label="weight load (T_params)",
    )
    left.plot([r.batch for r in full], [r.flops_ms for r in full], color="grey", lw=1, ls="-.", label="FLOPs (T_flops)")
    left.plot([], [], color="0.4", lw=1, ls="--", label="KV load (T_kv), per context")
    for ax in (left, right):
        if turn is not None:
            ax.axvspan(turn, longest.batch, color="orange", alpha=0.12, label=f"compute-bound (batch >= {turn})")
        ax.set_xscale("log")
        ax.set_xlabel("batch (sequences per replica)")
        ax.grid(True, which="both", alpha=0.3)
    left.set_yscale("log")
    left.set_ylabel("time per decode step (ms)")
    right.set_ylabel("throughput (tokens per ms per chip)")
    left.legend(fontsize=8, loc="lower right", framealpha=0.9)
    right.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    _save(fig, path)
