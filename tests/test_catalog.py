"""Chip and model catalogs: the chapter's v5e constants, the zoo, config.json loading."""

from __future__ import annotations

import json

import pytest

from optimizer import InputError, load_chips, load_model
from optimizer.candidates import parallel_layouts


def test_v5e_has_the_chapters_constants(chips):
    """TPU v5e: 1.97e14 bf16, 3.94e14 int8, 16 GB, 8.2e11 B/s, 4.5e10 B/s per link, $1.20."""
    v = chips["tpu-v5e"]
    assert (v.bf16_flops, v.int8_flops, v.hbm_bytes, v.hbm_bytes_per_s, v.link_bytes_per_s, v.usd_per_chip_hour) == (
        1.97e14,
        3.94e14,
        16e9,
        8.2e11,
        4.5e10,
        1.20,
    )
    assert v.ici_bytes_per_s_per_axis == 9e10
    assert v.topologies == ("1x1", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16")


def test_every_chip_figure_has_a_source(chips):
    """Specs, price and topologies each cite a source with a date."""
    for chip in chips.values():
        assert {"specs", "price", "topologies"} <= set(chip.sources), chip.name
    assert all(len(parse) == 3 for parse in (t.split("x") for t in chips["tpu-v5p"].topologies))


def test_gpu_nvlink_matches_design(chips):
    """W_ici on GPUs is the one-way NVLink bandwidth: 4.5e11 H100/H200, 9e11 B200, 3e11 A100."""
    assert [chips[n].ici_bytes_per_s_per_axis for n in ("h100", "h200", "b200", "a100")] == [4.5e11, 4.5e11, 9e11, 3e11]


@pytest.mark.parametrize(
    "name,params",
    [
        ("llama3-8b", 8.03e9),
        ("llama3-70b", 70.55e9),
        ("llama3-405b", 405.85e9),
        ("llama2-7b", 6.74e9),
        ("llama2-70b", 68.98e9),
        ("gemma-2-27b", 27.23e9),
        ("qwen2.5-72b", 72.7e9),
        ("mistral-7b", 7.24e9),
    ],
)
def test_parameter_counts(name, params):
    """Counts from the formula agree with the model cards (norms and biases ignored)."""
    assert load_model(name).param_count == pytest.approx(params, rel=2e-3)


def test_aliases_resolve_to_the_same_model():
    """3.1 names and Hugging Face ids are aliases."""
    assert load_model("llama3.1-70b") == load_model("llama3-70b")
    assert load_model("meta-llama/Llama-3.1-405B-Instruct").name == "llama3-405b"


def test_config_json_path_and_head_dim_default(tmp_path):
    """A config.json loads; head_dim defaults to hidden/heads, KV heads to the query heads."""
    cfg = {
        "num_hidden_layers": 32,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_attention_heads": 32,
        "vocab_size": 32000,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = load_model(tmp_path / "config.json")
    assert (m.head_dim, m.num_kv_heads) == (128, 32)
    assert m.param_count == load_model("llama2-7b").param_count
    assert load_model(tmp_path) == m  # a directory holding config.json


def test_price_override_and_unknown_chip():
    """Prices are overridable; unknown chips in a price list are errors."""
    assert load_chips(prices={"h100": 2.0})["h100"].usd_per_chip_hour == 2.0
    with pytest.raises(InputError, match="unknown chip"):
        load_chips(prices={"h999": 2.0})


def test_parallel_layouts_keep_the_most_axes():
    """On 2x2x4, 4-way parallelism over two axes beats one axis; Y=1 means pure replicas."""
    assert parallel_layouts((2, 2, 4)) == [(1, 0), (2, 1), (4, 2), (8, 2), (16, 3)]
    assert parallel_layouts((4, 8)) == [(1, 0), (4, 1), (8, 1), (32, 2)]
    assert parallel_layouts((8,)) == [(1, 0), (8, 1)]
