"""Zoo output files: CSV, JSON Lines or Markdown by suffix; rows appended and flushed as they
finish, and read back on --resume (a line cut short by a kill is dropped and re-solved).
`zoo_run` is `servesat zoo` without the printing: checks, then the solve, writing each row."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from optimizer.errors import InputError, check_not_an_input
from optimizer.render.text import strict_json

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
from optimizer.zoo import COLUMNS, load_zoo, scenarios
from optimizer.zoo_solve import solve_zoo

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".md": "md"}
HEADER_LINES = {"csv": 1, "jsonl": 0, "md": 2}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "+".join(str(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {path}: unknown suffix {path.suffix!r}; valid: .csv, .jsonl, .md")
    return fmt


def _bad_line(path: Path, line: int, why: str) -> InputError:
    return InputError(
        f"--resume: {path} line {line} is not a servesat zoo row ({why}); "
        "remove or fix that line, or write to a new file"
    )


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    if header != COLUMNS:
        raise _other_columns(path)
    rows = []
    for cells in reader:
        if len(cells) != len(COLUMNS):
            raise _bad_line(path, reader.line_num, f"{len(cells)} fields, the header {len(COLUMNS)}")
        rows.append((reader.line_num, _typed(dict(zip(COLUMNS, cells)))))
    return rows


def _jsonl_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise _bad_line(path, n, "not JSON") from None
        if not isinstance(row, dict) or list(row) != COLUMNS:
            if n == 1:
                raise _other_columns(path)
            raise _bad_line(path, n, "not an object with the zoo's columns")
        rows.append((n, row))
    return rows


def _md_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    lines = text.splitlines()
    if [c.strip() for c in lines[0].strip().strip("|").split("|")] != COLUMNS:
        raise _other_columns(path)
    rows = []
    for n, line in enumerate(lines[2:], start=3):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != len(COLUMNS):
            raise _bad_line(path, n, f"{len(cells)} cells, the header {len(COLUMNS)}")
        rows.append((n, _typed(dict(zip(COLUMNS, cells)))))
    return rows


def _other_columns(path: Path) -> InputError:
    return InputError(
        f"--resume: {path} was written with other columns (by another servesat version); write to a new file"
    )


def parse_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line, row) for every complete line of an output file's text (a last line without its
    newline, cut short by a kill, is not one). InputError names a line that is not a row or
    repeats a scenario: a file with those is not resumed."""
    complete = text[: text.rfind("\n") + 1]
    if not complete:
        return []
    fmt = _format(path)
    rows = _csv_rows(path, complete) if fmt == "csv" else _jsonl_rows(path, complete) if fmt == "jsonl" else []
    if fmt == "md":
        rows = _md_rows(path, complete)
    first: dict[str, int] = {}
    for line, row in rows:
        sid = row.get("scenario_id")
        if not sid or not row.get("status"):
            raise _bad_line(path, line, "no scenario_id or status")
        if sid in first:
            raise _bad_line(path, line, f"scenario {sid} again, first on line {first[sid]}")
        first[sid] = line
    return rows


class RowWriter:
    """Appends rows to one output file, which it holds locked (one run per file); knows which
    scenario_ids the file already holds. Nothing in an existing file changes until every check
    has passed: its columns, every line, and that no other run is writing it."""

    def __init__(self, path: str | Path, resume: bool) -> None:
        self.path = Path(path)
        self.format = _format(self.path)
        self.done: set[str] = set()
        try:
            self.file: IO[str] = open(self.path, "a+", newline="")  # noqa: SIM115 (kept open across writes; closed in close())
        except OSError as e:
            raise InputError(f"--out {self.path}: cannot be written ({e.strerror})") from None
        try:
            self._lock()
            self.file.seek(0)
            text = self.file.read()
            if resume and text:
                if text.count("\n") < HEADER_LINES[self.format]:
                    raise InputError(f"--resume: {self.path} has no complete header (cut short?); write to a new file")
                self.done = {row["scenario_id"] for _, row in parse_rows(self.path, text)}
                self.file.truncate(text.rfind("\n") + 1)  # a line cut short by a kill is solved again
            else:
                self.file.truncate(0)
                self._header()
        except BaseException:
            self.file.close()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # no advisory locks on this platform: one run per file is the user's to keep
            return
        try:
            fcntl.flock(self.file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"--out {self.path} is being written by another servesat zoo run; wait for it, or write to another file"
            ) from None

    def _header(self) -> None:
        if self.format == "csv":
            csv.writer(self.file).writerow(COLUMNS)
        elif self.format == "md":
            self.file.write("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n")
        self._flush()

    def write(self, row: dict) -> None:
        if self.format == "csv":
            csv.writer(self.file).writerow([_cell(row[c]) for c in COLUMNS])
        elif self.format == "jsonl":
            self.file.write(json.dumps(strict_json({c: row[c] for c in COLUMNS}), allow_nan=False) + "\n")
        else:
            cells = [_cell(row[c]).replace("|", "/").replace("\n", " ") for c in COLUMNS]
            self.file.write("| " + " | ".join(cells) + " |\n")
        self.done.add(row["scenario_id"])
        self._flush()

    def _flush(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _typed(row: dict) -> dict:
    """Text cells (CSV, Markdown) back to numbers where the summary needs them."""
    out: dict = {c: (row.get(c) or None) for c in COLUMNS}
    for c in ("queries_per_dollar", "usd_per_million_tokens"):
        if out[c] is not None:
            try:
                out[c] = float(out[c])
            except ValueError:
                out[c] = None
    return out


def read_rows(path: str | Path) -> list[dict]:
    """Every complete row of an output file (CSV, JSON Lines or Markdown)."""
    path = Path(path)
    return [row for _, row in parse_rows(path, path.read_text())]


@dataclass
class ZooRun:
    """A zoo run under way: `rows` yields each solved row once it is written to `out`."""

    out: Path
    total: int  # scenarios in the zoo file
    skipped: int  # already in `out` (--resume)
    rows: Iterator[dict]
    ids: set[str]

    def summary_rows(self) -> list[dict]:
        """The rows of `out` that belong to this zoo file (all of them, once the run is done)."""
        return [r for r in read_rows(self.out) if r["scenario_id"] in self.ids]


def _check_run(zoo_file: str | Path, out: str | Path, workers: int | None, backend: str, address: str | None) -> None:
    if backend == "local" and address is not None:
        raise InputError("--address is for --backend ray")
    if backend == "ray" and workers is not None:
        raise InputError("--workers is for the local backend; Ray schedules on the cluster's CPUs")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise InputError("the ray backend needs Ray: pip install 'servesat[ray]'")
    check_not_an_input(out, zoo_file)


@contextlib.contextmanager
def zoo_run(
    zoo_file: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
) -> Iterator[ZooRun]:
    """Solve every scenario of a zoo file into `out` (workers None: every core). Every check
    is made before an existing `out` is replaced or appended to."""
    _check_run(zoo_file, out, workers, backend, address)
    zoo = load_zoo(zoo_file)
    every = scenarios(zoo)
    with contextlib.closing(RowWriter(out, resume)) as writer:
        skipped = sum(s["scenario_id"] in writer.done for s in every)
        solved = solve_zoo(
            zoo, workers=workers or max(os.cpu_count() or 1, 1), backend=backend, address=address, skip=writer.done
        )

        def written() -> Iterator[dict]:
            for row in solved:
                writer.write(row)
                yield row

        yield ZooRun(Path(out), len(every), skipped, written(), {s["scenario_id"] for s in every})
