"""Demand: the deployment serves Q queries per second, decode and prefill alike.

Decode replicas and prefill servers come in groups by dtype pair (a prefill server serves
decode replicas of its own weight and KV dtypes). With x_g the load routed to group g:

    sum_g x_g = Q,   sum_{i in g} cap_i * slices_i >= x_g,   sum_{j in g} pcap_j * slices_j >= x_g

(without prefill servers only the first two). Scaled to micro-queries per second:
capacities rounded down, the demand up, so an integer plan always serves Q in the float
model; the solver-free check below recomputes that in floating point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ortools.sat.python import cp_model

from optimizer.scaling import demand_int, rate_int

NAME = "demand"


class Rated(Protocol):
    """What the rows need of an offer: its dtype pair and its integer rate per slice."""

    @property
    def group(self) -> str: ...

    @property
    def rate_int(self) -> int: ...


@dataclass(frozen=True)
class Offer:
    """One configuration rentable by the slice: what a slice serves and what it costs."""

    row: int  # candidate-table row
    group: str  # "weights/kv"
    qps_per_slice: float  # decode: queries/s; prefill: prompts/s
    usd_per_hour: float  # one slice

    @property
    def rate_int(self) -> int:
        return rate_int(self.qps_per_slice)


def add(
    model: cp_model.CpModel,
    qps: float,
    decode: Sequence[Rated],
    decode_slices: Sequence[cp_model.IntVar],
    prefill: Sequence[Rated],
    prefill_slices: Sequence[cp_model.IntVar],
    with_prefill: bool,
    served: cp_model.LinearExprT | None = None,
    name: str = "",
) -> dict[str, cp_model.IntVar]:
    """Post the routing and capacity rows. `served` (default: the demand, micro-QPS) is the
    load to route, for plans that may serve less than the forecast. Returns the routing
    variables by dtype pair (none when one pair serves the whole demand)."""
    q = demand_int(qps)
    groups = sorted({o.group for o in decode})
    if len(groups) == 1 and served is None:  # one pair: no routing variable needed
        (g,) = groups
        model.add(sum(o.rate_int * n for o, n in zip(decode, decode_slices)) >= q)
        if with_prefill:
            model.add(sum(o.rate_int * n for o, n in zip(prefill, prefill_slices) if o.group == g) >= q)
        return {}
    routed = {g: model.new_int_var(0, q, f"routed{name}[{g}]") for g in groups}
    model.add(sum(routed.values()) == (q if served is None else served))
    for g in groups:
        model.add(sum(o.rate_int * n for o, n in zip(decode, decode_slices) if o.group == g) >= routed[g])
        if with_prefill:
            model.add(sum(o.rate_int * n for o, n in zip(prefill, prefill_slices) if o.group == g) >= routed[g])
    return routed


def servable_qps(
    decode: Sequence[tuple[Offer, int]], prefill: Sequence[tuple[Offer, int]], with_prefill: bool
) -> float:
    """Solver-free, float: the queries per second a plan serves (per group, the smaller of its
    decode and prefill capacity)."""
    return capacity_qps(
        [(o.group, o.qps_per_slice * n) for o, n in decode],
        [(o.group, o.qps_per_slice * n) for o, n in prefill],
        with_prefill,
    )


def capacity_qps(
    decode: Sequence[tuple[str, float]], prefill: Sequence[tuple[str, float]], with_prefill: bool
) -> float:
    """servable_qps from (dtype pair, queries or prompts per second) of each deployed offer."""
    total = 0.0
    for g in {group for group, _ in decode}:
        d = sum(qps for group, qps in decode if group == g)
        p = sum(qps for group, qps in prefill if group == g) if with_prefill else math.inf
        total += min(d, p)
    return total


def check(
    qps: float, decode: Sequence[tuple[Offer, int]], prefill: Sequence[tuple[Offer, int]], with_prefill: bool
) -> list[str]:
    served = servable_qps(decode, prefill, with_prefill)
    return [] if served >= qps else [f"serves {served:.6g} queries/s, below the demand of {qps:g}"]
