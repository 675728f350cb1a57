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

from optimizer.errors import InputError
from optimizer.zoo import COLUMNS, load_zoo, scenarios, solve_zoo

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".md": "md"}


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "+".join(str(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


class RowWriter:
    """Appends rows to one output file; knows which scenario_ids the file already holds."""

    def __init__(self, path: str | Path, resume: bool) -> None:
        self.path = Path(path)
        self.format = FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise InputError(f"--out {self.path}: unknown suffix {self.path.suffix!r}; valid: .csv, .jsonl, .md")
        self.done: set[str] = set()
        existing = resume and self.path.exists() and self.path.stat().st_size > 0
        try:
            if existing:
                self._truncate_partial_line()
                self._check_columns()
                self.done = self._read_ids()
                self.file: IO[str] = open(self.path, "a", newline="")  # noqa: SIM115 (kept open across writes; closed in close())
            else:
                self.file = open(self.path, "w", newline="")  # noqa: SIM115 (as above)
                self._header()
        except OSError as e:
            raise InputError(f"--out {self.path}: cannot be written ({e.strerror})") from None

    def _check_columns(self) -> None:
        """--resume appends rows of today's columns: refuse a file written with other ones."""
        first = self.path.read_text().split("\n", 1)[0]
        if self.format == "csv":
            found = next(csv.reader([first]), [])
        elif self.format == "md":
            found = [c.strip() for c in first.strip().strip("|").split("|")]
        else:
            found = list(json.loads(first)) if first.strip() else COLUMNS
        if found != COLUMNS:
            raise InputError(
                f"--resume: {self.path} was written with other columns (by another servesat version); "
                "write to a new file"
            )

    def _truncate_partial_line(self) -> None:
        data = self.path.read_bytes()
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)

    def _read_ids(self) -> set[str]:
        return {r["scenario_id"] for r in read_rows(self.path) if r.get("scenario_id")}

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
            self.file.write(json.dumps({c: row[c] for c in COLUMNS}) + "\n")
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
            out[c] = float(out[c])
    return out


def read_rows(path: str | Path) -> list[dict]:
    """Every complete row of an output file (CSV, JSON Lines or Markdown)."""
    path = Path(path)
    text = path.read_text()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if suffix == ".csv":
        return [_typed(r) for r in csv.DictReader(io.StringIO(text)) if r.get("status")]
    rows = []
    for line in text.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == len(COLUMNS):
            rows.append(_typed(dict(zip(COLUMNS, cells))))
    return rows


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
    if Path(out).resolve() == Path(zoo_file).resolve():
        raise InputError(f"--out {out} is the zoo file itself")


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
