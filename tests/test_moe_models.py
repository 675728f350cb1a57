"""Issue 13: mixture-of-experts, latent-attention, windowed and linear-attention models."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main
from optimizer import Search, Workload, evaluate, optimize
from optimizer.models import load_model

# (model, published total, published active, whether the author's active figure counts the
# input embedding table): DeepSeek-V3 report, Kimi-K2 card, Qwen3 report, gpt-oss card
# ("we count the unembedding, not the embedding"), Mixtral paper, Llama 4 card.
PUBLISHED = [
    ("deepseek-v3", 671e9, 37e9, True),
    ("kimi-k2", 1.04e12, 32e9, True),
    ("qwen3-235b-a22b", 235e9, 22e9, True),
    ("gpt-oss-120b", 117e9, 5.1e9, False),
    ("mixtral-8x7b", 46.7e9, 12.9e9, True),
    ("llama4-maverick", 400e9, 17e9, True),
]


@pytest.mark.parametrize("name,total,active,with_lookup", PUBLISHED)
def test_parameter_counts_within_3_percent_of_published(name, total, active, with_lookup):
    m = load_model(name)
    ours = m.active_param_count + (m.d_model * m.vocab if with_lookup and not m.tie_embeddings else 0)
    assert m.param_count == pytest.approx(total, rel=0.03)
    assert ours == pytest.approx(active, rel=0.03)


def test_kv_sizes_by_hand():
    # latent attention: one (512 + 64)-element vector per token and layer, 61 layers, fp8
    assert load_model("deepseek-v3").kv_bytes_per_token("fp8") == (512 + 64) * 61
    # gpt-oss-120b: 8 KV heads of 64, 18 full layers and 18 windowed at 128 tokens, bf16
    per = 2 * 8 * 64 * 2
    assert load_model("gpt-oss-120b").kv_bytes_per_sequence(8192, "bf16") == per * (18 * 8192 + 18 * 128)
    # a linear-attention model's state does not grow with the context
    q = load_model("qwen3.5-35b-a3b")
    grow = q.kv_bytes_per_sequence(16384, "bf16") - q.kv_bytes_per_sequence(8192, "bf16")
    assert grow == 2 * 2 * 256 * 2 * 10 * 8192  # 2 KV heads of 256; only its 10 full-attention layers grow


def test_experts_touched_uniform_routing():
    m = load_model("mixtral-8x7b")  # 2 of 8
    assert m.experts_touched(1) == pytest.approx(2.0)
    assert m.experts_touched(2) == pytest.approx(8 * (1 - 0.75**2))


def test_deepseek_v3_on_one_h200_node_with_expert_or_attention_parallelism():
    search = Search(chips=["h200"], weights=["fp8"], kv=["fp8"], max_nodes=1)
    r = optimize("deepseek-v3", Workload(slo_ms=60), search=search)
    assert r.status == "optimal" and r.best.chips == 8 and r.best.nodes == 1
    assert r.best.attention_dp > 1 or r.best.ep > 1


def test_deepseek_v3_on_h100_needs_two_nodes():
    """One 8-GPU H100 node cannot hold DeepSeek-V3 in fp8 (the HBM reason); with replicas over
    several nodes (the default search) it is served on two or more, its layout in the answer."""
    one = Search(chips=["h100"], weights=["fp8"], kv=["fp8"], max_nodes=1)
    r = optimize("deepseek-v3", Workload(slo_ms=60), search=one)
    assert r.status == "infeasible" and "HBM" in r.reason.upper()
    r = optimize("deepseek-v3", Workload(slo_ms=60), search=Search(chips=["h100"], weights=["fp8"], kv=["fp8"]))
    b = r.best
    assert r.status == "optimal" and b.nodes >= 2 and b.chips >= 16 and b.chips == b.tp == 8 * b.nodes
    assert b.pp in (1, b.nodes) and (b.pp > 1 or b.ep == b.tp)


def test_evaluate_reports_expert_terms_and_kv_per_sequence():
    e = evaluate("deepseek-v3", Workload(), chip="h200", topology="8", weights="fp8", kv="fp8", batch=64)
    assert e.kv_bytes_per_sequence == (512 + 64) * 61 * 8192
    assert e.breakdown_ms["experts"] > 0 and "moe_collectives_per_layer" in e.breakdown_ms


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"num_local_experts": 8}, "lacks key 'num_experts_per_tok'"),
        ({"num_local_experts": 8, "num_experts_per_tok": 9}, "exceeds"),
        ({"attention_k_eq_v": True}, "'attention_k_eq_v'"),
        ({"layer_types": ["chunked_attention"] * 2}, "layer type 'chunked_attention'"),
        ({"kv_lora_rank": 512}, "lacks key 'qk_rope_head_dim'"),
    ],
)
def test_bad_moe_configs_are_one_line_errors(tmp_path, extra, message):
    base = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
    f = tmp_path / "config.json"
    f.write_text(json.dumps({**base, "vocab_size": 100, **extra}))
    r = CliRunner().invoke(
        main,
        [
            "evaluate",
            "--model",
            str(f),
            "--chip",
            "h100",
            "--topology",
            "1",
            "--weights",
            "bf16",
            "--kv",
            "bf16",
            "--batch",
            "1",
        ],
    )
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output
