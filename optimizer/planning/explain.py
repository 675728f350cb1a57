"""A plan in words: what binds (quotas, budgets, commitments), which models and periods fall
short, which models no pool can serve at all, and period ranges as text."""

from __future__ import annotations

from dataclasses import dataclass, field

from optimizer import scaling
from optimizer.planning.check import Solution, Tally, tally
from optimizer.planning.offers import PlanOffers, cheapest_deployment
from optimizer.planning.spec import ResolvedPlan


def periods_text(rp: ResolvedPlan, periods: list[int]) -> str:
    """0-based period indices as '{name} 3' or '{name}s 7-12' or '{name}s 1-2, 5'."""
    name = rp.spec.period_name
    ranges: list[list[int]] = []
    for t in sorted(periods):
        if ranges and t == ranges[-1][1] + 1:
            ranges[-1][1] = t
        else:
            ranges.append([t, t])
    parts = [f"{a + 1}" if a == b else f"{a + 1}-{b + 1}" for a, b in ranges]
    plural = len(periods) > 1
    return f"{name}{'s' if plural else ''} {', '.join(parts)}"


def unservable(rp: ResolvedPlan, po: PlanOffers) -> str | None:
    """A model with demand that no pool can serve at all, and why (None: every model can)."""
    from optimizer.configuration import infeasible_reason
    from optimizer.solve import family_caps

    for mi, offers in enumerate(po.offers):
        if not any(rp.demand[mi]) or any(o.role == "decode" for o in offers):
            continue
        pm = rp.spec.models[mi]
        wl = rp.spec.workload(pm)
        table = rp.spec.candidate_table(pm, po.models[mi], rp.chips)
        if not len(table):
            why = "none of the pools' chips supports its weight and KV dtypes"
        else:
            why = infeasible_reason(table, family_caps(table, wl), wl)
        served = [t for t, d in enumerate(rp.demand[mi]) if d > 0]
        return f"{pm.label} cannot be served on any pool ({periods_text(rp, served)} have demand): {why}"
    return None


def shortfalls(rp: ResolvedPlan, po: PlanOffers, sol: Solution) -> list[str]:
    """Per model, the periods a solution serves less than required, grouped by period runs."""
    tl = tally(rp, po, sol)
    out = []
    for mi, row in enumerate(rp.required_qps):
        short = [t for t, q in enumerate(row) if tl.capacity_qps[mi][t] < q * (1 - 1e-9)]
        if short:
            worst = min(short, key=lambda t: tl.capacity_qps[mi][t] / row[t])
            out.append(
                f"{rp.spec.models[mi].label} in {periods_text(rp, short)} (at worst "
                f"{tl.capacity_qps[mi][worst]:.4g} of {row[worst]:.4g} queries/s, {rp.spec.period_name} "
                f"{worst + 1})"
            )
    return out


def binding(rp: ResolvedPlan, po: PlanOffers, sol: Solution, tl: Tally) -> list[str]:
    """What shapes the plan, in words: binding quotas (and what they push models to),
    binding budgets, commitments and their break-even."""
    out = [_quota_text(rp, p, models) for p, models in sorted(_pushed(rp, po, sol, tl).items())]
    out += _budget_text(rp, po, tl)
    out += _commitment_texts(rp, sol)
    if not out:
        out.append("no quota, budget or commitment binds: each model runs on its cheapest slices")
    return out


@dataclass
class _Push:
    """How a binding quota pushes one model: the periods, its cheapest deployments' cost
    (on-demand prices, no quotas) and the plan's, the pools it moves to, and whether it is
    fully served in all of those periods."""

    periods: set[int] = field(default_factory=set)
    ideal: int = 0
    actual: int = 0
    moved: set[str] = field(default_factory=set)
    served_all: bool = True


def _pushed(rp: ResolvedPlan, po: PlanOffers, sol: Solution, tl: Tally) -> dict[int, dict[int, _Push]]:
    """A quota binds where a model's cheapest deployment (on-demand prices, no quotas) wants
    more of a pool than the plan gives it and the pool has no room left for the difference;
    the model then pays more per query (same prices) on the pools it moves to.
    Returns pool -> model -> how it is pushed."""
    names = [pool.label for pool in rp.spec.pools]
    pushed: dict[int, dict[int, _Push]] = {}
    weight_per_chip = [scaling.usd_int(c.usd_per_chip_hour) for c in rp.chips]
    for mi, offers in enumerate(po.offers):
        weight = {k: o.chips * weight_per_chip[o.pool] for k, o in enumerate(offers)}
        for t in range(rp.periods):
            q = scaling.demand_int(rp.required_qps[mi][t])
            if q == 0 or not offers:
                continue
            ideal_cost, ideal = cheapest_deployment(offers, q, range(len(offers)), weight, rp.prefill_servers[mi])
            need = [0] * len(names)
            for k, n in ideal.items():
                need[offers[k].pool] += n * offers[k].chips
            given = [0] * len(names)
            for (m2, k, t2), n in sol.slices.items():
                if m2 == mi and t2 == t:
                    given[offers[k].pool] += n * offers[k].chips
            served_all = tl.capacity_qps[mi][t] >= rp.required_qps[mi][t] * (1 - 1e-9)
            for p in range(len(names)):
                free = rp.quota[p][t] - max(tl.used[p][t], tl.committed[p][t])
                if need[p] > given[p] and free < need[p] - given[p]:
                    entry = pushed.setdefault(p, {}).setdefault(mi, _Push())
                    entry.periods.add(t)
                    entry.ideal += ideal_cost
                    entry.actual += sum(g * w for g, w in zip(given, weight_per_chip))
                    entry.moved |= {names[x] for x in range(len(names)) if given[x] > need[x]}
                    entry.served_all = entry.served_all and served_all
    return pushed


def _quota_text(rp: ResolvedPlan, p: int, models: dict[int, _Push]) -> str:
    name = rp.spec.pools[p].label
    full = sorted(set().union(*(e.periods for e in models.values())))
    limits = sorted({rp.quota[p][t] for t in full})
    quota_text = f"{limits[0]} chips" if len(limits) == 1 else f"{limits[0]}-{limits[-1]} chips"
    parts = [
        f"the {name} quota of {quota_text} binds in {periods_text(rp, full)} (too few chips left for "
        "the cheapest deployments)"
    ]
    for mi, e in sorted(models.items()):
        label = rp.spec.models[mi].label
        if not e.served_all:  # a cost per query means little for load that is not served
            parts.append(f"{label} is not fully served there")
            continue
        names_moved = sorted(e.moved)
        moved_text = ", ".join(names_moved[:-1]) + " and " + names_moved[-1] if len(e.moved) > 1 else "".join(e.moved)
        where = f" moves to {moved_text} and" if e.moved else ""
        parts.append(
            f"{label}{where} pays {100 * (e.actual / e.ideal - 1):+.0f}% per query "
            "over its cheapest deployment (on-demand prices)"
        )
    return "; ".join(parts)


def _budget_text(rp: ResolvedPlan, po: PlanOffers, tl: Tally) -> list[str]:
    """The budget binds in a period with less than one more (smallest) slice's cost left."""
    smallest: dict[int, int] = {}
    for offers in po.offers:
        for o in offers:
            smallest[o.pool] = min(smallest.get(o.pool, o.chips), o.chips)
    if rp.budget is None or not smallest:
        return []
    step = min(rp.chips[p].usd_per_chip_hour * rp.spec.period_hours * smallest[p] for p in smallest)
    spent = tl.period_cost_usd
    tight = [t for t in range(rp.periods) if rp.budget[t] - spent[t] < step]
    if not tight:
        return []
    return [
        f"the budget binds in {periods_text(rp, tight)}: less than one more slice's cost is left "
        f"(spent ${max(spent[t] for t in tight):,.0f} of ${max(rp.budget[t] for t in tight):,.0f} "
        f"at most)"
    ]


def _commitment_texts(rp: ResolvedPlan, sol: Solution) -> list[str]:
    """Per commitment tier bought: its break-even utilization and what the plan commits."""
    period = rp.spec.period_name
    bought: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for (p, c, s), chips in sorted(sol.commit.items()):
        bought.setdefault((p, c), []).append((s, chips))
    out = []
    for (p, c), buys in bought.items():
        tier = rp.spec.pools[p].commitments[c]
        what = ", ".join(f"{chips} chips from {period} {s + 1}" for s, chips in buys)
        # a chip committed from period s is paid for `charged` periods and held for `covered` of the
        # plan's: it beats renting if busy in more than (1 - d) * charged of those
        s0 = buys[0][0]
        covered = min(tier.term_periods, rp.periods - s0)
        share = (1 - tier.discount) * rp.charged_periods(s0, tier.term_periods) / covered
        out.append(
            f"{rp.spec.pools[p].label} {tier.name} commitments ({tier.discount:.0%} off, {tier.term_periods} "
            f"{period}s) pay off for chips busy in more than {share:.0%} of the "
            f"{covered} {period}s they are held in the plan: the plan commits {what}"
        )
    return out
