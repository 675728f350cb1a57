"""Prefill servers, TTFT, co-located serving (issue 3), against the chapter and the formulas."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main, optimize_cmd
from optimizer.configuration import whole_ratio
from optimizer.profiles import Book
from tests.helpers import solve


def run(cmd, args):
    return CliRunner().invoke(cmd, args)


def test_evaluate_reports_the_chapters_prefill_and_ratio():
    """70B bf16 on 4x4 at batch 42, 8,192-token prompts at 40% MFU: 917 ms, ~3.9 servers per replica."""
    r = run(
        main,
        [
            "evaluate",
            "--model",
            "llama3-70b",
            "--chip",
            "tpu-v5e",
            "--topology",
            "4x4",
            "--weights",
            "bf16",
            "--kv",
            "bf16",
            "--batch",
            "42",
            "--prompt-len",
            "8192",
            "--prefill-mfu",
            "0.4",
            "--json",
        ],
    )
    d = json.loads(r.output)
    assert d["prefill_ms"] == pytest.approx(916.8229046448731, rel=1e-9)
    assert d["prefill_servers_per_replica"] == pytest.approx(3.8870975809945856, rel=1e-9)
    assert d["prompt_fits"] is True


def test_prefill_time_scales_inversely_with_mfu_and_chips():
    """T_prefill = 2PT/(Y*C*MFU): halving the MFU doubles it; 4x8 halves it against 4x4."""
    base = [
        "evaluate",
        "--model",
        "llama3-70b",
        "--chip",
        "tpu-v5e",
        "--weights",
        "int8",
        "--kv",
        "int8",
        "--batch",
        "1",
        "--prompt-len",
        "4096",
        "--json",
    ]
    a = json.loads(run(main, [*base, "--topology", "4x4"]).output)["prefill_ms"]
    b = json.loads(run(main, [*base, "--topology", "4x4", "--prefill-mfu", "0.2"]).output)["prefill_ms"]
    c = json.loads(run(main, [*base, "--topology", "4x8"]).output)["prefill_ms"]
    assert b == pytest.approx(2 * a) and c == pytest.approx(a / 2)
    assert a == pytest.approx(2 * 70_552_387_584 * 4096 / (16 * 1.97e14 * 0.4) * 1e3)


@pytest.mark.parametrize(
    "ratio,text", [(3.8870975809945856, "4:1"), (9.615, "10:1"), (1.52, "3:2"), (0.34, "1:3"), (1.0, "1:1")]
)
def test_whole_number_ratio_within_5_percent(ratio, text):
    """The smallest whole prefill:decode ratio within 5% of the exact one."""
    assert whole_ratio(ratio) == text
    p, d = map(int, text.split(":"))
    assert abs(p / d - ratio) <= 0.05 * ratio


def test_best_has_the_prefill_keys_and_cost_adds_up():
    """best.prefill and its ratio; queries per dollar counts decode and prefill cost together."""
    r = solve("llama3-70b", 30, chip_names=["tpu-v5e", "h100"])
    b = r.best
    assert {"chip", "topology", "chips", "tp", "weights", "prefill_ms"} <= set(r.to_dict()["best"]["prefill"])
    assert (b.prefill.weights, b.prefill.kv) == (b.weights, b.kv)
    p = b.prefill
    prefill_usd = p.tp * (p.cost_per_hour / p.chips) * p.prefill_ms / 1e3 / 3600
    decode_usd = 1 / b.decode_queries_per_dollar
    assert b.queries_per_dollar == pytest.approx(1 / (decode_usd + prefill_usd), rel=1e-12)
    assert b.ttft_ms == p.prefill_ms
    step_s = b.step_ms / 1e3
    assert b.prefill_servers_per_replica == pytest.approx(b.batch / (step_s * 512) * p.prefill_ms / 1e3)
    assert b.usd_per_million_input_tokens == pytest.approx(prefill_usd * 1e6 / 7680)
    assert b.usd_per_million_output_tokens == pytest.approx(decode_usd * 1e6 / 512)


def test_prefill_can_run_on_a_different_chip():
    """Prefill is compute-bound and decode bandwidth-bound: here they land on different chips (on
    the whole catalog the MI300X's low price wins both, so the chips are those of 2025)."""
    chips = ["a100", "b200", "h100", "h200", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e"]
    b = solve("llama3-70b", 50, ttft_ms=1000, chip_names=chips).best
    assert b.prefill.chip != b.chip


def test_ttft_target_binds_and_never_helps():
    """A TTFT target keeps every chosen prefill within it, and tightening it never raises the optimum."""
    free = solve("llama3-70b", 30).best
    tight_ms = free.ttft_ms * 0.5
    tight = solve("llama3-70b", 30, ttft_ms=tight_ms).best
    assert tight.ttft_ms <= tight_ms < free.ttft_ms
    assert tight.queries_per_dollar < free.queries_per_dollar


def test_impossible_ttft_is_an_answer_with_the_reason():
    """10 ms for a 7,680-token 70B prompt: infeasible, naming the fastest prefill possible."""
    r = run(optimize_cmd, ["--model", "llama3-70b", "--slo-ms", "50", "--ttft-ms", "10", "--json"])
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["status"] == "infeasible" and "10 ms TTFT target is below the fastest prefill" in d["reason"]


def test_colocated_step_absorbs_the_prefill_work():
    """Co-located: the step is stretched by B*T_prefill/G, and the SLO applies to the stretched step."""
    r = solve("llama3-70b", 40, chip_names=["tpu-v5e"], serving="colocated")
    b = r.best
    assert b.prefill is None and b.serving == "colocated"
    parts = b.breakdown_ms
    assert b.step_ms == pytest.approx(parts["kv"] + parts["prefill"] + max(parts["flops"], parts["params"]))
    assert parts["prefill"] == pytest.approx(b.batch * b.ttft_ms / 512)
    assert b.step_ms <= 40
    assert b.queries_per_dollar == pytest.approx(b.decode_queries_per_dollar)


def test_compare_colocated_names_the_cheaper():
    """--compare-colocated solves both modes and names the one with more queries per dollar."""
    d = json.loads(
        run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "20", "--compare-colocated", "--json"]).output
    )
    c = d["comparison"]
    qpd = {m: c[m]["queries_per_dollar"] for m in ("colocated", "disaggregated")}
    assert c["cheaper"] == max(qpd, key=qpd.get) and c["by"] == "queries per dollar"
    assert qpd[d["serving"]] == pytest.approx(d["best"]["queries_per_dollar"])


def test_decode_only_matches_the_core_roofline():
    """--decode-only ignores prompts: no prefill, no TTFT, output-token cost only."""
    d = json.loads(
        run(
            optimize_cmd,
            [
                "--model",
                "llama3-405b",
                "--slo-ms",
                "15",
                "--chip",
                "tpu-v5e",
                "--weights",
                "int8",
                "--kv",
                "int8",
                "--decode-only",
                "--json",
            ],
        ).output
    )
    b = d["best"]
    assert b["prefill"] is None and b["ttft_ms"] is None and b["usd_per_million_input_tokens"] is None
    assert (b["topology"], b["batch"]) == ("8x8", 91)
    assert b["queries_per_dollar"] == pytest.approx(b["decode_queries_per_dollar"])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--qps", "0"], "'--qps': 0.0 is not in the range x>0"),
        (["--qps", "-5"], "'--qps': -5.0 is not in the range x>0"),
        (["--ttft-ms", "-1"], "'--ttft-ms': -1.0 is not in the range x>0"),
        (["--prefill-mfu", "0"], "'--prefill-mfu': 0.0 is not in the range 0<x<=1"),
        (["--prefill-mfu", "1.5"], "'--prefill-mfu': 1.5 is not in the range 0<x<=1"),
        (["--prompt-len", "0"], "'--prompt-len': 0 is not in the range x>=1"),
        (["--time-limit", "0"], "'--time-limit': 0.0 is not in the range x>0"),
        (["--colocated", "--decode-only"], "--colocated and --decode-only exclude each other"),
        (["--decode-only", "--compare-colocated"], "--decode-only ignores prompts"),
        (["--context", "512", "--decode-len", "512"], "give --prompt-len"),
    ],
)
def test_prefill_and_demand_bad_input(args, message):
    """Each bad prefill or demand input: exit 2 with one line naming it."""
    r = run(optimize_cmd, ["--model", "llama3-70b", "--slo-ms", "50", *args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_colocated_replicas_must_not_be_comms_bound_on_the_prompt(chips):
    """6144-way v5p is comms-bound on a prompt's tokens: a prefill server there is refused, and so
    is a co-located replica, while decode alone (batch 1) is allowed."""
    import numpy as np

    from constraints import comms, prefill
    from optimizer import load_model
    from optimizer.candidates import single_candidate
    from optimizer.workload import Workload

    m = load_model("llama3-70b")
    for serving, allowed in (("decode-only", True), ("colocated", False)):
        w = Workload(slo_ms=50, serving=serving)
        t = single_candidate(m, chips["tpu-v5p"], "16x16x24", None, "bf16", "bf16", w, Book())
        assert bool(comms.batch_caps(t, w)[0] >= 1) is allowed
    w = Workload(slo_ms=50)
    t = single_candidate(m, chips["tpu-v5p"], "16x16x24", None, "bf16", "bf16", w, Book())
    assert not prefill.server_mask(t, w)[0]
    assert comms.comms_bound(t, np.array([0]), np.array([w.prompt_tokens]))[0]


def test_prompt_longer_than_the_context_is_noted():
    """A prompt plus output longer than the context is allowed (as the chapter does) but said."""
    r = solve("llama3-8b", 20, prompt_len=8192, chip_names=["h100"])
    assert any("exceed the context" in n for n in r.notes)


def test_huge_demand_is_a_one_line_error():
    """Demands beyond the integer model's exact range: exit 2, not an overflow."""
    r = run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "20", "--qps", "1e13"])
    assert r.exit_code == 2 and "above 1e+06 queries per second" in r.output
