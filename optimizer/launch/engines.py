"""Serving engines as data: each engine's flag table (optimizer/launch/data/ENGINE.toml), the
chip families it serves, how servesat's dtypes map onto its flags, and why it refuses the
ones it cannot express."""

from __future__ import annotations

import functools
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from optimizer.catalog import Chip
from optimizer.errors import InputError, check_choice

#: The engines `servesat launch` knows, in the order --help lists them.
ENGINES = ("vllm", "sglang", "trtllm", "vllm-tpu")
#: Output formats: engine commands for a shell, or Kubernetes manifests.
FORMATS = ("shell", "k8s")
#: Chip families: a GPU vendor, or TPUs.
FAMILIES = ("nvidia", "amd", "tpu")
#: Roles a server plays: prompts on separate prefill servers (prefill, decode), or one
#: server that prefills and decodes (serve: co-located or decode-only serving).
ROLES = ("decode", "prefill", "serve")


class EngineRefusal(InputError):
    """Why an engine cannot run a configuration: the message for a search (the plan's dtypes,
    how to restrict the search), and `fixed`, the same for one given configuration (evaluate)."""

    def __init__(self, message: str, fixed: str) -> None:
        super().__init__(message)
        self.fixed = fixed


@dataclass(frozen=True)
class Flag:
    """One entry of an engine's flag table: what servesat sets (key) and how the engine's
    parser spells it (flag), or the dotted key of its YAML config file (in_config)."""

    key: str
    flag: str
    meaning: str
    defined_in: str
    choices: tuple[str, ...] = ()
    switch: bool = False
    in_config: bool = False


@dataclass(frozen=True)
class MemoryRule:
    """The memory-fraction flag: basis "total" (weights, activations and KV cache over the
    device's memory) or "free" (KV cache over what is left after the weights); the margin
    kept for activations and runtime buffers; the range the value is clipped to."""

    key: str
    basis: str
    margin: float
    low: float
    high: float


@dataclass(frozen=True)
class ParallelRule:
    """How a replica (tp chips; attention as attention_dp groups of tp/attention_dp chips; the
    routed experts over ep chips) maps onto the engine's flags: whether its tensor-parallel
    flag counts one attention group's chips ("attention": the data-parallel flag counts the
    groups) or the whole replica's ("replica": attention data parallelism splits them); whether
    its batch flag counts one attention group's sequences ("rank") or the server's ("server");
    which attention splits it expresses ("any" divisor of tp, or "tp": one group per chip)."""

    tensor_parallel: str
    batch: str
    attention_groups: str
    source: str
    note: str = ""  # said of every plan whose replicas split attention (what servesat did not check)


@dataclass(frozen=True)
class NodeSharing:
    """Several servers on one node (a GPU slice holding several replicas, --format shell): the
    variable that gives each its devices per family, and the settings each needs its own value
    of: environment variables (base + k x 2 x the server's chips, for the k-th server) by
    serving mode, engine flags (base + k) by role."""

    devices: dict[str, str]
    source: str
    env: dict[str, dict[str, int]] = field(default_factory=dict)
    flags: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class MultiNode:
    """How one server spans several GPU nodes (a replica of a multi-node plan): "ray" (the
    first node starts a Ray cluster the others join; the engine runs on the first) or "ranks"
    (every node runs the engine with its node rank, meeting at the first node's `port`)."""

    launcher: str
    source: str
    port: int = 0
    refusal: str = ""  # the layouts of a multi-node plan the launcher cannot express, and why


@dataclass(frozen=True)
class EngineSpec:
    """An engine at one version: its command, flag table, dtype maps and sources."""

    name: str
    display_name: str
    version: str
    program: tuple[str, ...]
    model_flag: str
    families: tuple[str, ...]
    source: str
    url: str
    retrieved: str
    router: str  # what prefill-decode disaggregation needs besides the servers
    flags: dict[str, Flag]
    weights: dict[str, dict[str, str]]
    kv: dict[str, dict[str, str]]
    refusals: dict[str, str]
    memory: MemoryRule
    disaggregation: dict[str, dict[str, dict[str, str]]]
    images: dict[str, str]
    image_source: str
    parallel: ParallelRule
    node_sharing: NodeSharing
    multi_node: MultiNode | None = None  # None: the engine spans GPU nodes only in ways servesat does not emit
    multi_node_refusal: str = ""  # why, when multi_node is None
    checkpoints: dict[str, dict[str, str]] = field(default_factory=dict)
    checkpoint_sources: dict[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.display_name} {self.version}"

    def flag(self, key: str) -> Flag:
        return self.flags[key]

    def weight_option(self, dtype: str, family: str, model: str) -> tuple[str, str | None]:
        """(quantization flag value, "" for none; pre-quantized checkpoint id or None) for the
        plan's weight dtype, or InputError saying why the engine cannot serve it."""
        value = self.weights.get(family, {}).get(dtype)
        if value is not None:
            return value, None
        checkpoint = self.checkpoints.get(dtype, {}).get(model)
        if checkpoint is not None:
            return "", checkpoint
        raise self._refusal("weights", dtype, family, sorted(self.weights.get(family, {}), key=_dtype_order))

    def kv_option(self, dtype: str, family: str) -> str:
        """The KV-cache dtype value for the plan's KV dtype, or InputError saying why not."""
        value = self.kv.get(family, {}).get(dtype)
        if value is None:
            raise self._refusal("kv", dtype, family, sorted(self.kv.get(family, {}), key=_dtype_order))
        return value

    def _refusal(self, kind: str, dtype: str, family: str, supported: list[str]) -> EngineRefusal:
        reason = self.refusals.get(f"{kind}.{dtype}", f"it has no {dtype} format")
        option = "--weights" if kind == "weights" else "--kv"
        what = "weights" if kind == "weights" else "KV cache"
        serves = f"{reason}; it serves {', '.join(supported)}"
        return EngineRefusal(
            f"{self.label} cannot serve the plan's {dtype} {what} on {family} chips: {serves} "
            f"(restrict the search: {' '.join(f'{option} {d}' for d in supported)})",
            fixed=f"{self.label} cannot serve {dtype} {what} on {family} chips: {serves} "
            f"(valid {option}: {', '.join(supported)})",
        )

    def memory_fraction(self, weight_bytes: float, kv_bytes: float, hbm_bytes: float) -> tuple[float, float]:
        """(the value to pass, the unclipped need): the plan's weights and KV caches (bytes on
        one replica) over its physical HBM, per docs/launch.md; rounded up to a hundredth so
        the batch's KV caches fit."""
        m = self.memory
        if m.basis == "total":
            need = (weight_bytes + kv_bytes) / hbm_bytes + m.margin
        else:
            free = hbm_bytes * (1 - m.margin) - weight_bytes
            need = kv_bytes / free if free > 0 else math.inf
        if not need <= m.high:  # also an infinite need: no memory is left beside the weights
            return m.high, need
        value = max(m.low, math.ceil(need * 100 - 1e-9) / 100)
        return value, need


_DTYPE_ORDER = ("bf16", "fp8", "int8", "int4", "fp4")


def _dtype_order(name: str) -> int:
    return _DTYPE_ORDER.index(name) if name in _DTYPE_ORDER else len(_DTYPE_ORDER)


def _flag(table: dict[str, Any]) -> Flag:
    return Flag(
        key=table["key"],
        flag=table["flag"],
        meaning=table["meaning"],
        defined_in=table["defined_in"],
        choices=tuple(table.get("choices", ())),
        switch=bool(table.get("switch", False)),
        in_config=bool(table.get("in_config", False)),
    )


def read_data(name: str) -> dict[str, Any]:
    """A TOML file of optimizer/launch/data, parsed."""
    return tomllib.loads(resources.files("optimizer.launch").joinpath(f"data/{name}.toml").read_text())


@functools.cache
def load_engine(name: str) -> EngineSpec:
    """The named engine's table; InputError lists the engines for an unknown name."""
    check_choice("engine (--engine)", name, ENGINES)
    t = read_data(name)
    if "based_on" in t:  # a variant of another engine's table (vLLM-TPU: vLLM on TPUs only)
        t = {**read_data(t.pop("based_on")), **t}
    images = dict(t["images"])
    image_source = images.pop("image_source")
    sharing = t["node_sharing"]
    return EngineSpec(
        name=t["engine"],
        display_name=t["display_name"],
        version=t["version"],
        program=tuple(t["program"]),
        model_flag=t["model_flag"],
        families=tuple(t["families"]),
        source=t["source"],
        url=t["url"],
        retrieved=t["retrieved"],
        router=t["router"],
        flags={f["key"]: _flag(f) for f in t["flags"]},
        weights=t["weights"],
        kv=t["kv"],
        refusals=t["refusals"],
        memory=MemoryRule(**t["memory"]),
        disaggregation=t.get("disaggregation", {}),
        images=images,
        image_source=image_source,
        parallel=ParallelRule(**t["parallel"]),
        multi_node=MultiNode(**t["multi_node"]) if "multi_node" in t else None,
        multi_node_refusal=t.get("multi_node_refusal", ""),
        node_sharing=NodeSharing(
            devices={f: sharing[f] for f in FAMILIES if f in sharing},
            source=sharing["source"],
            env={mode: dict(v["env"]) for mode, v in sharing.items() if isinstance(v, dict) and "env" in v},
            flags={role: dict(v["flags"]) for role, v in sharing.items() if isinstance(v, dict) and "flags" in v},
        ),
        checkpoints=t.get("checkpoints", {}),
        checkpoint_sources=t.get("checkpoint_sources", {}),
    )


def chip_family(chip: Chip) -> str:
    """tpu for a TPU; for a GPU its vendor: a `vendor` field when the catalog has one, else the
    first word of its display name ("NVIDIA H100 ...", "AMD Instinct MI300X ...")."""
    if chip.kind == "tpu":
        return "tpu"
    vendor = str(getattr(chip, "vendor", "") or chip.display_name.split(" ", 1)[0]).lower()
    if vendor not in FAMILIES:
        raise InputError(
            f"chip {chip.name}: unknown GPU vendor {vendor!r} (from its display name {chip.display_name!r}); "
            f"launch knows {', '.join(f for f in FAMILIES if f != 'tpu')}"
        )
    return vendor


def check_runs(spec: EngineSpec, chip: Chip, weights: str, kv: str, model: str) -> str:
    """The chip's family, or InputError with the reason the engine cannot run these weights and
    this KV cache on it (its chip families, weight formats and KV dtypes)."""
    family = check_family(spec, chip)
    spec.weight_option(weights, family, model)
    spec.kv_option(kv, family)
    return family


def serves(spec: EngineSpec, chip: Chip) -> bool:
    """Whether the engine serves the chip's family (a GPU of an unknown vendor: no)."""
    try:
        return chip_family(chip) in spec.families
    except InputError:
        return False


def check_family(spec: EngineSpec, chip: Chip) -> str:
    """The chip's family, or InputError when the engine does not serve it."""
    family = chip_family(chip)
    if family not in spec.families:
        serves = f"{spec.label} does not serve {chip.name} ({family} chips); it serves {', '.join(spec.families)} chips"
        raise EngineRefusal(
            f"{serves} (pick another --engine, or restrict the search with --chip)",
            fixed=f"{serves} (pick another --engine, or a {' or '.join(spec.families)} chip)",
        )
    return family
