"""Procurement plans: the optimum equals brute force on small plans, every returned plan
passes the solver-free checker, bad input is one line naming the field, and the JSON
round-trips."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from ortools.sat.python import cp_model

from cli import main
from optimizer import scaling
from optimizer.models import load_model
from optimizer.planning import FleetPlan, plan
from optimizer.planning.check import Solution, violations
from optimizer.planning.model import FleetModel
from optimizer.planning.offers import build_offers, cheapest_cover, model_offers
from optimizer.planning.plan_file import load_plan
from optimizer.planning.spec import Commitment, PlanModel, PlanSpec, Pool, resolve
from tests.plan_bruteforce import plan_optimum

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "plan.toml"


def small_spec(rng: random.Random) -> PlanSpec:
    """Two models, two pools, two periods, random demand, quotas, tiers and serving."""
    serving = rng.choice(["disaggregated", "decode-only", "colocated"])
    small = PlanModel(
        model="llama3-8b",
        demand_qps=(round(rng.uniform(0, 8), 2), round(rng.uniform(1, 12), 2)),
        slo_ms=rng.choice([15, 20, 40]),
        ttft_ms=rng.choice([None, 500.0]) if serving != "decode-only" else None,
        prompt_len=1024,
        serving=serving,
        weights=("int8",),
        kv=("int8",),
    )
    large = PlanModel(
        model="llama3-70b",
        demand_qps=(round(rng.uniform(0.1, 2), 2), round(rng.uniform(0.1, 3), 2)),
        slo_ms=rng.choice([40, 60]),
        ttft_ms=2000.0 if serving != "decode-only" else None,
        prompt_len=1024,
        serving=serving,
        weights=("int8",),
        kv=("int8",),
    )
    tiers = (Commitment("1-period", 1, round(rng.uniform(0.05, 0.4), 2)),) if rng.random() < 0.5 else ()
    # a term longer than the horizon (charged past it under full-term accounting)
    long = (Commitment("long", 3, round(rng.uniform(0.3, 0.6), 2)),)
    v5e = Pool(
        chip="tpu-v5e",
        quota_chips=(rng.choice([4, 8, 16, 24]), rng.choice([4, 16, 24, 32])),
        shapes=("2x2", "2x4"),
        commitments=rng.choice([(), tiers, long]),
    )
    h100 = Pool(
        chip="h100",
        quota_chips=rng.choice([2, 4, 6]),
        shapes=("1", "2"),
        on_demand=not tiers or rng.random() < 0.7,
        commitments=tiers,
    )
    if not h100.on_demand and not h100.commitments:
        h100 = replace(h100, on_demand=True)
    return PlanSpec(
        models=(small, large),
        pools=(v5e, h100),
        periods=2,
        headroom=rng.choice([0.0, 0.2]),
        commitment_accounting=rng.choice(["full-term", "horizon"]),
    )


def raw_offers(spec: PlanSpec):
    rp = resolve(spec)
    return rp, [model_offers(spec, k, load_model(m.model), rp.chips) for k, m in enumerate(spec.models)]


def as_solution(result: FleetPlan, rp, po) -> Solution:
    """The plan's integers, recovered from its public output (what a user would audit)."""
    slices = {}
    names = [p.label for p in rp.spec.pools]
    for mp in result.models:
        mi = [m.label for m in rp.spec.models].index(mp.model)
        for e in mp.entries:
            k = next(
                k
                for k, o in enumerate(po.offers[mi])
                if o.role == e.role
                and names[o.pool] == e.pool
                and o.config["topology"] == e.topology
                and o.config["tp"] == e.tp
                and o.config["weights"] == e.weights
                and o.config["kv"] == e.kv
            )
            slices[(mi, k, mp.period - 1)] = e.slices
    commit = {}
    for c in result.commitments:
        p = names.index(c.pool)
        tier = [t.name for t in rp.spec.pools[p].commitments].index(c.tier)
        commit[(p, tier, c.start_period - 1)] = c.chips
    return Solution(slices, commit)


@pytest.mark.parametrize("seed", range(32))
def test_small_plans_equal_brute_force(seed):
    spec = small_spec(random.Random(seed))
    rp, offers = raw_offers(spec)
    expected = plan_optimum(rp, offers)
    result = plan(spec, time_limit_s=20, workers=1)
    if expected is None:
        assert result.status == "infeasible"
        assert result.reason
        return
    assert result.status == "optimal", result.reason
    assert result.total_cost_usd == pytest.approx(expected, rel=1e-9, abs=1e-6)
    po = build_offers(rp)
    assert violations(rp, po, as_solution(result, rp, po)) == []


@pytest.mark.parametrize("seed", range(6))
def test_budgets_equal_brute_force(seed):
    rng = random.Random(100 + seed)
    spec = small_spec(rng)
    spec = replace(spec, pools=tuple(replace(p, commitments=(), on_demand=True) for p in spec.pools))
    rp, offers = raw_offers(spec)
    unlimited = plan_optimum(rp, offers)
    if unlimited is None:
        pytest.skip("the quotas alone make this instance infeasible")
    # a budget between the cheapest plan's busiest period and a bit below it
    cheapest = plan(spec, time_limit_s=20, workers=1)
    top = max(c.total_usd for c in cheapest.costs)
    spec = replace(spec, budget_per_period=round(top * rng.choice([0.8, 1.0, 1.5]), 2))
    rp, offers = raw_offers(spec)
    expected = plan_optimum(rp, offers)
    result = plan(spec, time_limit_s=20, workers=1)
    if expected is None:
        assert result.status == "infeasible" and "budget" in result.reason
    else:
        assert result.status == "optimal"
        assert result.total_cost_usd == pytest.approx(expected, rel=1e-9, abs=1e-6)
        assert all(c.total_usd <= c.budget_usd + 1e-6 for c in result.costs)


def test_checker_catches_broken_plans():
    spec = small_spec(random.Random(3))
    spec = replace(spec, models=tuple(replace(m, demand_qps=(2.0, 4.0)) for m in spec.models))
    rp = resolve(spec)
    po = build_offers(rp)
    result = plan(spec, workers=1)
    sol = as_solution(result, rp, po)
    assert violations(rp, po, sol) == []
    some = next(iter(sol.slices))
    fewer = Solution({k: v for k, v in sol.slices.items() if k != some}, sol.commit)
    assert any("below" in v for v in violations(rp, po, fewer))
    more = Solution({**sol.slices, some: sol.slices[some] + 1000}, sol.commit)
    assert any("quota" in v for v in violations(rp, po, more))


def test_commitments_are_bought_when_they_pay_off_and_not_otherwise():
    base = PlanSpec(
        models=(
            PlanModel(model="llama3-8b", demand_qps=20.0, slo_ms=20, prompt_len=1024, weights=("int8",), kv=("int8",)),
        ),
        pools=(Pool(chip="tpu-v5e", quota_chips=256, commitments=(Commitment("1-year", 12, 0.37),)),),
        periods=12,
    )
    steady = plan(base, workers=1)
    assert steady.status == "optimal"
    assert [c.tier for c in steady.commitments] == ["1-year"]
    assert sum(c.on_demand_usd for c in steady.costs) == 0
    assert any("pay off" in b for b in steady.binding)
    # demand in two months only: renting beats a year of committed chips
    spiky = plan(replace(base, models=(replace(base.models[0], demand_qps=(20.0,) * 2 + (0.0,) * 10),)), workers=1)
    assert spiky.commitments == []
    # horizon accounting makes a commitment started late cheaper than under full-term
    late = replace(base, models=(replace(base.models[0], demand_qps=(0.0,) * 6 + (20.0,) * 6),))
    full = plan(late, workers=1)
    horizon = plan(replace(late, commitment_accounting="horizon"), workers=1)
    assert full.commitments == [] and horizon.commitments and horizon.total_cost_usd < full.total_cost_usd


def test_quota_binding_is_explained_and_pushes_to_the_next_pool():
    spec = PlanSpec(
        models=(
            PlanModel(
                model="llama3-8b",
                demand_qps=(10.0, 80.0),
                slo_ms=20,
                prompt_len=1024,
                weights=("int8", "fp8"),
                kv=("int8", "fp8"),
            ),
        ),
        pools=(Pool(chip="tpu-v6e", quota_chips=16), Pool(chip="h100", quota_chips=64)),
        periods=2,
    )
    result = plan(spec, workers=1)
    assert result.status == "optimal"
    text = " ".join(result.binding)
    assert "the tpu-v6e quota of 16 chips binds in month 2" in text
    assert "llama3-8b moves to h100 and pays +" in text


def test_infeasible_plans_name_the_model_and_period():
    spec = PlanSpec(
        models=(PlanModel(model="llama3-8b", demand_qps=(1.0, 500.0), slo_ms=20, prompt_len=1024),),
        pools=(Pool(chip="tpu-v5e", quota_chips=16),),
        periods=2,
    )
    result = plan(spec, workers=1)
    assert result.status == "infeasible"
    assert "llama3-8b in month 2" in result.reason and "quotas" in result.reason
    tight = replace(spec, models=(replace(spec.models[0], slo_ms=0.01),))
    result = plan(tight, workers=1)
    assert result.status == "infeasible"
    assert result.reason.startswith("llama3-8b cannot be served on any pool") and "0.01 ms target" in result.reason


def test_maximize_served_under_a_budget():
    spec = PlanSpec(
        models=(
            PlanModel(model="llama3-8b", demand_qps=(50.0, 100.0), slo_ms=20, prompt_len=1024),
            PlanModel(model="llama3-70b", demand_qps=(5.0, 10.0), slo_ms=50, prompt_len=1024),
        ),
        pools=(Pool(chip="tpu-v5e", quota_chips=512),),
        periods=2,
        budget_per_period=20000.0,
    )
    assert plan(spec, workers=1).status == "infeasible"
    result = plan(spec, maximize_served=True, workers=1)
    assert result.status in ("optimal", "feasible")
    assert result.served_qps < result.required_qps
    assert result.shortfalls
    assert all(c.total_usd <= 20000.0 + 1e-6 for c in result.costs)
    rp = resolve(spec)
    po = build_offers(rp)
    assert violations(rp, po, as_solution(result, rp, po), serve_all=False) == []


#: Time for the example plans whose proof of optimality a test checks: the default 10 s is wall
#: time, which a loaded machine (several test runs on two cores) has run out of before the proof.
GENEROUS_S = 120.0


def test_json_round_trip_and_example_runs():
    result = plan(EXAMPLE, workers=1, time_limit_s=GENEROUS_S)
    assert result.status == "optimal"
    data = json.loads(json.dumps(result.to_dict()))
    again = FleetPlan.from_dict(data)
    assert again == result
    assert isinstance(again.models[0].entries[0].rate_per_slice, float)
    out = CliRunner().invoke(main, ["plan", str(EXAMPLE), "--json", "--workers", "1", "--time-limit", str(GENEROUS_S)])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["status"] == "optimal"
    rp = resolve(load_plan(EXAMPLE))
    po = build_offers(rp)
    assert violations(rp, po, as_solution(result, rp, po)) == []


def test_cli_text_and_out_file(tmp_path):
    out = tmp_path / "plan.json"
    res = CliRunner().invoke(
        main, ["plan", str(EXAMPLE), "--out", str(out), "--workers", "1", "--time-limit", str(GENEROUS_S)]
    )
    assert res.exit_code == 0, res.output
    assert "Bill of materials" in res.output and "What binds" in res.output
    assert FleetPlan.from_dict(json.loads(out.read_text())).status == "optimal"


BAD = [
    (
        "models[0].demand_qps[1] must be zero or more",
        {"models": [{"model": "llama3-8b", "demand_qps": [1, -5], "slo_ms": 20}]},
    ),
    ("unknown chip in pools[0].chip 'tpu-v9'", {"pools": [{"chip": "tpu-v9", "quota_chips": 8}]}),
    (
        "models[0].demand_qps has 3 values but the plan has 2 periods",
        {"models": [{"model": "llama3-8b", "demand_qps": [1, 2, 3], "slo_ms": 20}]},
    ),
    ("pools[0].quota_chips must be positive, got 0", {"pools": [{"chip": "tpu-v5e", "quota_chips": 0}]}),
    ("models[0].model: unknown model 'llama9'", {"models": [{"model": "llama9", "demand_qps": 1, "slo_ms": 20}]}),
    (
        "pools[0].shapes: '3x3' is not a tpu-v5e slice",
        {"pools": [{"chip": "tpu-v5e", "quota_chips": 8, "shapes": ["3x3"]}]},
    ),
    (
        "pools[0].commitments[0].discount must be a fraction",
        {
            "pools": [
                {
                    "chip": "tpu-v5e",
                    "quota_chips": 8,
                    "commitments": [{"name": "1y", "term_periods": 12, "discount": 1.5}],
                }
            ]
        },
    ),
    ("share_slices = true is not supported", {"share_slices": True}),
    ("models[0] has unknown key 'slo'", {"models": [{"model": "llama3-8b", "demand_qps": 1, "slo_ms": 20, "slo": 3}]}),
    ("period_name must be a non-empty string", {"period_name": 3}),
    ("models[0].name must be", {"models": [{"model": "llama3-8b", "name": 5, "demand_qps": 1, "slo_ms": 20}]}),
    ("pools[0].name must be a string", {"pools": [{"chip": "tpu-v5e", "quota_chips": 8, "name": 5}]}),
]


def _toml(data: dict) -> str:
    lines = []
    for key, value in data.items():
        if key not in ("models", "pools"):
            lines.append(f"{key} = {json.dumps(value)}")
    for key in ("models", "pools"):
        for table in data[key]:
            lines.append(f"[[{key}]]")
            for k, v in table.items():
                if k != "commitments":
                    lines.append(f"{k} = {json.dumps(v)}")
            for c in table.get("commitments", []):
                lines.append(f"[[{key}.commitments]]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in c.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("message,change", BAD, ids=[b[0][:40] for b in BAD])
def test_bad_input_is_one_line_naming_the_field(tmp_path, message, change):
    data = {
        "periods": 2,
        "models": [{"model": "llama3-8b", "demand_qps": 1, "slo_ms": 20}],
        "pools": [{"chip": "tpu-v5e", "quota_chips": 8}],
    }
    data.update(change)
    path = tmp_path / "plan.toml"
    path.write_text(_toml(data))
    res = CliRunner().invoke(main, ["plan", str(path)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.output
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        plan(path)


def test_api_rejects_bad_arguments():
    spec = load_plan(EXAMPLE)
    with pytest.raises(ValueError, match="time_limit_s"):
        plan(spec, time_limit_s=0)
    with pytest.raises(ValueError, match="plan must be a PlanSpec"):
        plan(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"models\[0\]\.slo_ms"):
        plan(replace(spec, models=(replace(spec.models[0], slo_ms=-1), *spec.models[1:])))


def test_cheapest_cover_matches_enumeration():
    rng = random.Random(7)
    for _ in range(200):
        items = [(rng.randint(1, 30), rng.randint(1, 20)) for _ in range(rng.randint(1, 3))]
        q = rng.randint(0, 60)
        ranges = [range(-(-q // r) + 1) for _, r in items]
        best = min(
            sum(w * n for (w, _), n in zip(items, ns))
            for ns in itertools.product(*ranges)
            if sum(r * n for (_, r), n in zip(items, ns)) >= q
        )
        cost, counts, proven = cheapest_cover(q, items)
        assert proven and cost == best
        assert sum(items[k][1] * n for k, n in counts.items()) >= q


def test_cheapest_split_matches_enumeration():
    """The cover cuts' split bound (optimizer.planning.offers.cheapest_split) is the cheapest
    deployment over every count vector when the load may be split over dtype pairs (decode and
    prefill capacity per pair), never above one pair's cheapest, never below the old cover bound."""
    from optimizer.planning.offers import SliceOffer, cheapest_deployment, cheapest_split, cover_lower_bound
    from optimizer.scaling import demand_int

    rng = random.Random(11)
    for case in range(40):
        offers = [
            SliceOffer(0, 0, role, rng.choice("AB"), rng.randint(1, 4), round(rng.uniform(1, 8), 2), {})
            for role in ("decode", "decode", "decode", "prefill", "prefill", "prefill")
        ]
        qps = round(rng.uniform(2, 16), 2)
        with_prefill = case % 2 == 0
        live = [k for k, o in enumerate(offers) if with_prefill or o.role == "decode"]
        weight = {k: offers[k].chips * rng.randint(3, 9) for k in live}
        q = demand_int(qps)
        ranges = [range(-(-q // offers[k].rate_int) + 1) for k in live]
        best = None
        for ns in itertools.product(*ranges):
            cap = {(offers[k].group, offers[k].role): 0 for k in live}
            for k, n in zip(live, ns):
                cap[(offers[k].group, offers[k].role)] += n * offers[k].rate_int
            served = sum(
                min(cap[(g, "decode")], cap.get((g, "prefill"), 0)) if with_prefill else cap[(g, "decode")]
                for g in {g for g, role in cap if role == "decode"}
            )
            if served >= q:
                cost = sum(weight[k] * n for k, n in zip(live, ns))
                best = cost if best is None else min(best, cost)
        one_pair, counts = cheapest_deployment(offers, q, live, weight, with_prefill)
        bound, found = cheapest_split(offers, qps, live, weight, with_prefill, counts, 10.0)
        if best is None:  # a pair lacks decode or prefill offers everywhere: nothing serves it
            continue
        assert bound == best, (case, bound, best)
        assert sum(weight[k] * n for k, n in found.items()) == best
        assert cover_lower_bound(offers, q, live, weight, with_prefill) <= bound <= one_pair


def test_readme_python_example_runs():
    """The Python example of docs/plan.md runs and its plan round-trips through JSON."""
    text = (ROOT / "docs" / "plan.md").read_text()
    block = text.split("From Python (`PlanSpec`")[1].split("```python\n")[1].split("```")[0]
    namespace: dict = {}
    exec(compile(block, "README plan example", "exec"), namespace)
    result = namespace["result"]
    assert result.status == "optimal"
    assert FleetPlan.from_dict(result.to_dict()) == result


def test_cli_infeasible_is_an_answer_and_maximize_served_runs(tmp_path):
    path = tmp_path / "tight.toml"
    path.write_text(
        "periods = 2\nbudget_per_period = 20000\n"
        '[[models]]\nmodel = "llama3-8b"\ndemand_qps = [50, 100]\nslo_ms = 20\nprompt_len = 1024\n'
        '[[pools]]\nchip = "tpu-v5e"\nquota_chips = 512\n'
    )
    res = CliRunner().invoke(main, ["plan", str(path), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "status infeasible" in res.output and "reason: the quotas and the budget cannot serve" in res.output
    res = CliRunner().invoke(main, ["plan", str(path), "--workers", "1", "--maximize-served", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["objective"] == "max-served" and data["served_qps"] < data["required_qps"]


def test_load_split_over_dtype_pairs_is_found(chips):
    """A model may route its load to several dtype pairs: with pair A (4 chips, 10 q/s) and
    pair B (3 chips, 6 q/s) and 16 q/s to serve, one slice of each (7 chips) beats two of A.
    Synthetic offers; the brute force tries every count vector; the cover cuts stay valid."""
    import math as _math

    from optimizer.planning.check import tally
    from optimizer.planning.offers import PlanOffers, SliceOffer
    from optimizer.planning.solve import solve_plan

    rng = random.Random(5)
    cases = [([(4, 10.0, "A"), (3, 6.0, "B")], 16.0)]
    for _ in range(10):
        cases.append(
            (
                [(rng.randint(1, 6), round(rng.uniform(2, 12), 2), rng.choice("AB")) for _ in range(3)],
                round(rng.uniform(5, 30), 2),
            )
        )
    for offers_spec, qps in cases:
        spec = PlanSpec(
            models=(PlanModel(model="llama3-8b", demand_qps=qps, slo_ms=20, serving="decode-only"),),
            pools=(Pool(chip="h100", quota_chips=64),),
        )
        rp = resolve(spec, chips)
        offers = [
            SliceOffer(
                0,
                0,
                "decode",
                g,
                c,
                r,
                {
                    "chip": "h100",
                    "topology": str(c),
                    "chips": c,
                    "tp": c,
                    "n_axes": 1,
                    "replicas": 1,
                    "weights": g,
                    "kv": g,
                },
                batch=1,
                step_ms=1.0,
            )
            for c, r, g in offers_spec
        ]
        po = PlanOffers([load_model("llama3-8b")], [offers], len(offers))
        out = solve_plan(rp, po, __import__("time").perf_counter() + 10, 1, False)
        assert out.status == "optimal"
        got = tally(rp, po, out.solution).used[0][0]
        best = min(
            sum(n * o.chips for n, o in zip(ns, offers))
            for ns in itertools.product(*[range(_math.ceil(qps / o.rate) + 1) for o in offers])
            if sum(n * o.rate for n, o in zip(ns, offers)) >= qps
        )
        assert got == best, (offers_spec, qps)
        if offers_spec is cases[0][0]:
            assert got == 7  # one slice of each pair


@pytest.mark.parametrize("seed", range(8))
def test_budgets_with_commitments_equal_brute_force(seed):
    """A budget bills committed chips in every period they are held: the brute force tries
    every combination of the pools' commitment vectors under it."""
    rng = random.Random(300 + seed)
    model = PlanModel(
        model="llama3-8b",
        demand_qps=(round(rng.uniform(0, 6), 2), round(rng.uniform(4, 12), 2)),
        slo_ms=20,
        prompt_len=1024,
        weights=("int8",),
        kv=("int8",),
        serving=rng.choice(["decode-only", "disaggregated"]),
    )
    term = rng.choice([1, 2, 3])
    spec = PlanSpec(
        models=(model,),
        periods=2,
        commitment_accounting=rng.choice(["full-term", "horizon"]),
        pools=(
            Pool(
                chip="tpu-v5e",
                quota_chips=8,
                shapes=("2x2", "2x4"),
                commitments=(Commitment("c", term, round(rng.uniform(0.3, 0.6), 2)),),
            ),
            Pool(chip="h100", quota_chips=2, shapes=("1", "2")),
        ),
    )
    unlimited = plan(spec, workers=1)
    if unlimited.status != "optimal":
        pytest.skip("the quotas alone make this instance infeasible")
    top = max(c.total_usd for c in unlimited.costs)
    spec = replace(spec, budget_per_period=(round(top * rng.choice([0.3, 0.7, 1.0]), 2), round(top * 1.5, 2)))
    rp, offers = raw_offers(spec)
    expected = plan_optimum(rp, offers)
    result = plan(spec, time_limit_s=20, workers=1)
    if expected is None:
        assert result.status == "infeasible"
    else:
        assert result.status == "optimal"
        assert result.total_cost_usd == pytest.approx(expected, rel=1e-9, abs=1e-6)


def test_a_budget_can_make_a_later_commitment_the_cheapest():
    """Demand arrives in month 4 and months 1-3 have a small budget: committing from month 4
    is cheaper than renting, though a commitment from month 1 would cover more (review case)."""
    spec = PlanSpec(
        models=(PlanModel(model="llama3-8b", demand_qps=(1.0,) * 3 + (100.0,) * 9, slo_ms=20, prompt_len=1024),),
        pools=(Pool(chip="tpu-v5e", quota_chips=512, commitments=(Commitment("1-year", 12, 0.5),)),),
        periods=12,
        budget_per_period=(5000.0,) * 3 + (1e6,) * 9,
    )
    result = plan(spec, workers=1)
    assert result.status == "optimal"
    assert any(c.start_period > 1 for c in result.commitments)
    varied = plan(replace(spec, pools=(replace(spec.pools[0], quota_chips=(512,) * 11 + (511,)),)), workers=1)
    assert result.total_cost_usd <= varied.total_cost_usd + 1e-6


def test_zero_demand_model_that_fits_nowhere_with_a_budget(tmp_path):
    spec = PlanSpec(
        models=(PlanModel(model="llama3-405b", demand_qps=0.0, slo_ms=20, prompt_len=1024),),
        pools=(Pool(chip="tpu-v5e", quota_chips=8, shapes=("2x2",)),),
        periods=2,
        budget_per_period=100000.0,
    )
    result = plan(spec, workers=1)
    assert result.status == "optimal" and result.total_cost_usd == 0


def test_plans_proven_by_the_cover_bounds_cost_what_cp_sat_proves():
    """Where the starting plan costs the cover cuts' bounds summed, plan() returns it without
    searching the full model; CP-SAT on that model proves the same cost optimal, and the start
    breaks no constraint."""
    shortcut = 0
    for seed in range(32):
        spec = small_spec(random.Random(seed))
        result = plan(spec, time_limit_s=20, workers=1)
        if result.solve.proven_by != "cover bounds":
            continue
        shortcut += 1
        rp = resolve(spec)
        po = build_offers(rp)
        fm = FleetModel(rp, po, maximize_served=False)
        fm.model.minimize(fm.total_cost)
        solver = cp_model.CpSolver()
        solver.parameters.num_workers = 1
        solver.parameters.max_time_in_seconds = 20
        assert solver.solve(fm.model) == cp_model.OPTIMAL
        assert result.total_cost_usd == pytest.approx(solver.objective_value / scaling.USD_UNITS, rel=1e-12)
        assert result.bound_usd == pytest.approx(result.total_cost_usd, rel=1e-12)
        assert violations(rp, po, as_solution(result, rp, po)) == []
    assert shortcut >= 5


def test_cheapest_kept_changes_no_cheapest_cover():
    """Dropping the offers another of their role and dtype pair makes cheaper (any pool, integer
    rates) leaves every cheapest cover's cost as it was, and drops some."""
    from optimizer.planning.offers import SliceOffer, cheapest_kept

    rng = random.Random(5)
    dropped = 0
    for _ in range(300):
        offers = [
            SliceOffer(0, rng.randint(0, 2), "decode", rng.choice("AB"), rng.randint(1, 4), rng.randint(1, 9) / 4, {})
            for _ in range(rng.randint(1, 7))
        ]
        weight = {k: o.chips * rng.randint(2, 5) for k, o in enumerate(offers)}
        ks = list(range(len(offers)))
        kept = cheapest_kept(offers, ks, weight)
        dropped += len(ks) - len(kept)
        q = rng.randint(1, 12) * 250_000
        for g in "AB":
            every = [k for k in ks if offers[k].group == g]
            if every:
                items = [(weight[k], offers[k].rate_int) for k in every]
                kept_items = [(weight[k], offers[k].rate_int) for k in kept if offers[k].group == g]
                assert cheapest_cover(q, kept_items)[0] == cheapest_cover(q, items)[0]
    assert dropped > 100
