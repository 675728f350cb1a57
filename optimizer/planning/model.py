"""The CP-SAT model of a procurement plan: variables, constraints and objective terms.

Decisions (all integers), for every model m, pool p, period t:
  slices[m,o,t]    slices of offer o (a decode or prefill configuration of m on pool p,
                   optimizer.planning.offers) held in period t
  commit[p,c,s]    chips of pool p committed under tier c from period s (held and paid in
                   every period of the term)
  on_demand[p,t]   chips of pool p rented on demand in period t
Constraint families (constraints/): demand (every model's forecast x (1 + headroom) routed
over dtype pairs, decode and prefill capacity each covering it, micro-QPS), commitments
(chips used <= committed + on demand), quota (chips used and chips committed <= the
pool's availability), budget (each period's bill), and valid cover cuts. Objective terms:
the horizon's cost in micro-dollars (total_cost) and the micro-QPS served (served, with
maximize_served); optimizer.planning.solve chooses between them.

The integer model is exact for the offers it is given: rates are rounded down and demand
up (an integer plan serves the forecast in floating point too), prices are rounded to
micro-dollars per chip-period. Every reported number is recomputed in floating point from
the chosen integers (optimizer.planning.check).
"""

from __future__ import annotations

import time

from ortools.sat.python import cp_model

from constraints import budget, commitments, demand, quota
from optimizer import scaling
from optimizer.planning.offers import (
    PlanOffers,
    SliceOffer,
    cheapest_deployment,
    cheapest_split,
    cover_lower_bound,
)
from optimizer.planning.spec import ResolvedPlan


def starts_first_only(rp: ResolvedPlan, p: int) -> bool:
    """Whether pool p's commitments need only start in the first period: under full-term
    accounting, with every term reaching past the horizon, a constant quota and no budget, a
    later start pays the same for a subset of the periods, and moving every commitment to the
    first period keeps the chips held at their final level, within the (constant) quota.
    Exact. (A budget can make an early start unaffordable, so then every start is kept.)"""
    tiers = rp.spec.pools[p].commitments
    return (
        rp.spec.commitment_accounting == "full-term"
        and all(t.term_periods >= rp.periods for t in tiers)
        and len(set(rp.quota[p])) == 1
        and rp.budget is None
    )


class FleetModel:
    """The CP-SAT model of a plan; one add_* method per constraint family."""

    def __init__(
        self,
        rp: ResolvedPlan,
        po: PlanOffers,
        maximize_served: bool,
        split_until: float | None = None,
    ) -> None:
        self.rp, self.po = rp, po
        self.maximize_served = maximize_served
        self.split_until = split_until
        # per (model, period): the cheapest deployment the cover cuts found (slices per offer)
        self.covers: dict[tuple[int, int], dict[int, int]] = {}
        # per (model, period): the cover cut's bound (micro-dollars at cut_unit prices)
        self.cut_bounds: dict[tuple[int, int], int] = {}
        self._deployments: dict[tuple, tuple[int, dict[int, int]]] = {}
        self.model = cp_model.CpModel()
        self.required = rp.required_qps
        hours = rp.spec.period_hours
        self.on_demand_unit = [scaling.usd_int(c.usd_per_chip_hour * hours) for c in rp.chips]
        self.tiers = [pool.commitments for pool in rp.spec.pools]
        self.commit_unit = [
            [scaling.usd_int(c.usd_per_chip_hour * (1 - tier.discount) * hours) for tier in tiers]
            for c, tiers in zip(rp.chips, self.tiers)
        ]
        # a lower bound on what a chip costs per period in each pool: committed or on demand
        self.lowest_unit = [
            min(units + ([u] if pool.on_demand else []))
            for u, units, pool in zip(self.on_demand_unit, self.commit_unit, rp.spec.pools)
        ]
        self.cut_unit = [self._cut_unit(p) for p in range(len(rp.chips))]
        # slices[m][k][t]: None where the model has nothing to serve in period t
        self.slices = [
            [self._slice_vars(mi, k, o) for k, o in enumerate(offers)] for mi, offers in enumerate(po.offers)
        ]
        self.used = self._used()
        self.commit = [self._commit_vars(p) for p in range(len(rp.chips))]
        self.committed = [[self._committed(p, t) for t in range(rp.periods)] for p in range(len(rp.chips))]
        self.on_demand = [
            [
                self.model.new_int_var(0, rp.quota[p][t] if pool.on_demand else 0, f"on_demand[{p},{t}]")
                for t in range(rp.periods)
            ]
            for p, pool in enumerate(rp.spec.pools)
        ]
        self.served: list[list[cp_model.IntVar]] = []
        self.routed: dict[tuple[int, int], dict[str, cp_model.IntVar]] = {}
        self.period_cost = [self._period_cost(t) for t in range(rp.periods)]
        self.total_cost = self._total_cost()
        self.add_demand()
        self.add_commitments()
        self.add_quota()
        self.add_budget()
        self.add_cover_cuts()

    def _cut_unit(self, p: int) -> int:
        """A lower bound on what one chip of pool p held for one period of the plan costs:
        on demand, its hourly price; under a commitment of tier c from period s, what the
        objective charges for it (commit_unit x charged periods) spread over the periods of
        the horizon it covers, rounded down. Every plan pays at least cut_unit[p] x used[p][t]
        summed over pools and periods, so cover cuts priced this way bound the objective."""
        rp, T = self.rp, self.rp.periods
        units = [self.on_demand_unit[p]] if rp.spec.pools[p].on_demand else []
        for c, tier in enumerate(self.tiers[p]):
            for s in range(T):
                covered = min(tier.term_periods, T - s)
                units.append(self.commit_unit[p][c] * rp.charged_periods(s, tier.term_periods) // covered)
        return min(units)

    # Variables and the expressions over them.

    def _slice_vars(self, mi: int, k: int, o: SliceOffer) -> list[cp_model.IntVar | None]:
        """Slices of offer k of model mi per period: at most what covers the load alone and
        what the quota holds; None where there is nothing to serve or no room."""
        row: list[cp_model.IntVar | None] = []
        for t in range(self.rp.periods):
            q = scaling.demand_int(self.required[mi][t])
            most = min(-(-q // o.rate_int) if o.rate_int else 0, self.rp.quota[o.pool][t] // o.chips)
            row.append(self.model.new_int_var(0, most, f"slices[{mi},{k},{t}]") if q > 0 and most > 0 else None)
        return row

    def _used(self) -> list[list[cp_model.LinearExpr]]:
        """Chips in slices, per pool and period."""
        T = self.rp.periods
        terms: list[list[tuple[list[cp_model.IntVar], list[int]]]] = [
            [([], []) for _ in range(T)] for _ in self.rp.chips
        ]
        for mi, offers in enumerate(self.po.offers):
            for k, o in enumerate(offers):
                for t, n in enumerate(self.slices[mi][k]):
                    if n is not None:
                        terms[o.pool][t][0].append(n)
                        terms[o.pool][t][1].append(o.chips)
        return [[cp_model.LinearExpr.weighted_sum(v, c) for v, c in row] for row in terms]

    def _commit_vars(self, p: int) -> list[list[cp_model.IntVar]]:
        """commit[p][c][s]: chips bought in period s; bounded by the quota of the periods it covers."""
        rp = self.rp
        first_only = starts_first_only(rp, p)
        return [
            [
                self.model.new_int_var(
                    0,
                    min(rp.quota[p][s : s + tier.term_periods]) if s == 0 or not first_only else 0,
                    f"commit[{p},{c},{s}]",
                )
                for s in range(rp.periods)
            ]
            for c, tier in enumerate(self.tiers[p])
        ]

    def _covering(self, p: int, t: int) -> list[tuple[int, int]]:
        """(tier, start) of every commitment of pool p whose term covers period t."""
        return [
            (c, s)
            for c, tier in enumerate(self.tiers[p])
            for s in range(self.rp.periods)
            if commitments.covers(s, tier.term_periods, t)
        ]

    def _committed(self, p: int, t: int) -> cp_model.LinearExpr:
        return cp_model.LinearExpr.sum([self.commit[p][c][s] for c, s in self._covering(p, t)])

    def _period_cost(self, t: int) -> cp_model.LinearExpr:
        """Period t's bill in micro-dollars: its rentals and the commitments it pays."""
        variables = [self.on_demand[p][t] for p in range(len(self.rp.chips))]
        coefs = list(self.on_demand_unit)
        for p in range(len(self.rp.chips)):
            for c, s in self._covering(p, t):
                variables.append(self.commit[p][c][s])
                coefs.append(self.commit_unit[p][c])
        return cp_model.LinearExpr.weighted_sum(variables, coefs)

    def _total_cost(self) -> cp_model.LinearExpr:
        """The horizon's cost in micro-dollars (commitments as the accounting charges them)."""
        T = self.rp.periods
        variables = [v for row in self.on_demand for v in row]
        coefs = [self.on_demand_unit[p] for p in range(len(self.rp.chips)) for _ in range(T)]
        for p, tiers in enumerate(self.tiers):
            for c, tier in enumerate(tiers):
                for s in range(T):
                    variables.append(self.commit[p][c][s])
                    coefs.append(self.commit_unit[p][c] * self.rp.charged_periods(s, tier.term_periods))
        return cp_model.LinearExpr.weighted_sum(variables, coefs)

    def cheapest_deployment(self, mi: int, q: int, live: list[int], unit: list[int]) -> tuple[int, dict[int, int]]:
        """offers.cheapest_deployment of model mi's load q over the offers `live`, chips priced
        at unit[pool] per period; remembered (the cover cuts and the greedy starts ask for the
        same loads at the same prices). The slices per offer returned are shared: read only."""
        key = (mi, q, tuple(live), tuple(unit))
        if key not in self._deployments:
            offers = self.po.offers[mi]
            weight = {k: offers[k].chips * unit[offers[k].pool] for k in live}
            self._deployments[key] = cheapest_deployment(offers, q, live, weight, self.rp.prefill_servers[mi])
        return self._deployments[key]

    def live(self, mi: int, t: int) -> list[int]:
        """Offers of model mi that have a variable in period t."""
        return [k for k, row in enumerate(self.slices[mi]) if row[t] is not None]

    # Constraint families.

    def add_demand(self) -> None:
        for mi, offers in enumerate(self.po.offers):
            served_row = []
            for t in range(self.rp.periods):
                q = scaling.demand_int(self.required[mi][t])
                served: cp_model.IntVar | None = None
                if self.maximize_served:
                    served = self.model.new_int_var(0, q, f"served[{mi},{t}]")
                    served_row.append(served)
                self._add_demand(mi, t, offers, q, served)
            self.served.append(served_row)

    def _add_demand(self, mi: int, t: int, offers: list[SliceOffer], q: int, served: cp_model.IntVar | None) -> None:
        d_off: list[SliceOffer] = []
        p_off: list[SliceOffer] = []
        d_var: list[cp_model.IntVar] = []
        p_var: list[cp_model.IntVar] = []
        for k, o in enumerate(offers):
            n = self.slices[mi][k][t]
            if n is not None:
                (d_off if o.role == "decode" else p_off).append(o)
                (d_var if o.role == "decode" else p_var).append(n)
        if q > 0 and not d_off and not self.maximize_served:
            self.model.add_bool_or([])  # no slice of this model fits in any pool: infeasible
        elif q > 0:
            self.routed[(mi, t)] = demand.add(
                self.model,
                self.required[mi][t],
                d_off,
                d_var,
                p_off,
                p_var,
                self.rp.prefill_servers[mi],
                served=served,
                name=f"[{mi},{t}]",
            )

    def add_commitments(self) -> None:
        commitments.add(self.model, self.used, self.committed, self.on_demand)

    def add_quota(self) -> None:
        quota.add(self.model, self.used, self.committed, self.rp.quota)

    def add_budget(self) -> None:
        if self.rp.budget is not None:
            budget.add(self.model, self.period_cost, self.rp.budget)

    def add_cover_cuts(self) -> None:
        """Per model and period, a valid inequality that tightens the LP relaxation where slices
        are lumpy: its slices, priced at each pool's cut_unit (the least a chip-period costs
        there, committed or on demand), cost at least what any integer deployment of its load
        costs at those prices, quotas and other models ignored. The bound is the larger of the
        cheapest integer decode cover plus the cheapest integer prefill cover, each over every
        dtype pair (optimizer.planning.offers.cover_lower_bound), and, where one dtype pair's
        cheapest deployment costs more than that (the load may be split over pairs), CP-SAT's
        proven bound on the cheapest split deployment (optimizer.planning.offers.cheapest_split;
        its best deployment is kept in self.covers for the start). Every integer plan
        satisfies the cut (its slices of the model and period are such a deployment); the LP
        relaxation alone would buy a fraction of a slice. The cheapest deployments and split
        solves stop at split_until (time.perf_counter()), leaving the cover bound (valid,
        weaker) for the models and periods after it, and no covers."""
        for mi, offers in enumerate(self.po.offers):
            with_prefill = self.rp.prefill_servers[mi]
            for t in range(self.rp.periods):
                q = scaling.demand_int(self.required[mi][t])
                live = self.live(mi, t)
                if q == 0 or not live or self.maximize_served:
                    continue
                weight = {k: offers[k].chips * self.cut_unit[offers[k].pool] for k in live}
                bound = cover_lower_bound(offers, q, live, weight, with_prefill)
                left = self.split_until - time.perf_counter() if self.split_until is not None else 0.0
                if left <= 0:
                    self.covers.clear()  # incomplete: no start from them
                    self.split_until = None
                else:
                    one_pair, counts = self.cheapest_deployment(mi, q, live, self.cut_unit)
                    self.covers[(mi, t)] = counts
                if left > 0 and bound < one_pair:
                    qps = self.required[mi][t]
                    split, found = cheapest_split(offers, qps, live, weight, with_prefill, counts, left)
                    bound = max(bound, split)
                    if found:
                        self.covers[(mi, t)] = found
                if bound:
                    self.cut_bounds[(mi, t)] = bound
                    row = [self.slices[mi][k][t] for k in live]
                    self.model.add(cp_model.LinearExpr.weighted_sum(row, [weight[k] for k in live]) >= bound)
