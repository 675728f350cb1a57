"""Procurement-plan input: models with demand forecasts, chip pools with quotas and price
tiers, and plan-wide options. Frozen dataclasses, built in Python or read from a plan file
(optimizer.planning.plan_file.load_plan).

A PlanSpec validates itself and everything in it on construction (InputError, a ValueError,
naming the field: `models[1].slo_ms`, `pools[0].commitments[2].discount`): each PlanModel,
Pool and Commitment checks its own fields when the PlanSpec that holds it (and so knows its
place) is built. The pools' chips and shapes are checked against the catalog by `resolve`.

The cost model of the offers is read here only: PlanModel.workload (what is served),
PlanSpec.cost_profile (how it is costed: the plan's profile, resolved once) and
PlanSpec.candidate_table (the plan's one call into the candidate tables).

Units: demand in queries per second per period; prices in USD per chip-hour; a period lasts
`period_hours` (730: a month); a commitment's term is a whole number of periods.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from optimizer import scaling
from optimizer.candidates import CandidateTable, build_table
from optimizer.catalog import COMMITMENT_TIERS, DTYPES, Chip, check_priced, load_chips
from optimizer.errors import InputError, check_choice, is_number, unknown_name
from optimizer.models import Model
from optimizer.multinode import multi_node_count
from optimizer.profiles import PROFILES, Book, Calibrated, Profile, resolve_profile
from optimizer.workload import SERVING, Workload

#: How a commitment whose term runs past the plan's last period is charged: every period of
#: its term ("full-term", the money the decision commits), or only the plan's periods
#: ("horizon", as if the capacity after the horizon will be worth its price).
COMMITMENT_ACCOUNTING = ("full-term", "horizon")
MAX_PERIODS = 120
#: A period lasts at most a (leap) year.
MAX_PERIOD_HOURS = 8784.0
#: A commitment's term is at most ten times the longest plan.
MAX_TERM_PERIODS = 10 * MAX_PERIODS
#: Chips a pool may hold in a period, and a period's budget: far above any real fleet, and low
#: enough that a plan's micro-dollar bill stays inside the solver's 64-bit integers.
MAX_QUOTA_CHIPS = 1_000_000
MAX_BUDGET_USD = 1e12
#: The largest bill (micro-dollars) the integer model holds exactly.
MAX_BILL_INT = 2**62
#: Largest forecast a plan represents (micro-QPS and micro-dollar sums stay inside int64).
MAX_PLAN_QPS = 1e6
Dtypes = tuple[str, ...] | None  # dtype names; None: each chip's defaults


def _is_integer(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)


def _number(where: str, value: Any, *, positive: bool = False) -> None:
    """A finite number (not a bool), above zero with `positive`."""
    ok = is_number(value) and (not positive or value > 0)
    _require(ok, f"{where} must be a {'positive ' if positive else ''}number, got {value!r}")


def _string(where: str, value: Any, *, what: str = "a string", empty: bool = True) -> None:
    _require(isinstance(value, str) and (empty or bool(value)), f"{where} must be {what}, got {value!r}")


def _per_period(
    where: str, value: Any, periods: int, *, integer: bool = False, positive: bool = False, at_most: float = math.inf
) -> tuple:
    """One value (every period) or a list of exactly `periods` values, each at most `at_most`."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * periods
    if len(values) != periods:
        raise InputError(
            f"{where} has {len(values)} values but the plan has {periods} periods (give one value, or one per period)"
        )
    kind = "integer" if integer else "number"
    for k, v in enumerate(values):
        at = f"{where}[{k}]" if isinstance(value, (list, tuple)) else where
        if not is_number(v) or (integer and not float(v).is_integer()):
            raise InputError(f"{at} must be a {'positive ' if positive else ''}{kind}, got {v!r}")
        if v < 0 or (positive and v == 0):
            raise InputError(f"{at} must be {'positive' if positive else 'zero or more'}, got {v!r}")
        if v > at_most:
            raise InputError(f"{at} must be at most {at_most:g}, got {v!r}")
    return tuple(int(v) if integer else float(v) for v in values)


@dataclass(frozen=True)
class PlanModel:
    """One served model: its forecast and its targets. `model` is a catalog name or a
    config.json path; `name` labels it in the plan (default: `model`)."""

    model: str
    demand_qps: tuple[float, ...] | float
    slo_ms: float
    name: str = ""
    ttft_ms: float | None = None
    context: int = 8192
    decode_len: int = 512
    prompt_len: int | None = None
    prefill_mfu: float | None = None  # book profile: this model's prefill MFU (None: the profile's)
    serving: str = "disaggregated"
    weights: Dtypes = None
    kv: Dtypes = None

    def workload(self) -> Workload:
        return Workload(
            context=self.context,
            decode_len=self.decode_len,
            slo_ms=self.slo_ms,
            prompt_len=self.prompt_len,
            ttft_ms=self.ttft_ms,
            serving=self.serving,
        )

    @property
    def label(self) -> str:
        return self.name or str(self.model)

    def check(self, where: str) -> None:
        """Validate the entry's own fields (InputError naming `where`.field)."""
        _string(f"{where}.model", self.model, what="a non-empty string", empty=False)
        _string(f"{where}.name", self.name, what="a non-empty string")
        _number(f"{where}.slo_ms", self.slo_ms, positive=True)
        check_choice(f"{where}.serving", self.serving, SERVING)
        for kind, values in (("weights", self.weights), ("kv", self.kv)):
            for v in values or ():
                check_choice(f"{where}.{kind} dtype", v, DTYPES)


@dataclass(frozen=True)
class Commitment:
    """A committed-use tier: `discount` off the on-demand price, paid for every chip every
    period of the term, used or not. `Commitment.from_catalog` makes the catalog's 1-year or
    3-year tier of a chip (as a plan file does when a tier gives neither term nor discount)."""

    name: str
    term_periods: int
    discount: float

    @classmethod
    def from_catalog(
        cls, tier: str, chip: Chip, period_hours: float = 730.0, usd_per_chip_hour: float | None = None
    ) -> Commitment:
        """The chip's `tier` ("1-year" or "3-year") at its catalog price: discount 1 - committed
        / on-demand (`usd_per_chip_hour`, default the catalog's), term the tier's hours (365-day
        years) in periods of `period_hours`, which must divide it. InputError if the catalog
        has no price for the tier."""
        check_choice("commitment tier from the catalog", tier, list(COMMITMENT_TIERS))
        committed = chip.committed_usd(tier)
        on_demand = chip.usd_per_chip_hour if usd_per_chip_hour is None else usd_per_chip_hour
        if committed <= 0:
            raise InputError(
                f"the catalog has no {tier} price for {chip.name} (none published; see servesat chips): "
                "give the tier's term_periods and discount"
            )
        if on_demand <= 0 or committed > on_demand:
            raise InputError(
                f"the {tier} price of {chip.name} (${committed:g}) is not below its on-demand price "
                f"(${on_demand:g}): give the tier's discount"
            )
        periods = COMMITMENT_TIERS[tier] / period_hours
        if not is_number(periods) or abs(periods - round(periods)) > 1e-9 or round(periods) < 1:
            raise InputError(
                f"a {tier} term ({COMMITMENT_TIERS[tier]:g} hours) is not a whole number of {period_hours:g}-hour "
                "periods: give the tier's term_periods and discount"
            )
        return cls(tier, round(periods), 1.0 - committed / on_demand)

    def check(self, where: str, names: list[str]) -> None:
        """Validate (InputError naming `where`.field); `names`: every tier name of the pool."""
        _require(
            bool(self.name) and names.count(self.name) == 1,
            f"{where}.name must be a unique non-empty name, got {self.name!r}",
        )
        _require(
            _is_integer(self.term_periods) and 1 <= self.term_periods <= MAX_TERM_PERIODS,
            f"{where}.term_periods must be an integer from 1 to {MAX_TERM_PERIODS}, got {self.term_periods!r}",
        )
        _require(
            is_number(self.discount) and 0 <= self.discount < 1,
            f"{where}.discount must be a fraction from 0 to below 1 (0.37 for 37%), got {self.discount!r}",
        )


@dataclass(frozen=True)
class Pool:
    """Chips of one type the plan may use: at most `quota_chips` held in a period (one number
    or one per period), on demand and/or under commitments, in the listed slice shapes."""

    chip: str
    quota_chips: tuple[int, ...] | int
    name: str = ""
    shapes: tuple[str, ...] | None = None  # None: every slice of the chip
    usd_per_chip_hour: float | None = None  # None: the catalog's on-demand price
    on_demand: bool = True
    commitments: tuple[Commitment, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.chip

    def check(self, where: str, periods: int) -> None:
        """Validate the pool's own fields (InputError naming `where`.field); its chip and
        shapes against the catalog are checked by `chip_in`."""
        for key in ("chip", "name"):
            _string(f"{where}.{key}", getattr(self, key))
        _per_period(
            f"{where}.quota_chips", self.quota_chips, periods, integer=True, positive=True, at_most=MAX_QUOTA_CHIPS
        )
        if self.shapes is not None and not self.shapes:
            raise InputError(f"{where}.shapes is empty; leave it out for every slice of {self.chip}")
        if self.usd_per_chip_hour is not None:
            _number(f"{where}.usd_per_chip_hour", self.usd_per_chip_hour, positive=True)
        _require(isinstance(self.on_demand, bool), f"{where}.on_demand must be true or false, got {self.on_demand!r}")
        _require(
            isinstance(self.commitments, (tuple, list)), f"{where}.commitments must be a list, got {self.commitments!r}"
        )
        _require(
            self.on_demand or bool(self.commitments),
            f"{where} allows neither on-demand chips nor any commitment: nothing can be used",
        )
        names = [c.name for c in self.commitments]
        for j, c in enumerate(self.commitments):
            c.check(f"{where}.commitments[{j}]", names)

    def chip_in(self, where: str, catalog: dict[str, Chip]) -> Chip:
        """The catalog chip with the pool's shapes and price."""
        chip = catalog.get(self.chip) or getattr(catalog, "unpriced", {}).get(self.chip)
        if chip is None:
            raise unknown_name(f"chip in {where}.chip", str(self.chip), sorted(catalog))
        if self.shapes is not None:
            # one node's slices, and replicas over several nodes named by their GPU count (optimizer.multinode)
            nodes = {s: multi_node_count(chip, s) for s in self.shapes if s not in chip.topologies}
            n = chip.scale_up_domain
            more = f", or {2 * n}, {4 * n}, ... (replicas over 2, 4, ... nodes)" if chip.multi_node else ""
            for s in self.shapes:
                _require(
                    isinstance(s, str) and (s in chip.topologies or bool(nodes.get(s))),
                    f"{where}.shapes: {s!r} is not a {chip.name} slice; valid: {', '.join(chip.topologies)}{more}",
                )
            single = tuple(dict.fromkeys(s for s in self.shapes if s in chip.topologies))
            chip = replace(chip, topologies=single, node_counts=tuple(sorted(set(nodes.values()))))
        if self.usd_per_chip_hour is not None:
            chip = replace(chip, usd_per_chip_hour=float(self.usd_per_chip_hour))
        try:
            check_priced(chip)
        except InputError as e:
            raise InputError(f"{where}: {e}; or set {where}.usd_per_chip_hour") from None
        return chip


@dataclass(frozen=True)
class PlanSpec:
    models: tuple[PlanModel, ...]
    pools: tuple[Pool, ...]
    periods: int = 1
    period_hours: float = 730.0
    headroom: float = 0.0  # serve (1 + headroom) x the forecast
    budget_per_period: tuple[float, ...] | float | None = None  # USD
    share_slices: bool = False
    commitment_accounting: str = "full-term"
    period_name: str = "month"
    # The cost model of every model's offers: "book" or "calibrated" (with engine and
    # calibration, as in a plan file), or a profile value (Book(), Calibrated(params, engine)).
    profile: str | Profile = "book"
    engine: str | None = None  # calibrated profile by name: the serving engine
    calibration: str | None = None  # calibrated profile by name: a parameter file

    def __post_init__(self) -> None:
        self._check_options()
        self._check_models()
        labels = [q.label for q in self.pools]
        for k, pool in enumerate(self.pools):
            pool.check(f"pools[{k}]", self.periods)
            _require(
                labels.count(pool.label) == 1,
                f"pools[{k}]: name {pool.label!r} is used twice; give each pool its own name",
            )
        if self.budget_per_period is not None:
            _per_period(
                "budget_per_period", self.budget_per_period, self.periods, positive=True, at_most=MAX_BUDGET_USD
            )

    def _check_options(self) -> None:
        p = self.periods
        _require(
            _is_integer(p) and 1 <= p <= MAX_PERIODS, f"periods must be an integer from 1 to {MAX_PERIODS}, got {p!r}"
        )
        _number("period_hours", self.period_hours, positive=True)
        _require(
            self.period_hours <= MAX_PERIOD_HOURS,
            f"period_hours must be at most {MAX_PERIOD_HOURS:g} (a year), got {self.period_hours!r}",
        )
        _require(
            is_number(self.headroom) and self.headroom >= 0,
            f"headroom must be a number >= 0 (0.2 for 20%), got {self.headroom!r}",
        )
        check_choice("commitment_accounting", self.commitment_accounting, COMMITMENT_ACCOUNTING)
        if isinstance(self.profile, (Book, Calibrated)):
            _require(
                self.engine is None and self.calibration is None,
                "engine and calibration name a calibrated profile; a profile value carries its own",
            )
        else:
            check_choice("profile", self.profile, PROFILES)
        _require(
            not self.share_slices,
            "share_slices = true is not supported: each slice serves one model "
            "(several models per slice needs a shared-HBM cost model servesat does not have)",
        )
        _string("period_name", self.period_name, what="a non-empty string", empty=False)
        _require(
            self.calibration is None or isinstance(self.calibration, str),
            f"calibration must be a file path, got {self.calibration!r}",
        )
        _require(bool(self.models), "the plan has no models: add at least one [[models]] entry")
        _require(bool(self.pools), "the plan has no pools: add at least one [[pools]] entry")

    def _check_models(self) -> None:
        labels = [m.label for m in self.models]
        for k, m in enumerate(self.models):
            where = f"models[{k}]"
            m.check(where)
            _require(
                labels.count(m.label) == 1,
                f"{where}: name {m.label!r} is used twice; give each model entry its own name",
            )
            try:
                self.workload(m)
                self.cost_profile(m)
            except InputError as e:
                raise InputError(f"{where}: {e}") from None
            demand = _per_period(f"{where}.demand_qps", m.demand_qps, self.periods)
            for t, d in enumerate(demand):
                _require(
                    d * (1 + self.headroom) <= MAX_PLAN_QPS,
                    f"{where}.demand_qps[{t}] with headroom is above {MAX_PLAN_QPS:g} queries/s, "
                    "beyond what the plan's integers represent exactly",
                )

    # The cost model, in one place.

    def workload(self, m: PlanModel) -> Workload:
        return m.workload()

    @cached_property
    def base_profile(self) -> Profile:
        """The plan's cost profile, resolved once (a calibration file is read here)."""
        if isinstance(self.profile, (Book, Calibrated)):
            return self.profile
        return resolve_profile(self.profile, engine=self.engine, calibration=self.calibration)

    def cost_profile(self, m: PlanModel) -> Profile:
        """How model `m`'s offers are costed: the plan's profile, with the model's own prefill
        MFU under the book profile (the calibrated profile prefills at its fitted rate)."""
        base = self.base_profile
        if isinstance(base, Book) and m.prefill_mfu is not None:
            return Book(m.prefill_mfu)
        return base

    @cached_property
    def _tables(self) -> dict[tuple, CandidateTable]:
        return {}

    def candidate_table(self, m: PlanModel, model: Model, chips: Sequence[Chip]) -> CandidateTable:
        """Model `m`'s candidates on `chips`, costed as this plan says. Entries that differ only
        in their targets and demand (the same model at two latency targets) share one table:
        the targets constrain the candidates, they do not cost them."""
        key = (model, m.context, m.decode_len, m.prompt_len, m.serving, m.prefill_mfu, m.weights, m.kv, tuple(chips))
        if key not in self._tables:
            self._tables[key] = build_table(
                model, {c.name: c for c in chips}, m.workload(), self.cost_profile(m), m.weights, m.kv
            )
        return self._tables[key]

    def with_profile(self, profile: str | None, engine: str | None, calibration: str | None) -> PlanSpec:
        """This plan with its cost model overridden where an argument is given (the command
        line's --profile, --engine, --calibration over the plan file's)."""
        if profile is None and engine is None and calibration is None:
            return self
        named = self.profile if isinstance(self.profile, str) else self.profile.name
        return replace(
            self,
            profile=profile or named,
            engine=engine or self.engine,
            calibration=calibration or self.calibration,
        )

    def profile_notes(self, chip_names: set[str]) -> list[str]:
        """What the report says about the cost model (nothing for the book profile)."""
        return self.base_profile.notes(any(m.serving != "decode-only" for m in self.models), chip_names)


@dataclass(frozen=True)
class ResolvedPlan:
    """A validated PlanSpec with per-period values expanded and the pools' chips resolved."""

    spec: PlanSpec
    demand: tuple[tuple[float, ...], ...]  # [model][period], QPS, forecast
    quota: tuple[tuple[int, ...], ...]  # [pool][period], chips
    budget: tuple[float, ...] | None
    chips: tuple[Chip, ...]  # per pool: the catalog chip with the pool's shapes and price

    @property
    def periods(self) -> int:
        return self.spec.periods

    @cached_property
    def required_qps(self) -> list[list[float]]:
        """The forecast times (1 + headroom), per model and period."""
        return [[d * (1.0 + self.spec.headroom) for d in row] for row in self.demand]

    @cached_property
    def prefill_servers(self) -> list[bool]:
        """Per model: whether its prompts run on separate prefill servers."""
        return [self.spec.workload(m).prefill_servers for m in self.spec.models]

    def charged_periods(self, start: int, term: int) -> int:
        """Periods of a commitment's term the plan's total counts (see COMMITMENT_ACCOUNTING)."""
        return term if self.spec.commitment_accounting == "full-term" else min(term, self.periods - start)


def resolve(spec: PlanSpec, catalog: dict[str, Chip] | None = None) -> ResolvedPlan:
    """Per-period values expanded, the pools' chips checked against the catalog (InputError)."""
    catalog = catalog if catalog is not None else load_chips()
    p = spec.periods
    demand = tuple(_per_period(f"models[{k}].demand_qps", m.demand_qps, p) for k, m in enumerate(spec.models))
    quota = tuple(
        _per_period(f"pools[{k}].quota_chips", pool.quota_chips, p, integer=True, positive=True)
        for k, pool in enumerate(spec.pools)
    )
    chips = tuple(pool.chip_in(f"pools[{k}]", catalog) for k, pool in enumerate(spec.pools))
    budget = None
    if spec.budget_per_period is not None:
        budget = _per_period("budget_per_period", spec.budget_per_period, p, positive=True)
    _check_largest_bill(spec, quota, chips)
    return ResolvedPlan(spec=spec, demand=demand, quota=quota, budget=budget, chips=chips)


def _check_largest_bill(spec: PlanSpec, quota: tuple[tuple[int, ...], ...], chips: tuple[Chip, ...]) -> None:
    """Every pool's quota on demand in every period, and committed in full at every start for
    its whole term: a bound on any bill the model can form, which must fit its integers."""
    bound = 0
    for pool, q, chip in zip(spec.pools, quota, chips):
        unit = scaling.usd_int(chip.usd_per_chip_hour * spec.period_hours)
        terms = 1 + sum(c.term_periods for c in pool.commitments)
        bound += unit * max(q) * spec.periods * terms
    if bound > MAX_BILL_INT:
        raise InputError(
            f"the plan's largest possible bill (every pool's quota_chips at its price for {spec.periods} "
            f"period(s) of {spec.period_hours:g} hours, commitments included) is ${bound / scaling.USD_UNITS:.3g}, "
            f"beyond the ${MAX_BILL_INT / scaling.USD_UNITS:.3g} the solver's integers hold exactly: "
            "lower quota_chips or period_hours"
        )
