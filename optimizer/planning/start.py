"""A greedy, commitment-aware starting plan, and the complete hint it gives the solver.

Per period, each model (largest load first) takes the cheapest integer cover of its load
among the pools with chips left; per pool, the commitment from the first period that saves
the most on the chips so used. Covers are priced at on-demand prices, at each pool's
cheapest (committed) price, and again as the best plan's commitments price each pool; one
more plan takes each model's cheapest deployment per period as the cover cuts found it (load
split over dtype pairs where that is cheaper; quotas ignored). The cheapest valid plan
(optimizer.planning.check) is the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from constraints import commitments
from optimizer import scaling
from optimizer.planning.check import Solution, violations
from optimizer.planning.model import FleetModel

Commits = dict[tuple[int, int, int], int]  # chips per (pool, tier, start period)


@dataclass
class Start:
    """A complete plan to start the solver from: slices per (model, offer, period), chips in
    use per pool and period, chips committed per (pool, tier, start period), and its cost in
    micro-dollars (inf: not a valid plan)."""

    values: dict[tuple[int, int, int], int]
    used: list[list[int]]
    commits: Commits
    cost: float


def greedy_start(fm: FleetModel) -> Start:
    """The cheapest of the greedy plans (see the module's docstring)."""
    best: Start | None = None
    units = [fm.on_demand_unit, fm.lowest_unit]
    while units:
        values, used = _greedy_usage(fm, units.pop(0))
        found = _start(fm, values, used)
        if best is None or found.cost < best.cost:
            best = found
            tier = {p: c for (p, c, _) in found.commits}
            units.append(
                [fm.commit_unit[p][tier[p]] if p in tier else fm.on_demand_unit[p] for p in range(len(fm.rp.chips))]
            )
    assert best is not None
    if not fm.covers:
        return best
    found = _start(fm, *_covers_usage(fm))
    return found if found.cost < best.cost else best


def apply_hint(fm: FleetModel, start: Start) -> None:
    """Hint every variable (a complete hint) with a starting plan."""
    model = fm.model
    model.clear_hints()
    values, used = start.values, start.used
    for mi, rows in enumerate(fm.slices):
        for k, row in enumerate(rows):
            for t, var in enumerate(row):
                if var is not None:
                    model.add_hint(var, values.get((mi, k, t), 0))
    deployed: dict[tuple[int, int], dict[int, int]] = {}
    for (mi, k, t), n in values.items():
        deployed.setdefault((mi, t), {})[k] = n
    for (mi, t), routed in fm.routed.items():
        # the load to the dtype pairs the plan deploys, each up to what its slices serve (decode
        # and prefill alike), in order of the pairs' names; others get none
        left = scaling.demand_int(fm.required[mi][t])
        for g, var in sorted(routed.items()):
            serves = _serves(fm, deployed.get((mi, t), {}), mi, g)
            model.add_hint(var, min(left, serves))
            left -= min(left, serves)
    for p, tiers in enumerate(fm.commit):
        for c, starts in enumerate(tiers):
            for s, var in enumerate(starts):
                model.add_hint(var, start.commits.get((p, c, s), 0))
        for t, var in enumerate(fm.on_demand[p]):
            model.add_hint(var, max(0, used[p][t] - _held(fm, start.commits, p, t)))


def _serves(fm: FleetModel, slices: dict[int, int], mi: int, group: str) -> int:
    """What slices (per offer index) of model mi serve through dtype pair `group` (integer
    rates; with prefill servers the smaller of decode and prefill capacity); 0 if none."""
    capacity = {"decode": 0, "prefill": 0}
    for k, n in slices.items():
        o = fm.po.offers[mi][k]
        if o.group == group:
            capacity[o.role] += n * o.rate_int
    if not capacity["decode"]:
        return 0
    return min(capacity.values()) if fm.rp.prefill_servers[mi] else capacity["decode"]


def _start(fm: FleetModel, values: dict[tuple[int, int, int], int], used: list[list[int]]) -> Start:
    """A Start for these slices with, per pool, the best single commitment from the first
    period. Its cost is inf if the plan breaks a constraint."""
    commits = {}
    for p in range(len(fm.rp.chips)):
        tier, chips = _best_commitment(fm, p, used[p])
        if chips:
            commits[(p, tier, 0)] = chips
    valid = not violations(fm.rp, fm.po, Solution(values, commits))
    return Start(values, used, commits, _cost(fm, used, commits) if valid else math.inf)


def _held(fm: FleetModel, commits: Commits, p: int, t: int) -> int:
    """Chips of pool p under commitment in period t."""
    return sum(
        n for (q, c, s), n in commits.items() if q == p and commitments.covers(s, fm.tiers[q][c].term_periods, t)
    )


def _greedy_usage(fm: FleetModel, unit: list[int]) -> tuple[dict[tuple[int, int, int], int], list[list[int]]]:
    """Per period, each model's cheapest cover (chips priced by `unit` per pool) among the pools
    with room for it; the slices and the chips used per pool and period."""
    rp = fm.rp
    values: dict[tuple[int, int, int], int] = {}
    used = [[0] * rp.periods for _ in rp.chips]
    for t in range(rp.periods):
        left = [rp.quota[p][t] for p in range(len(rp.chips))]
        for mi in sorted(range(len(fm.po.offers)), key=lambda mi: -fm.required[mi][t]):
            for k, n in _fit(fm, mi, t, unit, left).items():
                o = fm.po.offers[mi][k]
                values[(mi, k, t)] = n
                left[o.pool] -= n * o.chips
                used[o.pool][t] += n * o.chips
    return values, used


def _covers_usage(fm: FleetModel) -> tuple[dict[tuple[int, int, int], int], list[list[int]]]:
    """Each model's cheapest deployment per period as the cover cuts found it (FleetModel.covers,
    quotas ignored: _start prices it at inf if it breaks one); the slices and chips used."""
    values: dict[tuple[int, int, int], int] = {}
    used = [[0] * fm.rp.periods for _ in fm.rp.chips]
    for (mi, t), counts in fm.covers.items():
        for k, n in counts.items():
            values[(mi, k, t)] = n
            used[fm.po.offers[mi][k].pool][t] += n * fm.po.offers[mi][k].chips
    return values, used


def _fit(fm: FleetModel, mi: int, t: int, unit: list[int], left: list[int]) -> dict[int, int]:
    """The cheapest cover of model mi's load in period t that fits the chips `left`: pools
    that would overflow are dropped and the cover recomputed ({} if none fits)."""
    q = scaling.demand_int(fm.required[mi][t])
    offers = fm.po.offers[mi]
    live = fm.live(mi, t)
    while q > 0 and live:
        _, counts = fm.cheapest_deployment(mi, q, live, unit)
        need = [0] * len(left)
        for k, n in counts.items():
            need[offers[k].pool] += n * offers[k].chips
        over = {p for p, n in enumerate(need) if n > left[p]}
        if counts and not over:
            return counts
        live = [k for k in live if offers[k].pool not in over] if over else []
    return {}


def _best_commitment(fm: FleetModel, p: int, used: list[int]) -> tuple[int, int]:
    """(tier, chips) bought in the first period that minimizes the pool's cost for this
    usage ((-1, 0): rent everything); a pool without on-demand commits its peak."""
    T = fm.rp.periods
    rents = fm.rp.spec.pools[p].on_demand
    best = (_cost_one(fm, p, used, {}) if rents else math.inf, -1, 0)
    for c, tier in enumerate(fm.tiers[p]):
        covered = used[: tier.term_periods]
        levels = sorted(set(covered) | {0}) if rents else [max(used, default=0)]
        for chips in levels:
            if not rents and any(u > chips for u in used[tier.term_periods : T]):
                continue
            cost = _cost_one(fm, p, used, {(p, c, 0): chips})
            if cost < best[0]:
                best = (cost, c, chips)
    return best[1], best[2]


def _cost_one(fm: FleetModel, p: int, used: list[int], commits: Commits) -> float:
    """Pool p's cost over the horizon in micro-dollars: rentals beyond the commitments, and
    the commitments as the accounting charges them."""
    rent = sum(fm.on_demand_unit[p] * max(0, u - _held(fm, commits, p, t)) for t, u in enumerate(used))
    return rent + sum(
        fm.commit_unit[q][c] * n * fm.rp.charged_periods(s, fm.tiers[q][c].term_periods)
        for (q, c, s), n in commits.items()
        if q == p
    )


def _cost(fm: FleetModel, used: list[list[int]], commits: Commits) -> float:
    return sum(_cost_one(fm, p, used[p], commits) for p in range(len(used)))
