"""Demand mode: the cheapest whole deployment (integer slices of decode and prefill
configurations, mixed freely) that serves a demand in queries per second.

Each decode candidate runs at its best feasible batch (the largest, which maximizes its
throughput per dollar); each prefill candidate handles 1/T_prefill prompts per second per
server. Offers dominated within their dtype group (k slices of another offer serve at least as
much for at most the cost) are dropped first: the swap never makes a plan worse.
CP-SAT then chooses integer slice counts minimizing cost per hour in micro-dollars (prices
are taken to 6 decimals), with the routing and capacity rows of constraints.demand.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from constraints import demand
from constraints.demand import Offer, servable_qps
from optimizer.configuration import infeasible_reason
from optimizer.metrics import measure
from optimizer.result import Deployment, DeploymentEntry
from optimizer.scaling import demand_int, objective_bound_int, usd_int
from optimizer.solve import ServingModel
from optimizer.solve_status import SOLVED, status_name
from optimizer.workload import Workload

HOURS_PER_MONTH = 730.0

#: Largest demand represented: micro-QPS counts and micro-dollar costs stay far inside int64.
MAX_QPS = 1e6


def undominated(offers: Sequence[Offer]) -> list[Offer]:
    """Per dtype group, drop every offer o that k copies of another offer p replace at no
    more cost (k = ceil(rate_o / rate_p), k * cost_p <= cost_o): swapping them, slice for
    slices, never makes a plan dearer or smaller. Of identical offers the first row stays."""
    live = sorted((o for o in offers if o.rate_int > 0), key=lambda o: o.row)
    keep = []
    for o in live:
        o_cost = usd_int(o.usd_per_hour)
        dominated = False
        for p in live:
            if p is o or p.group != o.group:
                continue
            k = -(-o.rate_int // p.rate_int)
            p_cost = k * usd_int(p.usd_per_hour)
            if p_cost < o_cost or (p_cost == o_cost and (k * p.rate_int > o.rate_int or k > 1 or p.row < o.row)):
                dominated = True
                break
        if not dominated:
            keep.append(o)
    return keep


@dataclass
class DemandPlan:
    status: str
    decode: list[tuple[Offer, int]]  # offers with a positive slice count
    prefill: list[tuple[Offer, int]]
    cost_usd_int: int | None  # the objective, exact (micro-dollars per hour)
    bound_usd_int: int | None
    seconds: float


def solve_demand(
    qps: float,
    decode: Sequence[Offer],
    prefill: Sequence[Offer],
    with_prefill: bool,
    time_limit_s: float = 5.0,
    prune: bool = True,
) -> DemandPlan:
    """Minimize cost per hour subject to serving `qps`; `prune` drops dominated offers first."""
    started = time.perf_counter()
    d_offers = undominated(decode) if prune else [o for o in decode if o.rate_int > 0]
    p_offers = (undominated(prefill) if prune else [o for o in prefill if o.rate_int > 0]) if with_prefill else []
    if with_prefill:
        served_groups = {o.group for o in p_offers}
        d_offers = [o for o in d_offers if o.group in served_groups]
        p_offers = [o for o in p_offers if o.group in {d.group for d in d_offers}]
    q = demand_int(qps)

    # A feasible plan to start from: per dtype group, the cheapest single decode offer and the
    # cheapest single prefill offer that each cover the demand alone; the best group's cost
    # bounds every slice count (no optimal plan spends more on one offer than that).
    def alone(offers: list[Offer], group: str) -> tuple[int, Offer | None]:
        options = [(-(-q // o.rate_int) * usd_int(o.usd_per_hour), o.row, o) for o in offers if o.group == group]
        return min(options, key=lambda t: t[:2])[0::2] if options else (0, None)

    start: tuple[int, Offer | None, Offer | None] | None = None
    for group in sorted({o.group for o in d_offers}):
        d_cost, d_best = alone(d_offers, group)
        p_cost, p_best = alone(p_offers, group) if with_prefill else (0, None)
        if start is None or d_cost + p_cost < start[0]:
            start = (d_cost + p_cost, d_best, p_best)
    upper = start[0] if start else 0
    model = cp_model.CpModel()

    def count_var(o: Offer, role: str) -> cp_model.IntVar:
        most = min(-(-q // o.rate_int), upper // max(usd_int(o.usd_per_hour), 1))
        return model.new_int_var(0, most, f"{role}_slices[{o.row}]")

    d_vars = [count_var(o, "decode") for o in d_offers]
    p_vars = [count_var(o, "prefill") for o in p_offers]
    if start is not None:
        for o, n in zip(d_offers + p_offers, d_vars + p_vars):
            model.add_hint(n, -(-q // o.rate_int) if o is start[1] or o is start[2] else 0)
    if not d_offers:
        model.add_bool_or([])  # nothing can serve: proven infeasible by the solver
    demand.add(model, qps, d_offers, d_vars, p_offers, p_vars, with_prefill)
    cost = sum(usd_int(o.usd_per_hour) * n for o, n in zip(d_offers, d_vars)) + sum(
        usd_int(o.usd_per_hour) * n for o, n in zip(p_offers, p_vars)
    )
    model.minimize(cost)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1  # deterministic
    solver.parameters.random_seed = 0
    # a deterministic limit, so the same input gives the same plan; wall time only as a backstop
    solver.parameters.max_deterministic_time = time_limit_s
    solver.parameters.max_time_in_seconds = 2 * time_limit_s
    solver.parameters.linearization_level = 2  # the LP relaxation's cuts close knapsack-cover gaps fast
    name = status_name(solver, solver.solve(model))
    if name not in SOLVED:
        return DemandPlan(name, [], [], None, None, time.perf_counter() - started)
    chosen_d = [(o, solver.value(n)) for o, n in zip(d_offers, d_vars) if solver.value(n) > 0]
    chosen_p = [(o, solver.value(n)) for o, n in zip(p_offers, p_vars) if solver.value(n) > 0]
    total = sum(usd_int(o.usd_per_hour) * n for o, n in chosen_d + chosen_p)
    bound = objective_bound_int(solver.best_objective_bound)
    return DemandPlan(name, chosen_d, chosen_p, total, bound, time.perf_counter() - started)


def deployment(sm: ServingModel, workload: Workload, qps: float, time_limit_s: float) -> Deployment:
    """The cheapest whole deployment serving `qps`, from the model's feasible candidates."""
    table = sm.table
    groups = table.dtype_groups
    rows = sm.feasible_rows
    batch = sm.cap[rows]
    m = measure(table, rows, batch, workload.decode_len)
    slice_usd = table.slice_chips * table.usd_per_chip_hour
    decode = [
        Offer(int(r), str(groups[r]), float(table.replicas[r] * q), float(slice_usd[r]))
        for r, q in zip(rows.tolist(), (batch / (m.step_s * workload.decode_len)).tolist())
    ]
    p_rows = sm.prefill_rows_all
    prefill_offers = [
        Offer(int(r), str(groups[r]), float(table.replicas[r] / table.cost.prefill_s[r]), float(slice_usd[r]))
        for r in p_rows.tolist()
    ]
    plan = solve_demand(qps, decode, prefill_offers, workload.prefill_servers, time_limit_s)
    cap = dict(zip(rows.tolist(), batch.tolist()))
    step = dict(zip(rows.tolist(), m.step_s.tolist()))

    def entry(role: str, offer: Offer, n: int) -> DeploymentEntry:
        r = table.row(offer.row)
        per_slice = r.pop("replicas")
        r.pop("chips")
        return DeploymentEntry(
            role=role,
            **r,
            chips=int(table.slice_chips[offer.row]),
            slices=n,
            replicas=per_slice * n if role == "decode" else 0,
            servers=per_slice * n if role == "prefill" else 0,
            batch=int(cap[offer.row]) if role == "decode" else None,
            step_ms=step[offer.row] * 1e3 if role == "decode" else None,
            prefill_ms=float(table.cost.prefill_s[offer.row] * 1e3) if role == "prefill" else None,
            qps_per_slice=offer.qps_per_slice,
            cost_per_hour=offer.usd_per_hour * n,
        )

    d_entries = [entry("decode", o, n) for o, n in plan.decode]
    p_entries = [entry("prefill", o, n) for o, n in plan.prefill]
    cost = sum(e.cost_per_hour for e in d_entries + p_entries)
    served = servable_qps(plan.decode, plan.prefill, workload.prefill_servers)
    reason = None
    if plan.cost_usd_int is None:
        reason = (
            infeasible_reason(sm.table, sm.caps, workload)
            if not len(rows)
            else f"the solver found no deployment within the time limit ({plan.status})"
        )
    gap = 0.0
    if plan.cost_usd_int and plan.bound_usd_int is not None:
        gap = max(0.0, (plan.cost_usd_int - plan.bound_usd_int) / plan.cost_usd_int)
    return Deployment(
        qps=qps,
        status=plan.status,
        reason=reason,
        decode=d_entries,
        prefill=p_entries,
        cost_per_hour=cost,
        cost_per_month=cost * HOURS_PER_MONTH,
        qps_capacity=served,
        headroom_qps=served - qps if plan.decode else 0.0,
        headroom_pct=100.0 * (served - qps) / qps if plan.decode else 0.0,
        total_chips=sum(e.chips * e.slices for e in d_entries + p_entries),
        seconds=plan.seconds,
        gap=gap,
    )
