"""Models: the architecture servesat costs, from the built-in zoo or a Hugging Face config.json."""

from __future__ import annotations

import functools
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.catalog import DTYPE_BYTES, read_text
from optimizer.errors import InputError, unknown_name

#: Bytes per element of the state linear-attention and state-space layers keep per sequence
#: (engines hold it in the model's dtype unless the config names one, e.g. mamba_ssm_dtype).
STATE_DTYPE_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0}


def _elem_bytes(dtype: str | float) -> float:
    return DTYPE_BYTES[dtype] if isinstance(dtype, str) else float(dtype)


@dataclass(frozen=True)
class Model:
    """A decoder-only transformer, in the chapter's symbols (docs/cost-model.md), with the
    parts the 2026 models add (docs/models.md): mixture-of-experts MLPs, latent attention,
    sliding-window and linear-attention (or state-space) layers.

    A dense model is the default: every one of its L layers has full attention with K KV
    heads and a gated MLP of width F. Counts of each layer kind say where a model differs.
    """

    name: str
    num_layers: int  # L: blocks in the config (latency floors are per block)
    d_model: int  # D
    d_ff: int  # F: width of the dense MLP layers
    num_heads: int  # N: query heads
    num_kv_heads: int  # K
    head_dim: int  # H
    vocab: int  # V
    tie_embeddings: bool = False
    source: str = ""
    # layer kinds (None: all L layers); linear-attention / state-space mixers have no KV cache
    full_attention_layers: int | None = None
    sliding_layers: int = 0
    sliding_window: int = 0
    linear_layers: int = 0
    linear_params_per_layer: int = 0
    linear_state_bytes_per_layer: float = 0.0  # per sequence, whatever the context
    dense_mlp_layers: int | None = None  # None: L minus the MoE layers
    mlp_matrices: int = 3  # 3: gated (SwiGLU), 2: plain (relu2)
    attention_output_gate: bool = False  # Qwen3.5: q_proj also produces a gate of N*H
    # mixture of experts (num_experts 0: dense)
    num_experts: int = 0  # E routed experts per MoE layer
    experts_per_token: int = 0  # k
    expert_d_ff: int = 0  # F_e
    shared_d_ff: int = 0  # all shared experts of one MoE layer together
    moe_layers: int = 0  # L_moe
    # multi-head latent attention (kv_lora_rank 0: grouped-query attention)
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    # DeepSeek sparse attention's indexer (index_topk 0: none)
    index_head_dim: int = 0
    index_heads: int = 0
    index_topk: int = 0

    # ----------------------------------------------------------------- layer counts

    @property
    def attention_layers(self) -> int:
        """Layers that attend (full or windowed), each with a KV cache."""
        full = self.num_layers if self.full_attention_layers is None else self.full_attention_layers
        return full + self.sliding_layers

    @property
    def full_layers(self) -> int:
        return self.attention_layers - self.sliding_layers

    @property
    def dense_layers(self) -> int:
        """Layers with a dense MLP of width F."""
        if self.dense_mlp_layers is not None:
            return self.dense_mlp_layers
        return self.num_layers - self.moe_layers

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    # ----------------------------------------------------------------- parameters

    @property
    def attention_params_per_layer(self) -> int:
        """Weights of one attention layer: 2*D*H*(N+K) for grouped-query attention (q, k, v, o);
        for latent attention (DeepSeek-V2 paper, eq. 9-19; vLLM's DeepseekV2MLAAttention) the
        low-rank query and KV projections, the up-projections to N heads, and o; plus the
        sparse-attention indexer where there is one."""
        D, N, K, H = self.d_model, self.num_heads, self.num_kv_heads, self.head_dim
        if not self.is_mla:
            q = D * N * H * (2 if self.attention_output_gate else 1)
            return q + 2 * D * K * H + N * H * D
        qk = self.qk_nope_head_dim + self.qk_rope_head_dim
        q = D * self.q_lora_rank + self.q_lora_rank * N * qk if self.q_lora_rank else D * N * qk
        kv = D * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank * N * (
            self.qk_nope_head_dim + self.v_head_dim
        )
        out = N * self.v_head_dim * D
        indexer = 0
        if self.index_topk:
            q_in = self.q_lora_rank or D
            indexer = q_in * self.index_heads * self.index_head_dim + D * self.index_head_dim + D * self.index_heads
        return q + kv + out + indexer

    @property
    def expert_params(self) -> int:
        """Weights of one routed expert: 3*D*F_e (gate, up, down)."""
        return self.mlp_matrices * self.d_model * self.expert_d_ff

    @property
    def routed_expert_params(self) -> int:
        """All routed experts of all MoE layers: L_moe*E*3*D*F_e."""
        return self.moe_layers * self.num_experts * self.expert_params

    @property
    def embedding_params(self) -> int:
        return (1 if self.tie_embeddings else 2) * self.d_model * self.vocab

    @property
    def dense_params(self) -> int:
        """P_d: everything but the routed experts (attention, mixers, dense MLPs, shared experts,
        routers, embeddings). Every token uses all of it."""
        D = self.d_model
        moe = self.moe_layers * (self.mlp_matrices * D * self.shared_d_ff + D * self.num_experts)
        return (
            self.attention_layers * self.attention_params_per_layer
            + self.linear_layers * self.linear_params_per_layer
            + self.dense_layers * self.mlp_matrices * D * self.d_ff
            + moe
            + self.embedding_params
        )

    @property
    def param_count(self) -> int:
        """P: every weight HBM holds. Dense: L*D*(3F + 2H(N+K)) + 2*D*V (one D*V when tied)."""
        return self.dense_params + self.routed_expert_params

    @property
    def flop_params(self) -> int:
        """Weights a token multiplies in the book's 2*P FLOPs per token: P_d plus k experts per
        MoE layer (the whole P for a dense model, as in the chapter)."""
        return self.dense_params + self.moe_layers * self.experts_per_token * self.expert_params

    @property
    def active_param_count(self) -> int:
        """Active parameters as model authors publish them: the weights one token multiplies,
        without the input embedding (a table lookup). gpt-oss-120b: 5.1B; DeepSeek-V3: 37B."""
        lookup = 0 if self.tie_embeddings else self.d_model * self.vocab
        return self.flop_params - lookup

    @property
    def expert_miss_probability(self) -> float:
        """1 - k/E: the chance one token does not route to a given expert (1 for a dense model)."""
        return 1.0 - self.experts_per_token / self.num_experts if self.is_moe else 1.0

    def experts_touched(self, batch: Any) -> Any:
        """Mean distinct experts a batch of B tokens routes to in one MoE layer, under uniform
        routing: E*(1 - (1 - k/E)^B) (each token misses a given expert with probability 1 - k/E).
        Skewed routing touches fewer. Elementwise on numpy arrays."""
        return self.num_experts * (1.0 - self.expert_miss_probability ** np.asarray(batch, dtype=float))

    # ----------------------------------------------------------------- KV cache and state

    @property
    def kv_elems_per_token_layer(self) -> int:
        """KV elements one token stores in one attention layer: 2*K*H (keys and values), or for
        latent attention one compressed vector kv_lora_rank + qk_rope_head_dim shared by all
        heads (plus the indexer's key under sparse attention)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim + self.index_head_dim
        return 2 * self.num_kv_heads * self.head_dim

    def kv_bytes_per_token(self, kv_dtype: str | float) -> float:
        """KV bytes one token adds in the layers that keep every token: 2*K*H*L*b_kv for a
        dense model (windowed layers stop growing at their window; see kv_bytes_per_sequence)."""
        return self.kv_elems_per_token_layer * self.full_layers * _elem_bytes(kv_dtype)

    def kv_bytes_per_sequence(self, context: Any, kv_dtype: str | float) -> Any:
        """HBM one sequence of `context` tokens holds (one copy): every token in full-attention
        layers, min(S, window) in sliding-window layers, a fixed state in linear layers.
        `context` may be a numpy array."""
        per_layer = self.kv_elems_per_token_layer * _elem_bytes(kv_dtype)
        return (
            per_layer * (self.full_layers * context + self.sliding_layers * np.minimum(context, self.sliding_window))
            + self.linear_layers * self.linear_state_bytes_per_layer
        )

    def kv_read_bytes_per_sequence(self, context: Any, kv_dtype: str | float) -> Any:
        """KV bytes one decode step reads for one sequence: what it stores, except that sparse
        attention reads the indexer's keys of every token and the latent vectors of only the
        index_topk tokens it selects (DeepSeek-V3.2 paper, DSA)."""
        if not self.index_topk:
            return self.kv_bytes_per_sequence(context, kv_dtype)
        b = _elem_bytes(kv_dtype)
        latent = (self.kv_lora_rank + self.qk_rope_head_dim) * b
        per_layer = self.index_head_dim * b * context + latent * np.minimum(context, self.index_topk)
        return self.full_layers * per_layer + self.linear_layers * self.linear_state_bytes_per_layer

    def attention_flops_per_token(self, context: Any) -> Any:
        """Decode attention FLOPs of one token against `context` earlier tokens: 2*N*(d_qk + d_v)
        per attended token and layer (4*N*H*S for a dense model); latent attention with the
        weights absorbed attends in the compressed space (d_qk = kv_lora_rank + rope, d_v =
        kv_lora_rank); windowed and sparse layers attend to at most window / top-k tokens."""
        N = self.num_heads
        if self.is_mla:
            per = 2 * N * (2 * self.kv_lora_rank + self.qk_rope_head_dim)
            attended = np.minimum(context, self.index_topk) if self.index_topk else context
        else:
            per = 4 * N * self.head_dim
            attended = context
        return per * (self.full_layers * attended + self.sliding_layers * np.minimum(context, self.sliding_window))

    @property
    def dense_params_per_moe_layer(self) -> int:
        """What every token uses in one MoE layer besides its experts: attention, shared experts, router."""
        D = self.d_model
        return self.attention_params_per_layer + self.mlp_matrices * D * self.shared_d_ff + D * self.num_experts

    @property
    def mixer_layers(self) -> int:
        """Layers whose token mixer (attention or linear) ends in an all-reduce under tensor parallelism."""
        return self.attention_layers + self.linear_layers

    def features(self) -> list[str]:
        """What the model has beyond a dense transformer, for listings."""
        out = []
        if self.is_moe:
            out.append(f"MoE {self.experts_per_token}/{self.num_experts}")
        if self.is_mla:
            out.append("latent attention" + (" (sparse)" if self.index_topk else ""))
        if self.sliding_layers:
            out.append(f"sliding window {self.sliding_window} x{self.sliding_layers}")
        if self.linear_layers:
            out.append(f"linear layers x{self.linear_layers}")
        return out


_REQUIRED_CONFIG_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
#: Keys of architectures servesat does not cost (yet): each is refused by name when set.
_UNSUPPORTED_KEYS = {
    "attention_k_eq_v": "attention whose keys are its values (Gemma 4)",
    "num_global_key_value_heads": "separate KV heads for global layers (Gemma 4)",
    "enable_moe_block": "a dense MLP beside the experts in each layer (Gemma 4)",
    "num_kv_shared_layers": "layers sharing another layer's KV cache",
    "hidden_size_per_layer_input": "per-layer input embeddings",
    "use_double_wide_mlp": "double-width MLPs in shared-KV layers",
}
_EXPERT_COUNT_KEYS = ("n_routed_experts", "num_local_experts", "num_experts")
_TOP_K_KEYS = ("num_experts_per_tok", "experts_per_token", "top_k_experts")
_LAYER_TYPES = ("full_attention", "sliding_attention", "linear_attention")
_HYBRID_BLOCKS = {"M": "Mamba2 mixer", "*": "attention", "-": "MLP"}


class _Config:
    """A config's keys with typed reads that name the file and key in every error."""

    def __init__(self, config: dict, origin: str) -> None:
        self.origin = origin
        self.top = config
        text = config.get("text_config")
        if text is not None and not isinstance(text, dict):
            raise InputError(f"{origin}: key 'text_config' must be an object of the language model's keys")
        self.keys = text if text is not None else config

    def get(self, key: str) -> object:
        return self.keys.get(key, self.top.get(key))

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def num(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        v = self.get(key)
        if v is None:
            if default is None:
                raise InputError(f"{self.origin}: config lacks key {key!r}")
            return default
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            kind = "a positive integer" if minimum >= 1 else "an integer of at least 0"
            raise InputError(f"{self.origin}: key {key!r} must be {kind}, got {v!r}")
        return v

    def first_int(self, keys: tuple[str, ...]) -> tuple[str, int] | None:
        for key in keys:
            if self.get(key):
                return key, self.num(key)
        return None

    def flag(self, key: str, default: bool = False) -> bool:
        v = self.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise InputError(f"{self.origin}: key {key!r} must be true or false, got {v!r}")
        return v

    def state_bytes(self) -> float:
        """Bytes per element of a linear layer's recurrent state (mamba_ssm_dtype, else bf16)."""
        dtype = self.get("mamba_ssm_dtype") or "bfloat16"
        if dtype not in STATE_DTYPE_BYTES:
            raise InputError(
                f"{self.origin}: key 'mamba_ssm_dtype' {dtype!r} is not one of: {', '.join(STATE_DTYPE_BYTES)}"
            )
        return STATE_DTYPE_BYTES[str(dtype)]


def _gated_deltanet(c: _Config, d_model: int) -> tuple[int, float]:
    """Weights and per-sequence state of one gated-DeltaNet layer (Qwen3.5, from its
    linear_* keys): q/k/v/z/a/b projections, a causal convolution over q, k and v, the output
    projection; the state is one dk x dv matrix per value head plus the convolution window."""
    nk, dk = c.num("linear_num_key_heads"), c.num("linear_key_head_dim")
    nv, dv = c.num("linear_num_value_heads"), c.num("linear_value_head_dim")
    kernel = c.num("linear_conv_kernel_dim")
    conv_channels = 2 * nk * dk + nv * dv
    params = d_model * (conv_channels + nv * dv + 2 * nv) + conv_channels * kernel + nv * dv * d_model
    state = nv * dk * dv * c.state_bytes() + conv_channels * (kernel - 1) * STATE_DTYPE_BYTES["bfloat16"]
    return params, state


def _mamba2(c: _Config, d_model: int) -> tuple[int, float]:
    """Weights and per-sequence state of one Mamba2 mixer (Nemotron-H, from its mamba_* and
    ssm_* keys; the Mamba2 paper's in_proj producing x, z, B, C and dt, a convolution over x, B
    and C, out_proj); the state is heads*head_dim*state_size plus the convolution window."""
    heads, head_dim = c.num("mamba_num_heads"), c.num("mamba_head_dim")
    groups, state_size, kernel = c.num("n_groups"), c.num("ssm_state_size"), c.num("conv_kernel")
    inner = heads * head_dim
    conv_channels = inner + 2 * groups * state_size
    params = d_model * (inner + conv_channels + heads) + conv_channels * kernel + inner * d_model
    state = inner * state_size * c.state_bytes() + conv_channels * (kernel - 1) * STATE_DTYPE_BYTES["bfloat16"]
    return params, state


def _moe_layer_count(c: _Config, num_layers: int) -> int:
    """Layers whose MLP is a mixture of experts, by the layout keys of each family: DeepSeek's
    first_k_dense_replace and moe_layer_freq, Llama 4's interleave_moe_layer_step, Qwen's
    decoder_sparse_step and mlp_only_layers; otherwise every layer."""
    first = c.num("first_k_dense_replace", 0, minimum=0)
    freq = c.num("moe_layer_freq", 1)
    step = c.num("interleave_moe_layer_step", 0, minimum=0) or c.num("decoder_sparse_step", 1)
    only_mlp = c.get("mlp_only_layers") or []
    if not isinstance(only_mlp, list) or not all(isinstance(i, int) for i in only_mlp):
        raise InputError(f"{c.origin}: key 'mlp_only_layers' must be a list of layer indices")
    return sum(
        1 for i in range(num_layers) if i >= first and i % freq == 0 and (i + 1) % step == 0 and i not in only_mlp
    )


def _mixer_fields(c: _Config, L: int, D: int) -> dict:
    """Which mixer each block has: a hybrid pattern (Nemotron-H), layer_types, or all attention."""
    fields: dict = {}
    origin = c.origin
    pattern = c.get("hybrid_override_pattern")
    layer_types = c.get("layer_types")
    if pattern is not None:
        if not isinstance(pattern, str) or len(pattern) != L:
            raise InputError(f"{origin}: key 'hybrid_override_pattern' must be a string of {L} block letters")
        bad = sorted(set(pattern) - set(_HYBRID_BLOCKS))
        if bad:
            known = ", ".join(f"{k!r} ({v})" for k, v in _HYBRID_BLOCKS.items())
            raise InputError(f"{origin}: hybrid_override_pattern block {bad[0]!r} is not supported; known: {known}")
        params, state = _mamba2(c, D)
        fields.update(
            full_attention_layers=pattern.count("*"),
            linear_layers=pattern.count("M"),
            linear_params_per_layer=params,
            linear_state_bytes_per_layer=state,
            dense_mlp_layers=pattern.count("-"),
        )
    elif layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != L:
            raise InputError(f"{origin}: key 'layer_types' must list one type per layer ({L})")
        bad = sorted({str(t) for t in layer_types} - set(_LAYER_TYPES))
        if bad:
            raise InputError(f"{origin}: layer type {bad[0]!r} is not supported; known: {', '.join(_LAYER_TYPES)}")
        fields["full_attention_layers"] = layer_types.count("full_attention")
        if "sliding_attention" in layer_types:
            fields.update(sliding_layers=layer_types.count("sliding_attention"), sliding_window=c.num("sliding_window"))
        if "linear_attention" in layer_types:
            params, state = _gated_deltanet(c, D)
            fields.update(
                linear_layers=layer_types.count("linear_attention"),
                linear_params_per_layer=params,
                linear_state_bytes_per_layer=state,
            )
    elif c.get("sliding_window") and c.flag("use_sliding_window", True):
        fields.update(full_attention_layers=0, sliding_layers=L, sliding_window=c.num("sliding_window"))
    return fields


def _moe_fields(c: _Config, L: int, hybrid: bool) -> dict:
    """Routed and shared experts and the layers that have them (empty for a dense model)."""
    origin = c.origin
    experts = c.first_int(_EXPERT_COUNT_KEYS)
    if experts is None:
        return {}
    if hybrid:
        raise InputError(f"{origin}: key {experts[0]!r} with hybrid_override_pattern is not supported")
    top_k = c.first_int(_TOP_K_KEYS)
    if top_k is None:
        raise InputError(f"{origin}: config has {experts[0]!r} but lacks key 'num_experts_per_tok'")
    if top_k[1] > experts[1]:
        raise InputError(f"{origin}: {top_k[0]} {top_k[1]} exceeds {experts[0]} {experts[1]}")
    expert_ff = c.num("moe_intermediate_size", 0, minimum=0) or c.num("intermediate_size")
    shared = c.num("n_shared_experts", 0, minimum=0) * expert_ff
    shared = shared or c.num("shared_expert_intermediate_size", 0, minimum=0)
    shared = shared or c.num("shared_intermediate_size", 0, minimum=0)
    if not shared and c.get("model_type") == "llama4_text":
        shared = expert_ff  # every Llama 4 MoE layer has one shared expert of the routed size
    moe_layers = _moe_layer_count(c, L)
    if not moe_layers:
        raise InputError(f"{origin}: key {experts[0]!r} is set but the layout keys leave no MoE layer")
    return dict(
        num_experts=experts[1],
        experts_per_token=top_k[1],
        expert_d_ff=expert_ff,
        shared_d_ff=shared,
        moe_layers=moe_layers,
    )


def _mla_fields(c: _Config, mla: int) -> dict:
    """Latent attention's ranks and head sizes, and the sparse-attention indexer's."""
    fields: dict = dict(
        kv_lora_rank=mla,
        q_lora_rank=c.num("q_lora_rank", 0, minimum=0),
        qk_rope_head_dim=c.num("qk_rope_head_dim"),
        qk_nope_head_dim=c.num("qk_nope_head_dim"),
        v_head_dim=c.num("v_head_dim"),
    )
    if c.get("index_topk"):
        fields.update(
            index_topk=c.num("index_topk"),
            index_head_dim=c.num("index_head_dim"),
            index_heads=c.num("index_n_heads"),
        )
    return fields


def model_from_config(config: dict, name: str, origin: str, source: str = "") -> Model:
    """Build a Model from Hugging Face config.json keys (docs/models.md lists the ones read);
    `origin` names the file in errors. A key of an architecture servesat does not cost is an
    error naming it, never read as a dense model."""
    c = _Config(config, origin)
    for key in _REQUIRED_CONFIG_KEYS:
        if not c.has(key):
            raise InputError(f"{origin}: config lacks key {key!r}")
    for key, what in _UNSUPPORTED_KEYS.items():
        if c.get(key):
            raise InputError(f"{origin}: key {key!r} ({what}) is not supported by servesat's cost model")
    L, D = c.num("num_hidden_layers"), c.num("hidden_size")
    heads, vocab = c.num("num_attention_heads"), c.num("vocab_size")
    kv_heads = c.num("num_key_value_heads", heads)  # Hugging Face's default: no GQA
    head_dim = c.num("head_dim", 0, minimum=0) or c.num("attention_head_dim", 0, minimum=0)
    if not head_dim:
        if D % heads:
            raise InputError(
                f"{origin}: config lacks key 'head_dim' and hidden_size {D} is not a multiple of "
                f"num_attention_heads {heads}"
            )
        head_dim = D // heads
    mla = c.num("kv_lora_rank", 0, minimum=0)
    if not mla and heads % kv_heads:
        raise InputError(f"{origin}: num_key_value_heads {kv_heads} must divide num_attention_heads {heads}")

    fields = _mixer_fields(c, L, D)
    act = c.get("mlp_hidden_act") or c.get("hidden_act")
    fields["mlp_matrices"] = 2 if act == "relu2" else 3
    fields["attention_output_gate"] = c.flag("attn_output_gate")

    d_ff = c.num("intermediate_size_mlp", 0, minimum=0) or c.num("intermediate_size", 0, minimum=0)
    fields.update(_moe_fields(c, L, "hybrid_override_pattern" in c.keys))
    dense_mlps = fields.get("dense_mlp_layers", L - fields.get("moe_layers", 0))
    if dense_mlps and not d_ff:
        raise InputError(f"{origin}: config lacks key 'intermediate_size' (the width of its {dense_mlps} dense MLPs)")
    if mla:
        fields.update(_mla_fields(c, mla))
    return Model(
        name=name,
        num_layers=L,
        d_model=D,
        d_ff=d_ff,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab=vocab,
        tie_embeddings=c.flag("tie_word_embeddings"),
        source=source,
        **fields,
    )


@functools.cache
def _builtin_model_tables() -> dict[str, dict]:
    text = resources.files("optimizer").joinpath("data/models.toml").read_text()
    return tomllib.loads(text)["models"]


def builtin_models() -> dict[str, Model]:
    """The built-in zoo, by short name."""
    return {
        n: model_from_config(t, n, "built-in models.toml", t.get("source", ""))
        for n, t in _builtin_model_tables().items()
    }


def model_aliases() -> dict[str, str]:
    """Lower-cased alias (3.1 names, Hugging Face ids) -> built-in short name."""
    return {a.lower(): n for n, t in _builtin_model_tables().items() for a in t.get("aliases", [])}


def is_builtin_model(name: str) -> bool:
    """A built-in model's name or alias (anything else is a path to a config)."""
    key = name.lower()
    return key in _builtin_model_tables() or key in model_aliases()


def load_model(name_or_path: str | Path) -> Model:
    """A built-in model by name or alias, or a Hugging Face style config.json by path."""
    text = str(name_or_path)
    tables = _builtin_model_tables()
    key = text.lower()
    key = key if key in tables else model_aliases().get(key, key)
    if key in tables:
        return model_from_config(tables[key], key, "built-in models.toml", tables[key].get("source", ""))
    path = Path(text)
    if path.is_dir():
        path = path / "config.json"
    if path.suffix == ".json" or path.exists():
        text = read_text(path, "model file")
        try:
            config = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(config, dict):
            raise InputError(f"{path}: expected a JSON object of config keys")
        label = path.parent.name if path.stem == "config" and path.parent.name else path.stem
        return model_from_config(config, label, str(path), str(path))
    raise unknown_name("model", text, sorted(tables))
