"""CSV and Excel downloads of the dashboard's tables: streamed, audited, injection-safe.

Every page table (and the full voices list) downloads with ``?format=csv|xlsx`` and
``&table=NAME``, with the same filters and region scope as the page.  Cells that a
spreadsheet would run as a formula (text starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return) are prefixed with ``'``, after OWASP's *CSV Injection* guidance
(https://owasp.org/www-community/attacks/CSV_Injection).  Numbers stay numbers.  CSV is
UTF-8 with a byte-order mark, so Excel opens Chinese text correctly.  Each download adds
one audit entry (``action="export"``: who, which table, the filters, how many rows) when
its last row has been sent.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any, Final, Literal
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import StreamingResponse

from voxloop.act.access import Principal
from voxloop.errors import UnusableInputError

Format = Literal["csv", "xlsx"]
FORMATS: Final = ("csv", "xlsx")
#: First characters that make Excel, LibreOffice or Sheets evaluate a cell.
DANGEROUS: Final = ("=", "+", "-", "@", "\t", "\r")
BOM: Final = "\ufeff"
#: Rows buffered per CSV chunk sent to the client.
CHUNK_ROWS: Final = 2000
XLSX_TYPE: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def safe_cell(value: object) -> object:
    """Return ``value`` as a spreadsheet cell that cannot be read as a formula.

    Text starting with ``= + - @``, a tab or a carriage return gets a leading ``'``;
    ``None`` becomes empty; numbers, booleans and dates are kept as they are.
    """
    if value is None:
        return ""
    if isinstance(value, bool | int | float | datetime | date):
        return value
    text = value if isinstance(value, str) else str(value)
    if text.startswith(DANGEROUS):
        return "'" + text
    return text


def export_format(request: Request) -> Format | None:
    """Return the requested download format (``?format=``), ``None`` for the HTML page."""
    fmt = request.query_params.get("format", "").strip().lower()
    if not fmt or fmt == "html":
        return None
    if fmt not in FORMATS:
        raise UnusableInputError(f"format: {fmt!r} is not one of csv, xlsx")
    return fmt  # type: ignore[return-value]


def export_table(request: Request, tables: Sequence[str]) -> str:
    """Return the table to download (``?table=``, default the first one); refuse unknown ones."""
    name = request.query_params.get("table", "").strip() or tables[0]
    if name not in tables:
        raise UnusableInputError(f"table: {name!r} is not one of {', '.join(tables)}")
    return name


def _csv_chunks(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(BOM)
    writer.writerow([safe_cell(h) for h in header])
    pending = 0
    for row in rows:
        writer.writerow([_csv_value(safe_cell(v)) for v in row])
        pending += 1
        if pending >= CHUNK_ROWS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode("utf-8")


def _csv_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _xlsx_chunks(
    header: Sequence[str], rows: Iterable[Sequence[object]], sheet: str
) -> Iterator[bytes]:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    # write_only keeps memory flat: rows go to a temporary XML file as they are added.
    book = Workbook(write_only=True)
    ws = book.create_sheet(title=sheet[:31])
    ws.append([safe_cell(h) for h in header])
    for row in rows:
        cells = []
        for value in row:
            cell_value = safe_cell(value)
            if isinstance(cell_value, datetime) and cell_value.tzinfo is not None:
                cell_value = cell_value.replace(tzinfo=None)  # Excel has no time zones
            if isinstance(cell_value, str):
                # Typed as text explicitly, so nothing in the file marks it a formula.
                cell = WriteOnlyCell(ws, value=cell_value)
                cell.data_type = "s"
                cells.append(cell)
            else:
                cells.append(cell_value)
        ws.append(cells)
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as out:
        book.save(out)
        out.seek(0)
        while chunk := out.read(1 << 16):
            yield chunk


def stream_export(
    *,
    fmt: Format,
    name: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    on_done: Callable[[int, bool], None] | None = None,
) -> StreamingResponse:
    """Return a streamed download of ``rows`` under ``header``.

    ``on_done(rows_sent, complete)`` runs once the last row has been written (``complete``
    is ``False`` when the client went away first); exports audit there.
    """
    counted = _Counter(rows)

    def body() -> Iterator[bytes]:
        complete = False
        try:
            if fmt == "csv":
                yield from _csv_chunks(header, counted)
            else:
                yield from _xlsx_chunks(header, counted, name)
            complete = True
        finally:
            if on_done is not None:
                on_done(counted.n, complete)

    stamp = datetime.now().strftime("%Y%m%d-%H%M")
    filename = f"voxloop-{name}-{stamp}.{fmt}"
    media = "text/csv; charset=utf-8" if fmt == "csv" else XLSX_TYPE
    return StreamingResponse(
        body(),
        media_type=media,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store",
        },
    )


class _Counter:
    """Iterate over rows and count them (the audit records how many were sent)."""

    def __init__(self, rows: Iterable[Sequence[object]]) -> None:
        self.rows = rows
        self.n = 0

    def __iter__(self) -> Iterator[Sequence[object]]:
        for row in self.rows:
            self.n += 1
            yield row


def audited_export(
    request: Request,
    *,
    principal: Principal,
    fmt: Format,
    table: str,
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    filters: dict[str, Any],
    customer_ids: Callable[[], Sequence[str]] | None = None,
) -> StreamingResponse:
    """Stream ``rows`` and audit the download: who, which table and filters, rows sent.

    ``customer_ids`` (called after the last row) names the customers whose pseudonyms the
    download carried; they are recorded as accessed, like viewing them on a page.
    """
    maker = request.app.state.sessionmaker
    path = request.url.path

    def done(n: int, complete: bool) -> None:
        from voxloop.act import service

        with maker() as session:
            service.audit(
                session=session,
                actor=principal.username,
                action="export",
                object_type="export",
                object_id=table,
                detail={
                    "path": path,
                    "format": fmt,
                    "rows": n,
                    "complete": complete,
                    "filters": filters,
                    "scope": {"province": principal.province, "city": principal.city},
                },
            )
            session.commit()
            if customer_ids is not None:
                ids = [c for c in customer_ids() if c]
                if ids:
                    service.record_access(
                        session=session,
                        principal=principal,
                        customer_ids=ids,
                        purpose=f"export:{table}",
                    )

    return stream_export(fmt=fmt, name=table, header=header, rows=rows, on_done=done)
