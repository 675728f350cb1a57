"""The CP-SAT optimum equals an independent brute-force enumeration of the same model."""

from __future__ import annotations

import random

import pytest

from tests.bruteforce import brute_force
from tests.helpers import solve

N_INSTANCES = 120


def _instances(chips, models):
    rng = random.Random(20261129)
    names = sorted(chips)
    objectives = ["queries-per-dollar"] * 6 + ["min-chips", "min-latency"]
    for k in range(N_INSTANCES):
        model = rng.choice(sorted(models))
        chip_subset = sorted(rng.sample(names, rng.randint(1, 4)))
        dtypes = ["bf16", "int8", "fp8", "int4"]
        weights = sorted(rng.sample(dtypes, rng.randint(1, 3))) if rng.random() < 0.4 else None
        kv = sorted(rng.sample(dtypes, rng.randint(1, 3))) if rng.random() < 0.4 else None
        if weights and not any(set(weights) & set(chips[c].weight_dtypes) for c in chip_subset):
            weights = None
        if kv and not any(set(kv) & set(chips[c].kv_dtypes) for c in chip_subset):
            kv = None
        yield pytest.param(
            dict(
                model=model,
                chip_names=chip_subset,
                slo_ms=round(10 ** rng.uniform(-1, 1.8), 3),
                context=rng.choice([1024, 2048, 8192, 32768]),
                decode_len=rng.choice([128, 512, 2048]),
                weights=weights,
                kv=kv,
                objective=rng.choice(objectives),
                serving=rng.choice(["decode-only", "disaggregated", "disaggregated", "colocated"]),
                prompt_len=rng.choice([None, 128, 2048, 8192]),
                mfu=rng.choice([0.4, 0.25, 0.6]),
                ttft_ms=rng.choice([None, None, round(10 ** rng.uniform(1, 3.5), 1)]),
            ),
            id=f"i{k}",
        )


def pytest_generate_tests(metafunc):
    if "instance" in metafunc.fixturenames:
        from optimizer import builtin_models, load_chips

        metafunc.parametrize("instance", list(_instances(load_chips(), builtin_models())))
    if "node_instance" in metafunc.fixturenames:
        from optimizer import load_chips

        metafunc.parametrize("node_instance", list(_node_instances(load_chips())))


def test_cp_sat_optimum_equals_brute_force(instance, chips, models):
    """On random models, targets, contexts, dtype and chip subsets, the optimum values agree."""
    inst = dict(instance)
    inst["decode_len"] = min(inst["decode_len"], inst["context"])  # the context holds every output token
    if inst["serving"] == "decode-only":
        inst["ttft_ms"] = None  # a TTFT target needs prompts
    if inst["prompt_len"] is None and inst["context"] <= inst["decode_len"]:
        inst["prompt_len"] = 64
    result = solve(
        models[inst["model"]],
        inst["slo_ms"],
        chips=chips,
        chip_names=inst["chip_names"],
        context=inst["context"],
        decode_len=inst["decode_len"],
        weights=inst["weights"],
        kv=inst["kv"],
        objective=inst["objective"],
        top=1,
        serving=inst["serving"],
        prompt_len=inst["prompt_len"],
        prefill_mfu=inst["mfu"],
        ttft_ms=inst["ttft_ms"],
    )
    oracle = brute_force(
        models[inst["model"]],
        chips,
        inst["chip_names"],
        inst["slo_ms"],
        inst["context"],
        inst["decode_len"],
        inst["weights"],
        inst["kv"],
        inst["objective"],
        inst["serving"],
        inst["prompt_len"],
        inst["mfu"],
        inst["ttft_ms"],
    )
    assert_matches_oracle(result, oracle, inst["objective"])


def assert_matches_oracle(result, oracle, objective: str) -> None:
    """The optimum's value is the oracle's (or both find nothing, and the result says why)."""
    if oracle is None:
        assert result.status == "infeasible" and result.best is None and result.reason
        return
    assert result.status == "optimal"
    best = result.best
    if objective == "queries-per-dollar":
        assert best.queries_per_dollar == pytest.approx(oracle.value, rel=1e-9)
    elif objective == "min-chips":
        assert best.chips == oracle.value
        assert best.queries_per_dollar == pytest.approx(oracle.qpd, rel=1e-9)
    else:
        assert best.step_ms / 1e3 == pytest.approx(oracle.value, rel=1e-9)


def test_instances_cover_feasible_and_infeasible(chips, models):
    """The random instances exercise both outcomes, so agreement is not vacuous."""
    outcomes = set()
    for p in _instances(chips, models):
        inst = p.values[0]
        r = brute_force(
            models[inst["model"]],
            chips,
            inst["chip_names"],
            inst["slo_ms"],
            inst["context"],
            inst["decode_len"],
            inst["weights"],
            inst["kv"],
            inst["objective"],
            inst["serving"],
            inst["prompt_len"] or 64,
            inst["mfu"],
            inst["ttft_ms"],
        )
        outcomes.add((r is None, inst["serving"]))
    assert {o for o in outcomes if not o[0]} == {(False, m) for m in ("decode-only", "disaggregated", "colocated")}
    assert any(o[0] for o in outcomes)


# ----------------------------------------------------------------------------- past one node

N_NODE_INSTANCES = 48
#: Models that need or profit from several nodes, dense and mixture of experts.
BIG = ["llama3-405b", "llama3-70b", "deepseek-v3", "qwen3-235b-a22b", "mixtral-8x7b", "llama4-maverick"]
#: GPUs with a known scale-out bandwidth (and TPUs, which stay one slice, for contrast).
NODE_CHIPS = ["a100", "h100", "h200", "b200", "mi300x", "gb200", "tpu-v5e"]


def _node_instances(chips):
    rng = random.Random(20261203)
    for k in range(N_NODE_INSTANCES):
        names = sorted(rng.sample([c for c in NODE_CHIPS if c in chips], rng.randint(1, 2)))
        yield pytest.param(
            dict(
                model=rng.choice(BIG),
                chip_names=names,
                slo_ms=round(10 ** rng.uniform(0.5, 2.5), 3),
                context=rng.choice([2048, 8192, 32768]),
                decode_len=rng.choice([128, 512]),
                weights=rng.choice([None, ["bf16"], ["fp8", "int8"]]),
                objective=rng.choice(["queries-per-dollar"] * 4 + ["min-chips", "min-latency"]),
                serving=rng.choice(["decode-only", "disaggregated", "colocated"]),
                max_nodes=rng.choice([1, 2, 4, 8]),
            ),
            id=f"n{k}",
        )


def _node_instance(inst, chips, models):
    weights = inst["weights"]
    if weights and not any(set(weights) & set(chips[c].weight_dtypes) for c in inst["chip_names"]):
        weights = None
    kw = dict(weights=weights, objective=inst["objective"], serving=inst["serving"])
    oracle = brute_force(
        models[inst["model"]],
        chips,
        inst["chip_names"],
        inst["slo_ms"],
        inst["context"],
        inst["decode_len"],
        max_nodes=inst["max_nodes"],
        **kw,
    )
    return kw, oracle


def test_cp_sat_optimum_equals_brute_force_past_one_node(node_instance, chips, models):
    """Replicas over several GPU nodes (pipelines and wide expert parallelism, up to max_nodes):
    the optimum's value agrees with the brute-force oracle's."""
    inst = node_instance
    kw, oracle = _node_instance(inst, chips, models)
    result = solve(
        models[inst["model"]],
        inst["slo_ms"],
        chips=chips,
        chip_names=inst["chip_names"],
        context=inst["context"],
        decode_len=inst["decode_len"],
        top=1,
        max_nodes=inst["max_nodes"],
        alternatives=False,
        **kw,
    )
    assert_matches_oracle(result, oracle, inst["objective"])
    if oracle is not None:
        assert result.best.nodes <= inst["max_nodes"]


def test_node_instances_cover_pipelines_and_wide_expert_parallelism(chips, models):
    """The oracle's optima include pipelines over several nodes, one-stage replicas over several
    nodes (experts across them) and one-node answers, so agreement is not vacuous."""
    kinds = set()
    for p in _node_instances(chips):
        _, oracle = _node_instance(p.values[0], chips, models)
        if oracle is not None:
            kinds.add("one node" if oracle.nodes == 1 else "pipeline" if oracle.pp > 1 else "experts across nodes")
        else:
            kinds.add("infeasible")
    assert kinds == {"one node", "pipeline", "experts across nodes", "infeasible"}


@pytest.mark.parametrize("k", range(0, N_NODE_INSTANCES, 3))
def test_calibrated_optimum_equals_brute_force_past_one_node(k, chips, models):
    """The same multi-node instances (every third) under the calibrated profile: pipelines step at
    B/pp on one stage's chips, and the all-to-all of experts across nodes moves at its slower leg."""
    from optimizer.measurements import bundled_data
    from tests.bruteforce import calibrated_params

    inst = list(_node_instances(chips))[k].values[0]
    engine = ["vllm", "sglang", "trtllm"][k % 3]
    kw = dict(weights=None, serving=inst["serving"])
    cal = calibrated_params(str(bundled_data().with_name("calibrated.toml")), engine)
    oracle = brute_force(
        models[inst["model"]],
        chips,
        inst["chip_names"],
        inst["slo_ms"],
        inst["context"],
        inst["decode_len"],
        max_nodes=inst["max_nodes"],
        cal=cal,
        **kw,
    )
    result = solve(
        models[inst["model"]],
        inst["slo_ms"],
        chips=chips,
        chip_names=inst["chip_names"],
        context=inst["context"],
        decode_len=inst["decode_len"],
        top=1,
        max_nodes=inst["max_nodes"],
        alternatives=False,
        profile="calibrated",
        engine=engine,
        **kw,
    )
    if oracle is None:
        assert result.status == "infeasible"
        return
    assert result.status == "optimal"
    assert result.best.queries_per_dollar == pytest.approx(oracle.value, rel=1e-9)


@pytest.mark.parametrize("profile", ["book", "calibrated"])
@pytest.mark.parametrize("d", [2, 16])
def test_experts_across_nodes_step_equals_the_oracles(profile, d, chips, models):
    """One wide expert-parallel layout (DeepSeek-V3 over two H100 nodes, experts over all 16),
    which the random instances rarely pick: its step and comms check are the oracle's."""
    from optimizer.measurements import bundled_data
    from tests.bruteforce import _comms_ok, _replica, _step, calibrated_params
    from tests.helpers import evaluate_one

    cal = calibrated_params(str(bundled_data().with_name("calibrated.toml"))) if profile == "calibrated" else None
    m = models["deepseek-v3"]
    t = _replica(m, chips["h100"], 16, 1, 1, 2, "fp8", "fp8", 8192, 7680, 0.4, False, 512, cal, d, 16)
    for batch in (1, 64, 3000):
        e = evaluate_one(m, "h100", "16", weights="fp8", kv="fp8", batch=batch, attention_dp=d, ep=16, profile=profile)
        assert e.step_ms / 1e3 == pytest.approx(float(_step(t, batch)), rel=1e-9)
        assert e.comms_bound == (not bool(_comms_ok(t, batch)))
