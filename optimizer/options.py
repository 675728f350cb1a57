"""Command-line options as click parsed them, checked and turned into the library's values
once: optimize's (and launch's, which takes the same) workload, search and profile; the
frontier options that exclude or need each other."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from optimizer.api import Search
from optimizer.catalog import load_chips, parse_prices
from optimizer.errors import InputError
from optimizer.profiles import Profile, resolve_profile
from optimizer.workload import Workload


@dataclass(frozen=True)
class OptimizeOptions:
    """optimize's options by their command-line names (the serving mode as two flags)."""

    slo_ms: float
    context: int = 8192
    decode_len: int = 512
    chip_names: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    kv: tuple[str, ...] = ()
    prompt_len: int | None = None
    prefill_mfu: float | None = None
    ttft_ms: float | None = None
    colocated: bool = False
    decode_only: bool = False
    compare_colocated: bool = False
    chips_file: str | None = None
    prices_file: str | None = None
    prices: tuple[str, ...] = ()
    profile: str = "book"
    engine: str | None = None
    calibration: str | None = None
    max_nodes: int | None = None  # None: the search's default (optimizer.multinode.DEFAULT_MAX_NODES)

    def __post_init__(self) -> None:
        if self.colocated and self.decode_only:
            raise InputError("--colocated and --decode-only exclude each other")
        if self.decode_only and (self.compare_colocated or self.prompt_len or self.prefill_mfu):
            raise InputError(
                "--decode-only ignores prompts: it cannot go with --compare-colocated, --prompt-len or --prefill-mfu"
            )

    @classmethod
    def from_options(cls, values: Mapping[str, Any]) -> OptimizeOptions:
        """From a command's parsed options (others, such as --json, are not optimize's)."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def serving(self) -> str:
        return "colocated" if self.colocated else "decode-only" if self.decode_only else "disaggregated"

    def workload(self) -> Workload:
        return Workload(
            context=self.context,
            decode_len=self.decode_len,
            slo_ms=self.slo_ms,
            prompt_len=self.prompt_len,
            ttft_ms=self.ttft_ms,
            serving=self.serving,
        )

    def search(self) -> Search:
        """The chip catalog (built-in, or --chips FILE, with --prices FILE and --price overrides),
        the chips and dtypes to search (empty: all priced chips, and each chip's defaults), the nodes
        a GPU replica may span."""
        catalog = load_chips(self.chips_file, parse_prices(self.prices), self.prices_file)
        nodes = {} if self.max_nodes is None else {"max_nodes": self.max_nodes}
        return Search(catalog, self.chip_names or None, self.weights or None, self.kv or None, **nodes)

    def cost_profile(self) -> Profile:
        return resolve_profile(
            self.profile, engine=self.engine, calibration=self.calibration, prefill_mfu=self.prefill_mfu
        )


def check_frontier_options(o: Mapping[str, Any]) -> None:
    """frontier's options that exclude or need each other (--out's suffix, --by-batch's)."""
    from optimizer.plots import PLOT_SUFFIXES

    out, by_batch, topology = o["out"], o["by_batch"], o["topology"]
    suffix = Path(out).suffix.lower() if out else None
    if suffix is not None and suffix not in (".csv", ".json", *PLOT_SUFFIXES):
        raise InputError(f"--out {out}: unknown suffix {suffix!r}; valid: .csv, .json, .png, .svg")
    if out and o["as_json"]:
        raise InputError("--json prints to the terminal; with --out the file's suffix chooses the format")
    if not by_batch and (topology is not None or o["tp"] is not None):
        raise InputError("--topology and --tp fix one configuration: they go with --by-batch")
    if by_batch and o["slo_ms"] is not None:
        raise InputError("--slo-ms marks the optimum on the frontier; --by-batch has no optimum to mark")
    if by_batch and (len(o["chip_names"]) != 1 or topology is None or len(o["weights"]) != 1 or len(o["kv"]) != 1):
        raise InputError("--by-batch needs one --chip, --topology, one --weights and one --kv")
