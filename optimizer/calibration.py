"""Calibrating the calibrated profile: the fit of its parameters to measured serving runs
(optimizer.measurements), and validation against them.

The parameters and step terms themselves live in optimizer.calibrated (what the optimizer needs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from optimizer.calibrated import (
    DEFAULT_ENGINE,
    EFFICIENCIES,
    ENGINE_FRACTIONS,
    OVERHEADS,
    PRECISION_BYTES,
    REFERENCE_CHIP,
    CalibratedParams,
    ChipEfficiency,
    EngineOverheads,
    StepTerms,
    kv_copies,
    native_dtype,
    rows_by_model,
    step_terms,
)
from optimizer.catalog import Chip
from optimizer.costmodel import roofline
from optimizer.errors import InputError
from optimizer.measurements import Measurements, load_measurements
from optimizer.models import Model
from optimizer.profiles import DEFAULT_PREFILL_MFU, Book, Calibrated, Profile
from optimizer.workload import Workload

#: Chips without measurements take this chip's efficiencies (the stated assumption).
FIXED_POINT_ITERATIONS = 30
TTFT_WEIGHT = 0.3  # weight of log-TTFT residuals relative to log-TPOT residuals in the fit
INITIAL = {
    "hbm_efficiency": 0.75,
    "flops_efficiency": 0.5,
    "prefill_efficiency": 0.5,
    "link_efficiency": 0.6,
    "collective_latency_s": 1e-5,
    "step_overhead_s": 2e-3,
    "seq_overhead_s": 2e-5,
    "layer_overhead_s": 2e-5,
    "moe_layer_overhead_s": 2e-5,
    "admission_steps": 3.0,
    "dequant_efficiency": 0.8,
    "kv_wait_in_ttft": 0.5,
}
#: Weight of the pull of each chip's efficiencies toward the mean of the measured chips' (per
#: residual, scaled by sqrt(rows)): chips differ only where the data prove it. Without it each
#: chip's efficiencies absorb what its own mix of models and engines does, and the chips'
#: order flips (measured: 65% of matched pairs ordered right, against 91% pooled).
POOLING = 0.3
#: alpha_hop: no measured run moves a collective over more than one hop (NVSwitch), so the fit
#: cannot see it; a torus hop takes about a microsecond (an assumption, stated in the notes).
HOP_LATENCY_PRIOR_S = 1e-6
#: The perfect chip and engine: every peak reached, nothing else costs time. A run measured
#: faster than this no bounded model can explain.
PERFECT_CHIP = ChipEfficiency(1.0, 1.0, 1.0, 1.0)
PERFECT_ENGINE = EngineOverheads(
    0.0, 0.0, 0.0, 0.0, moe_layer_overhead_s=0.0, dequant_efficiency=1.0, kv_wait_in_ttft=1.0
)  # kv_wait_in_ttft 1: no wait for KV space within TPOT


def _measured_terms(m: Measurements, params: CalibratedParams) -> tuple[StepTerms, list[EngineOverheads]]:
    names = m.chip_names.tolist()
    engines = [params.engine(e) for e in m.engine.tolist()]
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
        engines,
        (params.collective_latency_s, params.hop_latency_s),
        m.attention_dp,
        m.ep,
    )
    return terms, engines


def _by_model(m: Measurements, f: Callable[[Model, np.ndarray], np.ndarray]) -> np.ndarray:
    """f(model, rows) for each distinct model of the rows (rows: its row indices), spread over
    the rows."""
    out = np.empty(len(m))
    for model, rows in rows_by_model(m.model):
        out[rows] = f(model, rows)
    return out


def predict(m: Measurements, params: CalibratedParams) -> tuple[np.ndarray, np.ndarray]:
    """Predicted (TPOT, TTFT) in seconds of each measured row under the calibrated profile
    (KV cache in bf16, as the engines measured here keep it)."""
    terms, engines = _measured_terms(m, params)
    k = np.array([e.admission_steps for e in engines])
    phi = np.array([e.kv_wait_in_ttft for e in engines])
    ctx = m.isl + m.osl / 2
    b_w = np.array([PRECISION_BYTES[p] for p in m.precision.tolist()])
    weights = _by_model(m, lambda x, r: x.dense_params * m.attention_dp[r] + x.routed_expert_params) * b_w
    hbm = m.chips_per_replica * np.array([c.hbm_bytes for c in m.chip]) * params.kv_memory_fraction

    def kv_per_sequence(x: Model, r: np.ndarray) -> np.ndarray:
        per_context = {c: x.kv_bytes_per_sequence(c, 2.0) for c in set(ctx[r].tolist())}
        return np.array([per_context[c] for c in ctx[r].tolist()]) * kv_copies(x, m.tp[r].astype(float))

    kv_seq = _by_model(m, kv_per_sequence)
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
    step = terms.step(decoding, decoding * m.isl / G)
    kv_wait = (m.clients - n) / (rho / s)
    return step + (1 - phi) * kv_wait / G, k * step + s / (1 - rho) + phi * kv_wait


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
    """Which parameter each entry of the fit's vector is. Bounds hold by construction: an
    efficiency is the logistic of its entry, in (0, 1); a time or a step count is the
    exponential of its entry, positive (exp(-40) is zero for every purpose)."""

    chips: tuple[str, ...]
    engines: tuple[str, ...]

    def initial(self) -> np.ndarray:
        eff = [_logit(INITIAL[k]) for k in EFFICIENCIES] * len(self.chips)
        over = [math.log(INITIAL[k]) for k in OVERHEADS] * len(self.engines)
        fractions = [_logit(INITIAL[k]) for k in ENGINE_FRACTIONS] * len(self.engines)
        return np.array([*eff, math.log(INITIAL["collective_latency_s"]), *over, *fractions])

    def params(self, x: np.ndarray, source: str = "") -> CalibratedParams:
        n_eff = len(EFFICIENCIES) * len(self.chips)
        eff = 1.0 / (1.0 + np.exp(-np.clip(x[:n_eff], -40, 40)))
        chips = {
            c: ChipEfficiency(float(eff[4 * i]), float(eff[4 * i + 1]), float(eff[4 * i + 2]), float(eff[4 * i + 3]))
            for i, c in enumerate(self.chips)
        }
        n_over = 1 + len(OVERHEADS) * len(self.engines)
        rest = np.exp(np.clip(x[n_eff : n_eff + n_over], -40, 15))
        per_engine = rest[1:].reshape(len(self.engines), len(OVERHEADS))
        fractions = 1.0 / (1.0 + np.exp(-np.clip(x[n_eff + n_over :], -40, 40)))
        fractions = fractions.reshape(len(self.engines), len(ENGINE_FRACTIONS))
        engines = {
            e: EngineOverheads(
                **{k: float(v) for k, v in zip((*OVERHEADS, *ENGINE_FRACTIONS), (*over, *frac))}, assumed=False
            )
            for e, over, frac in zip(self.engines, per_engine, fractions)
        }
        return CalibratedParams(float(rest[0]), HOP_LATENCY_PRIOR_S, chips, engines, source=source)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def load_runs(path: str | Path, catalog: dict[str, Chip]) -> Measurements:
    """Measured runs servesat can model and a bounded model can explain (the others skipped,
    each with its reason). Chips without a price are measured all the same."""
    return explainable(load_measurements(path, {**getattr(catalog, "unpriced", {}), **catalog}))


def explainable(m: Measurements) -> Measurements:
    """The rows a bounded model can explain; the others move to `skipped`, with the reason."""
    fast = faster_than_peak(m)
    if not fast.any():
        return m
    kept = m.subset(~fast)
    why = "faster than 100% of the chip's peaks with no overhead: no bounded model explains it (left out)"
    kept.skipped = sorted([*m.skipped, *((int(line), why) for line in m.lines[fast].tolist())])
    return kept


def faster_than_peak(m: Measurements) -> np.ndarray:
    """Rows whose measured TPOT is below the same run's time at 100% of every peak with no
    overhead: no bounded model can explain them (a different KV dtype, speculative decoding,
    or routing that touches fewer experts than uniform routing would)."""
    chips = {n: PERFECT_CHIP for n in set(m.chip_names.tolist())}
    perfect = CalibratedParams(
        0.0, 0.0, {REFERENCE_CHIP: PERFECT_CHIP, **chips}, {e: PERFECT_ENGINE for e in set(m.engine.tolist())}
    )
    floor, _ = predict(m, perfect)
    return m.tpot_s < floor


def _levenberg_marquardt(resid, x: np.ndarray, column, iterations: int = 300) -> np.ndarray:
    """Deterministic Levenberg-Marquardt with a forward-difference Jacobian: column(xp, j, h, r)
    is (resid(xp) - r) / h for xp = x + h in entry j (_least_squares computes it sparsely)."""
    lam = 1e-2
    r = resid(x)
    cost = r @ r
    for _ in range(iterations):
        J = np.empty((r.size, x.size))
        for j in range(x.size):
            h = 1e-6 * max(1.0, abs(x[j]))
            xp = x.copy()
            xp[j] += h
            h = xp[j] - x[j]
            J[:, j] = column(xp, j, h, r)
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


def _least_squares(m: Measurements) -> tuple[_Layout, Callable, Callable]:
    """The fit's problem: the parameter layout, the residuals of a parameter vector (log TPOT,
    0.3 x log TTFT, the pull toward the chips' mean), and column(xp, j, h, r): the Jacobian's
    column j at a step h, from the residuals entry j moves only (a sparse Jacobian: a chip's
    efficiencies move only its rows, an engine's terms only its rows; predict is row by row)."""
    chips = tuple(sorted(set(m.chip_names.tolist())))
    engines = tuple(sorted(set(m.engine.tolist())))
    layout = _Layout(chips, engines)
    n_eff = len(EFFICIENCIES) * len(chips)
    pull = POOLING * math.sqrt(len(m))

    def errors(x: np.ndarray, rows: Measurements) -> tuple[np.ndarray, np.ndarray]:
        tpot, ttft = predict(rows, layout.params(x))
        return np.log(tpot / rows.tpot_s), TTFT_WEIGHT * np.log(ttft / rows.ttft_s)

    def pooled(x: np.ndarray) -> np.ndarray:
        eff = x[:n_eff].reshape(len(chips), len(EFFICIENCIES))
        return pull * (eff - eff.mean(axis=0)).ravel()

    def resid(x: np.ndarray) -> np.ndarray:
        return np.concatenate([*errors(x, m), pooled(x)])

    of_chip = {c: m.chip_names == c for c in chips}
    of_engine = {e: m.engine == e for e in engines}
    masks = [
        *(of_chip[c] for c in chips for _ in EFFICIENCIES),
        np.ones(len(m), dtype=bool),  # alpha_launch
        *(of_engine[e] for e in engines for _ in OVERHEADS),
        *(of_engine[e] for e in engines for _ in ENGINE_FRACTIONS),
    ]
    assert len(masks) == layout.initial().size
    subsets = {id(mask): (np.flatnonzero(mask), m.subset(mask)) for mask in masks}

    def column(xp: np.ndarray, j: int, h: float, r: np.ndarray) -> np.ndarray:
        col = np.zeros(r.size)
        (rows, sub), n = subsets[id(masks[j])], len(m)
        tpot, ttft = errors(xp, sub)
        col[rows] = (tpot - r[rows]) / h
        col[n + rows] = (ttft - r[n + rows]) / h
        col[2 * n :] = (pooled(xp) - r[2 * n :]) / h
        return col

    return layout, resid, column


def fit(m: Measurements, source: str = "") -> CalibratedParams:
    """Fit every parameter the rows identify (bounded least squares on log TPOT and
    0.3 x log TTFT, i.e. on relative error, with each chip's efficiencies pulled toward the
    measured chips' mean: POOLING), from fixed starting values; engines' overheads are
    shared by every chip they run on; chips of the catalog without rows take priors
    (calibrated.chip_prior, marked assumed). Rows faster than 100% of every peak must be left
    out first (faster_than_peak): no bounded parameter can reach them."""
    if not len(m):
        raise InputError("no rows to fit: every row of the data was skipped")
    layout, resid, column = _least_squares(m)
    params = layout.params(_levenberg_marquardt(resid, layout.initial(), column), source)
    if REFERENCE_CHIP not in params.chips:
        params = replace(params, chips={**params.chips, REFERENCE_CHIP: params.chip(REFERENCE_CHIP)})
    default = DEFAULT_ENGINE if DEFAULT_ENGINE in params.engines else sorted(params.engines)[0]
    measured = {str(e): int(m.clients[m.engine == e].max()) for e in layout.engines}
    return replace(params, default_engine=default, measured_batch=measured)


def fit_warnings(m: Measurements, params: CalibratedParams) -> list[str]:
    """What makes a fit untrustworthy, in words: fewer measured rows than fitted parameters
    (the parameters then describe those rows, not the chips and engines), and engine terms no
    row identifies (they keep the fit's starting value). Efficiencies cannot leave (0, 1]: the
    fit's parametrization keeps them there."""
    fitted_chips = [n for n, c in params.chips.items() if not c.assumed]
    fitted_engines = sorted(n for n, e in params.engines.items() if not e.assumed)
    n_params = (
        len(EFFICIENCIES) * len(fitted_chips) + 1 + (len(OVERHEADS) + len(ENGINE_FRACTIONS)) * len(fitted_engines)
    )
    warnings = []
    if len(m) < n_params:
        warnings.append(
            f"only {len(m)} measured rows for {n_params} fitted parameters: the fit is underdetermined, "
            "and its parameters reproduce these rows without describing the chips or engines"
        )
    unpacked = np.array([not native_dtype(c, w) for c, w in zip(m.chip, m.precision.tolist())], dtype=bool)
    for name in fitted_engines:
        if not (unpacked & (m.engine == name)).any():
            warnings.append(
                f"{name}'s dequant_efficiency stays at the fit's start ({INITIAL['dequant_efficiency']:g}): "
                "none of its rows has weights in a dtype the chip has no units for"
            )
    return warnings


def with_catalog(params: CalibratedParams, chips: dict[str, Chip]) -> CalibratedParams:
    """Every catalog chip and every engine with a prior listed: fitted ones as fitted, the
    others their priors (assumed)."""
    full = {name: params.chip(name) for name in chips}
    engines = {name: params.engine(name) for name in params.engine_names()}
    return replace(params, chips={**full, **params.chips}, engines=engines)


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
    # the held-out rows pooled by kind of model ("mixture of experts", "dense"): models, n, tpot_mape, ttft_mape
    leave_one_model_out_pooled: list[dict] | None = None
    # matched pairs on two chips: pairs, agree_pct (faster chip predicted faster), ceiling_pct (the most any
    # model can order right: repeats of one configuration disagree), by_chips (per pair of chips)
    chip_order: dict | None = None
    engines: list[dict] | None = None  # per engine: engine, n, tpot_mape, ttft_mape

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
    lomo = pooled = None
    if leave_one_model_out and isinstance(profile, Calibrated):
        held_tpot, held_ttft = held_out_predictions(m)
        names = m.model_names
        lomo = [
            {"model": held, **_summary(m, held_tpot, held_ttft, names == held)} for held in sorted(set(names.tolist()))
        ]
        # each held-out model's rows pooled by kind (every row still predicted by a fit without its model)
        moe = np.array([x.is_moe for x in m.model])
        pooled = [
            {"models": kind, **_summary(m, held_tpot, held_ttft, rows_of_kind)}
            for kind, rows_of_kind in (("mixture of experts", moe), ("dense", ~moe))
            if rows_of_kind.any()
        ]
    return Validation(
        profile=profile.name,
        rows=rows,
        groups=groups,
        overall=_summary(m, tpot, ttft, np.ones(len(m), bool)),
        skipped=[{"line": line, "reason": why} for line, why in m.skipped],
        leave_one_model_out=lomo,
        leave_one_model_out_pooled=pooled,
        chip_order=chip_order(m, tpot),
        engines=[{"engine": e, **_summary(m, tpot, ttft, m.engine == e)} for e in sorted(set(m.engine.tolist()))],
    )


def held_out_predictions(m: Measurements) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (TPOT, TTFT) predicted by a fit to the other models' rows only."""
    names = m.model_names
    if len(set(names.tolist())) < 2:
        raise InputError("leave-one-model-out needs rows of at least two models")
    tpot, ttft = np.empty(len(m)), np.empty(len(m))
    for held in sorted(set(names.tolist())):
        train, test = m.subset(names != held), m.subset(names == held)
        missing = sorted(set(test.engine.tolist()) - set(train.engine.tolist()))
        if missing:
            raise InputError(
                f"leave-one-model-out: {held} runs on {', '.join(missing)}, which no other model's "
                "rows measure, so its overheads cannot be fitted without it"
            )
        tpot[names == held], ttft[names == held] = predict(test, fit(train))
    return tpot, ttft


def with_bands(m: Measurements, params: CalibratedParams) -> CalibratedParams:
    """The parameters with their prediction bands: the mean absolute error (%) of every row's
    leave-one-model-out prediction (a model the fit never saw)."""
    tpot, ttft = held_out_predictions(m)
    return replace(params, tpot_band_pct=mape(tpot, m.tpot_s), ttft_band_pct=mape(ttft, m.ttft_s))


def chip_order(m: Measurements, tpot: np.ndarray) -> dict:
    """On matched runs (same engine, model, precision, lengths, concurrency and parallelism) of
    two chips, how often the chip measured faster is predicted faster: overall, and per pair of
    chips with the median measured gap between them (a pair of near-equal chips, measured a few
    percent apart, is a coin toss for any model) and the ceiling: the most pairs any model can
    order right. A model sees a configuration's inputs only, so it orders every repeat of one
    configuration on two chips the same way; where the repeats (runs of other engine versions,
    rows measured twice) disagree on which chip is faster, at most the larger side is right."""
    keys = list(
        zip(m.engine.tolist(), m.model_names.tolist(), m.precision.tolist(), m.isl.tolist(), m.osl.tolist(),
            m.clients.tolist(), m.tp.tolist(), m.attention_dp.tolist(), m.ep.tolist())
    )  # fmt: skip
    by_key: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        by_key.setdefault(k, []).append(i)
    chips = m.chip_names
    by_chips: dict[str, list[tuple[bool, float]]] = {}
    ceiling: dict[str, int] = {}
    for idx in by_key.values():
        # per pair of chips in this configuration: pairs whose first chip (by name) measured faster, slower
        sides: dict[str, list[int]] = {}
        for a in idx:
            for b in idx:
                if a < b and chips[a] != chips[b] and m.tpot_s[a] != m.tpot_s[b]:
                    right = bool((m.tpot_s[a] < m.tpot_s[b]) == (tpot[a] < tpot[b]))
                    gap = abs(math.log(m.tpot_s[a] / m.tpot_s[b]))
                    name = "/".join(sorted((str(chips[a]), str(chips[b]))))
                    by_chips.setdefault(name, []).append((right, gap))
                    first_faster = (m.tpot_s[a] < m.tpot_s[b]) == (str(chips[a]) < str(chips[b]))
                    sides.setdefault(name, [0, 0])[0 if first_faster else 1] += 1
        for name, (faster, slower) in sides.items():
            ceiling[name] = ceiling.get(name, 0) + max(faster, slower)
    pairs = sum(len(v) for v in by_chips.values())
    agree = sum(ok for v in by_chips.values() for ok, _ in v)
    return {
        "pairs": pairs,
        "agree_pct": 100.0 * agree / pairs if pairs else float("nan"),
        "ceiling_pct": 100.0 * sum(ceiling.values()) / pairs if pairs else float("nan"),
        "by_chips": [
            {
                "chips": name,
                "pairs": len(v),
                "agree_pct": 100.0 * sum(ok for ok, _ in v) / len(v),
                "ceiling_pct": 100.0 * ceiling[name] / len(v),
                "median_measured_gap_pct": 100.0 * (math.exp(float(np.median([g for _, g in v]))) - 1.0),
            }
            for name, v in sorted(by_chips.items())
        ],
    }
