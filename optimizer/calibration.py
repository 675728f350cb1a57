"""Calibrating the calibrated profile: the fit of its parameters to measured serving runs
(optimizer.measurements), and validation against them.

The parameters and step terms themselves live in optimizer.calibrated (what the optimizer needs).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from optimizer.calibrated import (
    DEFAULT_ENGINE,
    PRECISION_BYTES,
    REFERENCE_CHIP,
    CalibratedParams,
    ChipEfficiency,
    EngineOverheads,
    StepTerms,
    kv_copies,
    step_terms,
)
from optimizer.catalog import Chip
from optimizer.costmodel import roofline
from optimizer.errors import InputError
from optimizer.measurements import Measurements
from optimizer.profiles import DEFAULT_PREFILL_MFU, Book, Calibrated, Profile
from optimizer.workload import Workload

#: Chips without measurements take this chip's efficiencies (the stated assumption).
FIXED_POINT_ITERATIONS = 30
TTFT_WEIGHT = 0.3  # weight of log-TTFT residuals relative to log-TPOT residuals in the fit
INITIAL = {
    "hbm_efficiency": 0.75,
    "flops_efficiency": 0.6,
    "collective_latency_s": 1e-5,
    "step_overhead_s": 2e-3,
    "seq_overhead_s": 2e-5,
    "link_efficiency": 0.7,
    "admission_steps": 3.0,
}


def _measured_terms(m: Measurements, params: CalibratedParams) -> tuple[StepTerms, np.ndarray]:
    names = m.chip_names.tolist()
    terms = step_terms(
        m.model,
        m.chip,
        m.precision.tolist(),
        np.full(len(m), 2.0),
        m.chips_per_replica,
        np.array([c.link_bytes_per_s for c in m.chip]),
        m.isl + m.osl / 2,
        m.isl,
        [params.chip(n) for n in names],
        [params.engine(e, n) for e, n in zip(m.engine.tolist(), names)],
        params.collective_latency_s,
        m.attention_dp,
        m.ep,
    )
    return terms, np.array([params.engine(e, n).admission_steps for e, n in zip(m.engine.tolist(), names)])


def predict(m: Measurements, params: CalibratedParams) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (TPOT, TTFT) in seconds of each measured row under the calibrated profile
    (KV cache in bf16, as the engines measured here keep it)."""
    terms, k = _measured_terms(m, params)
    ctx = m.isl + m.osl / 2
    b_w = np.array([PRECISION_BYTES[p] for p in m.precision.tolist()])
    weights = np.array([x.dense_params * d + x.routed_expert_params for x, d in zip(m.model, m.attention_dp)]) * b_w
    hbm = m.chips_per_replica * np.array([c.hbm_bytes for c in m.chip]) * params.kv_memory_fraction
    kv_seq = np.array(
        [
            x.kv_bytes_per_sequence(s, 2.0) * kv_copies(x, np.array([t]))[0]
            for x, s, t in zip(m.model, ctx, m.tp.tolist())
        ]
    )
    fits = np.maximum(hbm - weights, 1.0) / kv_seq
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


def predict_book(m: Measurements, prefill_mfu: float = DEFAULT_PREFILL_MFU) -> tuple[np.ndarray, np.ndarray]:
    """The book profile on measured rows: co-located serving (prefill on the same chips) at the
    load generator's concurrency, prefill at the chapter's 40% MFU, KV in bf16; TTFT is one
    prompt's prefill (the book has no queueing)."""
    tpot = np.empty(len(m))
    ttft = np.empty(len(m))
    for i in range(len(m)):
        G, T = int(m.osl[i]), int(m.isl[i])
        w = Workload(context=T + G, decode_len=G, prompt_len=T, serving="colocated")
        chip = m.chip[i]
        c = roofline(
            m.model[i],
            w,
            prefill_mfu=prefill_mfu,
            tp=np.array([m.chips_per_replica[i]]),
            n_axes=np.array([1 if m.chips_per_replica[i] > 1 else 0]),
            attention_dp=np.array([m.attention_dp[i]]),
            ep=np.array([m.ep[i]]),
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


def fit_warnings(m: Measurements, params: CalibratedParams) -> list[str]:
    """What makes a fit untrustworthy, in words: fewer measured rows than fitted parameters
    (the parameters then describe those rows, not the chips and engines), and fitted values
    that no hardware can have (an efficiency above 1, faster than the chip's peak)."""
    fitted_chips = sorted(n for n, c in params.chips.items() if not c.assumed)
    n_params = 2 * len(fitted_chips) + 1 + 4 * len(params.engines)
    out = []
    if len(m) < n_params:
        out.append(
            f"only {len(m)} measured rows for {n_params} fitted parameters: the fit is underdetermined, "
            "and its parameters reproduce these rows without describing the chips or engines"
        )
    for name in fitted_chips:
        c = params.chips[name]
        out += [
            f"{name}: fitted {what} {value:.3g} is above 1, beyond the chip's peak (unphysical)"
            for what, value in (("hbm_efficiency", c.hbm_efficiency), ("flops_efficiency", c.flops_efficiency))
            if value > 1
        ]
    out += [
        f"{name}: link_efficiency {e.link_efficiency:.3g} is above 1, beyond the interconnect's peak (unphysical)"
        for name, e in sorted(params.engines.items())
        if e.link_efficiency > 1
    ]
    return out


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


def validate(m: Measurements, profile: Profile, leave_one_model_out: bool = False) -> Validation:
    """Predictions and their errors for every row, summarized per group and overall; with
    leave_one_model_out (calibrated profile), each model is also predicted from a fit to the
    other models' rows."""
    if not len(m):
        raise InputError(
            "no rows to validate: every row of the data was skipped"
            if m.skipped
            else "no rows to validate: the data file has a header only"
        )
    if isinstance(profile, Book):
        tpot, ttft = predict_book(m, profile.prefill_mfu)
    else:
        tpot, ttft = predict(m, profile.params)
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
    if leave_one_model_out and isinstance(profile, Calibrated):
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
        profile=profile.name,
        rows=rows,
        groups=groups,
        overall=_summary(m, tpot, ttft, np.ones(len(m), bool)),
        skipped=[{"line": line, "reason": why} for line, why in m.skipped],
        leave_one_model_out=lomo,
    )
