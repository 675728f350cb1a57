"""YAML text for plain data (dicts, lists, strings, numbers, booleans, None): the manifests
and the engines' config files, without a YAML library at run time.

Strings that could read as anything but a string (numbers, booleans, null, flow syntax,
colons, leading symbols) are written as JSON strings, which YAML reads as double-quoted
scalars; everything else is plain.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$")
_SPECIAL = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _SPECIAL:
        return text
    return json.dumps(text)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        out = []
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out.append(f"{pad}{scalar(k)}:")
                out += _lines(v, indent + (0 if isinstance(v, list) else 2))
            else:
                out.append(f"{pad}{scalar(k)}: {_inline(v)}")
        return out
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        out = []
        for item in value:
            nested = isinstance(item, (dict, list)) and item
            inner = _lines(item, indent + 2) if nested else [pad + "  " + _inline(item)]
            out.append(pad + "- " + inner[0][indent + 2 :])
            out += inner[1:]
        return out
    return [pad + scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def to_yaml(data: Any) -> str:
    """One YAML document, ending in a newline."""
    return "\n".join(_lines(data, 0)) + "\n"
