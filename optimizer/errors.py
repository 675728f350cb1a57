"""Bad input: the one exception type, and the small checks that raise it with a one-line
message naming the bad value."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Raised for input a user can fix; the CLI prints it as one line and exits 2."""


def unknown_name(kind: str, name: str, valid: list[str]) -> InputError:
    """An error for an unknown name that lists the valid ones and suggests the closest."""
    close = difflib.get_close_matches(name.lower(), [v.lower() for v in valid], n=1, cutoff=0.6)
    hint = ""
    if close:
        match = next(v for v in valid if v.lower() == close[0])
        hint = f" (did you mean {match!r}?)"
    return InputError(f"unknown {kind} {name!r}{hint}; valid: {', '.join(valid)}")


def is_number(value: Any) -> bool:
    """A finite int or float (a bool is not a number here, nor NaN or infinity)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def is_positive_number(value: Any) -> bool:
    return is_number(value) and value > 0


def is_positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0


def check_positive_number(what: str, value: Any, *, at_most: float | None = None) -> None:
    """`what` names the value as the user gave it, e.g. "qps (--qps)"."""
    if not is_positive_number(value):
        raise InputError(f"{what} must be a positive number, got {value!r}")
    if at_most is not None and value > at_most:
        raise InputError(f"{what} must be at most {at_most:g}, got {value!r}")


def check_positive_int(what: str, value: Any) -> None:
    if not is_positive_int(value):
        raise InputError(f"{what} must be a positive integer, got {value!r}")


def check_choice(kind: str, value: Any, valid: list[str] | tuple[str, ...]) -> None:
    if value not in valid:
        raise unknown_name(kind, str(value), list(valid))


def check_not_an_input(out: str | Path | None, *inputs: str | Path | None) -> None:
    """--out must not overwrite a file the command reads (its data, zoo, plan or chips file)."""
    for path in inputs:
        if out is not None and path is not None and Path(out).resolve() == Path(path).resolve():
            raise InputError(f"--out {out} is an input of this command ({path}); write to another file")


def write_out(out: str | Path, text: str, newline: str | None = None, failure: str = "cannot write") -> None:
    """Write a command's --out file; InputError (naming the file and why) if it cannot be written."""
    try:
        Path(out).write_text(text, newline=newline)
    except OSError as e:
        raise InputError(f"--out {out}: {failure} ({e.strerror})") from None
