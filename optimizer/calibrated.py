"""The calibrated profile's parameters and step terms: what the optimizer needs.

The model of each term, with its physical meaning, is documented in docs/calibrated-profile.md;
the measurements, the fit and validation live in optimizer.calibration.

The book profile assumes every byte moves at peak HBM bandwidth and nothing else costs time.
The calibrated profile keeps the same structure and adds the terms real engines pay, each a
bounded coefficient with a physical meaning (per replica of Y = t*d = t_moe*e chips serving a
model of L layers, width D):

    T_mem  = (P_d*d*b_w + experts touched) / (Y * W_hbm * eta_hbm[chip] * q)
             + N*S*kv*copies / (Y * W_hbm * eta_hbm[chip])
    T_dec  = N * (2*P_active + attention FLOPs) / (Y * C[dtype] * eta_flops[chip])
    T_pf   = N_p * (2*P_body + attention FLOPs) / (Y * C[dtype] * eta_prefill[chip])
    T_comm = collectives * (alpha_launch + hops*alpha_hop) + (N + N_p) * bytes / (W_link * eta_link[chip])
    T_step = t_step[engine] + L*t_layer[engine] + L_moe*t_moe_layer[engine] + t_seq[engine]*N
             + max(T_mem, T_dec) + T_pf + T_comm

with q = eta_dequant[engine] where the chip lists no peak for the weights' dtype (native_dtype:
the engine's kernel unpacks the weights as it streams them), else 1;
every eta in (0, 1], every t, alpha and k zero or more, and every share (phi below) in [0, 1]. N sequences decode in the
step at mean context S; N_p = N*T/G prompt tokens of prefill ride along in aggregated serving.
Engines' overheads are shared by every chip; chips and engines without measurements take
priors (optimizer/data/priors.toml: a sibling chip's efficiencies, or the fitted chips' mean
adjusted by published achieved fractions of the peak), marked `assumed`.

Measured TPOT and TTFT come from a closed-loop load generator with B clients; the model of
that loop (for validation against such data, not for the optimizer) is:
    n = min(B, sequences whose KV fits in kv_memory_fraction of HBM beside the weights)
    s = T * c_p          one prompt's prefill (c_p: prefill FLOPs and collectives per token)
    Z = (k[engine] + G) * T_step     time a client spends outside the prompt queue
    rho solves z*rho^2 - (z+1+n)*rho + n = 0 with z = Z/s (one server, n clients; M/M/1//n)
    X = rho/s queries/s;  N = min(n, X*G*T_step) decoding, solved with T_step as a fixed point
    W = (B-n)/X          the clients' wait for KV space, by Little's law
    TTFT = k[engine]*T_step + s/(1-rho) + phi[engine]*W
    TPOT = T_step + (1-phi[engine])*W/G
(admission delay of k decode steps, the wait in the prompt queue, and the share phi of the
wait for KV space spent before the first token; the rest is spent preempted mid-decode).
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optimizer.catalog import DTYPE_BYTES, Chip, read_text
from optimizer.costmodel import Layout, Roofline
from optimizer.errors import InputError
from optimizer.models import Model
from optimizer.workload import Workload

REFERENCE_CHIP = "h100"
#: What an assumed parameter rests on when it is not optimizer/data/priors.toml's prior.
FILE_PRIOR = "the parameter file's values, marked assumed (not fitted)"
MEAN_PRIOR = "the fitted chips' mean efficiencies"
DEFAULT_ENGINE = "vllm"
#: Fraction of HBM the engines give to weights and KV cache (vLLM's default gpu_memory_utilization).
KV_MEMORY_FRACTION = 0.9

PRECISION_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5}
#: The efficiencies: achieved fractions of a peak, physically in (0, 1].
EFFICIENCIES = ("hbm_efficiency", "flops_efficiency", "prefill_efficiency", "link_efficiency")
#: Engines' kernel efficiencies: fractions in (0, 1].
ENGINE_EFFICIENCIES = ("dequant_efficiency",)
#: Engines' scheduling shares: fractions in [0, 1].
ENGINE_SHARES = ("kv_wait_in_ttft",)
#: Both, in the order of EngineOverheads' fields (after OVERHEADS).
ENGINE_FRACTIONS = (*ENGINE_EFFICIENCIES, *ENGINE_SHARES)
#: Engines' fixed costs: seconds (admission_steps: decode steps), zero or more.
OVERHEADS = ("step_overhead_s", "seq_overhead_s", "layer_overhead_s", "admission_steps", "moe_layer_overhead_s")


@dataclass(frozen=True)
class ChipEfficiency:
    """Achieved fractions of a chip's peaks, each in (0, 1]."""

    hbm_efficiency: float  # of peak HBM bandwidth, streaming weights and KV
    flops_efficiency: float  # of the dtype's dense peak, in decode matmuls
    prefill_efficiency: float  # of the dtype's dense peak, in prefill (large matmuls)
    link_efficiency: float  # of the scale-up link's bandwidth, in collectives
    assumed: bool = False  # not fitted: no measured runs on this chip (a prior)


@dataclass(frozen=True)
class EngineOverheads:
    """What a serving engine adds to every step, shared by every chip it runs on."""

    step_overhead_s: float  # per decode step (scheduling, sampling launch)
    seq_overhead_s: float  # per sequence per step (bookkeeping, sampling)
    layer_overhead_s: float  # per layer per step (kernel launches, norms, synchronisation)
    admission_steps: float  # k: decode steps a new request waits before its prefill starts
    # per mixture-of-experts layer per step, beyond layer_overhead_s: the router, top-k, token
    # permutation and grouped-GEMM launches a dense MLP does not have
    moe_layer_overhead_s: float = 0.0
    # of the HBM streaming rate, for weights in a dtype the chip has no units for (native_dtype):
    # the engine's kernel unpacks them as it reads them
    dequant_efficiency: float = 1.0
    # of a load generator's wait for KV space (clients beyond the sequences whose KV fits), the
    # share spent before the first token: 1, the engine admits a request only when its KV fits;
    # 0, it admits at once and preempts running sequences when the cache runs out, so the wait
    # spreads over the decode (TPOT). Measured serving only: the optimizer never oversubscribes.
    kv_wait_in_ttft: float = 1.0
    # not fitted: no measured runs of this engine (a prior: optimizer/data/priors.toml)
    assumed: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class CalibratedParams:
    collective_latency_s: float  # alpha_launch: per collective
    hop_latency_s: float  # alpha_hop: per link hop of a collective's algorithm
    chips: dict[str, ChipEfficiency]
    engines: dict[str, EngineOverheads]
    default_engine: str = DEFAULT_ENGINE
    kv_memory_fraction: float = KV_MEMORY_FRACTION
    source: str = ""
    # The band of each prediction: mean absolute error (%) of leave-one-model-out predictions
    # (`servesat calibrate --lomo`); None where the file has none.
    tpot_band_pct: float | None = None
    ttft_band_pct: float | None = None
    # per engine, the largest concurrency among the runs it was fitted to: past it the step is
    # extrapolated (empty where the file has none)
    measured_batch: dict[str, int] = field(default_factory=dict)

    def chip(self, name: str) -> ChipEfficiency:
        """The chip's fractions as the file gives them, else its prior (assumed)."""
        return self.chips.get(name) or chip_prior(name, self.chips)

    def engine(self, engine: str, chip: str = "") -> EngineOverheads:
        """The engine's overheads (shared across chips), else its prior (assumed)."""
        if engine in self.engines:
            return self.engines[engine]
        like = _priors()["engines"].get(engine, {}).get("like")
        if like not in self.engines:
            raise InputError(f"unknown engine {engine!r}; calibrated engines: {', '.join(self.engine_names())}")
        return replace(self.engines[like], assumed=True)

    def engine_names(self) -> list[str]:
        """The engines of the file and those with a prior built on one of them."""
        priors = _priors()["engines"]
        return sorted(set(self.engines) | {n for n, rule in priors.items() if rule.get("like") in self.engines})

    def assumed(self, chip_names: Iterable[str], engine: str) -> list[str]:
        """What of these chips' and this engine's parameters are priors, not fitted (in words):
        what a prior of optimizer/data/priors.toml rests on, where the file holds that prior."""
        out = []
        for n in sorted(set(chip_names)):
            c = self.chip(n)
            if c.assumed:
                out.append(f"{n}: {prior_basis(n, self.chips) if c == chip_prior(n, self.chips) else FILE_PRIOR}")
        e = self.engine(engine)
        if e.assumed:
            like = self._engine_prior(engine).get("like")
            same = like in self.engines and e == replace(self.engines[like], assumed=True)
            out.append(f"engine {engine}: {self._engine_prior(engine)['basis'] if same else FILE_PRIOR}")
        return out

    def _engine_prior(self, engine: str) -> dict[str, Any]:
        return dict(_priors()["engines"].get(engine, {}))

    def largest_measured_batch(self, engine: str) -> int | None:
        """The largest concurrency among the engine's runs (an engine with a prior: those of the
        engine it is built on); None where the file records none."""
        return self.measured_batch.get(engine, self.measured_batch.get(self._engine_prior(engine).get("like", "")))

    def to_toml(self) -> str:
        lines = [
            f"# {self.source}" if self.source else "# calibrated profile parameters",
            f"collective_latency_s = {self.collective_latency_s!r}",
            f"hop_latency_s = {self.hop_latency_s!r}",
            f'default_engine = "{self.default_engine}"',
            f"kv_memory_fraction = {self.kv_memory_fraction!r}",
            *(
                f"{k} = {getattr(self, k)!r}"
                for k in ("tpot_band_pct", "ttft_band_pct")
                if getattr(self, k) is not None
            ),
            "",
        ]
        for name, c in sorted(self.chips.items()):
            lines += [f'[chips."{name}"]', *(f"{k} = {getattr(c, k)!r}" for k in EFFICIENCIES)]
            lines += [f"assumed = {'true' if c.assumed else 'false'}", ""]
        for name, e in sorted(self.engines.items()):
            lines += [f'[engines."{name}"]', *(f"{k} = {getattr(e, k)!r}" for k in (*OVERHEADS, *ENGINE_FRACTIONS))]
            lines += [f"assumed = {'true' if e.assumed else 'false'}", ""]
        if self.measured_batch:
            lines += ["[measured_batch]", *(f'"{n}" = {b}' for n, b in sorted(self.measured_batch.items())), ""]
        return "\n".join(lines)


def _engine_from_table(name: str, table: dict[str, Any], origin: str) -> EngineOverheads:
    """An [engines] entry. A term added after the file was written (a field with a default:
    the later terms) takes the default, which costs nothing: the model of the file's time."""
    known = {f.name for f in fields(EngineOverheads)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise InputError(f"{origin}: engines.{name} has no term {unknown[0]!r} (terms: {', '.join(sorted(known))})")
    return EngineOverheads(
        **{k: float(v) for k, v in table.items() if k != "assumed"}, assumed=bool(table.get("assumed", False))
    )


def _check_engine(name: str, engine: EngineOverheads, origin: str) -> None:
    for k in OVERHEADS:
        value = getattr(engine, k)
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{origin}: engines.{name}.{k} must be zero or more, got {value!r}")
    for k in ENGINE_EFFICIENCIES:
        value = getattr(engine, k)
        if not (math.isfinite(value) and 0 < value <= 1):
            raise InputError(f"{origin}: engines.{name}.{k} must be in (0, 1] (a fraction of a peak), got {value!r}")
    for k in ENGINE_SHARES:
        value = getattr(engine, k)
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InputError(f"{origin}: engines.{name}.{k} must be in [0, 1] (a share), got {value!r}")


def params_from_toml(text: str, origin: str) -> CalibratedParams:
    try:
        data = tomllib.loads(text)
        chips = {
            n: ChipEfficiency(**{k: float(c[k]) for k in EFFICIENCIES}, assumed=bool(c.get("assumed", False)))
            for n, c in data["chips"].items()
        }
        engines = {n: _engine_from_table(n, e, origin) for n, e in data["engines"].items()}
        params = CalibratedParams(
            float(data["collective_latency_s"]),
            float(data["hop_latency_s"]),
            chips,
            engines,
            str(data.get("default_engine", DEFAULT_ENGINE)),
            float(data.get("kv_memory_fraction", KV_MEMORY_FRACTION)),
            origin,
            tpot_band_pct=None if data.get("tpot_band_pct") is None else float(data["tpot_band_pct"]),
            ttft_band_pct=None if data.get("ttft_band_pct") is None else float(data["ttft_band_pct"]),
            measured_batch={str(n): int(b) for n, b in data.get("measured_batch", {}).items()},
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{origin}: not a calibrated-profile parameter file ({e})") from None
    if REFERENCE_CHIP not in chips:
        raise InputError(f'{origin}: lacks the reference chip [chips."{REFERENCE_CHIP}"]')
    for key in ("collective_latency_s", "hop_latency_s"):
        value = getattr(params, key)
        if not math.isfinite(value) or value < 0:
            raise InputError(f"{origin}: {key} must be zero or more, got {value!r}")
    for n, c in chips.items():
        for k in EFFICIENCIES:
            value = getattr(c, k)
            if not (math.isfinite(value) and 0 < value <= 1):
                raise InputError(
                    f"{origin}: chips.{n}.{k} must be in (0, 1] (a fraction of the chip's peak), got {value!r}"
                )
    for n, overheads in engines.items():
        _check_engine(n, overheads, origin)
    for key in ("tpot_band_pct", "ttft_band_pct"):
        band = getattr(params, key)
        if band is not None and not (math.isfinite(band) and band >= 0):
            raise InputError(f"{origin}: {key} must be a percentage of zero or more, got {band!r}")
    if not 0 < params.kv_memory_fraction <= 1:
        raise InputError(f"{origin}: kv_memory_fraction must be in (0, 1], got {params.kv_memory_fraction!r}")
    if params.default_engine not in params.engine_names():
        raise InputError(f"{origin}: default_engine {params.default_engine!r} has no [engines] entry")
    return params


def load_params(path: str | Path | None = None) -> CalibratedParams:
    """The calibrated parameters: the built-in file (fitted to the bundled measurements by
    `servesat calibrate`), or one written by `servesat calibrate --out FILE`. Read at the
    boundary, once per command: the profile value carries the parsed parameters."""
    if path is None:
        return builtin_params()
    return params_from_toml(read_text(path, "calibration file"), str(path))


@functools.cache
def builtin_params() -> CalibratedParams:
    text = resources.files("optimizer").joinpath("data/calibrated.toml").read_text()
    return params_from_toml(text, "built-in calibrated.toml")


@functools.cache
def _priors() -> dict[str, Any]:
    text = resources.files("optimizer").joinpath("data/priors.toml").read_text()
    data = tomllib.loads(text)
    return {"chips": data.get("chips", {}), "engines": data.get("engines", {})}


def chip_prior(name: str, chips: Mapping[str, ChipEfficiency]) -> ChipEfficiency:
    """An unmeasured chip's efficiencies (assumed), by its rule in optimizer/data/priors.toml
    over the fitted chips: a sibling's (the same silicon), or the fitted chips' mean scaled,
    capped or set by published achieved fractions of the peak."""
    fitted = [c for c in chips.values() if not c.assumed] or list(chips.values())
    rule = _priors()["chips"].get(name, {})
    sibling = chips.get(rule.get("like", ""))
    if sibling is not None and not sibling.assumed:
        values = {k: getattr(sibling, k) for k in EFFICIENCIES}
    else:
        values = {k: float(np.mean([getattr(c, k) for c in fitted])) for k in EFFICIENCIES}
    for k, x in rule.get("scale", {}).items():
        values[k] *= x
    for k, x in rule.get("at_most", {}).items():
        values[k] = min(values[k], x)
    values.update(rule.get("value", {}))
    return ChipEfficiency(**{k: min(max(v, 1e-6), 1.0) for k, v in values.items()}, assumed=True)


def prior_basis(name: str, chips: Mapping[str, ChipEfficiency]) -> str:
    """What an unmeasured chip's prior rests on, in words (a sibling without runs of its own
    is no basis: chip_prior then takes the fitted chips' mean)."""
    rule = _priors()["chips"].get(name, {})
    sibling = chips.get(rule.get("like", ""))
    if "like" in rule and (sibling is None or sibling.assumed):
        return MEAN_PRIOR
    return str(rule.get("basis", MEAN_PRIOR))


def kv_copies(model: Model, attention_tp: np.ndarray) -> np.ndarray:
    """Copies of each sequence's KV cache a group of t attention chips holds: latent attention's
    one compressed vector sits on all t; grouped-query attention splits its K heads and, past
    t = K, repeats them (t/K copies)."""
    t = np.asarray(attention_tp, dtype=float)
    if model.is_mla:
        return t
    return np.maximum(1.0, t / model.num_kv_heads)


def _narrow_peak(chip: Chip, dtype: str) -> float:
    """The chip's dense peak for an 8- or 4-bit dtype; 0 where it lists none (int4 nowhere)."""
    return {"fp8": chip.fp8_flops, "int8": chip.int8_flops, "fp4": chip.fp4_flops}.get(dtype, 0.0)


def native_dtype(chip: Chip, dtype: str) -> bool:
    """Whether the chip has units for the weights' dtype (16-bit always; 8- and 4-bit formats
    where the chip lists a peak for them)."""
    return dtype in ("bf16", "fp16") or bool(_narrow_peak(chip, dtype))


def peak_flops(chip: Chip, dtype: str) -> float:
    """Dense peak of the weights' dtype: 8-bit (and 4-bit) formats run at the chip's own peak."""
    return _narrow_peak(chip, dtype) or chip.bf16_flops


def rows_by_model(models: Sequence[Model]) -> list[tuple[Model, np.ndarray]]:
    """Each distinct model (the same object) with the indices of its rows: per-model values are
    looked up once per model, not once per row."""
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(id(m), []).append(i)
    return [(models[idx[0]], np.array(idx)) for idx in groups.values()]


@dataclass
class StepTerms:
    """Per row: constants and per-token slopes of the calibrated step (seconds)."""

    t0: np.ndarray
    tseq: np.ndarray  # per decoding sequence
    mem_fixed: np.ndarray  # weights every token uses, read once per step
    mem_per_seq: np.ndarray  # KV read per sequence
    dec_per_seq: np.ndarray  # decode matmuls per sequence
    pf_per_token: np.ndarray  # prefill per prompt token (matmuls + its collectives)
    comm_fixed: np.ndarray  # collective latencies
    comm_per_token: np.ndarray  # collective bytes per token in the step
    experts_mem: np.ndarray  # reading every routed expert once (0 for a dense model)
    expert_miss: np.ndarray  # 1 - k/E: a step reads the fraction 1 - miss^N of the experts

    def step(self, decoding: np.ndarray, prompt_tokens: np.ndarray) -> np.ndarray:
        """T_step with `decoding` sequences and `prompt_tokens` tokens of prefill mixed in."""
        n = np.asarray(decoding, dtype=float)
        experts = self.experts_mem * (1.0 - self.expert_miss**n)
        return (
            self.t0
            + self.tseq * n
            + np.maximum(self.mem_fixed + experts + self.mem_per_seq * n, self.dec_per_seq * n)
            + self.comm_fixed
            + self.comm_per_token * n
            + self.pf_per_token * np.asarray(prompt_tokens, float)
        )


def _ring(x: np.ndarray) -> np.ndarray:
    """All-reduce traffic factor of a ring over x chips: 2(x-1)/x, 0 at x = 1."""
    return 2.0 * (x - 1.0) / x


def step_terms(
    models: Sequence[Model],
    chips: Sequence[Chip],
    weight_dtype: Sequence[str],
    kv_bytes: np.ndarray,
    tp: np.ndarray,
    link_bytes_per_s: np.ndarray,
    context: np.ndarray,
    prompt_len: np.ndarray,
    chip_eff: Sequence[ChipEfficiency],
    engine: Sequence[EngineOverheads],
    latency: tuple[float, float],
    attention_dp: np.ndarray | None = None,
    ep: np.ndarray | None = None,
    hops: np.ndarray | None = None,
    all_to_all_bytes_per_s: np.ndarray | None = None,
) -> StepTerms:
    """The calibrated step's terms for rows of (model, chip, dtypes, Y = t*d = t_moe*e, link,
    context, prompt). Per layer: the mixer's (and dense MLP's) all-reduce over the t chips of
    an attention group carrying its B/d tokens; per MoE layer the experts' all-reduce over
    t_moe chips and, under expert parallelism, the all-to-all dispatch and combine of k copies
    of each token (docs/models.md). Each collective costs alpha_launch + hops*alpha_hop
    (`latency`; hops per collective: 1 through an NVSwitch, 2(a-1) per ring axis of a torus);
    its bytes move at link_efficiency of the link (the all-to-all of experts spread over several
    nodes at all_to_all_bytes_per_s, the slower of its NVLink and scale-out legs: optimizer.multinode)."""
    rows = len(models)
    Y = np.asarray(tp, dtype=float)
    d = np.ones(rows) if attention_dp is None else np.asarray(attention_dp, dtype=float)
    e = np.ones(rows) if ep is None else np.asarray(ep, dtype=float)
    t, moe_tp = Y / d, Y / e
    b_w = np.array([PRECISION_BYTES.get(w, 0.5) for w in weight_dtype])
    S = np.asarray(context, dtype=float)
    T = np.asarray(prompt_len, dtype=float)
    kvb = np.asarray(kv_bytes, dtype=float)
    bw = Y * np.array([c.hbm_bytes_per_s for c in chips]) * np.array([x.hbm_efficiency for x in chip_eff])
    # weights the chip cannot compute in stream through the engine's dequantizing kernel
    unpacked = np.array([not native_dtype(c, w) for c, w in zip(chips, weight_dtype)])
    weight_bw = bw * np.where(unpacked, np.array([x.dequant_efficiency for x in engine]), 1.0)
    peak = Y * np.array([peak_flops(c, w) for c, w in zip(chips, weight_dtype)])
    fl = peak * np.array([x.flops_efficiency for x in chip_eff])
    fl_prefill = peak * np.array([x.prefill_efficiency for x in chip_eff])
    link = np.asarray(link_bytes_per_s, dtype=float) * np.array([x.link_efficiency for x in chip_eff])

    by_model = rows_by_model(models)
    model_code = np.empty(rows)
    for code, (_, idx) in enumerate(by_model):
        model_code[idx] = code
    # rows sharing (model, lengths, KV dtype) share every per_model value: evaluate f once per
    # distinct row (its first), then spread, instead of a Python call per row
    _, first, spread = np.unique(
        np.column_stack([model_code, S, T, kvb]).reshape(rows, 4), axis=0, return_index=True, return_inverse=True
    )
    spread = spread.reshape(rows)

    def per_model(f) -> np.ndarray:
        """f of each row's model and lengths, evaluated once per distinct (model, lengths, KV dtype)."""
        return np.array([float(f(models[i], i)) for i in first.tolist()], dtype=float).reshape(-1)[spread]

    lookup = per_model(lambda m, i: 0 if m.tie_embeddings else m.d_model * m.vocab)  # input table: not a matmul
    output = per_model(lambda m, i: m.d_model * m.vocab)  # output layer: only the last prompt token needs it
    dense_read = per_model(lambda m, i: m.dense_params) - lookup
    active = per_model(lambda m, i: m.flop_params) - lookup
    copies = np.empty(rows)
    for model, idx in by_model:
        copies[idx] = kv_copies(model, t[idx])
    kv_read = per_model(lambda m, i: m.kv_read_bytes_per_sequence(S[i], kvb[i])) * copies
    attn_decode = per_model(lambda m, i: m.attention_flops_per_token(S[i]))
    attn_prompt = per_model(lambda m, i: m.attention_flops_per_token(T[i])) / 2.0  # a prompt token sees T/2 on average
    D = per_model(lambda m, i: m.d_model)
    L_tp = per_model(lambda m, i: m.mixer_layers + m.dense_layers)  # all-reduces over the attention group
    L_moe = per_model(lambda m, i: m.moe_layers)
    k = per_model(lambda m, i: m.experts_per_token)
    act_bytes = 2.0
    comm_tok = (
        act_bytes * D * (L_tp * _ring(t) / d + L_moe * _ring(moe_tp) / e + L_moe * 2.0 * k * (e - 1.0) / (e * Y)) / link
    )
    if all_to_all_bytes_per_s is not None:
        a2a = np.asarray(all_to_all_bytes_per_s, dtype=float)
        apart = a2a != np.asarray(link_bytes_per_s, dtype=float)
        a2a_link = a2a * np.array([x.link_efficiency for x in chip_eff])
        comm_tok = np.where(
            apart,
            act_bytes * D * (L_tp * _ring(t) / d + L_moe * _ring(moe_tp) / e) / link
            + act_bytes * D * L_moe * 2.0 * k * (e - 1.0) / (e * Y) / a2a_link,
            comm_tok,
        )
    collectives = L_tp * (t > 1) + L_moe * ((moe_tp > 1) + 2.0 * (e > 1))
    per_collective = latency[0] + (np.ones(rows) if hops is None else np.asarray(hops, float)) * latency[1]
    layers = per_model(lambda m, i: m.num_layers)
    return StepTerms(
        t0=np.array([x.step_overhead_s for x in engine])
        + layers * np.array([x.layer_overhead_s for x in engine])
        + L_moe * np.array([x.moe_layer_overhead_s for x in engine]),
        tseq=np.array([x.seq_overhead_s for x in engine]),
        mem_fixed=dense_read * d * b_w / weight_bw,
        mem_per_seq=kv_read / bw,
        dec_per_seq=(2.0 * active + attn_decode) / fl,
        pf_per_token=(2.0 * (active - output) + attn_prompt) / fl_prefill + comm_tok,
        comm_fixed=collectives * per_collective,
        comm_per_token=comm_tok,
        experts_mem=per_model(lambda m, i: m.routed_expert_params) * b_w / weight_bw,
        expert_miss=per_model(lambda m, i: m.expert_miss_probability),
    )


# ----------------------------------------------------------------------------- the optimizer's profile


def _hops(chip: Chip, y: int, n_axes: int) -> float:
    """Link hops of one all-reduce: one through an NVSwitch; a ring along each of a torus
    replica's n axes (of about y^(1/n) chips) takes 2(a-1) steps per axis."""
    if chip.kind == "gpu" or y <= 1:
        return 1.0
    n = max(n_axes, 1)
    return float(n * 2.0 * (round(y ** (1.0 / n)) - 1))


def calibrated_roofline(
    book: Roofline,
    model: Model,
    workload: Workload,
    params: CalibratedParams,
    engine: str,
    layout: Layout,
) -> Roofline:
    """The candidate table's cost terms under the calibrated profile: the book's Roofline with
    its time terms replaced (the batch is the number of decoding sequences; prefill of the
    prompt runs at the calibrated prefill rate on prefill servers, or mixed into the step
    when co-located) and HBM capacity reduced to the engines' memory fraction. The comms
    family keeps the book's structural check."""
    chips = layout.chips
    names = [c.name for c in chips]
    # GPUs all-reduce over NVLink; a TPU replica over its model-parallel ICI axes
    link = np.array(
        [
            c.link_bytes_per_s if c.kind == "gpu" else c.ici_bytes_per_s_per_axis * max(int(n), 1)
            for c, n in zip(chips, layout.n_axes)
        ]
    )
    kv_bytes = np.array([DTYPE_BYTES[k] for k in layout.kv])
    terms = step_terms(
        [model] * len(chips),
        chips,
        list(layout.weights),
        kv_bytes,
        layout.tp,
        link,
        np.full(len(chips), float(workload.context)),
        np.full(len(chips), float(workload.prompt_tokens)),
        [params.chip(n) for n in names],
        [params.engine(engine, n) for n in names],
        (params.collective_latency_s, params.hop_latency_s),
        layout.dp(),
        layout.experts(),
        np.array([_hops(c, int(y), int(n)) for c, y, n in zip(chips, layout.tp, layout.n_axes)]),
        layout.all_to_all_bytes_per_s() if layout.nodes is not None else None,
    )
    prefill = workload.prompt_tokens * terms.pf_per_token
    attention_tp = np.asarray(layout.tp, dtype=float) / layout.dp()
    gqa_copies = np.ones(len(chips)) if model.is_mla else kv_copies(model, attention_tp)
    return replace(
        book,
        params_s=terms.mem_fixed,
        kv_s_per_seq=terms.mem_per_seq,
        flops_s_per_seq=terms.dec_per_seq,
        prefill_s=prefill,
        colocated_s_per_seq=prefill / workload.decode_len if workload.colocated else np.zeros(len(chips)),
        hbm_capacity_bytes=book.hbm_capacity_bytes * params.kv_memory_fraction,
        # past K heads grouped-query attention repeats its KV on the chips of a group (the book
        # keeps the chapter's perfect split; latent attention's copies are in both)
        kv_bytes_per_seq=book.kv_bytes_per_seq * gqa_copies,
        prompt_kv_bytes=book.prompt_kv_bytes * gqa_copies,
        fixed_s=terms.t0 + terms.comm_fixed,
        overhead_s_per_seq=terms.tseq + terms.comm_per_token,
        kv_in_max=np.ones(len(chips)),
        experts_s=terms.experts_mem,
        expert_miss=terms.expert_miss,
    )


def profile_notes(params: CalibratedParams, engine: str, prompts: bool, chip_names: set[str]) -> list[str]:
    """What a result under the calibrated profile should say about it (prompts: some prefill
    is modelled)."""
    notes = [
        f"calibrated profile ({engine} engine, {params.source}): step "
        "times include the fitted efficiencies, collectives and overheads; HBM is the engines' "
        f"{params.kv_memory_fraction:.0%} share"
    ]
    if prompts:
        notes.append(
            "prefill runs at the calibrated FLOP/s efficiency of the weights' dtype; --prefill-mfu "
            "applies to the book profile only"
        )
    chips = sorted(n for n in chip_names if params.chip(n).assumed)
    if chips:
        notes.append(
            f"no measured runs on {', '.join(chips)}: their efficiencies are priors (assumed; `assumed` in "
            "--json says what each prior rests on; override with --calibration FILE)"
        )
    if params.engine(engine).assumed:
        notes.append(f"no measured runs of {engine}: its overheads are a prior (assumed)")
    return notes
