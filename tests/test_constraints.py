"""Each constraint family: a satisfying and a violating case, its checker agreeing with the
solver, and integer scaling that never admits a batch the float model rejects."""

from __future__ import annotations

import numpy as np
import pytest

from constraints import FAMILIES, comms, hbm, latency
from optimizer import load_model
from optimizer.candidates import build_table, single_candidate
from optimizer.profiles import Book
from optimizer.scaling import UNBOUNDED
from optimizer.solve import ServingModel
from optimizer.workload import Workload


def one(chips, topology, dtype, model="llama3-70b", context=8192, tp=None):
    return single_candidate(
        load_model(model), chips["tpu-v5e"], topology, tp, dtype, dtype, Workload(context=context), Book()
    )


def test_hbm_satisfied_and_violated(chips):
    """bf16 70B on 4x4 at 8k holds 42 sequences, not 43; on 2x4 not even the weights."""
    t, r, w = one(chips, "4x4", "bf16"), np.array([0]), Workload()
    assert hbm.satisfied(t, r, np.array([42]), w)[0] and not hbm.satisfied(t, r, np.array([43]), w)[0]
    assert hbm.batch_caps(t, w)[0] == 42
    assert hbm.batch_caps(one(chips, "2x4", "bf16"), w)[0] == 0


def test_comms_satisfied_and_violated(chips):
    """int8 70B, 32-way over two axes: fine at batch 64, comms-bound at 128 (16-way is fine)."""
    t, r, w = one(chips, "4x8", "int8"), np.array([0]), Workload()
    assert comms.satisfied(t, r, np.array([64]), w)[0]
    assert not comms.satisfied(t, r, np.array([128]), w)[0]
    cap = comms.batch_caps(t, w)[0]
    assert comms.satisfied(t, r, np.array([cap]), w)[0] and not comms.satisfied(t, r, np.array([cap + 1]), w)[0]
    assert comms.batch_caps(one(chips, "4x4", "int8"), w)[0] == UNBOUNDED  # T_math outgrows T_ici


def test_comms_never_binds_without_model_parallelism(chips):
    """Y = 1 has no collectives."""
    t = one(chips, "4x4", "int8", model="llama3-8b", tp=1)
    assert comms.batch_caps(t, Workload())[0] == UNBOUNDED
    assert comms.satisfied(t, np.array([0]), np.array([10**6]), Workload())[0]


def test_latency_satisfied_and_violated(chips):
    """int8 70B on 4x4 at 2k: batch 1 takes 5.40 ms, so a 5.4 ms target fails and 5.5 ms passes."""
    t, r = one(chips, "4x4", "int8", context=2048), np.array([0])
    assert not latency.satisfied(t, r, np.array([1]), Workload(context=2048, slo_ms=5.4))[0]
    w = Workload(context=2048, slo_ms=5.5)
    assert latency.satisfied(t, r, np.array([1]), w)[0]
    cap = latency.batch_caps(t, w)[0]
    assert cap >= 1 and not latency.satisfied(t, r, np.array([cap + 1]), w)[0]
    assert latency.batch_caps(t, Workload(context=2048, slo_ms=5.4))[0] == 0


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.NAME)
def test_solver_respects_each_family_and_checker_agrees(family, chips):
    """Forced onto each row, the solver's batch passes the family's checker; one more fails it."""
    w = Workload(context=4096, slo_ms=20)
    table = build_table(load_model("llama3-70b"), {"tpu-v5e": chips["tpu-v5e"]}, w, Book())
    dm = ServingModel(table, w, "queries-per-dollar")
    for row in dm.rows.tolist():
        others = tuple(int(r) for r in dm.rows if r != row)
        status, choice = dm.solve(exclude=others)
        assert status == "optimal" and choice.row == row
        b = np.array([choice.batch])
        assert family.satisfied(table, np.array([row]), b, w)[0]
        if dm.caps[family.NAME][row] == choice.batch:
            assert not family.satisfied(table, np.array([row]), b + 1, w)[0]


@pytest.mark.parametrize("model", ["llama3-8b", "llama3-70b", "llama3-405b", "gemma-2-27b", "llama2-13b"])
@pytest.mark.parametrize("context", [512, 8192, 131072])
def test_integer_scaling_never_admits_what_the_float_model_rejects(model, context, chips):
    """At every row's integer cap each family's float check passes; one more sequence fails it
    (the scaling is exact enough never to lose a batch the float model allows)."""
    w = Workload(context=context, slo_ms=17.3, prompt_len=1000, serving="colocated")
    table = build_table(load_model(model), chips, w, Book())
    rows = np.arange(len(table))
    for family in FAMILIES:
        caps = family.batch_caps(table, w)
        bounded = (caps >= 1) & (caps < UNBOUNDED)
        assert family.satisfied(table, rows[bounded], caps[bounded], w).all()
        assert not family.satisfied(table, rows[bounded], caps[bounded] + 1, w).any()
        zero = caps == 0
        assert not family.satisfied(table, rows[zero], np.ones(zero.sum()), w).any()
