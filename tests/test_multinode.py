"""Issue 14, part 2: replicas past one node (optimizer.multinode, docs/cost-model.md "Several
nodes"). The terms are pinned on hand-computed cases from the catalog's figures (H100: dense
bf16 9.894e14 FLOP/s, 3.35e12 B/s and 80e9 B of HBM, NVLink 4.5e11 B/s one way, one 400 Gb/s
NIC per GPU = 5e10 B/s), the layouts and their errors, the explanations, and the issue's targets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from constraints import comms, hbm, latency
from optimizer import Book, Search, Workload, evaluate, load_chips, optimize
from optimizer.candidates import build_table, single_candidate
from optimizer.errors import InputError
from optimizer.models import load_model
from optimizer.multinode import DEFAULT_MAX_NODES, MAX_NODES, SCALE_OUT_LATENCY_S

C, W, M, W_ICI, W_OUT = 9.894e14, 3.35e12, 80e9, 4.5e11, 5e10
HOP = 10e-6  # NVIDIA's p2p_latency (aiconfigurator systems/*.yaml)
# LLaMA 3.1-405B: L=126, D=16384, F=53248, N=128, K=8, H=128, V=128256
L, D, F, N, K, H, V = 126, 16384, 53248, 128, 8, 128, 128256
P = L * D * (3 * F + 2 * H * (N + K)) + 2 * D * V  # 405,849,243,648
KV_SEQ = 2 * K * H * L * 2 * 8192  # bf16, one sequence of 8192 tokens


def test_the_hand_formulas_are_the_catalogs():
    chip = load_chips()["h100"]
    assert (chip.bf16_flops, chip.hbm_bytes_per_s, chip.hbm_bytes) == (C, W, M)
    assert (chip.ici_bytes_per_s_per_axis, chip.scale_out_bytes_per_s) == (W_ICI, W_OUT)
    assert chip.scale_up_domain == 8 and chip.multi_node
    assert load_model("llama3-405b").param_count == P == 405_849_243_648
    assert SCALE_OUT_LATENCY_S == HOP


def _405b(batch, topology="16", **kw):
    return evaluate(
        "llama3-405b", Workload(), chip="h100", topology=topology, weights="bf16", kv="bf16", batch=batch, **kw
    )


def test_pipeline_of_two_h100_nodes_by_hand():
    """405B in bf16 on 16 H100s, a pipeline of two 8-GPU stages, batch 64: the weights are read
    once per microbatch by one stage's 8 GPUs, the KV and the FLOPs spread over all 16, and each
    step pays 2 hops and one transfer of a 32-sequence microbatch's activations over the NIC."""
    e = _405b(64)
    assert (e.chips, e.tp, e.pp, e.nodes, e.n_axes, e.replicas) == (16, 16, 2, 2, 1, 1)
    params = P * 2 / (8 * W)
    kv = 64 * KV_SEQ / (16 * W)
    flops = 2 * P * 64 / (16 * C)
    boundaries = 2 * HOP + 1 * (64 / 2) * D * 2 / W_OUT
    assert e.breakdown_ms["params"] == pytest.approx(params * 1e3, rel=1e-12)
    assert e.breakdown_ms["kv"] == pytest.approx(kv * 1e3, rel=1e-12)
    assert e.breakdown_ms["flops"] == pytest.approx(flops * 1e3, rel=1e-12)
    assert e.breakdown_ms["pipeline"] == pytest.approx(boundaries * 1e3, rel=1e-12)
    assert e.step_ms == pytest.approx((kv + max(flops, params) + boundaries) * 1e3, rel=1e-12)
    assert e.step_ms == pytest.approx(35.3764, abs=1e-4)
    # HBM: every chip of the replica holds its share of the weights and KV caches
    assert e.hbm_bytes == 16 * M and e.max_batch == math.floor((16 * M - 2 * P) / KV_SEQ) == 110
    # the step turns compute-bound pp times later than on one node: 2*C*b_w/(2*W)
    assert e.critical_batch == pytest.approx(2 * C * 2 / (2 * W), rel=1e-12)
    # prefill: the chunks keep both stages busy (16 GPUs of compute), plus one boundary crossing
    T = 8192 - 512
    prefill = 2 * P * T / (16 * C * 0.4) + HOP + T * D * 2 / W_OUT
    assert e.prefill_ms == pytest.approx(prefill * 1e3, rel=1e-12)
    assert e.queries_per_dollar == pytest.approx(3600 * 64 / (e.step_ms / 1e3 * 512 * 16 * 6.88), rel=1e-12)


def test_below_pp_sequences_the_stages_idle():
    """The bubble: with fewer sequences than stages, a step costs what pp sequences cost."""
    two = [_405b(b).step_ms for b in (1, 2, 3)]
    assert two[0] == two[1] < two[2]
    four = [_405b(b, "32").step_ms for b in (1, 2, 3, 4, 5)]
    assert four[0] == four[1] == four[2] == four[3] < four[4]
    e = _405b(1, "32")
    b = 4  # pp = 4: microbatches of one sequence, one per stage
    kv = b * KV_SEQ / (32 * W)
    flops = 2 * P * b / (32 * C)
    boundaries = 4 * HOP + 3 * (b / 4) * D * 2 / W_OUT
    assert e.step_ms == pytest.approx((kv + max(flops, P * 2 / (8 * W)) + boundaries) * 1e3, rel=1e-12)


def test_experts_across_nodes_see_the_slower_leg_of_the_all_to_all():
    """DeepSeek-V3 (k = 8 of 256 experts, D = 7168) over 16 H100s, experts over all 16 and
    attention data parallel 16: per sequence and MoE layer the all-to-all moves 2*k*D*2 bytes
    spread over 16 chips, (e-1)/e of it off-chip; 7/16 over NVLink and 8/16 over the NICs at
    once, so the NIC leg decides: 2*k*D*2/(16*16) * max(7/4.5e11, 8/5e10) seconds."""
    e = evaluate(
        "deepseek-v3", Workload(), chip="h100", topology="16", weights="fp8", kv="fp8", batch=64, attention_dp=16, ep=16
    )
    assert (e.pp, e.nodes, e.attention_dp, e.ep) == (1, 2, 16, 16)
    a2a = 2 * 8 * 7168 * 2 / (16 * 16) * max(7 / W_ICI, 8 / W_OUT)
    assert e.breakdown_ms["moe_collectives_per_layer"] == pytest.approx(64 * a2a * 1e3, rel=1e-12)
    assert "pipeline" not in e.breakdown_ms
    # the same split inside one node moves everything over NVLink
    one = evaluate(
        "deepseek-v3", Workload(), chip="h200", topology="8", weights="fp8", kv="fp8", batch=64, attention_dp=8, ep=8
    )
    assert one.breakdown_ms["moe_collectives_per_layer"] == pytest.approx(
        64 * 2 * 8 * 7168 * 2 * 7 / (8 * 8) / W_ICI * 1e3, rel=1e-12
    )


def test_tensor_parallel_attention_stays_inside_a_node():
    """Experts over 16 chips of two nodes with attention tensor parallel 8 inside each node
    (attention data parallel 2): the attention all-reduce is NVLink's, the all-to-all the NIC's."""
    e = evaluate(
        "deepseek-v3", Workload(), chip="h100", topology="16", weights="fp8", kv="fp8", batch=64, attention_dp=2, ep=16
    )
    per_seq = 7168 * 2 / 2 / W_ICI + 2 * 8 * 7168 * 2 / (16 * 16) * max(7 / W_ICI, 8 / W_OUT)
    assert e.breakdown_ms["moe_collectives_per_layer"] == pytest.approx(64 * per_seq * 1e3, rel=1e-12)


def test_a_pipeline_checks_comms_inside_each_stage_on_its_microbatch():
    """The sharded-matmul inequality of a pipeline's stage: 8-way over NVLink at B/pp."""
    w = Workload(serving="decode-only")
    t = single_candidate(load_model("llama3-405b"), load_chips()["h100"], "32", None, "int4", "int4", w, Book())
    c = t.cost
    b = 1000
    assert c.ici_s_per_seq[0] * b == pytest.approx((b / 4) * D * 2 / W_ICI, rel=1e-12)
    assert c.matmul_hbm_s[0] == pytest.approx(D * F * 0.5 / (8 * W), rel=1e-12)
    assert c.matmul_flops_s_per_seq[0] * b == pytest.approx(2 * (b / 4) * D * F / (8 * C), rel=1e-12)
    bound = comms.comms_bound(t, np.array([0, 0]), np.array([1, 10**6]))
    assert bound.tolist() == [False, False]  # compute grows as fast as the collectives here


def test_one_node_rows_are_unchanged_bit_for_bit():
    """Replicas past one node add rows; the rows of one node keep every term exactly."""
    chips = load_chips()
    for model in ("llama3-70b", "deepseek-v3"):
        w = Workload(slo_ms=50)
        one = build_table(load_model(model), chips, w, Book(), max_nodes=1)
        many = build_table(load_model(model), chips, w, Book())
        keep = many.nodes == 1
        assert keep.sum() == len(one) < len(many) and (one.nodes == 1).all()
        for name in ("weight_bytes", "params_s", "kv_s_per_seq", "flops_s_per_seq", "ici_s_per_seq", "prefill_s"):
            assert np.array_equal(getattr(one.cost, name), getattr(many.cost, name)[keep]), name
        assert np.array_equal(one.chip, many.chip[keep]) and np.array_equal(one.tp, many.tp[keep])


def test_which_gpus_go_past_one_node():
    """GPUs with a known scale-out bandwidth only (MI325X: none sourced); TPUs stay one slice;
    node counts are powers of two up to max_nodes; an NVL72 rack is one node of 72."""
    chips = load_chips(prices={"mi325x": 3.0})
    t = build_table(load_model("llama3-70b"), chips, Workload(slo_ms=50), Book(), ("bf16",), ("bf16",), max_nodes=8)
    multi = {(str(c), int(n), str(s)) for c, n, s in zip(t.chip, t.nodes, t.topology) if n > 1}
    by_chip = {c: sorted({(n, s) for cc, n, s in multi if cc == c}) for c, _, _ in multi}
    assert set(by_chip) == {"a100", "h100", "h200", "b200", "gb200", "mi300x"}
    assert by_chip["h100"] == [(2, "16"), (4, "32"), (8, "64")]
    assert by_chip["gb200"] == [(2, "144"), (4, "288"), (8, "576")]
    # a dense model: one layout per node count, a pipeline of tensor-parallel nodes
    rows = (t.chip == "h100") & (t.nodes == 4)
    assert t.pp[rows].tolist() == [4] and t.tp[rows].tolist() == [32] and t.attention_dp[rows].tolist() == [1]


def test_moe_layouts_past_one_node():
    """DeepSeek-V3 over 2 H100 nodes: a pipeline with each stage split as one node is (d, e in
    {1, 8}), and the experts over all 16 with attention data parallel 16 or 2 (tensor parallel
    8 inside each node); never tensor parallelism across nodes."""
    t = build_table(load_model("deepseek-v3"), {"h100": load_chips()["h100"]}, Workload(), Book(), ("fp8",), ("fp8",))
    two = t.nodes == 2
    got = sorted(zip(t.pp[two].tolist(), t.attention_dp[two].tolist(), t.ep[two].tolist()))
    assert got == [(1, 2, 16), (1, 16, 16), (2, 1, 1), (2, 1, 8), (2, 8, 1), (2, 8, 8)]


@pytest.mark.parametrize(
    "kw,message",
    [
        (dict(topology="12"), "topology '12' is not a h100 slice; valid: 1, 2, 4, 8, or 16, 24"),
        (dict(topology="16", pp=4), "--pp 4 --attention-dp 1 --ep 1 is not a layout of llama3-405b over 2 h100 nodes"),
        (dict(topology="16", tp=8), "--tp 8: a slice of 2 h100 nodes is one replica of all 16 GPUs"),
        (dict(topology="8", pp=2), "--pp 2: pipeline stages span nodes"),
        (dict(topology=str(8 * (MAX_NODES + 1))), f"topology '{8 * (MAX_NODES + 1)}' is not a h100 slice"),
    ],
)
def test_bad_layouts_are_one_line_errors(kw, message):
    with pytest.raises(InputError, match="^" + message.replace("(", r"\(").replace("+", r"\+")) as err:
        _405b(1, **kw)
    assert "\n" not in str(err.value)


def test_no_scale_out_figure_no_multi_node_slice():
    chips = load_chips(prices={"mi325x": 3.0})
    with pytest.raises(InputError, match="knows no scale-out bandwidth for mi325x"):
        evaluate(
            "llama3-70b", Workload(), chip="mi325x", topology="16", weights="bf16", kv="bf16", batch=1, chips=chips
        )
    with pytest.raises(InputError, match="is not a tpu-v5e slice"):
        evaluate("llama3-70b", Workload(), chip="tpu-v5e", topology="16", weights="bf16", kv="bf16", batch=1)


@pytest.mark.parametrize("bad", [0, MAX_NODES + 1, 2.5])
def test_max_nodes_is_checked(bad):
    with pytest.raises(InputError, match="max_nodes"):
        Search(max_nodes=bad)


def test_explanations_name_the_nodes_and_the_binding_link():
    w = Workload(slo_ms=150, serving="decode-only")
    chips = load_chips()
    m = load_model("deepseek-v3")
    t = single_candidate(m, chips["h100"], "32", None, "fp8", "fp8", w, Book(), attention_dp=32, ep=32)
    cap = int(comms.batch_caps(t, w)[0])
    # by hand: the NIC leg of the all-to-all (24 of 32 expert chips are in other nodes) against
    # the MoE layer's weight reads (its dense part on each of 32 groups, the experts touched)
    per_seq = 2 * 8 * 7168 * 2 / (32 * 32) * (24 / W_OUT)
    work = [(232_980_480 * 32 + 256 * 44_040_192 * (1 - (1 - 8 / 256) ** b)) / (32 * W) for b in (cap, cap + 1)]
    assert cap * per_seq <= work[0] and (cap + 1) * per_seq > work[1]
    text = comms.explain(t, 0, cap, w)
    assert "across nodes" in text and "scale-out leg to the other 3 nodes (50 GB/s per chip)" in text
    p = single_candidate(load_model("llama3-405b"), chips["h100"], "32", None, "bf16", "bf16", w, Book())
    assert "(4 nodes of 8)" in hbm.explain(p, 0, 413, w)
    assert "pipeline stages over the scale-out network, 50 GB/s per chip" in latency.explain(p, 0, 413, w)
    assert "inside each node" in comms.explain(p, 0, 413, w)


def test_issue_targets_405b_and_deepseek_on_h100_serve_on_several_nodes():
    for model, dtype in (("llama3-405b", "bf16"), ("deepseek-v3", "fp8")):
        r = optimize(model, Workload(slo_ms=150), search=Search(chips=["h100"], weights=[dtype], kv=[dtype]))
        b = r.best
        assert r.status == "optimal" and b.nodes >= 2 and b.chips >= 16, model
        assert b.tp == b.chips == 8 * b.nodes and b.tp % b.pp == 0
        one = optimize(
            model, Workload(slo_ms=150), search=Search(chips=["h100"], weights=[dtype], kv=[dtype], max_nodes=1)
        )
        assert one.status == "infeasible" and "HBM" in one.reason


def test_issue_target_deepseek_on_32_gb200s_is_one_nvlink_domain():
    e = evaluate("deepseek-v3", Workload(), chip="gb200", topology="32", weights="fp8", kv="fp8", batch=64)
    assert (e.chips, e.tp, e.nodes, e.pp, e.fits) == (32, 32, 1, 1, True)
    assert "pipeline" not in e.breakdown_ms


def test_cli_reports_the_layout_and_takes_the_options():
    args = ["--model", "llama3-405b", "--chip", "h100", "--topology", "32", "--weights", "bf16", "--kv", "bf16"]
    r = CliRunner().invoke(main, ["evaluate", *args, "--batch", "64", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["nodes"], d["pp"], d["tp"], d["ep"], d["attention_dp"]) == (4, 4, 32, 1, 1)
    assert d["breakdown_ms"]["pipeline"] > 0
    base = ["optimize", "--model", "llama3-405b", "--chip", "h100", "--weights", "bf16", "--kv", "bf16"]
    r = CliRunner().invoke(main, [*base, "--slo-ms", "150", "--json"])
    best = json.loads(r.output)["best"]
    assert best["nodes"] == DEFAULT_MAX_NODES and best["pp"] == best["nodes"] and best["chips"] == 8 * best["nodes"]
    assert best["prefill"]["nodes"] >= 2
    r = CliRunner().invoke(main, [*base, "--slo-ms", "150", "--max-nodes", "2", "--json"])
    assert json.loads(r.output)["best"]["nodes"] == 2
    r = CliRunner().invoke(main, [*base, "--slo-ms", "150", "--max-nodes", "0"])
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert f"[default: {DEFAULT_MAX_NODES}]" in CliRunner().invoke(main, ["optimize", "--help"]).output


def test_demand_mode_counts_whole_multi_node_replicas():
    r = optimize(
        "llama3-405b", Workload(slo_ms=150), search=Search(chips=["h100"], weights=["bf16"], kv=["bf16"]), qps=5
    )
    d = r.deployment
    assert d.status == "optimal" and d.qps_capacity >= 5
    for entry in d.decode + d.prefill:
        assert entry.nodes >= 2 and entry.chips == 8 * entry.nodes
    assert d.total_chips == sum(e.chips * e.slices for e in d.decode + d.prefill)


def test_a_plan_pool_may_be_a_gb200_rack():
    """A plan pool of 72 GB200s (one NVL72 rack) serves DeepSeek-V3 inside the rack; a pool's
    shapes may name multi-node replicas of other GPUs ("16": two H100 nodes)."""
    from optimizer.planning import plan
    from optimizer.planning.spec import PlanModel, PlanSpec, Pool

    model = PlanModel(model="deepseek-v3", demand_qps=(2.0,), slo_ms=100, weights=("fp8",), kv=("fp8",))
    result = plan(PlanSpec(models=(model,), pools=(Pool(chip="gb200", quota_chips=72),), periods=1))
    assert result.status in ("optimal", "feasible")
    entries = [e for mp in result.models for e in mp.entries]
    assert entries and all(int(e.topology) <= 72 for e in entries)
    h100 = Pool(chip="h100", quota_chips=64, shapes=("16",))
    result = plan(PlanSpec(models=(model,), pools=(h100,), periods=1))
    entries = [e for mp in result.models for e in mp.entries]
    assert result.status in ("optimal", "feasible") and {e.topology for e in entries} == {"16"}
    with pytest.raises(InputError, match="'12' is not a h100 slice"):
        plan(PlanSpec(models=(model,), pools=(Pool(chip="h100", quota_chips=64, shapes=("12",)),), periods=1))


def test_zoo_rows_and_the_by_batch_view_carry_the_layout():
    from optimizer.frontier import by_batch
    from optimizer.zoo import COLUMNS
    from optimizer.zoo_solve import _row

    r = optimize("llama3-405b", Workload(slo_ms=150), search=Search(chips=["h100"], weights=["bf16"], kv=["bf16"]))
    row = _row({"model": "llama3-405b"}, r)
    assert {"pp", "nodes"} <= set(COLUMNS) and (row["pp"], row["nodes"]) == (r.best.pp, r.best.nodes) == (4, 4)
    points = by_batch(
        load_model("llama3-405b"),
        Workload(),
        chip=load_chips()["h100"],
        topology="16",
        tp=None,
        weights="bf16",
        kv="bf16",
        max_batch=3,
    )
    # below pp = 2 sequences the stages idle: batch 1 costs what batch 2 costs, and says so
    assert points[0].step_ms == points[1].step_ms and points[0].kv_ms == points[1].kv_ms
    assert points[2].step_ms > points[1].step_ms
