"""The latency-cost frontier and the chapter's by-batch view (decode only; book or calibrated profile).

Frontier: over every candidate and every batch that fits (HBM) and is not comms-bound, the
points (decode step, $ per million output tokens) that no other point beats on both. For one
candidate, as the batch grows the step grows and the cost per token falls until the step
turns compute-bound (T_flops >= T_params, at B = T_params/T_flops1); past that the cost per
token is flat while the step still grows, so those batches are dominated by the first
compute-bound one. The enumeration therefore stops there: exact, and a few hundred batches
per candidate at most. Values equal to 12 significant digits tie; ties keep the point with
fewer chips, then the earlier catalog row. Under the calibrated profile a fixed per-step
overhead keeps the cost per token falling at every batch, so every batch that fits is
enumerated (exact; bounded by MAX_POINTS).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from constraints import comms, hbm
from optimizer.candidates import build_table, single_candidate
from optimizer.catalog import DTYPES, Chip
from optimizer.errors import InputError, unknown_name
from optimizer.metrics import measure
from optimizer.models import Model
from optimizer.profiles import DEFAULT_PROFILE, Profile
from optimizer.solve import significant
from optimizer.workload import Workload

#: Most (configuration, batch) points one frontier enumerates.
MAX_POINTS = 20_000_000
#: Most batches one by-batch view lists (per context).
MAX_BATCH_POINTS = 100_000


@dataclass
class FrontierPoint:
    """One Pareto-optimal configuration at one batch (the keys of optimize's `best`)."""

    context: int
    chip: str
    topology: str
    chips: int
    tp: int  # Y: chips of one replica (a stage of tp/pp: attention split tp/pp/attention_dp ways)
    n_axes: int
    attention_dp: int  # d: attention groups the batch is split over (1: none)
    ep: int  # e: expert parallelism, chips the routed experts are spread over (1: none)
    pp: int  # pipeline stages (1: none); each stage is tp/pp chips inside one node
    nodes: int  # scale-up domains one replica spans (HGX/AMD nodes, NVL72 racks; 1: one)
    replicas: int
    weights: str
    kv: str
    batch: int
    step_ms: float
    tokens_per_s_per_chip: float
    qps_per_chip: float
    queries_per_dollar: float
    usd_per_million_tokens: float  # output tokens (decode only: the same as the next)
    usd_per_million_output_tokens: float
    cost_per_hour: float
    compute_bound: bool  # T_flops >= T_params: a bigger batch no longer lowers the cost per token

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def frontier(
    model: Model,
    workload: Workload,
    *,
    profile: Profile = DEFAULT_PROFILE,
    chips: dict[str, Chip],
    weights: tuple[str, ...] | None = None,
    kv: tuple[str, ...] | None = None,
) -> list[FrontierPoint]:
    """The exact Pareto frontier of (step, $/million output tokens), fastest first, for the
    workload's context and decode length (decode only: its serving mode and targets are not used).
    Raises InputError for unknown dtypes or dtypes none of the chips supports."""
    for kind, values, attr in (("weights", weights, "weight_dtypes"), ("kv", kv, "kv_dtypes")):
        for v in values or ():
            if v not in DTYPES:
                raise unknown_name(f"{kind} dtype", v, DTYPES)
        if values and not any(set(values) & set(getattr(c, attr)) for c in chips.values()):
            raise InputError(f"no chip asked supports the {kind} dtypes {', '.join(values)}")
    w = Workload(context=workload.context, decode_len=workload.decode_len, serving="decode-only")
    context, decode_len = w.context, w.decode_len
    table = build_table(model, chips, w, profile, weights, kv)
    c = table.cost
    cap = np.minimum(hbm.batch_caps(table, w), comms.batch_caps(table, w))
    if profile.name == "book":
        # first compute-bound batch (with every expert read: a bound for a mixture of experts,
        # past which the cost per token stays flat and points are dominated)
        turn = np.ceil((c.params_s + c.experts_s) / c.flops_s_per_seq).astype(np.int64)
        last = np.minimum(cap, np.maximum(turn, 1))
    else:
        # fixed per-step overheads keep the cost per token falling with the batch: every batch can
        # be on the frontier, up to the largest that fits
        last = cap
    rows = np.flatnonzero(last >= 1)
    if len(rows) == 0:
        return []
    counts = last[rows]
    if counts.sum() > MAX_POINTS:
        raise InputError(
            f"the frontier would weigh {int(counts.sum()):,} (configuration, batch) points, over "
            f"{MAX_POINTS:,}: restrict --chip, --weights or --kv"
        )
    row_of = np.repeat(rows, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    batch = np.arange(len(row_of)) - starts + 1
    m = measure(table, row_of, batch, decode_len)
    s_step, s_cost = significant(m.step_s), significant(m.usd_per_million_tokens)
    order = np.lexsort((row_of, table.slice_chips[row_of], s_cost, s_step))
    keep = []
    best = math.inf
    for k in order.tolist():
        if s_cost[k] < best:
            best = s_cost[k]
            keep.append(k)
    points = []
    _, kv_in = c.slopes()
    for k in keep:
        i, b = int(row_of[k]), int(batch[k])
        points.append(
            FrontierPoint(
                context=context,
                **table.row(i),
                batch=b,
                step_ms=float(m.step_s[k] * 1e3),
                tokens_per_s_per_chip=float(m.tokens_per_s_per_chip[k]),
                qps_per_chip=float(m.qps_per_chip[k]),
                queries_per_dollar=float(m.queries_per_dollar[k]),
                usd_per_million_tokens=float(m.usd_per_million_tokens[k]),
                usd_per_million_output_tokens=float(m.usd_per_million_tokens[k]),
                cost_per_hour=float(table.slice_chips[i] * table.usd_per_chip_hour[i]),
                compute_bound=bool(
                    c.flops_s_per_seq[i] * b >= c.params_s[i] + c.experts_read_s(b, np.array([i]))[0] + kv_in[i] * b
                ),
            )
        )
    return points


def caveats(profile: Profile, chip_names: Sequence[str]) -> dict[str, Any]:
    """What the frontier's numbers rest on, beside the points: the profile's notes (priors in
    use, engines without runs), the parameters behind these chips that are priors (assumed),
    and the calibrated band of the step (None under the book's bound)."""
    names = sorted(set(chip_names))
    return {
        "notes": profile.notes(False, set(names)),
        "assumed": profile.assumed(names),
        "uncertainty": profile.uncertainty(),
    }


def cheapest_within(points: list[FrontierPoint], slo_ms: float, context: int | None = None) -> FrontierPoint | None:
    """The cheapest point ($ per million output tokens) whose decode step is within slo_ms, among
    the points of `context` (default: all of them); the first of equals (the fastest, on a
    frontier); None when no point meets the target."""
    ok = [p for p in points if (context is None or p.context == context) and p.step_ms <= slo_ms]
    return min(ok, key=lambda p: p.usd_per_million_tokens) if ok else None


@dataclass
class BatchPoint:
    """The chapter's view of one configuration at one batch."""

    context: int
    tp: int
    batch: int
    step_ms: float
    params_ms: float
    kv_ms: float
    flops_ms: float
    tokens_per_ms_per_chip: float
    compute_bound: bool  # T_flops >= T_params: the MLP is compute-bound
    comms_bound: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def by_batch(
    model: Model,
    workload: Workload,
    *,
    profile: Profile = DEFAULT_PROFILE,
    chip: Chip,
    topology: str,
    tp: int | None,
    weights: str,
    kv: str,
    max_batch: int | None = None,
) -> list[BatchPoint]:
    """Step time (and its parts) and throughput per chip for batch 1 .. the largest that fits,
    at the workload's context (decode only)."""
    w = Workload(context=workload.context, decode_len=workload.decode_len, serving="decode-only")
    context = w.context
    table = single_candidate(model, chip, topology, tp, weights, kv, w, profile)
    c = table.cost
    fit = int(hbm.batch_caps(table, w)[0])
    top = fit if max_batch is None else min(fit, max_batch)
    if top < 1:
        return []
    if top > MAX_BATCH_POINTS:
        raise InputError(
            f"the by-batch view would list {top:,} batches (every batch up to the largest that fits at a "
            f"{context:,}-token context), over {MAX_BATCH_POINTS:,}: give a longer --context"
        )
    b = np.arange(1, top + 1)
    rows = np.zeros(len(b), dtype=np.int64)
    step = c.step_s(b, rows)
    b_eff = c.effective_batch(b, rows)  # a pipeline below pp sequences costs what pp cost
    flops = c.flops_s_per_seq[0] * b_eff
    weights_s = c.params_s[0] + c.experts_read_s(b, rows)  # a mixture of experts reads the ones touched
    bound = comms.comms_bound(table, rows, b)
    return [
        BatchPoint(
            context=context,
            tp=int(table.tp[0]),
            batch=int(bi),
            step_ms=float(s * 1e3),
            params_ms=float(w * 1e3),
            kv_ms=float(c.kv_s_per_seq[0] * be * 1e3),
            flops_ms=float(f * 1e3),
            tokens_per_ms_per_chip=float(bi / (s * 1e3 * table.tp[0])),
            compute_bound=bool(f >= w + c.slopes()[1][0] * be),
            comms_bound=bool(cb),
        )
        for bi, be, s, f, w, cb in zip(
            b.tolist(), b_eff.tolist(), step.tolist(), flops.tolist(), weights_s.tolist(), bound.tolist()
        )
    ]
