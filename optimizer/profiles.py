"""How a workload is costed: the profile value every command passes next to its Workload.

`Book()` is the chapter's roofline (docs/cost-model.md), exact and a lower bound; prefill
runs at a stated MFU. `Calibrated(params, engine)` is the same structure with the terms
fitted to measured serving (docs/calibrated-profile.md), its parameters already parsed.
`resolve_profile` turns the command-line or file spelling (`--profile`, `--engine`,
`--calibration`, `--prefill-mfu`) into one of them, once, at the boundary.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from optimizer.calibrated import CalibratedParams, builtin_params, calibrated_roofline, load_params, profile_notes
from optimizer.catalog import Chip
from optimizer.costmodel import Layout, Roofline, book_roofline
from optimizer.errors import InputError, check_choice, check_positive_number
from optimizer.models import Model
from optimizer.workload import Workload

#: Cost models: the chapter's roofline, or the roofline with the terms fitted to measured serving.
PROFILES = ("book", "calibrated")
DEFAULT_PREFILL_MFU = 0.4
#: Below 1% of peak a prefill MFU describes no real deployment (and yields meaningless answers).
MIN_PREFILL_MFU = 0.01


def _check_mfu(mfu: float) -> None:
    check_positive_number("prefill_mfu (--prefill-mfu)", mfu, at_most=1.0)
    if mfu < MIN_PREFILL_MFU:
        raise InputError(f"prefill_mfu (--prefill-mfu) must be at least {MIN_PREFILL_MFU:g}, got {mfu!r}")


@dataclass(frozen=True)
class Book:
    """The chapter's roofline; prefill at `prefill_mfu` of the bf16 peak (the chapter: 40%).
    `engine` (launch: the engine to start) only narrows the candidates to what it can run: the
    book's times name no engine."""

    prefill_mfu: float = DEFAULT_PREFILL_MFU
    engine: str | None = None
    name: ClassVar[str] = "book"

    @property
    def engine_name(self) -> str | None:
        return self.engine

    def __post_init__(self) -> None:
        _check_mfu(self.prefill_mfu)

    def cost_terms(self, model: Model, workload: Workload, layout: Layout) -> Roofline:
        return book_roofline(model, workload, layout, self.prefill_mfu)

    def breakdown_ms(self, cost: Roofline, row: int, batch: int) -> dict[str, float]:
        """The step's terms in ms at the batch (a mixture of experts adds the experts its batch
        reads and, per MoE layer, the all-to-all and expert all-reduce time: the comms family's
        collectives, not part of the book's step). A pipeline adds its stage boundaries over the
        scale-out network (`pipeline`, optimizer.multinode), and its terms are at max(B, pp)."""
        b = float(cost.effective_batch(batch, np.array([row]))[0])
        out = {
            "params": float(cost.params_s[row] * 1e3),
            "kv": float(cost.kv_s_per_seq[row] * b * 1e3),
            "flops": float(cost.flops_s_per_seq[row] * b * 1e3),
        }
        if cost.experts_s[row] > 0:
            out["experts"] = float(cost.experts_read_s(batch, np.array([row]))[0] * 1e3)
            out["moe_collectives_per_layer"] = float(cost.ici_s_per_seq[row] * b * 1e3)
        if cost.stages[row] > 1:
            out["pipeline"] = float((cost.boundary_s[row] + cost.boundary_s_per_seq[row] * b) * 1e3)
        return out

    def critical_batch(self, cost: Roofline, row: int) -> float | None:
        """C*b_w/(2*W_hbm): where the step turns compute-bound (a mixture of experts: the first
        batch whose FLOPs outlast the weights it reads, touched experts included)."""
        if cost.experts_s[row] > 0:
            b = np.arange(1, 2**20, dtype=float)
            over = cost.flops_s_per_seq[row] * b >= cost.params_s[row] + cost.experts_read_s(b, np.full(len(b), row))
            return float(b[np.argmax(over)]) if over.any() else None
        return float(cost.critical_batch[row])

    def notes(self, prompts: bool, chip_names: set[str]) -> list[str]:
        return []

    def uncertainty(self) -> dict[str, float] | None:
        """The book is a lower bound, not an estimate: it has no band."""
        return None

    def assumed(self, chip_names: Iterable[str]) -> list[str]:
        """The book's parameters are the datasheets': nothing is a prior."""
        return []

    def extrapolated(self, *batches: int) -> list[str]:
        """The book is a bound at any batch: nothing to say."""
        return []

    def runs(self, model: Model, chip: Chip, weights: str, kv: str) -> bool:
        """Without an engine every configuration is a candidate; with one, what it can run."""
        return self.engine is None or engine_runs(self.engine, model.name, chip, weights, kv)

    def check_runs(self, model: Model, chip: Chip, weights: str, kv: str) -> None:
        """InputError with the engine's reason where runs() is False (a fixed configuration)."""
        if self.engine is not None:
            check_engine_runs(self.engine, model.name, chip, weights, kv)


@dataclass(frozen=True)
class Calibrated:
    """The roofline fitted to measured serving, for one serving engine (None: the
    parameters' default engine)."""

    params: CalibratedParams = field(default_factory=builtin_params)
    engine: str | None = None
    name: ClassVar[str] = "calibrated"

    def __post_init__(self) -> None:
        if self.engine is not None and self.engine not in self.params.engine_names():
            raise InputError(
                f"unknown engine {self.engine!r}; calibrated engines: {', '.join(self.params.engine_names())}"
            )

    @property
    def engine_name(self) -> str:
        return self.engine or self.params.default_engine

    def cost_terms(self, model: Model, workload: Workload, layout: Layout) -> Roofline:
        book = book_roofline(model, workload, layout, DEFAULT_PREFILL_MFU)
        return calibrated_roofline(book, model, workload, self.params, self.engine_name, layout)

    def breakdown_ms(self, cost: Roofline, row: int, batch: int) -> dict[str, float]:
        """The book's terms plus the fitted overheads and collectives, in ms at the batch."""
        out = Book().breakdown_ms(cost, row, batch)
        b = float(cost.effective_batch(batch, np.array([row]))[0])
        boundaries = out.get("pipeline", 0.0)
        out["overheads_and_collectives"] = (
            float((cost.fixed_s[row] + cost.overhead_s_per_seq[row] * b) * 1e3) - boundaries
        )
        return out

    def critical_batch(self, cost: Roofline, row: int) -> float | None:
        """Where B*T_flops1 = T_params + B*kv_in (None: the step never turns compute-bound)."""
        _, kv_in = cost.slopes()
        gain = float(cost.flops_s_per_seq[row] - kv_in[row])
        return float(cost.params_s[row]) / gain if gain > 0 else None

    def notes(self, prompts: bool, chip_names: set[str]) -> list[str]:
        return profile_notes(self.params, self.engine_name, prompts, chip_names)

    def runs(self, model: Model, chip: Chip, weights: str, kv: str) -> bool:
        """Whether the engine runs these weights and this KV cache on the chip (its flag table in
        optimizer/launch/data: the chip families it serves, the weight formats it loads, online
        or from a pre-quantized checkpoint of the model, and its KV-cache dtypes): the search
        never proposes a configuration the engine cannot run."""
        return engine_runs(self.engine_name, model.name, chip, weights, kv)

    def check_runs(self, model: Model, chip: Chip, weights: str, kv: str) -> None:
        """InputError with the engine's reason where runs() is False (a fixed configuration)."""
        check_engine_runs(self.engine_name, model.name, chip, weights, kv)

    def assumed(self, chip_names: Iterable[str]) -> list[str]:
        """The parameters behind these chips' answers that are priors, not fitted (in words)."""
        return self.params.assumed(chip_names, self.engine_name)

    def extrapolated(self, *batches: int) -> list[str]:
        """A note when a batch is past the largest concurrency the engine's runs measured."""
        largest = self.params.largest_measured_batch(self.engine_name)
        past = [b for b in batches if largest is not None and b > largest]
        if not past:
            return []
        which = f"batch {past[0]} is" if len(past) == 1 else f"batches {', '.join(map(str, past))} are"
        return [
            f"{which} past the largest concurrency the {self.engine_name} runs of the fit measured "
            f"({largest}): the calibrated step there is extrapolated, not measured"
        ]

    def uncertainty(self) -> dict[str, float] | None:
        """Each prediction's band (%): the leave-one-model-out mean absolute error of the fit."""
        p = self.params
        if p.tpot_band_pct is None or p.ttft_band_pct is None:
            return None
        return {"step_pct": p.tpot_band_pct, "ttft_pct": p.ttft_band_pct}


@functools.cache
def engine_runs(engine: str, model: str, chip: Chip, weights: str, kv: str) -> bool:
    try:
        check_engine_runs(engine, model, chip, weights, kv)
    except InputError:
        return False
    return True


def check_engine_runs(engine: str, model: str, chip: Chip, weights: str, kv: str) -> None:
    """InputError with the reason and what the engine does run when it cannot run these weights
    and this KV cache on the chip (its flag table: chip families, weight formats, KV dtypes),
    worded for one given configuration."""
    from optimizer.launch.engines import ENGINES, EngineRefusal, check_runs, load_engine

    if engine not in ENGINES:  # an engine of a user's parameter file that servesat has no flag table for
        return
    try:
        check_runs(load_engine(engine), chip, weights, kv, model)
    except EngineRefusal as e:
        raise InputError(e.fixed) from None


def engine_refusal(engine: str, chip: Chip) -> str:
    """Why the engine serves no candidate on the chip: its chip family, or the asked dtypes."""
    from optimizer.launch.engines import ENGINES, load_engine, serves

    spec = load_engine(engine) if engine in ENGINES else None
    if spec is not None and not serves(spec, chip):
        return f"the {engine} engine does not serve {chip.name}: it runs on {', '.join(spec.families)} chips"
    return (
        f"the {engine} engine runs none of the asked weight and KV dtypes on {chip.name} "
        "(its flag table: docs/launch.md)"
    )


Profile = Book | Calibrated
#: What a command runs on when no profile is named.
DEFAULT_PROFILE: Profile = Book()


def resolve_profile(
    name: str = "book",
    *,
    engine: str | None = None,
    calibration: str | Path | None = None,
    prefill_mfu: float | None = None,
) -> Profile:
    """The profile a command or file asked for; InputError names what does not fit."""
    check_choice("profile", name, PROFILES)
    if prefill_mfu is not None:
        _check_mfu(prefill_mfu)
    if name == "book":
        if engine is not None or calibration is not None:
            raise InputError("--engine and --calibration apply to --profile calibrated only")
        return Book() if prefill_mfu is None else Book(prefill_mfu)
    if prefill_mfu is not None:
        raise InputError(
            "--prefill-mfu applies to the book profile; the calibrated profile prefills at its fitted rate"
        )
    return Calibrated(load_params(calibration), engine)
