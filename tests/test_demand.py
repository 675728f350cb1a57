"""Demand mode: the cheapest whole deployment equals brute force on small instances, and every
returned deployment serves its demand (checked without the solver)."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from click.testing import CliRunner

from cli import optimize_cmd
from constraints import demand
from constraints.demand import Offer
from optimizer import load_chips, load_model
from optimizer.candidates import build_table
from optimizer.demand import solve_demand
from optimizer.metrics import measure
from optimizer.profiles import Book
from optimizer.scaling import usd_int
from optimizer.solve import ServingModel
from optimizer.workload import Workload
from tests.helpers import solve


def brute_force_cost(qps, decode, prefill, with_prefill):
    """Every vector of slice counts up to what covers the demand alone; the cheapest that serves."""
    q = math.ceil(qps * 10**6)
    rate = lambda o: math.floor(o.qps_per_slice * 10**6)  # noqa: E731
    offers = [o for o in decode if rate(o) > 0] + ([o for o in prefill if rate(o) > 0] if with_prefill else [])
    n_decode = len([o for o in decode if rate(o) > 0])
    best = None
    ranges = [range(0, -(-q // rate(o)) + 1) for o in offers]
    for counts in itertools.product(*ranges):
        served = 0
        for g in {o.group for o in offers[:n_decode]}:
            d = sum(rate(o) * n for o, n in zip(offers[:n_decode], counts) if o.group == g)
            p = sum(rate(o) * n for o, n in zip(offers[n_decode:], counts[n_decode:]) if o.group == g)
            served += min(d, p) if with_prefill else d
        if served >= q:
            cost = sum(usd_int(o.usd_per_hour) * n for o, n in zip(offers, counts))
            best = cost if best is None else min(best, cost)
    return best


def offers_from_model(model="llama3-70b", slo_ms=50, ttft_ms=1000, chips=None):
    w = Workload(slo_ms=slo_ms, ttft_ms=ttft_ms)
    catalog = load_chips()
    t = build_table(load_model(model), {c: catalog[c] for c in (chips or catalog)}, w, Book())
    sm = ServingModel(t, w, "queries-per-dollar")
    rows = sm.feasible_rows
    batch = sm.cap[rows]
    m = measure(t, rows, batch, w.decode_len)
    groups = t.dtype_groups
    slice_usd = t.slice_chips * t.usd_per_chip_hour
    dec = [
        Offer(int(r), str(groups[r]), float(t.replicas[r] * b / (s * w.decode_len)), float(slice_usd[r]))
        for r, b, s in zip(rows.tolist(), batch.tolist(), m.step_s.tolist())
    ]
    pre = [
        Offer(int(r), str(groups[r]), float(t.replicas[r] / t.cost.prefill_s[r]), float(slice_usd[r]))
        for r in sm.prefill_rows_all.tolist()
    ]
    return dec, pre


DECODE, PREFILL = offers_from_model()


def small_instances(n=40):
    rng = random.Random(7)
    for k in range(n):
        group = rng.choice(sorted({o.group for o in PREFILL} & {o.group for o in DECODE}))
        groups = [group] + ([rng.choice(sorted({o.group for o in PREFILL}))] if rng.random() < 0.4 else [])
        dec = rng.sample([o for o in DECODE if o.group in groups], 3)
        pre = rng.sample([o for o in PREFILL if o.group in groups], 2)
        max_rate = max(o.qps_per_slice for o in dec)
        qps = round(rng.uniform(0.2, 2.5) * min(max_rate, 8 * min(o.qps_per_slice for o in pre)), 3)
        yield pytest.param(qps, dec, pre, rng.random() < 0.8, id=f"d{k}")


@pytest.mark.parametrize("qps,dec,pre,with_prefill", list(small_instances()))
def test_demand_optimum_equals_brute_force(qps, dec, pre, with_prefill):
    """On small instances (3 decode and 2 prefill offers, mixed dtype groups) the costs agree."""
    want = brute_force_cost(qps, dec, pre, with_prefill)
    plan = solve_demand(qps, dec, pre, with_prefill)
    if want is None:
        assert plan.status == "infeasible"
        return
    assert plan.status == "optimal" and plan.cost_usd_int == want
    assert demand.check(qps, plan.decode, plan.prefill, with_prefill) == []


def test_dropping_dominated_offers_keeps_the_optimum():
    """The dominance pre-pass never changes the optimal cost (all offers of one dtype pair)."""
    g = "int8/int8"
    dec = [o for o in DECODE if o.group == g][:12]
    pre = [o for o in PREFILL if o.group == g][:6]
    for qps in (0.5, 3.0, 20.0):
        a = solve_demand(qps, dec, pre, True, prune=True)
        b = solve_demand(qps, dec, pre, True, prune=False)
        assert a.status == b.status == "optimal" and a.cost_usd_int == b.cost_usd_int


def test_issue_example_deployment_covers_100_qps():
    """optimize llama3-70b --slo-ms 50 --ttft-ms 1000 --qps 100: capacity covers 100 QPS, proven optimal."""
    r = CliRunner().invoke(
        optimize_cmd, ["--model", "llama3-70b", "--slo-ms", "50", "--ttft-ms", "1000", "--qps", "100", "--json"]
    )
    d = json.loads(r.output)["deployment"]
    assert d["status"] == "optimal" and d["qps_capacity"] >= 100
    assert {"decode", "prefill", "cost_per_hour", "qps_capacity"} <= set(d)
    assert all(e["replicas"] >= 1 for e in d["decode"]) and all(e["servers"] >= 1 for e in d["prefill"])
    assert d["cost_per_hour"] == pytest.approx(sum(e["cost_per_hour"] for e in d["decode"] + d["prefill"]))
    assert d["cost_per_month"] == pytest.approx(730 * d["cost_per_hour"])
    assert d["headroom_qps"] == pytest.approx(d["qps_capacity"] - 100)
    for e in d["prefill"]:
        assert e["prefill_ms"] <= 1000


def test_whole_deployment_equals_brute_force_end_to_end():
    """A whole small question (one chip, one dtype pair) against brute force over all its offers."""
    chips = load_chips()
    r = solve("llama3-8b", 30, chips=chips, chip_names=["a100"], weights=["int8"], kv=["int8"], ttft_ms=400, qps=7)
    dec, pre = offers_from_model("llama3-8b", 30, 400, ["a100"])
    dec = [o for o in dec if o.group == "int8/int8"]
    pre = [o for o in pre if o.group == "int8/int8"]
    want = brute_force_cost(7, dec, pre, True)
    assert r.deployment.status == "optimal"
    assert usd_int(r.deployment.cost_per_hour) == want


def test_colocated_demand_needs_no_prefill_servers():
    """Co-located deployments are decode replicas only, and still cover the demand."""
    r = solve("llama3-8b", 30, serving="colocated", qps=50, chip_names=["h100", "tpu-v5e"])
    d = r.deployment
    assert d.prefill == [] and d.qps_capacity >= 50 and d.status == "optimal"


def test_unservable_demand_is_an_answer():
    """A demand whose TTFT no prefill server meets: infeasible with the reason, not an error."""
    r = solve("llama3-70b", 50, ttft_ms=10, qps=10)
    assert r.status == "infeasible" and r.deployment.status == "infeasible"
    assert "TTFT" in r.deployment.reason


def test_compare_colocated_with_demand_uses_deployment_cost():
    """With --qps, the comparison is by whole-deployment cost per hour."""
    r = solve("llama3-8b", 30, qps=20, compare_colocated=True, chip_names=["h100", "tpu-v5e"])
    c = r.comparison
    assert c["by"] == "deployment cost per hour"
    costs = {m: c[m]["cost_per_hour"] for m in ("colocated", "disaggregated")}
    assert c["cheaper"] == min(costs, key=costs.get)
    assert costs["disaggregated"] == pytest.approx(r.deployment.cost_per_hour)


def branch_and_bound(q_int, offers, bound):
    """Exhaustive search (pruned only by cost) for the cheapest slice counts covering q_int."""
    offers = sorted(offers, key=lambda o: usd_int(o.usd_per_hour) / o.rate_int)
    best = [bound]

    def go(k, need, cost):
        if need <= 0:
            best[0] = min(best[0], cost)
            return
        if k == len(offers):
            return
        o = offers[k]
        ratio = min(usd_int(p.usd_per_hour) / p.rate_int for p in offers[k:])
        if cost + need * ratio >= best[0]:
            return
        for n in range(-(-need // o.rate_int), -1, -1):
            go(k + 1, need - n * o.rate_int, cost + n * usd_int(o.usd_per_hour))

    go(0, q_int, cost=0)
    return best[0]


def test_issue_example_cost_is_the_single_pair_minimum():
    """The 100-QPS deployment costs no more than the exhaustive optimum of any single dtype pair
    (decode and prefill each covering 100 QPS), and equals it when it uses one pair."""
    r = solve("llama3-70b", 50, ttft_ms=1000, qps=100)
    got = usd_int(r.deployment.cost_per_hour)
    q = math.ceil(100 * 10**6)
    per_group = {}
    for g in sorted({o.group for o in DECODE} & {o.group for o in PREFILL}):
        d = [o for o in DECODE if o.group == g and o.rate_int > 0]
        p = [o for o in PREFILL if o.group == g and o.rate_int > 0]
        per_group[g] = branch_and_bound(q, d, got + 1) + branch_and_bound(q, p, got + 1)
    pairs = {(e.weights, e.kv) for e in r.deployment.decode}
    assert got <= min(per_group.values())
    if len(pairs) == 1:
        ((w, kv),) = pairs
        assert got == per_group[f"{w}/{kv}"]
