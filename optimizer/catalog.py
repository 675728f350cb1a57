"""Chips and models: frozen dataclasses loaded from the TOML data files or a config.json."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from optimizer.errors import InputError, check_choice, is_number, is_positive_number, unknown_name

#: Bytes per element of each dtype name servesat knows (fp4: NVFP4 or MXFP4 elements, their
#: block scales not counted, as int4's group scales are not).
DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}
DTYPES: list[str] = list(DTYPE_BYTES)
#: Activations (and the compute) stay in bf16 in the book profile.
ACTIVATION_BYTES = 2.0


@dataclass(frozen=True)
class Chip:
    """One accelerator type, with the figures the cost model reads."""

    name: str
    kind: str
    display_name: str
    bf16_flops: float
    int8_flops: float
    fp8_flops: float
    hbm_bytes: float
    hbm_bytes_per_s: float
    link_bytes_per_s: float
    links_per_axis: int
    usd_per_chip_hour: float
    weight_dtypes: tuple[str, ...]
    kv_dtypes: tuple[str, ...]
    eight_bit: str
    topologies: tuple[str, ...]
    # Keys a chips file may leave out (their defaults below), new with the 2026 catalog.
    fp4_flops: float = 0.0  # peak dense fp4 FLOP/s; 0: no fp4 tensor cores
    scale_out_bytes_per_s: float = 0.0  # NIC (or TPU DCN) bytes/s per chip, one way; 0: not known
    four_bit: str = "int4"  # the native 4-bit format searched by default: "int4" or "fp4"
    price_date: str = ""  # when the on-demand price was read (YYYY, YYYY-MM or YYYY-MM-DD)
    usd_per_chip_hour_1yr: float = 0.0  # 1-year committed price; 0: none published
    price_1yr_date: str = ""
    usd_per_chip_hour_3yr: float = 0.0  # 3-year committed price; 0: none published
    price_3yr_date: str = ""
    # Past one node (optimizer.multinode): GPUs of one NVLink domain, set when the catalog loads
    # (0: the largest GPU topology), kept when a plan pool narrows `topologies`; and the node
    # counts a replica may span (None: those the search allows; a plan pool's shapes set them).
    scale_up_gpus: int = 0
    node_counts: tuple[int, ...] | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ici_bytes_per_s_per_axis(self) -> float:
        """W_ici: interconnect bytes/s a chip moves along one model-parallel axis."""
        return self.link_bytes_per_s * self.links_per_axis

    @property
    def scale_up_domain(self) -> int:
        """GPUs of one NVLink (or Infinity Fabric) domain: the largest GPU topology (8 on an HGX or
        AMD node, 72 in an NVL72 rack); 0 for a TPU, whose slices are its domains."""
        if self.kind != "gpu":
            return 0
        return self.scale_up_gpus or max((int(t) for t in self.topologies), default=0)

    @property
    def multi_node(self) -> bool:
        """Whether replicas may span several domains: a GPU whose scale-out bandwidth is known."""
        return self.kind == "gpu" and self.scale_out_bytes_per_s > 0

    @property
    def priced(self) -> bool:
        """Whether the chip has an on-demand price (0 in the catalog: none published)."""
        return self.usd_per_chip_hour > 0

    def default_dtypes(self, options: tuple[str, ...]) -> tuple[str, ...]:
        """bf16, the chip's native 8-bit and 4-bit formats, where the chip supports them (int4
        where its 4-bit format is not among `options`: fp4 weights, int4 KV caches)."""
        four = self.four_bit if self.four_bit in options else "int4"
        return tuple(d for d in ("bf16", self.eight_bit, four) if d in options)

    def price_tiers(self) -> dict[str, dict[str, Any]]:
        """On-demand, 1-year and 3-year committed USD per chip-hour, each with its date and
        source (None where no price is published)."""
        tiers = (
            ("on-demand", self.usd_per_chip_hour, self.price_date, "price"),
            ("1-year", self.usd_per_chip_hour_1yr, self.price_1yr_date, "price_1yr"),
            ("3-year", self.usd_per_chip_hour_3yr, self.price_3yr_date, "price_3yr"),
        )
        return {
            tier: {"usd_per_chip_hour": usd or None, "date": date or None, "source": self.sources.get(key)}
            for tier, usd, date, key in tiers
        }

    def committed_usd(self, tier: str) -> float:
        """The committed price of a tier ("1-year" or "3-year"); 0 where none is published."""
        return {"1-year": self.usd_per_chip_hour_1yr, "3-year": self.usd_per_chip_hour_3yr}[tier]


#: Commitment tiers the catalog prices, and their terms in hours (365-day years).
COMMITMENT_TIERS = {"1-year": 8760.0, "3-year": 3 * 8760.0}


def check_priced(chip: Chip) -> None:
    """InputError unless the chip has an on-demand price (the optimizer prices every answer)."""
    if not chip.priced:
        raise InputError(
            f"chip {chip.name} has no on-demand price in the catalog (none published; see servesat chips): "
            f"give one with --price {chip.name}=USD or a prices file (--prices FILE)"
        )


class Catalog(dict[str, Chip]):
    """The chips the optimizer can price, by name (a dict); `unpriced` holds the catalog's
    chips that have no on-demand price (0 in the data), which --price or a prices file brings
    in. Every cost the optimizer computes divides by a price, so unpriced chips stay out."""

    def __init__(self, chips: dict[str, Chip], unpriced: dict[str, Chip] | None = None) -> None:
        super().__init__(chips)
        self.unpriced = dict(unpriced or {})


def lookup_chip(catalog: dict[str, Chip], name: str, what: str = "chip") -> Chip:
    """The named chip; InputError if it is unknown, or known but without a price (then saying
    how to give one)."""
    if name in catalog:
        return catalog[name]
    unpriced = getattr(catalog, "unpriced", {})
    if name in unpriced:
        check_priced(unpriced[name])
    raise unknown_name(what, str(name), sorted(catalog))


_CHIP_NUMBERS = (
    "bf16_flops",
    "int8_flops",
    "fp8_flops",
    "hbm_bytes",
    "hbm_bytes_per_s",
    "link_bytes_per_s",
    "links_per_axis",
    "usd_per_chip_hour",
)
#: Keys a chips file may leave out, with their defaults (a file written before they existed
#: still loads: no fp4 units, no known scale-out network, int4 as the 4-bit format, undated
#: prices, no committed prices).
_CHIP_OPTIONAL: dict[str, Any] = {
    "fp4_flops": 0.0,
    "scale_out_bytes_per_s": 0.0,
    "four_bit": "int4",
    "price_date": "",
    "usd_per_chip_hour_1yr": 0.0,
    "price_1yr_date": "",
    "usd_per_chip_hour_3yr": 0.0,
    "price_3yr_date": "",
}
_OPTIONAL_NUMBERS = ("fp4_flops", "scale_out_bytes_per_s", "usd_per_chip_hour_1yr", "usd_per_chip_hour_3yr")
#: The price keys, which a prices file (--prices FILE) may also set.
PRICE_KEYS = (
    "usd_per_chip_hour",
    "price_date",
    "usd_per_chip_hour_1yr",
    "price_1yr_date",
    "usd_per_chip_hour_3yr",
    "price_3yr_date",
)
_PRICE_SOURCE_KEYS = {
    "usd_per_chip_hour": "price",
    "usd_per_chip_hour_1yr": "price_1yr",
    "usd_per_chip_hour_3yr": "price_3yr",
}
#: Figures that must be above zero (a price of 0 means none is published: the optimizer then
#: leaves the chip out unless --price or a prices file gives one).
_CHIP_POSITIVE = (
    "bf16_flops",
    "hbm_bytes",
    "hbm_bytes_per_s",
    "link_bytes_per_s",
    "links_per_axis",
)
_DATE = re.compile(r"20[0-9]{2}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
#: Plausible ranges of each figure (units as in chips.toml): a value outside them is a typo or a
#: unit slip, and would give meaningless (or non-finite) answers downstream. Prices stay within
#: what the demand and plan models' integer micro-dollars represent.
MIN_USD_PER_CHIP_HOUR = 1e-6
MAX_USD_PER_CHIP_HOUR = 1e4
_CHIP_RANGES = {
    "bf16_flops": (1e9, 1e18),
    "int8_flops": (1e9, 1e18),
    "fp8_flops": (1e9, 1e18),
    "hbm_bytes": (1e6, 1e14),
    "hbm_bytes_per_s": (1e6, 1e15),
    "link_bytes_per_s": (1e3, 1e15),
    "links_per_axis": (1, 64),
    "usd_per_chip_hour": (MIN_USD_PER_CHIP_HOUR, MAX_USD_PER_CHIP_HOUR),
    "fp4_flops": (1e9, 1e18),
    "scale_out_bytes_per_s": (1e6, 1e15),
    "usd_per_chip_hour_1yr": (MIN_USD_PER_CHIP_HOUR, MAX_USD_PER_CHIP_HOUR),
    "usd_per_chip_hour_3yr": (MIN_USD_PER_CHIP_HOUR, MAX_USD_PER_CHIP_HOUR),
}
_CHIP_REQUIRED = set(_CHIP_NUMBERS) | {"kind", "weight_dtypes", "kv_dtypes", "eight_bit", "topologies"}
_CHIP_KEYS = _CHIP_REQUIRED | set(_CHIP_OPTIONAL) | {"display_name", "sources"}


MAX_AXES = 3
MAX_SLICE_CHIPS = 65536


def parse_topology(shape: str) -> tuple[int, ...]:
    """'4x8' -> (4, 8); '8' -> (8,). Raises InputError for anything else."""
    if not isinstance(shape, str) or not re.fullmatch(r"[1-9][0-9]{0,5}(x[1-9][0-9]{0,5}){0,2}", shape):
        raise InputError(f"bad topology {shape!r}: expected up to {MAX_AXES} positive dimensions like '4x8' or '8'")
    dims = tuple(int(p) for p in shape.split("x"))
    if math.prod(dims) > MAX_SLICE_CHIPS:
        raise InputError(f"bad topology {shape!r}: more than {MAX_SLICE_CHIPS} chips")
    return dims


def _check_chip_keys(name: str, table: Any, origin: str) -> None:
    if not isinstance(table, dict):
        raise InputError(f"{origin}: chip {name!r} must be a table [chips.{name}], got {table!r}")
    unknown = set(table) - _CHIP_KEYS
    if unknown:
        raise InputError(
            f"{origin}: chip {name!r} has unknown key {sorted(unknown)[0]!r}; "
            f"valid keys: {', '.join(sorted(_CHIP_KEYS))}"
        )
    missing = [k for k in sorted(_CHIP_REQUIRED) if k not in table]
    if missing:
        raise InputError(f"{origin}: chip {name!r} lacks key {missing[0]!r}")


def _check_number(name: str, key: str, value: Any, origin: str) -> None:
    if not is_number(value):
        raise InputError(f"{origin}: chip {name!r} key {key!r} must be a number, got {value!r}")
    if value < 0 or (key in _CHIP_POSITIVE and value == 0):
        raise InputError(f"{origin}: chip {name!r} key {key!r} must be positive, got {value!r}")
    low, high = _CHIP_RANGES[key]
    if value and not low <= value <= high:
        raise InputError(
            f"{origin}: chip {name!r} key {key!r} = {value!r} is outside the physical range {low:g} to {high:g}"
        )


def _check_chip_numbers(name: str, table: dict, origin: str) -> None:
    for key in _CHIP_NUMBERS + _OPTIONAL_NUMBERS:
        if key in table:
            _check_number(name, key, table[key], origin)
    if isinstance(table["links_per_axis"], float) and not table["links_per_axis"].is_integer():
        raise InputError(f"{origin}: chip {name!r} key 'links_per_axis' must be a whole number")


def _check_prices(name: str, prices: dict, origin: str) -> None:
    """Price dates are YYYY-MM or YYYY-MM-DD; a commitment costs no more than renting, and three
    years no more than one."""
    for key in ("price_date", "price_1yr_date", "price_3yr_date"):
        date = prices.get(key, "")
        if not isinstance(date, str) or (date and not _DATE.fullmatch(date)):
            raise InputError(
                f"{origin}: chip {name!r} key {key!r} must be a date like 2026, 2026-11 or 2026-11-09, got {date!r}"
            )
    on_demand, one, three = (
        prices.get(k, 0) for k in ("usd_per_chip_hour", "usd_per_chip_hour_1yr", "usd_per_chip_hour_3yr")
    )
    for key, committed in (("usd_per_chip_hour_1yr", one), ("usd_per_chip_hour_3yr", three)):
        if committed and on_demand and committed > on_demand:
            raise InputError(
                f"{origin}: chip {name!r} key {key!r} = {committed!r} is above the on-demand price {on_demand!r}"
            )
    if one and three and three > one:
        raise InputError(f"{origin}: chip {name!r}: the 3-year price {three!r} is above the 1-year price {one!r}")


def _check_chip_names(name: str, table: dict, origin: str) -> None:
    for key in ("weight_dtypes", "kv_dtypes", "topologies"):
        if not isinstance(table[key], list) or not all(isinstance(v, str) for v in table[key]):
            raise InputError(f"{origin}: chip {name!r} key {key!r} must be a list of strings")
    sources = table.get("sources", {})
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise InputError(f"{origin}: chip {name!r} key 'sources' must be a table of strings")
    if table["kind"] not in ("tpu", "gpu"):
        raise InputError(f"{origin}: chip {name!r} kind {table['kind']!r} is not one of: tpu, gpu")
    for key in ("weight_dtypes", "kv_dtypes"):
        for d in table[key]:
            check_choice(f"dtype in {origin} chip {name!r} {key}", d, DTYPES)
    if table["eight_bit"] not in ("int8", "fp8"):
        raise InputError(f"{origin}: chip {name!r} eight_bit must be 'int8' or 'fp8'")
    if table.get("four_bit", "int4") not in ("int4", "fp4"):
        raise InputError(f"{origin}: chip {name!r} four_bit must be 'int4' or 'fp4'")
    if table.get("four_bit") == "fp4" and not table.get("fp4_flops"):
        raise InputError(f"{origin}: chip {name!r} four_bit is 'fp4' but fp4_flops is 0: a chip without fp4 units")
    for shape in table["topologies"]:
        try:
            dims = parse_topology(shape)
        except InputError as e:
            raise InputError(f"{origin}: chip {name!r}: {e}") from None
        if table["kind"] == "gpu" and len(dims) != 1:
            raise InputError(f"{origin}: chip {name!r}: a GPU topology is a GPU count like '8', got {shape!r}")
    if not table["topologies"]:
        raise InputError(f"{origin}: chip {name!r} lists no topologies")


def _chip_from_table(name: str, table: Any, origin: str) -> Chip:
    _check_chip_keys(name, table, origin)
    _check_chip_numbers(name, table, origin)
    _check_chip_names(name, table, origin)
    _check_prices(name, table, origin)
    optional = {k: table.get(k, default) for k, default in _CHIP_OPTIONAL.items()}
    for key in _OPTIONAL_NUMBERS:
        optional[key] = float(optional[key])
    return Chip(
        name=name,
        kind=table["kind"],
        display_name=table.get("display_name", name),
        bf16_flops=float(table["bf16_flops"]),
        int8_flops=float(table["int8_flops"]),
        fp8_flops=float(table["fp8_flops"]),
        hbm_bytes=float(table["hbm_bytes"]),
        hbm_bytes_per_s=float(table["hbm_bytes_per_s"]),
        link_bytes_per_s=float(table["link_bytes_per_s"]),
        links_per_axis=int(table["links_per_axis"]),
        usd_per_chip_hour=float(table["usd_per_chip_hour"]),
        weight_dtypes=tuple(table["weight_dtypes"]),
        kv_dtypes=tuple(table["kv_dtypes"]),
        eight_bit=table["eight_bit"],
        topologies=tuple(table["topologies"]),
        **optional,
        scale_up_gpus=max(int(t) for t in table["topologies"]) if table["kind"] == "gpu" else 0,
        sources=dict(table.get("sources", {})),
    )


#: Input files (configs, chip catalogs, zoo and plan files) larger than this are refused:
#: a path like /dev/zero must be an error, not an endless read.
MAX_INPUT_BYTES = 16 * 2**20


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file (a leading byte-order mark dropped); InputError (naming `what` and the
    path) if missing, not a regular file, too large, or not text."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(f"{what} not found: {path}" if not path.exists() else f"{path}: not a regular file")
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"{path}: larger than {MAX_INPUT_BYTES // 2**20} MiB; not a {what}")
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from None


def read_toml(path: Path, what: str = "file") -> dict:
    """A TOML file's tables; InputError (naming `what` and the path) if missing or malformed."""
    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e})") from None


def parse_prices(values: Iterable[str]) -> dict[str, float]:
    """`--price CHIP=USD` values as {chip: USD per chip-hour} (the values are checked by load_chips)."""
    parsed = {}
    for v in values:
        name, sep, usd = (part.strip() for part in v.partition("="))
        try:
            parsed[name] = float(usd)
        except ValueError:
            sep = ""
        if not sep:
            raise InputError(f"--price {v!r} is not CHIP=USD (for example tpu-v5e=1.2)")
    return parsed


def load_chips(
    path: str | Path | None = None,
    prices: dict[str, float] | None = None,
    prices_file: str | Path | None = None,
    *,
    unpriced: bool = False,
) -> dict[str, Chip]:
    """The built-in chip catalog, with chips from `path` (same schema) added or replacing
    built-ins by name, then the prices of `prices_file` (a prices file), then `prices` (chip
    name -> on-demand USD per chip-hour, as --price gives them) applied last. A Catalog: the
    chips left without a price are in its `unpriced` (in the dict too with `unpriced=True`,
    for listing them)."""
    text = resources.files("optimizer").joinpath("data/chips.toml").read_text()
    chips = {n: _chip_from_table(n, t, "built-in chips.toml") for n, t in tomllib.loads(text)["chips"].items()}
    if path is not None:
        data = read_toml(Path(path))
        extra = set(data) - {"chips"}
        if extra:
            raise InputError(f"{path}: expected only [chips.NAME] tables, found key {sorted(extra)[0]!r}")
        if not isinstance(data.get("chips"), dict) or not data["chips"]:
            raise InputError(f"{path}: has no [chips.NAME] table; a chips file adds or replaces chips by name")
        for n, t in data["chips"].items():
            chips[n] = _chip_from_table(n, t, str(path))
    if prices_file is not None:
        chips = apply_prices_file(chips, prices_file)
    for name, usd in (prices or {}).items():
        if name not in chips:
            raise unknown_name("chip in --price", name, sorted(chips))
        if not is_positive_number(usd) or not MIN_USD_PER_CHIP_HOUR <= usd <= MAX_USD_PER_CHIP_HOUR:
            raise InputError(
                f"price for {name} must be a number of USD per chip-hour from {MIN_USD_PER_CHIP_HOUR:g} "
                f"to {MAX_USD_PER_CHIP_HOUR:g}, got {usd}"
            )
        chips[name] = replace(
            chips[name],
            usd_per_chip_hour=float(usd),
            price_date="",
            sources={**chips[name].sources, "price": "set by the user (--price)"},
        )
    if unpriced:
        return Catalog(chips)
    return Catalog({n: c for n, c in chips.items() if c.priced}, {n: c for n, c in chips.items() if not c.priced})


def apply_prices_file(chips: dict[str, Chip], path: str | Path) -> dict[str, Chip]:
    """The catalog with the prices of a prices file: [prices.CHIP] tables of the price keys
    (usd_per_chip_hour, usd_per_chip_hour_1yr, usd_per_chip_hour_3yr and their dates) and an
    optional `source` naming where they come from."""
    data = read_toml(Path(path), "prices file")
    extra = set(data) - {"prices"}
    if extra:
        raise InputError(f"{path}: expected only [prices.CHIP] tables, found key {sorted(extra)[0]!r}")
    if not isinstance(data.get("prices"), dict) or not data["prices"]:
        raise InputError(f"{path}: has no [prices.CHIP] table; a prices file sets chips' prices by name")
    out = dict(chips)
    valid = (*PRICE_KEYS, "source")
    for name, table in data["prices"].items():
        if name not in out:
            raise unknown_name(f"chip in {path}", name, sorted(out))
        if not isinstance(table, dict) or not table:
            raise InputError(f"{path}: [prices.{name}] must be a table of {', '.join(valid)}")
        unknown = sorted(set(table) - set(valid))
        if unknown:
            raise InputError(f"{path}: [prices.{name}] has unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")
        source = table.get("source", f"prices file {Path(path).name}")
        if not isinstance(source, str):
            raise InputError(f"{path}: [prices.{name}] source must be a string, got {source!r}")
        for key in _PRICE_SOURCE_KEYS:
            if key in table:
                _check_number(name, key, table[key], str(path))
        chip = out[name]
        merged = {k: getattr(chip, k) for k in PRICE_KEYS} | {k: v for k, v in table.items() if k != "source"}
        for key, date_key in zip(PRICE_KEYS[::2], PRICE_KEYS[1::2]):
            if key in table and date_key not in table:
                merged[date_key] = ""  # a new price without a date is undated, not the catalog's date
        _check_prices(name, merged, str(path))
        sources = {**chip.sources, **{_PRICE_SOURCE_KEYS[k]: source for k in _PRICE_SOURCE_KEYS if k in table}}
        numbers = {k: float(merged[k]) for k in _PRICE_SOURCE_KEYS}
        out[name] = replace(chip, **{**merged, **numbers}, sources=sources)
    return out
