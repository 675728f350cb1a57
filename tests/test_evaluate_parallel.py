"""A replica's mixture-of-experts split on the command line and in the text: `servesat
evaluate --attention-dp N --ep N` costs the split optimizer.api.evaluate costs (invalid splits
are the library's one-line error, exit 2), and optimize's and evaluate's text show the
attention data-parallel groups and the expert parallelism when either is above 1, leaving a
dense model's output as it was."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

import cli
from optimizer import InputError, Search, Workload, evaluate, optimize, render
from optimizer.render.optimize import layout_words, split_suffix

ROOT = Path(__file__).resolve().parent.parent
MOE = ["--model", "deepseek-v3", "--chip", "h200", "--topology", "8", "--weights", "fp8", "--kv", "fp8"]
DENSE = ["--model", "llama3-70b", "--chip", "h100", "--topology", "8", "--weights", "fp8", "--kv", "fp8"]


def _evaluate(*args: str):
    return CliRunner().invoke(cli.main, ["evaluate", *args, "--batch", "64"])


@pytest.mark.parametrize("attention_dp,ep", [(1, 1), (1, 8), (8, 1), (8, 8)])
def test_evaluate_takes_the_split_the_library_costs(attention_dp, ep):
    r = _evaluate(*MOE, "--attention-dp", str(attention_dp), "--ep", str(ep), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert (d["attention_dp"], d["ep"]) == (attention_dp, ep)
    e = evaluate("deepseek-v3", Workload(context=8192), chip="h200", topology="8", weights="fp8", kv="fp8", batch=64,
                 attention_dp=attention_dp, ep=ep)  # fmt: skip
    assert d == json.loads(json.dumps(e.to_dict()))


def test_the_split_changes_the_roofline_and_defaults_to_none():
    plain = json.loads(_evaluate(*MOE, "--json").output)
    assert (plain["attention_dp"], plain["ep"]) == (1, 1)
    assert plain == json.loads(_evaluate(*MOE, "--attention-dp", "1", "--ep", "1", "--json").output)
    split = json.loads(_evaluate(*MOE, "--attention-dp", "8", "--ep", "8", "--json").output)
    # attention data parallelism copies the dense part to each of the 8 groups
    assert split["param_bytes"] > plain["param_bytes"] and split["step_ms"] != plain["step_ms"]


@pytest.mark.parametrize(
    "args",
    [
        [*MOE, "--attention-dp", "2"],  # deepseek-v3 over 8 chips: attention 1 or 8 groups
        [*MOE, "--ep", "4"],  # experts over 1 or 8 chips
        [*DENSE, "--ep", "8"],  # a dense model has no experts to spread
        [*DENSE, "--attention-dp", "8"],
    ],
)
def test_an_invalid_split_is_the_librarys_one_line_error(args):
    r = _evaluate(*args)
    assert r.exit_code == 2 and r.output.count("\n") == 1, r.output
    options = dict(zip(args[::2], args[1::2], strict=True))
    with pytest.raises(InputError) as err:
        evaluate(options["--model"], Workload(context=8192), chip=options["--chip"], topology="8", weights="fp8",
                 kv="fp8", batch=64, attention_dp=int(options.get("--attention-dp", 1)),
                 ep=int(options.get("--ep", 1)))  # fmt: skip
    assert r.output == f"error: {err.value}\n"
    assert "is not a split of" in r.output and "valid: --attention-dp 1 --ep 1" in r.output


@pytest.mark.parametrize("value", ["0", "-8", "two", "1.5"])
def test_a_split_that_is_not_a_positive_integer_is_refused(value):
    for option in ("--attention-dp", "--ep"):
        r = _evaluate(*MOE, option, value)
        assert r.exit_code == 2 and r.output.count("\n") == 1 and option in r.output, r.output


def test_cli_stays_within_400_lines():
    assert len((ROOT / "cli.py").read_text().splitlines()) <= 400


def _replica(tp=8, attention_dp=1, ep=1, pp=1, nodes=1):
    return SimpleNamespace(tp=tp, attention_dp=attention_dp, ep=ep, pp=pp, nodes=nodes)


def test_the_split_in_words_and_in_the_column():
    assert split_suffix(1, 1, 1) == "" and layout_words(_replica()) == ""
    assert split_suffix(1, 8, 8) == " dp8 ep8" and split_suffix(1, 1, 8) == " ep8" and split_suffix(1, 8, 1) == " dp8"
    assert split_suffix(2, 8, 1) == " pp2 dp8"
    assert layout_words(_replica(attention_dp=8, ep=8)) == "attention data parallel 8, experts over 8"
    assert layout_words(_replica(ep=8)) == "tensor parallel 8, experts over 8"
    assert layout_words(_replica(attention_dp=8)) == "attention data parallel 8"
    assert layout_words(_replica(16, 2, 16, 1, 2)) == (
        "2 nodes x 8: attention tensor parallel 8 x data parallel 2, experts over 16 (all-to-all across nodes)"
    )


def test_evaluate_text_describes_the_split_and_a_dense_model_is_unchanged():
    text = _evaluate(*MOE, "--attention-dp", "8", "--ep", "8").output
    first = text.splitlines()[0]
    assert "8-way model parallel over 1 axis (attention data parallel 8, experts over 8), 1 replica" in first
    plain = _evaluate(*MOE).output
    assert "attention" not in plain and "experts over" not in plain
    dense = _evaluate(*DENSE).output
    assert dense == _evaluate(*DENSE, "--attention-dp", "1", "--ep", "1").output
    assert dense.splitlines()[0].startswith("llama3-70b on h100 8: 8-way model parallel over 1 axis, 1 replica;")


def test_optimize_text_shows_the_split_only_when_there_is_one():
    result = optimize("deepseek-v3", Workload(slo_ms=50), search=Search(chips=["h200"], weights=["fp8"]), top=1)
    b = result.best
    assert b is not None
    for d, e, column in ((1, 1, "8/1"), (8, 1, "8/1 dp8"), (1, 8, "8/1 ep8"), (8, 8, "8/1 dp8 ep8")):
        c = replace(b, tp=8, n_axes=1, attention_dp=d, ep=e, pp=1, nodes=1)
        assert render.configuration_row("best", c)[4] == column
        text = render.optimize_result(replace(result, best=c, runners_up=[], alternatives=[]))
        assert ("\nLayout: each replica of 8 h200 chips: " in text) == (d > 1 or e > 1)
        assert column in text
    chosen = render.optimize_result(result)
    assert f"{b.tp}/{b.n_axes}{split_suffix(b.pp, b.attention_dp, b.ep)}" in chosen


def test_a_dense_models_optimize_text_has_no_split():
    r = CliRunner().invoke(cli.main, ["optimize", "--model", "llama3-70b", "--slo-ms", "50", "--chip", "h100"])
    assert r.exit_code == 0, r.output
    assert " dp" not in r.output and " ep" not in r.output and "Layout:" not in r.output


def test_a_split_past_one_node_is_taken_and_described():
    args = ["--model", "deepseek-v3", "--chip", "h100", "--topology", "16", "--weights", "fp8", "--kv", "fp8"]
    d = json.loads(_evaluate(*args, "--attention-dp", "2", "--ep", "16", "--json").output)
    assert (d["attention_dp"], d["ep"], d["pp"], d["nodes"]) == (2, 16, 1, 2)
    first = _evaluate(*args, "--attention-dp", "2", "--ep", "16").output.splitlines()[0]
    assert "(2 nodes x 8: attention tensor parallel 8 x data parallel 2, experts over 16" in first
    r = _evaluate(*args, "--attention-dp", "4", "--ep", "16")
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "valid:" in r.output
