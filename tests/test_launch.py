"""servesat launch (issue 15): every built-in model x engine x chip family the engine serves
gives commands that use only the engine's known flags, with values equal to the plan; dtypes
an engine lacks are refused with the reason; the Kubernetes manifests validate; --json,
--out and the Python API agree; the flag tables match the engines' own parsers where an
engine is installed."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli
from optimizer import InputError, Search, Workload, builtin_models, load_chips, optimize
from optimizer.launch import ENGINES, launch, load_engine
from optimizer.launch.engines import chip_family
from optimizer.launch.yamltext import to_yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

CATALOG = load_chips()
#: What each engine's flags should say for each servesat dtype, written from the engines'
#: sources independently of the data files (None: no quantization flag).
EXPECTED_KV = {
    "vllm": {"bf16": "bfloat16", "fp8": "fp8", "int8": "int8_per_token_head", "int4": "int4_per_token_head"},
    "sglang": {"bf16": "bf16", "fp8": "fp8_e4m3"},
    "trtllm": {"bf16": "auto", "fp8": "fp8"},
}
EXPECTED_QUANT = {
    "vllm": {"bf16": None, "fp8": "fp8"},
    "sglang": {"bf16": None, "fp8": "fp8"},
    "trtllm": {"bf16": None},
}
#: (engine, family, weight dtypes, KV dtypes) searched: the dtypes each engine serves there.
CASES = [
    ("vllm", "nvidia", ["bf16", "fp8"], ["bf16", "fp8", "int8", "int4"]),
    ("vllm", "tpu", ["bf16"], ["bf16"]),
    ("sglang", "nvidia", ["bf16", "fp8"], ["bf16", "fp8"]),
    ("trtllm", "nvidia", ["bf16"], ["bf16", "fp8"]),
]
SLO_MS = 100  # generous: every built-in model meets it on every family


def _chips(family: str) -> list[str]:
    return sorted(n for n, c in CATALOG.items() if chip_family(c) == family)


def parse(engine: str, argv: list[str]) -> tuple[list[str], dict[str, str | bool]]:
    """(positional arguments after the program, flag -> value or True for a switch); a flag
    given twice fails."""
    spec = load_engine(engine)
    assert argv[: len(spec.program)] == list(spec.program)
    rest = argv[len(spec.program) :]
    switches = {f.flag for f in spec.flags.values() if f.switch}
    positional: list[str] = []
    flags: dict[str, str | bool] = {}
    while rest:
        token = rest.pop(0)
        if not token.startswith("--"):
            positional.append(token)
            continue
        assert token not in flags, f"{token} given twice"
        flags[token] = True if token in switches else rest.pop(0)
    return positional, flags


def check_group(engine: str, g, context: int) -> None:
    """The group's command: only table flags, every value the plan's."""
    spec = load_engine(engine)
    table = {f.flag: f for f in spec.flags.values() if not f.in_config}
    flag = {k: f.flag for k, f in spec.flags.items()}
    positional, flags = parse(engine, g.argv)
    for name, value in flags.items():
        assert name in table, f"{engine} has no flag {name}"
        if table[name].choices:
            assert value in table[name].choices, f"{name} {value} not among {table[name].choices}"
    model = flags.get("--model-path") if spec.model_flag else positional[0]
    assert model == g.model_id
    assert int(flags[flag["tensor_parallel"]]) == g.tp
    assert int(flags[flag["pipeline_parallel"]]) == 1
    if "data_parallel" in flag:
        assert int(flags[flag["data_parallel"]]) == g.dp
    assert int(flags[flag["max_seqs"]]) == (1 if g.role == "prefill" else g.batch)
    assert int(flags[flag["max_len"]]) == context
    fraction = float(flags[flag["memory_fraction"]])
    assert fraction == g.memory_fraction and 0 < fraction <= 1
    emitted = flags.get(flag["quantization"]) if "quantization" in flag else None
    if g.weights in EXPECTED_QUANT[engine]:
        assert emitted == EXPECTED_QUANT[engine][g.weights]
    else:  # a pre-quantized checkpoint carries the weight dtype
        assert emitted is None and g.weights.upper() in g.model_id
    config = yaml.safe_load(next(iter(g.files.values()))) if g.files else {}
    kv = flags[flag["kv_dtype"]] if not spec.flag("kv_dtype").in_config else config["kv_cache_config"]["dtype"]
    assert kv == EXPECTED_KV[engine][g.kv]
    if g.files:
        assert flags[flag["config"]] == next(iter(g.files))


@pytest.mark.parametrize("engine,family,weights,kv", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_model_gives_known_flags_with_the_plans_values(engine, family, weights, kv):
    for i, model in enumerate(sorted(builtin_models())):
        qps = 5.0 if i % 2 else None  # half the models as a deployment for a demand
        search = Search(CATALOG, _chips(family), weights, kv)
        workload = Workload(slo_ms=SLO_MS)
        ref = optimize(model, workload, search=search, top=1, qps=qps, alternatives=False)
        b = ref.best
        try:
            plan = launch(model, workload, search=search, engine=engine, qps=qps)
        except InputError as err:
            # data parallelism (attention groups, or several replicas on one node) that an engine's
            # table cannot express is refused, by name (TensorRT-LLM 1.2 has no such flag)
            assert engine == "trtllm" and "no data-parallel flag" in str(err), (model, err)
            continue
        assert plan.status == "optimal", (model, plan.reason)
        assert plan.plan["chip"] == b.chip and plan.plan["tp"] == b.tp and plan.plan["batch"] == b.batch
        assert plan.plan["ep"] == b.ep and plan.plan["attention_dp"] == b.attention_dp
        decode = [g for g in plan.servers if g.role == "decode"]
        expected = ref.deployment.decode if qps else [b]
        assert [(g.chip, g.topology, g.tp, g.batch, g.weights, g.kv) for g in decode] == [
            (e.chip, e.topology, e.tp // e.attention_dp, e.batch, e.weights, e.kv) for e in expected
        ]
        if qps:
            assert sum(g.replicas for g in decode) == sum(e.replicas for e in ref.deployment.decode)
            prefill = [g for g in plan.servers if g.role == "prefill"]
            assert sum(g.replicas for g in prefill) == sum(e.servers for e in ref.deployment.prefill)
        for g in plan.servers:
            assert g.family == family
            check_group(engine, g, workload.context)
            if family == "tpu":
                assert g.dp * g.tp == g.slice_chips and g.nodes * g.chips_per_node == g.slice_chips
            else:
                assert g.slice_chips % (g.dp * g.tp) == 0 and g.nodes == 1 and g.servers == g.replicas
        validate_manifests(plan.manifests)


def validate_manifests(objects: list[dict]) -> None:
    """Built-in kinds against the Kubernetes schemas (kubernetes-validate, strict); the
    LeaderWorkerSet CRD's structure here, and its pod templates as Pods against the schemas."""
    version = kubernetes_validate.latest_version()
    for o in objects:
        if o["kind"] != "LeaderWorkerSet":
            kubernetes_validate.validate(o, version, strict=True)
            continue
        assert o["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
        spec = o["spec"]
        assert set(spec) == {"replicas", "leaderWorkerTemplate"} and spec["replicas"] >= 1
        lwt = spec["leaderWorkerTemplate"]
        assert set(lwt) == {"size", "restartPolicy", "leaderTemplate", "workerTemplate"}
        assert lwt["size"] >= 2 and lwt["restartPolicy"] in ("RecreateGroupOnPodRestart", "None")
        for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
            pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check", **template["metadata"]}}
            kubernetes_validate.validate({**pod, "spec": template["spec"]}, version, strict=True)


def test_fp8_weights_on_tensorrt_llm_come_from_a_prequantized_checkpoint():
    search = Search(chips=["h100"], weights=["fp8"], kv=["fp8"])
    plan = launch("llama3-8b", Workload(slo_ms=SLO_MS), search=search, engine="trtllm")
    g = plan.servers[0]
    assert g.model_id == "nvidia/Llama-3.1-8B-Instruct-FP8"
    assert parse("trtllm", g.argv)[0] == [g.model_id]
    assert any("pre-quantized checkpoint" in n for n in plan.notes)


@pytest.mark.parametrize(
    "engine,chip,weights,kv,words",
    [
        ("vllm", "a100", "int8", "bf16", ["int8 weights", "vLLM 0.33.0", "bf16", "--weights bf16"]),
        ("vllm", "h100", "int4", "bf16", ["int4 weights", "pre-quantized"]),
        ("vllm", "tpu-v5e", "bf16", "int8", ["int8 KV cache", "tpu chips", "--kv bf16 --kv fp8"]),
        ("sglang", "h100", "bf16", "int8", ["int8 KV cache", "SGLang 0.5.23", "bf16, fp8"]),
        ("sglang", "tpu-v6e", "bf16", "bf16", ["does not serve tpu-v6e", "nvidia, amd"]),
        ("trtllm", "h100", "fp8", "fp8", ["fp8 weights", "pre-quantized (ModelOpt)"]),
        ("trtllm", "h100", "bf16", "int4", ["int4 KV cache", "TensorRT-LLM"]),
        ("trtllm", "tpu-v5p", "bf16", "bf16", ["does not serve tpu-v5p"]),
    ],
)
def test_a_plan_the_engine_cannot_express_is_refused_with_the_reason(engine, chip, weights, kv, words):
    model = "llama2-7b"  # no pre-quantized fp8 checkpoint is named for it
    with pytest.raises(InputError) as e:
        launch(model, Workload(slo_ms=SLO_MS), search=Search(chips=[chip], weights=[weights], kv=[kv]), engine=engine)
    for w in words:
        assert w in str(e.value)
    r = CliRunner().invoke(
        cli.main,
        [
            "launch",
            "--model",
            model,
            "--slo-ms",
            "100",
            "--chip",
            chip,
            "--weights",
            weights,
            "--kv",
            kv,
            "--engine",
            engine,
        ],
    )
    assert r.exit_code == 2 and r.output.count("\n") == 1 and r.output.startswith("error: ")


def test_bad_engine_and_format_are_one_line_errors():
    for args, word in ((["--engine", "tgi"], "vllm"), (["--format", "helm"], "k8s")):
        r = CliRunner().invoke(cli.main, ["launch", "--model", "llama3-8b", "--slo-ms", "50", *args])
        assert r.exit_code == 2 and r.output.count("\n") == 1 and word in r.output
    with pytest.raises(InputError, match="valid: vllm, sglang, trtllm"):
        launch("llama3-8b", Workload(slo_ms=50), engine="tgi")


def test_infeasible_target_is_an_answer_with_no_commands():
    r = CliRunner().invoke(cli.main, ["launch", "--model", "llama3-405b", "--slo-ms", "0.005"])
    assert r.exit_code == 0
    assert "infeasible" in r.output and "Nothing to launch." in r.output
    r = CliRunner().invoke(cli.main, ["launch", "--model", "llama3-405b", "--slo-ms", "0.005", "--json"])
    d = json.loads(r.output)
    assert d["status"] == "infeasible" and d["reason"] and d["commands"] == [] and d["manifests"] == []


CLI_ARGS = ["launch", "--model", "llama3-70b", "--slo-ms", "50", "--chip", "h100", "--weights", "fp8", "--kv", "fp8"]


def test_json_keys_and_the_python_api_give_the_same_object():
    r = CliRunner().invoke(cli.main, [*CLI_ARGS, "--qps", "20", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in ("engine", "engine_version", "plan", "commands", "manifests", "servers", "notes", "model_id"):
        assert key in d
    for key in ("chip", "topology", "chips", "tp", "ep", "batch", "weights", "kv", "context", "prefill"):
        assert key in d["plan"]
    assert {c["role"] for c in d["commands"]} == {"decode", "prefill"}
    assert all(c["argv"][:2] == ["vllm", "serve"] for c in d["commands"])
    plan = launch("llama3-70b", Workload(slo_ms=50), search=Search(chips=["h100"], weights=["fp8"], kv=["fp8"]), qps=20)
    assert json.loads(json.dumps(plan.to_dict())) == d


def test_out_writes_one_file_per_workload(tmp_path):
    for fmt, suffix in (("shell", ".sh"), ("k8s", ".yaml")):
        out = tmp_path / fmt
        r = CliRunner().invoke(cli.main, [*CLI_ARGS, "--engine", "trtllm", "--weights", "bf16", "--format", fmt,
                                          "--out", str(out)])  # fmt: skip
        assert r.exit_code == 0, r.output
        names = sorted(p.name for p in out.iterdir())
        assert names == [f"decode{suffix}", f"prefill{suffix}"]
        assert r.output.count("wrote ") == 2
        if fmt == "k8s":
            docs = [d for p in sorted(out.iterdir()) for d in yaml.safe_load_all(p.read_text())]
            assert {d["kind"] for d in docs} == {"ConfigMap", "Deployment", "Service"}
            validate_manifests(docs)
        else:
            text = (out / "decode.sh").read_text()
            assert text.startswith("#!/bin/sh\n") and "trtllm-serve" in text and "<<'EOF'" in text


def test_k8s_text_is_the_manifests_as_yaml():
    r = CliRunner().invoke(cli.main, [*CLI_ARGS, "--format", "k8s"])
    assert r.exit_code == 0, r.output
    docs = [d for d in yaml.safe_load_all(r.output) if d]
    plan = launch("llama3-70b", Workload(slo_ms=50), search=Search(chips=["h100"], weights=["fp8"], kv=["fp8"]))
    assert docs == plan.manifests
    kinds = [d["kind"] for d in docs]
    assert kinds.count("Service") == 2 and kinds.count("Deployment") == 2
    gpus = docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
    assert int(gpus) == plan.servers[0].tp


def test_a_multi_host_tpu_slice_is_a_leader_worker_set():
    plan = launch(
        "llama3-405b", Workload(slo_ms=100, serving="decode-only"),
        search=Search(chips=["tpu-v6e"], weights=["bf16"], kv=["bf16"]), fmt="k8s",
    )  # fmt: skip
    g = plan.servers[0]
    assert g.slice_chips > 8 and g.nodes == g.slice_chips // 4 and g.chips_per_node == 4
    lws = [m for m in plan.manifests if m["kind"] == "LeaderWorkerSet"]
    assert len(lws) == 1 and lws[0]["spec"]["leaderWorkerTemplate"]["size"] == g.nodes
    leader = lws[0]["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    assert leader["nodeSelector"] == {
        "cloud.google.com/gke-tpu-accelerator": "tpu-v6e-slice",
        "cloud.google.com/gke-tpu-topology": g.topology,
    }
    assert leader["containers"][0]["resources"]["limits"]["google.com/tpu"] == "4"
    assert parse("vllm", g.argv)[1]["--distributed-executor-backend"] == "ray"
    validate_manifests(plan.manifests)


def test_small_tpu_slices_fit_one_host():
    for chip, topology, hosts in (("tpu-v5e", "2x4", 1), ("tpu-v6e", "4x4", 4), ("tpu-v5p", "2x2x1", 1),
                                  ("tpu-v4", "2x2x2", 2)):  # fmt: skip
        from optimizer.launch.servers import tpu_hosts

        chips = math.prod(int(x) for x in topology.split("x"))
        assert tpu_hosts(chip, chips)[0] == hosts


def test_memory_fraction_formula():
    vllm, trt = load_engine("vllm"), load_engine("trtllm")
    # total basis: (W + B*KV)/HBM + 5%, rounded up to a hundredth
    assert vllm.memory_fraction(40e9, 20e9, 100e9) == (0.65, pytest.approx(0.65))
    assert vllm.memory_fraction(1e9, 0.5e9, 100e9)[0] == 0.07
    assert vllm.memory_fraction(90e9, 20e9, 100e9)[0] == 0.95  # clipped; the need is reported
    # free basis: B*KV / (HBM*(1-5%) - W)
    assert trt.memory_fraction(40e9, 22e9, 100e9)[0] == 0.4
    assert trt.memory_fraction(40e9, 0.1e9, 100e9)[0] == 0.05


def test_engine_with_the_book_profile_picks_only_the_launch_engine():
    r = CliRunner().invoke(cli.main, [*CLI_ARGS, "--engine", "sglang", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["profile"] == "book" and d["engine"] == "sglang"
    r = CliRunner().invoke(cli.main, [*CLI_ARGS, "--engine", "sglang", "--profile", "calibrated", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["profile"] == "calibrated"


def test_serving_modes_map_to_roles():
    args = {"search": Search(chips=["h100"], weights=["bf16"], kv=["bf16"]), "engine": "sglang"}
    co = launch("llama3-8b", Workload(slo_ms=50, serving="colocated"), **args)
    assert [g.role for g in co.servers] == ["serve"]
    assert "--disaggregation-mode" not in parse("sglang", co.servers[0].argv)[1]
    dis = launch("llama3-8b", Workload(slo_ms=50), **args)
    modes = {g.role: parse("sglang", g.argv)[1]["--disaggregation-mode"] for g in dis.servers}
    assert modes == {"decode": "decode", "prefill": "prefill"}


def test_yaml_text_reads_back():
    data = {"a": [1, "2", True, None, {"b": "x: y", "c": []}], "d": {}, "e": "yes", "f": "$(X):1", "g": 0.5}
    assert yaml.safe_load(to_yaml(data)) == data


def test_every_table_names_its_source_and_values():
    for name in ENGINES:
        spec = load_engine(name)
        assert spec.version and spec.url.startswith("https://") and spec.retrieved
        for key in ("host", "port", "tensor_parallel", "pipeline_parallel", "max_seqs", "max_len", "kv_dtype"):
            assert key in spec.flags
        for f in spec.flags.values():
            assert f.meaning and f.defined_in
        for family in spec.families:
            for dtype, value in spec.kv.get(family, {}).items():
                assert value in spec.flag("kv_dtype").choices, (name, dtype, value)
            for value in spec.weights.get(family, {}).values():
                assert not value or value in spec.flag("quantization").choices


# The engines' own parsers, when the engine is installed (they are too large for the test extra).


def _require_version(module, spec) -> None:
    version = getattr(module, "__version__", "")
    if not version.startswith(spec.version):
        pytest.skip(f"the {spec.name} table is for {spec.version}; {version} is installed")


def _check_parser_actions(spec, actions: dict) -> None:
    for f in spec.flags.values():
        if f.in_config:
            continue
        assert f.flag in actions, f"{spec.name} {spec.version} has no {f.flag}"
        choices = getattr(actions[f.flag], "choices", None)
        if choices and f.choices:
            assert set(f.choices) <= set(choices), f.flag


def test_vllm_table_matches_vllms_parser():
    vllm = pytest.importorskip("vllm")
    spec = load_engine("vllm")
    _require_version(vllm, spec)
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    serve = ServeSubcommand().subparser_init(FlexibleArgumentParser().add_subparsers())
    _check_parser_actions(spec, serve._option_string_actions)


def test_sglang_table_matches_sglangs_parser():
    sglang = pytest.importorskip("sglang")
    spec = load_engine("sglang")
    _require_version(sglang, spec)
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    _check_parser_actions(spec, parser._option_string_actions)


def test_trtllm_table_matches_trtllm_serve():
    pytest.importorskip("tensorrt_llm")
    from tensorrt_llm.commands.serve import serve

    spec = load_engine("trtllm")
    opts = {o: p for p in serve.params for o in p.opts}
    for f in spec.flags.values():
        if not f.in_config:
            assert f.flag in opts, f"trtllm-serve has no {f.flag}"


def test_docs_list_every_flag_and_the_readme_examples_are_what_launch_prints():
    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "launch.md").read_text()
    for name in ENGINES:
        spec = load_engine(name)
        assert f"{spec.display_name} {spec.version}" in page
        for f in spec.flags.values():
            assert f"`{f.flag}`" in page, f"docs/launch.md lacks {name}'s {f.flag}"
    readme = (root / "README.md").read_text().split("## From a plan to running servers")[1].split("```")[1]
    for block in readme.split("$ servesat ")[1:]:
        command, _, shown = block.partition("\n")
        r = CliRunner().invoke(cli.main, command.split())
        assert r.exit_code == 0, r.output
        printed = " ".join(
            line.strip().rstrip("\\").strip() for line in r.output.splitlines() if not line.startswith("#")
        )
        words = shown.replace("\\\n", " ").replace("...", " ").split()
        pairs = [" ".join(words[i : i + 2]) for i in range(len(words) - 1) if words[i].startswith("--")]
        assert words[0] in printed and all(p in printed for p in pairs), command


AMD_CHIP = """
[chips.mi300x]
kind = "gpu"
display_name = "AMD Instinct MI300X"
bf16_flops = 1.307e15
int8_flops = 2.615e15
fp8_flops = 2.615e15
hbm_bytes = 192e9
hbm_bytes_per_s = 5.3e12
link_bytes_per_s = 6.4e10
links_per_axis = 1
usd_per_chip_hour = 4.0
weight_dtypes = ["bf16", "fp8", "int8", "int4"]
kv_dtypes = ["bf16", "fp8", "int8", "int4"]
eight_bit = "fp8"
topologies = ["1", "2", "4", "8"]

[chips.mi300x.sources]
specs = "a test chip with MI300X-like figures"
price = "test"
topologies = "test"
"""


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_an_amd_gpu_from_a_chips_file_launches_with_amd_resources(tmp_path, engine):
    path = tmp_path / "amd.toml"
    path.write_text(AMD_CHIP)
    search = Search(load_chips(path), ["mi300x"], ["fp8"], ["fp8"])
    plan = launch("llama3-70b", Workload(slo_ms=SLO_MS), search=search, engine=engine, fmt="k8s")
    for g in plan.servers:
        assert g.family == "amd"
        check_group(engine, g, 8192)
    limits = [
        c["resources"]["limits"]
        for m in plan.manifests
        if m["kind"] == "Deployment"
        for c in m["spec"]["template"]["spec"]["containers"]
    ]
    assert limits and all(set(x) == {"amd.com/gpu"} for x in limits)
    validate_manifests(plan.manifests)
    with pytest.raises(InputError, match="does not serve mi300x"):
        launch("llama3-70b", Workload(slo_ms=SLO_MS), search=search, engine="trtllm")
