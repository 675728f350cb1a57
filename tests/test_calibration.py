"""The calibrated profile: a reproducible fit, each term's physical behaviour, validation
(skipped rows reported), the optimizer's exactness under it, and its CLI."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from optimizer import load_model
from optimizer.calibrated import (
    EFFICIENCIES,
    ENGINE_EFFICIENCIES,
    ENGINE_FRACTIONS,
    ENGINE_SHARES,
    OVERHEADS,
    CalibratedParams,
    ChipEfficiency,
    EngineOverheads,
    load_params,
    native_dtype,
    params_from_toml,
    step_terms,
)
from optimizer.calibration import (
    _least_squares,
    chip_order,
    faster_than_peak,
    fit,
    fit_warnings,
    load_runs,
    predict,
    validate,
)
from optimizer.errors import InputError
from optimizer.measurements import bundled_data, load_measurements
from optimizer.profiles import Book, Calibrated
from tests.bruteforce import brute_force, calibrated_params
from tests.helpers import solve

BUILT_IN = str(bundled_data().with_name("calibrated.toml"))


@pytest.fixture(scope="module")
def measured(chips):
    return load_runs(bundled_data(), chips)


def _terms(
    chips, tp, params: CalibratedParams, *, chip="h100", dtype="bf16", context=2048, prompt=1024, model="llama3-70b"
):
    n = len(tp)
    model = load_model(model)
    return step_terms(
        [model] * n,
        [chips[chip]] * n,
        [dtype] * n,
        np.full(n, 2.0),
        np.array(tp, float),
        np.full(n, chips[chip].link_bytes_per_s),
        np.full(n, float(context)),
        np.full(n, float(prompt)),
        [params.chip(chip)] * n,
        [params.engine("vllm")] * n,
        (params.collective_latency_s, params.hop_latency_s),
    )


def test_fit_is_reproducible_and_is_the_built_in_file(measured):
    """Refitting the bundled measurements gives the shipped parameters (deterministic fit)."""
    fitted = fit(measured)
    shipped = load_params()
    assert fitted.collective_latency_s == pytest.approx(shipped.collective_latency_s, rel=1e-6)
    for name, eff in fitted.chips.items():
        for k in EFFICIENCIES:
            assert getattr(eff, k) == pytest.approx(getattr(shipped.chips[name], k), rel=1e-6)
    for name, e in fitted.engines.items():
        for k in (*OVERHEADS, *ENGINE_FRACTIONS):
            assert getattr(e, k) == pytest.approx(getattr(shipped.engines[name], k), rel=1e-6, abs=1e-15)
    assert shipped.chips["tpu-v6e"].assumed and not shipped.chips["h100"].assumed


def test_every_efficiency_is_physical(measured):
    """No fitted or assumed efficiency leaves (0, 1]; no overhead is negative."""
    p = load_params()
    for c in p.chips.values():
        assert all(0 < getattr(c, k) <= 1 for k in EFFICIENCIES)
    for e in p.engines.values():
        assert all(getattr(e, k) >= 0 for k in OVERHEADS)
        assert all(0 < getattr(e, k) <= 1 for k in ENGINE_EFFICIENCIES)
        assert all(0 <= getattr(e, k) <= 1 for k in ENGINE_SHARES)


def test_a_parameter_file_without_the_later_engine_terms_means_none_of_their_cost():
    """A file written before the per-MoE-layer overhead, the dequantization efficiency and the
    split of the wait for KV space existed loads as the model of its time: no such cost, and the
    whole wait before the first token."""
    text = "\n".join(
        line
        for line in load_params().to_toml().splitlines()
        if not line.startswith(("moe_layer_overhead_s", "dequant_efficiency", "kv_wait_in_ttft"))
    )
    old = params_from_toml(text, "old.toml")
    assert all(
        e.moe_layer_overhead_s == 0.0 and e.dequant_efficiency == 1.0 and e.kv_wait_in_ttft == 1.0
        for e in old.engines.values()
    )
    bad = load_params().to_toml().replace("dequant_efficiency = ", "dequant_efficiency = 1.5 #", 1)
    with pytest.raises(InputError, match=r"dequant_efficiency must be in \(0, 1\]"):
        params_from_toml(bad, "bad.toml")
    typo = load_params().to_toml().replace("dequant_efficiency = ", "dequant_eficiency = ", 1)
    with pytest.raises(InputError, match=r"engines.sglang has no term 'dequant_eficiency' \(terms: admission_steps, "):
        params_from_toml(typo, "typo.toml")
    bad = load_params().to_toml().replace("kv_wait_in_ttft = ", "kv_wait_in_ttft = -0.1 #", 1)
    with pytest.raises(InputError, match=r"kv_wait_in_ttft must be in \[0, 1\] \(a share\), got -0.1"):
        params_from_toml(bad, "bad.toml")


def test_the_wait_for_kv_space_moves_between_ttft_and_tpot_and_nowhere_else(measured):
    """Clients beyond the sequences whose KV fits wait W = (B - n)/X: a share phi of it before
    the first token, the rest spread over the G output tokens. Where every client fits, phi
    changes nothing."""
    p = load_params()

    def with_share(phi: float):
        return replace(p, engines={n: replace(e, kv_wait_in_ttft=phi) for n, e in p.engines.items()})

    before_tpot, before_ttft = predict(measured, with_share(1.0))
    after_tpot, after_ttft = predict(measured, with_share(0.0))
    wait = before_ttft - after_ttft
    assert (wait >= -1e-9).all() and (wait > 1.0).any()  # some runs oversubscribe the KV cache
    assert np.allclose(after_tpot - before_tpot, wait / measured.osl, rtol=1e-9, atol=1e-12)
    half_tpot, half_ttft = predict(measured, with_share(0.5))
    assert np.allclose(half_ttft, after_ttft + wait / 2)
    assert np.allclose(half_tpot, before_tpot + wait / 2 / measured.osl)
    fits = np.isclose(wait, 0.0, atol=1e-12)
    assert fits.any() and (after_tpot[fits] == before_tpot[fits]).all()


def test_the_sparse_jacobian_is_the_dense_one(measured):
    """A Jacobian column computed from the rows its parameter moves equals one computed from
    every residual, at a point away from the start (random rows of several chips and engines)."""
    rows = measured.subset(np.isin(np.arange(len(measured)), np.random.default_rng(7).choice(len(measured), 150)))
    layout, resid, column = _least_squares(rows)
    x = layout.initial() + np.random.default_rng(8).normal(0.0, 0.3, layout.initial().size)
    r = resid(x)
    assert len(layout.chips) > 1 and len(layout.engines) > 1
    for j in range(x.size):
        xp = x.copy()
        xp[j] += 1e-6
        h = xp[j] - x[j]
        assert np.array_equal(column(xp, j, h, r), (resid(xp) - r) / h), j


def test_fit_warnings_name_the_terms_no_row_identifies(measured):
    """SGLang has no run with weights its chip has no units for: its dequantizing efficiency
    is the fit's start, and calibrate says so. Engines with a prior (vllm-tpu) are not counted
    as fitted parameters."""
    p = load_params()
    assert fit_warnings(measured, p) == [
        "sglang's dequant_efficiency stays at the fit's start (0.8): none of its rows has weights in a dtype "
        "the chip has no units for"
    ]
    few = measured.subset(np.arange(len(measured)) < 20)
    chips, engines = set(few.chip_names.tolist()), {"sglang", "trtllm", "vllm"}
    n = 4 * len(chips) + 1 + (len(OVERHEADS) + len(ENGINE_FRACTIONS)) * len(engines)
    assert fit_warnings(few, replace(p, chips={c: p.chips[c] for c in chips}))[0].startswith(
        f"only 20 measured rows for {n} fitted parameters"
    )


def test_runs_faster_than_every_peak_are_left_out_with_the_reason(chips):
    raw = load_measurements(bundled_data(), {**chips.unpriced, **chips})
    kept = load_runs(bundled_data(), chips)
    fast = faster_than_peak(raw)
    assert fast.any() and len(kept) == len(raw) - int(fast.sum())
    lines = {line for line, why in kept.skipped if "no bounded model explains it" in why}
    assert lines == set(raw.lines[fast].tolist())


def test_collective_cost_is_zero_at_tp1_and_grows_with_tp(chips):
    t = _terms(chips, [1, 2, 4, 8], load_params())
    assert t.comm_fixed[0] == 0 and t.comm_per_token[0] == 0
    # one latency per collective through the NVSwitch, whatever the group size; bytes grow
    assert t.comm_fixed[1] > 0 and np.all(np.diff(t.comm_fixed[1:]) == 0)
    assert np.all(np.diff(t.comm_per_token) > 0)


def test_prefill_interference_is_zero_without_prompts_and_linear_in_prompt_tokens(chips):
    t = _terms(chips, [4], load_params())
    alone = t.step(np.array([32.0]), np.array([0.0]))
    mixed = t.step(np.array([32.0]), np.array([1000.0]))
    assert mixed[0] - alone[0] == pytest.approx(1000.0 * t.pf_per_token[0])
    assert t.pf_per_token[0] > 0


def test_overheads_and_efficiencies_act_as_their_names_say(chips):
    p = load_params()
    slow = replace(p, engines={**p.engines, "vllm": EngineOverheads(5e-3, 1e-4, 1e-5, 3.0)})
    base, heavy = _terms(chips, [2], p), _terms(chips, [2], slow)
    n = np.array([10.0])
    assert heavy.t0[0] == pytest.approx(5e-3 + 80 * 1e-5) and heavy.tseq[0] * n[0] == pytest.approx(1e-3)
    slow_link = replace(p, chips={**p.chips, "h100": replace(p.chips["h100"], link_efficiency=0.1)})
    assert _terms(chips, [2], slow_link).comm_per_token[0] > base.comm_per_token[0]
    faster = replace(p, chips={**p.chips, "h100": replace(p.chips["h100"], hbm_efficiency=1.0)})
    assert _terms(chips, [2], faster).mem_fixed[0] < base.mem_fixed[0]
    # the per-MoE-layer overhead costs a dense model nothing
    moe_heavy = replace(p, engines={**p.engines, "vllm": replace(p.engines["vllm"], moe_layer_overhead_s=1e-3)})
    assert _terms(chips, [2], moe_heavy).t0[0] == base.t0[0]
    moe = load_model("qwen3-30b-a3b")
    gained = _terms(chips, [2], moe_heavy, model=moe.name).t0[0] - _terms(chips, [2], p, model=moe.name).t0[0]
    fitted = p.engines["vllm"].moe_layer_overhead_s
    assert moe.moe_layers > 0 and gained == pytest.approx(moe.moe_layers * (1e-3 - fitted))
    # weights the chip has no units for (fp8 on A100) stream at the engine's dequantizing rate;
    # the KV cache does not
    half = replace(p, engines={**p.engines, "vllm": replace(p.engines["vllm"], dequant_efficiency=0.5)})
    whole = replace(p, engines={**p.engines, "vllm": replace(p.engines["vllm"], dequant_efficiency=1.0)})
    a100 = _terms(chips, [2], whole, chip="a100", dtype="fp8")
    a100_half = _terms(chips, [2], half, chip="a100", dtype="fp8")
    assert a100_half.mem_fixed[0] == pytest.approx(2 * a100.mem_fixed[0])
    assert a100_half.mem_per_seq[0] == a100.mem_per_seq[0]
    assert _terms(chips, [2], half, dtype="fp8").mem_fixed[0] == _terms(chips, [2], whole, dtype="fp8").mem_fixed[0]
    # fp8 weights: half the bytes and the 8-bit peak
    fp8 = _terms(chips, [2], p, dtype="fp8")
    assert fp8.mem_fixed[0] == pytest.approx(base.mem_fixed[0] / 2)
    assert fp8.dec_per_seq[0] == pytest.approx(base.dec_per_seq[0] * chips["h100"].bf16_flops / chips["h100"].fp8_flops)


def test_calibrated_in_sample_error_and_the_book(measured):
    """The bounded fit's in-sample TPOT error as docs/calibrated-profile.md records it: 14.7%
    overall, every (model, system, engine) group of ten or more runs within 40% (the worst:
    Qwen3-235B on H200 with vLLM, 38.7%). The issue's targets of 8% and 15% are not met yet.
    The book's error is more than twice as large."""
    v = validate(measured, Calibrated())
    assert v.overall["tpot_mape"] <= 14.75
    tpot = np.array([r["predicted_tpot_ms"] for r in v.rows])
    meas = measured.tpot_s * 1e3
    keys = [(m, c, e) for m, c, e in zip(measured.model_names, measured.chip_names, measured.engine)]
    for key in set(keys):
        mask = np.array([k == key for k in keys])
        if mask.sum() >= 10:  # groups of a handful of runs are reported, not bounded here
            assert np.mean(np.abs(tpot[mask] / meas[mask] - 1)) * 100 <= 40.0, key
    assert validate(measured, Book()).overall["tpot_mape"] > 2 * v.overall["tpot_mape"]


def test_validate_reports_skipped_rows_and_accepts_both_naming_schemes(tmp_path, chips):
    header = (
        "backend,backend_version,model_path,system,precision,mode,isl,osl,batch_size,tp_size,pp_size,"
        "silicon_ttft_ms,silicon_tpot_ms\n"
    )
    rows = [
        "vllm,1,meta-llama/Llama-3.1-8B-Instruct,h100_sxm,bf16,agg,1024,128,8,1,1,100,10",
        "vllm,1,llama3-70b,tpu-v6e,bf16,agg,1024,128,8,8,1,300,20",
        "vllm,1,some/unknown-model,h100_sxm,bf16,agg,1024,128,8,1,1,100,10",
        "vllm,1,Qwen/Qwen3-32B,gaudi3,bf16,agg,1024,128,8,1,1,100,10",
        "vllm,1,Qwen/Qwen3-32B,h100_sxm,bf16,agg,1024,128,8,2,2,100,10",
        "vllm,1,Qwen/Qwen3-32B,h100_sxm,bf16,disagg,1024,128,8,2,1,100,10",
    ]
    path = tmp_path / "m.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    res = CliRunner().invoke(main, ["validate", "--data", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["rows"]) == 2
    assert {r["system"] for r in out["rows"]} == {"h100_sxm", "tpu-v6e"}
    assert all(
        r["predicted_tpot_ms"] > 0 and r["predicted_ttft_ms"] > 0 and "silicon_tpot_ms" in r for r in out["rows"]
    )
    reasons = {s["line"]: s["reason"] for s in out["skipped"]}
    assert "unknown model" in reasons[4] and "unknown system" in reasons[5]
    assert "pipeline parallelism" in reasons[6] and "mode 'disagg'" in reasons[7]
    text = CliRunner().invoke(main, ["validate", "--data", str(path)])
    assert "skipped line 4: unknown model 'some/unknown-model'" in text.output


def _instances(n: int):
    rng = random.Random(20261130)
    for k in range(n):
        yield pytest.param(
            dict(
                model=rng.choice(["llama3-8b", "llama3-70b", "qwen3-32b", "mistral-7b"]),
                chip_names=sorted(rng.sample(["h100", "h200", "tpu-v5e", "tpu-v6e", "b200"], rng.randint(1, 3))),
                slo_ms=round(10 ** rng.uniform(0.6, 1.8), 3),
                context=rng.choice([2048, 8192]),
                decode_len=rng.choice([128, 512]),
                serving=rng.choice(["decode-only", "disaggregated", "colocated"]),
                prompt_len=rng.choice([512, 2048]),
                ttft_ms=rng.choice([None, 800.0]),
                engine=rng.choice(["vllm", "sglang", "trtllm"]),
            ),
            id=f"c{k}",
        )


@pytest.mark.parametrize("inst", list(_instances(24)))
def test_cp_sat_equals_brute_force_under_the_calibrated_profile(inst, chips, models):
    inst = {**inst, "ttft_ms": None if inst["serving"] == "decode-only" else inst["ttft_ms"]}
    result = solve(
        models[inst["model"]],
        inst["slo_ms"],
        chips=chips,
        chip_names=inst["chip_names"],
        context=inst["context"],
        decode_len=inst["decode_len"],
        top=1,
        serving=inst["serving"],
        prompt_len=inst["prompt_len"],
        ttft_ms=inst["ttft_ms"],
        profile="calibrated",
        engine=inst["engine"],
        alternatives=False,
    )
    oracle = brute_force(
        models[inst["model"]],
        chips,
        inst["chip_names"],
        inst["slo_ms"],
        inst["context"],
        inst["decode_len"],
        serving=inst["serving"],
        prompt_len=inst["prompt_len"],
        ttft_ms=inst["ttft_ms"],
        cal=calibrated_params(BUILT_IN, inst["engine"]),
    )
    if oracle is None:
        assert result.status == "infeasible"
        return
    assert result.status == "optimal"
    assert result.best.queries_per_dollar == pytest.approx(oracle.value, rel=1e-9)


@pytest.mark.parametrize("model", ["qwen3-30b-a3b", "mixtral-8x7b"])
def test_cp_sat_equals_brute_force_with_experts_and_dequantized_weights(model, chips, models):
    """Mixture-of-experts layers (their own overhead) and fp8 weights on an A100 (no fp8 units:
    streamed at vLLM's dequantizing rate; the bundled catalog offers A100 no fp8 weights, so a
    catalog that does is made here) under the calibrated profile: the optimum is the brute
    force's."""
    kw = dict(context=4096, decode_len=512, serving="colocated", prompt_len=1024)
    chips = {**chips, "a100": replace(chips["a100"], weight_dtypes=(*chips["a100"].weight_dtypes, "fp8"))}
    assert not native_dtype(chips["a100"], "fp8")
    result = solve(
        models[model],
        40.0,
        chips=chips,
        chip_names=["a100"],
        weights=["fp8"],
        top=1,
        profile="calibrated",
        engine="vllm",
        alternatives=False,
        **kw,
    )
    oracle = brute_force(
        models[model], chips, ["a100"], 40.0, weights=["fp8"], cal=calibrated_params(BUILT_IN, "vllm"), **kw
    )
    assert oracle is not None and result.status == "optimal" and result.best.weights == "fp8"
    assert result.best.queries_per_dollar == pytest.approx(oracle.value, rel=1e-9)


def test_calibrated_instances_cover_both_outcomes(chips, models):
    found = set()
    for p in _instances(24):
        inst = p.values[0]
        r = brute_force(
            models[inst["model"]],
            chips,
            inst["chip_names"],
            inst["slo_ms"],
            inst["context"],
            inst["decode_len"],
            serving=inst["serving"],
            prompt_len=inst["prompt_len"],
            ttft_ms=inst["ttft_ms"],
            cal=calibrated_params(BUILT_IN, inst["engine"]),
        )
        found.add(r is None)
    assert found == {True, False}


def test_cli_profile_options(tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "optimize",
            "--model",
            "llama3-8b",
            "--slo-ms",
            "20",
            "--profile",
            "calibrated",
            "--engine",
            "trtllm",
            "--chip",
            "h100",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "(calibrated profile)" in res.output and "trtllm engine" in res.output
    bad = CliRunner().invoke(
        main, ["optimize", "--model", "llama3-8b", "--slo-ms", "20", "--profile", "calibrated", "--engine", "tgi"]
    )
    assert bad.exit_code == 2 and bad.output.strip().startswith("error: unknown engine 'tgi'")
    book = CliRunner().invoke(main, ["optimize", "--model", "llama3-8b", "--slo-ms", "20", "--engine", "vllm"])
    assert book.exit_code == 2 and "apply to --profile calibrated only" in book.output
    out = tmp_path / "p.toml"
    res = CliRunner().invoke(main, ["calibrate", "--out", str(out)])
    assert res.exit_code == 0 and "in-sample MAPE: TPOT 14.68%, TTFT 45.83%" in res.output
    a = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                "evaluate",
                "--model",
                "llama3-70b",
                "--chip",
                "h100",
                "--topology",
                "4",
                "--weights",
                "fp8",
                "--kv",
                "fp8",
                "--batch",
                "64",
                "--profile",
                "calibrated",
                "--calibration",
                str(out),
                "--json",
            ],
        )
        .output
    )
    b = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                "evaluate",
                "--model",
                "llama3-70b",
                "--chip",
                "h100",
                "--topology",
                "4",
                "--weights",
                "fp8",
                "--kv",
                "fp8",
                "--batch",
                "64",
                "--profile",
                "calibrated",
                "--json",
            ],
        )
        .output
    )
    assert a["step_ms"] == pytest.approx(b["step_ms"], rel=1e-6) and a["profile"] == "calibrated"
    book_e = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                "evaluate",
                "--model",
                "llama3-70b",
                "--chip",
                "h100",
                "--topology",
                "4",
                "--weights",
                "fp8",
                "--kv",
                "fp8",
                "--batch",
                "64",
                "--json",
            ],
        )
        .output
    )
    assert book_e["step_ms"] < a["step_ms"]  # the calibrated step is slower than the optimistic roofline


def test_predictions_are_finite_and_positive(measured):
    tpot, ttft = predict(measured, load_params())
    assert np.all(np.isfinite(tpot)) and np.all(tpot > 0) and np.all(np.isfinite(ttft)) and np.all(ttft > 0)


def test_zoo_and_plan_take_the_profile(tmp_path, chips):
    from optimizer.planning import FleetPlan, PlanModel, PlanSpec, Pool, plan
    from optimizer.zoo import load_zoo
    from optimizer.zoo_solve import solve_zoo

    zoo = tmp_path / "z.toml"
    zoo.write_text(
        '[grid]\nslo_ms = [20]\nchips = ["h100"]\nprofile = ["book", "calibrated"]\n[[models]]\nname = "llama3-8b"\n'
    )
    rows = {r["profile"]: r for r in solve_zoo(load_zoo(zoo))}
    assert set(rows) == {"book", "calibrated"}
    direct = solve("llama3-8b", 20, chips=chips, chip_names=["h100"], top=1, alternatives=False, profile="calibrated")
    assert rows["calibrated"]["queries_per_dollar"] == pytest.approx(direct.best.queries_per_dollar, rel=1e-12)
    assert rows["calibrated"]["queries_per_dollar"] != rows["book"]["queries_per_dollar"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[grid]\nslo_ms = [20]\nprofile = ["measured"]\n[[models]]\nname = "llama3-8b"\n')
    with pytest.raises(ValueError, match="unknown profile in"):
        load_zoo(bad)
    spec = PlanSpec(
        models=(PlanModel(model="llama3-8b", demand_qps=20.0, slo_ms=20, prompt_len=1024),),
        pools=(Pool(chip="h100", quota_chips=64),),
    )
    book, calibrated = plan(spec, workers=1), plan(spec, workers=1, profile=Calibrated(engine="trtllm"))
    assert book.status == calibrated.status == "optimal"
    assert calibrated.total_cost_usd != book.total_cost_usd
    by_name = plan(spec.with_profile("calibrated", "trtllm", None), workers=1)
    assert by_name.total_cost_usd == calibrated.total_cost_usd
    assert (by_name.profile, by_name.engine) == ("calibrated", "trtllm")
    # the calibrated plan carries the band (JSON and text), the book's none
    band = Calibrated(engine="trtllm").uncertainty()
    assert calibrated.uncertainty == band and book.uncertainty is None and book.assumed == calibrated.assumed == []
    from optimizer import render

    text = render.fleet_plan(calibrated, "plan.toml")
    assert f"band: each offer's step ±{band['step_pct']:.0f}%, TTFT ±{band['ttft_pct']:.0f}%" in text
    assert "band:" not in render.fleet_plan(book, "plan.toml")
    assert FleetPlan.from_dict(calibrated.to_dict()) == calibrated


def test_readme_accuracy_table_is_what_validate_prints(measured):
    """The accuracy table of docs/calibrated-profile.md is what validate prints."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "calibrated-profile.md").read_text()
    book, cal = validate(measured, Book()), validate(measured, Calibrated())
    row = (
        f"| **all** | | | | **{len(measured)}** | **{book.overall['tpot_mape']:.1f}%** | "
        f"**{cal.overall['tpot_mape']:.1f}%** | **{book.overall['ttft_mape']:.1f}%** | "
        f"**{cal.overall['ttft_mape']:.1f}%** |"
    )
    assert row in text
    for g_book, g_cal in zip(book.groups, cal.groups):
        assert (
            f"| {g_cal['model']} | {g_cal['system']} | {g_cal['engine']} | {g_cal['precision']} | {g_cal['n']} | "
            f"{g_book['tpot_mape']:.1f}% | {g_cal['tpot_mape']:.1f}% | {g_book['ttft_mape']:.1f}% | "
            f"{g_cal['ttft_mape']:.1f}% |"
        ) in text
    assert f"calibrated\n{cal.chip_order['agree_pct']:.1f}% of {cal.chip_order['pairs']} pairs" in text
    for p in cal.chip_order["by_chips"]:
        assert (
            f"| {p['chips']} | {p['pairs']} | {p['agree_pct']:.1f}% | {p['ceiling_pct']:.1f}% | "
            f"{p['median_measured_gap_pct']:.1f}% |"
        ) in text
    assert f"at most {cal.chip_order['ceiling_pct']:.1f}% for any model" in text


def test_chip_ordering_per_pair_adds_up_and_ranks_h200_below_b200(measured):
    """The per-pair ordering counts add up to the overall one; H200 against B200 (issue 12's
    complaint: a third of matched runs ordered wrongly) is ordered right on every pair."""
    order = validate(measured, Calibrated()).chip_order
    by = {p["chips"]: p for p in order["by_chips"]}
    assert sum(p["pairs"] for p in by.values()) == order["pairs"]
    right = sum(p["pairs"] * p["agree_pct"] / 100 for p in by.values())
    assert right == pytest.approx(order["agree_pct"] / 100 * order["pairs"])
    assert by["b200/h200"]["pairs"] > 100 and by["b200/h200"]["agree_pct"] == 100.0
    best = sum(p["pairs"] * p["ceiling_pct"] / 100 for p in by.values())
    assert best == pytest.approx(order["ceiling_pct"] / 100 * order["pairs"])
    assert all(p["agree_pct"] <= p["ceiling_pct"] + 1e-9 for p in by.values())


def test_chip_ordering_ceiling_is_what_a_model_of_the_configuration_can_reach():
    """Repeats of one configuration that disagree on which chip is faster cap every model: the
    measured TPOT itself (not a model: repeats differ) beats the ceiling, any prediction that
    orders the repeats one way stays under it, and the better way reaches it."""
    from types import SimpleNamespace

    n = 5  # one configuration: chip a twice (10, 12 ms), chip b three times (11, 11, 9 ms)
    m = SimpleNamespace(
        engine=np.array(["vllm"] * n), model_names=np.array(["x"] * n), precision=np.array(["fp8"] * n),
        isl=np.full(n, 1024), osl=np.full(n, 128), clients=np.full(n, 8), tp=np.full(n, 1),
        attention_dp=np.full(n, 1), ep=np.full(n, 1), chip_names=np.array(["a", "a", "b", "b", "b"]),
        tpot_s=np.array([10.0, 12.0, 11.0, 11.0, 9.0]),
    )  # fmt: skip
    assert chip_order(m, m.tpot_s)["agree_pct"] == 100.0  # b faster on 4 of the 6 pairs, a on 2
    a_faster = chip_order(m, np.array([1.0, 1.0, 2.0, 2.0, 2.0]))
    b_faster = chip_order(m, np.array([2.0, 2.0, 1.0, 1.0, 1.0]))
    assert a_faster["pairs"] == b_faster["pairs"] == 6
    assert a_faster["ceiling_pct"] == b_faster["ceiling_pct"] == pytest.approx(100 * 4 / 6)
    assert a_faster["agree_pct"] == pytest.approx(100 * 2 / 6)
    assert b_faster["agree_pct"] == pytest.approx(b_faster["ceiling_pct"])


@pytest.mark.parametrize(
    "change,message",
    [
        ("s/link_efficiency = .*/link_efficiency = 0.0/", "link_efficiency must be in (0, 1]"),
        ("s/hbm_efficiency = .*/hbm_efficiency = 1.08/", "hbm_efficiency must be in (0, 1]"),
        ("s/step_overhead_s = .*/step_overhead_s = -1.0/", "step_overhead_s must be zero or more"),
        ("s/kv_memory_fraction = .*/kv_memory_fraction = -1.0/", "kv_memory_fraction must be in (0, 1]"),
        ('s/default_engine = .*/default_engine = "tgi"/', "default_engine 'tgi' has no [engines] entry"),
    ],
)
def test_bad_calibration_files_are_one_line_errors(tmp_path, change, message):
    import re

    text = (bundled_data().with_name("calibrated.toml")).read_text()
    pattern, repl = change[2:].rstrip("/").split("/")
    path = tmp_path / "bad.toml"
    path.write_text(re.sub(pattern, repl, text))
    res = CliRunner().invoke(
        main,
        ["optimize", "--model", "llama3-8b", "--slo-ms", "20", "--profile", "calibrated", "--calibration", str(path)],
    )
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and message in res.output, res.output


def test_validate_without_rows_and_lomo_with_one_model(tmp_path):
    header = (
        "backend,backend_version,model_path,system,precision,mode,isl,osl,batch_size,tp_size,pp_size,"
        "silicon_ttft_ms,silicon_tpot_ms\n"
    )
    empty = tmp_path / "empty.csv"
    empty.write_text(header)
    res = CliRunner().invoke(main, ["validate", "--data", str(empty)])
    assert res.exit_code == 2 and "the data file has a header only" in res.output
    one = tmp_path / "one.csv"
    one.write_text(header + "vllm,1,llama3-8b,h100,bf16,agg,1024,128,8,1,1,100,10\n")
    res = CliRunner().invoke(main, ["validate", "--data", str(one), "--lomo"])
    assert res.exit_code == 2 and "at least two models" in res.output


def test_bands_are_the_leave_one_model_out_error(measured):
    """with_bands sets each band to the mean absolute error of predictions from fits that never
    saw the row's model (here on two models' vLLM H100 rows, to keep it quick)."""
    from optimizer.calibration import held_out_predictions, mape, with_bands

    keep = (measured.engine == "vllm") & (measured.chip_names == "h100")
    keep &= np.isin(measured.model_names, ["llama3-70b", "qwen3-32b"])
    small = measured.subset(keep)
    tpot, ttft = held_out_predictions(small)
    banded = with_bands(small, fit(small))
    assert banded.tpot_band_pct == pytest.approx(mape(tpot, small.tpot_s))
    assert banded.ttft_band_pct == pytest.approx(mape(ttft, small.ttft_s))
    v = validate(small, Calibrated(banded), leave_one_model_out=True)
    lomo = v.leave_one_model_out
    n = sum(r["n"] for r in lomo)
    assert banded.tpot_band_pct == pytest.approx(sum(r["n"] * r["tpot_mape"] for r in lomo) / n)
    # both are dense: their rows pooled are every row, and there is no mixture-of-experts row
    assert [(r["models"], r["n"]) for r in v.leave_one_model_out_pooled] == [("dense", n)]
    assert v.leave_one_model_out_pooled[0]["tpot_mape"] == pytest.approx(banded.tpot_band_pct)
    assert "tpot_band_pct" in banded.to_toml()


def test_results_carry_the_band_and_say_when_the_top_two_are_within_it():
    shipped = load_params()
    assert shipped.tpot_band_pct is not None and shipped.ttft_band_pct is not None
    args = ["optimize", "--model", "llama3-70b", "--chip", "h100", "--chip", "h200", "--slo-ms", "40"]
    out = json.loads(CliRunner().invoke(main, [*args, "--profile", "calibrated", "--json"]).output)
    assert out["uncertainty"] == {"step_pct": shipped.tpot_band_pct, "ttft_pct": shipped.ttft_band_pct}
    best, second = out["best"]["queries_per_dollar"], out["runners_up"][0]["queries_per_dollar"]
    within = abs(best / second - 1) * 100 < shipped.tpot_band_pct
    assert within == any("within the calibrated band" in n for n in out["notes"])
    text = CliRunner().invoke(main, [*args, "--profile", "calibrated"]).output
    assert f"±{shipped.tpot_band_pct:.0f}%" in text and "Band: step " in text
    book = json.loads(CliRunner().invoke(main, [*args, "--json"]).output)
    assert book["uncertainty"] is None and not any("calibrated band" in n for n in book["notes"])
    e = CliRunner().invoke(
        main,
        ["evaluate", "--model", "llama3-8b", "--chip", "h100", "--topology", "1", "--weights", "bf16", "--kv",
         "bf16", "--batch", "8", "--profile", "calibrated"],
    )  # fmt: skip
    assert f"(calibrated profile; ±{shipped.tpot_band_pct:.0f}%)" in e.output


def test_validate_reports_errors_per_engine(measured):
    v = validate(measured, Calibrated())
    assert [g["engine"] for g in v.engines] == sorted(set(measured.engine.tolist()))
    assert sum(g["n"] for g in v.engines) == len(measured)
    for g in v.engines:
        mask = measured.engine == g["engine"]
        tpot = np.array([r["predicted_ttft_ms"] for r in v.rows])[mask] / 1e3
        assert g["ttft_mape"] == pytest.approx(np.mean(np.abs(tpot / measured.ttft_s[mask] - 1)) * 100)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "vllm-tpu"])
def test_the_search_proposes_only_what_the_engine_runs(engine):
    """Under the calibrated profile every configuration optimize names is one the engine's flag
    table runs (launch would emit it); the chips the engine does not serve say so."""
    from optimizer import Search, Workload, optimize
    from optimizer.catalog import load_chips
    from optimizer.launch.engines import chip_family, load_engine

    spec, catalog = load_engine(engine), load_chips()
    r = optimize("llama3-70b", Workload(slo_ms=40), profile=Calibrated(engine=engine), search=Search(catalog))
    for c in [r.best, *r.runners_up, *r.alternatives]:
        family = chip_family(catalog[c.chip])
        assert family in spec.families
        spec.weight_option(c.weights, family, "llama3-70b")  # raises if the engine cannot
        spec.kv_option(c.kv, family)
    for name, chip in catalog.items():
        if chip_family(chip) not in spec.families:
            assert r.unserved[name] == (
                f"the {engine} engine does not serve {name}: it runs on {', '.join(spec.families)} chips"
            )
    if engine == "vllm":
        assert all(c.weights not in ("int4", "int8") for c in [r.best, *r.runners_up, *r.alternatives])


@pytest.mark.parametrize(
    ("engine", "chip", "topology", "weights", "kv", "says"),
    [
        (
            "trtllm",
            "tpu-v6e",
            "2x4",
            "bf16",
            "bf16",
            "TensorRT-LLM 1.2 does not serve tpu-v6e (tpu chips); it serves nvidia chips (pick another --engine, "
            "or a nvidia chip)",
        ),
        ("vllm", "h100", "8", "int4", "fp8", "vLLM 0.33.0 cannot serve int4 weights on nvidia chips"),
        ("vllm", "tpu-v6e", "2x4", "bf16", "int8", "int8 KV cache on tpu chips"),
        ("vllm-tpu", "h100", "8", "bf16", "bf16", "does not serve h100 (nvidia chips); it serves tpu chips"),
    ],
)
def test_evaluate_refuses_what_the_engine_cannot_run(engine, chip, topology, weights, kv, says):
    """evaluate under an engine checks the fixed configuration as the search does: a chip
    family, weight format or KV dtype the engine's flag table lacks is a one-line error (exit
    2) with its reason and the valid values, never numbers for a server that cannot exist."""
    args = ["evaluate", "--model", "llama3-70b", "--chip", chip, "--topology", topology, "--weights", weights]
    args += ["--kv", kv, "--batch", "8", "--profile", "calibrated", "--engine", engine]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert says in r.output and len(r.output.strip().splitlines()) == 1
    assert "valid --" in r.output or "pick another --engine, or a" in r.output  # what it does run
    ok = ["evaluate", "--model", "llama3-70b", "--chip", "h100", "--topology", "8", "--weights", "fp8", "--kv"]
    assert (
        CliRunner().invoke(main, [*ok, "fp8", "--batch", "8", "--profile", "calibrated", "--engine", "vllm"]).exit_code
        == 0
    )


def test_unmeasured_chips_take_their_priors_from_the_fitted_ones():
    """A chip with no runs takes its rule of optimizer/data/priors.toml over the fitted chips:
    a sibling's efficiencies (GB200: B200), or the fitted mean scaled, capped or set by
    published achieved fractions (AMD: FLOP/s x 0.4839, HBM at most 0.81; TPUs: prefill 0.76)."""
    from optimizer.calibrated import chip_prior

    fitted = {
        "h100": ChipEfficiency(0.875, 0.625, 0.5, 0.375),
        "b200": ChipEfficiency(0.625, 0.375, 0.75, 0.125),
        "a100": ChipEfficiency(0.1, 0.1, 0.1, 0.1, assumed=True),  # a prior itself: not averaged
    }
    assert chip_prior("gb200", fitted) == ChipEfficiency(0.625, 0.375, 0.75, 0.125, assumed=True)
    amd = chip_prior("mi300x", fitted)
    assert amd == ChipEfficiency(0.75, 0.5 * 0.4839, 0.625 * 0.4839, 0.25, assumed=True)
    assert chip_prior("mi300x", {"h100": ChipEfficiency(0.875, 0.5, 0.5, 0.5)}).hbm_efficiency == 0.81
    assert chip_prior("tpu-v6e", fitted) == ChipEfficiency(0.75, 0.5, 0.76, 0.25, assumed=True)
    assert chip_prior("a100", fitted) == ChipEfficiency(0.75, 0.5, 0.625, 0.25, assumed=True)
    # a sibling without runs is no basis: the fitted mean instead
    assert chip_prior("gb300", fitted) == chip_prior("a100", fitted)


def test_the_built_in_file_holds_every_prior_and_results_name_them():
    """The shipped parameters list each catalog chip without runs at its prior, and the vLLM-TPU
    engine at vLLM's overheads, all assumed; an answer on such a chip says so in `assumed`."""
    from optimizer import Search, Workload, optimize
    from optimizer.calibrated import chip_prior

    p = load_params()
    for name, c in p.chips.items():
        if c.assumed:
            assert c == chip_prior(name, p.chips), name
    assert p.engines["vllm-tpu"] == replace(p.engines["vllm"], assumed=True)
    r = optimize("llama3-70b", Workload(slo_ms=40), profile=Calibrated(engine="vllm-tpu"))
    assert r.best is not None and r.best.chip.startswith("tpu-")
    assert any(a.startswith(f"{r.best.chip}: ") for a in r.assumed)
    assert any(a.startswith("engine vllm-tpu: ") for a in r.assumed)
    h = optimize("llama3-70b", Workload(slo_ms=40), profile=Calibrated(), search=Search(chips=["h100", "h200"]))
    assert h.assumed == []
    assert optimize("llama3-70b", Workload(slo_ms=40)).assumed == []  # the book profile assumes nothing


def test_a_batch_past_the_measured_concurrency_is_said_to_be_extrapolated(measured):
    """The fit records each engine's largest measured concurrency; an answer whose batch is past
    it says the step there is extrapolated (optimize's notes, evaluate's notes); the book, a
    bound, says nothing."""
    from optimizer import Search, Workload, evaluate, optimize

    largest = {str(e): int(measured.clients[measured.engine == e].max()) for e in set(measured.engine.tolist())}
    assert fit(measured).measured_batch == largest == load_params().measured_batch
    trt = Calibrated(engine="trtllm")
    args = dict(chip="h100", topology="1", weights="fp8", kv="fp8", profile=trt)
    e = evaluate("llama3-8b", Workload(slo_ms=1000), batch=largest["trtllm"] + 1, **args)
    assert e.notes == [
        f"batch {largest['trtllm'] + 1} is past the largest concurrency the trtllm runs of the fit measured "
        f"({largest['trtllm']}): the calibrated step there is extrapolated, not measured"
    ]
    at = evaluate("llama3-8b", Workload(slo_ms=1000), batch=largest["trtllm"], **args)
    assert at.notes == []
    r = optimize("llama3-8b", Workload(slo_ms=200), profile=trt, search=Search(chips=["b200"]))
    assert r.best is not None and r.best.batch > largest["trtllm"]
    assert any("extrapolated" in n for n in r.notes)
    book = optimize("llama3-8b", Workload(slo_ms=200), search=Search(chips=["b200"]))
    assert not any("extrapolated" in n for n in book.notes)


def test_assumed_says_what_the_loaded_file_rests_on_and_vllm_tpu_inherits_the_measured_limit(tmp_path):
    """A parameter file whose assumed values are not priors.toml's priors is said to be the
    file's values (not a prior it does not hold); vllm-tpu, a prior built on vLLM, takes vLLM's
    largest measured concurrency."""
    from optimizer import Workload, evaluate

    p = load_params()
    edited = replace(p, chips={**p.chips, "mi300x": replace(p.chips["h100"], assumed=True)})
    assert edited.assumed(["mi300x", "h100"], "vllm") == [
        "mi300x: the parameter file's values, marked assumed (not fitted)"
    ]
    assert p.assumed(["mi300x"], "vllm")[0].startswith("mi300x: the fitted NVIDIA mean")
    assert p.largest_measured_batch("vllm-tpu") == p.measured_batch["vllm"]
    batch = p.measured_batch["vllm"] + 1
    e = evaluate(
        "llama3-8b", Workload(slo_ms=1000), chip="tpu-v5e", topology="2x4", weights="bf16", kv="bf16", batch=batch,
        profile=Calibrated(engine="vllm-tpu"),
    )  # fmt: skip
    assert any(f"batch {batch} is past" in n for n in e.notes)
