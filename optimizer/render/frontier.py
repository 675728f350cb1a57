"""The text of frontier and frontier --by-batch: points, files, titles and messages."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

from optimizer.render.text import json_text, table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from optimizer.frontier import BatchPoint, FrontierPoint


def frontier_points(points: Sequence[FrontierPoint]) -> str:
    """The frontier's points as a table, fastest first per context."""
    return table(
        ["context", "chip", "slice", "tp", "w/kv", "batch", "step ms", "$/Mtok out"],
        [
            [
                str(p.context),
                p.chip,
                p.topology,
                str(p.tp),
                f"{p.weights}/{p.kv}",
                str(p.batch),
                f"{p.step_ms:.3f}",
                f"{p.usd_per_million_tokens:.4f}",
            ]
            for p in points
        ],
    )


def batch_points(points: Sequence[BatchPoint]) -> str:
    """The by-batch view as a table: the step and its parts, throughput per chip, what bounds it."""
    return table(
        ["context", "batch", "step ms", "params", "kv", "flops", "tok/ms/chip", "bound"],
        [
            [
                str(p.context),
                str(p.batch),
                f"{p.step_ms:.3f}",
                f"{p.params_ms:.3f}",
                f"{p.kv_ms:.3f}",
                f"{p.flops_ms:.3f}",
                f"{p.tokens_per_ms_per_chip:.4f}",
                ("compute" if p.compute_bound else "memory") + (", comms" if p.comms_bound else ""),
            ]
            for p in points
        ],
    )


def points_json(points: Sequence[FrontierPoint] | Sequence[BatchPoint], caveats: dict[str, Any]) -> str:
    """frontier --json: the points, and what they rest on (optimizer.frontier.caveats)."""
    return json_text({"points": [p.to_dict() for p in points], **caveats})


def points_text(points: Sequence[FrontierPoint] | Sequence[BatchPoint], by_batch: bool, caveats: dict[str, Any]) -> str:
    """frontier's text: the frontier's or the by-batch view's table, then the caveats."""
    # by_batch says which kind the points are (frontier --by-batch gives BatchPoints)
    text = batch_points(points) if by_batch else frontier_points(points)  # type: ignore[arg-type]
    return "\n".join([text, *caveat_lines(caveats)])


def caveat_lines(caveats: dict[str, Any]) -> list[str]:
    """Under the frontier's table: the profile's notes and the calibrated band."""
    lines = [f"Note: {n}" for n in caveats["notes"]]
    band = caveats["uncertainty"]
    if band is not None:
        lines.append(
            f"Band: every step ±{band['step_pct']:.0f}%, and the cost per token with it (leave-one-model-out "
            "error of the calibrated fit)"
        )
    return lines


def points_file(points: Sequence[FrontierPoint] | Sequence[BatchPoint], suffix: str) -> str:
    """frontier --out: the points as a JSON list (suffix .json) or CSV with a header row (else).
    The CSV lines end in CRLF (the csv module's dialect): write the text with newline=""."""
    rows = [p.to_dict() for p in points]
    if suffix.lower() == ".json":
        return json_text(rows)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["context"])
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def wrote(path: str, n: int) -> str:
    return f"wrote {path} ({n} points)"


def no_frontier(model: str, contexts: Sequence[int]) -> str:
    """The frontier is empty: the model fits on none of the chips."""
    return (
        f"nothing to show: {model} fits on none of the chips asked with one sequence of "
        f"{', '.join(map(str, contexts))} tokens"
    )


def no_batches(model: str, chip: str, topology: str, weights: str, kv: str, contexts: Sequence[int]) -> str:
    """The by-batch view is empty: the configuration holds not even one sequence."""
    return (
        f"nothing to show: {model} does not fit on {chip} {topology} in "
        f"{weights}/{kv} with one sequence of any of the contexts asked "
        f"({', '.join(map(str, contexts))} tokens)"
    )


def none_within(slo_ms: float, context: int) -> str:
    return f"no configuration meets {slo_ms:g} ms at {context:,} tokens"


def cheapest_marks(
    points: Sequence[FrontierPoint], slo_ms: float | None, contexts: Sequence[int]
) -> tuple[list[tuple[float, float, str]], list[str]]:
    """frontier --slo-ms: per context the cheapest point within the target, as a plot mark
    (step_ms, $/Mtok, label), or a line saying there is none."""
    from optimizer.frontier import cheapest_within

    chosen: list[tuple[float, float, str]] = []
    missing: list[str] = []
    if slo_ms is None:
        return chosen, missing
    for context in contexts:
        p = cheapest_within(list(points), slo_ms, context)
        if p is None:
            missing.append(none_within(slo_ms, context))
        else:
            chosen.append((p.step_ms, p.usd_per_million_tokens, cheapest_label(p, slo_ms)))
    return chosen, missing


def cheapest_label(p: FrontierPoint, slo_ms: float) -> str:
    """frontier --slo-ms: the label of the cheapest point within the target."""
    return (
        f"cheapest within {slo_ms:g} ms at {p.context:,} "
        f"tokens: {p.chip} {p.topology} {p.weights}/{p.kv} batch {p.batch}"
    )


def frontier_title(model: str, profile: str, decode_len: int) -> str:
    return f"{model}: latency-cost frontier of decode ({profile} profile, {decode_len} output tokens per query)"


def by_batch_title(model: str, chip: str, topology: str, weights: str, kv: str, tp: int, profile: str) -> str:
    return (
        f"{model} on {chip} {topology} ({tp}-way model parallel), {weights} weights, "
        f"{kv} KV: decode step and throughput per chip against batch ({profile} profile)"
    )
