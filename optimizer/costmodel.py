"""The "book" profile: the seed chapter's roofline, vectorized over candidates (docs/cost-model.md).

For one replica of Y chips, weights in dtype w (b_w bytes), KV cache in dtype k, compute
and activations in bf16:

    T_params = P*b_w / (Y*W_hbm)      T_kv = B*S*kv_token / (Y*W_hbm)
    T_flops  = 2*P*B / (Y*C)          T_step = T_kv + max(T_flops, T_params)

and, per sharded matmul, T_ici = B*D*b_act/(n_axes*W_ici), T_hbm = D*F*b_w/(Y*W_hbm),
T_math = 2*B*D*F/(Y*C). Every term is linear in the batch B, so each is stored as a
per-row constant (seconds) or a per-row slope (seconds per sequence).

Mixture-of-experts models (docs/models.md) add one term that is not linear: a decode step
reads the experts its B tokens touch, E*(1 - (1 - k/E)^B) per MoE layer, so
T_params = (P_d*d + P_r*(1 - (1 - k/E)^B)) * b_w / (Y*W_hbm), with P_d the weights every
token uses (replicated over the d attention data-parallel groups), P_r the routed experts;
T_flops uses the active weights. A row's layout is Y = t*d = t_moe*e (attention tensor
parallelism t, attention data parallelism d, expert tensor parallelism t_moe, expert
parallelism e). Latent attention's compressed KV is replicated on the t chips of a group.

Prefill of a T-token prompt is compute-bound: T_prefill = 2*P*T / (Y*C*MFU) (the chapter,
40% MFU). A prefill server holds the weights and one prompt's KV: P*b_w + T*kv_token <= Y*M.
Co-located serving (prefill on the decode replica) stretches each decode step by the
prefill work it absorbs: a replica finishes B/G queries per step on average, so it must
prefill B/G prompts per step, adding B * T_prefill/G to the step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optimizer.catalog import ACTIVATION_BYTES, DTYPE_BYTES, Chip
from optimizer.models import Model
from optimizer.workload import Workload


@dataclass(frozen=True)
class Layout:
    """What the cost model reads of each candidate row: its chip, model-parallel degree Y and
    axes, weight and KV dtypes (sequences of one length)."""

    chips: Sequence[Chip]
    tp: np.ndarray
    n_axes: np.ndarray
    weights: Sequence[str]
    kv: Sequence[str]
    attention_dp: np.ndarray | None = None  # d (None: 1 on every row)
    ep: np.ndarray | None = None  # e (None: 1 on every row)
    pp: np.ndarray | None = None  # pipeline stages (None: 1 on every row; see optimizer.multinode)
    nodes: np.ndarray | None = None  # scale-up domains the replica spans (None: 1 on every row)
    # The distinct chips and each row's index into them (None: read per row from `chips`); the
    # same per-row figures, without a Python loop over the rows (optimizer.candidates sets it).
    chip_index: tuple[tuple[Chip, ...], np.ndarray] | None = field(default=None, compare=False)

    def dp(self) -> np.ndarray:
        return np.ones(len(self.tp), np.int64) if self.attention_dp is None else np.asarray(self.attention_dp)

    def experts(self) -> np.ndarray:
        return np.ones(len(self.tp), np.int64) if self.ep is None else np.asarray(self.ep)

    def stages(self) -> np.ndarray:
        return np.ones(len(self.tp), np.int64) if self.pp is None else np.asarray(self.pp)

    def domains(self) -> np.ndarray:
        return np.ones(len(self.tp), np.int64) if self.nodes is None else np.asarray(self.nodes)

    def all_to_all_bytes_per_s(self) -> np.ndarray:
        """The bandwidth the experts' all-to-all sees per chip: n_axes*W_ici inside one domain;
        when the e expert chips span several domains (e/nodes in each), the NVLink leg (to the
        e/nodes - 1 peers of its domain) and the scale-out leg (to the e - e/nodes others) run at
        once and the slower decides, expressed as the bandwidth that moves (e-1)/e of the bytes:
        (e-1) / max((e/nodes - 1)/(n_axes*W_ici), (e - e/nodes)/W_out) (docs/cost-model.md)."""
        local = self.per_chip("ici_bytes_per_s_per_axis") * np.maximum(np.asarray(self.n_axes, dtype=float), 1.0)
        e, nodes = self.experts().astype(float), self.domains().astype(float)
        cross = (nodes > 1) & (e > 1)
        if not cross.any():
            return local
        out = np.where(cross, self.per_chip("scale_out_bytes_per_s"), 1.0)
        per_domain = e / nodes
        slowest = np.maximum((per_domain - 1.0) / local, (e - per_domain) / np.where(out > 0, out, np.nan))
        return np.where(cross, (e - 1.0) / np.where(cross, slowest, 1.0), local)

    def per_chip(self, attr: str) -> np.ndarray:
        if self.chip_index is None:
            return np.array([getattr(c, attr) for c in self.chips], dtype=float)
        distinct, index = self.chip_index
        return np.array([getattr(c, attr) for c in distinct], dtype=float)[index]


@dataclass(frozen=True)
class Roofline:
    """Per-row cost terms of a profile (the book roofline, or the calibrated one, which fills
    the same fields with fitted terms and the extras below); arrays of one length (one entry
    per candidate)."""

    weight_bytes: np.ndarray  # P*b_w
    kv_bytes_per_token: np.ndarray  # 2*K*H*L*b_kv
    kv_bytes_per_seq: np.ndarray  # S * kv_bytes_per_token
    hbm_capacity_bytes: np.ndarray  # Y*M
    params_s: np.ndarray  # T_params
    kv_s_per_seq: np.ndarray  # T_kv / B
    flops_s_per_seq: np.ndarray  # T_flops / B
    ici_s_per_seq: np.ndarray  # T_ici / B (per sharded matmul)
    matmul_hbm_s: np.ndarray  # T_hbm of one sharded matmul
    matmul_flops_s_per_seq: np.ndarray  # T_math / B of one sharded matmul
    critical_batch: np.ndarray  # C*b_w / (2*W_hbm)
    prefill_s: np.ndarray  # T_prefill of one prompt on this replica
    prompt_kv_bytes: np.ndarray  # T * kv_token: one prompt's KV cache
    colocated_s_per_seq: np.ndarray  # T_prefill / G when prefill is co-located, else 0
    # The calibrated profile's additions (zero, and the KV read outside the max, in the book):
    fixed_s: np.ndarray  # per step: engine overhead t0 + collective latencies
    overhead_s_per_seq: np.ndarray  # per sequence per step: engine overhead + collective bytes
    kv_in_max: np.ndarray  # 1.0: the KV read overlaps the matmuls (inside the max), 0.0: it adds to them
    # Mixture of experts (zero for a dense model): reading every routed expert once, of which a
    # batch of B reads the fraction 1 - miss^B; the same for one MoE layer (the comms check).
    experts_s: np.ndarray
    expert_miss: np.ndarray  # 1 - k/E (1.0 for a dense model)
    matmul_experts_s: np.ndarray
    # Several nodes (optimizer.multinode): pipeline stages (1: none); of fixed_s and
    # overhead_s_per_seq, what the stage boundaries cost over the scale-out network.
    stages: np.ndarray
    boundary_s: np.ndarray
    boundary_s_per_seq: np.ndarray

    def effective_batch(self, batch: np.ndarray | float, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The batch the terms see: a pipeline of pp stages runs pp microbatches, so below pp
        sequences its stages idle and the step costs what pp sequences cost (the bubble)."""
        b = np.asarray(batch, dtype=float)
        pp = self.stages[rows]
        return np.where(pp > 1, np.maximum(b, pp), b)

    def experts_read_s(self, batch: np.ndarray | float, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Time to read the experts a batch touches: experts_s * (1 - (1 - k/E)^B)."""
        b = self.effective_batch(batch, rows)
        return self.experts_s[rows] * (1.0 - self.expert_miss[rows] ** b)

    def step_s(self, batch: np.ndarray | float, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """T_step of `rows` at the batch: in the book T_kv + max(T_flops, T_params) (+ B*T_prefill/G
        co-located); in general fixed + B*(overhead + colocated + kv_out) + max(B*flops, params +
        experts touched + B*kv_in) (a pipeline: at max(B, pp), see effective_batch)."""
        b = self.effective_batch(batch, rows)
        kv_in = self.kv_s_per_seq[rows] * self.kv_in_max[rows]
        outside = self.overhead_s_per_seq[rows] + self.colocated_s_per_seq[rows] + self.kv_s_per_seq[rows] - kv_in
        return (
            self.fixed_s[rows]
            + outside * b
            + np.maximum(self.flops_s_per_seq[rows] * b, self.params_s[rows] + self.experts_read_s(b, rows) + kv_in * b)
        )

    def slopes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per sequence: the step's slope outside the max, and the KV slope inside it (the experts
        term inside the max is not linear: see experts_read_s)."""
        kv_in = self.kv_s_per_seq * self.kv_in_max
        return self.overhead_s_per_seq + self.colocated_s_per_seq + self.kv_s_per_seq - kv_in, kv_in

    def max_batch_hbm(self) -> np.ndarray:
        """Sequences whose KV caches fit beside the weights (may be negative: weights don't fit)."""
        return np.floor((self.hbm_capacity_bytes - self.weight_bytes) / self.kv_bytes_per_seq)


def book_roofline(model: Model, workload: Workload, layout: Layout, prefill_mfu: float) -> Roofline:
    """The book profile over the rows of a layout."""
    return roofline(
        model,
        workload,
        prefill_mfu=prefill_mfu,
        tp=layout.tp,
        n_axes=layout.n_axes,
        attention_dp=layout.dp(),
        ep=layout.experts(),
        weight_bytes_per_param=np.array([DTYPE_BYTES[w] for w in layout.weights], dtype=float),
        kv_bytes_per_elem=np.array([DTYPE_BYTES[k] for k in layout.kv], dtype=float),
        flops=layout.per_chip("bf16_flops"),
        hbm_bytes=layout.per_chip("hbm_bytes"),
        hbm_bytes_per_s=layout.per_chip("hbm_bytes_per_s"),
        ici_bytes_per_s=layout.per_chip("ici_bytes_per_s_per_axis"),
        all_to_all_bytes_per_s=layout.all_to_all_bytes_per_s() if layout.nodes is not None else None,
    )


def roofline(
    model: Model,
    workload: Workload,
    *,
    prefill_mfu: float,
    tp: np.ndarray,
    n_axes: np.ndarray,
    attention_dp: np.ndarray,
    ep: np.ndarray,
    weight_bytes_per_param: np.ndarray,
    kv_bytes_per_elem: np.ndarray,
    flops: np.ndarray,
    hbm_bytes: np.ndarray,
    hbm_bytes_per_s: np.ndarray,
    ici_bytes_per_s: np.ndarray,
    all_to_all_bytes_per_s: np.ndarray | None = None,
) -> Roofline:
    """Evaluate the book profile for arrays of (chip, Y, n_axes, d, e, dtype) rows
    (all_to_all_bytes_per_s: what the experts' all-to-all sees where it leaves a domain, see
    Layout.all_to_all_bytes_per_s; None: n_axes*W_ici on every row)."""
    context = workload.context
    D, F = float(model.d_model), float(model.d_ff)
    Y = np.asarray(tp, dtype=float)
    d = np.asarray(attention_dp, dtype=float)
    e = np.asarray(ep, dtype=float)
    t = Y / d  # attention tensor parallelism within a group
    n = np.maximum(np.asarray(n_axes, dtype=float), 1.0)  # Y = 1 has no collectives
    b_w = np.asarray(weight_bytes_per_param, dtype=float)
    b_kv = np.asarray(kv_bytes_per_elem, float)
    # latent attention keeps one compressed vector per token, copied to every chip of a group
    kv_copies = t if model.is_mla else np.ones_like(Y)
    # per distinct KV dtype (a few), not per row
    kv_seq = _per_dtype(b_kv, lambda b: model.kv_bytes_per_sequence(context, b)) * kv_copies
    kv_read = _per_dtype(b_kv, lambda b: model.kv_read_bytes_per_sequence(context, b)) * kv_copies
    prompt_kv = _per_dtype(b_kv, lambda b: model.kv_bytes_per_sequence(workload.prompt_tokens, b)) * kv_copies
    dense_bytes = model.dense_params * d * b_w  # P_d, replicated over the attention groups
    expert_bytes = model.routed_expert_params * b_w
    replica_bw = Y * hbm_bytes_per_s
    flop_params = float(model.flop_params)
    prefill = 2.0 * flop_params * workload.prompt_tokens / (Y * flops * prefill_mfu)
    zeros = np.zeros_like(prefill)
    if model.is_moe:
        # per MoE layer: collectives of B tokens against the layer's own work
        moe_tp = Y / e
        ici = (
            np.where(t > 1, D * ACTIVATION_BYTES / d, 0.0)
            + np.where(moe_tp > 1, D * ACTIVATION_BYTES / e, 0.0)
            + 2.0 * model.experts_per_token * D * ACTIVATION_BYTES * (e - 1.0) / (e * Y)
        ) / (n * ici_bytes_per_s)
        if all_to_all_bytes_per_s is not None:
            # the all-to-all over the bandwidth it sees (across domains: the scale-out leg); rows
            # inside one domain keep the expression above, bit for bit
            a2a = np.asarray(all_to_all_bytes_per_s, dtype=float)
            local = n * ici_bytes_per_s
            ici = np.where(
                a2a != local,
                (np.where(t > 1, D * ACTIVATION_BYTES / d, 0.0) + np.where(moe_tp > 1, D * ACTIVATION_BYTES / e, 0.0))
                / local
                + 2.0 * model.experts_per_token * D * ACTIVATION_BYTES * (e - 1.0) / (e * Y) / a2a,
                ici,
            )
        layer_dense = float(model.dense_params_per_moe_layer)
        matmul_hbm = layer_dense * d * b_w / replica_bw
        matmul_experts = model.num_experts * model.expert_params * b_w / replica_bw
        matmul_flops = 2.0 * (layer_dense + model.experts_per_token * model.expert_params) / (Y * flops)
    else:
        ici = D * ACTIVATION_BYTES / (n * ici_bytes_per_s)
        matmul_hbm = D * F * b_w / replica_bw
        matmul_experts = zeros
        matmul_flops = 2.0 * D * F / (Y * flops)
    return Roofline(
        weight_bytes=dense_bytes + expert_bytes,
        kv_bytes_per_token=_per_dtype(b_kv, model.kv_bytes_per_token),
        kv_bytes_per_seq=kv_seq,
        hbm_capacity_bytes=Y * hbm_bytes,
        params_s=dense_bytes / replica_bw,
        kv_s_per_seq=kv_read / replica_bw,
        flops_s_per_seq=2.0 * flop_params / (Y * flops),
        ici_s_per_seq=ici,
        matmul_hbm_s=matmul_hbm,
        matmul_flops_s_per_seq=matmul_flops,
        critical_batch=flops * b_w / (2.0 * hbm_bytes_per_s),
        prefill_s=prefill,
        prompt_kv_bytes=prompt_kv,
        colocated_s_per_seq=prefill / workload.decode_len if workload.colocated else zeros,
        fixed_s=zeros,
        overhead_s_per_seq=zeros,
        kv_in_max=zeros,
        experts_s=expert_bytes / replica_bw,
        expert_miss=np.full(len(Y), model.expert_miss_probability),
        matmul_experts_s=matmul_experts,
        stages=np.ones_like(prefill),
        boundary_s=zeros,
        boundary_s_per_seq=zeros,
    )


def _per_dtype(bytes_per_elem: np.ndarray, f: Callable[[float], float]) -> np.ndarray:
    """f of each row's bytes per element, evaluated once per distinct value."""
    values, inverse = np.unique(bytes_per_elem, return_inverse=True)
    return np.array([float(f(float(v))) for v in values])[inverse].reshape(np.shape(bytes_per_elem))


def prefill_servers_per_replica(*, batch: int, step_s: float, decode_len: int, prefill_seconds: float) -> float:
    """Prefill servers each decode replica needs: its query rate B/(T_step*G) times T_prefill."""
    return batch / (step_s * decode_len) * prefill_seconds
