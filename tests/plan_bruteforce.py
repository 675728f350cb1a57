"""An independent brute-force oracle for procurement plans (optimizer.planning).

It takes the unpruned offers (each configuration's rate per slice comes from the cost model,
which the decode oracle checks) and shares nothing else with the planner: per model and
period it enumerates every minimal cover of the required load (decode and, per dtype pair,
prefill; checked in floating point), keeps per pool-usage vector one cover and drops usage
vectors that use at least as many chips of every pool as another (never better: quotas,
budgets and costs only grow with chips), takes every combination over models and periods,
and for each pool enumerates every commitment level of every tier and start period.
"""

from __future__ import annotations

import itertools
import math

from constraints.demand import capacity_qps


def _counts(items: list[tuple[int, float]], q: float) -> list[dict[int, int]]:
    """Every minimal vector of counts over (offer index, rate) items whose rates cover q."""
    if q <= 0:
        return [{}]
    ranges = [range(math.ceil(q / r) + 1) for _, r in items]
    out = []
    for ns in itertools.product(*ranges):
        total = sum(n * r for n, (_, r) in zip(ns, items))
        if total < q:
            continue
        if any(n and total - r >= q for n, (_, r) in zip(ns, items)):
            continue  # not minimal: a slice can go
        out.append({k: n for n, (k, _) in zip(ns, items) if n})
    return out


def covers(offers, q: float, with_prefill: bool, n_pools: int) -> list[tuple[tuple[int, ...], dict[int, int]]]:
    """Pareto-minimal (chips per pool, counts) covers of load q by one model's offers."""
    found: dict[tuple[int, ...], dict[int, int]] = {}
    if q <= 0:
        return [((0,) * n_pools, {})]
    for g in sorted({o.group for o in offers}):
        dec = [(k, o.rate) for k, o in enumerate(offers) if o.group == g and o.role == "decode"]
        pre = [(k, o.rate) for k, o in enumerate(offers) if o.group == g and o.role == "prefill"]
        if not dec or (with_prefill and not pre):
            continue
        for d in _counts(dec, q):
            for p in _counts(pre, q) if with_prefill else [{}]:
                counts = {**d, **p}
                # recheck with the library's float rule (per pair, the smaller capacity)
                dd = [(g, offers[k].rate * n) for k, n in d.items()]
                pp = [(g, offers[k].rate * n) for k, n in p.items()]
                assert capacity_qps(dd, pp, with_prefill) >= q
                use = [0] * n_pools
                for k, n in counts.items():
                    use[offers[k].pool] += n * offers[k].chips
                found.setdefault(tuple(use), counts)
    pareto = [u for u in found if not any(v != u and all(a <= b for a, b in zip(v, u)) for v in found)]
    return [(u, found[u]) for u in sorted(pareto)]


def pool_options(
    used: list[int], quota: list[int], price_period: float, on_demand: bool, tiers, accounting: str
) -> list[tuple[float, list[float]]]:
    """Every valid commitment vector of one pool (chips per tier and start period) for a usage
    profile: (its cost over the horizon, its bill per period)."""
    T = len(used)
    slots = [(tier, s) for tier in tiers for s in range(T)]
    out = []
    levels = [range(min(quota[s : s + tier.term_periods]) + 1) for tier, s in slots]
    for chips in itertools.product(*levels):
        held = [0] * T
        bill = [0.0] * T
        cost = 0.0
        for (tier, s), c in zip(slots, chips):
            for t in range(s, min(s + tier.term_periods, T)):
                held[t] += c
                bill[t] += price_period * (1 - tier.discount) * c
            periods = tier.term_periods if accounting == "full-term" else min(tier.term_periods, T - s)
            cost += price_period * (1 - tier.discount) * c * periods
        if any(h > q for h, q in zip(held, quota)):
            continue
        rent = [max(0, u - h) for u, h in zip(used, held)]
        if not on_demand and any(rent):
            continue
        out.append((cost + price_period * sum(rent), [b + price_period * r for b, r in zip(bill, rent)]))
    return out


def plan_optimum(rp, offers_by_model) -> float | None:
    """The cheapest total cost (dollars over the horizon) of any valid plan; None: none is.
    With a budget every combination of the pools' commitment vectors is tried (each period's
    bill, commitments included, within its budget); keep such instances small."""
    T, P = rp.periods, len(rp.chips)
    hours = rp.spec.period_hours
    per_cell = []
    for mi, offers in enumerate(offers_by_model):
        with_prefill = rp.spec.models[mi].workload().prefill_servers
        for t in range(T):
            q = rp.demand[mi][t] * (1 + rp.spec.headroom)
            per_cell.append(covers(offers, q, with_prefill, P))
    best = None
    for combo in itertools.product(*per_cell):
        used = [[0] * T for _ in range(P)]
        for cell, (use, _) in enumerate(combo):
            t = cell % T
            for p in range(P):
                used[p][t] += use[p]
        if any(used[p][t] > rp.quota[p][t] for p in range(P) for t in range(T)):
            continue
        options = [
            pool_options(
                used[p],
                list(rp.quota[p]),
                rp.chips[p].usd_per_chip_hour * hours,
                pool.on_demand,
                pool.commitments,
                rp.spec.commitment_accounting,
            )
            for p, pool in enumerate(rp.spec.pools)
        ]
        if any(not o for o in options):
            continue
        if rp.budget is None:
            total = sum(min(cost for cost, _ in o) for o in options)
        else:
            total = math.inf
            for pick in itertools.product(*options):
                bills = [sum(b[t] for _, b in pick) for t in range(T)]
                if all(bill <= limit + 1e-6 for bill, limit in zip(bills, rp.budget)):
                    total = min(total, sum(cost for cost, _ in pick))
        if math.isfinite(total) and (best is None or total < best):
            best = total
    return best
