"""Stream files (CSV, JSONL, Parquet, Excel) and pushed records as batches of text columns.

Every reader yields ``RawBatch`` objects: a table whose columns are all ``string`` (named
as in the source), the 1-based source row number of each row, and the rows that could
not even be parsed (ragged CSV rows, bytes that are not valid text, broken JSON lines),
each with its row number and reason.  Memory stays bounded by one batch.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from voxloop.errors import UnusableInputError

#: File name endings each reader accepts.
SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".jsonl", ".jsonl.gz", ".parquet", ".xlsx")

_SAMPLE_BYTES = 1 << 20
# Arrow's CSV reader holds several blocks in flight: 1 MiB keeps memory low and is fastest.
_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Reject:
    """A source row that could not be parsed at all."""

    row: int
    reason: str
    raw: str
    field: str | None = None


@dataclass
class RawBatch:
    """Up to ``batch_size`` parsed rows (text columns) and the rejects found with them."""

    table: pa.Table
    rows: np.ndarray
    rejects: list[Reject] = field(default_factory=list)

    @property
    def read(self) -> int:
        """Return how many source rows this batch accounts for."""
        # A batch of field-less records has rows but no columns (and so num_rows 0).
        return max(int(self.table.num_rows), len(self.rows)) + len(self.rejects)


def file_format(path: Path) -> str:
    """Return ``csv``, ``jsonl``, ``parquet`` or ``xlsx`` from the file name."""
    name = path.name.lower()
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
        return "csv"
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(".xlsx"):
        return "xlsx"
    raise UnusableInputError(
        f"{path}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    )


def _head(path: Path, size: int) -> bytes:
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data: bytes = fh.read(size)
            return data
    except (OSError, EOFError) as exc:
        raise UnusableInputError(f"{path}: cannot read file: {exc}") from exc


def detect_encoding(sample: bytes) -> str:
    """Return ``utf-8``, ``utf-16`` or ``gb18030`` for a file that starts with ``sample``.

    A file is UTF-8 when any line holds valid multi-byte UTF-8, even if some other lines
    do not (those rows are quarantined later); it is GB18030 (a superset of GBK and
    GB2312) when no line is UTF-8 beyond ASCII and the sample decodes as GB18030.
    """
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    lines = sample.split(b"\n")
    if len(sample) >= _SAMPLE_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut in the middle of a character
    utf8_evidence = False
    bad_utf8 = False
    for line in lines:
        if line.isascii():
            continue
        try:
            line.decode("utf-8")
            utf8_evidence = True
        except UnicodeDecodeError:
            bad_utf8 = True
    if not bad_utf8 or utf8_evidence:
        return "utf-8"
    try:
        b"\n".join(lines).decode("gb18030")
    except UnicodeDecodeError as exc:
        raise UnusableInputError(
            f"cannot decode the file: not UTF-8 and not GB18030/GBK ({exc.reason} at byte "
            f"{exc.start}); convert it to UTF-8 or name the encoding in a mapping"
        ) from exc
    return "gb18030"


def _cast_text(
    table: pa.Table, rows: np.ndarray, encoding: str
) -> tuple[pa.Table, np.ndarray, list[Reject]]:
    """Cast binary columns to string; rows with invalid bytes become rejects."""
    bad = np.zeros(table.num_rows, dtype=bool)
    bad_field: dict[int, str] = {}
    cast: dict[str, pa.ChunkedArray] = {}
    for name in table.column_names:
        try:
            cast[name] = pc.cast(table.column(name), pa.string())
        except pa.ArrowInvalid:
            # Rare path (a file with some undecodable rows): find them one by one.
            for i, value in enumerate(table.column(name).to_pylist()):
                if value is None or bad[i]:
                    continue
                try:
                    value.decode("utf-8")
                except UnicodeDecodeError:
                    bad[i] = True
                    bad_field[i] = name
    rejects: list[Reject] = []
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            raw = {
                k: (v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v)
                for k, v in table.slice(i, 1).to_pylist()[0].items()
            }
            rejects.append(
                Reject(
                    row=int(rows[i]),
                    field=bad_field[i],
                    reason=(
                        f"bytes in field {bad_field[i]!r} are not valid {encoding} text "
                        "(mixed encodings, e.g. GBK bytes in a UTF-8 file)"
                    ),
                    raw=json.dumps(raw, ensure_ascii=False),
                )
            )
        keep = pa.array(~bad)
        table = table.filter(keep)
        rows = rows[~bad]
        cast = {n: pc.cast(table.column(n), pa.string()) for n in table.column_names}
    return pa.table(cast), rows, rejects


class _Rebatcher:
    """Accumulate parsed pieces into batches of exactly ``size`` rows (last one shorter)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tables: list[pa.Table] = []
        self.rows: list[np.ndarray] = []
        self.rejects: list[Reject] = []
        self.count = 0

    def add(self, table: pa.Table, rows: np.ndarray, rejects: list[Reject]) -> Iterator[RawBatch]:
        self.rejects.extend(rejects)
        if table.num_rows:
            self.tables.append(table)
            self.rows.append(rows)
            self.count += table.num_rows
        while self.count >= self.size:
            yield self._emit(self.size)

    def flush(self) -> Iterator[RawBatch]:
        if self.count or self.rejects:
            yield self._emit(self.count)

    def _emit(self, n: int) -> RawBatch:
        if self.tables:
            table = pa.concat_tables(self.tables, promote_options="permissive")
            rows = np.concatenate(self.rows)
        else:
            table, rows = pa.table({}), np.zeros(0, dtype=np.int64)
        head, tail = table.slice(0, n), table.slice(n)
        self.tables = [tail] if tail.num_rows else []
        self.rows = [rows[n:]] if tail.num_rows else []
        self.count = tail.num_rows
        rejects, self.rejects = self.rejects, []
        return RawBatch(table=head.combine_chunks(), rows=rows[:n], rejects=rejects)


def read_csv(
    path: Path, *, batch_size: int, encoding: str | None = None, delimiter: str | None = None
) -> Iterator[RawBatch]:
    """Stream a CSV (or .csv.gz/.tsv) file; ragged rows and undecodable rows are rejects."""
    import pyarrow.csv as pacsv

    sample = _head(path, _SAMPLE_BYTES)
    if not sample.strip():
        raise UnusableInputError(f"{path}: the file is empty")
    enc = encoding or detect_encoding(sample)
    text = sample.decode(enc, errors="replace").lstrip("\ufeff")
    if delimiter is None:
        delimiter = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
        first = text.split("\n", 1)[0]
        if first.count(",") == 0:
            for candidate in ("\t", ";", "|"):
                if first.count(candidate) > 0:
                    delimiter = candidate
                    break
    header = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
    names = [h.strip() for h in header]
    if not names or all(not n for n in names):
        raise UnusableInputError(f"{path}: no header row")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes or "" in names:
        raise UnusableInputError(
            f"{path}: header has empty or repeated column names: {dupes or ['(empty)']}"
        )
    invalid: list[Reject] = []

    def on_invalid(row: Any) -> str:
        invalid.append(
            Reject(
                row=int(row.number) if row.number is not None else -1,
                reason=f"expected {row.expected_columns} fields, found {row.actual_columns}",
                raw=json.dumps({"_line": row.text}, ensure_ascii=False),
            )
        )
        return "skip"

    arrow_enc = "utf8" if enc == "utf-8" else enc
    try:
        reader = pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(
                use_threads=False,
                block_size=_BLOCK_BYTES,
                column_names=names,
                skip_rows=1,
                encoding=arrow_enc,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.binary() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as exc:
        raise UnusableInputError(f"{path}: cannot parse as CSV ({enc}): {exc}") from exc
    rebatch = _Rebatcher(batch_size)
    next_row = 2  # the header is row 1
    while True:
        try:
            piece = reader.read_next_batch()
        except StopIteration:
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise UnusableInputError(
                f"{path}: CSV parsing stopped near row {next_row} ({enc}): {exc}"
            ) from exc
        # The handler may already have seen rows of later blocks; rows of this block
        # are all reported, so good rows are the first numbers not taken by rejects.
        pending = np.array([r.row for r in invalid if r.row >= next_row], dtype=np.int64)
        k = piece.num_rows
        candidates = np.arange(next_row, next_row + k + len(pending), dtype=np.int64)
        rows = candidates[~np.isin(candidates, pending)][:k] if len(pending) else candidates
        if k:
            next_row = int(rows[-1]) + 1
        done = [r for r in invalid if r.row < next_row]
        invalid[:] = [r for r in invalid if r.row >= next_row]
        table, rows, bad = _cast_text(pa.Table.from_batches([piece]), rows, enc)
        yield from rebatch.add(table, rows, done + bad)
    # Rejects after the last good row.
    yield from rebatch.add(pa.table({}), np.zeros(0, dtype=np.int64), invalid)
    yield from rebatch.flush()


def _text_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


#: Nested objects that are flattened into columns (``{"region": {"city": ..}}``).
_FLATTEN = {"region": "", "plan": "plan_"}


def flatten_record(record: dict[str, Any]) -> dict[str, str | None]:
    """Return a record's values as text, flattening ``region`` and ``plan`` objects."""
    flat: dict[str, str | None] = {}
    for key, value in record.items():
        if key in _FLATTEN and isinstance(value, dict):
            for sub, subval in value.items():
                flat[f"{_FLATTEN[key]}{sub}"] = _text_value(subval)
        else:
            flat[str(key)] = _text_value(value)
    return flat


def records_table(records: list[dict[str, str | None]]) -> pa.Table:
    """Build a text table from flattened records (union of their keys)."""
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))
    return pa.table({n: pa.array([rec.get(n) for rec in records], pa.string()) for n in names})


def read_records(
    records: Iterable[Any], *, batch_size: int, first_row: int = 1
) -> Iterator[RawBatch]:
    """Batch in-memory records (HTTP push); non-objects become rejects."""
    good: list[dict[str, str | None]] = []
    rows: list[int] = []
    rejects: list[Reject] = []
    row = first_row - 1
    for row, rec in enumerate(records, start=first_row):
        if isinstance(rec, dict):
            good.append(flatten_record(rec))
            rows.append(row)
        else:
            rejects.append(
                Reject(row=row, reason="record is not a JSON object", raw=json.dumps(rec))
            )
        if len(good) >= batch_size:
            yield _records_batch(good, rows, rejects)
            good, rows, rejects = [], [], []
    if good or rejects:
        yield _records_batch(good, rows, rejects)


def _records_batch(
    good: list[dict[str, str | None]], rows: list[int], rejects: list[Reject]
) -> RawBatch:
    return RawBatch(table=records_table(good), rows=np.array(rows, dtype=np.int64), rejects=rejects)


def read_jsonl(path: Path, *, batch_size: int, encoding: str | None = None) -> Iterator[RawBatch]:
    """Stream a JSON-lines file; lines that are not JSON objects become rejects."""
    enc = encoding or detect_encoding(_head(path, _SAMPLE_BYTES))
    opener: Any = gzip.open if path.name.lower().endswith(".gz") else open
    good: list[dict[str, str | None]] = []
    rows: list[int] = []
    rejects: list[Reject] = []
    try:
        with opener(path, "rb") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    text = line.decode(enc).lstrip("\ufeff")
                except UnicodeDecodeError:
                    rejects.append(
                        Reject(
                            row=lineno,
                            reason=f"line is not valid {enc} text",
                            raw=json.dumps(
                                {"_line": line.decode(enc, errors="replace")}, ensure_ascii=False
                            ),
                        )
                    )
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as exc:
                    rejects.append(
                        Reject(
                            row=lineno,
                            reason=f"invalid JSON: {exc.msg} at column {exc.colno}",
                            raw=json.dumps({"_line": text.rstrip()}, ensure_ascii=False),
                        )
                    )
                    continue
                if not isinstance(rec, dict):
                    rejects.append(
                        Reject(row=lineno, reason="line is not a JSON object", raw=text.rstrip())
                    )
                    continue
                good.append(flatten_record(rec))
                rows.append(lineno)
                if len(good) >= batch_size:
                    yield _records_batch(good, rows, rejects)
                    good, rows, rejects = [], [], []
    except (OSError, EOFError) as exc:
        raise UnusableInputError(f"{path}: cannot read file: {exc}") from exc
    if good or rejects:
        yield _records_batch(good, rows, rejects)


def _text_column(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return pc.cast(col, pa.string())
    if pa.types.is_timestamp(t):
        fmt = "%Y-%m-%dT%H:%M:%S%z" if t.tz else "%Y-%m-%dT%H:%M:%S"
        return pc.strftime(col, format=fmt)
    if pa.types.is_nested(t) or pa.types.is_binary(t):
        return pa.array([_text_value(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, pa.string())


def read_parquet(path: Path, *, batch_size: int) -> Iterator[RawBatch]:
    """Stream a Parquet file as text columns (region structs flattened)."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnusableInputError(f"{path}: cannot read as Parquet: {exc}") from exc
    next_row = 1
    for batch in pf.iter_batches(batch_size=batch_size):
        cols: dict[str, pa.Array] = {}
        for name, col in zip(batch.schema.names, batch.columns, strict=True):
            if name in _FLATTEN and pa.types.is_struct(col.type):
                for i in range(col.type.num_fields):
                    sub = col.type.field(i).name
                    cols[f"{_FLATTEN[name]}{sub}"] = _text_column(col.field(i))
            else:
                cols[name] = _text_column(col)
        rows = np.arange(next_row, next_row + batch.num_rows, dtype=np.int64)
        next_row += batch.num_rows
        yield RawBatch(table=pa.table(cols), rows=rows)


def read_xlsx(path: Path, *, batch_size: int, sheet: str | None = None) -> Iterator[RawBatch]:
    """Stream the first (or named) sheet of an .xlsx workbook; row 1 is the header."""
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many unrelated types for broken files
        raise UnusableInputError(f"{path}: cannot open as an Excel workbook: {exc}") from exc
    try:
        if sheet is not None and sheet not in wb.sheetnames:
            raise UnusableInputError(f"{path}: no sheet {sheet!r} (sheets: {wb.sheetnames})")
        ws = wb[sheet] if sheet is not None else wb.worksheets[0]
        it = ws.iter_rows(values_only=True)
        header_row = next(it, None)
        if header_row is None:
            raise UnusableInputError(f"{path}: the sheet is empty")
        names = [str(h).strip() if h is not None else "" for h in header_row]
        while names and not names[-1]:
            names.pop()
        if not names or "" in names or len(set(names)) != len(names):
            raise UnusableInputError(f"{path}: header row has empty or repeated names: {names}")
        good: list[dict[str, str | None]] = []
        rows: list[int] = []
        rejects: list[Reject] = []
        for rowno, values in enumerate(it, start=2):
            if values is None or all(v is None for v in values):
                continue
            extra = [v for v in values[len(names) :] if v is not None]
            if extra:
                rejects.append(
                    Reject(
                        row=rowno,
                        reason=f"expected {len(names)} cells, found {len(names) + len(extra)}",
                        raw=json.dumps([_text_value(v) for v in values], ensure_ascii=False),
                    )
                )
                continue
            good.append({n: _text_value(v) for n, v in zip(names, values, strict=False)})
            rows.append(rowno)
            if len(good) >= batch_size:
                yield _records_batch(good, rows, rejects)
                good, rows, rejects = [], [], []
        if good or rejects:
            yield _records_batch(good, rows, rejects)
    finally:
        wb.close()


def _json_array(path: Path) -> list[Any] | None:
    """Return the items of a ``.json`` file holding one JSON array, else ``None``."""
    if not path.name.lower().endswith(".json"):
        return None
    head = _head(path, 4096).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not head.startswith("["):
        return None
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UnusableInputError(f"{path}: cannot parse the JSON array: {exc}") from exc
    return items if isinstance(items, list) else None


def read_file(
    path: Path,
    *,
    batch_size: int,
    encoding: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
) -> Iterator[RawBatch]:
    """Stream any supported file (CSV, JSON lines or one JSON array, Parquet, xlsx) as batches.

    The reader is chosen by ``file_format``; ``encoding`` and ``delimiter`` apply to text
    files, ``sheet`` to workbooks.  Every caller that reads a file goes through here, so
    quoted multi-line CSV fields, GBK/UTF-8 detection and ``.gz`` behave the same everywhere.
    """
    if not path.is_file():
        raise UnusableInputError(f"{path}: no such file")
    fmt = file_format(path)
    if fmt == "csv":
        return read_csv(path, batch_size=batch_size, encoding=encoding, delimiter=delimiter)
    if fmt == "parquet":
        return read_parquet(path, batch_size=batch_size)
    if fmt == "xlsx":
        return read_xlsx(path, batch_size=batch_size, sheet=sheet)
    items = _json_array(path)
    if items is not None:
        return read_records(items, batch_size=batch_size)
    return read_jsonl(path, batch_size=batch_size, encoding=encoding)


def read_text_table(
    path: Path,
    *,
    columns: Iterable[str] | None = None,
    limit: int | None = None,
    batch_size: int = 65_536,
) -> pa.Table:
    """Read a whole file (any format ``read_file`` reads) into one table of text columns.

    For evaluation and analysis inputs, which are used whole: the first row that cannot
    be parsed stops the read with its row number (and field), as does a missing column.
    ``columns`` keeps those columns only; ``limit`` stops after that many rows.
    """
    wanted = list(columns) if columns is not None else None
    parts: list[pa.Table] = []
    n = 0
    for batch in read_file(path, batch_size=batch_size):
        if batch.rejects:
            bad = batch.rejects[0]
            where = f"row {bad.row}" + (f", field {bad.field!r}" if bad.field else "")
            raise UnusableInputError(f"{path}: {where} cannot be parsed: {bad.reason}")
        table = batch.table
        if table.num_rows == 0 and not table.column_names:
            continue
        if wanted is not None:
            missing = [c for c in wanted if c not in table.column_names]
            if missing:
                raise UnusableInputError(
                    f"{path}: no column {missing[0]!r}; columns are {', '.join(table.column_names)}"
                )
            table = table.select(wanted)
        if limit is not None:
            table = table.slice(0, max(limit - n, 0))
        parts.append(table)
        n += table.num_rows
        if limit is not None and n >= limit:
            break
    if not parts:
        names = wanted or []
        return pa.table({c: pa.array([], pa.string()) for c in names})
    # Batches of records may differ in their keys: union them, missing ones as nulls.
    return pa.concat_tables(parts, promote_options="default")
