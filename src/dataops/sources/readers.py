"""Read a folder of AdventureWorks OLTP source files into validated Arrow tables.

Every table comes back with exactly the contract schema of `dataops.sources.contract`. Anything that
does not fit the contract raises `SourceDataError` with a one-line message naming the file, the line
(or row) and what was expected, so a user can fix the file without reading a traceback.

Formats, detected from the file content (the name only decides which table a file is for):

- comma CSV with a header row (`Schema.Table.csv`): UTF-8 (a BOM is tolerated), RFC 4180 quoting,
  NULL as an empty field. The header must equal the contract's column names, in order.
- Microsoft's install-script files, headerless, named `Table.csv` or `Schema.Table.csv`:
  - `char`: tab-delimited, LF, no quoting, GUIDs in braces, 9 fractional digits in datetimes,
    money with trailing zeros trimmed;
  - `widechar`: UTF-16 with BOM, field terminator `+|`, row terminator `&|` + CRLF, XML values
    starting with U+FEFF.
  The official `Person.csv` has 13 columns; its two XML columns are dropped to fit the contract.
- Parquet (`Schema.Table.parquet`): columns matched by name, then cast exactly to the contract.

Refused with the real problem named, since each would otherwise load wrong or fail far from its
cause:

- a file without data rows: an empty source table loads "ok", then surfaces as thousands of
  failing relationship rows and a source centuries old;
- UTF-16 text other than the widechar format (Excel's "Unicode Text", tab-delimited UTF-16LE with
  a BOM; a UTF-16 comma CSV): refused rather than guessed at, since Excel quotes values in it by
  rules the unquoted char format does not have;
- a carriage return outside a value that is not part of a CRLF (`\r\r\n` line ends, from a file
  converted to CRLF twice): pyarrow would end a row at it and report an empty line or a short row.

All text is parsed by `pyarrow.csv` as strings and converted column by column in `_coerce_column`,
with vectorised checks; Python never loops over rows.
"""

from __future__ import annotations

import csv as _pycsv
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from dataops.core.errors import SourceDataError
from dataops.sources.contract import SOURCE_TABLES, Column, ColumnType, SourceTable

__all__ = ["find_source_file", "read_source_file", "read_source_folder"]

# Microsoft's Person.csv carries two XML columns that the contract leaves out (instawdb.sql order).
_OFFICIAL_LAYOUTS: dict[str, tuple[str, ...]] = {
    "Person.Person": (
        "BusinessEntityID",
        "PersonType",
        "NameStyle",
        "Title",
        "FirstName",
        "MiddleName",
        "LastName",
        "Suffix",
        "EmailPromotion",
        "AdditionalContactInfo",
        "Demographics",
        "rowguid",
        "ModifiedDate",
    ),
}

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_PARQUET_MAGIC = b"PAR1"
# Widechar text is rewritten for pyarrow with separators that cannot occur in the data; the line
# breaks inside values are parked on two more control characters and put back after parsing.
_FIELD_SEP = "\x1f"
_CR_MARK = "\x1c"
_LF_MARK = "\x1d"
_ROW_MARK = "\x1e"
_CONTROL_MARKS = re.compile("[\x1c-\x1f]")
_LINE_BREAK = r"\r\n|\r|\n"

# A function giving the location prefix of a 0-based data row, e.g. "Customer.csv line 12".
Locate = Callable[[int], str]


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def read_source_folder(folder: Path) -> dict[str, pa.Table]:
    """Read and validate all ten source tables; raise before returning anything if one is bad.

    Keys are the qualified names (`Sales.Customer`, ...) in `SOURCE_TABLES` order, and every table
    has exactly its `SourceTable.arrow_schema`.
    """
    folder = Path(folder)
    _check_folder(folder)
    paths: dict[str, Path] = {}
    problems: list[str] = []
    for table in SOURCE_TABLES:
        try:
            paths[table.qualified_name] = find_source_file(folder, table)
        except SourceDataError as error:
            problems.append(str(error))
    if problems:
        raise SourceDataError("; ".join(problems))
    return {table.qualified_name: read_source_file(paths[table.qualified_name], table) for table in SOURCE_TABLES}


def find_source_file(folder: Path, table: SourceTable) -> Path:
    """The one file in `folder` holding `table`: `Schema.Table.csv`, `Schema.Table.parquet` or
    Microsoft's `Table.csv`."""
    folder = Path(folder)
    _check_folder(folder)
    names = _accepted_names(table)
    found = [folder / name for name in names if (folder / name).is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise SourceDataError(
            f"ambiguous source files for {table.qualified_name}: found "
            f"{_join_or([p.name for p in found], 'and')} in {folder}; keep only one of them"
        )
    message = f"missing source file for {table.qualified_name}: expected {_join_or(list(names), 'or')} in {folder}"
    lowered = {name.lower() for name in names}
    near = sorted(p.name for p in folder.iterdir() if p.name.lower() in lowered)
    if near:
        message += f" (found {', '.join(near)}; file names are case-sensitive)"
    raise SourceDataError(message)


def read_source_file(path: Path, table: SourceTable) -> pa.Table:
    """Read one source file of any supported format into a table with `table.arrow_schema`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SourceDataError(f"cannot read {path}: {error.strerror or error}") from error
    if data.startswith(_PARQUET_MAGIC):
        return _read_parquet(path, table)
    if path.suffix.lower() == ".parquet":
        raise SourceDataError(
            f"{path.name}: not a Parquet file (it does not start with the PAR1 magic bytes); "
            f"expected a Parquet file with the columns of {table.qualified_name}"
        )
    return _read_text(path.name, data, table)


# --------------------------------------------------------------------------------------------
# Files and names
# --------------------------------------------------------------------------------------------


def _accepted_names(table: SourceTable) -> tuple[str, str, str]:
    return (
        f"{table.qualified_name}.csv",
        f"{table.qualified_name}.parquet",
        f"{table.name}.csv",
    )


def _join_or(items: list[str], word: str) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {word} {items[-1]}"


def _check_folder(folder: Path) -> None:
    if not folder.exists():
        raise SourceDataError(f"source folder {folder} does not exist")
    if not folder.is_dir():
        raise SourceDataError(f"source folder {folder} is not a directory")


# --------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    """A text file rewritten as UTF-8 bytes that pyarrow can parse, plus how to parse it."""

    payload: bytes
    delimiter: str
    quoted: bool
    kind: str  # "comma", "char" or "widechar"
    line_breaks_marked: bool = False  # widechar: line breaks inside values were replaced


def _read_text(name: str, data: bytes, table: SourceTable) -> pa.Table:
    text = _prepare_text(name, data)
    payload = text.payload
    if not payload.strip():
        raise _empty_table_error(name, table, "the file is empty")
    newline = payload.find(b"\n")
    first_line = payload[: newline if newline >= 0 else len(payload)].rstrip(b"\r")
    if b"\r" in first_line:
        # No column name holds a line break: a CR here is a line end pyarrow would split on.
        raise _stray_carriage_return_error(name, text, first_line.index(b"\r"))
    first_fields = _split_line(first_line.decode("utf-8"), text.delimiter, text.quoted)
    expected = table.column_names
    has_header = text.kind == "comma" or first_fields[0].strip().lower() == expected[0].lower()
    if has_header:
        _check_header(name, table, first_fields, text.kind)
        body_offset = newline + 1 if newline >= 0 else len(payload)
        first_data_line = 2
        names = expected
    else:
        body_offset = 0
        first_data_line = 1
        official = _OFFICIAL_LAYOUTS.get(table.qualified_name)
        names = list(official) if official and len(first_fields) == len(official) else expected

    strings, invalid = _parse_strings(pa.py_buffer(payload)[body_offset:], names, text.delimiter, text.quoted)
    if text.line_breaks_marked:
        strings = _restore_line_breaks(strings)
    lines = _LineNumbers(strings, first_data_line)

    def locate(row: int) -> str:
        return f"{name} line {lines.line(row)}"

    blank_row = _first_blank_row(strings)
    if invalid is not None or blank_row is not None:
        # A CR outside a value ends a row for pyarrow, which then sees a short row or an empty
        # line where the file has neither; the CR is the problem to name.
        stray = _find_stray_carriage_return(text)
        if stray is not None:
            raise _stray_carriage_return_error(name, text, stray)
    if invalid is not None:
        number, actual, row_text = invalid
        hint = "truncated row?" if actual < len(names) else _extra_field_hint(text.kind)
        where = locate(number - 1) if number > 0 else f"{name} row {_show(row_text)}"
        raise SourceDataError(f"{where}: expected {len(names)} fields, found {actual} ({hint})")
    if blank_row is not None:
        raise SourceDataError(f"{locate(blank_row)}: empty line; expected {len(names)} fields")
    if strings.num_rows == 0:
        raise _empty_table_error(name, table, "a header row but no data rows")
    columns = [_coerce_column(strings.column(c.name), c, table, locate) for c in table.columns]
    return pa.Table.from_arrays(columns, schema=table.arrow_schema)


def _prepare_text(name: str, data: bytes) -> _Text:
    if data.startswith(_UTF16_BOMS) or (len(data) >= 2 and data[0] != 0 and data[1] == 0):
        return _prepare_widechar(name, data)
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SourceDataError(
            f"{name} line {line}: not valid UTF-8 text (byte 0x{data[error.start]:02X} at byte "
            f"offset {error.start}); expected UTF-8, or UTF-16 for Microsoft's widechar files"
        ) from None
    payload = data.rstrip(b"\r\n")
    newline = payload.find(b"\n")
    first_line = payload[: newline if newline >= 0 else len(payload)]
    if b"\t" in first_line:
        return _Text(payload, "\t", quoted=False, kind="char")
    return _Text(payload, ",", quoted=True, kind="comma")


def _prepare_widechar(name: str, data: bytes) -> _Text:
    """Decode Microsoft's `widechar` format and rewrite it as one row per line for pyarrow."""
    encoding = "utf-16" if data.startswith(_UTF16_BOMS) else "utf-16-le"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        before = data[: error.start].decode(encoding, errors="replace")
        raise SourceDataError(
            f"{name} line {before.count(chr(10)) + 1}: not valid UTF-16 text (byte offset "
            f"{error.start}); expected UTF-16 for a widechar file"
        ) from None
    text = text.lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        return _Text(b"", _FIELD_SEP, quoted=False, kind="widechar")
    first_line = text.split("\n", 1)[0]
    if "+|" not in first_line:
        # Every widechar row starts with an integer key and a +|, so this is other UTF-16 text.
        raise _utf16_text_error(name, first_line, with_bom=encoding == "utf-16")
    stray = text.find("&|\r\r")
    if stray >= 0:
        raise SourceDataError(
            f"{name} line {text.count(chr(10), 0, stray) + 1}: the row ends in &|\\r\\r\\n, a "
            f"stray carriage return before the line break; save the file with &| and \\r\\n "
            f"(or \\n) at the end of each row"
        )
    mark = _CONTROL_MARKS.search(text)
    if mark:
        line = text.count("\n", 0, mark.start()) + 1
        raise SourceDataError(
            f"{name} line {line}: unexpected control character U+{ord(mark.group()):04X} in a "
            f"widechar file; expected text fields separated by +| and rows ending in &|"
        )
    if not text.endswith("&|"):
        last_row = max(text.rfind("&|\r\n"), text.rfind("&|\n"))
        line = text.count("\n", 0, last_row) + 2 if last_row >= 0 else 1
        raise SourceDataError(
            f"{name} line {line}: the last row does not end with the row terminator &| "
            f"(truncated file?); expected widechar rows ending in &| and a line break"
        )
    body = text.replace("&|\r\n", _ROW_MARK).replace("&|\n", _ROW_MARK)
    body = body[: -len("&|")] + _ROW_MARK
    marked = "\r" in body or "\n" in body
    if marked:
        body = body.replace("\r", _CR_MARK).replace("\n", _LF_MARK)
    body = body.replace(_ROW_MARK, "\n").replace("+|", _FIELD_SEP)
    payload = body.encode("utf-8").rstrip(b"\n")
    return _Text(payload, _FIELD_SEP, quoted=False, kind="widechar", line_breaks_marked=marked)


def _split_line(line: str, delimiter: str, quoted: bool) -> list[str]:
    if quoted:
        return next(_pycsv.reader([line], delimiter=delimiter), [""])
    return line.split(delimiter)


def _check_header(name: str, table: SourceTable, found: list[str], kind: str) -> None:
    expected = table.column_names
    if found == expected:
        return
    if len(found) != len(expected):
        # Name the columns themselves: a dropped or added column must be named, not only counted.
        missing = [column for column in expected if column not in found]
        unexpected = [column for column in found if column not in expected]
        parts = [f"{len(found)} columns instead of {len(expected)}"]
        parts += [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unexpected {', '.join(repr(c) for c in unexpected)}"] if unexpected else []
        detail = "; ".join(parts)
    else:
        index = next(i for i, (f, e) in enumerate(zip(found, expected, strict=True)) if f != e)
        detail = f"column {index + 1} is {found[index]!r}, expected {expected[index]!r}"
    hint = ""
    if kind == "comma" and re.fullmatch(r"-?[0-9]+", found[0].strip()):
        hint = (
            "; the file seems to have no header row (headerless files must be Microsoft's "
            "tab-delimited char or UTF-16 widechar format)"
        )
    raise SourceDataError(
        f"{name} line 1: header does not match {table.qualified_name}: expected columns "
        f"{', '.join(expected)}; found {', '.join(found)} ({detail}){hint}"
    )


def _extra_field_hint(kind: str) -> str:
    return {
        "comma": "unquoted comma in a value?",
        "char": "tab inside a value?",
        "widechar": "+| inside a value?",
    }[kind]


def _parse_strings(
    buffer: pa.Buffer, names: list[str], delimiter: str, quoted: bool
) -> tuple[pa.Table, tuple[int, int, str] | None]:
    """Parse delimited UTF-8 text into a table of non-null strings.

    Returns the table of well-formed rows and, if there are rows with the wrong number of fields,
    the first of them as (1-based record number, or 0 if unknown; field count; text).
    """
    invalid: list[tuple[int | None, int, str]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    def parse(use_threads: bool) -> pa.Table:
        return pacsv.read_csv(
            pa.BufferReader(buffer),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=use_threads),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"' if quoted else False,
                double_quote=quoted,
                newlines_in_values=quoted,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid_row,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
                check_utf8=False,
            ),
        )

    if buffer.size == 0:
        empty = [pa.chunked_array([], pa.string()) for _ in names]
        return pa.Table.from_arrays(empty, names=names), None
    strings = parse(use_threads=True)
    if not invalid:
        return strings, None
    # Threaded parsing does not know record numbers; parse once more in order to get them.
    invalid.clear()
    strings = parse(use_threads=False)
    number, actual, row_text = invalid[0]
    return strings, (number or 0, actual, row_text)


def _restore_line_breaks(strings: pa.Table) -> pa.Table:
    columns = []
    for column in strings.columns:
        column = pc.replace_substring(column, _CR_MARK, "\r")
        columns.append(pc.replace_substring(column, _LF_MARK, "\n"))
    return pa.Table.from_arrays(columns, names=strings.column_names)


class _LineNumbers:
    """Physical line numbers of parsed rows, counting line breaks inside values."""

    def __init__(self, strings: pa.Table, first_line: int) -> None:
        self._strings = strings
        self._first_line = first_line
        self._breaks: np.ndarray | None = None

    def line(self, row: int) -> int:
        if self._breaks is None:
            breaks = np.zeros(self._strings.num_rows, dtype=np.int64)
            for column in self._strings.columns:
                counts = pc.count_substring_regex(column, _LINE_BREAK)
                breaks += pc.fill_null(counts, 0).to_numpy().astype(np.int64)
            self._breaks = breaks
        return self._first_line + row + int(self._breaks[:row].sum())


def _first_blank_row(strings: pa.Table) -> int | None:
    """An empty line parses as a row of empty fields; find it to say so instead of blaming a
    column."""
    if strings.num_rows == 0 or strings.num_columns == 0:
        return None
    blank = pc.equal(strings.column(0), "")
    for column in strings.columns[1:]:
        blank = pc.and_(blank, pc.equal(column, ""))
    index = pc.index(blank, True).as_py()
    return index if index >= 0 else None


# A CR that does not start a CRLF: pyarrow ends a row at it, like at any line break.
_LONE_CR = re.compile(rb"\r(?!\n)")


def _find_stray_carriage_return(text: _Text) -> int | None:
    """Byte offset of the first CR in `text` that is neither part of a CRLF nor inside a quoted
    value (where a line break is data), or None. Called only once parsing has failed: counting
    quotes is exact for RFC 4180, but a stray quote in an unquoted field would fool it, so it
    must never be what rejects a file that parses."""
    payload = text.payload
    quotes, counted_to = 0, 0
    for match in _LONE_CR.finditer(payload):
        if text.quoted:
            quotes += payload.count(b'"', counted_to, match.start())
            counted_to = match.start()
            if quotes % 2:
                continue
        return match.start()
    return None


def _stray_carriage_return_error(name: str, text: _Text, offset: int) -> SourceDataError:
    payload = text.payload
    if b"\n" not in payload:
        return SourceDataError(
            f"{name}: lines end in \\r alone (old Mac line ends); save the file with \\r\\n or \\n line ends"
        )
    line = payload.count(b"\n", 0, offset) + 1
    if payload.startswith(b"\r\n", offset + 1):
        return SourceDataError(
            f"{name} line {line}: the line ends in \\r\\r\\n, a stray carriage return before "
            f"the line break (converted to Windows line ends twice?); save the file with \\r\\n "
            f"or \\n line ends"
        )
    line_start = payload.rfind(b"\n", 0, offset) + 1
    character = len(payload[line_start:offset].decode("utf-8", errors="replace")) + 1
    where_breaks_go = (
        "a value may hold a line break only inside double quotes"
        if text.quoted
        else "values in a tab-delimited file cannot hold line breaks"
    )
    return SourceDataError(
        f"{name} line {line}, character {character}: a carriage return (\\r) that is not part of "
        f"a \\r\\n line break; remove it ({where_breaks_go})"
    )


def _utf16_text_error(name: str, first_line: str, *, with_bom: bool) -> SourceDataError:
    """UTF-16 that is not the widechar format: name what it is and how to make it UTF-8."""
    convert = f"`iconv -f {'UTF-16' if with_bom else 'UTF-16LE'} -t UTF-8`"
    if "\t" in first_line:
        return SourceDataError(
            f'{name}: tab-delimited UTF-16 text (what Excel saves as "Unicode Text"), which '
            f'dataops does not read; in Excel, save it as "CSV UTF-8 (Comma delimited)" instead'
        )
    if "," in first_line:
        return SourceDataError(
            f"{name}: a UTF-16 comma CSV, which dataops does not read (a CSV must be UTF-8); "
            f"convert it to UTF-8, e.g. with {convert}"
        )
    return SourceDataError(
        f"{name} line 1: UTF-16 text without the +| field separator of Microsoft's widechar "
        f"format; expected a widechar file (fields separated by +|, rows ending in &|) or a UTF-8 "
        f"CSV ({convert} converts it)"
    )


def _empty_table_error(name: str, table: SourceTable, found: str) -> SourceDataError:
    return SourceDataError(
        f"{name}: {found}; a source table cannot be empty: export {table.qualified_name} again, with its rows"
    )


# --------------------------------------------------------------------------------------------
# Column conversion: strings to contract types
# --------------------------------------------------------------------------------------------

_HEX = "[0-9A-Fa-f]"
_GUID = f"{_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
_DATETIME = (
    r"^[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"(?:[ T](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,3}0{0,6})?)?$"
)
_INT_RANGES: dict[ColumnType, tuple[int, int]] = {
    ColumnType.TINYINT: (0, 255),
    ColumnType.SMALLINT: (-32768, 32767),
    ColumnType.INT: (-2147483648, 2147483647),
}
_DESCRIPTIONS: dict[ColumnType, str] = {
    ColumnType.TINYINT: "a tinyint (expected a whole number from 0 to 255)",
    ColumnType.SMALLINT: "a smallint (expected a whole number from -32768 to 32767)",
    ColumnType.INT: "an int (expected a whole number from -2147483648 to 2147483647)",
    ColumnType.BIT: "a bit (expected 0 or 1)",
    ColumnType.MONEY: (
        "a money value (expected a decimal number with at most 15 digits before and 4 after the point, e.g. 2024.994)"
    ),
    ColumnType.LINE_TOTAL: (
        "a numeric(38,6) value (expected a decimal number with at most 32 digits before and 6 after the point)"
    ),
    ColumnType.WEIGHT: (
        "a decimal(8,2) value (expected a decimal number with at most 6 digits before and 2 after the point)"
    ),
    ColumnType.DATETIME: (
        "a datetime (expected YYYY-MM-DD HH:MM:SS with up to 3 significant fractional digits, "
        "e.g. 2014-09-12 11:15:07.263)"
    ),
    ColumnType.GUID: (
        "a uniqueidentifier (expected a GUID like 3F5AE95E-B87D-4AED-95B4-C3797AFCB74F, with or without braces)"
    ),
    ColumnType.STRING: "a string",
}


def _pattern(column_type: ColumnType) -> str | None:
    arrow = column_type.arrow
    if column_type in _INT_RANGES:
        return r"^-?[0-9]{1,18}$"
    if column_type is ColumnType.BIT:
        return r"^[01]$"
    if pa.types.is_decimal(arrow):
        whole, scale = arrow.precision - arrow.scale, arrow.scale
        return rf"^-?(?:[0-9]{{1,{whole}}}(?:\.[0-9]{{0,{scale}}}0*)?|\.[0-9]{{1,{scale}}}0*)$"
    if column_type is ColumnType.DATETIME:
        return _DATETIME
    if column_type is ColumnType.GUID:
        return f"^(?:{_GUID}|\\{{{_GUID}\\}})$"
    return None


def _coerce_column(values: pa.ChunkedArray, column: Column, table: SourceTable, locate: Locate) -> pa.ChunkedArray:
    """Convert one column of strings to its contract type, exactly, or raise naming the first bad
    value. Empty strings are NULL; a leading U+FEFF is removed from strings; GUIDs lose their
    braces and are upper-cased."""
    column_type = column.type

    def fail(index: int, problem: str) -> SourceDataError:
        return SourceDataError(f"{locate(index)}, column {column.name}: {problem}")

    if column_type is ColumnType.STRING:
        values = pc.replace_substring_regex(values, "^\ufeff", "")
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    if not column.nullable and values.null_count:
        index = pc.index(pc.is_null(values), True).as_py()
        raise fail(index, f"empty value, but {column.name} cannot be NULL in {table.qualified_name}")

    pattern = _pattern(column_type)
    if pattern is not None:
        bad = pc.invert(pc.fill_null(pc.match_substring_regex(values, pattern), True))
        index = pc.index(bad, True).as_py()
        if index >= 0:
            raise fail(index, f"{_show(values[index].as_py())} is not {_DESCRIPTIONS[column_type]}")

    target = column_type.arrow
    if column_type in _INT_RANGES:
        low, high = _INT_RANGES[column_type]
        wide = values.cast(pa.int64())
        out_of_range = pc.fill_null(pc.or_(pc.less(wide, low), pc.greater(wide, high)), False)
        index = pc.index(out_of_range, True).as_py()
        if index >= 0:
            raise fail(
                index,
                f"{_show(values[index].as_py())} is out of range for {column_type.value} "
                f"(expected a whole number from {low} to {high})",
            )
        return wide.cast(target)
    if column_type is ColumnType.BIT:
        return pc.equal(values, "1")
    if column_type is ColumnType.GUID:
        return pc.ascii_upper(pc.replace_substring_regex(values, r"^\{|\}$", ""))
    if column_type is ColumnType.STRING:
        return values
    original = values
    if column_type is ColumnType.DATETIME:
        # The pattern allows only zeros after the milliseconds (bcp writes 9 digits); drop them.
        values = pc.replace_substring_regex(values, r"(\.[0-9]{3})0+$", r"\1")
    try:
        return values.cast(target)
    except pa.ArrowInvalid:
        index = _first_cast_failure(values, target)
        raise fail(index, f"{_show(original[index].as_py())} is not {_DESCRIPTIONS[column_type]}") from None


def _first_cast_failure(values: pa.ChunkedArray, target: pa.DataType) -> int:
    """Index of the first value that does not cast, by bisection (O(n) work in total)."""
    low, high = 0, len(values)
    while high - low > 1:
        middle = (low + high) // 2
        try:
            values.slice(low, middle - low).cast(target)
            low = middle
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            high = middle
    return low


def _show(value: object, limit: int = 60) -> str:
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return repr(text)


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _read_parquet(path: Path, table: SourceTable) -> pa.Table:
    name = path.name
    try:
        source = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise SourceDataError(f"{name}: not a readable Parquet file ({_first_line(error)})") from error
    _check_parquet_columns(name, table, source.column_names)
    if source.num_rows == 0:
        raise _empty_table_error(name, table, "a Parquet file with no rows")

    def locate(row: int) -> str:
        return f"{name} row {row + 1}"

    columns = [_parquet_column(name, source.column(c.name), c, table, locate) for c in table.columns]
    return pa.Table.from_arrays(columns, schema=table.arrow_schema)


def _check_parquet_columns(name: str, table: SourceTable, found: list[str]) -> None:
    expected = table.column_names
    duplicates = sorted({c for c in found if found.count(c) > 1})
    missing = [c for c in expected if c not in found]
    extra = [c for c in found if c not in expected]
    if not (duplicates or missing or extra):
        return
    parts = []
    if missing:
        parts.append(f"missing {', '.join(missing)}")
    if extra:
        parts.append(f"unexpected {', '.join(extra)}")
    if duplicates:
        parts.append(f"duplicated {', '.join(duplicates)}")
    if missing and extra:
        parts.append("renamed columns?")
    raise SourceDataError(
        f"{name}: columns do not match {table.qualified_name} ({'; '.join(parts)}); expected "
        f"columns {', '.join(expected)}"
    )


def _parquet_column(
    name: str, values: pa.ChunkedArray, column: Column, table: SourceTable, locate: Locate
) -> pa.ChunkedArray:
    target = column.type.arrow
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return _coerce_column(values.cast(pa.string()), column, table, locate)

    def fail(problem: str) -> SourceDataError:
        return SourceDataError(f"{name}, column {column.name}: {problem}")

    if pa.types.is_decimal(target) and pa.types.is_floating(values.type):
        raise fail(f"stored as {values.type}; expected {target} ({column.type.value} must be exact, never a float)")
    if values.type != target:
        if pa.types.is_boolean(target) and pa.types.is_integer(values.type):
            not_bit = pc.fill_null(pc.invert(pc.is_in(values, pa.array([0, 1]))), False)
            index = pc.index(not_bit, True).as_py()
            if index >= 0:
                raise SourceDataError(
                    f"{locate(index)}, column {column.name}: {_show(values[index].as_py())} is "
                    f"not {_DESCRIPTIONS[column.type]}"
                )
        try:
            values = values.cast(target)
        except pa.ArrowNotImplementedError:
            raise fail(f"stored as {values.type}, which cannot be converted to {target}") from None
        except pa.ArrowInvalid as error:
            index = _first_cast_failure(values, target)
            raise SourceDataError(
                f"{locate(index)}, column {column.name}: {_show(values[index].as_py())} cannot "
                f"be converted from {values.type} to {target} ({_first_line(error)})"
            ) from None
    if not column.nullable and values.null_count:
        index = pc.index(pc.is_null(values), True).as_py()
        raise SourceDataError(
            f"{locate(index)}, column {column.name}: NULL, but {column.name} cannot be NULL in {table.qualified_name}"
        )
    return values


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
