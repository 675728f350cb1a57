"""Shared text helpers: padded tables, JSON as --json prints it, plurals."""

from __future__ import annotations

import json
import math
from typing import Any


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell: the first and last left-aligned, the others right."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    last = len(headers) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if k in (0, last) else c.rjust(w) for k, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def strict_json(data: Any) -> Any:
    """The data with every NaN or infinite float as None: JSON has no such numbers (Python
    would write NaN or Infinity, which strict parsers reject), and null is "no value"."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: strict_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [strict_json(v) for v in data]
    return data


def json_text(data: Any) -> str:
    """What --json prints: the data (strict JSON) indented by two."""
    return json.dumps(strict_json(data), indent=2, allow_nan=False)


def plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"
