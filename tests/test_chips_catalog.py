"""The 2026 chip catalog (issue 14, part 1): every figure sourced and dated, pinned values of
the new chips, the fp4 dtype end to end, price tiers with their dates, chips without a
published price, prices files, the schema's new keys, and plans that take committed prices
from the catalog."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from cli import main, optimize_cmd
from optimizer import InputError, load_chips, load_model
from optimizer.api import Search, evaluate, optimize
from optimizer.catalog import COMMITMENT_TIERS, DTYPE_BYTES, DTYPES, Catalog, lookup_chip
from optimizer.launch import launch
from optimizer.planning import plan
from optimizer.planning.plan_file import spec_from_dict
from optimizer.workload import Workload

ALL = load_chips(unpriced=True)
NEW = ("b300", "gb200", "gb300", "tpu-v7", "mi300x", "mi325x", "mi355x")
UNPRICED = ("b300", "gb300", "tpu-v7", "mi325x", "mi355x")
DATED = re.compile(r"20[0-9]{2}")


def run(args):
    return CliRunner().invoke(main, args)


def test_every_figure_has_a_dated_source():
    """Specs, scale-out, each price tier and the slices cite a source with a date; a price or
    bandwidth of 0 says in its source that none was found."""
    for chip in ALL.values():
        for key in ("specs", "scale_out", "price", "price_1yr", "price_3yr", "topologies"):
            assert key in chip.sources and DATED.search(chip.sources[key]), (chip.name, key)
        if not chip.scale_out_bytes_per_s:
            assert "not known" in chip.sources["scale_out"], chip.name
        for usd, date, key in (
            (chip.usd_per_chip_hour, chip.price_date, "price"),
            (chip.usd_per_chip_hour_1yr, chip.price_1yr_date, "price_1yr"),
            (chip.usd_per_chip_hour_3yr, chip.price_3yr_date, "price_3yr"),
        ):
            assert bool(usd) == bool(date), (chip.name, key)  # a price has a date; no price, no date
            if not usd:
                assert chip.sources[key].startswith("none published"), (chip.name, key)


# name: {field: value} as the sources give them (dense FLOP/s, SI bytes, one-way bandwidth).
PINNED = {
    # NVIDIA's system descriptions (aiconfigurator-core 0.12.0 systems/*.yaml)
    "b300": dict(bf16_flops=2.25e15, fp8_flops=4.5e15, int8_flops=1.535e14, fp4_flops=1.4e16, hbm_bytes=288e9,
                 hbm_bytes_per_s=7.75e12, link_bytes_per_s=9e11, scale_out_bytes_per_s=1e11),
    "gb200": dict(bf16_flops=2.5e15, fp8_flops=5e15, int8_flops=5e15, fp4_flops=1e16, hbm_bytes=186e9,
                  hbm_bytes_per_s=8e12, link_bytes_per_s=9e11, scale_out_bytes_per_s=5e10, usd_per_chip_hour=10.5),
    "gb300": dict(bf16_flops=2.5e15, fp8_flops=5e15, int8_flops=1.65e14, fp4_flops=1.5e16, hbm_bytes=288e9,
                  hbm_bytes_per_s=8e12, link_bytes_per_s=9e11, scale_out_bytes_per_s=1e11),
    "b200": dict(fp4_flops=9e15, scale_out_bytes_per_s=5e10, usd_per_chip_hour=8.6),
    # Google's TPU7x page: 2307 / 4614 TFLOPs, 7380 GB/s, 1200 GB/s ICI per chip, 100 Gb/s DCN
    "tpu-v7": dict(bf16_flops=2.307e15, fp8_flops=4.614e15, int8_flops=0, hbm_bytes=192e9, hbm_bytes_per_s=7.38e12,
                   link_bytes_per_s=1e11, links_per_axis=2, scale_out_bytes_per_s=1.25e10),
    # AMD: MI300X microarchitecture page; MI325X and MI355X product figures
    "mi300x": dict(bf16_flops=1.3074e15, fp8_flops=2.6149e15, hbm_bytes=192e9, hbm_bytes_per_s=5.3e12,
                   link_bytes_per_s=4.48e11, scale_out_bytes_per_s=5e10, usd_per_chip_hour=2.59),
    "mi325x": dict(bf16_flops=1.3074e15, fp8_flops=2.6149e15, hbm_bytes=256e9, hbm_bytes_per_s=6e12),
    "mi355x": dict(bf16_flops=2.5166e15, fp8_flops=5.0332e15, fp4_flops=1.00663e16, hbm_bytes=288e9,
                   hbm_bytes_per_s=8e12, link_bytes_per_s=5.376e11),
    # Google's DCN figures per chip
    "tpu-v5e": dict(scale_out_bytes_per_s=3.125e9, usd_per_chip_hour_1yr=0.84, usd_per_chip_hour_3yr=0.54),
    "tpu-v5p": dict(scale_out_bytes_per_s=6.25e9),
    "tpu-v6e": dict(scale_out_bytes_per_s=1.25e10),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_figures(name):
    chip = ALL[name]
    assert {k: getattr(chip, k) for k in PINNED[name]} == PINNED[name]


def test_new_chips_shapes_and_formats():
    """NVL72 racks are one NVLink domain of up to 72 GPUs; AMD nodes 8 GPUs; Ironwood 3-D
    slices up to its 9216-chip pod; fp4 is the 4-bit default where the chip has fp4 units."""
    for rack in ("gb200", "gb300"):
        assert ALL[rack].topologies == ("1", "2", "4", "8", "16", "32", "36", "72")
    for node in ("b300", "mi300x", "mi325x", "mi355x"):
        assert ALL[node].topologies == ("1", "2", "4", "8")
    assert ALL["tpu-v7"].topologies[-1] == "16x24x24" and ALL["tpu-v7"].ici_bytes_per_s_per_axis == 2e11
    for name, chip in ALL.items():
        assert (chip.four_bit == "fp4") == (chip.fp4_flops > 0) == ("fp4" in chip.weight_dtypes), name
        assert "fp4" not in chip.kv_dtypes, name  # no engine-backed fp4 KV cache in the catalog
    assert {n for n in NEW if ALL[n].fp4_flops} == {"b300", "gb200", "gb300", "mi355x"}


def test_fp4_is_half_a_byte_and_the_default_4_bit_weights_on_blackwell():
    assert DTYPE_BYTES["fp4"] == 0.5 and "fp4" in DTYPES
    b200 = ALL["b200"]
    assert b200.default_dtypes(b200.weight_dtypes) == ("bf16", "fp8", "fp4")
    assert b200.default_dtypes(b200.kv_dtypes) == ("bf16", "fp8", "int4")  # KV keeps int4
    assert ALL["h100"].default_dtypes(ALL["h100"].weight_dtypes) == ("bf16", "fp8", "int4")
    e = evaluate("llama3-70b", Workload(context=8192), chip="b200", topology="8", weights="fp4", kv="fp8", batch=8)
    assert e.param_bytes == pytest.approx(0.5 * load_model("llama3-70b").param_count)


def test_optimize_with_fp4_weights_on_b200():
    """The issue's command answers; in the book profile fp4 weights cost what int4 weights do."""
    args = ["--model", "llama3-70b", "--chip", "b200", "--slo-ms", "30", "--json"]
    r = CliRunner().invoke(optimize_cmd, [*args, "--weights", "fp4"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["status"] == "optimal" and d["best"]["weights"] == "fp4" and d["best"]["prefill"]["weights"] == "fp4"
    int4 = json.loads(CliRunner().invoke(optimize_cmd, [*args, "--weights", "int4"]).output)["best"]
    assert (d["best"]["batch"], d["best"]["step_ms"]) == (int4["batch"], int4["step_ms"])


def test_evaluate_32_gpus_inside_an_nvl72_rack():
    """gb200 topology 32: one 32-GPU model-parallel group over NVLink (one axis, 900 GB/s)."""
    args = ["evaluate", "--model", "llama3-70b", "--chip", "gb200", "--topology", "32"]
    r = run([*args, "--weights", "fp8", "--kv", "fp8", "--batch", "64", "--json"])
    assert r.exit_code == 0, r.output
    e = json.loads(r.output)
    assert (e["chip"], e["chips"], e["tp"], e["n_axes"], e["replicas"]) == ("gb200", 32, 32, 1, 1)
    assert e["fits"] and e["cost_per_hour"] == pytest.approx(32 * 10.5)
    r = run([*args[:-1], "64", "--weights", "fp8", "--kv", "fp8", "--batch", "64"])
    assert r.exit_code == 2 and "64" in r.output  # a rack holds 72 GPUs: 64 is not one of its slices


def test_chips_lists_price_tiers_and_dates():
    d = json.loads(run(["chips", "--json"]).output)
    by_name = {c["name"]: c for c in d["chips"]}
    assert set(by_name) == set(ALL) and set(NEW) <= set(by_name)
    for c in by_name.values():
        assert set(c["prices"]) == set(("on-demand", *COMMITMENT_TIERS))
        assert all(set(t) == {"usd_per_chip_hour", "date", "source"} for t in c["prices"].values())
    assert by_name["gb200"]["prices"]["on-demand"] == {
        "usd_per_chip_hour": 10.5,
        "date": "2026-09-20",
        "source": by_name["gb200"]["sources"]["price"],
    }
    assert by_name["tpu-v5e"]["prices"]["3-year"]["usd_per_chip_hour"] == 0.54
    assert by_name["b300"]["prices"]["on-demand"]["usd_per_chip_hour"] is None
    text = run(["chips"]).output
    assert "price date" in text.splitlines()[0] and "2026-11-09" in text
    assert text.splitlines()[-1].startswith("no published price: " + ", ".join(UNPRICED))


def test_chips_without_a_price_stay_out_until_one_is_given():
    """load_chips() holds the priced chips (every cost divides by a price); naming an unpriced
    one says how to price it; --price or a prices file brings it in."""
    catalog = load_chips()
    assert isinstance(catalog, Catalog) and set(UNPRICED).isdisjoint(catalog) and set(UNPRICED) == set(catalog.unpriced)
    with pytest.raises(InputError, match=r"b300 has no on-demand price .* --price b300=USD"):
        lookup_chip(catalog, "b300")
    r = CliRunner().invoke(optimize_cmd, ["--model", "llama3-8b", "--chip", "mi355x", "--slo-ms", "20"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "--price mi355x=USD" in r.output
    r = run(["evaluate", "--model", "llama3-8b", "--chip", "tpu-v7", "--topology", "2x2x1", "--weights", "bf16"])
    assert r.exit_code == 2
    priced = load_chips(prices={"b300": 9.0})
    assert priced["b300"].usd_per_chip_hour == 9.0 and priced["b300"].sources["price"].startswith("set by the user")
    best = optimize("llama3-70b", Workload(slo_ms=30), search=Search(priced, ["b300"]), alternatives=False).best
    assert best.chip == "b300"


def test_prices_file(tmp_path):
    """A prices file sets any tier of any chip, with its dates and source; --price applies
    after it; a new price without a date is undated, not the catalog's date."""
    path = tmp_path / "prices.toml"
    path.write_text(
        '[prices.h100]\nusd_per_chip_hour = 3.5\nusd_per_chip_hour_1yr = 2.5\nprice_1yr_date = "2026-12-01"\n'
        'source = "our rate card"\n[prices.gb300]\nusd_per_chip_hour = 12.0\nprice_date = "2026-12"\n'
    )
    chips = load_chips(prices_file=path)
    h100 = chips["h100"]
    assert (h100.usd_per_chip_hour, h100.price_date, h100.usd_per_chip_hour_1yr, h100.price_1yr_date) == (
        3.5,
        "",
        2.5,
        "2026-12-01",
    )
    assert h100.sources["price"] == h100.sources["price_1yr"] == "our rate card"
    assert chips["gb300"].priced and chips["gb300"].sources["price"] == "prices file prices.toml"
    assert load_chips(prices={"h100": 4.0}, prices_file=path)["h100"].usd_per_chip_hour == 4.0
    r = run(["chips", "--prices", str(path), "--json"])
    prices = {c["name"]: c["prices"] for c in json.loads(r.output)["chips"]}
    assert prices["h100"]["1-year"] == {"usd_per_chip_hour": 2.5, "date": "2026-12-01", "source": "our rate card"}


@pytest.mark.parametrize(
    "text,message",
    [
        ("[prices.h999]\nusd_per_chip_hour = 1.0\n", "unknown chip in"),
        ("[prices.h100]\nusd = 1.0\n", "unknown key 'usd'"),
        ("[prices.h100]\nusd_per_chip_hour_1yr = 9.0\n", "is above the on-demand price"),
        ('[prices.h100]\nusd_per_chip_hour = 3.0\nprice_date = "2026-13-01"\n', "must be a date like"),
        ("[prices.h100]\nusd_per_chip_hour = -1\n", "must be positive"),
        ("h100 = 3.0\n", "expected only [prices.CHIP] tables"),
        ("[prices]\n", "has no [prices.CHIP] table"),
    ],
)
def test_bad_prices_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "prices.toml"
    path.write_text(text)
    r = run(["chips", "--prices", str(path)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output


OLD_CHIP = """
[chips.old-gpu]
kind = "gpu"
bf16_flops = 1e15
int8_flops = 2e15
fp8_flops = 2e15
hbm_bytes = 100e9
hbm_bytes_per_s = 4e12
link_bytes_per_s = 4e11
links_per_axis = 1
usd_per_chip_hour = 3.0
weight_dtypes = ["bf16", "fp8", "int4"]
kv_dtypes = ["bf16", "fp8", "int4"]
eight_bit = "fp8"
topologies = ["1", "2", "4", "8"]
"""


def test_a_chips_file_without_the_new_keys_loads_with_defaults(tmp_path):
    path = tmp_path / "chips.toml"
    path.write_text(OLD_CHIP)
    chip = load_chips(path)["old-gpu"]
    assert (chip.fp4_flops, chip.scale_out_bytes_per_s, chip.four_bit, chip.price_date) == (0.0, 0.0, "int4", "")
    assert (chip.usd_per_chip_hour_1yr, chip.usd_per_chip_hour_3yr) == (0.0, 0.0)
    assert chip.default_dtypes(chip.weight_dtypes) == ("bf16", "fp8", "int4")


@pytest.mark.parametrize(
    "extra,message",
    [
        ("fp4 = 1e16\n", "unknown key 'fp4'"),
        ("fp4_flops = 1e20\n", "'fp4_flops' = 1e+20 is outside the physical range"),
        ("scale_out_bytes_per_s = -5\n", "'scale_out_bytes_per_s' must be positive"),
        ('four_bit = "nf4"\n', "four_bit must be 'int4' or 'fp4'"),
        ('four_bit = "fp4"\n', "four_bit is 'fp4' but fp4_flops is 0"),
        ('price_date = "last week"\n', "'price_date' must be a date like"),
        ("usd_per_chip_hour_1yr = 4.0\n", "is above the on-demand price"),
        ("usd_per_chip_hour_1yr = 2.0\nusd_per_chip_hour_3yr = 2.5\n", "3-year price 2.5 is above the 1-year"),
        ("usd_per_chip_hour_3yr = true\n", "'usd_per_chip_hour_3yr' must be a number"),
    ],
)
def test_new_keys_are_checked_with_one_line_errors(tmp_path, extra, message):
    path = tmp_path / "chips.toml"
    path.write_text(OLD_CHIP.replace('eight_bit = "fp8"\n', 'eight_bit = "fp8"\n' + extra))
    r = run(["chips", "--chips", str(path)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and message in r.output, r.output


def _plan(pool: dict, period_hours: float = 730) -> dict:
    return {
        "periods": 2,
        "period_hours": period_hours,
        "models": [{"model": "llama3-8b", "demand_qps": 20, "slo_ms": 20}],
        "pools": [{"quota_chips": 256, **pool}],
    }


def test_plans_take_committed_prices_from_the_catalog():
    """A 1-year or 3-year tier without term and discount: the catalog's committed price over
    the pool's on-demand price, for 8760 (26280) hours of whole periods."""
    spec = spec_from_dict(_plan({"chip": "tpu-v5e", "commitments": [{"name": "1-year"}, {"name": "3-year"}]}))
    one, three = spec.pools[0].commitments
    assert (one.term_periods, three.term_periods) == (12, 36)
    assert one.discount == pytest.approx(1 - 0.84 / 1.20) and three.discount == pytest.approx(1 - 0.54 / 1.20)
    own = spec_from_dict(_plan({"chip": "tpu-v5e", "usd_per_chip_hour": 1.0, "commitments": [{"name": "1-year"}]}))
    assert own.pools[0].commitments[0].discount == pytest.approx(1 - 0.84 / 1.0)
    result = plan(spec, time_limit_s=10, workers=1)
    assert result.status == "optimal" and all(c.discount == pytest.approx(0.3) for c in result.commitments)
    for pool, period_hours, message in [
        ({"chip": "h100", "commitments": [{"name": "1-year"}]}, 730, "no 1-year price for h100"),
        ({"chip": "tpu-v5e", "commitments": [{"name": "1-year"}]}, 720, "not a whole number of 720-hour periods"),
        ({"chip": "tpu-v5e", "commitments": [{"name": "spot"}]}, 730, "its name must be a catalog tier"),
        ({"chip": "tpu-v5e", "commitments": [{"name": "1-year", "discount": 0.3}]}, 730, "lacks 'term_periods'"),
    ]:
        with pytest.raises(InputError, match=message):
            spec_from_dict(_plan(pool, period_hours))


def test_a_plan_pool_may_price_a_chip_the_catalog_does_not():
    spec = spec_from_dict(_plan({"chip": "b300", "usd_per_chip_hour": 9.0}))
    assert plan(spec, time_limit_s=10, workers=1).status == "optimal"
    with pytest.raises(InputError, match=r"pools\[0\]: chip b300 has no on-demand price"):
        plan(spec_from_dict(_plan({"chip": "b300"})), time_limit_s=10, workers=1)


def test_launch_refuses_fp4_weights_and_maps_fp4_kv(tmp_path):
    """No engine here quantizes a whole bf16 checkpoint to fp4 online: refused with the reason;
    an fp4 KV cache (only from a chips file) is vLLM's nvfp4."""
    search = Search(load_chips(), ["b200"], ["fp4"], ["fp8"])
    with pytest.raises(InputError, match=r"cannot serve the plan.s fp4 weights.*pre-quantized"):
        launch("llama3-8b", Workload(slo_ms=50), search=search, engine="vllm")
    path = tmp_path / "chips.toml"
    chip = OLD_CHIP.replace("old-gpu", "fp4-kv").replace('"fp8", "int4"]\neight', '"fp8", "fp4"]\neight')
    path.write_text(chip.replace('kind = "gpu"', 'kind = "gpu"\ndisplay_name = "NVIDIA test GPU"'))
    search = Search(load_chips(path), ["fp4-kv"], ["fp8"], ["fp4"])
    text = " ".join(launch("llama3-8b", Workload(slo_ms=50), search=search, engine="vllm").servers[0].argv)
    assert "--kv-cache-dtype nvfp4" in text
