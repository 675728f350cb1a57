"""optimizer.render without click: results built by the library, then the key lines of their text.

(The command line echoes exactly these strings; tests/test_cli.py and the others check it through
click. frontier.cheapest_within, the frontier command's choice within the target, is tested here.)
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from optimizer import load_chips, load_model, render
from optimizer.api import Search, evaluate, optimize
from optimizer.frontier import by_batch, caveats, cheapest_within, frontier
from optimizer.models import builtin_models
from optimizer.profiles import Book, Calibrated, resolve_profile
from optimizer.result import Deployment
from optimizer.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
TABLE_HEAD = ["chip", "slice", "chips", "tp/axes", "repl", "w/kv", "batch", "step", "ms", "queries/$", "$/Mtok"]


@pytest.fixture(scope="module")
def best_405b():
    return optimize("llama3-405b", Workload(slo_ms=15))


def test_table_pads_columns_and_aligns_the_middle_ones_right():
    """First and last columns left-aligned, the others right-aligned; no trailing blanks."""
    assert render.table(["a", "bb", "c"], [["xyz", "1", "long"], ["q", "22", "z"]]).splitlines() == [
        "a    bb  c",
        "xyz   1  long",
        "q    22  z",
    ]


def test_optimize_result_header_table_prefill_and_why(best_405b):
    lines = render.optimize_result(best_405b).splitlines()
    assert lines[0] == (
        "llama3-405b: queries-per-dollar, decode step <= 15 ms, context 8192, 512 output tokens per query, "
        "7680-token prompts (disaggregated) (book profile)"
    )
    assert lines[1].startswith("status: optimal (1044 candidates, ") and lines[2] == ""
    assert lines[3].split()[: len(TABLE_HEAD)] == TABLE_HEAD and lines[3].split()[-1] == "binds"
    assert lines[4].startswith("best  ") and sum(line.startswith("alt ") for line in lines) == 9
    assert any(line.startswith("Prefill servers: ") for line in lines)
    assert any(line.startswith("Cost: ") and "per million input tokens" in line for line in lines)
    assert lines[-1].startswith("Why: batch ") and lines[-1].endswith(" (book profile).")
    assert "latency target" in lines[-1]


def test_optimize_result_decode_only_names_what_binds():
    r = optimize(
        "llama3-405b",
        Workload(slo_ms=15, serving="decode-only"),
        search=Search(chips=("tpu-v5e",), weights=("int8",), kv=("int8",)),
    )
    text = render.optimize_result(r)
    assert text.splitlines()[0].endswith("512 output tokens per query (book profile)")
    assert "best  tpu-v5e    8x8" in text and "\n#2 " in text
    assert "Why: batch 91 is capped by the interconnect" in text
    assert "Prefill servers" not in text and "Cost:" not in text


def test_optimize_result_infeasible_says_why_and_which_chips_cannot_serve():
    r = optimize("llama3-405b", Workload(slo_ms=0.005))
    lines = render.optimize_result(r).splitlines()
    assert lines[1].startswith("status: infeasible: the 0.005 ms target is below the fastest decode step")
    assert {line.split(":")[0] for line in lines[2:]} == {f"not served by {c}" for c in sorted(load_chips())}
    assert "Why:" not in "\n".join(lines)


def test_deployment_and_comparison_follow_the_answer():
    r = optimize("llama3-70b", Workload(slo_ms=50, ttft_ms=1000), qps=100, compare_colocated=True)
    text = render.optimize_result(r)
    assert "(disaggregated, TTFT <= 1000 ms)" in text.splitlines()[0]
    assert "\n\nDeployment for 100 queries/s: optimal\nrole " in text
    assert "replicas/servers" in text and "/month (730 h); serves " in text
    last = text.splitlines()[-1]
    assert last.startswith("Compared (deployment cost per hour): colocated: ") and "; cheaper: " in last


def test_deployment_without_slices_gives_the_reason():
    d = Deployment(
        qps=5.0,
        status="infeasible",
        reason="no configuration serves",
        decode=[],
        prefill=[],
        cost_per_hour=0.0,
        cost_per_month=0.0,
        qps_capacity=0.0,
        headroom_qps=0.0,
        headroom_pct=0.0,
        total_chips=0,
        seconds=0.0,
        gap=0.0,
    )
    assert render.deployment(d) == "\nDeployment for 5 queries/s: infeasible\n  no deployment: no configuration serves"


def test_comparison_of_an_infeasible_mode():
    c = {
        "colocated": {"queries_per_dollar": None, "cost_per_hour": None},
        "disaggregated": {"queries_per_dollar": 1234.5, "cost_per_hour": None},
        "cheaper": "disaggregated",
        "by": "queries per dollar",
    }
    assert render.comparison(c) == (
        "\nCompared (queries per dollar): colocated: infeasible; disaggregated: 1,234.5 queries/$; "
        "cheaper: disaggregated"
    )


def test_evaluation_book_profile():
    e = evaluate("llama3-70b", Workload(), chip="tpu-v5e", topology="4x4", weights="bf16", kv="bf16", batch=42)
    lines = render.evaluation(e).splitlines()
    assert lines[0] == (
        "llama3-70b on tpu-v5e 4x4: 16-way model parallel over 2 axes, 1 replica; bf16 weights, bf16 KV; "
        "batch 42, context 8192"
    )
    assert lines[1].startswith("HBM per replica  256.0 GB: ") and "fits: yes" in lines[1]
    assert lines[2].startswith("decode step      ") and " = KV " in lines[2] and "max(FLOPs " in lines[2]
    assert [line.split()[0] for line in lines[3:]] == ["critical", "throughput", "cost", "prefill"]
    assert "at 0.4 MFU" in lines[-1]


def test_evaluation_that_does_not_fit_says_so_before_the_figures():
    e = evaluate("llama3-70b", Workload(), chip="tpu-v5e", topology="1x1", weights="bf16", kv="bf16", batch=42)
    lines = render.evaluation(e).splitlines()
    assert lines[0].split(": ")[1].startswith("no model parallelism, 1 replica;")
    assert "fits: NO" in lines[1] and lines[2].strip().startswith("(does not fit:")
    assert "(the prompt does not fit)" in lines[-1]


def test_evaluation_calibrated_profile():
    e = evaluate(
        "llama3-70b",
        Workload(),
        profile=resolve_profile("calibrated"),
        chip="h100",
        topology="8",
        weights="fp8",
        kv="fp8",
        batch=42,
    )
    text = render.evaluation(e)
    assert "= overheads and collectives " in text and "(calibrated profile" in text
    assert "at the calibrated rate" in text and "MFU" not in text


def test_frontier_points_table_json_and_file():
    pts = frontier(load_model("llama3-8b"), Workload(context=2048), chips={"h100": load_chips()["h100"]})
    lines = render.frontier_points(pts).splitlines()
    assert lines[0].split() == ["context", "chip", "slice", "tp", "w/kv", "batch", "step", "ms", "$/Mtok", "out"]
    assert len(lines) == len(pts) + 1 and lines[1].split()[:2] == ["2048", "h100"]
    about = caveats(Book(), ["h100"])
    assert about == {"notes": [], "assumed": [], "uncertainty": None}  # the book: a bound, no priors
    assert json.loads(render.points_json(pts, about)) == {"points": [p.to_dict() for p in pts], **about}
    calibrated = caveats(Calibrated(engine="vllm-tpu"), ["tpu-v6e", "tpu-v6e"])
    assert calibrated["uncertainty"]["step_pct"] > 0 and calibrated["assumed"]
    assert any("tpu-v6e" in n and "assumed" in n for n in calibrated["notes"])
    band = render.caveat_lines(calibrated)[-1]
    assert band.startswith(f"Band: every step ±{calibrated['uncertainty']['step_pct']:.0f}%")
    assert json.loads(render.points_file(pts, ".JSON")) == [p.to_dict() for p in pts]
    text = render.points_file(pts, ".csv")
    assert text.startswith("context,chip,topology,") and text.count("\r\n") == len(pts) + 1
    assert len(list(csv.DictReader(io.StringIO(text)))) == len(pts)
    assert render.points_file([], ".csv") == "context\r\n"


def test_batch_points_table():
    pts = by_batch(
        load_model("llama3-70b"),
        Workload(context=8192),
        chip=load_chips()["tpu-v5e"],
        topology="4x4",
        tp=None,
        weights="int8",
        kv="int8",
    )
    lines = render.batch_points(pts).splitlines()
    assert lines[0].split() == ["context", "batch", "step", "ms", "params", "kv", "flops", "tok/ms/chip", "bound"]
    assert lines[1].split()[:2] == ["8192", "1"] and lines[1].endswith("memory")
    assert len(lines) == len(pts) + 1
    assert render.by_batch_title("m", "tpu-v5e", "4x4", "int8", "int8", pts[0].tp, "book") == (
        f"m on tpu-v5e 4x4 ({pts[0].tp}-way model parallel), int8 weights, int8 KV: decode step and "
        "throughput per chip against batch (book profile)"
    )


def test_frontier_messages():
    assert render.no_frontier("m", [2048, 8192]) == (
        "nothing to show: m fits on none of the chips asked with one sequence of 2048, 8192 tokens"
    )
    assert render.none_within(0.5, 8192) == "no configuration meets 0.5 ms at 8,192 tokens"
    assert render.wrote("f.csv", 3) == "wrote f.csv (3 points)"


# ----------------------------------------------------------------------------- cheapest_within


@pytest.fixture(scope="module")
def two_contexts():
    mdl, chips = load_model("llama3-8b"), {"h100": load_chips()["h100"]}
    return [p for ctx in (2048, 8192) for p in frontier(mdl, Workload(context=ctx), chips=chips)]


@pytest.mark.parametrize("slo_ms", [0.5, 5.0, 20.0, 1e6])
def test_cheapest_within_is_the_cheapest_point_meeting_the_target(two_contexts, slo_ms):
    for context in (2048, 8192):
        ok = [p for p in two_contexts if p.context == context and p.step_ms <= slo_ms]
        got = cheapest_within(two_contexts, slo_ms, context)
        assert got is (min(ok, key=lambda p: p.usd_per_million_tokens) if ok else None)
        if got is not None:
            assert render.cheapest_label(got, slo_ms).startswith(f"cheapest within {slo_ms:g} ms at {context:,} tokens")
    everywhere = [p for p in two_contexts if p.step_ms <= slo_ms]
    assert cheapest_within(two_contexts, slo_ms) is min(everywhere, key=lambda p: p.usd_per_million_tokens)


def test_cheapest_within_none_below_the_fastest_point_and_first_of_equals(two_contexts):
    fastest = min(p.step_ms for p in two_contexts)
    assert cheapest_within(two_contexts, fastest / 2) is None
    assert cheapest_within(two_contexts, 1e6, context=123) is None
    p = two_contexts[0]
    twins = [replace(p, step_ms=1.0, usd_per_million_tokens=2.0), replace(p, step_ms=0.5, usd_per_million_tokens=2.0)]
    assert cheapest_within(twins, 1.0) is twins[0]  # equal cost: the first (the frontier lists the fastest first)
    assert cheapest_within(twins, 0.9) is twins[1]


# ----------------------------------------------------------------------------- listings, zoo


def test_models_and_chips_listings():
    models = builtin_models()
    lines = render.models_table(models).splitlines()
    assert lines[0].split()[:4] == ["model", "params", "active", "layers"] and len(lines) == len(models) + 1
    assert any(line.startswith("llama3-70b ") and "70.55B" in line for line in lines)
    listed = json.loads(render.models_json(models))["models"]
    assert [m["name"] for m in listed] == list(models) and set(listed[0]["kv_bytes_per_token"]) == {
        "bf16",
        "int8",
        "int4",
    }
    chips = load_chips(unpriced=True)
    lines = render.chips_table(chips).splitlines()
    rows = lines[1 : 1 + len(chips)]
    assert lines[0].startswith("chip     bf16 TFLOP/s") and [line.split()[0] for line in rows] == list(chips)
    assert lines[-1].startswith("no published price: b300, gb300, tpu-v7, mi325x, mi355x")
    assert {c["name"] for c in json.loads(render.chips_json(chips))["chips"]} == set(chips)


def test_zoo_summary_best_chip_and_failures():
    rows = [
        {"model": "a", "chip": "h100", "queries_per_dollar": 10.0, "usd_per_million_tokens": 0.5, "status": "optimal"},
        {"model": "a", "chip": "b200", "queries_per_dollar": 20.0, "usd_per_million_tokens": 0.25, "status": "optimal"},
        {
            "model": "a",
            "chip": None,
            "queries_per_dollar": None,
            "usd_per_million_tokens": None,
            "status": "infeasible",
        },
        {"model": "b", "chip": None, "queries_per_dollar": None, "usd_per_million_tokens": None, "status": "error"},
    ]
    assert render.zoo_summary(rows).splitlines() == [
        "model  scenarios  best chip  best $/Mtok  infeasible  errors",
        "a              3       b200        0.250           1  0",
        "b              1          -            -           0  1",
    ]
    assert render.zoo_summary([]) == "nothing new to solve"
    assert render.zoo_solved(3, 1, 4, "z.csv") == "3 scenarios solved, 1 already in z.csv; 4 in the zoo"


# ----------------------------------------------------------------------------- plan, calibration


def test_fleet_plan_sections():
    from optimizer import plan

    r = plan(ROOT / "examples" / "plan.toml", time_limit_s=30)
    text = render.fleet_plan(r, "examples/plan.toml")
    lines = text.splitlines()
    assert lines[0].startswith("plan examples/plan.toml: 12 months, book profile, status ")
    assert lines[1].startswith("total $") and lines[2] == ""
    assert lines[3].split() == ["month", "on", "demand", "$", "committed", "$", "total", "$"]
    for heading in ("Bill of materials (chips per pool; slices by shape)", "Deployments (", "What binds"):
        assert any(line.startswith(heading) for line in lines), heading
    assert ("\nCommitments\n" in text) == bool(r.commitments)


def test_validation_and_calibration_reports():
    from optimizer.calibration import fit, load_runs, validate, with_catalog
    from optimizer.measurements import bundled_data

    chips = load_chips()
    m = load_runs(bundled_data(), chips)
    v = validate(m, resolve_profile("calibrated"), leave_one_model_out=False)
    lines = render.validation(v, "data.csv", m).splitlines()
    assert lines[0] == f"calibrated profile on data.csv: {len(m)} rows, {len(m.skipped)} skipped"
    assert lines[1].split() == ["model", "system", "engine", "precision", "rows", "TPOT", "MAPE", "TTFT", "MAPE"]
    assert any(line.split()[:2] == ["all", str(len(m))] for line in lines)
    assert "Leave one model out" not in "\n".join(lines) and any(
        line.startswith("Chip ordering: on ") for line in lines
    )
    assert lines[-1].startswith("skipped line ")
    params = with_catalog(fit(m, "test"), chips)
    lines = render.calibration(params, v, "data.csv", m, "out.toml").splitlines()
    assert lines[0] == f"fitted to {len(m)} rows of data.csv ({len(m.skipped)} skipped); written to out.toml"
    assert lines[1].startswith("collective latency  ") and lines[3].startswith("chip ")
    assert lines[-1].startswith("in-sample MAPE: TPOT ")
    assert json.loads(render.calibration_json(params, v, "out.toml", []))["out"] == "out.toml"
