"""The command line through click's CliRunner: JSON keys, human output, every bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli import main, optimize_cmd

BEST_KEYS = {
    "chip",
    "topology",
    "chips",
    "tp",
    "n_axes",
    "replicas",
    "weights",
    "kv",
    "batch",
    "step_ms",
    "tokens_per_s_per_chip",
    "qps_per_chip",
    "queries_per_dollar",
    "usd_per_million_tokens",
    "cost_per_hour",
    "binding",
}
EVAL_KEYS = {
    "chips",
    "tp",
    "n_axes",
    "replicas",
    "param_bytes",
    "kv_bytes_per_token",
    "kv_bytes",
    "hbm_bytes",
    "hbm_free_bytes",
    "fits",
    "max_batch",
    "step_ms",
    "breakdown_ms",
    "critical_batch",
    "comms_bound",
    "tokens_per_s",
    "tokens_per_s_per_chip",
    "qps_per_chip",
    "queries_per_dollar",
}


def run(cmd, args):
    return CliRunner().invoke(cmd, args)


def test_optimize_json_has_the_documented_keys():
    """optimize --json: status, best with every required key, alternatives, solve stats."""
    r = run(optimize_cmd, ["--model", "llama3-405b", "--slo-ms", "15", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["status"] == "optimal" and d["reason"] is None
    assert set(d["best"]) >= BEST_KEYS
    assert {"seconds", "candidates"} <= set(d["solve"])
    assert len(d["alternatives"]) == 9  # every other priced chip type of the catalog serves 405B at 15 ms
    assert {a["chip"] for a in d["alternatives"]} | {d["best"]["chip"]} == {
        "a100",
        "b200",
        "gb200",
        "h100",
        "h200",
        "mi300x",
        "tpu-v4",
        "tpu-v5e",
        "tpu-v5p",
        "tpu-v6e",
    }


def test_optimize_human_output_names_what_binds():
    """The table has the winner and runners-up, and a sentence says what caps the batch."""
    r = run(
        optimize_cmd,
        ["--model", "llama3-405b", "--slo-ms", "15", "--chip", "tpu-v5e", "--weights", "int8", "--kv", "int8"],
    )
    assert r.exit_code == 0
    assert "best  tpu-v5e    8x8" in r.output and "#2" in r.output
    assert (
        "batch 91 is capped by the interconnect: with 64-way model parallelism over 2 axes, moving "
        "activations takes longer than loading weights above 91 sequences"
    ) in r.output


def test_servesat_group_runs_optimize_too():
    """`servesat optimize` is the same command as `optimize`."""
    a = run(main, ["optimize", "--model", "llama3-8b", "--slo-ms", "10", "--json"])
    b = run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "10", "--json"])
    da, db = json.loads(a.output), json.loads(b.output)
    da["solve"].pop("seconds"), db["solve"].pop("seconds")
    assert da == db


def test_impossible_target_is_an_answer():
    """A target nothing meets: exit 0, status infeasible, and the fastest step any fit reaches."""
    r = run(optimize_cmd, ["--model", "llama3-405b", "--slo-ms", "0.005", "--json"])
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert d["status"] == "infeasible" and d["best"] is None
    assert "0.005 ms target is below the fastest decode step" in d["reason"]
    human = run(optimize_cmd, ["--model", "llama3-405b", "--slo-ms", "0.005"])
    assert human.exit_code == 0 and "infeasible" in human.output


def test_nothing_fits_is_explained():
    """A context no slice can hold: infeasible, naming the bytes needed."""
    d = json.loads(
        run(
            optimize_cmd,
            ["--model", "llama3-405b", "--slo-ms", "50", "--chip", "tpu-v5e", "--context", "50000000", "--json"],
        ).output
    )
    assert d["status"] == "infeasible" and d["reason"].startswith("nothing fits in HBM")


def test_evaluate_json_keys_and_a_config_that_does_not_fit():
    """evaluate reports a configuration that does not fit, with fits false."""
    r = run(
        main,
        [
            "evaluate",
            "--model",
            "llama3-70b",
            "--chip",
            "tpu-v5e",
            "--topology",
            "2x2",
            "--weights",
            "bf16",
            "--kv",
            "bf16",
            "--batch",
            "4",
            "--json",
        ],
    )
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert set(d) >= EVAL_KEYS and d["fits"] is False and d["max_batch"] == 0
    assert set(d["breakdown_ms"]) == {"params", "kv", "flops"}


def test_evaluate_tp_defaults_to_every_chip_and_can_be_set():
    """Default model parallelism spans the slice; --tp 8 on 4x8 gives 4 replicas over one axis."""
    base = [
        "evaluate",
        "--model",
        "llama3-70b",
        "--chip",
        "tpu-v5e",
        "--topology",
        "4x8",
        "--weights",
        "int8",
        "--kv",
        "int8",
        "--batch",
        "8",
        "--json",
    ]
    d = json.loads(run(main, base).output)
    assert (d["tp"], d["n_axes"], d["replicas"]) == (32, 2, 1)
    d = json.loads(run(main, [*base, "--tp", "8"]).output)
    assert (d["tp"], d["n_axes"], d["replicas"]) == (8, 1, 4)


def test_models_and_chips_listings():
    """models lists the zoo with parameter counts and KV bytes; chips lists the catalog."""
    d = json.loads(run(main, ["models", "--json"]).output)
    by_name = {m["name"]: m for m in d["models"]}
    assert by_name["llama3-70b"]["param_count"] == 70_552_387_584
    assert by_name["llama3-70b"]["kv_bytes_per_token"]["int8"] == 163_840
    assert len(by_name) == 30  # 11 dense, 19 mixture-of-experts, latent-attention and hybrid
    c = json.loads(run(main, ["chips", "--json"]).output)
    assert {x["name"] for x in c["chips"]} == {
        "a100",
        "b200",
        "b300",
        "gb200",
        "gb300",
        "h100",
        "h200",
        "mi300x",
        "mi325x",
        "mi355x",
        "tpu-v4",
        "tpu-v5e",
        "tpu-v5p",
        "tpu-v6e",
        "tpu-v7",
    }
    assert "llama3-405b" in run(main, ["models"]).output and "tpu-v5e" in run(main, ["chips"]).output


def test_price_override_changes_the_answer():
    """--price makes a chip cheaper and the winner follows."""
    args = ["--model", "llama3-70b", "--slo-ms", "20", "--json"]
    d = json.loads(run(optimize_cmd, [*args, "--price", "h100=0.5"]).output)
    assert d["best"]["chip"] == "h100"
    assert d["best"]["cost_per_hour"] == pytest.approx(0.5 * d["best"]["chips"])


def test_chips_file_adds_a_chip(tmp_path):
    """--chips FILE (the built-in schema) adds a chip that optimize can choose."""
    f = tmp_path / "chips.toml"
    f.write_text("""
[chips.cheap-tpu]
kind = "tpu"
bf16_flops = 1.97e14
int8_flops = 3.94e14
fp8_flops = 0
hbm_bytes = 16e9
hbm_bytes_per_s = 8.2e11
link_bytes_per_s = 4.5e10
links_per_axis = 2
usd_per_chip_hour = 0.01
weight_dtypes = ["bf16", "int8", "int4"]
kv_dtypes = ["bf16", "int8", "int4"]
eight_bit = "int8"
topologies = ["2x2", "4x4"]
""")
    d = json.loads(run(optimize_cmd, ["--model", "llama3-70b", "--slo-ms", "30", "--chips", str(f), "--json"]).output)
    assert d["best"]["chip"] == "cheap-tpu"


BAD = [
    (["--model", "llama3-406b", "--slo-ms", "15"], "unknown model 'llama3-406b' (did you mean 'llama3-405b'?)"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--chip", "h10"], "unknown chip 'h10' (did you mean 'h100'?)"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--weights", "int3"], "unknown weights dtype 'int3'"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--kv", "fp2"], "unknown kv dtype 'fp2'"),
    (
        ["--model", "llama3-405b", "--slo-ms", "15", "--chip", "tpu-v5e", "--weights", "fp8"],
        "tpu-v5e supports none of the requested weights dtypes (fp8)",
    ),
    (["--model", "llama3-405b", "--slo-ms", "0"], "'--slo-ms': 0.0 is not in the range x>0"),
    (["--model", "llama3-405b", "--slo-ms", "-3"], "'--slo-ms': -3.0 is not in the range x>0"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--context", "0"], "'--context': 0 is not in the range"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--decode-len", "-1"], "'--decode-len': -1 is not in the range"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--top", "0"], "'--top': 0 is not in the range"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--objective", "fast"], "unknown objective 'fast'"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--price", "tpu-v5e=abc"], "is not CHIP=USD"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--price", "tpu-v5e=0"], "tpu-v5e must be a number of USD per"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--price", "tpu-v9=1"], "unknown chip in --price 'tpu-v9'"),
    (["--model", "llama3-405b", "--slo-ms", "15", "--chips", "/no/such.toml"], "file not found: /no/such.toml"),
    (["--model", "llama3-405b"], "Missing option '--slo-ms'"),
    (["--model", "/no/such/config.json", "--slo-ms", "15"], "model file not found: /no/such/config.json"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_input_is_one_line_and_exit_2(args, message):
    """Each bad input: exit 2, a single line naming the bad value, no traceback."""
    r = run(optimize_cmd, args)
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"hidden_size": 10', "not valid JSON"),
        ('{"hidden_size": 4096}', "config lacks key 'num_hidden_layers'"),
        ("[1, 2]", "expected a JSON object"),
        (
            '{"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": -1, "num_attention_heads": 32, '
            '"vocab_size": 32000}',
            "key 'intermediate_size' must be an integer of at least 0",
        ),
        (
            '{"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, '
            '"vocab_size": 32000, "num_local_experts": 8}',
            "has 'num_local_experts' but lacks key 'num_experts_per_tok'",
        ),
        (
            '{"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 8192, '
            '"vocab_size": 32000}',
            "config lacks key 'head_dim'",
        ),
        (
            '{"num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32, '
            '"num_key_value_heads": 12, "vocab_size": 32000}',
            "num_key_value_heads 12 must divide",
        ),
    ],
)
def test_bad_config_json_names_file_and_key(tmp_path, content, message):
    """A malformed config.json or one lacking a key: exit 2 naming the file and the key."""
    f = tmp_path / "config.json"
    f.write_text(content)
    r = run(optimize_cmd, ["--model", str(f), "--slo-ms", "15"])
    assert r.exit_code == 2
    assert str(f) in r.output and message in r.output and len(r.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--topology", "3x3"], "topology '3x3' is not a tpu-v5e slice"),
        (["--topology", "4x8", "--tp", "3"], "--tp 3 is not a product of 4x8's axes; valid: 1, 4, 8, 32"),
        (["--topology", "4x8", "--batch", "0"], "'--batch': 0 is not in the range"),
    ],
)
def test_evaluate_bad_input(args, message):
    """evaluate validates topology, model parallelism and batch the same way."""
    base = {"--model": "llama3-70b", "--chip": "tpu-v5e", "--weights": "int8", "--kv": "int8", "--batch": "1"}
    flat = [x for k, v in base.items() if k not in args for x in (k, v)]
    r = run(main, ["evaluate", *flat, *args])
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1


def test_bad_chips_file(tmp_path):
    """A chips file with an unknown key names the key."""
    f = tmp_path / "c.toml"
    f.write_text('[chips.x]\nkind = "tpu"\nflops = 1\n')
    r = run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "15", "--chips", str(f)])
    assert r.exit_code == 2 and "unknown key 'flops'" in r.output


@pytest.mark.parametrize("slo", ["5000", "100000", "1e9"])
def test_a_loose_target_is_capped_by_hbm_not_a_crash(slo):
    """Targets so loose the latency caps run to billions of sequences still solve exactly."""
    r = run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", slo, "--top", "1", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["status"] == "optimal" and "latency" not in d["best"]["binding"]


def test_constraints_package_imports_on_its_own():
    """`import constraints` works before `import optimizer` (no import cycle)."""
    import subprocess
    import sys

    code = "import constraints; print(' '.join(f.NAME for f in constraints.FAMILIES))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split() == ["hbm", "comms", "latency", "ttft"], out.stderr


def test_absurd_context_does_not_overflow_the_integer_model():
    """Contexts whose scaled KV bytes pass int64 are infeasible, never a wrapped 'unbounded' batch."""
    d = json.loads(
        run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "20", "--context", "40000000000000", "--json"]).output
    )
    assert d["status"] == "infeasible" and d["reason"].startswith("nothing fits in HBM")


@pytest.mark.parametrize(
    "body,message",
    [
        ("topologies = [8]", "key 'topologies' must be a list of strings"),
        ('topologies = ["99999999999999999999"]', "bad topology"),
        ('topologies = ["4_8"]', "bad topology '4_8'"),
        ('topologies = "4x8"', "key 'topologies' must be a list of strings"),
        ('topologies = ["4x8"]\nsources = "abc"', "key 'sources' must be a table of strings"),
        ('topologies = ["4x8"]\nlinks_per_axis_extra = 1', "unknown key 'links_per_axis_extra'"),
    ],
)
def test_bad_chip_fields_are_one_line_errors(tmp_path, body, message):
    """Wrongly typed fields of a --chips file: exit 2 naming the file and field."""
    base = (
        'kind = "tpu"\nbf16_flops = 1e14\nint8_flops = 0\nfp8_flops = 0\nhbm_bytes = 16e9\n'
        "hbm_bytes_per_s = 8e11\nlink_bytes_per_s = 4e10\nlinks_per_axis = 2\nusd_per_chip_hour = 1.0\n"
        'weight_dtypes = ["bf16"]\nkv_dtypes = ["bf16"]\neight_bit = "int8"\n'
    )
    f = tmp_path / "c.toml"
    f.write_text("[chips.x]\n" + base + body + "\n")
    r = run(optimize_cmd, ["--model", "llama3-8b", "--slo-ms", "15", "--chips", str(f)])
    assert r.exit_code == 2 and message in r.output and str(f) in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_gpu_node_allows_any_divisor_as_tp():
    """On an 8-GPU node, --tp 4 runs two replicas over the NVLink switch."""
    d = json.loads(
        run(
            main,
            [
                "evaluate",
                "--model",
                "llama3-70b",
                "--chip",
                "h100",
                "--topology",
                "8",
                "--tp",
                "4",
                "--weights",
                "fp8",
                "--kv",
                "fp8",
                "--batch",
                "8",
                "--json",
            ],
        ).output
    )
    assert (d["tp"], d["n_axes"], d["replicas"]) == (4, 1, 2)
