"""Each server group's engine command: the engine's program, then every flag of its table the
plan sets, with the plan's values; settings the engine takes only from a config file
(TensorRT-LLM's YAML) go into that file, which the command names."""

from __future__ import annotations

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


def _settings(spec: EngineSpec, g: ServerGroup, disaggregated: bool) -> list[tuple[str, Any]]:
    """(flag key, value) in the order they are emitted; None drops a setting, True is a switch."""
    ep_flag = spec.flags.get("expert_parallel")
    ep = None if g.ep <= 1 else True if ep_flag is not None and ep_flag.switch else g.ep
    out: list[tuple[str, Any]] = [
        ("host", "0.0.0.0"),
        ("port", PORT),
        ("backend", "pytorch"),
        ("dtype", COMPUTE_DTYPE),
        ("tensor_parallel", g.tp),
        ("pipeline_parallel", g.pp),
        ("data_parallel", g.dp),
        ("expert_parallel", ep),
        ("max_seqs", g.batch),
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
    if g.nodes > 1:
        out.append(("executor", "ray"))
    return out


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


def build(spec: EngineSpec, g: ServerGroup, disaggregated: bool) -> None:
    """Fill the group's argv (and config files, and the commands of a multi-host server)."""
    argv = list(spec.program)
    if spec.model_flag:
        argv += [spec.model_flag, g.model_id]
    else:
        argv.append(g.model_id)
    config: dict[str, Any] = {}
    for key, value in _settings(spec, g, disaggregated):
        if not _required(spec, key, value):
            continue
        flag = spec.flag(key)
        if flag.in_config:
            config[flag.flag] = value
        elif flag.switch:
            argv.append(flag.flag)
        else:
            argv += [flag.flag, str(value)]
    if config:
        path = f"{CONFIG_DIR}/{g.name}.yaml"
        g.files = {path: to_yaml(_nested(config))}
        argv += [spec.flag("config").flag, path]
    g.argv = argv
    if g.nodes > 1:
        g.worker_argv = ["ray", "start", f"--address=$(LWS_LEADER_ADDRESS):{RAY_PORT}", "--block"]


def leader_setup(g: ServerGroup) -> list[str]:
    """What the first node of a multi-host server runs before the engine (none on one node)."""
    return ["ray", "start", "--head", f"--port={RAY_PORT}"] if g.nodes > 1 else []
