"""Replicas past one scale-up domain: GPU deployments of several nodes (or NVL72 racks) joined
by the scale-out network (InfiniBand/RoCE, `scale_out_bytes_per_s` per GPU, one way).

A multi-node replica spans `nodes` domains of N GPUs each (N = the chip's scale_up_domain: an
8-GPU HGX or AMD node, a 72-GPU NVL72 rack), Y = nodes*N chips, in one of two layouts:

- **pipeline**: pp = nodes stages, one per domain; inside a stage the layout of one domain
  (tensor parallel over its N GPUs; a mixture of experts also with its attention data
  parallelism d and expert parallelism e inside the domain). Only the stage boundaries cross
  the scale-out network.
- **wide expert parallelism** (mixture of experts): pp = 1, the routed experts spread over all
  Y chips (e = Y), attention tensor parallel inside a domain (t = 1 or N) and data parallel
  across domains (d = Y/t); the experts' all-to-all crosses the scale-out network
  (Layout.all_to_all_bytes_per_s). Tensor parallelism never crosses a domain.

Pipeline decode (docs/cost-model.md, "Several nodes"): the replica keeps pp microbatches of B/pp
sequences in flight (vLLM's pipeline-parallel scheduler runs one batch per virtual engine), so
in steady state every stage is busy and a sequence's next token comes one cycle later:

    T_step = pp * (T_stage(B/pp) + boundary) = T_Ys(B/pp) + pp*alpha_out + (pp-1)*(B/pp)*D*b_act/W_out

where T_stage is one stage's work on its L/pp layers and T_Ys(b) is the step of a Y_s = Y/pp chip
replica at batch b (every term of the step of a stage is 1/pp of that replica's): the weight
read stays what one stage's chips take for the whole model (each stage rereads its weights for
each microbatch), the KV read and the FLOPs spread over all Y chips. Each microbatch crosses
pp-1 boundaries with its activations (B/pp * D * b_act bytes, sent in full by each GPU of a
stage to its peer of the next over its own NIC, as vLLM does) and returns its sampled tokens to
the first stage: pp hops of latency alpha_out. Below B = pp sequences there are fewer
microbatches than stages and the stages idle (the bubble): the step is then what B = pp costs.
HBM: the stages split the weights and the KV caches by layer, evenly (the embedding and output
layer on the end stages are not placed separately): P*b_w + B*S*kv_token <= Y*M.

Prefill on a pipeline: the prompt is cut in chunks that keep every stage busy (chunked prefill),
so its compute is that of Y chips, T_prefill(Y_s)/pp; its activations cross pp-1 boundaries
(T*D*b_act/W_out and alpha_out each), added, not overlapped; the fill and drain of the chunks
((pp-1) chunk-stage times) is ignored.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from optimizer.catalog import ACTIVATION_BYTES, Chip
from optimizer.costmodel import Layout, Roofline
from optimizer.errors import InputError, check_positive_int
from optimizer.models import Model
from optimizer.workload import Workload

#: Latency of one transfer between nodes: NVIDIA's own system descriptions (the
#: aiconfigurator-core 0.12.0 package's systems/*.yaml, Apache-2.0, read 2026-12-02) give
#: p2p_latency = 10 us on every HGX system ("nonofficial correction based on observations") and
#: 5 us inter-rack InfiniBand on GB200/GB300; servesat takes the 10 us everywhere.
SCALE_OUT_LATENCY_S = 10e-6
#: Node counts the optimizer enumerates are the powers of two up to max_nodes (Search.max_nodes).
DEFAULT_MAX_NODES = 4
MAX_NODES = 64


def node_counts(max_nodes: int) -> tuple[int, ...]:
    """The node counts (above one) a search enumerates: powers of two up to max_nodes."""
    return tuple(2**k for k in range(1, 7) if 2**k <= max_nodes)


def multi_node_count(chip: Chip, shape: object) -> int:
    """The nodes of a multi-node slice named by its GPU count ("16": two 8-GPU nodes) that a
    search can enumerate (a power of two up to MAX_NODES); 0 for anything else."""
    if not chip.multi_node or not isinstance(shape, str) or not shape.isdigit():
        return 0
    gpus, n = int(shape), chip.scale_up_domain
    return gpus // n if gpus % n == 0 and gpus // n in node_counts(MAX_NODES) else 0


def check_max_nodes(max_nodes: int) -> None:
    check_positive_int("max_nodes (--max-nodes)", max_nodes)
    if max_nodes > MAX_NODES:
        raise InputError(f"max_nodes (--max-nodes) must be at most {MAX_NODES}, got {max_nodes}")


def stage_layout(layout: Layout) -> Layout:
    """What the profile costs for each row: one pipeline stage's chips (Y/pp) holding the whole
    model; wide expert-parallel rows (pp = 1) as they are, with the domains their all-to-all spans."""
    pp = layout.stages()
    if (pp == 1).all():
        return layout
    return replace(layout, tp=np.asarray(layout.tp) // pp, pp=None, nodes=np.where(pp > 1, 1, layout.domains()))


def pipelined(cost: Roofline, layout: Layout, model: Model, workload: Workload) -> Roofline:
    """A stage layout's cost terms turned into the pipeline's (see the module docstring); rows
    with pp = 1 are returned unchanged, bit for bit."""
    pp = layout.stages().astype(float)
    if (pp == 1).all():
        return cost
    piped = pp > 1

    def per(x: np.ndarray) -> np.ndarray:
        return np.where(piped, x / pp, x)

    out_bw = np.where(piped, layout.per_chip("scale_out_bytes_per_s"), 1.0)
    hops = np.where(piped, pp * SCALE_OUT_LATENCY_S, 0.0)
    per_seq = np.where(piped, (pp - 1.0) * model.d_model * ACTIVATION_BYTES / (pp * out_bw), 0.0)
    prompt = np.where(
        piped,
        (pp - 1.0) * (SCALE_OUT_LATENCY_S + workload.prompt_tokens * model.d_model * ACTIVATION_BYTES / out_bw),
        0.0,
    )
    prefill = per(cost.prefill_s) + prompt
    return replace(
        cost,
        hbm_capacity_bytes=np.where(piped, cost.hbm_capacity_bytes * pp, cost.hbm_capacity_bytes),
        kv_s_per_seq=per(cost.kv_s_per_seq),
        flops_s_per_seq=per(cost.flops_s_per_seq),
        overhead_s_per_seq=per(cost.overhead_s_per_seq) + per_seq,
        fixed_s=cost.fixed_s + hops,
        expert_miss=np.where(piped, cost.expert_miss ** (1.0 / pp), cost.expert_miss),
        ici_s_per_seq=per(cost.ici_s_per_seq),
        matmul_flops_s_per_seq=per(cost.matmul_flops_s_per_seq),
        critical_batch=np.where(piped, cost.critical_batch * pp, cost.critical_batch),
        prefill_s=prefill,
        colocated_s_per_seq=np.where(piped, prefill / workload.decode_len, cost.colocated_s_per_seq)
        if workload.colocated
        else cost.colocated_s_per_seq,
        stages=pp,
        boundary_s=hops,
        boundary_s_per_seq=per_seq,
    )


def cost_terms(profile, model: Model, workload: Workload, layout: Layout) -> Roofline:
    """The profile's cost terms of every row, past one node included: the profile costs each
    row's stage (stage_layout), then the pipeline's terms apply (pipelined)."""
    return pipelined(profile.cost_terms(model, workload, stage_layout(layout)), layout, model, workload)


def describe(nodes: int, pp: int, tp: int, attention_dp: int, ep: int) -> str:
    """A replica's layout in words, e.g. '2 nodes x 8: pipeline of 2 stages, each tensor parallel 8'."""
    stage = tp // pp
    t = stage // attention_dp
    if attention_dp == 1:
        inner = f"tensor parallel {stage}"
    elif t == 1:
        inner = f"attention data parallel {attention_dp}"
    else:
        inner = f"attention tensor parallel {t} x data parallel {attention_dp}"
    if ep > 1:
        inner += f", experts over {ep}"
    if nodes <= 1:
        return inner
    where = f"{nodes} nodes x {tp // nodes}"
    if pp > 1:
        return f"{where}: pipeline of {pp} stages, each {inner}"
    return f"{where}: {inner} (all-to-all across nodes)"
