"""What makes a scenario fast must not change its answer: the candidates carried into CP-SAT
(ServingModel's keep_best), the caps' verification checking only the rows still moving and
starting from a floor (constraints._rows.verified_caps), the candidate columns cached per
enumeration (optimizer.candidates), and the plan's offer domination on columns
(optimizer.planning.offers.undominated_mask). Each is compared with the plain computation on mixture-of-experts
instances (and a dense one)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import pytest

import constraints
from constraints import _rows
from optimizer import load_chips, load_model
from optimizer.candidates import _table, build_table, candidate_rows
from optimizer.planning.offers import undominated_mask
from optimizer.profiles import Book, resolve_profile
from optimizer.scaling import UNBOUNDED
from optimizer.solve import ServingModel
from optimizer.workload import Workload


@pytest.fixture(scope="module")
def priced_chips():
    """The chips optimize searches by default."""
    return {n: c for n, c in load_chips().items() if c.priced}


#: GPUs and TPUs, one and several nodes (the full catalog makes the unpruned models slow)
SOME_CHIPS = ["h100", "b200", "mi300x", "tpu-v5e", "tpu-v6e"]

WORKLOADS = [
    Workload(context=8192, slo_ms=25),
    Workload(context=2048, slo_ms=15, serving="colocated", ttft_ms=2000),
    Workload(context=32768, slo_ms=50, serving="decode-only"),
]


def _answers(sm: ServingModel, top: int, chips: list[str]) -> list:
    """What optimize asks: the best, top - 1 runners-up, and each chip's best."""
    status, choice = sm.solve()
    out = [(status, choice)]
    taken = [choice.row] if choice is not None else []
    while choice is not None and len(taken) < top:
        status, choice = sm.solve(exclude=tuple(taken))
        out.append((status, choice))
        if choice is not None:
            taken.append(choice.row)
    return out + [sm.solve(chip=c) for c in chips]


@pytest.mark.parametrize("model", ["deepseek-v3", "gpt-oss-120b", "mixtral-8x7b", "llama3-70b"])
@pytest.mark.parametrize("w", WORKLOADS, ids=["disaggregated", "colocated", "decode-only"])
def test_carried_candidates_answer_as_every_candidate_does(model, w, priced_chips):
    """The best k overall and each chip's best carry every answer optimize asks for: the same
    winner, runners-up and per-chip bests (rows, batches, prefill servers, statuses) as the
    model over every feasible candidate, under each objective, for k = 1 and 3."""
    table = build_table(load_model(model), {n: priced_chips[n] for n in SOME_CHIPS}, w, Book())
    chips = sorted(set(table.chip.tolist()))
    for objective in ("queries-per-dollar", "min-chips", "min-latency"):
        full = _answers(ServingModel(table, w, objective), 3, chips)
        for top in (1, 3):
            pruned = ServingModel(table, w, objective, keep_best=top)
            assert len(pruned.rows) <= top + len(chips)
            want = full[:top] + full[-len(chips) :]
            assert _answers(pruned, top, chips) == want


def _verified_caps_reference(caps: np.ndarray, satisfied: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """verified_caps as it was: every bounded row checked at every step."""
    caps = caps.copy()
    rows = np.flatnonzero(caps < UNBOUNDED)
    if len(rows) == 0:
        return caps

    def ok(r: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (b == 0) | satisfied(r, np.maximum(b, 1))

    c = caps[rows]
    lo = np.where(ok(rows, c), c, 0)
    hi = np.where(lo == c, c + 1, c)
    step = np.ones_like(c)
    grow = ok(rows, hi) & (hi < UNBOUNDED)
    while grow.any():
        lo = np.where(grow, hi, lo)
        step = np.where(grow, step * 2, step)
        hi = np.where(grow, np.minimum(hi + step, UNBOUNDED), hi)
        grow = grow & ok(rows, hi) & (hi < UNBOUNDED)
    while (open_ := hi - lo > 1).any():
        mid = (lo + hi) // 2
        good = ok(rows, mid)
        lo = np.where(open_ & good, mid, lo)
        hi = np.where(open_ & ~good, mid, hi)
    caps[rows] = lo
    return caps


@pytest.mark.parametrize("model", ["deepseek-v3", "qwen3-30b-a3b", "llama4-maverick", "llama3-405b"])
@pytest.mark.parametrize("w", WORKLOADS, ids=["disaggregated", "colocated", "decode-only"])
def test_verified_caps_match_checking_every_row(model, w, priced_chips, monkeypatch):
    """Every family's caps equal the verification that checks every bounded row at every step
    from 0 (the MoE latency caps move most: their starting caps leave the experts out, and
    their floors bound the experts linearly)."""
    seen = []

    def both(caps, satisfied, floor=None):
        new = _rows.verified_caps(caps, satisfied, floor)
        assert np.array_equal(new, _verified_caps_reference(caps, satisfied))
        seen.append(int((new != caps).sum()))
        return new

    for family in constraints.FAMILIES:
        if hasattr(family, "verified_caps"):
            monkeypatch.setattr(family, "verified_caps", both)
    table = build_table(load_model(model), priced_chips, w, Book())
    for family in constraints.FAMILIES:
        family.batch_caps(table, w)
    assert seen and (model == "llama3-405b" or max(seen) > 0)


@pytest.mark.parametrize("engine", [None, "vllm", "trtllm"])
@pytest.mark.parametrize("model", ["deepseek-v3", "llama3-8b"])
def test_cached_columns_build_the_table_the_rows_do(model, engine, priced_chips):
    """build_table (columns cached per enumeration, the engine's dtypes filtered by index)
    equals the table built from the filtered rows themselves, array for array; the cached
    columns are read-only."""
    profile = Book() if engine is None else resolve_profile("calibrated", engine=engine)
    mdl, w = load_model(model), Workload(context=8192, slo_ms=20)
    key = (mdl.num_heads, mdl.num_experts) if mdl.is_moe else (0, 0)
    rows = candidate_rows(tuple(priced_chips[n] for n in sorted(priced_chips)), None, None, key)
    kept = [r for r in rows if profile.runs(mdl, priced_chips[r[0]], r[9], r[10])]
    for _ in range(2):  # the second from the cache
        got = build_table(mdl, priced_chips, w, profile)
        want = _table(mdl, w, profile, priced_chips, kept)
        assert len(got) == len(kept) > 0
        for name in ("chip", "topology", "slice_chips", "tp", "n_axes", "attention_dp", "ep", "pp", "nodes"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        for name in ("replicas", "weights", "kv", "usd_per_chip_hour", "scale_up_bytes_per_s", "dtype_groups"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        for name in vars(want.cost):
            assert np.array_equal(getattr(got.cost, name), getattr(want.cost, name), equal_nan=True), name
        assert np.array_equal(got.dtype_groups, np.char.add(np.char.add(got.weights, "/"), got.kv))
    if engine is None:  # shared by every table of this enumeration (a filtered one has copies)
        with pytest.raises(ValueError):
            got.tp[0] = 0


def _undominated_reference(chips: list[int], rate: list[float], groups: list[str]) -> list[bool]:
    """The plan's offer domination as first written: offer j drops offer k (same group) when
    ceil(rate_k / rate_j) slices of j hold no more chips than one of k, unless k drops j too
    and comes first; every pair compared."""

    def dominates(j: int, k: int) -> bool:
        return groups[j] == groups[k] and math.ceil(rate[k] / rate[j]) * chips[j] <= chips[k]

    n = len(chips)
    return [not any(j != k and dominates(j, k) and (not dominates(k, j) or j < k) for j in range(n)) for k in range(n)]


@pytest.mark.parametrize("seed", range(40))
def test_offer_domination_matches_every_pair(seed):
    """undominated_mask (the fastest offer of each slice size, then one matrix over those)
    keeps exactly the offers the pairwise definition keeps, ties and equal offers included."""
    rng = random.Random(seed)
    n = rng.randint(1, 60)
    chips = [rng.choice([1, 2, 4, 8, 16]) for _ in range(n)]
    rate = [rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 7.0, 8.0]) * rng.choice([1, 1, 2]) for _ in range(n)]
    groups = [rng.choice(["bf16/bf16", "fp8/fp8", "fp8/int4"]) for _ in range(n)]
    got = undominated_mask(np.array(chips), np.array(rate), np.array(groups))
    assert got.tolist() == _undominated_reference(chips, rate, groups)


@pytest.mark.parametrize("seed", range(20))
def test_verified_caps_from_any_floor(seed):
    """A floor only moves where the search starts: right, too high or zero, the caps equal the
    search from 0 (a monotone check, random boundaries)."""
    rng = np.random.default_rng(seed)
    boundary = rng.integers(0, 5000, size=50)
    caps = boundary + rng.integers(-3, 3000, size=50)
    caps[rng.integers(0, 50, size=5)] = UNBOUNDED

    def satisfied(rows: np.ndarray, batch: np.ndarray) -> np.ndarray:
        return batch <= boundary[rows]

    expected = _verified_caps_reference(caps, satisfied)
    for floor in (boundary, boundary + rng.integers(1, 100, size=50), rng.integers(0, 6000, size=50), 0 * boundary):
        assert np.array_equal(_rows.verified_caps(caps, satisfied, floor), expected)
