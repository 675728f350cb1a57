"""The one exception type for bad input: a one-sentence message naming the bad value."""

from __future__ import annotations

import difflib


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
