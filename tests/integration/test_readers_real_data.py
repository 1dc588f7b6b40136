"""Read the real AdventureWorks files in /work/shared/adventureworks (never copied into the repo).

Checks the row counts stated in its SOURCE.md, the exact order total, and that the same data in
Microsoft's own install-script formats (`char` and `widechar`, written to tmp_path) reads back
equal.
"""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from dataops.core.errors import SourceDataError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType, SourceTable
from dataops.sources.readers import read_source_file, read_source_folder

SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "adventureworks"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (SOURCE / "SOURCE.md").is_file(),
        reason=f"the real AdventureWorks files are not available at {SOURCE}",
    ),
]


@pytest.fixture(scope="module")
def tables() -> dict[str, pa.Table]:
    return read_source_folder(SOURCE)


def documented_row_counts() -> dict[str, int]:
    """`| Sales.Customer.csv | 19,820 | ...` rows of the file table in SOURCE.md."""
    text = (SOURCE / "SOURCE.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([A-Za-z]+\.[A-Za-z]+)\.csv \| ([0-9,]+) \|", text, flags=re.MULTILINE)
    return {name: int(count.replace(",", "")) for name, count in rows}


def raw_strings(table: SourceTable) -> pa.Table:
    """The real file as strings, read independently of the code under test."""
    return pacsv.read_csv(
        SOURCE / f"{table.qualified_name}.csv",
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(table.column_names, pa.string()),
            strings_can_be_null=False,
        ),
    )


def as_microsoft_values(strings: pa.Table, table: SourceTable, *, braces: bool) -> pa.Table:
    """Rewrite normalised values the way Microsoft's bcp files write them."""
    columns = []
    for column in table.columns:
        values = strings.column(column.name)
        if column.type is ColumnType.GUID and braces:
            values = pc.binary_join_element_wise("{", values, "}", "")
        elif column.type is ColumnType.DATETIME:
            has_fraction = pc.match_substring(values, ".")
            values = pc.if_else(has_fraction, pc.binary_join_element_wise(values, "000000", ""), values)
        elif column.type is ColumnType.MONEY:
            values = pc.replace_substring_regex(values, r"\.?0+$", "")
            values = pc.if_else(pc.equal(values, ""), "0", values)
        columns.append(values)
    return pa.Table.from_arrays(columns, names=table.column_names)


def write_char(path: Path, strings: pa.Table) -> None:
    rows = zip(*(c.to_pylist() for c in strings.columns), strict=True)
    path.write_bytes("".join("\t".join(row) + "\n" for row in rows).encode("ascii"))


def write_widechar(path: Path, strings: pa.Table) -> None:
    rows = zip(*(c.to_pylist() for c in strings.columns), strict=True)
    body = "".join("+|".join(row) + "&|\r\n" for row in rows)
    path.write_bytes(b"\xff\xfe" + body.encode("utf-16-le"))


def test_every_table_has_the_documented_row_count(tables: dict[str, pa.Table]) -> None:
    counts = documented_row_counts()
    assert sorted(counts) == sorted(t.qualified_name for t in SOURCE_TABLES)
    assert {name: table.num_rows for name, table in tables.items()} == counts
    for table in SOURCE_TABLES:
        assert tables[table.qualified_name].schema.equals(table.arrow_schema)


def test_total_due_is_exact(tables: dict[str, pa.Table]) -> None:
    total = pc.sum(tables["Sales.SalesOrderHeader"].column("TotalDue")).as_py()
    assert total == Decimal("123216786.1159")


def test_customer_in_microsofts_char_format_reads_back_equal(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    customer = SOURCE_TABLES_BY_NAME["Sales.Customer"]
    char = as_microsoft_values(raw_strings(customer), customer, braces=True)
    assert char.column("rowguid")[0].as_py().startswith("{")
    assert char.column("ModifiedDate")[0].as_py() == "2014-09-12 11:15:07.263000000"
    write_char(tmp_path / "Customer.csv", char)
    assert read_source_file(tmp_path / "Customer.csv", customer).equals(tables["Sales.Customer"])


def test_order_lines_with_trimmed_money_read_back_exact(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    detail = SOURCE_TABLES_BY_NAME["Sales.SalesOrderDetail"]
    char = as_microsoft_values(raw_strings(detail), detail, braces=True)
    assert char.column("UnitPrice")[0].as_py() == "2024.994"
    assert char.column("UnitPriceDiscount")[0].as_py() == "0"
    write_char(tmp_path / "SalesOrderDetail.csv", char)
    read_back = read_source_file(tmp_path / "SalesOrderDetail.csv", detail)
    assert read_back.equals(tables["Sales.SalesOrderDetail"])


def test_store_in_microsofts_widechar_format_reads_back_equal(tmp_path: Path, tables: dict[str, pa.Table]) -> None:
    store = SOURCE_TABLES_BY_NAME["Sales.Store"]
    wide = as_microsoft_values(raw_strings(store), store, braces=False)
    demographics = wide.column("Demographics")
    with_bom = pc.if_else(
        pc.equal(demographics, ""),
        demographics,
        pc.binary_join_element_wise("\ufeff", demographics, ""),
    )
    wide = wide.set_column(3, "Demographics", with_bom)
    write_widechar(tmp_path / "Store.csv", wide)
    assert read_source_file(tmp_path / "Store.csv", store).equals(tables["Sales.Store"])


def test_person_in_microsofts_thirteen_column_widechar_reads_back_equal(
    tmp_path: Path, tables: dict[str, pa.Table]
) -> None:
    person = SOURCE_TABLES_BY_NAME["Person.Person"]
    wide = as_microsoft_values(raw_strings(person), person, braces=False)
    rows = wide.num_rows
    contact = pa.array(["\ufeff<AdditionalContactInfo>\r\n  <phone/>\r\n</AdditionalContactInfo>"] * rows)
    survey = pa.array(["\ufeff<IndividualSurvey><TotalPurchaseYTD>0</TotalPurchaseYTD></IndividualSurvey>"] * rows)
    wide = wide.add_column(9, "AdditionalContactInfo", contact).add_column(10, "Demographics", survey)
    write_widechar(tmp_path / "Person.csv", wide)
    assert read_source_file(tmp_path / "Person.csv", person).equals(tables["Person.Person"])


def real_folder_with(tmp_path: Path, name: str, data: bytes) -> Path:
    """The real folder, linked file by file (never copied), with one file replaced by `data`."""
    folder = tmp_path / "adventureworks"
    folder.mkdir()
    for table in SOURCE_TABLES:
        (folder / f"{table.qualified_name}.csv").symlink_to(SOURCE / f"{table.qualified_name}.csv")
    (folder / name).unlink()
    (folder / name).write_bytes(data)
    return folder


def test_the_real_territories_with_only_their_header_are_refused(tmp_path: Path) -> None:
    header = (SOURCE / "Sales.SalesTerritory.csv").read_bytes().split(b"\r\n", 1)[0] + b"\r\n"
    folder = real_folder_with(tmp_path, "Sales.SalesTerritory.csv", header)
    with pytest.raises(SourceDataError) as error:
        read_source_folder(folder)
    assert str(error.value) == (
        "Sales.SalesTerritory.csv: a header row but no data rows; a source table cannot be empty: "
        "export Sales.SalesTerritory again, with its rows"
    )


def test_the_real_territories_saved_as_excel_unicode_text_are_named(tmp_path: Path) -> None:
    territory = SOURCE_TABLES_BY_NAME["Sales.SalesTerritory"]
    strings = raw_strings(territory)
    rows = [territory.column_names, *zip(*(c.to_pylist() for c in strings.columns), strict=True)]
    text = "".join("\t".join(row) + "\r\n" for row in rows)
    path = tmp_path / "Sales.SalesTerritory.csv"
    path.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    with pytest.raises(SourceDataError) as error:
        read_source_file(path, territory)
    assert str(error.value) == (
        'Sales.SalesTerritory.csv: tab-delimited UTF-16 text (what Excel saves as "Unicode Text"), '
        'which dataops does not read; in Excel, save it as "CSV UTF-8 (Comma delimited)" instead'
    )


def test_one_crcrlf_line_among_real_quoted_values_is_named_by_its_line(tmp_path: Path) -> None:
    # Sales.Store.csv quotes its XML and doubles the quotes inside it: the stray CR must still be
    # told apart from the quoted values around it, on the exact line.
    lines = (SOURCE / "Sales.Store.csv").read_bytes().split(b"\r\n")
    assert b'""' in lines[400]
    lines[400] += b"\r"
    path = tmp_path / "Sales.Store.csv"
    path.write_bytes(b"\r\n".join(lines))
    with pytest.raises(SourceDataError) as error:
        read_source_file(path, SOURCE_TABLES_BY_NAME["Sales.Store"])
    assert str(error.value) == (
        "Sales.Store.csv line 401: the line ends in \\r\\r\\n, a stray carriage return before the "
        "line break (converted to Windows line ends twice?); save the file with \\r\\n or \\n line "
        "ends"
    )
