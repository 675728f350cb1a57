"""Hostile input over every command (issue 16's fuzz findings and the table they left): each
bad value is one line on stderr naming it, exit 2, no traceback, and no file a command reads
is changed. A property-based pass throws arbitrary numbers and strings at every numeric
option of the commands that take them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "optimizer" / "data" / "runs.csv"
HEADER = DATA.read_text().splitlines()[0]
GOOD_ROW = DATA.read_text().splitlines()[1]
PLAN = '[[models]]\nmodel = "llama3-8b"\ndemand_qps = 10\nslo_ms = 20\n[[pools]]\nchip = "h100"\nquota_chips = 64\n'
H100 = (ROOT / "optimizer" / "data" / "chips.toml").read_text().split("[chips.h100]\n")[1].split("\n\n")[0]


def run(args: list[str]):
    return CliRunner().invoke(main, args)


def one_line_exit_2(r, message: str) -> None:
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert "Traceback" not in r.output


def files(tmp_path: Path) -> dict[str, Path]:
    """The bad files the table below refers to, as {name_suffix}."""
    made = {
        "short.csv": f"{HEADER}\n{GOOD_ROW}\ntrtllm,x,h100_sxm\n",
        "quote.csv": f'{HEADER}\n{GOOD_ROW}\n"trtllm,{GOOD_ROW}\n',
        "empty_chips.toml": "",
        "tiny_bw.toml": "[chips.h100]\n" + H100.replace("hbm_bytes_per_s = 3.35e12", "hbm_bytes_per_s = 1e-300") + "\n",
        "budget.toml": "budget_per_period = 1e13\n" + PLAN,
        "hours.toml": "period_hours = 1e12\n" + PLAN,
        "quota.toml": PLAN.replace("quota_chips = 64", "quota_chips = 1000000000"),
        "term.toml": PLAN + '[[pools.commitments]]\nname = "x"\nterm_periods = 100000000000000\ndiscount = 0.3\n',
        "plan.toml": PLAN,
    }
    out = {}
    for name, text in made.items():
        (tmp_path / name).write_text(text)
        out[name.replace(".", "_")] = tmp_path / name
    (tmp_path / "binary.toml").write_bytes(bytes(range(256)) * 4)
    out["binary_toml"] = tmp_path / "binary.toml"
    return out


OPT = ["optimize", "--model", "llama3-8b", "--slo-ms", "20", "--chip", "h100"]
FRONT = ["frontier", "--model", "llama3-8b", "--chip", "h100"]
BY_BATCH = [*FRONT, "--topology", "8", "--weights", "int8", "--kv", "int8", "--by-batch"]
EVAL = ["evaluate", "--model", "llama3-8b", "--chip", "h100", "--topology", "8", "--weights", "int8", "--kv", "int8"]

# (arguments, with {file} placeholders; what the one line must say)
BAD = [
    ([*OPT, "--time-limit", "nan", "--qps", "1"], "'--time-limit': nan is not a finite number"),
    ([*OPT[:4], "nan"], "'--slo-ms': nan is not a finite number"),
    ([*OPT, "--qps", "inf"], "'--qps': inf is not a finite number"),
    ([*OPT, "--ttft-ms", "-inf"], "'--ttft-ms'"),
    ([*OPT, "--prefill-mfu", "nan"], "'--prefill-mfu': nan is not a finite number"),
    ([*OPT, "--prefill-mfu", "1e-20"], "prefill_mfu (--prefill-mfu) must be at least 0.01"),
    ([*OPT, "--decode-only", "--ttft-ms", "100"], "decode-only serving ignores prompts"),
    ([*OPT, "--decode-only", "--prompt-len", "100"], "--decode-only ignores prompts"),
    ([*OPT, "--context", "100", "--decode-len", "512"], "context (--context) 100 is below decode_len"),
    ([*OPT, "--profile", "calibrated", "--prefill-mfu", "0.5"], "--prefill-mfu applies to the book profile"),
    ([*OPT, "--price", "h100=1e-9"], "h100 must be a number of USD per chip-hour from 1e-06"),
    ([*OPT, "--chips", "{empty_chips_toml}"], "has no [chips.NAME] table"),
    ([*OPT, "--chips", "{tiny_bw_toml}"], "hbm_bytes_per_s"),
    ([*OPT, "--profile", "calibrated", "--calibration", "{binary_toml}"], "not a UTF-8 text file"),
    (["optimize", "--model", "/dev/zero", "--slo-ms", "20"], "/dev/zero: not a regular file"),
    ([*EVAL, "--batch", "8", "--context", "10", "--decode-len", "512"], "is below decode_len"),
    ([*FRONT, "--slo-ms", "nan"], "'--slo-ms': nan is not a finite number"),
    ([*BY_BATCH, "--context", "1", "--decode-len", "1"], "over 100,000: give a longer --context"),
    (["validate", "--data", "{short_csv}"], "line 3 has 3 fields, the header 32"),
    (["calibrate", "--data", "{short_csv}", "--out", "{tmp}/o.toml"], "line 3 has 3 fields"),
    (["validate", "--data", "{quote_csv}"], "line 3"),
    (["validate", "--data", "{binary_toml}"], "not a UTF-8 text file"),
    (["calibrate", "--data", "{plan_toml}", "--out", "{plan_toml}"], "is an input of this command"),
    (["plan", "{budget_toml}"], "budget_per_period must be at most 1e+12"),
    (["plan", "{hours_toml}"], "period_hours must be at most 8784"),
    (["plan", "{quota_toml}"], "quota_chips must be at most 1e+06"),
    (["plan", "{term_toml}"], "term_periods must be an integer from 1 to 1200"),
    (["plan", "{plan_toml}", "--out", "{plan_toml}"], "is an input of this command"),
    (["chips", "--chips", "{empty_chips_toml}"], "has no [chips.NAME] table"),
    (["zoo", "{plan_toml}", "--out", "{plan_toml}"], "is an input of this command"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a[:2]) + ": " + m[:30] for a, m in BAD])
def test_bad_input_is_one_line_exit_2_and_changes_no_input(tmp_path, args, message):
    made = files(tmp_path)
    before = {p: p.read_bytes() for p in made.values()}
    names = {k: str(v) for k, v in made.items()} | {"tmp": str(tmp_path)}
    one_line_exit_2(run([a.format(**names) for a in args]), message)
    assert {p: p.read_bytes() for p in made.values()} == before


def test_a_bom_at_the_start_of_a_csv_is_dropped(tmp_path):
    (tmp_path / "bom.csv").write_text("\ufeff" + f"{HEADER}\n{GOOD_ROW}\n", encoding="utf-8")
    r = run(["validate", "--data", str(tmp_path / "bom.csv"), "--profile", "book", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["overall"]["n"] == 1


def test_a_one_row_calibration_warns_that_the_fit_says_nothing(tmp_path):
    (tmp_path / "one.csv").write_text(f"{HEADER}\n{GOOD_ROW}\n")
    r = CliRunner().invoke(main, ["calibrate", "--data", str(tmp_path / "one.csv"), "--out", str(tmp_path / "p.toml")])
    assert r.exit_code == 0, r.output
    assert "warning: only 1 measured rows for" in r.output and "underdetermined" in r.output


def test_comparing_two_infeasible_modes_names_no_winner():
    r = run([*OPT[:4], "0.001", "--compare-colocated"])
    assert r.exit_code == 0, r.output
    assert "neither mode can serve it" in r.output and "cheaper: None" not in r.output


def test_plan_model_paths_are_relative_to_the_plan_file(tmp_path):
    config = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4}
    (tmp_path / "cfg" / "tiny").mkdir(parents=True)
    (tmp_path / "cfg" / "tiny" / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    (tmp_path / "plan.toml").write_text(
        PLAN.replace('"llama3-8b"', '"cfg/tiny"').replace("slo_ms", "prompt_len = 100\nslo_ms")
    )
    r = run(["plan", str(tmp_path / "plan.toml"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["status"] == "optimal"


# ----------------------------------------------------------------------------- property-based

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from(["", "abc", "1e400", "-0", "0x10", "1_000", " 5", "nan", "inf"]),
)
# (command prefix, numeric options it takes)
NUMERIC = [
    (
        [*OPT, "--json", "--time-limit", "0.5"],
        ["--slo-ms", "--context", "--decode-len", "--prompt-len", "--ttft-ms", "--prefill-mfu", "--top", "--qps"],
    ),
    ([*EVAL, "--batch", "4", "--json"], ["--batch", "--context", "--decode-len", "--prompt-len", "--tp"]),
    ([*FRONT, "--weights", "int8", "--kv", "int8", "--json"], ["--context", "--decode-len", "--slo-ms"]),
]


@pytest.mark.parametrize("prefix,flags", NUMERIC, ids=[p[0] for p, _ in NUMERIC])
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_number_is_an_answer_or_a_one_line_error(prefix, flags, data):
    """Whatever number (or non-number) an option gets: exit 0 with strict JSON, or exit 2 with
    one line; never a traceback, never NaN or Infinity in the output."""
    flag = data.draw(st.sampled_from(flags))
    value = data.draw(NUMBERS)
    r = run([*prefix, flag, str(value)])
    assert r.exit_code in (0, 2), (flag, value, r.output, r.exception)
    if r.exit_code == 2:
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: "), (flag, value, r.output)
        return
    json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"{flag} {value}: {c} in the JSON output"))


def test_strict_json_turns_non_finite_numbers_into_null():
    from optimizer.render import json_text

    assert json.loads(json_text({"a": math.nan, "b": [math.inf, 1.5], "c": (-math.inf,)})) == {
        "a": None,
        "b": [None, 1.5],
        "c": [None],
    }
