"""The candidate table: one row per discrete choice (chip, slice, model-parallel axes, dtypes;
past one node, the node count and pipeline stages: optimizer.multinode)."""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optimizer.catalog import Chip, parse_topology
from optimizer.costmodel import Layout, Roofline
from optimizer.errors import InputError
from optimizer.models import Model
from optimizer.multinode import DEFAULT_MAX_NODES, MAX_NODES, cost_terms, node_counts
from optimizer.profiles import Profile
from optimizer.workload import Workload


def parallel_layouts(shape: tuple[int, ...], kind: str = "tpu") -> list[tuple[int, int]]:
    """The distinct (Y, n_axes) of model parallelism over a subset of the slice's axes.

    Axes of size 1 carry nothing. For one Y reachable over different numbers of axes, only
    the most axes is kept: the same replica with more interconnect bandwidth. A GPU node is
    one switched domain: any Y dividing its GPU count, over one "axis".
    """
    if kind == "gpu":
        n = math.prod(shape)
        return [(1, 0)] + [(y, 1) for y in range(2, n + 1) if n % y == 0]
    axes = [d for d in shape if d > 1]
    best: dict[int, int] = {1: 0}
    for r in range(1, len(axes) + 1):
        for combo in itertools.combinations(axes, r):
            y = int(np.prod(combo))
            best[y] = max(best.get(y, 0), r)
    return sorted(best.items())


@functools.lru_cache(maxsize=4096)
def moe_layouts(y: int, heads: int, experts: int) -> tuple[tuple[int, int], ...]:
    """The (attention_dp d, ep e) splits of a Y-chip replica of a mixture-of-experts model:
    attention all tensor-parallel (d = 1) or all data-parallel (d = Y), split no finer than its
    query heads (t = Y/d divides them); experts all tensor-parallel (e = 1) or all
    expert-parallel (e = Y, when Y divides the experts). The mixed splits engines also accept
    are left out: under the cost model they change only the collectives, and each multiplies
    the candidate table. A dense model has only (1, 1)."""
    if not experts:
        return ((1, 1),)
    dps = [d for d in sorted({1, y}) if heads % (y // d) == 0]
    eps = [e for e in sorted({1, y}) if experts % e == 0]
    return tuple((d, e) for d in dps for e in eps)


def multi_node_layouts(chip: Chip, nodes: int, split: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The (d, e, pp, n_axes) of a replica over `nodes` domains of a GPU chip (optimizer.multinode):
    a pipeline of one stage per domain, each stage laid out as one domain (moe_layouts); for a
    mixture of experts also wide expert parallelism, e = Y over every chip, attention tensor
    parallel inside a domain (t = 1 or N, dividing the heads) and data parallel across them."""
    n = chip.scale_up_domain
    y = nodes * n
    out = [(d, e, nodes, 1) for d, e in moe_layouts(n, *split)]
    heads, experts = split
    if experts and experts % y == 0:
        out += [(y // t, y, 1, 1) for t in sorted({1, n}) if heads % t == 0]
    return out


@dataclass(frozen=True)
class CandidateTable:
    """Struct of arrays; row i is one candidate. `cost` holds the profile's cost terms."""

    chip: np.ndarray  # chip name
    topology: np.ndarray  # slice shape, e.g. "4x8"
    slice_chips: np.ndarray
    tp: np.ndarray  # Y
    n_axes: np.ndarray
    attention_dp: np.ndarray  # d
    ep: np.ndarray  # e
    pp: np.ndarray  # pipeline stages (1: none)
    nodes: np.ndarray  # scale-up domains one replica spans (1: one node, rack or TPU slice)
    replicas: np.ndarray  # slice_chips / Y
    weights: np.ndarray  # weight dtype name
    kv: np.ndarray  # KV dtype name
    usd_per_chip_hour: np.ndarray
    scale_up_bytes_per_s: np.ndarray  # n_axes * W_ici per chip (the collectives inside a domain)
    scale_out_bytes_per_s: np.ndarray  # W_out per chip, one way (0: not known)
    dtype_groups: np.ndarray  # "weights/kv": decode replicas and prefill servers pair up within a group
    chip_code: np.ndarray  # per row, an integer equal for the rows of one chip type
    group_code: np.ndarray  # per row, an integer equal for the rows of one dtype group
    cost: Roofline

    def __len__(self) -> int:
        return len(self.chip)

    def row(self, i: int) -> dict:
        return {
            "chip": str(self.chip[i]),
            "topology": str(self.topology[i]),
            "chips": int(self.slice_chips[i]),
            "tp": int(self.tp[i]),
            "n_axes": int(self.n_axes[i]),
            "attention_dp": int(self.attention_dp[i]),
            "ep": int(self.ep[i]),
            "pp": int(self.pp[i]),
            "nodes": int(self.nodes[i]),
            "replicas": int(self.replicas[i]),
            "weights": str(self.weights[i]),
            "kv": str(self.kv[i]),
        }


@dataclass(frozen=True, eq=False)
class _Columns:
    """Candidate rows as columns, with what the table reads of them that no model or workload
    changes: built once per enumeration (candidate_rows) and reused for every scenario."""

    chips: tuple[Chip, ...]  # the distinct chips
    chip_index: np.ndarray  # per row: index into chips
    chip: np.ndarray
    topology: np.ndarray
    slice_chips: np.ndarray
    tp: np.ndarray
    n_axes: np.ndarray
    attention_dp: np.ndarray
    ep: np.ndarray
    pp: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    kv: np.ndarray
    groups: np.ndarray  # "weights/kv"
    group_index: np.ndarray  # per row: an integer per distinct group
    keys: tuple[tuple[str, str, str], ...]  # the distinct (chip name, weights, kv)
    key_index: np.ndarray  # per row: index into keys

    def __len__(self) -> int:
        return len(self.chip)

    def take(self, rows: np.ndarray) -> _Columns:
        """These rows, in this order."""
        return _Columns(
            chips=self.chips,
            chip_index=self.chip_index[rows],
            chip=self.chip[rows],
            topology=self.topology[rows],
            slice_chips=self.slice_chips[rows],
            tp=self.tp[rows],
            n_axes=self.n_axes[rows],
            attention_dp=self.attention_dp[rows],
            ep=self.ep[rows],
            pp=self.pp[rows],
            nodes=self.nodes[rows],
            weights=self.weights[rows],
            kv=self.kv[rows],
            groups=self.groups[rows],
            group_index=self.group_index[rows],
            keys=self.keys,
            key_index=self.key_index[rows],
        )


def _columns_of(chips: dict[str, Chip], rows: Sequence[tuple]) -> _Columns:
    """rows: (chip name, topology, slice chips, Y, n_axes, d, e, pp, nodes, weight dtype, kv dtype)."""
    cols: list[tuple] = list(zip(*rows)) if rows else [()] * 11
    names = list(dict.fromkeys(cols[0]))
    keys = list(dict.fromkeys(zip(cols[0], cols[9], cols[10])))
    chip_at = {n: i for i, n in enumerate(names)}
    key_at = {k: i for i, k in enumerate(keys)}
    groups = [f"{w}/{k}" for w, k in zip(cols[9], cols[10])]
    group_at = {g: i for i, g in enumerate(dict.fromkeys(groups))}

    def ints(k: int) -> np.ndarray:
        return np.array(cols[k], dtype=np.int64)

    out = _Columns(
        chips=tuple(chips[n] for n in names),
        chip_index=np.array([chip_at[n] for n in cols[0]], dtype=np.int64),
        chip=np.array(cols[0], dtype=str),
        topology=np.array(cols[1], dtype=str),
        slice_chips=ints(2),
        tp=ints(3),
        n_axes=ints(4),
        attention_dp=ints(5),
        ep=ints(6),
        pp=ints(7),
        nodes=ints(8),
        weights=np.array(cols[9], dtype=str),
        kv=np.array(cols[10], dtype=str),
        groups=np.array(groups, dtype=str),
        group_index=np.array([group_at[g] for g in groups], dtype=np.int64),
        keys=tuple(keys),
        key_index=np.array([key_at[k] for k in zip(cols[0], cols[9], cols[10])], dtype=np.int64),
    )
    for value in vars(out).values():
        if isinstance(value, np.ndarray):
            value.flags.writeable = False  # shared by every table built from these rows
    return out


@functools.lru_cache(maxsize=256)
def _enumerated(
    chips: tuple[Chip, ...],
    weights: tuple[str, ...] | None,
    kv: tuple[str, ...] | None,
    split: tuple[int, int],
    max_nodes: int,
) -> _Columns:
    """candidate_rows as columns, cached alike."""
    return _columns_of({c.name: c for c in chips}, candidate_rows(chips, weights, kv, split, max_nodes))


def _table(
    model: Model, workload: Workload, profile: Profile, chips: dict[str, Chip], rows: list[tuple]
) -> CandidateTable:
    """rows: (chip name, topology, slice chips, Y, n_axes, d, e, pp, nodes, weight dtype, kv dtype)."""
    return _table_of(model, workload, profile, _columns_of(chips, rows))


def _table_of(model: Model, workload: Workload, profile: Profile, cols: _Columns) -> CandidateTable:
    layout = Layout(
        chips=[cols.chips[i] for i in cols.chip_index.tolist()],
        tp=cols.tp,
        n_axes=cols.n_axes,
        attention_dp=cols.attention_dp,
        ep=cols.ep,
        pp=cols.pp,
        nodes=cols.nodes,
        weights=cols.weights.tolist(),
        kv=cols.kv.tolist(),
        chip_index=(cols.chips, cols.chip_index),
    )
    return CandidateTable(
        chip=cols.chip,
        topology=cols.topology,
        slice_chips=cols.slice_chips,
        tp=cols.tp,
        n_axes=layout.n_axes,
        attention_dp=layout.dp(),
        ep=layout.experts(),
        pp=layout.stages(),
        nodes=layout.domains(),
        replicas=cols.slice_chips // np.maximum(cols.tp, 1),
        weights=cols.weights,
        kv=cols.kv,
        usd_per_chip_hour=layout.per_chip("usd_per_chip_hour"),
        scale_up_bytes_per_s=layout.per_chip("ici_bytes_per_s_per_axis") * np.maximum(layout.n_axes, 1),
        scale_out_bytes_per_s=layout.per_chip("scale_out_bytes_per_s"),
        dtype_groups=cols.groups,
        chip_code=cols.chip_index,
        group_code=cols.group_index,
        cost=cost_terms(profile, model, workload, layout),
    )


def build_table(
    model: Model,
    chips: dict[str, Chip],
    workload: Workload,
    profile: Profile,
    weights: tuple[str, ...] | None = None,
    kv: tuple[str, ...] | None = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> CandidateTable:
    """Every candidate on the given chips. `weights`/`kv` None means each chip's defaults
    (bf16, its native 8-bit format, int4). A replica layout reachable on several slices is
    kept once, on the smallest: the larger slices only add identical replicas. GPUs whose
    scale-out bandwidth is known also get replicas of 2, 4, ... up to `max_nodes` nodes
    (optimizer.multinode; 1: one node only)."""
    cols = _enumerated(tuple(chips[n] for n in sorted(chips)), weights, kv, _split_key(model), max_nodes)
    # the profile's serving engine, if it names one, runs only some dtypes on each chip family
    runs = np.array([profile.runs(model, chips[c], w, k) for c, w, k in cols.keys], dtype=bool)
    if not runs.all():
        cols = cols.take(np.flatnonzero(runs[cols.key_index]))
    return _table_of(model, workload, profile, cols)


def _split_key(model: Model) -> tuple[int, int]:
    """What of a model decides its layouts: query heads and routed experts (0: dense)."""
    return (model.num_heads, model.num_experts) if model.is_moe else (0, 0)


@functools.lru_cache(maxsize=256)
def candidate_rows(
    chips: tuple[Chip, ...],
    weights: tuple[str, ...] | None,
    kv: tuple[str, ...] | None,
    split: tuple[int, int] = (0, 0),
    max_nodes: int = DEFAULT_MAX_NODES,
) -> tuple[tuple, ...]:
    """The discrete choices (chip, shape, slice chips, Y, n_axes, d, e, pp, nodes, weights, kv),
    enumerated once per chip set, dtype filter, kind of model (`split`: query heads and experts
    of a mixture of experts, (0, 0) for dense) and node bound, and reused for every model,
    context and target. A multi-node replica's slice is named by its GPU count ("16": two
    8-GPU nodes) and holds one replica."""
    rows: list[tuple] = []
    for chip in chips:
        name = chip.name
        w_opts = (
            chip.default_dtypes(chip.weight_dtypes)
            if weights is None
            else tuple(w for w in weights if w in chip.weight_dtypes)
        )
        kv_opts = chip.default_dtypes(chip.kv_dtypes) if kv is None else tuple(k for k in kv if k in chip.kv_dtypes)
        seen: set[tuple[int, int]] = set()
        shapes = sorted(chip.topologies, key=lambda s: (int(np.prod(parse_topology(s))), s))
        for shape in shapes:
            dims = parse_topology(shape)
            for y, n in parallel_layouts(dims, chip.kind):
                if (y, n) in seen:
                    continue
                seen.add((y, n))
                for (d, e), w, k in itertools.product(moe_layouts(y, *split), w_opts, kv_opts):
                    rows.append((name, shape, int(np.prod(dims)), y, n, d, e, 1, 1, w, k))
        allowed = node_counts(max_nodes) if chip.node_counts is None else chip.node_counts
        for nodes in [n for n in allowed if n <= max_nodes] if chip.multi_node else []:
            y = nodes * chip.scale_up_domain
            for (d, e, pp, n), w, k in itertools.product(multi_node_layouts(chip, nodes, split), w_opts, kv_opts):
                rows.append((name, str(y), y, y, n, d, e, pp, nodes, w, k))
    return tuple(rows)


def single_candidate(
    model: Model,
    chip: Chip,
    topology: str,
    tp: int | None,
    weights: str,
    kv: str,
    workload: Workload,
    profile: Profile,
    attention_dp: int = 1,
    ep: int = 1,
    pp: int | None = None,
) -> CandidateTable:
    """A one-row table for a fixed configuration; tp None means every chip of the slice. A GPU
    slice of several nodes (a multiple of the chip's domain, optimizer.multinode) is one
    replica over all its chips; pp None means one stage per node (experts spread over every
    chip: one stage)."""
    nodes = 1 if topology in chip.topologies else _multi_node_slice(chip, topology)
    for kind, value, options in (("weights", weights, chip.weight_dtypes), ("kv", kv, chip.kv_dtypes)):
        if value not in options:
            raise InputError(f"{chip.name} does not support {kind} dtype {value!r}; valid: {', '.join(options)}")
    if nodes > 1:
        return _multi_node_candidate(model, chip, nodes, tp, weights, kv, workload, profile, attention_dp, ep, pp)
    if pp not in (None, 1):
        raise InputError(f"--pp {pp}: pipeline stages span nodes; {topology} is one {chip.name} slice (valid: 1)")
    dims = parse_topology(topology)
    slice_chips = int(np.prod(dims))
    layouts = dict(parallel_layouts(dims, chip.kind))
    y = slice_chips if tp is None else tp
    if y not in layouts:
        valid = ", ".join(str(v) for v in sorted(layouts))
        raise InputError(f"--tp {y} is not a product of {topology}'s axes; valid: {valid}")
    splits = moe_layouts(y, *_split_key(model))
    if (attention_dp, ep) not in splits:
        valid = ", ".join(f"--attention-dp {d} --ep {e}" for d, e in splits)
        raise InputError(
            f"--attention-dp {attention_dp} --ep {ep} is not a split of {model.name} over {y} chips; valid: {valid}"
        )
    row = (chip.name, topology, slice_chips, y, layouts[y], attention_dp, ep, 1, 1, weights, kv)
    return _table(model, workload, profile, {chip.name: chip}, [row])


def _multi_node_slice(chip: Chip, topology: str) -> int:
    """The node count of a multi-node GPU slice named by its GPU count; InputError otherwise."""
    valid = ", ".join(chip.topologies)
    if chip.multi_node:
        n = chip.scale_up_domain
        valid += f", or {2 * n}, {3 * n}, ... up to {MAX_NODES * n} ({MAX_NODES} nodes of {n})"
    bad = InputError(f"topology {topology!r} is not a {chip.name} slice; valid: {valid}")
    if not chip.multi_node or not topology.isdigit():
        if chip.kind == "gpu" and topology.isdigit() and not chip.multi_node:
            raise InputError(
                f"topology {topology!r} spans several {chip.name} nodes, but the catalog knows no scale-out "
                f"bandwidth for {chip.name} (scale_out_bytes_per_s = 0); valid: {', '.join(chip.topologies)}"
            )
        raise bad
    gpus, n = int(topology), chip.scale_up_domain
    if gpus % n or not 2 <= gpus // n <= MAX_NODES:
        raise bad
    return gpus // n


def _multi_node_candidate(
    model: Model,
    chip: Chip,
    nodes: int,
    tp: int | None,
    weights: str,
    kv: str,
    workload: Workload,
    profile: Profile,
    attention_dp: int,
    ep: int,
    pp: int | None,
) -> CandidateTable:
    y = nodes * chip.scale_up_domain
    if tp not in (None, y):
        raise InputError(f"--tp {tp}: a slice of {nodes} {chip.name} nodes is one replica of all {y} GPUs (--tp {y})")
    layouts = multi_node_layouts(chip, nodes, _split_key(model))
    if pp is None:
        pp = 1 if ep > chip.scale_up_domain else nodes
    match = [(d, e, p, n) for d, e, p, n in layouts if (d, e, p) == (attention_dp, ep, pp)]
    if not match:
        valid = "; ".join(f"--pp {p} --attention-dp {d} --ep {e}" for d, e, p, _ in layouts)
        raise InputError(
            f"--pp {pp} --attention-dp {attention_dp} --ep {ep} is not a layout of {model.name} over {nodes} "
            f"{chip.name} nodes; valid: {valid}"
        )
    d, e, p, n = match[0]
    row = (chip.name, str(y), y, y, n, d, e, p, nodes, weights, kv)
    return _table(model, workload, profile, {chip.name: chip}, [row])
