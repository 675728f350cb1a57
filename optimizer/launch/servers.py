"""From an optimize answer to groups of identical engine servers, one per role and
configuration, with the counts, parallelism and memory fraction each server gets.

A GPU replica is its own server (a pod of `tp` GPUs on one node: Kubernetes packs them onto
nodes; in a shell, the replicas a node holds run side by side, each on its own GPUs and
ports; a replica over several nodes is one server on all of them), so a GPU server runs one
replica. A TPU slice is one server on one GKE node pool of
the slice's topology, running the replicas the slice holds as data-parallel ranks, on one
node or, for a multi-host slice, on several (docs/launch.md, optimizer/launch/data/kubernetes.toml).
A group carries the plan's parallelism (tp, attention_dp, ep); optimizer.launch.commands
turns it into each engine's flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from optimizer.api import evaluate
from optimizer.catalog import Chip
from optimizer.errors import InputError
from optimizer.launch.engines import EngineSpec, check_family, read_data
from optimizer.profiles import Profile
from optimizer.result import Configuration, Deployment, OptimizeResult
from optimizer.workload import Workload


@dataclass
class ServerGroup:
    """`servers` identical engine servers: one role, one configuration of the plan."""

    role: str  # decode, prefill, or serve (prefill and decode on one server)
    name: str  # unique among the groups: the role, numbered when a role has several
    chip: str
    family: str  # nvidia, amd, tpu
    topology: str  # the plan's slice shape
    slice_chips: int  # chips in the plan's slice
    tp: int  # the plan's tp: chips of one replica
    attention_dp: int  # the plan's attention groups (per pipeline stage: each of tp/pp/attention_dp chips)
    pp: int  # the plan's pipeline stages (one per node of a multi-node replica; 1: none)
    dp: int  # replicas one server runs (a TPU slice's; 1 on GPUs)
    ep: int  # the plan's expert parallelism: chips the routed experts spread over
    batch: int  # sequences decoded at once per replica (1 on a prefill server)
    weights: str
    kv: str
    context: int
    replicas: int  # replicas in all these servers (prefill: prefill servers in the plan's sense)
    servers: int  # engine servers: pods, or leader-worker groups
    nodes: int  # nodes one server spans
    chips_per_node: int
    servers_per_node: int  # GPU servers side by side on one node (the replicas a slice holds)
    memory_fraction: float  # the value passed to the engine
    memory_need: float  # before clipping to the engine's range
    model_id: str
    quantization: str  # the engine's weight quantization value ("" for none)
    kv_cache_dtype: str  # the engine's KV-cache dtype value
    argv: list[str] = field(default_factory=list)
    worker_argv: list[str] | None = None  # the other nodes of a multi-host server
    files: dict[str, str] = field(default_factory=dict)  # config files the command reads
    # several servers on one node (servers_per_node > 1): each one's environment and command
    node_commands: list[dict[str, Any]] | None = None
    launcher: str = ""  # how a server spans nodes: "ray" (a Ray cluster) or "ranks" (each node its rank)

    @property
    def chips(self) -> int:
        """Chips one server takes."""
        return self.nodes * self.chips_per_node


@dataclass(frozen=True)
class Shape:
    """What the plan says about one role: a configuration, how many replicas, and the
    replicas a slice holds."""

    role: str
    chip: str
    topology: str
    slice_chips: int
    tp: int
    ep: int
    weights: str
    kv: str
    batch: int
    replicas: int
    per_slice: int
    attention_dp: int = 1  # a replica's tp chips run attention as attention_dp groups of tp/attention_dp
    pp: int = 1  # pipeline stages (a GPU replica over several nodes: one per node)
    nodes: int = 1  # nodes (scale-up domains) one replica spans


def _split(c: Any) -> tuple[int, int, int]:
    """(attention_dp, pp, nodes) of a plan's configuration or deployment entry."""
    return _attention_dp(c), int(getattr(c, "pp", 1) or 1), int(getattr(c, "nodes", 1) or 1)


def _ep(c: Any) -> int:
    return int(getattr(c, "ep", 1) or 1)


def _attention_dp(c: Any) -> int:
    return int(getattr(c, "attention_dp", 1) or 1)


def shapes(result: OptimizeResult, deployment: Deployment | None) -> list[Shape]:
    """Every role of the answer: the deployment's entries with --qps, else one decode slice of
    the optimum and the prefill servers it needs."""
    if deployment is not None:
        out = []
        for e in [*deployment.decode, *deployment.prefill]:
            total = e.replicas if e.role == "decode" else e.servers
            out.append(
                Shape(e.role, e.chip, e.topology, e.chips, e.tp, _ep(e), e.weights, e.kv,
                      e.batch or 1, total, total // e.slices, *_split(e))
            )  # fmt: skip
        return out
    b = result.best
    assert b is not None
    role = "decode" if b.prefill is not None else "serve"
    out = [
        Shape(
            role, b.chip, b.topology, b.chips, b.tp, _ep(b), b.weights, b.kv, b.batch, b.replicas, b.replicas,
            *_split(b),
        )
    ]  # fmt: skip
    if b.prefill is not None:
        p = b.prefill
        needed = max(1, math.ceil((b.prefill_servers_per_replica or 0) * b.replicas - 1e-9))
        out.append(
            Shape(
                "prefill", p.chip, p.topology, p.chips, p.tp, _ep(p), p.weights, p.kv, 1, needed, p.replicas,
                *_split(p),
            )
        )  # fmt: skip
    return out


def tpu_hosts(chip: str, slice_chips: int) -> tuple[int, int]:
    """(nodes, chips per node) of a TPU slice on GKE (kubernetes.toml's rule)."""
    tpus = read_data("kubernetes")["tpu"]
    if chip not in tpus:
        raise InputError(f"no GKE node data for TPU {chip!r}; launch knows {', '.join(sorted(tpus))}")
    t = tpus[chip]
    if slice_chips <= t["single_host_chips"]:
        return 1, slice_chips
    return slice_chips // t["chips_per_host"], t["chips_per_host"]


@dataclass(frozen=True)
class Target:
    """What is served and how it is costed, for the HBM figures of each group."""

    model: Any  # optimizer.models.Model
    model_id: str
    workload: Workload
    profile: Profile
    catalog: dict[str, Chip]


def group(spec: EngineSpec, shape: Shape, target: Target, name: str) -> ServerGroup:
    """The servers of one shape, with the engine's dtype values and memory fraction; InputError
    when the engine cannot serve the chip or a dtype."""
    chip = target.catalog[shape.chip]
    family = check_family(spec, chip)
    quantization, checkpoint = spec.weight_option(shape.weights, family, target.model.name)
    kv_value = spec.kv_option(shape.kv, family)
    if family == "tpu":
        nodes, per_node = tpu_hosts(shape.chip, shape.slice_chips)
        dp, servers, side_by_side = shape.per_slice, math.ceil(shape.replicas / shape.per_slice), 1
    elif shape.nodes > 1:  # a replica over several GPU nodes: one server on all of them
        if not spec.multi_node:
            raise InputError(
                f"{spec.label} cannot serve the plan's {shape.role} replica over {shape.nodes} {shape.chip} nodes: "
                f"{spec.multi_node_refusal}; restrict the search to one node (--max-nodes 1)"
            )
        nodes, per_node, dp, servers, side_by_side = shape.nodes, shape.tp // shape.nodes, 1, shape.replicas, 1
    else:
        nodes, per_node, dp, servers = 1, shape.tp, 1, shape.replicas
        side_by_side = min(shape.per_slice, servers)
    w = target.workload
    e = evaluate(
        target.model, Workload(context=w.context, decode_len=w.decode_len, serving="decode-only"),
        profile=target.profile, chip=shape.chip, topology=shape.topology, weights=shape.weights, kv=shape.kv,
        batch=shape.batch, tp=shape.tp, chips=target.catalog, attention_dp=shape.attention_dp, ep=shape.ep,
        pp=shape.pp,
    )  # fmt: skip
    fraction, need = spec.memory_fraction(e.param_bytes, e.kv_bytes, chip.hbm_bytes * shape.tp)
    return ServerGroup(
        role=shape.role, name=name, chip=shape.chip, family=family, topology=shape.topology,
        slice_chips=shape.slice_chips, tp=shape.tp, attention_dp=shape.attention_dp, pp=shape.pp, dp=dp, ep=shape.ep,
        batch=shape.batch, weights=shape.weights, kv=shape.kv, context=w.context, replicas=shape.replicas,
        servers=servers, nodes=nodes, chips_per_node=per_node, servers_per_node=side_by_side,
        memory_fraction=fraction, memory_need=need,
        model_id=checkpoint or target.model_id, quantization=quantization, kv_cache_dtype=kv_value,
    )  # fmt: skip


def groups(spec: EngineSpec, result: OptimizeResult, target: Target) -> list[ServerGroup]:
    """The server groups of an optimize answer (feasible), named by role."""
    found = shapes(result, result.deployment)
    counts = {s.role: sum(1 for t in found if t.role == s.role) for s in found}
    seen: dict[str, int] = {}
    out = []
    for s in found:
        seen[s.role] = seen.get(s.role, 0) + 1
        name = s.role if counts[s.role] == 1 else f"{s.role}-{seen[s.role]}"
        out.append(group(spec, s, target, name))
    families = {g.family for g in out}
    if len(families) > 1:
        raise InputError(
            f"the plan prefills on {' and '.join(sorted(families))} chips at once: {spec.label} moves KV caches "
            "only between servers of one chip family (restrict the search with --chip)"
        )
    return out


def plan_summary(b: Configuration, context: int) -> dict[str, Any]:
    """The optimum as launch reports it: the decode configuration, its parallelism and batch,
    and its prefill servers."""
    p = b.prefill
    return {
        "chip": b.chip,
        "topology": b.topology,
        "chips": b.chips,
        "tp": b.tp,
        "ep": _ep(b),
        "attention_dp": _attention_dp(b),
        "pp": _split(b)[1],
        "nodes": _split(b)[2],
        "replicas_per_slice": b.replicas,
        "batch": b.batch,
        "weights": b.weights,
        "kv": b.kv,
        "context": context,
        "step_ms": b.step_ms,
        "prefill": None
        if p is None
        else {"chip": p.chip, "topology": p.topology, "chips": p.chips, "tp": p.tp, "ep": _ep(p),
              "attention_dp": _attention_dp(p), "pp": _split(p)[1], "nodes": _split(p)[2],
              "servers_per_replica": b.prefill_servers_per_replica},
    }  # fmt: skip
