"""servesat launch (issue 15): every built-in model x engine x chip family the engine serves
gives commands that use only the engine's known flags, with values equal to the plan
(attention data parallelism and expert parallelism by each engine's own mechanism, several
replicas of a node as servers side by side); dtypes an engine lacks are refused with the
reason; the Kubernetes manifests validate; --json, --out and the Python API agree; the flag
tables match the engines' own parsers where an engine is installed."""

from __future__ import annotations

import argparse
import itertools
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import cli
from optimizer import InputError, Search, Workload, builtin_models, load_chips, optimize, render
from optimizer.launch import ENGINES, launch, load_engine
from optimizer.launch.engines import chip_family
from optimizer.launch.yamltext import to_yaml

#: The engines that serve NVIDIA GPUs (vllm-tpu serves TPUs only).
GPU_ENGINES = [e for e in ENGINES if "nvidia" in load_engine(e).families]

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


def expected_parallelism(engine: str, g) -> dict:
    """What each engine's parallelism and batch flags must say for a group (the plan's tp chips
    per replica in pp pipeline stages, attention_dp groups per stage, ep chips for the experts,
    dp replicas per server), written from the engines' sources independently of the tables'
    [parallel] rules. None: no flag."""
    d, e, per_rank, stage = g.attention_dp, g.ep, math.ceil(g.batch / g.attention_dp), g.tp // g.pp
    if engine == "vllm":  # a DP rank per attention group, each with its own scheduler; EP over DP x TP
        return {"tensor_parallel": stage // d, "data_parallel": g.dp * d, "attention_dp": None,
                "expert_parallel": True if e > 1 else None, "max_seqs": per_rank}  # fmt: skip
    if engine == "sglang":  # --tp-size the stage, --dp-size the attention groups, the batch the server's
        return {"tensor_parallel": stage, "data_parallel": d if d > 1 else g.dp,
                "attention_dp": True if d > 1 else None, "expert_parallel": e if e > 1 else None,
                "max_seqs": per_rank * d}  # fmt: skip
    assert d in (1, stage)  # TensorRT-LLM: one attention group per GPU, the batch per rank
    return {"tensor_parallel": stage, "data_parallel": None, "attention_dp": True if d > 1 else None,
            "expert_parallel": e if e > 1 else None, "max_seqs": per_rank}  # fmt: skip


def check_nodes(engine: str, g, flags: dict) -> None:
    """A server over several GPU nodes: vLLM on a Ray cluster (the first pod its head, Ray's
    executor, data-parallel ranks a node's worth per node), SGLang as one rank per node meeting
    at the first; one node: none of those flags."""
    multi = {"--distributed-executor-backend", "--data-parallel-backend", "--data-parallel-size-local",
             "--nnodes", "--node-rank", "--dist-init-addr"}  # fmt: skip
    if g.nodes == 1 or g.family == "tpu":
        assert not multi & set(flags) - ({"--distributed-executor-backend"} if g.family == "tpu" else set())
        return
    assert g.nodes * g.chips_per_node == g.tp and g.servers_per_node == 1
    if engine == "vllm":
        assert flags["--distributed-executor-backend"] == "ray" and g.worker_argv[:2] == ["ray", "start"]
        dp = int(flags["--data-parallel-size"])
        if dp > 1:
            assert g.pp == 1 and flags["--data-parallel-backend"] == "ray"
            assert int(flags["--data-parallel-size-local"]) * g.nodes == dp
            assert int(flags["--tensor-parallel-size"]) <= g.chips_per_node  # a rank inside a node
        return
    assert engine == "sglang"
    assert flags["--nnodes"] == str(g.nodes) and flags["--node-rank"] == "0"
    assert flags["--dist-init-addr"] == "$(LWS_LEADER_ADDRESS):5000"
    worker = parse(engine, g.worker_argv)[1]
    assert worker == {**flags, "--node-rank": "$(LWS_WORKER_INDEX)"}


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
    config = yaml.safe_load(next(iter(g.files.values()))) if g.files else {}
    want = expected_parallelism(engine, g)
    assert int(flags[flag["tensor_parallel"]]) == want["tensor_parallel"]
    assert int(flags[flag["pipeline_parallel"]]) == g.pp
    if "data_parallel" in flag:
        assert int(flags[flag["data_parallel"]]) == want["data_parallel"]
    else:
        assert want["data_parallel"] is None and g.dp == 1
    adp = spec.flag("attention_dp") if "attention_dp" in flag else None
    if adp is not None and adp.in_config:
        assert config.get(adp.flag) is want["attention_dp"]
    elif adp is not None:
        assert flags.get(adp.flag) is want["attention_dp"]
    else:
        assert want["attention_dp"] is None
    ep = want["expert_parallel"]
    assert flags.get(flag["expert_parallel"]) == (ep if ep is None or ep is True else str(ep))
    assert int(flags[flag["max_seqs"]]) == want["max_seqs"]
    assert g.batch == 1 if g.role == "prefill" else g.batch >= 1
    assert int(flags[flag["max_len"]]) == context
    fraction = float(flags[flag["memory_fraction"]])
    assert fraction == g.memory_fraction and 0 < fraction <= 1
    emitted = flags.get(flag["quantization"]) if "quantization" in flag else None
    if g.weights in EXPECTED_QUANT[engine]:
        assert emitted == EXPECTED_QUANT[engine][g.weights]
    else:  # a pre-quantized checkpoint carries the weight dtype
        assert emitted is None and g.weights.upper() in g.model_id
    kv = flags[flag["kv_dtype"]] if not spec.flag("kv_dtype").in_config else config["kv_cache_config"]["dtype"]
    assert kv == EXPECTED_KV[engine][g.kv]
    if g.files:
        assert flags[flag["config"]] == next(iter(g.files))
    check_side_by_side(engine, g, flags)
    check_nodes(engine, g, flags)


#: The variable that gives a process its GPUs, per family (CUDA; ROCm's HIP runtime).
DEVICE_VARIABLE = {"nvidia": "CUDA_VISIBLE_DEVICES", "amd": "HIP_VISIBLE_DEVICES"}


def check_side_by_side(engine: str, g, flags: dict) -> None:
    """Servers that share a node: one per replica the node holds, each on its own GPUs (disjoint,
    the node's all together), HTTP port and per-server ports; the same command otherwise."""
    if g.servers_per_node == 1:
        assert g.node_commands is None
        return
    assert g.family != "tpu" and g.servers_per_node == min(g.slice_chips // g.tp, g.servers)
    commands = g.node_commands
    assert len(commands) == g.servers_per_node
    gpus = [c["env"][DEVICE_VARIABLE[g.family]].split(",") for c in commands]
    assert all(len(x) == g.tp for x in gpus)
    assert sorted(int(i) for x in gpus for i in x) == list(range(g.tp * g.servers_per_node))
    parsed = [parse(engine, c["argv"])[1] for c in commands]
    assert [int(p["--port"]) for p in parsed] == [8000 + k for k in range(len(commands))]
    per_server = {"--port", "--disaggregation-bootstrap-port"}
    for p in parsed:
        assert {k: v for k, v in p.items() if k not in per_server} == {
            k: v for k, v in flags.items() if k not in per_server
        }
    if "--disaggregation-bootstrap-port" in parsed[0]:  # SGLang prefill servers: the bootstrap server's port
        assert engine == "sglang" and g.role == "prefill"
        assert [int(p["--disaggregation-bootstrap-port"]) for p in parsed] == [8998 + k for k in range(len(parsed))]
    nixl = [c["env"].get("VLLM_NIXL_SIDE_CHANNEL_PORT") for c in commands]
    if engine == "vllm" and "--kv-transfer-config" in flags:  # NIXL handshakes: disjoint port ranges
        starts = [int(x) for x in nixl]
        assert all(b - a >= 2 * g.tp for a, b in itertools.pairwise(starts))
    else:
        assert nixl == [None] * len(commands)


@pytest.mark.parametrize("engine,family,weights,kv", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_every_model_gives_known_flags_with_the_plans_values(engine, family, weights, kv):
    for i, model in enumerate(sorted(builtin_models())):
        qps = 5.0 if i % 2 else None  # half the models as a deployment for a demand
        search = Search(CATALOG, _chips(family), weights, kv)
        workload = Workload(slo_ms=SLO_MS)
        plan = launch(model, workload, search=search, engine=engine, qps=qps)
        if plan.notes and plan.notes[0].startswith("the optimum over up to"):
            # the documented limits of replicas over several nodes (docs/launch.md): launch fell
            # back to the best plan within one node, saying why
            check_multi_node_refusal(engine, plan.notes[0])
            search = Search(CATALOG, _chips(family), weights, kv, max_nodes=1)
        ref = optimize(model, workload, search=search, top=1, qps=qps, alternatives=False)
        b = ref.best
        assert plan.status == "optimal", (model, plan.reason)
        assert plan.plan["chip"] == b.chip and plan.plan["tp"] == b.tp and plan.plan["batch"] == b.batch
        assert plan.plan["ep"] == b.ep and plan.plan["attention_dp"] == b.attention_dp
        decode = [g for g in plan.servers if g.role == "decode"]
        expected = ref.deployment.decode if qps else [b]
        assert [(g.chip, g.topology, g.tp, g.attention_dp, g.ep, g.pp, g.batch, g.weights, g.kv) for g in decode] == [
            (e.chip, e.topology, e.tp, e.attention_dp, e.ep, e.pp, e.batch, e.weights, e.kv) for e in expected
        ]
        if family != "tpu":  # a TPU server's nodes are its slice's hosts
            assert [g.nodes for g in decode] == [e.nodes for e in expected]
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
                assert g.slice_chips % g.tp == 0 and g.servers == g.replicas and g.dp == 1
                assert g.chips_per_node * g.nodes == g.tp
        validate_manifests(plan.manifests)


def check_multi_node_refusal(engine: str, message: str) -> None:
    """The only plans launch does not start as optimized: a replica over several nodes that the
    engine cannot launch (TensorRT-LLM: MPI; vLLM: a pipeline whose stages split attention),
    each naming the way out, which launch then takes (the note that says so)."""
    assert "restrict the search to one node (--max-nodes 1)" in message, message
    if engine == "trtllm":
        assert "over" in message and "nodes" in message and "MPI ranks" in message
    else:
        assert engine == "vllm" and "a pipeline of" in message and "attention groups" in message


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
    assert d["uncertainty"] is None and d["assumed"] == []  # the book profile: a bound, no priors


def test_a_calibrated_launch_carries_the_band_and_the_priors():
    """Under the calibrated profile the launch plan says what its numbers rest on, as optimize
    does: the band, and the priors behind a chip and an engine without measured runs."""
    args = ["launch", "--model", "llama3-70b", "--slo-ms", "40", "--chip", "tpu-v6e", "--profile", "calibrated"]
    r = CliRunner().invoke(cli.main, [*args, "--engine", "vllm-tpu", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["uncertainty"]["step_pct"] > 0
    assert any(a.startswith("tpu-v6e:") for a in d["assumed"])
    assert any(a.startswith("engine vllm-tpu:") for a in d["assumed"])
    text = CliRunner().invoke(cli.main, [*args, "--engine", "vllm-tpu"]).output
    band = d["uncertainty"]
    step, prefill = band["step_pct"], band["ttft_pct"]
    assert f"# band: the plan's step ±{step:.0f}%, TTFT ±{prefill:.0f}% (calibrated profile)" in text
    assert all(f"# assumed: {a}" in text for a in d["assumed"])


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


# Attention data parallelism, expert parallelism and servers side by side.


def _group(engine: str = "vllm", **kw):
    """A server group of a mixture-of-experts plan: one replica of 8 GPUs, batch 100, the
    engine's fp8 KV cache."""
    from optimizer.launch.servers import ServerGroup

    values = dict(
        role="serve", name="serve", chip="h200", family="nvidia", topology="8", slice_chips=8, tp=8,
        attention_dp=8, pp=1, dp=1, ep=8, batch=100, weights="bf16", kv="fp8", context=8192, replicas=1,
        servers=1, nodes=1, chips_per_node=8, servers_per_node=1, memory_fraction=0.9, memory_need=0.9,
        model_id="deepseek-ai/DeepSeek-V3", quantization="",
        kv_cache_dtype=load_engine(engine).kv_option("fp8", "nvidia"),
    )  # fmt: skip
    values.update(kw)
    return ServerGroup(**values)


@pytest.mark.parametrize(
    "engine,want,config",
    [
        # vLLM: a data-parallel rank per attention group (tp/d GPUs each), EP over all, batch per rank
        ("vllm", {"--tensor-parallel-size": "1", "--data-parallel-size": "8", "--enable-expert-parallel": True,
                  "--max-num-seqs": "13"}, {}),
        # SGLang: --tp-size the replica, --dp-size the groups with --enable-dp-attention, batch the server's
        ("sglang", {"--tp-size": "8", "--dp-size": "8", "--enable-dp-attention": True, "--ep-size": "8",
                    "--max-running-requests": "104"}, {}),
        # TensorRT-LLM: --tp_size the replica, enable_attention_dp in its YAML file, batch per rank
        ("trtllm", {"--tp_size": "8", "--ep_size": "8", "--max_batch_size": "13"}, {"enable_attention_dp": True}),
    ],
)  # fmt: skip
def test_attention_dp_and_ep_use_each_engines_own_mechanism(engine, want, config):
    from optimizer.launch import commands

    g = _group(engine)
    commands.build(load_engine(engine), g, disaggregated=False)
    flags = parse(engine, g.argv)[1]
    assert {k: flags.get(k) for k in want} == want
    settings = yaml.safe_load(next(iter(g.files.values()))) if g.files else {}
    assert {k: settings.get(k) for k in config} == config
    check_group(engine, g, 8192)
    # attention tensor-parallel and experts tensor-parallel: no data-parallel or expert flags
    g = _group(engine, attention_dp=1, ep=1)
    commands.build(load_engine(engine), g, disaggregated=False)
    flags = parse(engine, g.argv)[1]
    assert not {"--enable-dp-attention", "--enable-expert-parallel", "--ep-size", "--ep_size"} & set(flags)
    assert "enable_attention_dp" not in "".join(g.files.values())
    check_group(engine, g, 8192)


def test_every_split_of_a_replica_gives_the_plans_values():
    from optimizer.launch import commands

    for engine in GPU_ENGINES:
        for d in (1, 2, 4, 8):
            for e in (1, 8):
                g = _group(engine, attention_dp=d, ep=e, batch=37)
                if engine == "trtllm" and d not in (1, 8):
                    with pytest.raises(InputError, match="one group per GPU"):
                        commands.build(load_engine(engine), g, disaggregated=False)
                    continue
                commands.build(load_engine(engine), g, disaggregated=False)
                check_group(engine, g, 8192)


def test_deepseek_on_tensorrt_llm_runs_attention_data_parallel():
    """The refusal this replaces: a plan whose replicas split attention launches on TensorRT-LLM."""
    search = Search(CATALOG, _chips("nvidia"), ["bf16"], ["bf16", "fp8"])
    plan = launch("deepseek-r1", Workload(slo_ms=SLO_MS), search=search, engine="trtllm")
    decode = next(g for g in plan.servers if g.role == "decode")
    assert decode.attention_dp == decode.tp > 1 and plan.plan["attention_dp"] == decode.attention_dp
    assert yaml.safe_load(next(iter(decode.files.values())))["enable_attention_dp"] is True
    assert any("enable_attention_dp is a beta setting" in n for n in plan.notes)
    check_group("trtllm", decode, 8192)


WHOLE_NODES = """
[chips.h8]
kind = "gpu"
display_name = "{vendor} test GPU rented by whole 8-GPU nodes"
bf16_flops = 9.89e14
int8_flops = 1.979e15
fp8_flops = 1.979e15
hbm_bytes = 80e9
hbm_bytes_per_s = 3.35e12
link_bytes_per_s = 4.5e11
links_per_axis = 1
usd_per_chip_hour = 3.0
weight_dtypes = ["bf16", "fp8"]
kv_dtypes = ["bf16", "fp8"]
eight_bit = "fp8"
topologies = ["8"]

[chips.h8.sources]
specs = "test"
price = "test"
topologies = "test"
"""


def _whole_nodes(tmp_path, vendor="NVIDIA"):
    path = tmp_path / f"{vendor}.toml"
    path.write_text(WHOLE_NODES.format(vendor=vendor))
    return Search(load_chips(path), ["h8"], ["bf16"], ["bf16"])


@pytest.mark.parametrize("engine", GPU_ENGINES)
def test_replicas_that_share_a_node_run_side_by_side(tmp_path, engine):
    plan = launch("llama3-8b", Workload(slo_ms=50), search=_whole_nodes(tmp_path), engine=engine)
    assert {g.role for g in plan.servers} == {"decode", "prefill"}
    for g in plan.servers:
        assert g.tp < g.slice_chips and g.servers_per_node == min(g.slice_chips // g.tp, g.servers) > 1
        check_group(engine, g, 8192)  # disjoint GPUs, ports 8000 + k, the engine's per-server ports
        assert g.node_commands[0]["argv"][: len(g.argv)] == g.argv  # the first adds only its own ports
    prefill = next(g for g in plan.servers if g.role == "prefill")
    ports = [c["env"].get("VLLM_NIXL_SIDE_CHANNEL_PORT") for c in prefill.node_commands]
    bootstrap = [parse(engine, c["argv"])[1].get("--disaggregation-bootstrap-port") for c in prefill.node_commands]
    if engine == "vllm":
        assert ports[:2] == [str(5600), str(5600 + 2 * prefill.tp)]
    if engine == "sglang":
        assert bootstrap[:2] == ["8998", "8999"]
    text = render.launch_text(plan)
    assert text.count(" &\n") >= 2 and "\nwait" in text and "CUDA_VISIBLE_DEVICES=0" in text
    assert f"{prefill.servers_per_node} per node" in text
    # Kubernetes: a pod per server requesting its own GPUs, every one on port 8000, no device variable
    k8s = launch("llama3-8b", Workload(slo_ms=50), search=_whole_nodes(tmp_path), engine=engine, fmt="k8s")
    for g in k8s.servers:
        deployment = next(m for m in k8s.objects[g.name] if m["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert deployment["spec"]["replicas"] == g.servers
        assert container["resources"]["limits"]["nvidia.com/gpu"] == str(g.tp)
        assert "CUDA_VISIBLE_DEVICES" not in json.dumps(container) and container["command"] == g.argv
    validate_manifests(k8s.manifests)


def test_side_by_side_servers_on_amd_gpus_get_hip_visible_devices(tmp_path):
    plan = launch("llama3-8b", Workload(slo_ms=50), search=_whole_nodes(tmp_path, "AMD"), engine="vllm")
    for g in plan.servers:
        assert g.family == "amd" and g.node_commands
        assert all(set(c["env"]) == {"HIP_VISIBLE_DEVICES", "VLLM_NIXL_SIDE_CHANNEL_PORT"} for c in g.node_commands)
        check_group("vllm", g, 8192)


def test_side_by_side_servers_write_one_script_that_starts_them_all(tmp_path):
    args = ["launch", "--model", "llama3-8b", "--slo-ms", "50", "--chips", str(tmp_path / "NVIDIA.toml"),
            "--chip", "h8", "--weights", "bf16", "--kv", "bf16", "--colocated"]  # fmt: skip
    _whole_nodes(tmp_path)
    r = CliRunner().invoke(cli.main, [*args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    script = (tmp_path / "out" / "serve.sh").read_text()
    assert script.startswith("#!/bin/sh\n") and script.rstrip().endswith("wait")
    r = CliRunner().invoke(cli.main, [*args, "--json"])
    command = json.loads(r.output)["commands"][0]
    assert command["servers_per_node"] == len(command["node_commands"]) > 1


def test_a_moe_models_replicas_as_ranks_of_one_tpu_server_carry_a_note():
    from optimizer.launch import commands
    from optimizer.launch.api import _notes

    spec = load_engine("vllm")
    g = _group(family="tpu", chip="tpu-v5p", topology="2x4x4", slice_chips=32, tp=16, attention_dp=1, ep=1,
               dp=2, replicas=2, nodes=8, chips_per_node=4)  # fmt: skip
    commands.build(spec, g, disaggregated=False)
    assert parse("vllm", g.argv)[1]["--data-parallel-size"] == "2"
    ref = optimize("qwen3-30b-a3b", Workload(slo_ms=SLO_MS), search=Search(chips=["tpu-v5e"]), top=1)
    from optimizer.models import load_model

    notes = _notes(spec, [g], ref, None, load_model("qwen3-30b-a3b"), g.model_id)
    assert any("not independent" in n and "32 chips" in n for n in notes)
    assert not any("not independent" in n for n in _notes(spec, [g], ref, None, load_model("llama3-70b"), ""))


# Replicas over several GPU nodes (optimize's multi-node plans).

MULTI_NODE = {"search": Search(chips=["h100"], weights=["bf16"], kv=["bf16"]), "fmt": "k8s"}
#: llama3-405b's bf16 weights (810 GB) need more than one 8-GPU H100 node (640 GB): a pipeline of two
PIPELINE = ("llama3-405b", Workload(slo_ms=SLO_MS, serving="colocated"))


def test_a_pipeline_over_two_nodes_is_one_server_on_both_with_vllm():
    plan = launch(*PIPELINE, engine="vllm", **MULTI_NODE)
    g = plan.servers[0]
    assert (g.tp, g.pp, g.nodes, g.chips_per_node, plan.plan["pp"], plan.plan["nodes"]) == (16, 2, 2, 8, 2, 2)
    flags = parse("vllm", g.argv)[1]
    assert (flags["--tensor-parallel-size"], flags["--pipeline-parallel-size"]) == ("8", "2")
    check_group("vllm", g, 8192)
    lws = next(m for m in plan.manifests if m["kind"] == "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    assert lws["size"] == 2
    leader = lws["leaderTemplate"]["spec"]["containers"][0]
    assert leader["command"][:2] == ["sh", "-c"] and leader["command"][2].startswith("ray start --head")
    assert leader["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert lws["workerTemplate"]["spec"]["containers"][0]["command"] == g.worker_argv
    validate_manifests(plan.manifests)
    text = render.launch_text(replace(plan, format="shell"))
    assert "ray start --head --port=6379" in text and '"--address=$LEADER_ADDRESS:6379"' in text


def test_a_pipeline_over_two_nodes_runs_a_rank_per_node_with_sglang():
    plan = launch(*PIPELINE, engine="sglang", **MULTI_NODE)
    g = plan.servers[0]
    flags = parse("sglang", g.argv)[1]
    assert (flags["--tp-size"], flags["--pp-size"], flags["--nnodes"]) == ("8", "2", "2")
    check_group("sglang", g, 8192)  # the worker: the same command with --node-rank $(LWS_WORKER_INDEX)
    lws = next(m for m in plan.manifests if m["kind"] == "LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    assert lws["leaderTemplate"]["spec"]["containers"][0]["command"] == g.argv  # no Ray: the engine itself
    assert lws["workerTemplate"]["spec"]["containers"][0]["command"] == g.worker_argv
    validate_manifests(plan.manifests)
    text = render.launch_text(replace(plan, format="shell"))
    assert '--dist-init-addr "$LEADER_ADDRESS:5000"' in text and '--node-rank "$NODE_RANK"' in text
    assert "ray start" not in text and "NODE_RANK: 1)" in text


def test_tensorrt_llm_refuses_a_replica_over_several_nodes_when_no_node_serves_it():
    """405B in bf16 needs two H100 nodes, which TensorRT-LLM 1.2 cannot start and no single node
    holds: launch refuses, naming what the engine lacks (no one-node plan to fall back to)."""
    with pytest.raises(InputError) as err:
        launch(*PIPELINE, engine="trtllm", **MULTI_NODE)
    check_multi_node_refusal("trtllm", str(err.value))
    assert "over 2 h100 nodes" in str(err.value)
    args = ["launch", "--model", "llama3-70b", "--slo-ms", "100", "--chip", "h100", "--weights", "bf16",
            "--kv", "bf16", "--engine", "trtllm", "--colocated"]  # fmt: skip
    r = CliRunner().invoke(cli.main, [*args, "--max-nodes", "1"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli.main, ["launch", "--model", "llama3-405b", *args[3:], "--max-nodes", "2"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "--max-nodes 1" in r.output


def test_experts_over_two_nodes_place_a_nodes_worth_of_ranks_on_each_with_vllm():
    from optimizer.launch import commands

    # llama4-scout's wide expert parallelism: attention tensor parallel 8 in each node, 2 groups
    g = _group("vllm", tp=16, slice_chips=16, topology="16", attention_dp=2, ep=16, nodes=2, chips_per_node=8)
    commands.build(load_engine("vllm"), g, disaggregated=False)
    flags = parse("vllm", g.argv)[1]
    want = {"--tensor-parallel-size": "8", "--data-parallel-size": "2", "--data-parallel-backend": "ray",
            "--data-parallel-size-local": "1", "--enable-expert-parallel": True,
            "--distributed-executor-backend": "ray"}  # fmt: skip
    assert {k: flags.get(k) for k in want} == want
    check_group("vllm", g, 8192)
    g = _group("vllm", tp=16, slice_chips=16, topology="16", attention_dp=16, ep=16, nodes=2, chips_per_node=8)
    commands.build(load_engine("vllm"), g, disaggregated=False)
    assert parse("vllm", g.argv)[1]["--data-parallel-size-local"] == "8"
    check_group("vllm", g, 8192)
    # a pipeline whose node-sized stages split attention: vLLM places a rank's stages together
    g = _group("vllm", tp=16, slice_chips=16, topology="16", attention_dp=8, ep=1, pp=2, nodes=2, chips_per_node=8)
    with pytest.raises(InputError) as err:
        commands.build(load_engine("vllm"), g, disaggregated=False)
    check_multi_node_refusal("vllm", str(err.value))
    # SGLang expresses it: --pp-size 2, --tp-size 8 per stage, --dp-size 8 groups in each
    g = _group("sglang", tp=16, slice_chips=16, topology="16", attention_dp=8, ep=1, pp=2, nodes=2, chips_per_node=8)
    commands.build(load_engine("sglang"), g, disaggregated=False)
    flags = parse("sglang", g.argv)[1]
    assert (flags["--tp-size"], flags["--pp-size"], flags["--dp-size"], flags["--enable-dp-attention"]) == (
        "8",
        "2",
        "8",
        True,
    )
    check_group("sglang", g, 8192)


def test_no_memory_left_beside_the_weights_clips_the_fraction():
    trt, vllm = load_engine("trtllm"), load_engine("vllm")
    value, need = trt.memory_fraction(200e9, 1e9, 100e9)
    assert value == 0.95 and need == math.inf
    assert vllm.memory_fraction(200e9, 1e9, 100e9)[0] == 0.95


def test_an_optimum_the_engine_cannot_start_falls_back_to_one_node_and_says_so():
    """DeepSeek-V3 on H200 is cheapest as a 2-node pipeline with attention groups, which vLLM
    cannot place: launch gives the best one-node plan instead, with the reason in its notes."""
    search = Search(CATALOG, ["h200"], ["fp8"], ["fp8"])
    workload = Workload(slo_ms=60)
    spanning = optimize("deepseek-v3", workload, search=search, top=1, alternatives=False).best
    assert spanning.nodes > 1 and spanning.attention_dp > 1
    plan = launch("deepseek-v3", workload, search=search, engine="vllm")
    one_node = optimize(
        "deepseek-v3", workload, search=Search(CATALOG, ["h200"], ["fp8"], ["fp8"], 1), top=1, alternatives=False
    ).best
    assert plan.plan["nodes"] == 1 and plan.plan["batch"] == one_node.batch and plan.plan["tp"] == one_node.tp
    assert plan.notes[0].startswith("the optimum over up to 4 nodes is not one vLLM")
    # any other refusal is not retried: int4 weights vLLM cannot load on any node count
    with pytest.raises(InputError, match="int4 weights"):
        launch("llama3-70b", workload, search=Search(CATALOG, ["h100"], ["int4"], ["bf16"]), engine="vllm")


def test_an_engine_searches_only_what_it_runs():
    """Without --chip the search holds the chips of the engine's families and, under the book
    profile too, only the dtypes it runs: vLLM-TPU launches a TPU slice, TensorRT-LLM an
    NVIDIA plan it can express; an explicit chip it cannot serve is still refused."""
    tpu = launch("llama3-70b", Workload(slo_ms=SLO_MS), engine="vllm-tpu")
    assert tpu.status == "optimal" and all(g.family == "tpu" for g in tpu.servers)
    assert 'image: "vllm/vllm-tpu:v0.33.0"' in to_yaml(tpu.objects)
    trt = launch("llama3-70b", Workload(slo_ms=SLO_MS), engine="trtllm")
    spec = load_engine("trtllm")
    for g in trt.servers:
        assert g.family == "nvidia"
        spec.weight_option(g.weights, g.family, "llama3-70b")  # raises if the engine cannot
        spec.kv_option(g.kv, g.family)
    with pytest.raises(InputError, match=r"vLLM-TPU 0\.33\.0 does not serve h100"):
        launch("llama3-70b", Workload(slo_ms=SLO_MS), search=Search(chips=["h100"]), engine="vllm-tpu")


def test_named_chips_the_engine_does_not_serve_are_left_out_and_said():
    plan = launch("llama3-70b", Workload(slo_ms=SLO_MS), search=Search(chips=["h100", "tpu-v5e"]), engine="vllm-tpu")
    assert plan.notes[0] == "vLLM-TPU 0.33.0 does not serve h100 (it runs on tpu chips): left out"
    assert all(g.family == "tpu" for g in plan.servers)
