"""The seed chapter's worked numbers (tests/data/book_visible.json, slips corrected), recomputed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optimizer import load_model
from optimizer.candidates import single_candidate
from optimizer.costmodel import prefill_servers_per_replica
from optimizer.profiles import Book
from optimizer.workload import Workload
from tests.helpers import evaluate_one, solve

CASES = {c["id"]: c for c in json.loads((Path(__file__).parent / "data" / "book_visible.json").read_text())["cases"]}
M70 = "llama3-70b"


def ev(topology, dtype, batch, context=8192, kv=None, tp=None):
    return evaluate_one(
        M70, "tpu-v5e", topology, weights=dtype, kv=kv or dtype, batch=batch, context=context, decode_len=512, tp=tp
    )


def approx(value, rel=None):
    return pytest.approx(value, rel=rel if rel is not None else 1e-9)


def test_case_file_is_the_projects_own_copy():
    """Every case of the chapter is present, read from the project's own copy in tests/data."""
    assert len(CASES) == 14


def test_ai01_kv_bytes_per_token():
    """LLaMA 3-70B stores 163,840 bytes of int8 KV per token (the chapter rounds to 160-162 kB)."""
    want = CASES["ai01_kv_bytes_per_token_70b_int8"]["expected"]["kv_bytes_per_token"]
    assert load_model(M70).kv_bytes_per_token("int8") == want
    assert ev("2x4", "int8", 1).kv_bytes_per_token == want


def test_parameter_count_follows_the_formula():
    """P = L*D*(3F + 2H(N+K)) + 2*D*V = 70.55e9 for LLaMA 3-70B."""
    assert load_model(M70).param_count == 70_552_387_584


def test_ai02_kv_at_32k_batch_240():
    """At 32k context and batch 240 the KV caches alone need ~85 v5e chips."""
    exp = CASES["ai02_kv_32k_bs240_chips"]["expected"]
    e = ev("16x16", "int8", 240, context=32768)
    assert e.kv_bytes / 240 == exp["kv_bytes_per_sequence"]
    assert e.kv_bytes == exp["kv_bytes_total_bs240"]
    assert e.hbm_used_bytes / 16e9 == approx(exp["chips_needed_raw"])


def test_ai06_comms_limit_two_axes(chips):
    """alpha = C/W_ici ~ 2189 on v5e: 26-way model parallelism over two axes (22 with v5p's 2550)."""
    exp = CASES["ai06_ici_check_2axes_70b"]["expected"]
    v5e = chips["tpu-v5e"]
    alpha = v5e.bf16_flops / v5e.ici_bytes_per_s_per_axis
    assert alpha == approx(exp["alpha_ici_v5e"])
    F = load_model(M70).d_ff
    assert F * 2 / alpha == approx(exp["y_max_two_axes"])
    assert approx(exp["y_max_two_axes_with_v5p_alpha"]) == F * 2 / 2550


def test_ai07_critical_batch_sizes():
    """B_crit = C*b_w/(2*W_hbm): 240 / 120 / 60 for bf16 / int8 / int4 weights with bf16 FLOPs."""
    exp = CASES["ai07_critical_batch_sizes_v5e"]["expected"]
    for dtype, key in (
        ("bf16", "bf16_weights_bf16_flops"),
        ("int8", "int8_weights_bf16_flops"),
        ("int4", "int4_weights_bf16_flops"),
    ):
        assert ev("4x4", dtype, 1).critical_batch == approx(exp[key])


@pytest.mark.parametrize("dtype", ["bf16", "int8", "int4"])
def test_ai08_smallest_slice(dtype):
    """The smallest v5e slice per dtype at 8k context, its free HBM and its batch of 42."""
    exp = CASES[f"ai08_min_slice_{dtype}"]["expected"]
    r = solve(M70, 1000, chip_names=["tpu-v5e"], weights=[dtype], kv=[dtype], objective="min-chips")
    assert r.best.topology == exp["min_slice"] and r.best.chips == exp["chips"]
    e = ev(exp["min_slice"], dtype, 1)
    assert e.param_bytes == exp["param_bytes"]
    assert e.kv_bytes_per_token == exp["kv_bytes_per_token"]
    assert e.param_bytes / 16e9 == approx(exp["min_chips_fractional"])
    assert e.hbm_free_bytes == exp["remaining_hbm_bytes"]
    assert e.max_batch == exp["max_batch_at_8k"]


def test_ai09_step_latency_when_hbm_is_full(chips):
    """A step that reads all of HBM takes M/W_hbm = 19.5 ms; bf16 on 4x4 at batch 42: 19.35 ms."""
    exp = CASES["ai09_step_latency_full_hbm"]["expected"]
    v5e = chips["tpu-v5e"]
    assert v5e.hbm_bytes / v5e.hbm_bytes_per_s == approx(exp["step_time_s_hbm_full_limit"])
    e = ev("4x4", "bf16", 42)
    assert e.step_ms / 1e3 == approx(exp["step_time_s_bf16_4x4_B42"])
    assert 512 * e.step_ms / 1e3 == approx(exp["decode_time_s_512_steps"])
    assert ev("2x2", "int4", 1).breakdown_ms["params"] / 1e3 == approx(exp["int4_params_only_step_s_2x2"])


@pytest.mark.parametrize("dtype,topology", [("bf16", "4x4"), ("int8", "2x4"), ("int4", "2x2")])
def test_ai10_qps_per_chip_on_smallest_slices(dtype, topology):
    """Queries per second per chip at the batch of 42 that fits (0.26 / 0.53 / 1.06)."""
    exp = CASES["ai10_qps_per_chip_min_slices"]["expected"]
    assert ev(topology, dtype, exp["batch"]).qps_per_chip == approx(exp["qps_per_chip"][dtype])


@pytest.mark.parametrize("dtype,topology", [("bf16", "4x8"), ("int8", "4x4"), ("int4", "2x4")])
def test_ai11_doubled_topology(dtype, topology):
    """Twice the smallest slice fits 138 sequences; at 138 int8/int4 are compute-bound."""
    exp = CASES["ai11_doubled_topology"]["expected"]
    e = ev(topology, dtype, 1)
    assert e.hbm_free_bytes == exp["remaining_hbm_bytes"][dtype]
    assert e.max_batch == exp["max_batch"]
    assert ev(topology, dtype, 138).qps_per_chip == approx(exp["qps_per_chip_at_138"][dtype])


def test_ai12_sharding_4x8_bf16(chips):
    """Large batch: Y <= F*n_axes/alpha = 26 (4x4 is the largest slice); small batch: F/(B*beta)."""
    exp = CASES["ai12_sharding_4x8_bf16"]["expected"]
    v5e = chips["tpu-v5e"]
    F = load_model(M70).d_ff
    assert F * 2 / (v5e.bf16_flops / v5e.ici_bytes_per_s_per_axis) == approx(exp["y_max_large_batch_two_axes"])
    beta = v5e.hbm_bytes_per_s / v5e.ici_bytes_per_s_per_axis
    assert F / (64 * beta) == approx(exp["y_max_small_batch_B64_one_axis"])
    assert ev("4x8", "bf16", 64).comms_bound is exp["comms_bound_4x8_bf16_B64"]
    # at a large (compute-bound) batch 16-way over two axes is fine and 32-way is not
    assert not ev("4x4", "bf16", 1000).comms_bound
    assert ev("4x8", "bf16", 1000).comms_bound


def prefill_s(chips, prompt_len=8192, mfu=0.4):
    """T_prefill of the cost model's own table, for 70B on a v5e 4x4 (16 chips)."""
    w = Workload(prompt_len=prompt_len)
    table = single_candidate(load_model(M70), chips["tpu-v5e"], "4x4", None, "bf16", "bf16", w, Book(mfu))
    return float(table.cost.prefill_s[0])


def test_ai14_prefill_time(chips):
    """Prefill of 8,192 tokens on 16 v5e chips at 40% MFU: 0.917 s (the chapter prints 0.91)."""
    exp = CASES["ai14_prefill_time_8k_16chips"]["expected"]
    assert prefill_s(chips) == approx(exp["prefill_time_s"])


def test_ai16_prefill_decode_ratio(chips):
    """With the batch of 42 that fits, each decode server needs ~3.9 prefill servers."""
    exp = CASES["ai16_disagg_prefill_generate_ratio"]["expected"]
    decode = ev("4x4", "bf16", exp["decode_batch"])
    assert decode.step_ms / 1e3 == approx(exp["decode_step_s"])
    prefill = prefill_s(chips)
    ratio = prefill_servers_per_replica(
        batch=decode.batch, step_s=decode.step_ms / 1e3, decode_len=512, prefill_seconds=prefill
    )
    assert ratio == approx(exp["prefill_servers_per_generate_server"])


def test_ai18_pareto_4x4_int8_2k():
    """The latency floor is the weight load (5.4 ms at batch 1); batch 120: 8.45 ms, 0.89 tokens/ms/chip."""
    exp = CASES["ai18_pareto_16chip_int8"]["expected"]
    assert ev("4x4", "int8", 1, context=2048).step_ms / 1e3 == approx(exp["min_latency_s_B1_2k"])
    e = ev("4x4", "int8", 120, context=2048)
    assert e.step_ms / 1e3 == approx(exp["step_s_B120_2k"])
    assert e.tokens_per_s_per_chip / 1e3 == approx(exp["tokens_per_ms_per_chip_B120_2k"])


def test_405b_int8_on_v5e_is_8x8_capped_by_the_interconnect():
    """The issue's acceptance case: 8x8, 64-way over both axes, step under 15 ms, comms binds."""
    r = solve("llama3-405b", 15, chip_names=["tpu-v5e"], weights=["int8"], kv=["int8"])
    b = r.best
    assert (b.topology, b.tp, b.n_axes) == ("8x8", 64, 2)
    assert b.step_ms < 15 and b.binding == ["comms"] and b.batch == 91
    assert "interconnect" in b.explanation and "64-way" in b.explanation and "2 axes" in b.explanation
