"""Each server group's engine command: the engine's program, then every flag of its table the
plan sets, with the plan's values; settings the engine takes only from a config file
(TensorRT-LLM's YAML) go into that file, which the command names. The plan's parallelism
(tp, attention_dp, ep) becomes each engine's flags by its [parallel] rule; servers that share
a node get their own devices and ports by its [node_sharing] table."""

from __future__ import annotations

import math
from typing import Any

from optimizer.errors import InputError
from optimizer.launch.engines import EngineSpec
from optimizer.launch.servers import ServerGroup
from optimizer.launch.yamltext import to_yaml

#: Where every server listens (and the Service and probes point).
PORT = 8000
#: Ray's head port on the leader of a multi-host server.
RAY_PORT = 6379
#: Config files, relative to the working directory (the manifests mount them there).
CONFIG_DIR = "servesat"
#: What every server computes in: the cost model's activations and unquantized weights.
COMPUTE_DTYPE = "bfloat16"


def parallel_values(spec: EngineSpec, g: ServerGroup) -> dict[str, Any]:
    """What the engine's parallelism and batch flags get for the group (docs/launch.md,
    Parallelism): tensor_parallel, data_parallel, attention_dp (True: the engine's switch or
    config key; None: not set), expert_parallel (the size, True for a switch, None: not set)
    and max_seqs; InputError when the engine's rule cannot express the plan's split."""
    rule = spec.parallel
    d, e = g.attention_dp, g.ep
    stage = g.tp // g.pp  # chips of one pipeline stage (the replica without a pipeline)
    if d > 1 and rule.attention_groups == "tp" and d != stage:
        raise InputError(
            f"{spec.label} runs attention data parallelism as one group per GPU; the plan splits a replica of "
            f"{stage} chips into {d} attention groups"
        )
    if rule.tensor_parallel == "attention":  # the tensor-parallel flag counts one attention group
        tp, dp, attention = stage // d, g.dp * d, None
    else:  # the tensor-parallel flag counts the stage; attention data parallelism splits it
        if d > 1 and g.dp > 1:
            raise InputError(
                f"{spec.label} splits attention inside the one replica a server runs; a server here runs {g.dp}"
            )
        tp, attention = stage, (True if d > 1 else None)
        dp = d if d > 1 and "data_parallel" in spec.flags else g.dp
    per_rank = math.ceil(g.batch / d)
    ep_flag = spec.flags.get("expert_parallel")
    return {
        "tensor_parallel": tp,
        "pipeline_parallel": g.pp,
        "data_parallel": dp,
        "attention_dp": attention,
        "expert_parallel": None if e <= 1 else True if ep_flag is not None and ep_flag.switch else e,
        "max_seqs": per_rank if rule.batch == "rank" else per_rank * d,
    }


def _settings(spec: EngineSpec, g: ServerGroup, disaggregated: bool) -> list[tuple[str, Any]]:
    """(flag key, value) in the order they are emitted; None drops a setting, True is a switch."""
    par = parallel_values(spec, g)
    out: list[tuple[str, Any]] = [
        ("host", "0.0.0.0"),
        ("port", PORT),
        ("backend", "pytorch"),
        ("dtype", COMPUTE_DTYPE),
        ("tensor_parallel", par["tensor_parallel"]),
        ("pipeline_parallel", par["pipeline_parallel"]),
        ("data_parallel", par["data_parallel"]),
        *_multi_node_settings(spec, g, par),
        ("attention_dp", par["attention_dp"]),
        ("expert_parallel", par["expert_parallel"]),
        ("max_seqs", par["max_seqs"]),
        ("max_len", g.context),
        ("kv_dtype", g.kv_cache_dtype),
        ("quantization", g.quantization or None),
        ("memory_fraction", f"{g.memory_fraction:.2f}"),
    ]
    if disaggregated:
        extra = spec.disaggregation.get(g.family, {}).get(g.role)
        if extra is None:
            raise InputError(f"{spec.label} has no prefill-decode disaggregation on {g.family} chips")
        out += list(extra.items())
    if g.nodes > 1 and g.launcher == "ray":
        out.append(("executor", "ray"))
    return out


#: Where the ranks of a server over several nodes find its first node: the address the
#: LeaderWorkerSet controller gives every pod of a group, and each pod's index in it.
LEADER_ADDRESS = "$(LWS_LEADER_ADDRESS)"
WORKER_INDEX = "$(LWS_WORKER_INDEX)"


def _multi_node_settings(spec: EngineSpec, g: ServerGroup, par: dict[str, Any]) -> list[tuple[str, Any]]:
    """The flags that make one server of a GPU replica span its nodes (the engine's
    [multi_node] launcher; a multi-host TPU slice keeps its Ray executor alone): every node's
    rank (SGLang), or Ray placing a node's worth of data-parallel ranks on each node (vLLM,
    whose executor is Ray's); InputError for a pipeline whose stages split attention, which
    vLLM's whole-rank placement cannot lay out."""
    if g.nodes <= 1 or g.family == "tpu" or spec.multi_node is None:
        return []
    if spec.multi_node.launcher == "ranks":  # every node runs the command with its rank
        return [("nnodes", g.nodes), ("node_rank", 0), ("dist_init_addr", f"{LEADER_ADDRESS}:{spec.multi_node.port}")]
    dp = par["data_parallel"]
    if dp <= 1:
        return []
    if g.pp > 1:
        raise InputError(
            f"{spec.label} cannot lay out the plan's {g.role} replica (a pipeline of {g.pp} {g.chip} nodes, each "
            f"stage in {g.attention_dp} attention groups): {spec.multi_node.refusal}; restrict the search to one "
            "node (--max-nodes 1)"
        )
    return [("data_parallel_backend", "ray"), ("data_parallel_local", dp // g.nodes)]


def _required(spec: EngineSpec, key: str, value: Any) -> bool:
    """Whether the setting is emitted: present in the table, or an error when the plan needs it."""
    if value is None:
        return False
    if key in spec.flags:
        return True
    if key in ("backend", "data_parallel") and value in ("pytorch", 1):
        return False  # only TensorRT-LLM has a backend; a single replica needs no data-parallel flag
    if key == "data_parallel":
        raise InputError(f"{spec.label} has no data-parallel flag for the {value} replicas a slice holds")
    if key == "executor":
        raise InputError(f"{spec.label}: servesat emits no multi-host launch for this engine")
    raise InputError(f"{spec.label} has no flag for {key} (the plan sets {value})")


def _nested(settings: dict[str, Any]) -> dict[str, Any]:
    """Dotted config keys (kv_cache_config.dtype) as nested mappings."""
    out: dict[str, Any] = {}
    for dotted, value in settings.items():
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _compose(spec: EngineSpec, g: ServerGroup, settings: list[tuple[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """The command (program, model, flags) and the config file's settings."""
    argv = list(spec.program)
    if spec.model_flag:
        argv += [spec.model_flag, g.model_id]
    else:
        argv.append(g.model_id)
    config: dict[str, Any] = {}
    for key, value in settings:
        if not _required(spec, key, value):
            continue
        flag = spec.flag(key)
        if flag.in_config:
            config[flag.flag] = value
        elif flag.switch:
            argv.append(flag.flag)
        else:
            argv += [flag.flag, str(value)]
    return argv, config


def devices(g: ServerGroup, k: int) -> str:
    """The device indices (on its node) of the k-th server that shares a node."""
    return ",".join(str(i) for i in range(k * g.chips_per_node, (k + 1) * g.chips_per_node))


def _side_by_side(
    spec: EngineSpec, g: ServerGroup, settings: list[tuple[str, Any]], k: int, disaggregated: bool
) -> dict[str, Any]:
    """The k-th of the servers that share a node: its devices and the ports it needs its own of
    (the HTTP port, and the engine's per-server ports of [node_sharing]), and its command."""
    sharing = spec.node_sharing
    variable = sharing.devices.get(g.family)
    if variable is None:
        raise InputError(f"{spec.label}: servesat knows no device variable for {g.family} chips")
    env = {variable: devices(g, k)}
    if disaggregated:
        ports = sharing.env.get("disaggregated", {})
        env |= {name: str(base + k * 2 * g.chips_per_node) for name, base in ports.items()}
    extra = [(key, base + k) for key, base in sharing.flags.get(g.role, {}).items()] if disaggregated else []
    argv, _ = _compose(spec, g, [(key, PORT + k if key == "port" else v) for key, v in settings] + extra)
    if g.files:
        argv += [spec.flag("config").flag, next(iter(g.files))]
    return {"env": env, "argv": argv}


def build(spec: EngineSpec, g: ServerGroup, disaggregated: bool) -> None:
    """Fill the group's argv (and config files, the commands of a multi-host server, and those
    of the servers that share a node)."""
    if g.nodes > 1:
        g.launcher = "ray" if g.family == "tpu" or spec.multi_node is None else spec.multi_node.launcher
    settings = _settings(spec, g, disaggregated)
    argv, config = _compose(spec, g, settings)
    if config:
        path = f"{CONFIG_DIR}/{g.name}.yaml"
        g.files = {path: to_yaml(_nested(config))}
        argv += [spec.flag("config").flag, path]
    g.argv = argv
    if g.nodes > 1 and g.launcher == "ray":
        g.worker_argv = ["ray", "start", f"--address={LEADER_ADDRESS}:{RAY_PORT}", "--block"]
    elif g.nodes > 1:  # the same command on every other node, with its own rank
        rank = spec.flag("node_rank").flag
        g.worker_argv = [WORKER_INDEX if i and argv[i - 1] == rank else a for i, a in enumerate(argv)]
    if g.servers_per_node > 1:
        g.node_commands = [_side_by_side(spec, g, settings, k, disaggregated) for k in range(g.servers_per_node)]


def leader_setup(g: ServerGroup) -> list[str]:
    """What the first node of a multi-host server runs before the engine: Ray's head (none on
    one node, or when every node runs the engine with its rank)."""
    return ["ray", "start", "--head", f"--port={RAY_PORT}"] if g.nodes > 1 and g.launcher == "ray" else []
