"""The text of plan: a fleet plan in words and tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optimizer.render.text import table

if TYPE_CHECKING:
    from optimizer import FleetPlan


def plan_entry(e: Any) -> str:
    """One deployment entry: slices x [prefill] pool shape, tp, weights/kv, batch."""
    role = "" if e.role == "decode" else "prefill "
    extra = f" B{e.batch}" if e.batch is not None else ""
    return f"{e.slices}x {role}{e.pool} {e.topology} tp{e.tp} {e.weights}/{e.kv}{extra}"


def _plan_head(r: FleetPlan, plan_file: str) -> list[str]:
    name = r.period_name
    periods = f"{r.periods} {name}{'s' if r.periods != 1 else ''}"
    gap = f", gap {100 * r.gap:.2f}%" if r.gap is not None else ""
    objective = ", most demand served" if r.objective == "max-served" else ""
    proof = " (cover bounds)" if r.solve.proven_by == "cover bounds" else ""
    lines = [
        f"plan {plan_file}: {periods}, {r.profile} profile, "
        f"status {r.status}{proof}{gap}{objective}, solved in {r.solve.seconds:.2f} s ({r.solve.offers} offers after "
        f"pruning {r.solve.offers_before_pruning})"
    ]
    if r.reason:
        lines.append(f"reason: {r.reason}")
    if r.total_cost_usd is not None:
        served = (
            f"; serves {r.served_qps:,.1f} of {r.required_qps:,.1f} required queries/s summed over {name}s"
            if r.served_qps is not None
            else ""
        )
        lines.append(
            f"total ${r.total_cost_usd:,.0f} over {periods} "
            f"(commitments {r.commitment_accounting}; headroom {100 * r.headroom:.0f}%){served}\n"
        )
    return lines


def _plan_costs(r: FleetPlan) -> str:
    budgets = any(c.budget_usd is not None for c in r.costs)
    return table(
        [r.period_name, "on demand $", "committed $", "total $"] + (["budget $"] if budgets else []),
        [
            [str(c.period), f"{c.on_demand_usd:,.0f}", f"{c.committed_usd:,.0f}", f"{c.total_usd:,.0f}"]
            + ([f"{c.budget_usd:,.0f}"] if budgets else [])
            for c in r.costs
        ],
    )


def _plan_bill(r: FleetPlan) -> str:
    return table(
        [r.period_name, "pool", "quota", "used", "committed", "on demand", "$", "slices"],
        [
            [
                str(b.period),
                b.pool,
                str(b.quota),
                str(b.used),
                " ".join(f"{k}:{v}" for k, v in b.committed.items()) or "0",
                str(b.on_demand),
                f"{b.cost_usd:,.0f}",
                " ".join(f"{k}:{v}" for k, v in b.slices.items()) or "-",
            ]
            for b in r.bill
        ],
    )


def _plan_commitments(r: FleetPlan) -> str:
    name = r.period_name
    return table(
        ["pool", "tier", f"from {name}", "term", "chips", "off", "$ per " + name, "$ counted"],
        [
            [
                c.pool,
                c.tier,
                str(c.start_period),
                str(c.term_periods),
                str(c.chips),
                f"{c.discount:.0%}",
                f"{c.usd_per_period:,.0f}",
                f"{c.total_usd:,.0f}",
            ]
            for c in r.commitments
        ],
    )


def _plan_deployments(r: FleetPlan) -> str:
    return table(
        ["model", r.period_name, "forecast", "required", "capacity", "util", "headroom", "chips", "slices"],
        [
            [
                m.model,
                str(m.period),
                f"{m.demand_qps:,.2f}",
                f"{m.required_qps:,.2f}",
                f"{m.capacity_qps:,.2f}",
                f"{100 * m.utilization:.0f}%",
                f"{m.headroom_pct:+.0f}%" if m.headroom_pct is not None else "-",
                str(m.chips),
                " + ".join(plan_entry(e) for e in m.entries) or "-",
            ]
            for m in r.models
        ],
    )


def fleet_plan(r: FleetPlan, plan_file: str) -> str:
    """plan's report: the header and total, cost per period, the bill of materials, the
    commitments, the deployments per model and period, and what binds."""
    lines = _plan_head(r, plan_file)
    if r.total_cost_usd is None:
        return "\n".join(lines)
    lines += [_plan_costs(r), "\nBill of materials (chips per pool; slices by shape)", _plan_bill(r)]
    if r.commitments:
        lines += ["\nCommitments", _plan_commitments(r)]
    lines += [
        "\nDeployments (decode replicas + prefill servers; slices x pool shape, tp, weights/kv)",
        _plan_deployments(r),
        "\nWhat binds",
        *(f"- {line}" for line in r.binding),
        *(f"- short: {line}" for line in r.shortfalls),
        *(f"note: {line}" for line in r.notes),
        *_band(r),
    ]
    return "\n".join(lines)


def _band(r: FleetPlan) -> list[str]:
    """The calibrated band, and what it moves: the slices a load needs, so the cost."""
    if r.uncertainty is None:
        return []
    return [
        f"band: each offer's step ±{r.uncertainty['step_pct']:.0f}%, TTFT ±{r.uncertainty['ttft_pct']:.0f}% "
        "(leave-one-model-out error of the calibrated fit); the slices needed, and so the cost, move with it"
    ]
