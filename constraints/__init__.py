"""Constraint families. Each module has the same small surface:

- ``NAME``: the family's name in results (``binding``) and explanations;
- ``batch_caps(table, workload)``: per candidate, the largest batch the family allows in the
  integer-scaled model (0: the row can never satisfy it);
- ``satisfied(table, rows, batch, workload)``: the solver-free float check, vectorized;
  it is the test oracle and the source of "what binds";
- ``add(model, pick, batch, caps)``: post the family's rows in the CP-SAT model;
- ``explain(table, row, batch, workload)``: the binding constraint in plain words.
"""

from constraints import comms, hbm, latency, ttft

#: The families of the decode model, in the order their reasons are reported.
FAMILIES = (hbm, comms, latency, ttft)

__all__ = ["FAMILIES", "comms", "hbm", "latency", "ttft"]
