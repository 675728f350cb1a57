"""What a plan can buy for each model: slice offers built from the model's candidate tables,
and the cheapest integer covers of a load by them.

A decode offer is one configuration (pool, slice, model-parallel axes, dtypes) at its best
feasible batch (the largest every decode family allows: it maximizes queries per chip); it
serves `rate` queries per second per slice. A prefill offer is a prefill-server
configuration; it serves `rate` prompts per second per slice (replicas / T_prefill). Both
cost `chips` chips of their pool for as long as they are held.

Offers that can never be part of a cheaper plan are dropped before the solver sees them.
Within one (model, pool, role, dtype pair), offer o is dominated by offer q when k =
ceil(rate_o / rate_q) slices of q use no more chips than one slice of o: replacing each o
by k q's serves as much and holds no more chips of the same pool in any period, so no
quota, budget or cost gets worse. A whole dtype pair is dropped when another pair of the
same model dominates each of its decode and prefill offers in that sense. Both reductions
keep an optimal plan (exact) for the offers' rates as computed, which the brute-force tests
check; the integer model then rounds each slice's rate down to a micro-query per second, so
there a dropped offer may serve up to a micro-query per second more per slice than the slices
that replace it (two replicas' rate rounded once against each replica's rounded apart).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from ortools.sat.python import cp_model

from constraints import demand, prefill
from optimizer.candidates import CandidateTable
from optimizer.catalog import Chip
from optimizer.errors import InputError
from optimizer.metrics import measure
from optimizer.models import Model, load_model
from optimizer.planning.spec import PlanModel, PlanSpec, ResolvedPlan
from optimizer.scaling import demand_int, rate_int
from optimizer.solve import MAX_BATCH, family_caps


@dataclass(frozen=True)
class SliceOffer:
    model: int  # index of the plan's model
    pool: int  # index of the plan's pool
    role: str  # "decode" or "prefill"
    group: str  # "weights/kv"
    chips: int  # per slice
    rate: float  # per slice: queries/s (decode) or prompts/s (prefill)
    config: dict  # chip, topology, chips, tp, n_axes, replicas, weights, kv
    batch: int | None = None  # decode: per replica
    step_ms: float | None = None  # decode
    prefill_ms: float | None = None  # prefill: one prompt

    @cached_property
    def rate_int(self) -> int:
        """The rate per slice in the integer model's units (rounded down)."""
        return rate_int(self.rate)


@dataclass(frozen=True)
class _OfferBlock:
    """One (pool, role)'s offers of one model as columns over its candidate rows, before any
    SliceOffer is built: pruning reads the columns, and only the offers it keeps become objects."""

    pool: int
    role: str
    table: CandidateTable
    rows: np.ndarray
    rate: np.ndarray  # per slice
    batch: np.ndarray | None = None  # decode
    step_s: np.ndarray | None = None  # decode
    prefill_s: np.ndarray | None = None  # prefill

    @property
    def chips(self) -> np.ndarray:
        return self.table.slice_chips[self.rows]

    @property
    def group_codes(self) -> np.ndarray:
        return self.table.group_code[self.rows]

    def offers(self, m: int, keep: np.ndarray | None = None) -> list[SliceOffer]:
        """The block's offers (those where `keep` is true) as SliceOffers, in row order."""
        t = self.table
        at = np.arange(len(self.rows)) if keep is None else np.flatnonzero(keep)
        out = []
        for i in at.tolist():
            r = int(self.rows[i])
            if self.role == "decode":
                assert self.batch is not None and self.step_s is not None
                extra: dict = {"batch": int(self.batch[i]), "step_ms": float(self.step_s[i]) * 1e3}
            else:
                assert self.prefill_s is not None
                extra = {"prefill_ms": float(self.prefill_s[i]) * 1e3}
            chips, rate = int(t.slice_chips[r]), float(self.rate[i])
            out.append(SliceOffer(m, self.pool, self.role, str(t.dtype_groups[r]), chips, rate, t.row(r), **extra))
        return out


def _offer_blocks(spec: PlanSpec, m: int, model: Model, pools: Sequence[Chip]) -> list[_OfferBlock]:
    """Every feasible decode and prefill offer of the plan's model `m`, per pool and role, in
    the order model_offers lists them."""
    pm: PlanModel = spec.models[m]
    workload = spec.workload(pm)
    blocks: list[_OfferBlock] = []
    for p, chip in enumerate(pools):
        table = spec.candidate_table(pm, model, [chip])
        if not len(table):
            continue
        cap = np.minimum(np.minimum.reduce(list(family_caps(table, workload).values())), MAX_BATCH)
        rows = np.flatnonzero(cap >= 1)
        if len(rows):
            batch = cap[rows]
            step = measure(table, rows, batch, workload.decode_len).step_s
            qps = table.replicas[rows] * batch / (step * workload.decode_len)
            blocks.append(_OfferBlock(p, "decode", table, rows, qps, batch=batch, step_s=step))
        if workload.prefill_servers:
            rows = np.flatnonzero(prefill.server_mask(table, workload))
            if len(rows):
                t = table.cost.prefill_s[rows]
                blocks.append(_OfferBlock(p, "prefill", table, rows, table.replicas[rows] / t, prefill_s=t))
    return blocks


def model_offers(spec: PlanSpec, m: int, model: Model, pools: Sequence[Chip]) -> list[SliceOffer]:
    """Every feasible decode and prefill offer of the plan's model `m` on every pool (unpruned)."""
    return [o for b in _offer_blocks(spec, m, model, pools) for o in b.offers(m)]


@dataclass
class PlanOffers:
    """Per model, the offers the solver chooses from."""

    models: list[Model]
    offers: list[list[SliceOffer]]
    before_pruning: int

    @property
    def count(self) -> int:
        return sum(len(o) for o in self.offers)


def build_offers(rp: ResolvedPlan) -> PlanOffers:
    """Every model's offers on the plan's pools, dominated ones pruned."""
    models = []
    offers = []
    raw = 0
    for k, pm in enumerate(rp.spec.models):
        try:
            mdl = load_model(pm.model)
        except InputError as e:
            raise InputError(f"models[{k}].model: {e}") from None
        models.append(mdl)
        blocks = _offer_blocks(rp.spec, k, mdl, rp.chips)
        raw += sum(len(b.rows) for b in blocks)
        # offer-level domination never compares two blocks (it stays within a pool and role),
        # so it runs on each block's columns before any SliceOffer exists
        live = [o for b in blocks for o in b.offers(k, undominated_mask(b.chips, b.rate, b.group_codes))]
        offers.append(_drop_pairs(live, rp.spec.workload(pm).prefill_servers))
    return PlanOffers(models, offers, raw)


def _dominates(rate_q: np.ndarray, size_q: np.ndarray, rate_o: np.ndarray, size_o: np.ndarray) -> np.ndarray:
    """[q, o]: offer q dominates offer o: k = ceil(rate_o / rate_q) slices of q cost no more
    than one of o (size: chips or a price; rates above 0). Integer rates (the cover problems'):
    an exact ceiling, and k * size_q never formed, so no overflow. Float rates (the offers'):
    the real-valued rates, as the offers are built."""
    if np.issubdtype(rate_q.dtype, np.integer) and np.issubdtype(rate_o.dtype, np.integer):
        k = -(-rate_o[None, :] // rate_q[:, None])
        return k <= size_o[None, :] // np.maximum(size_q[:, None], 1) + np.where(size_q[:, None] == 0, k, 0)
    return np.ceil(rate_o[None, :] / rate_q[:, None]) * size_q[:, None] <= size_o[None, :]


def undominated_mask(sizes: np.ndarray, rates: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Which of one (pool, role)'s offers no other offer of their dtype group dominates (q
    dominates o when ceil(rate_o / rate_q) slices of q hold no more chips, or cost no more,
    than one of o: `sizes`); of equals the first stays. The offers' columns in list order:
    sizes, rates above 0 (float: the offers' own; integer: the integer model's), groups.

    Of the offers of one size only the fastest (the first of equals) can stay: it dominates
    the others (k = 1), and whatever a slower one dominates, it dominates too. Two offers that
    dominate each other have the same size, so among the fastest of each size no tie is left
    and one comparison matrix over them decides."""
    c, r = np.asarray(sizes, dtype=np.int64), np.asarray(rates)
    assert (r > 0).all(), "every offer serves something"
    # by group, then size, fastest first, then list order
    order = np.lexsort((np.arange(len(c)), -r, c, groups))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (c[order[1:]] != c[order[:-1]]) | (groups[order[1:]] != groups[order[:-1]])
    best = order[first]
    cb, rb, gb = c[best], r[best], groups[best]
    beats = (gb[:, None] == gb[None, :]) & _dominates(rb, cb, rb, cb)
    np.fill_diagonal(beats, False)
    keep = np.zeros(len(c), dtype=bool)
    keep[best[~beats.any(axis=0)]] = True
    return keep


def cheapest_kept(offers: Sequence[SliceOffer], ks: Sequence[int], weight: dict[int, int]) -> list[int]:
    """Of the offers ks (indices; integer rates above 0), those no other offer of the same role
    and dtype pair makes cheaper at the prices `weight` per slice, any pool (q beats o when
    ceil(rate_o / rate_q) slices of q cost no more than one of o, integer rates): where quotas
    are left out, as in the cheapest deployments and the cover cuts' bounds, dropping the
    others changes no optimum (replace each dropped slice by those slices: no dearer, no less
    capacity)."""
    if len(ks) < 2:
        return list(ks)
    codes = {key: i for i, key in enumerate(dict.fromkeys((offers[k].role, offers[k].group) for k in ks))}
    keep = undominated_mask(
        np.array([weight[k] for k in ks], dtype=np.int64),
        np.array([offers[k].rate_int for k in ks], dtype=np.int64),
        np.array([codes[offers[k].role, offers[k].group] for k in ks]),
    )
    return [k for k, kept in zip(ks, keep.tolist()) if kept]


def _group_dominated(mine: np.ndarray, theirs: np.ndarray) -> bool:
    """Every offer of `mine` is dominated by one of `theirs` in its pool (rows: pool, slice
    chips, rate)."""
    if not mine.shape[1]:
        return True
    if not theirs.shape[1]:
        return False
    (pool_o, chips_o, rate_o), (pool_q, chips_q, rate_q) = mine, theirs
    beats = (pool_q[:, None] == pool_o[None, :]) & _dominates(rate_q, chips_q, rate_o, chips_o)
    return bool(beats.any(axis=0).all())


def _drop_pairs(live: Sequence[SliceOffer], with_prefill: bool) -> list[SliceOffer]:
    """Of one model's undominated offers, drop the dtype pairs another pair dominates and,
    with prefill servers, those without both decode and prefill offers."""
    if with_prefill:
        both = {o.group for o in live if o.role == "decode"} & {o.group for o in live if o.role == "prefill"}
        live = [o for o in live if o.group in both]
    groups = list(dict.fromkeys(o.group for o in live))
    roles = ("decode", "prefill")
    columns = {
        (g, role): np.array([(o.pool, o.chips, o.rate) for o in live if o.group == g and o.role == role])
        .reshape(-1, 3)
        .T
        for g in groups
        for role in roles
    }

    def dominated(g: str, by: str) -> bool:
        return all(_group_dominated(columns[g, role], columns[by, role]) for role in roles)

    alive = set(groups)
    for g in groups:
        if any(h != g and h in alive and dominated(g, h) for h in groups):
            alive.discard(g)
    return [o for o in live if o.group in alive]


def cheapest_cover(
    q: int, items: Sequence[tuple[int, int]], node_limit: int = 20000
) -> tuple[int, dict[int, int], bool]:
    """min sum w_k n_k subject to sum r_k n_k >= q over integers n_k >= 0, for items (w_k, r_k)
    with r_k > 0: depth-first branch and bound, items by cost per unit of rate.

    Returns (cost, counts by item index, proven). When the node limit stops the search early,
    cost is the LP bound (a lower bound, proven=False) and counts the best cover found."""
    if q <= 0:
        return 0, {}, True
    order = sorted(range(len(items)), key=lambda k: (items[k][0] / items[k][1], k))
    best_cost = math.inf
    best: dict[int, int] = {}
    counts: dict[int, int] = {}
    nodes = 0

    def search(pos: int, left: int, cost: int) -> None:
        nonlocal best_cost, best, nodes
        nodes += 1
        if left <= 0:
            if cost < best_cost:
                best_cost, best = cost, {k: n for k, n in counts.items() if n}
            return
        if pos == len(order) or nodes > node_limit:
            return
        w, r = items[order[pos]]
        if cost + math.ceil(left * w / r) >= best_cost:  # the LP bound from here on
            return
        for n in range(-(-left // r), -1, -1):
            counts[order[pos]] = n
            search(pos + 1, left - n * r, cost + n * w)
        counts[order[pos]] = 0

    search(0, q, 0)
    if nodes > node_limit:
        w, r = items[order[0]]
        return math.ceil(q * w / r), best, False
    return int(best_cost), best, True


def cover_lower_bound(
    offers: Sequence[SliceOffer], q: int, live: Sequence[int], weight: dict[int, int], with_prefill: bool
) -> int:
    """A lower bound on what serving q micro-QPS costs (priced by `weight`), valid when the load
    may be split over dtype pairs: any plan's decode slices, over all pairs, cover q, and so do
    its prefill slices; so the cheapest decode cover plus the cheapest prefill cover, each over
    every pair's offers, costs no more than any plan."""
    total = 0
    for role in ("decode", "prefill") if with_prefill else ("decode",):
        ks = [k for k in live if offers[k].role == role and offers[k].rate_int > 0]
        if not ks:
            return 0
        cost, _, _ = cheapest_cover(q, [(weight[k], offers[k].rate_int) for k in ks])
        total += cost
    return total


def cheapest_deployment(
    offers: Sequence[SliceOffer], q: int, live: Sequence[int], weight: dict[int, int], with_prefill: bool
) -> tuple[int, dict[int, int]]:
    """The cheapest integer deployment serving q micro-QPS from the offers `live` (indices),
    priced by `weight` per slice: per dtype pair the cheapest decode cover plus (with prefill
    servers) the cheapest prefill cover, the best pair. Returns (cost, or a lower bound on it
    where the search stopped early; slices per offer index of the best deployment found)."""
    best: tuple[int, dict[int, int]] | None = None
    for g in sorted({offers[k].group for k in live}):
        total: int | None = 0
        chosen: dict[int, int] = {}
        for role in ("decode", "prefill") if with_prefill else ("decode",):
            ks = [k for k in live if offers[k].group == g and offers[k].role == role and offers[k].rate_int > 0]
            if not ks:
                total = None
                break
            cost, counts, _ = cheapest_cover(q, [(weight[k], offers[k].rate_int) for k in ks])
            total = (total or 0) + cost
            chosen.update({ks[i]: n for i, n in counts.items()})
        if total is not None and (best is None or total < best[0]):
            best = (total, chosen)
    return best if best is not None else (0, {})


def cheapest_split(
    offers: Sequence[SliceOffer],
    qps: float,
    live: Sequence[int],
    weight: dict[int, int],
    with_prefill: bool,
    hint: dict[int, int],
    time_limit_s: float,
    deterministic_limit: float = 2.0,
) -> tuple[int, dict[int, int]]:
    """The cheapest integer deployment of one model's load `qps` (priced by `weight` per
    slice) when the load may be split over dtype pairs: the plan's own demand rows
    (constraints.demand, the same integer rates and demand) over the offers `live`, quotas and
    other models left out, solved by a small CP-SAT model (one worker, seed 0, `hint`: slices
    per offer index of a deployment to start from). Returns (a proven lower bound on the cost
    of every such deployment: the optimum when the solve ends optimal, else CP-SAT's bound;
    slices per offer index of the best deployment found, {} if none). Every plan's slices of
    this model and period are such a deployment (their variables' domains lie within this
    model's), so a cut `cost of those slices >= the bound` is valid."""
    model = cp_model.CpModel()
    q = demand_int(qps)
    # the offers no other makes cheaper, and the hint's (dropping the rest changes no optimum)
    ks = [k for k in live if offers[k].rate_int > 0]
    kept = set(cheapest_kept(offers, ks, weight)) | set(hint)
    ks = [k for k in ks if k in kept]
    n = {k: model.new_int_var(0, -(-q // offers[k].rate_int), f"n[{k}]") for k in ks}
    dks = [k for k in ks if offers[k].role == "decode"]
    pks = [k for k in ks if offers[k].role == "prefill"]
    if not dks or (with_prefill and not pks):
        return 0, {}
    decode, prefills = [offers[k] for k in dks], [offers[k] for k in pks]
    routed = demand.add(model, qps, decode, [n[k] for k in dks], prefills, [n[k] for k in pks], with_prefill)
    model.minimize(cp_model.LinearExpr.weighted_sum([n[k] for k in ks], [weight[k] for k in ks]))
    groups = {offers[k].group for k in hint}
    if len(groups) == 1 and set(hint) <= set(ks):
        for k in ks:
            model.add_hint(n[k], hint.get(k, 0))
        for g, var in routed.items():
            model.add_hint(var, q if g in groups else 0)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.linearization_level = 2
    # a small model: presolve and symmetry detection cost more than they save; the core-based
    # search proved these covers about twice as fast as the default one (same bounds)
    solver.parameters.cp_model_presolve = False
    solver.parameters.symmetry_level = 0
    solver.parameters.optimize_with_core = True
    solver.parameters.max_deterministic_time = deterministic_limit
    solver.parameters.max_time_in_seconds = max(time_limit_s, 1e-3)
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return 0, {}
    found = {k: solver.value(v) for k, v in n.items() if solver.value(v)}
    if status == cp_model.OPTIMAL:
        return round(solver.objective_value), found
    bound = solver.best_objective_bound
    return (max(0, math.ceil(bound - 1e-6)) if math.isfinite(bound) else 0), found
