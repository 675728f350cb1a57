"""The calibrated profile: its parameters, its model of measured serving, the fit, validation.

The book profile assumes every byte moves at peak HBM bandwidth and nothing else costs time.
The calibrated profile keeps the same structure and adds the terms real engines pay, each
with a physical meaning (symbols per replica of Y GPUs serving a model of L layers, width D):

    T_mem  = (P_lin*b_w + N*S*kv_token) / (Y * W_hbm * eta_hbm[chip])     weights + KV read
    T_dec  = N * (2*P_lin + 4*L*H*hd*S) / (Y * C[dtype] * eta_flops[chip])   decode matmuls
    T_comm = 2L*alpha*log2(Y) + (N + N_p) * 2L*2D*(2(Y-1)/Y) / (W_link * eta_link[engine])
    T_pf   = N_p * (2*P_body + 2*L*H*hd*T) / (Y * C[dtype] * eta_flops[chip])  prefill mixed in
    T_step = t0[engine] + tseq[engine]*N + max(T_mem, T_dec) + T_pf + T_comm

N sequences decode in the step, S is their mean context, N_p = N*T/G prompt tokens of
prefill ride along in aggregated serving (a replica finishing N/G queries per step must
admit as many prompts of T tokens; zero when no prompts arrive), P_lin the weights read per
step (all but the embedding table), P_body the weights a prompt token multiplies (no
embedding, no output layer), C[dtype] the peak dense FLOP/s of the weights' dtype (fp8 and
int8 run at their own peak). The collective term is two all-reduces per layer (attention
and MLP outputs, ring algorithm): a latency per log2(Y) stage plus bytes over the link,
exactly zero at Y = 1.

Measured TPOT and TTFT come from a closed-loop load generator with B clients; the model of
that loop (for validation against such data, not for the optimizer) is:
    n = min(B, sequences whose KV fits in kv_memory_fraction of HBM beside the weights)
    s = T * c_p          one prompt's prefill (c_p: prefill FLOPs and collectives per token)
    Z = (k[engine] + G) * TPOT     time a client spends outside the prompt queue
    rho solves z*rho^2 - (z+1+n)*rho + n = 0 with z = Z/s (one server, n clients; M/M/1//n)
    X = rho/s queries/s;  N = min(n, X*G*TPOT) decoding, solved with TPOT as a fixed point
    TTFT = k[engine]*TPOT + s/(1-rho) + (B-n)/X
(admission delay of k decode steps, the wait in the prompt queue, and the clients waiting
for KV space, by Little's law).

The optimizer uses T_step with N = its batch, G the decode length, T the prompt length, and
prefill servers take T*c_p per prompt. Parameters are per chip type and per engine (an
engine on a chip may have its own set); chips without measurements (TPUs, A100, B200) take
the reference chip's fractions, marked `assumed` in the parameter file and overridable.
"""

from __future__ import annotations

import csv
import functools
import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np

from optimizer.catalog import Chip, Model, load_model
from optimizer.errors import InputError

#: The measurement file's GPU names; servesat's own chip names are accepted as well.
SYSTEM_NAMES = {"h100_sxm": "h100", "h200_sxm": "h200", "b200_sxm": "b200", "a100_sxm": "a100"}
#: Chips without measurements take this chip's efficiencies (the stated assumption).
REFERENCE_CHIP = "h100"
DEFAULT_ENGINE = "vllm"
#: Fraction of HBM the engines give to weights and KV cache (vLLM's default gpu_memory_utilization).
KV_MEMORY_FRACTION = 0.9
FIXED_POINT_ITERATIONS = 30
TTFT_WEIGHT = 0.3  # weight of log-TTFT residuals relative to log-TPOT residuals in the fit
PRECISION_BYTES = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0}
INITIAL = {
    "hbm_efficiency": 0.75,
    "flops_efficiency": 0.6,
    "collective_latency_s": 1e-5,
    "step_overhead_s": 2e-3,
    "seq_overhead_s": 2e-5,
    "link_efficiency": 0.7,
    "admission_steps": 3.0,
}


@dataclass(frozen=True)
class ChipEfficiency:
    hbm_efficiency: float  # achieved fraction of peak HBM bandwidth
    flops_efficiency: float  # achieved fraction of peak dense FLOP/s
    assumed: bool = False  # not fitted: copied from the reference chip


@dataclass(frozen=True)
class EngineOverheads:
    step_overhead_s: float  # t0: fixed time per decode step (scheduling, kernel launches)
    seq_overhead_s: float  # tseq: per sequence per step (sampling, bookkeeping)
    link_efficiency: float  # achieved fraction of the interconnect bandwidth in all-reduce
    admission_steps: float  # k: decode steps a new request waits before its prefill starts


@dataclass(frozen=True)
class CalibratedParams:
    collective_latency_s: float  # alpha: per all-reduce stage
    chips: dict[str, ChipEfficiency]
    engines: dict[str, EngineOverheads]  # "vllm" or "vllm@h200" (an engine on one chip)
    default_engine: str = DEFAULT_ENGINE
    kv_memory_fraction: float = KV_MEMORY_FRACTION
    source: str = ""

    def chip(self, name: str) -> ChipEfficiency:
        return self.chips.get(name) or replace(self.chips[REFERENCE_CHIP], assumed=True)

    def engine(self, engine: str, chip: str) -> EngineOverheads:
        """The engine's set on this chip, else its set on the reference chip, else the default
        engine's on this chip or the reference chip (an engine measured only elsewhere)."""
        if engine not in self.engine_names():
            raise InputError(f"unknown engine {engine!r}; calibrated engines: {', '.join(self.engine_names())}")
        for key in (
            f"{engine}@{chip}",
            f"{engine}@{REFERENCE_CHIP}",
            f"{self.default_engine}@{chip}",
            f"{self.default_engine}@{REFERENCE_CHIP}",
        ):
            if key in self.engines:
                return self.engines[key]
        return self.engines[sorted(k for k in self.engines if k.split("@")[0] == engine)[0]]

    def engine_names(self) -> list[str]:
        return sorted({k.split("@")[0] for k in self.engines})

    def to_toml(self) -> str:
        lines = [
            f"# {self.source}" if self.source else "# calibrated profile parameters",
            f"collective_latency_s = {self.collective_latency_s!r}",
            f'default_engine = "{self.default_engine}"',
            f"kv_memory_fraction = {self.kv_memory_fraction!r}",
            "",
        ]
        for name, c in sorted(self.chips.items()):
            lines += [
                f'[chips."{name}"]',
                f"hbm_efficiency = {c.hbm_efficiency!r}",
                f"flops_efficiency = {c.flops_efficiency!r}",
                f"assumed = {'true' if c.assumed else 'false'}",
                "",
            ]
        for name, e in sorted(self.engines.items()):
            lines += [
                f'[engines."{name}"]',
                f"step_overhead_s = {e.step_overhead_s!r}",
                f"seq_overhead_s = {e.seq_overhead_s!r}",
                f"link_efficiency = {e.link_efficiency!r}",
                f"admission_steps = {e.admission_steps!r}",
                "",
            ]
        return "\n".join(lines)


def params_from_toml(text: str, origin: str) -> CalibratedParams:
    try:
        data = tomllib.loads(text)
        chips = {
            n: ChipEfficiency(float(c["hbm_efficiency"]), float(c["flops_efficiency"]), bool(c.get("assumed", False)))
            for n, c in data["chips"].items()
        }
        engines = {
            n: EngineOverheads(
                float(e["step_overhead_s"]),
                float(e["seq_overhead_s"]),
                float(e["link_efficiency"]),
                float(e["admission_steps"]),
            )
            for n, e in data["engines"].items()
        }
        params = CalibratedParams(
            float(data["collective_latency_s"]),
            chips,
            engines,
            str(data.get("default_engine", DEFAULT_ENGINE)),
            float(data.get("kv_memory_fraction", KV_MEMORY_FRACTION)),
            origin,
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{origin}: not a calibrated-profile parameter file ({e})") from None
    if REFERENCE_CHIP not in chips:
        raise InputError(f'{origin}: lacks the reference chip [chips."{REFERENCE_CHIP}"]')
    numbers = [("collective_latency_s", params.collective_latency_s, False)]
    numbers += [
        (f"chips.{n}.{k}", getattr(c, k), True)
        for n, c in chips.items()
        for k in ("hbm_efficiency", "flops_efficiency")
    ]
    numbers += [
        (f"engines.{n}.{k}", getattr(e, k), k == "link_efficiency")
        for n, e in engines.items()
        for k in ("step_overhead_s", "seq_overhead_s", "link_efficiency", "admission_steps")
    ]
    for key, value, positive in numbers:
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise InputError(f"{origin}: {key} must be {'positive' if positive else 'zero or more'}, got {value!r}")
    if not 0 < params.kv_memory_fraction <= 1:
        raise InputError(f"{origin}: kv_memory_fraction must be in (0, 1], got {params.kv_memory_fraction!r}")
    if params.default_engine not in params.engine_names():
        raise InputError(f"{origin}: default_engine {params.default_engine!r} has no [engines] entry")
    return params


def load_params(path: str | Path | None = None) -> CalibratedParams:
    """The calibrated parameters: the built-in file (fitted to the bundled measurements by
    `servesat calibrate`), or one written by `servesat calibrate --out FILE`. Parsed once per
    file version (a zoo builds one table per scenario)."""
    if path is None:
        return _parsed(None, 0)
    try:
        return _parsed(str(path), Path(path).stat().st_mtime_ns)
    except OSError as e:
        raise InputError(f"calibration file {path}: cannot be read ({e.strerror})") from None


@functools.lru_cache(maxsize=16)
def _parsed(path: str | None, version: int) -> CalibratedParams:
    if path is None:
        text = resources.files("optimizer").joinpath("data/calibrated.toml").read_text()
        return params_from_toml(text, "built-in calibrated.toml")
    return params_from_toml(Path(path).read_text(), path)


# ----------------------------------------------------------------------------- measurements

COLUMNS = (
    "backend",
    "model_path",
    "system",
    "precision",
    "mode",
    "isl",
    "osl",
    "batch_size",
    "tp_size",
    "pp_size",
    "silicon_ttft_ms",
    "silicon_tpot_ms",
)


@dataclass
class Measurements:
    """Rows of a calibration CSV that servesat can model, as arrays, plus the skipped ones."""

    rows: list[dict[str, str]]  # the kept rows, as read
    model: list[Model]
    chip: list[Chip]
    engine: np.ndarray
    precision: np.ndarray
    isl: np.ndarray
    osl: np.ndarray
    clients: np.ndarray  # batch_size: concurrent requests of the load generator
    tp: np.ndarray
    ttft_s: np.ndarray
    tpot_s: np.ndarray
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, mask: np.ndarray) -> Measurements:
        idx = np.flatnonzero(mask)
        pick = idx.tolist()
        return Measurements(
            [self.rows[i] for i in pick],
            [self.model[i] for i in pick],
            [self.chip[i] for i in pick],
            self.engine[idx],
            self.precision[idx],
            self.isl[idx],
            self.osl[idx],
            self.clients[idx],
            self.tp[idx],
            self.ttft_s[idx],
            self.tpot_s[idx],
            [],
        )

    @property
    def model_names(self) -> np.ndarray:
        return np.array([m.name for m in self.model])

    @property
    def chip_names(self) -> np.ndarray:
        return np.array([c.name for c in self.chip])


def bundled_data() -> Path:
    return Path(str(resources.files("optimizer").joinpath("data/calibration.csv")))


def load_measurements(path: str | Path, chips: dict[str, Chip]) -> Measurements:
    """Read a CSV in the calibration schema; rows servesat cannot model are skipped with a reason."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column {missing[0]!r}; the schema has {', '.join(COLUMNS)}")
            raw = list(reader)
    except FileNotFoundError:
        raise InputError(f"data file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot be read ({e})") from None
    kept: list[dict[str, str]] = []
    models: list[Model] = []
    chip_list: list[Chip] = []
    skipped: list[tuple[int, str]] = []
    numbers: list[list[float]] = []
    for line, r in enumerate(raw, start=2):
        system = SYSTEM_NAMES.get(r["system"], r["system"])
        try:
            model = load_model(r["model_path"])
        except InputError:
            skipped.append((line, f"unknown model {r['model_path']!r}"))
            continue
        if system not in chips:
            skipped.append((line, f"unknown system {r['system']!r}"))
            continue
        if r["precision"] not in PRECISION_BYTES:
            skipped.append((line, f"unknown precision {r['precision']!r}"))
            continue
        if r["mode"] != "agg":
            skipped.append((line, f"mode {r['mode']!r}: only agg (prefill and decode on the same GPUs) is modelled"))
            continue
        try:
            values = [
                float(r[c])
                for c in ("isl", "osl", "batch_size", "tp_size", "pp_size", "silicon_ttft_ms", "silicon_tpot_ms")
            ]
        except ValueError:
            skipped.append((line, "a number column is not a number"))
            continue
        if values[4] != 1:
            skipped.append((line, f"pipeline parallelism {r['pp_size']} is not modelled"))
            continue
        if min(values) <= 0 or not all(math.isfinite(v) for v in values):
            skipped.append((line, "a number column is not positive"))
            continue
        kept.append(r)
        models.append(model)
        chip_list.append(chips[system])
        numbers.append(values)
    a = np.array(numbers, dtype=float).reshape(-1, 7)
    return Measurements(
        kept,
        models,
        chip_list,
        np.array([r["backend"] for r in kept], dtype=str),
        np.array([r["precision"] for r in kept], dtype=str),
        a[:, 0],
        a[:, 1],
        a[:, 2],
        a[:, 3],
        a[:, 5] / 1e3,
        a[:, 6] / 1e3,
        skipped,
    )


# ----------------------------------------------------------------------------- the model


def _architecture(models: Sequence[Model]) -> dict[str, np.ndarray]:
    def col(attr: str) -> np.ndarray:
        return np.array([float(getattr(m, attr)) for m in models])

    L, D, V = col("num_layers"), col("d_model"), col("vocab")
    P = np.array([float(m.param_count) for m in models])
    embed = np.where(col("tie_embeddings") > 0, 1.0, 2.0)
    # P_lin: what a decode step reads (all but the embedding table, which a tied output layer reuses)
    return {
        "L": L,
        "D": D,
        "H": col("num_heads"),
        "hd": col("head_dim"),
        "P": P,
        "P_lin": P - (embed - 1.0) * D * V,
        "P_body": P - embed * D * V,
        "kv_tok_per_byte": 2 * col("num_kv_heads") * col("head_dim") * L,
    }


def peak_flops(chip: Chip, dtype: str) -> float:
    """Dense peak of the weights' dtype: 8-bit formats run at the chip's 8-bit peak."""
    return {"fp8": chip.fp8_flops, "int8": chip.int8_flops}.get(dtype, 0.0) or chip.bf16_flops


@dataclass
class StepTerms:
    """Per row: constants and per-token slopes of the calibrated step (seconds)."""

    t0: np.ndarray
    tseq: np.ndarray  # per decoding sequence
    mem_fixed: np.ndarray  # weights read
    mem_per_seq: np.ndarray  # KV read per sequence
    dec_per_seq: np.ndarray  # decode matmuls per sequence
    pf_per_token: np.ndarray  # prefill per prompt token (matmuls + its collectives)
    comm_fixed: np.ndarray  # collective latencies
    comm_per_token: np.ndarray  # collective bytes per token in the step

    def step(self, decoding: np.ndarray, prompt_tokens: np.ndarray) -> np.ndarray:
        """T_step with `decoding` sequences and `prompt_tokens` tokens of prefill mixed in."""
        n = np.asarray(decoding, dtype=float)
        return (
            self.t0
            + self.tseq * n
            + np.maximum(self.mem_fixed + self.mem_per_seq * n, self.dec_per_seq * n)
            + self.comm_fixed
            + self.comm_per_token * n
            + self.pf_per_token * np.asarray(prompt_tokens, float)
        )


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
    alpha: float,
) -> StepTerms:
    """The calibrated step's terms for rows of (model, chip, dtypes, Y, link, context, prompt)."""
    a = _architecture(models)
    Y = np.asarray(tp, dtype=float)
    b_w = np.array([PRECISION_BYTES.get(w, 0.5) for w in weight_dtype])
    kv_tok = a["kv_tok_per_byte"] * kv_bytes
    S = np.asarray(context, dtype=float)
    T = np.asarray(prompt_len, dtype=float)
    bw = Y * np.array([c.hbm_bytes_per_s for c in chips]) * np.array([e.hbm_efficiency for e in chip_eff])
    fl = (
        Y
        * np.array([peak_flops(c, w) for c, w in zip(chips, weight_dtype)])
        * np.array([e.flops_efficiency for e in chip_eff])
    )
    ring = 2.0 * (Y - 1.0) / Y  # all-reduce traffic factor: 0 at Y = 1
    link = np.asarray(link_bytes_per_s, dtype=float) * np.array([e.link_efficiency for e in engine])
    comm_tok = 2.0 * a["L"] * 2.0 * a["D"] * ring / link
    attn = 2.0 * a["L"] * a["H"] * a["hd"]
    return StepTerms(
        t0=np.array([e.step_overhead_s for e in engine]),
        tseq=np.array([e.seq_overhead_s for e in engine]),
        mem_fixed=a["P_lin"] * b_w / bw,
        mem_per_seq=S * kv_tok / bw,
        dec_per_seq=(2.0 * a["P_lin"] + 2.0 * attn * S) / fl,
        pf_per_token=(2.0 * a["P_body"] + attn * T) / fl + comm_tok,
        comm_fixed=2.0 * a["L"] * alpha * np.log2(Y),
        comm_per_token=comm_tok,
    )


def _measured_terms(m: Measurements, params: CalibratedParams) -> tuple[StepTerms, np.ndarray]:
    names = m.chip_names.tolist()
    terms = step_terms(
        m.model,
        m.chip,
        m.precision.tolist(),
        np.full(len(m), 2.0),
        m.tp,
        np.array([c.link_bytes_per_s for c in m.chip]),
        m.isl + m.osl / 2,
        m.isl,
        [params.chip(n) for n in names],
        [params.engine(e, n) for e, n in zip(m.engine.tolist(), names)],
        params.collective_latency_s,
    )
    return terms, np.array([params.engine(e, n).admission_steps for e, n in zip(m.engine.tolist(), names)])


def predict(m: Measurements, params: CalibratedParams) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (TPOT, TTFT) in seconds of each measured row under the calibrated profile
    (KV cache in bf16, as the engines measured here keep it)."""
    terms, k = _measured_terms(m, params)
    a = _architecture(m.model)
    ctx = m.isl + m.osl / 2
    weights = a["P"] * np.array([PRECISION_BYTES[p] for p in m.precision.tolist()])
    hbm = m.tp * np.array([c.hbm_bytes for c in m.chip]) * params.kv_memory_fraction
    fits = np.maximum(hbm - weights, 1.0) / (a["kv_tok_per_byte"] * 2.0 * ctx)
    n = np.minimum(m.clients, fits)
    s = m.isl * terms.pf_per_token
    G = m.osl
    decoding = n.copy()
    rho = np.zeros(len(m))
    for _ in range(FIXED_POINT_ITERATIONS):
        tpot = terms.step(decoding, decoding * m.isl / G)
        z = (k + G) * tpot / s
        bq = z + 1 + n
        rho = np.minimum((bq - np.sqrt(np.maximum(bq * bq - 4 * z * n, 0.0))) / (2 * z), 1 - 1e-9)
        decoding = 0.5 * decoding + 0.5 * np.minimum(n, rho / s * G * tpot)
    tpot = terms.step(decoding, decoding * m.isl / G)
    throughput = rho / s
    ttft = k * tpot + s / (1 - rho) + (m.clients - n) / throughput
    return tpot, ttft


def predict_book(m: Measurements) -> tuple[np.ndarray, np.ndarray]:
    """The book profile on measured rows: co-located serving (prefill on the same chips) at the
    load generator's concurrency, prefill at the chapter's 40% MFU, KV in bf16; TTFT is one
    prompt's prefill (the book has no queueing)."""
    from optimizer.costmodel import roofline
    from optimizer.workload import Workload

    tpot = np.empty(len(m))
    ttft = np.empty(len(m))
    for i in range(len(m)):
        G, T = int(m.osl[i]), int(m.isl[i])
        w = Workload(context=T + G, decode_len=G, prompt_len=T, serving="colocated")
        chip = m.chip[i]
        c = roofline(
            m.model[i],
            w,
            tp=np.array([m.tp[i]]),
            n_axes=np.array([1 if m.tp[i] > 1 else 0]),
            weight_bytes_per_param=np.array([PRECISION_BYTES[m.precision[i]]]),
            kv_bytes_per_elem=np.array([2.0]),
            flops=np.array([chip.bf16_flops]),
            hbm_bytes=np.array([chip.hbm_bytes]),
            hbm_bytes_per_s=np.array([chip.hbm_bytes_per_s]),
            ici_bytes_per_s=np.array([chip.ici_bytes_per_s_per_axis]),
        )
        batch = min(m.clients[i], max(float(c.max_batch_hbm()[0]), 1.0))
        tpot[i] = float(c.step_s(batch)[0])
        ttft[i] = float(c.prefill_s[0])
    return tpot, ttft


# ----------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class _Layout:
    """Which parameter each entry of the fit's vector (the logarithm of a positive value) is.
    Efficiencies are not capped at 1: a fitted value above 1 says the engine does better than
    the term's physics allows (see the README), which a cap would hide as extra error."""

    chips: tuple[str, ...]
    engines: tuple[str, ...]

    def initial(self) -> np.ndarray:
        x = [INITIAL["hbm_efficiency"], INITIAL["flops_efficiency"]] * len(self.chips)
        x += [INITIAL["collective_latency_s"]]
        x += [
            INITIAL["step_overhead_s"],
            INITIAL["seq_overhead_s"],
            INITIAL["link_efficiency"],
            INITIAL["admission_steps"],
        ] * len(self.engines)
        return np.log(np.array(x))

    def params(self, x: np.ndarray, source: str = "") -> CalibratedParams:
        v = np.exp(np.clip(x, -40, 15))
        chips = {c: ChipEfficiency(float(v[2 * i]), float(v[2 * i + 1])) for i, c in enumerate(self.chips)}
        base = 2 * len(self.chips) + 1
        engines = {
            e: EngineOverheads(*(float(t) for t in v[base + 4 * j : base + 4 * j + 4]))
            for j, e in enumerate(self.engines)
        }
        return CalibratedParams(float(v[2 * len(self.chips)]), chips, engines, source=source)


def _levenberg_marquardt(resid, x: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Deterministic Levenberg-Marquardt with a forward-difference Jacobian."""
    lam = 1e-2
    r = resid(x)
    cost = r @ r
    for _ in range(iterations):
        J = np.empty((r.size, x.size))
        for j in range(x.size):
            xp = x.copy()
            xp[j] += 1e-6 * max(1.0, abs(x[j]))
            J[:, j] = (resid(xp) - r) / (xp[j] - x[j])
        A, g = J.T @ J, J.T @ r
        for _ in range(20):
            step = -np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-12), g)
            rn = resid(x + step)
            cn = rn @ rn
            if np.isfinite(cn) and cn < cost:
                x, r, cost, lam = x + step, rn, cn, max(lam / 3, 1e-9)
                break
            lam *= 4
        else:
            break
        if np.max(np.abs(step)) < 1e-10:
            break
    return x


def fit(m: Measurements, source: str = "") -> CalibratedParams:
    """Fit every parameter the rows identify (least squares on log TPOT and 0.3 x log TTFT),
    from fixed starting values; chips of the catalog without rows take the reference chip's
    efficiencies (marked assumed)."""
    if not len(m):
        raise InputError("no rows to fit: every row of the data was skipped")
    chips = tuple(sorted(set(m.chip_names.tolist())))
    engines = tuple(sorted({f"{e}@{c}" for e, c in zip(m.engine.tolist(), m.chip_names.tolist())}))
    layout = _Layout(chips, engines)

    def resid(x: np.ndarray) -> np.ndarray:
        tpot, ttft = predict(m, layout.params(x))
        return np.concatenate([np.log(tpot / m.tpot_s), TTFT_WEIGHT * np.log(ttft / m.ttft_s)])

    params = layout.params(_levenberg_marquardt(resid, layout.initial()), source)
    if REFERENCE_CHIP not in params.chips:
        first = params.chips[chips[0]]
        params = replace(params, chips={**params.chips, REFERENCE_CHIP: replace(first, assumed=True)})
    default = DEFAULT_ENGINE if DEFAULT_ENGINE in params.engine_names() else params.engine_names()[0]
    return replace(params, default_engine=default)


def with_catalog(params: CalibratedParams, chips: dict[str, Chip]) -> CalibratedParams:
    """Every catalog chip listed: fitted chips as fitted, the others the reference chip's (assumed)."""
    ref = params.chips[REFERENCE_CHIP]
    full = {name: params.chips.get(name, replace(ref, assumed=True)) for name in chips}
    return replace(params, chips={**full, **params.chips})


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    return float(np.mean(np.abs(predicted / measured - 1.0)) * 100.0) if len(measured) else float("nan")


# ----------------------------------------------------------------------------- validation

GROUP_KEYS = ("model", "system", "engine", "precision")


@dataclass
class Validation:
    profile: str
    rows: list[dict]  # each kept row's own columns plus predicted_tpot_ms, predicted_ttft_ms, errors (%)
    groups: list[dict]  # per (model, system, engine, precision): n, tpot_mape, ttft_mape
    overall: dict  # n, tpot_mape, ttft_mape
    skipped: list[dict]  # line, reason
    leave_one_model_out: list[dict] | None = None  # per held-out model: n, tpot_mape, ttft_mape

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def _summary(m: Measurements, tpot: np.ndarray, ttft: np.ndarray, mask: np.ndarray) -> dict:
    return {
        "n": int(mask.sum()),
        "tpot_mape": mape(tpot[mask], m.tpot_s[mask]),
        "ttft_mape": mape(ttft[mask], m.ttft_s[mask]),
    }


def validate(
    m: Measurements, profile: str, params: CalibratedParams | None = None, leave_one_model_out: bool = False
) -> Validation:
    """Predictions and their errors for every row, summarized per group and overall; with
    leave_one_model_out (calibrated profile), each model is also predicted from a fit to the
    other models' rows."""
    if not len(m):
        raise InputError(
            "no rows to validate: every row of the data was skipped"
            if m.skipped
            else "no rows to validate: the data file has a header only"
        )
    if profile == "book":
        tpot, ttft = predict_book(m)
    elif profile == "calibrated":
        tpot, ttft = predict(m, params if params is not None else load_params())
    else:
        raise InputError(f"unknown profile {profile!r}; valid: book, calibrated")
    rows = []
    for i, r in enumerate(m.rows):
        rows.append(
            {
                **r,
                "predicted_tpot_ms": float(tpot[i] * 1e3),
                "predicted_ttft_ms": float(ttft[i] * 1e3),
                "tpot_error_pct": float((tpot[i] / m.tpot_s[i] - 1) * 100),
                "ttft_error_pct": float((ttft[i] / m.ttft_s[i] - 1) * 100),
            }
        )
    keys = np.array(
        [
            "|".join(k)
            for k in zip(m.model_names.tolist(), m.chip_names.tolist(), m.engine.tolist(), m.precision.tolist())
        ]
    )
    groups = []
    for key in sorted(set(keys.tolist())):
        groups.append({**dict(zip(GROUP_KEYS, key.split("|"))), **_summary(m, tpot, ttft, keys == key)})
    lomo = None
    if leave_one_model_out and profile == "calibrated":
        lomo = []
        names = m.model_names
        if len(set(names.tolist())) < 2:
            raise InputError("leave-one-model-out needs rows of at least two models")
        for held in sorted(set(names.tolist())):
            train = m.subset(names != held)
            test = m.subset(names == held)
            missing = sorted(set(test.engine.tolist()) - set(train.engine.tolist()))
            if missing:
                raise InputError(
                    f"leave-one-model-out: {held} runs on {', '.join(missing)}, which no other model's "
                    "rows measure, so its overheads cannot be fitted without it"
                )
            t1, t2 = predict(test, fit(train))
            lomo.append({"model": held, **_summary(test, t1, t2, np.ones(len(test), bool))})
    return Validation(
        profile=profile,
        rows=rows,
        groups=groups,
        overall=_summary(m, tpot, ttft, np.ones(len(m), bool)),
        skipped=[{"line": line, "reason": why} for line, why in m.skipped],
        leave_one_model_out=lomo,
    )


# ----------------------------------------------------------------------------- the optimizer's profile


def calibrated_roofline(
    book,
    model: Model,
    workload,
    chips: Sequence[Chip],
    weights: Sequence[str],
    kv: Sequence[str],
    tp: np.ndarray,
    n_axes: np.ndarray,
):
    """The candidate table's cost terms under the calibrated profile: the book's Roofline with
    its time terms replaced (the batch is the number of decoding sequences; prefill of the
    prompt runs at the calibrated prefill rate on prefill servers, or mixed into the step
    when co-located) and HBM capacity reduced to the engines' memory fraction. The comms
    family keeps the book's structural check."""
    from optimizer.catalog import DTYPE_BYTES

    params = load_params(workload.calibration)
    engine = workload.engine or params.default_engine
    if engine not in params.engine_names():
        raise InputError(f"unknown engine {engine!r}; calibrated engines: {', '.join(params.engine_names())}")
    names = [c.name for c in chips]
    # GPUs all-reduce over NVLink; a TPU replica over its model-parallel ICI axes
    link = np.array(
        [
            c.link_bytes_per_s if c.kind == "gpu" else c.ici_bytes_per_s_per_axis * max(int(n), 1)
            for c, n in zip(chips, n_axes)
        ]
    )
    kv_bytes = np.array([DTYPE_BYTES[k] for k in kv])
    terms = step_terms(
        [model] * len(chips),
        chips,
        list(weights),
        kv_bytes,
        tp,
        link,
        np.full(len(chips), float(workload.context)),
        np.full(len(chips), float(workload.prompt_tokens)),
        [params.chip(n) for n in names],
        [params.engine(engine, n) for n in names],
        params.collective_latency_s,
    )
    prefill = workload.prompt_tokens * terms.pf_per_token
    return replace(
        book,
        params_s=terms.mem_fixed,
        kv_s_per_seq=terms.mem_per_seq,
        flops_s_per_seq=terms.dec_per_seq,
        prefill_s=prefill,
        colocated_s_per_seq=prefill / workload.decode_len if workload.colocated else np.zeros(len(chips)),
        hbm_capacity_bytes=book.hbm_capacity_bytes * params.kv_memory_fraction,
        fixed_s=terms.t0 + terms.comm_fixed,
        overhead_s_per_seq=terms.tseq + terms.comm_per_token,
        kv_in_max=np.ones(len(chips)),
    )


def profile_notes(calibration: str | None, engine: str | None, prompts: bool, chip_names: set[str]) -> list[str]:
    """What a result under the calibrated profile should say about it (prompts: some prefill
    is modelled)."""
    params = load_params(calibration)
    notes = [
        f"calibrated profile ({engine or params.default_engine} engine, {params.source}): step "
        "times include the fitted efficiencies, collectives and overheads; HBM is the engines' "
        f"{params.kv_memory_fraction:.0%} share"
    ]
    if prompts:
        notes.append(
            "prefill runs at the calibrated FLOP/s efficiency of the weights' dtype; --prefill-mfu "
            "applies to the book profile only"
        )
    assumed = sorted(chip_names - {n for n, e in params.chips.items() if not e.assumed})
    if assumed:
        notes.append(
            f"no measurements for {', '.join(assumed)}: their efficiencies are the reference chip's "
            "(an assumption; override with --calibration FILE)"
        )
    return notes
