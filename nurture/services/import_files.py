"""The files of an import: a CSV (delimiter sniffed) or an XLSX workbook's first sheet,
read as text rows, each with the row number a spreadsheet shows."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from nurture.errors import NurtureError


def header_key(header: str) -> str:
    """How headers are compared: case-insensitive, spaces and dashes as `_`."""
    return re.sub(r"[\s\-]+", "_", header.strip().casefold())


@dataclass
class Table:
    header: list[str]
    #: (row number as a spreadsheet shows it: the header is row 1, values as text)
    rows: list[tuple[int, list[str]]]
    sha256: str


def read_table(path: Path, encoding: str = "utf-8-sig") -> Table:
    """A CSV (delimiter `,` `;` tab or `|`, sniffed) or an XLSX file's first sheet."""
    if not path.is_file():
        raise NurtureError(f"{path}: no such file")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        header, rows = _read_xlsx(path)
    else:
        header, rows = _read_csv(path, data, encoding)
    if not header or not any(h.strip() for h in header):
        raise NurtureError(f"{path}: no header row")
    width = len(header)
    table = [(number, [*values, *[""] * (width - len(values))][:width])
             for number, values in rows if any(v.strip() for v in values)]
    return Table([h.strip() for h in header], table, digest)


Rows = list[tuple[int, list[str]]]


def _read_csv(path: Path, data: bytes, encoding: str) -> tuple[list[str], Rows]:
    try:
        codecs.lookup(encoding)
        text = data.decode(encoding)
    except LookupError as e:
        raise NurtureError(f"unknown encoding {encoding!r}") from e
    except UnicodeDecodeError as e:
        raise NurtureError(f"{path}: not {encoding} text ({e.reason} at byte {e.start}); "
                           "save it as CSV UTF-8, or name its encoding with --encoding "
                           "(e.g. cp1252)") from e
    try:
        dialect: Any = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text.splitlines(keepends=True), dialect)
    header = next(reader, [])
    return header, [(number, row) for number, row in enumerate(reader, start=2)]


def _read_xlsx(path: Path) -> tuple[list[str], Rows]:
    from openpyxl import load_workbook  # only XLSX imports pay for it

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as e:  # openpyxl raises zipfile, KeyError, InvalidFileException…
        raise NurtureError(f"{path}: not a readable XLSX workbook ({e})") from e
    try:
        cells = book.worksheets[0].iter_rows(values_only=True)
        header = [cell_text(v) for v in next(cells, ())]
        return header, [(n, [cell_text(v) for v in row]) for n, row in enumerate(cells, 2)]
    finally:
        book.close()


def cell_text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV would hold (120.0 → "120")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
