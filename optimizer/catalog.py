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

#: Bytes per element of each dtype name servesat knows.
DTYPE_BYTES: dict[str, float] = {"bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
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
    sources: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def ici_bytes_per_s_per_axis(self) -> float:
        """W_ici: interconnect bytes/s a chip moves along one model-parallel axis."""
        return self.link_bytes_per_s * self.links_per_axis

    def default_dtypes(self, options: tuple[str, ...]) -> tuple[str, ...]:
        """bf16, the chip's native 8-bit format and int4, where the chip supports them."""
        return tuple(d for d in ("bf16", self.eight_bit, "int4") if d in options)


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
_CHIP_POSITIVE = (
    "bf16_flops",
    "hbm_bytes",
    "hbm_bytes_per_s",
    "link_bytes_per_s",
    "links_per_axis",
    "usd_per_chip_hour",
)
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
}
_CHIP_KEYS = set(_CHIP_NUMBERS) | {
    "kind",
    "display_name",
    "weight_dtypes",
    "kv_dtypes",
    "eight_bit",
    "topologies",
    "sources",
}


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
    missing = [k for k in sorted(_CHIP_KEYS - {"sources", "display_name"}) if k not in table]
    if missing:
        raise InputError(f"{origin}: chip {name!r} lacks key {missing[0]!r}")


def _check_chip_numbers(name: str, table: dict, origin: str) -> None:
    for key in _CHIP_NUMBERS:
        value = table[key]
        if not is_number(value):
            raise InputError(f"{origin}: chip {name!r} key {key!r} must be a number, got {value!r}")
        if value < 0 or (key in _CHIP_POSITIVE and value == 0):
            raise InputError(f"{origin}: chip {name!r} key {key!r} must be positive, got {value!r}")
        low, high = _CHIP_RANGES[key]
        if value and not low <= value <= high:
            raise InputError(
                f"{origin}: chip {name!r} key {key!r} = {value!r} is outside the physical range {low:g} to {high:g}"
            )
    if isinstance(table["links_per_axis"], float) and not table["links_per_axis"].is_integer():
        raise InputError(f"{origin}: chip {name!r} key 'links_per_axis' must be a whole number")


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


def load_chips(path: str | Path | None = None, prices: dict[str, float] | None = None) -> dict[str, Chip]:
    """The built-in chip catalog, with chips from `path` (same schema) added or replacing
    built-ins by name, and `prices` (chip name -> USD per chip-hour) applied last."""
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
    for name, usd in (prices or {}).items():
        if name not in chips:
            raise unknown_name("chip in --price", name, sorted(chips))
        if not is_positive_number(usd) or not MIN_USD_PER_CHIP_HOUR <= usd <= MAX_USD_PER_CHIP_HOUR:
            raise InputError(
                f"price for {name} must be a number of USD per chip-hour from {MIN_USD_PER_CHIP_HOUR:g} "
                f"to {MAX_USD_PER_CHIP_HOUR:g}, got {usd}"
            )
        chips[name] = replace(
            chips[name], usd_per_chip_hour=float(usd), sources={**chips[name].sources, "price": "set by the user"}
        )
    return chips
