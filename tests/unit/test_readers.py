"""Unit tests for `dataops.sources.readers`: every format, every conversion, every error message.

All fixture files are built in `tmp_path` from a few rows written here, in the three text layouts
(comma CSV with header, Microsoft's tab-delimited `char` and UTF-16 `widechar`) and Parquet.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataops.core.errors import SourceDataError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME, ColumnType
from dataops.sources.readers import find_source_file, read_source_file, read_source_folder

CUSTOMER = SOURCE_TABLES_BY_NAME["Sales.Customer"]
STORE = SOURCE_TABLES_BY_NAME["Sales.Store"]
PERSON = SOURCE_TABLES_BY_NAME["Person.Person"]
TERRITORY = SOURCE_TABLES_BY_NAME["Sales.SalesTerritory"]
HEADER = SOURCE_TABLES_BY_NAME["Sales.SalesOrderHeader"]
DETAIL = SOURCE_TABLES_BY_NAME["Sales.SalesOrderDetail"]
PRODUCT = SOURCE_TABLES_BY_NAME["Production.Product"]

GUID_1 = "3F5AE95E-B87D-4AED-95B4-C3797AFCB74F"
GUID_2 = "E552F657-A9AF-4A7D-A645-C429D6E02491"
GUID_3 = "130774B1-DB21-4EF3-98C8-C104BCD6ED6D"

Rows = Sequence[Sequence[str]]

# Three customers as in Sales.Customer.csv (normalised form).
CUSTOMER_ROWS: list[list[str]] = [
    ["1", "", "934", "1", "AW00000001", GUID_1, "2014-09-12 11:15:07.263"],
    ["2", "", "1028", "1", "AW00000002", GUID_2, "2014-09-12 11:15:07.263"],
    ["11000", "13531", "", "9", "AW00011000", GUID_3, "2014-09-12 11:15:07.263"],
]
# The same customers as Microsoft's char file writes them.
CUSTOMER_CHAR_ROWS: list[list[str]] = [
    ["1", "", "934", "1", "AW00000001", "{3F5AE95E-B87D-4AED-95B4-C3797AFCB74F}",
     "2014-09-12 11:15:07.263000000"],
    ["2", "", "1028", "1", "AW00000002", "{e552f657-a9af-4a7d-a645-c429d6e02491}",
     "2014-09-12 11:15:07.263000000"],
    ["11000", "13531", "", "9", "AW00011000", "{130774B1-DB21-4EF3-98C8-C104BCD6ED6D}",
     "2014-09-12 11:15:07.263000000"],
]  # fmt: skip

STORE_XML = (
    '<StoreSurvey xmlns="http://schemas.microsoft.com/sqlserver/2004/07/adventure-works/'
    'StoreSurvey"><AnnualSales>800000</AnnualSales><BankName>United Security</BankName>'
    "</StoreSurvey>"
)
STORE_XML_MULTILINE = "<StoreSurvey>\r\n  <BankName>Primary, International</BankName>\n</StoreSurvey>"


def write_comma(path: Path, header: Sequence[str], rows: Rows, *, bom: bool = False) -> Path:
    """RFC 4180 CSV with CRLF, quoting fields that need it."""

    def quote(value: str) -> str:
        if any(ch in value for ch in ',"\r\n'):
            return '"' + value.replace('"', '""') + '"'
        return value

    lines = [",".join(quote(v) for v in row) for row in [header, *rows]]
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\r\n".join(lines).encode() + b"\r\n")
    return path


def write_char(path: Path, rows: Rows) -> Path:
    """Microsoft's bcp `char` format: tab-delimited, LF, no header, no quoting."""
    path.write_bytes("".join("\t".join(row) + "\n" for row in rows).encode("ascii"))
    return path


def write_widechar(path: Path, rows: Rows, *, header: Sequence[str] | None = None) -> Path:
    """Microsoft's bcp `widechar` format: UTF-16LE with BOM, `+|` between fields, `&|` CRLF."""
    body = "".join("+|".join(row) + "&|\r\n" for row in ([header] if header else []) + list(rows))
    path.write_bytes(b"\xff\xfe" + body.encode("utf-16-le"))
    return path


def write_customer_csv(tmp_path: Path, rows: Rows | None = None) -> Path:
    return write_comma(
        tmp_path / "Sales.Customer.csv",
        CUSTOMER.column_names,
        CUSTOMER_ROWS if rows is None else rows,
    )


def expected_customers() -> pa.Table:
    modified = datetime(2014, 9, 12, 11, 15, 7, 263000)
    return pa.Table.from_pylist(
        [
            {"CustomerID": 1, "PersonID": None, "StoreID": 934, "TerritoryID": 1,
             "AccountNumber": "AW00000001", "rowguid": GUID_1, "ModifiedDate": modified},
            {"CustomerID": 2, "PersonID": None, "StoreID": 1028, "TerritoryID": 1,
             "AccountNumber": "AW00000002", "rowguid": GUID_2, "ModifiedDate": modified},
            {"CustomerID": 11000, "PersonID": 13531, "StoreID": None, "TerritoryID": 9,
             "AccountNumber": "AW00011000", "rowguid": GUID_3, "ModifiedDate": modified},
        ],
        schema=CUSTOMER.arrow_schema,
    )  # fmt: skip


def raises_source_error(
    pattern: str,
) -> AbstractContextManager[pytest.ExceptionInfo[SourceDataError]]:
    return pytest.raises(SourceDataError, match=re.escape(pattern))


def assert_one_line(error: pytest.ExceptionInfo[SourceDataError]) -> None:
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------
# Comma CSV with header
# ------------------------------------------------------------------------------------------


def test_comma_csv_reads_to_the_exact_contract_schema(tmp_path: Path) -> None:
    table = read_source_file(write_customer_csv(tmp_path), CUSTOMER)
    assert table.schema.equals(CUSTOMER.arrow_schema)
    assert table.equals(expected_customers())


def test_comma_csv_tolerates_a_utf8_bom(tmp_path: Path) -> None:
    path = write_comma(tmp_path / "Sales.Customer.csv", CUSTOMER.column_names, CUSTOMER_ROWS, bom=True)
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


def test_comma_csv_tolerates_lf_endings_and_trailing_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "Sales.Customer.csv"
    lines = [",".join(CUSTOMER.column_names)] + [",".join(row) for row in CUSTOMER_ROWS]
    path.write_text("\n".join(lines) + "\n\n\n", encoding="utf-8")
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


def test_comma_csv_quoted_values_keep_commas_quotes_and_line_breaks(tmp_path: Path) -> None:
    rows = [
        ["292", "Next-Door Bike Store", "279", STORE_XML, GUID_1, "2014-09-12 11:15:07.497"],
        ["294", 'Professional "Sales", Service', "", STORE_XML_MULTILINE, GUID_2,
         "2014-09-12 11:15:07"],
    ]  # fmt: skip
    path = write_comma(tmp_path / "Sales.Store.csv", STORE.column_names, rows)
    table = read_source_file(path, STORE)
    assert table.schema.equals(STORE.arrow_schema)
    assert table.column("Name").to_pylist() == [
        "Next-Door Bike Store",
        'Professional "Sales", Service',
    ]
    assert table.column("Demographics").to_pylist() == [STORE_XML, STORE_XML_MULTILINE]
    assert table.column("SalesPersonID").to_pylist() == [279, None]
    assert table.column("ModifiedDate").to_pylist() == [
        datetime(2014, 9, 12, 11, 15, 7, 497000),
        datetime(2014, 9, 12, 11, 15, 7),
    ]


def test_money_line_total_weight_bits_and_small_ints_are_exact(tmp_path: Path) -> None:
    row = {name: "" for name in PRODUCT.column_names}
    row.update(
        ProductID="680", Name="HL Road Frame - Black, 58", ProductNumber="FR-R92B-58",
        MakeFlag="1", FinishedGoodsFlag="0", SafetyStockLevel="500", ReorderPoint="375",
        StandardCost="1059.3100", ListPrice="1431.5", Weight="2.24", DaysToManufacture="1",
        SellStartDate="2008-04-30 00:00:00.000", rowguid=GUID_1,
        ModifiedDate="2014-02-08 10:01:36.827",
    )  # fmt: skip
    path = write_comma(tmp_path / "Production.Product.csv", PRODUCT.column_names, [list(row.values())])
    product = read_source_file(path, PRODUCT).to_pylist()[0]
    assert product["StandardCost"] == Decimal("1059.3100")
    assert product["ListPrice"] == Decimal("1431.5000")
    assert product["Weight"] == Decimal("2.24")
    assert product["MakeFlag"] is True and product["FinishedGoodsFlag"] is False
    assert product["SafetyStockLevel"] == 500
    assert product["Color"] is None and product["SellEndDate"] is None

    detail = ["43659", "1", "4911-403C-98", "3", "777", "1", "2024.994", "0", "6074.982000", GUID_2,
              "2011-05-31 00:00:00.000"]  # fmt: skip
    path = write_comma(tmp_path / "Sales.SalesOrderDetail.csv", DETAIL.column_names, [detail])
    line = read_source_file(path, DETAIL).to_pylist()[0]
    assert line["UnitPrice"] == Decimal("2024.9940")
    assert line["LineTotal"] == Decimal("6074.982000")
    assert str(line["LineTotal"]) == "6074.982000"


# ------------------------------------------------------------------------------------------
# Microsoft's char format (tab-delimited, headerless)
# ------------------------------------------------------------------------------------------


def test_char_format_strips_guid_braces_and_reads_nine_digit_datetimes(tmp_path: Path) -> None:
    path = write_char(tmp_path / "Customer.csv", CUSTOMER_CHAR_ROWS)
    table = read_source_file(path, CUSTOMER)
    assert table.schema.equals(CUSTOMER.arrow_schema)
    assert table.equals(expected_customers())


def test_char_format_money_with_trimmed_zeros_is_exact(tmp_path: Path) -> None:
    rows = [
        ["3", "Central", "US", "North America", "3072175.118", "3205014.0767", "0", "0",
         "{DF6E7FD8-1A8D-468C-B103-ED8ADDB452C1}", "2008-04-30 00:00:00"],
        ["9", "Australia", "AU", "Pacific", "5977814.9154", "2278548.9776", "30.97", "-1.5",
         "{602E612E-DFE9-41D9-B894-27E489747885}", "2011-05-31 00:00:00.000000000"],
    ]  # fmt: skip
    table = read_source_file(write_char(tmp_path / "SalesTerritory.csv", rows), TERRITORY)
    assert table.schema.equals(TERRITORY.arrow_schema)
    assert table.column("SalesYTD").to_pylist() == [
        Decimal("3072175.1180"),
        Decimal("5977814.9154"),
    ]
    assert table.column("CostYTD").to_pylist() == [Decimal("0.0000"), Decimal("30.9700")]
    assert table.column("CostLastYear").to_pylist() == [Decimal("0.0000"), Decimal("-1.5000")]
    assert table.column("rowguid").to_pylist()[0] == "DF6E7FD8-1A8D-468C-B103-ED8ADDB452C1"
    assert table.column("ModifiedDate").to_pylist() == [
        datetime(2008, 4, 30),
        datetime(2011, 5, 31),
    ]


def test_char_format_is_detected_from_content_under_the_schema_table_name(tmp_path: Path) -> None:
    path = write_char(tmp_path / "Sales.Customer.csv", CUSTOMER_CHAR_ROWS)
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


def test_char_format_with_crlf_endings(tmp_path: Path) -> None:
    path = tmp_path / "Customer.csv"
    path.write_bytes("".join("\t".join(r) + "\r\n" for r in CUSTOMER_CHAR_ROWS).encode())
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


def test_tab_file_with_the_contract_header(tmp_path: Path) -> None:
    path = write_char(tmp_path / "Customer.csv", [CUSTOMER.column_names, *CUSTOMER_CHAR_ROWS])
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


def test_tab_file_with_a_padded_header_is_refused(tmp_path: Path) -> None:
    header = [" " + name for name in CUSTOMER.column_names]  # as in a third-party copy
    path = write_char(tmp_path / "Customer.csv", [header, *CUSTOMER_CHAR_ROWS])
    with raises_source_error(
        "Customer.csv line 1: header does not match Sales.Customer: expected columns CustomerID,"
    ) as error:
        read_source_file(path, CUSTOMER)
    assert "(column 1 is ' CustomerID', expected 'CustomerID')" in str(error.value)


def test_comma_csv_with_header_under_microsofts_name(tmp_path: Path) -> None:
    path = write_comma(tmp_path / "Customer.csv", CUSTOMER.column_names, CUSTOMER_ROWS)
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


# ------------------------------------------------------------------------------------------
# Microsoft's widechar format (UTF-16, +| and &|)
# ------------------------------------------------------------------------------------------


def store_widechar_rows() -> list[list[str]]:
    return [
        ["292", "Next-Door Bike Store", "279", "\ufeff" + STORE_XML, GUID_1.lower(),
         "2014-09-12 11:15:07.497000000"],
        ["294", "Professional, \"Sales\"\tService", "", "\ufeff" + STORE_XML_MULTILINE, GUID_2,
         "2014-09-12 11:15:07"],
        ["296", "Bike Bits", "", "", GUID_3, "2014-09-12 11:15:07.000"],
    ]  # fmt: skip


def test_widechar_format_strips_the_xml_bom_and_keeps_line_breaks(tmp_path: Path) -> None:
    table = read_source_file(write_widechar(tmp_path / "Store.csv", store_widechar_rows()), STORE)
    assert table.schema.equals(STORE.arrow_schema)
    assert table.column("Demographics").to_pylist() == [STORE_XML, STORE_XML_MULTILINE, None]
    assert table.column("Name").to_pylist()[1] == 'Professional, "Sales"\tService'
    assert table.column("rowguid").to_pylist() == [GUID_1, GUID_2, GUID_3]
    assert table.column("SalesPersonID").to_pylist() == [279, None, None]
    assert table.column("ModifiedDate").to_pylist() == [
        datetime(2014, 9, 12, 11, 15, 7, 497000),
        datetime(2014, 9, 12, 11, 15, 7),
        datetime(2014, 9, 12, 11, 15, 7),
    ]


def person_rows(xml: bool) -> list[list[str]]:
    rows = [
        ["1", "EM", "0", "", "Ken", "J", "Sánchez", "", "0",
         "", "\ufeff<IndividualSurvey><TotalPurchaseYTD>0</TotalPurchaseYTD></IndividualSurvey>",
         "92C4279F-1207-48A3-8448-4636514EB7E2", "2009-01-07 00:00:00"],
        ["5", "EM", "0", "Ms.", "Gail", "A", "Erickson", "", "0",
         "\ufeff<AdditionalContactInfo>\r\n<phone>555</phone>\r\n</AdditionalContactInfo>",
         "\ufeff<IndividualSurvey/>", "F3A3F6B4-AE3B-430C-A754-9F2231BA6FEF",
         "2007-12-30 00:00:00"],
    ]  # fmt: skip
    return rows if xml else [row[:9] + row[11:] for row in rows]


def expected_people() -> list[dict[str, object]]:
    return [
        {"BusinessEntityID": 1, "PersonType": "EM", "NameStyle": False, "Title": None,
         "FirstName": "Ken", "MiddleName": "J", "LastName": "Sánchez", "Suffix": None,
         "EmailPromotion": 0, "rowguid": "92C4279F-1207-48A3-8448-4636514EB7E2",
         "ModifiedDate": datetime(2009, 1, 7)},
        {"BusinessEntityID": 5, "PersonType": "EM", "NameStyle": False, "Title": "Ms.",
         "FirstName": "Gail", "MiddleName": "A", "LastName": "Erickson", "Suffix": None,
         "EmailPromotion": 0, "rowguid": "F3A3F6B4-AE3B-430C-A754-9F2231BA6FEF",
         "ModifiedDate": datetime(2007, 12, 30)},
    ]  # fmt: skip


def test_widechar_person_with_thirteen_columns_drops_the_xml_columns(tmp_path: Path) -> None:
    table = read_source_file(write_widechar(tmp_path / "Person.csv", person_rows(xml=True)), PERSON)
    assert table.schema.equals(PERSON.arrow_schema)
    assert table.to_pylist() == expected_people()


def test_widechar_person_with_the_contract_columns(tmp_path: Path) -> None:
    path = write_widechar(tmp_path / "Person.Person.csv", person_rows(xml=False))
    assert read_source_file(path, PERSON).to_pylist() == expected_people()


def test_char_person_with_thirteen_columns_drops_the_xml_columns(tmp_path: Path) -> None:
    rows = [[v.replace("\ufeff", "").replace("\r\n", "") for v in row] for row in person_rows(True)]
    path = tmp_path / "Person.csv"
    path.write_bytes("".join("\t".join(r) + "\n" for r in rows).encode("utf-8"))
    assert read_source_file(path, PERSON).to_pylist() == expected_people()


def test_widechar_with_a_header_row(tmp_path: Path) -> None:
    path = write_widechar(tmp_path / "Store.csv", store_widechar_rows(), header=STORE.column_names)
    assert read_source_file(path, STORE).num_rows == 3


# ------------------------------------------------------------------------------------------
# Parquet
# ------------------------------------------------------------------------------------------


def test_parquet_with_the_contract_schema_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "Sales.Customer.parquet"
    pq.write_table(expected_customers(), path)
    table = read_source_file(path, CUSTOMER)
    assert table.schema.equals(CUSTOMER.arrow_schema)
    assert table.equals(expected_customers())


def test_parquet_is_cast_to_the_contract_types_and_column_order(tmp_path: Path) -> None:
    source = pa.table(
        {
            "TerritoryID": pa.array([1], pa.int64()),
            "Name": pa.array(["Northwest"], pa.large_string()),
            "CountryRegionCode": pa.array(["US"]).dictionary_encode(),
            "Group": ["North America"],
            "SalesYTD": pa.array([Decimal("7887186.78")], pa.decimal128(10, 2)),
            "SalesLastYear": pa.array([Decimal("3298694.4938")], pa.decimal128(38, 10)),
            "CostYTD": pa.array([0], pa.int32()),
            "rowguid": ["{43689a10-e30b-497f-b0de-11de20267ff7}"],
            "CostLastYear": pa.array(["12.5"]),
            "ModifiedDate": pa.array([datetime(2008, 4, 30)], pa.timestamp("us")),
        }
    )
    path = tmp_path / "Sales.SalesTerritory.parquet"
    pq.write_table(source, path)
    table = read_source_file(path, TERRITORY)
    assert table.schema.equals(TERRITORY.arrow_schema)
    assert table.to_pylist() == [
        {"TerritoryID": 1, "Name": "Northwest", "CountryRegionCode": "US", "Group": "North America",
         "SalesYTD": Decimal("7887186.7800"), "SalesLastYear": Decimal("3298694.4938"),
         "CostYTD": Decimal("0.0000"), "CostLastYear": Decimal("12.5000"),
         "rowguid": "43689A10-E30B-497F-B0DE-11DE20267FF7", "ModifiedDate": datetime(2008, 4, 30)}
    ]  # fmt: skip


def test_parquet_is_detected_from_content(tmp_path: Path) -> None:
    path = tmp_path / "Sales.Customer.csv"
    pq.write_table(expected_customers(), path)
    assert read_source_file(path, CUSTOMER).equals(expected_customers())


# ------------------------------------------------------------------------------------------
# Finding files and reading the folder
# ------------------------------------------------------------------------------------------


def test_find_source_file_accepts_the_three_names(tmp_path: Path) -> None:
    for name in ("Sales.Store.csv", "Sales.Store.parquet", "Store.csv"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_text("x")
        assert find_source_file(folder, STORE) == folder / name


def test_find_source_file_names_the_accepted_files_when_missing(tmp_path: Path) -> None:
    with raises_source_error(
        f"missing source file for Sales.Store: expected Sales.Store.csv, Sales.Store.parquet or Store.csv in {tmp_path}"
    ) as error:
        find_source_file(tmp_path, STORE)
    assert_one_line(error)


def test_find_source_file_hints_at_a_wrong_case(tmp_path: Path) -> None:
    (tmp_path / "store.csv").write_text("x")
    with raises_source_error("(found store.csv; file names are case-sensitive)"):
        find_source_file(tmp_path, STORE)


def test_find_source_file_refuses_two_candidates(tmp_path: Path) -> None:
    (tmp_path / "Sales.Store.csv").write_text("x")
    (tmp_path / "Store.csv").write_text("x")
    with raises_source_error("ambiguous source files for Sales.Store: found Sales.Store.csv and Store.csv"):
        find_source_file(tmp_path, STORE)


def test_missing_or_non_directory_folder(tmp_path: Path) -> None:
    with raises_source_error(f"source folder {tmp_path / 'nope'} does not exist"):
        find_source_file(tmp_path / "nope", STORE)
    (tmp_path / "file").write_text("x")
    with raises_source_error(f"source folder {tmp_path / 'file'} is not a directory"):
        read_source_folder(tmp_path / "file")


SAMPLE_VALUES: dict[ColumnType, str] = {
    ColumnType.TINYINT: "1",
    ColumnType.SMALLINT: "1",
    ColumnType.INT: "1",
    ColumnType.BIT: "1",
    ColumnType.MONEY: "1.5",
    ColumnType.LINE_TOTAL: "1.5",
    ColumnType.WEIGHT: "1.5",
    ColumnType.DATETIME: "2014-01-01 00:00:00.000",
    ColumnType.STRING: "x",
    ColumnType.GUID: GUID_1,
}


def write_sample_folder(folder: Path) -> None:
    """One valid row for every table, as comma CSV."""
    folder.mkdir(exist_ok=True)
    for table in SOURCE_TABLES:
        row = [SAMPLE_VALUES[c.type] for c in table.columns]
        write_comma(folder / f"{table.qualified_name}.csv", table.column_names, [row])


def test_read_source_folder_returns_every_table_in_contract_order(tmp_path: Path) -> None:
    write_sample_folder(tmp_path)
    tables = read_source_folder(tmp_path)
    assert list(tables) == [t.qualified_name for t in SOURCE_TABLES]
    for table in SOURCE_TABLES:
        assert tables[table.qualified_name].schema.equals(table.arrow_schema)
        assert tables[table.qualified_name].num_rows == 1


def test_read_source_folder_lists_every_missing_file(tmp_path: Path) -> None:
    write_sample_folder(tmp_path)
    (tmp_path / "Sales.Store.csv").unlink()
    (tmp_path / "Person.Person.csv").unlink()
    with raises_source_error("missing source file for Sales.Store") as error:
        read_source_folder(tmp_path)
    assert "missing source file for Person.Person" in str(error.value)
    assert_one_line(error)


def test_read_source_folder_fails_on_the_last_table_too(tmp_path: Path) -> None:
    write_sample_folder(tmp_path)
    last = SOURCE_TABLES[-1]
    write_comma(tmp_path / f"{last.qualified_name}.csv", last.column_names, [["x"] * 4])
    with raises_source_error(f"{last.qualified_name}.csv line 2, column ProductCategoryID: 'x'"):
        read_source_folder(tmp_path)


# ------------------------------------------------------------------------------------------
# Error messages
# ------------------------------------------------------------------------------------------


def test_wrong_header_is_named(tmp_path: Path) -> None:
    header = [*CUSTOMER.column_names[:5], "rowguuid", "ModifiedDate"]
    path = write_comma(tmp_path / "Sales.Customer.csv", header, CUSTOMER_ROWS)
    with raises_source_error(
        "Sales.Customer.csv line 1: header does not match Sales.Customer: expected columns "
        "CustomerID, PersonID, StoreID, TerritoryID, AccountNumber, rowguid, ModifiedDate; found "
        "CustomerID, PersonID, StoreID, TerritoryID, AccountNumber, rowguuid, ModifiedDate "
        "(column 6 is 'rowguuid', expected 'rowguid')"
    ) as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


def test_header_is_case_sensitive_and_counted(tmp_path: Path) -> None:
    header = [name.lower() for name in CUSTOMER.column_names]
    with raises_source_error("(column 1 is 'customerid', expected 'CustomerID')"):
        read_source_file(write_comma(tmp_path / "a.csv", header, CUSTOMER_ROWS), CUSTOMER)
    with raises_source_error("(6 columns instead of 7; missing ModifiedDate)"):
        read_source_file(write_comma(tmp_path / "b.csv", CUSTOMER.column_names[:6], []), CUSTOMER)


def test_headerless_comma_file_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "Customer.csv"
    path.write_text("\r\n".join(",".join(row) for row in CUSTOMER_ROWS), encoding="utf-8")
    with raises_source_error("the file seems to have no header row"):
        read_source_file(path, CUSTOMER)


def test_truncated_row_names_the_line(tmp_path: Path) -> None:
    rows = [*CUSTOMER_ROWS, CUSTOMER_ROWS[0][:3], CUSTOMER_ROWS[1]]
    with raises_source_error("Sales.Customer.csv line 5: expected 7 fields, found 3 (truncated row?)") as error:
        read_source_file(write_customer_csv(tmp_path, rows), CUSTOMER)
    assert_one_line(error)


def test_truncated_row_line_counts_line_breaks_inside_quoted_values(tmp_path: Path) -> None:
    good = ["294", "Store", "", STORE_XML_MULTILINE, GUID_2, "2014-09-12 11:15:07"]
    rows = [good, good, good[:4]]  # two rows of three lines each, then the bad one on line 8
    path = write_comma(tmp_path / "Sales.Store.csv", STORE.column_names, rows)
    with raises_source_error("Sales.Store.csv line 8: expected 6 fields, found 4 (truncated row?)"):
        read_source_file(path, STORE)


def test_extra_field_names_the_line(tmp_path: Path) -> None:
    path = write_char(tmp_path / "Customer.csv", [*CUSTOMER_CHAR_ROWS[:2], [*CUSTOMER_CHAR_ROWS[2], "x"]])
    with raises_source_error("Customer.csv line 3: expected 7 fields, found 8 (tab inside a value?)"):
        read_source_file(path, CUSTOMER)


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = write_customer_csv(tmp_path)
    data = path.read_bytes().replace(b"AW00000002", b"AW0000000\xe9")
    path.write_bytes(data)
    with raises_source_error("Sales.Customer.csv line 3: not valid UTF-8 text") as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


def test_non_numeric_money_names_line_and_column(tmp_path: Path) -> None:
    header = ["43659", "8", "2011-05-31 00:00:00.000", "2011-06-12 00:00:00.000",
              "2011-06-07 00:00:00.000", "5", "0", "SO43659", "PO522145787", "10-4020-000676",
              "29825", "279", "5", "985", "985", "5", "16281", "105041Vi84182", "", "20565.6206",
              "1971.5149", "616.0984", "23153.2339", "", GUID_1,
              "2011-06-07 00:00:00.000"]  # fmt: skip
    bad = list(header)
    bad[HEADER.column_names.index("TotalDue")] = "abc"
    path = write_comma(tmp_path / "Sales.SalesOrderHeader.csv", HEADER.column_names, [header] * 3 + [bad])
    assert read_source_file(write_comma(tmp_path / "ok.csv", HEADER.column_names, [header]), HEADER).column(
        "TotalDue"
    ).to_pylist() == [Decimal("23153.2339")]
    with raises_source_error("Sales.SalesOrderHeader.csv line 5, column TotalDue: 'abc' is not a money value") as error:
        read_source_file(path, HEADER)
    assert_one_line(error)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("StandardCost", "1.23456", "'1.23456' is not a money value"),
        ("StandardCost", "1e5", "'1e5' is not a money value"),
        ("Weight", "1234567.5", "'1234567.5' is not a decimal(8,2) value"),
        ("SafetyStockLevel", "40000", "'40000' is out of range for smallint"),
        ("ProductID", "9999999999", "'9999999999' is out of range for int"),
        ("ProductID", "1.0", "'1.0' is not an int"),
        ("MakeFlag", "2", "'2' is not a bit (expected 0 or 1)"),
        ("MakeFlag", "true", "'true' is not a bit"),
        ("SellStartDate", "2014-02-30 00:00:00", "'2014-02-30 00:00:00' is not a datetime"),
        ("SellStartDate", "2013-02-29 00:00:00.000000000", "'2013-02-29 00:00:00.000000000' is"),
        ("SellStartDate", "30/04/2008", "'30/04/2008' is not a datetime"),
        (
            "SellStartDate",
            "2008-04-30 00:00:00.1234",
            "'2008-04-30 00:00:00.1234' is not a datetime",
        ),
        (
            "rowguid",
            "{694215B7-08F7-4C0D-ACB1-D734BA44C0C8",
            "'{694215B7-08F7-4C0D-ACB1-D734BA44C0C8' is not",
        ),
        ("rowguid", "not-a-guid", "'not-a-guid' is not a uniqueidentifier"),
    ],
)
def test_bad_values_name_line_column_and_expectation(tmp_path: Path, column: str, value: str, message: str) -> None:
    row = {c.name: SAMPLE_VALUES[c.type] for c in PRODUCT.columns}
    bad = dict(row, **{column: value})
    rows = [list(row.values()), list(bad.values())]
    path = write_comma(tmp_path / "Production.Product.csv", PRODUCT.column_names, rows)
    with raises_source_error(f"Production.Product.csv line 3, column {column}: {message}") as error:
        read_source_file(path, PRODUCT)
    assert_one_line(error)
    assert "expected" in str(error.value)


def test_tinyint_range(tmp_path: Path) -> None:
    row = {c.name: SAMPLE_VALUES[c.type] for c in HEADER.columns}
    path = write_comma(tmp_path / "h.csv", HEADER.column_names, [list(dict(row, Status="256").values())])
    with raises_source_error(
        "h.csv line 2, column Status: '256' is out of range for tinyint (expected a whole number from 0 to 255)"
    ):
        read_source_file(path, HEADER)


def test_empty_non_nullable_value_names_line_and_column(tmp_path: Path) -> None:
    rows = [list(CUSTOMER_ROWS[0]), list(CUSTOMER_ROWS[1])]
    rows[1][4] = ""
    with raises_source_error(
        "Sales.Customer.csv line 3, column AccountNumber: empty value, but AccountNumber cannot be "
        "NULL in Sales.Customer"
    ) as error:
        read_source_file(write_customer_csv(tmp_path, rows), CUSTOMER)
    assert_one_line(error)


def test_blank_line_in_the_middle_is_named(tmp_path: Path) -> None:
    path = tmp_path / "Customer.csv"
    lines = ["\t".join(r) for r in CUSTOMER_CHAR_ROWS]
    path.write_text(lines[0] + "\n\n" + lines[1] + "\n", encoding="ascii")
    with raises_source_error("Customer.csv line 2: empty line; expected 7 fields"):
        read_source_file(path, CUSTOMER)


def test_widechar_errors_use_the_original_line_numbers(tmp_path: Path) -> None:
    rows = store_widechar_rows()
    rows[2][0] = "x296"  # row 3 starts on line 5: row 2 spans lines 2 to 4
    with raises_source_error("Store.csv line 5, column BusinessEntityID: 'x296' is not an int"):
        read_source_file(write_widechar(tmp_path / "Store.csv", rows), STORE)
    rows[2] = rows[2][:3]
    with raises_source_error("Store.csv line 5: expected 6 fields, found 3 (truncated row?)"):
        read_source_file(write_widechar(tmp_path / "Store.csv", rows), STORE)


def test_widechar_truncated_file_is_named(tmp_path: Path) -> None:
    path = write_widechar(tmp_path / "Store.csv", store_widechar_rows())
    path.write_bytes(path.read_bytes()[: -len("07.000&|\r\n".encode("utf-16-le"))])
    with raises_source_error(
        "Store.csv line 5: the last row does not end with the row terminator &| (truncated file?)"
    ):
        read_source_file(path, STORE)


EMPTY_TABLE = "; a source table cannot be empty: export Sales.Customer again, with its rows"


def write_parquet_without_rows(path: Path) -> Path:
    pq.write_table(CUSTOMER.arrow_schema.empty_table(), path)
    return path


@pytest.mark.parametrize(
    ("write", "found"),
    [
        (lambda p: write_comma(p, CUSTOMER.column_names, []), "a header row but no data rows"),
        (lambda p: write_comma(p, CUSTOMER.column_names, [], bom=True), "a header row but no data rows"),
        (lambda p: p.write_bytes(("\t".join(CUSTOMER.column_names) + "\n").encode()), "a header row but no data rows"),
        (lambda p: write_widechar(p, [], header=CUSTOMER.column_names), "a header row but no data rows"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (lambda p: p.write_bytes(b"\r\n\r\n"), "the file is empty"),
        (lambda p: p.write_bytes(b"\xff\xfe"), "the file is empty"),
        (lambda p: p.write_bytes(b"\xff\xfe" + "\r\n".encode("utf-16-le")), "the file is empty"),
        (write_parquet_without_rows, "a Parquet file with no rows"),
    ],
    ids=["comma-header", "comma-bom-header", "tab-header", "widechar-header", "empty", "blank-lines",
         "widechar-bom-only", "widechar-blank", "parquet-no-rows"],
)  # fmt: skip
def test_a_file_without_data_rows_is_refused_by_name(
    tmp_path: Path, write: Callable[[Path], object], found: str
) -> None:
    # An empty source table used to load "ok" and fail far away, in relationship tests and freshness.
    path = tmp_path / "Sales.Customer.csv"
    write(path)
    with raises_source_error(f"{path.name}: {found}{EMPTY_TABLE}") as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


def test_read_source_folder_refuses_a_table_with_only_a_header(tmp_path: Path) -> None:
    write_sample_folder(tmp_path)
    write_comma(tmp_path / "Sales.SalesTerritory.csv", TERRITORY.column_names, [])
    with raises_source_error(
        "Sales.SalesTerritory.csv: a header row but no data rows; a source table cannot be empty: "
        "export Sales.SalesTerritory again, with its rows"
    ):
        read_source_folder(tmp_path)


# Excel's "Unicode Text": UTF-16LE with a BOM, tab-delimited, CRLF, a header row.
def write_excel_unicode_text(path: Path, header: Sequence[str], rows: Rows) -> Path:
    body = "".join("\t".join(row) + "\r\n" for row in [header, *rows])
    path.write_bytes(b"\xff\xfe" + body.encode("utf-16-le"))
    return path


def test_excel_unicode_text_is_named_with_the_fix(tmp_path: Path) -> None:
    path = write_excel_unicode_text(tmp_path / "Sales.Customer.csv", CUSTOMER.column_names, CUSTOMER_ROWS)
    with raises_source_error(
        'Sales.Customer.csv: tab-delimited UTF-16 text (what Excel saves as "Unicode Text"), which '
        'dataops does not read; in Excel, save it as "CSV UTF-8 (Comma delimited)" instead'
    ) as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


@pytest.mark.parametrize(
    ("encode", "iconv"),
    [
        (lambda text: b"\xff\xfe" + text.encode("utf-16-le"), "iconv -f UTF-16 -t UTF-8"),
        (lambda text: b"\xfe\xff" + text.encode("utf-16-be"), "iconv -f UTF-16 -t UTF-8"),
        (lambda text: text.encode("utf-16-le"), "iconv -f UTF-16LE -t UTF-8"),
    ],
    ids=["le-bom", "be-bom", "le-no-bom"],
)
def test_utf16_comma_csv_is_named_with_the_conversion(
    tmp_path: Path, encode: Callable[[str], bytes], iconv: str
) -> None:
    utf8 = write_customer_csv(tmp_path).read_bytes().decode("utf-8")
    path = tmp_path / "Sales.Customer.csv"
    path.write_bytes(encode(utf8))
    with raises_source_error(
        "Sales.Customer.csv: a UTF-16 comma CSV, which dataops does not read (a CSV must be UTF-8); "
        f"convert it to UTF-8, e.g. with `{iconv}`"
    ):
        read_source_file(path, CUSTOMER)


def test_utf16_text_of_no_known_layout_names_what_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "Customer.csv"
    path.write_bytes(b"\xff\xfe" + "1 AW00000001\r\n".encode("utf-16-le"))
    with raises_source_error(
        "Customer.csv line 1: UTF-16 text without the +| field separator of Microsoft's widechar "
        "format; expected a widechar file (fields separated by +|, rows ending in &|)"
    ):
        read_source_file(path, CUSTOMER)


def test_crcrlf_line_ends_name_the_stray_carriage_return(tmp_path: Path) -> None:
    path = write_customer_csv(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\r\r\n"))
    with raises_source_error(
        "Sales.Customer.csv line 1: the line ends in \\r\\r\\n, a stray carriage return before the "
        "line break (converted to Windows line ends twice?); save the file with \\r\\n "
        "or \\n line ends"
    ) as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


def test_one_crcrlf_line_is_named_by_its_line(tmp_path: Path) -> None:
    path = write_customer_csv(tmp_path)
    data = path.read_bytes()
    second_row_end = data.index(b"\r\n", data.index(b"AW00000002"))
    path.write_bytes(data[:second_row_end] + b"\r" + data[second_row_end:])
    with raises_source_error(
        "Sales.Customer.csv line 3: the line ends in \\r\\r\\n, a stray carriage return before the line break"
    ):
        read_source_file(path, CUSTOMER)


def test_crcrlf_in_a_char_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "Customer.csv"
    path.write_bytes("".join("\t".join(row) + "\r\r\n" for row in CUSTOMER_CHAR_ROWS).encode())
    with raises_source_error("Customer.csv line 1: the line ends in \\r\\r\\n, a stray carriage return"):
        read_source_file(path, CUSTOMER)


def test_crcrlf_in_a_widechar_file_is_named(tmp_path: Path) -> None:
    path = write_widechar(tmp_path / "Store.csv", store_widechar_rows())
    text = path.read_bytes().decode("utf-16")
    path.write_bytes(b"\xff\xfe" + text.replace("&|\r\n", "&|\r\r\n").encode("utf-16-le"))
    with raises_source_error(
        "Store.csv line 1: the row ends in &|\\r\\r\\n, a stray carriage return before the line "
        "break; save the file with &| and \\r\\n (or \\n) at the end of each row"
    ):
        read_source_file(path, STORE)


@pytest.mark.parametrize(
    ("write", "where_line_breaks_go"),
    [
        (write_customer_csv, "a value may hold a line break only inside double quotes"),
        (lambda folder: write_char(folder / "Customer.csv", CUSTOMER_CHAR_ROWS),
         "values in a tab-delimited file cannot hold line breaks"),
    ],
    ids=["comma", "char"],
)  # fmt: skip
def test_a_lone_carriage_return_inside_a_line_is_named_by_line_and_character(
    tmp_path: Path, write: Callable[[Path], Path], where_line_breaks_go: str
) -> None:
    path = write(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"AW00000002", b"AW0000\r0002", 1))
    line = 3 if path.name == "Sales.Customer.csv" else 2
    with raises_source_error(
        f"{path.name} line {line}, character 17: a carriage return (\\r) that is not part of a "
        f"\\r\\n line break; remove it ({where_line_breaks_go})"
    ):
        read_source_file(path, CUSTOMER)


def test_a_carriage_return_inside_a_quoted_value_is_data(tmp_path: Path) -> None:
    rows = [[*row[:4], f"AW0000\r{row[4][6:]}", *row[5:]] for row in CUSTOMER_ROWS]
    table = read_source_file(write_customer_csv(tmp_path, rows), CUSTOMER)
    assert table.column("AccountNumber").to_pylist() == ["AW0000\r0001", "AW0000\r0002", "AW0000\r1000"]


def test_old_mac_line_ends_are_named(tmp_path: Path) -> None:
    path = write_customer_csv(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"\r\n", b"\r"))
    with raises_source_error(
        "Sales.Customer.csv: lines end in \\r alone (old Mac line ends); save the file with \\r\\n or \\n line ends"
    ):
        read_source_file(path, CUSTOMER)


def test_parquet_with_a_renamed_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "Sales.Customer.parquet"
    renamed = [*CUSTOMER.column_names[:5], "rowguuid", "ModifiedDate"]
    pq.write_table(expected_customers().rename_columns(renamed), path)
    with raises_source_error(
        "Sales.Customer.parquet: columns do not match Sales.Customer (missing rowguid; unexpected "
        "rowguuid; renamed columns?); expected columns CustomerID, PersonID"
    ) as error:
        read_source_file(path, CUSTOMER)
    assert_one_line(error)


def test_parquet_impossible_casts_are_named(tmp_path: Path) -> None:
    path = tmp_path / "Sales.SalesTerritory.parquet"
    sample = [[SAMPLE_VALUES[c.type] for c in TERRITORY.columns]]
    good = read_source_file(write_comma(tmp_path / "t.csv", TERRITORY.column_names, sample), TERRITORY)
    floats = good.set_column(4, "SalesYTD", pa.array([1.5], pa.float64()))
    pq.write_table(floats, path)
    with raises_source_error(
        "Sales.SalesTerritory.parquet, column SalesYTD: stored as double; expected decimal128(19, 4)"
    ):
        read_source_file(path, TERRITORY)
    too_big = good.set_column(0, "TerritoryID", pa.array([2**40], pa.int64()))
    pq.write_table(too_big, path)
    with raises_source_error("Sales.SalesTerritory.parquet row 1, column TerritoryID: '1099511627776'"):
        read_source_file(path, TERRITORY)
    strings = good.set_column(0, "TerritoryID", pa.array(["one"]))
    pq.write_table(strings, path)
    with raises_source_error("Sales.SalesTerritory.parquet row 1, column TerritoryID: 'one' is not an int"):
        read_source_file(path, TERRITORY)
    nulls = good.set_column(1, "Name", pa.array([None], pa.string()))
    pq.write_table(nulls, path)
    with raises_source_error("Sales.SalesTerritory.parquet row 1, column Name: empty value"):
        read_source_file(path, TERRITORY)


def test_parquet_name_without_parquet_content(tmp_path: Path) -> None:
    path = tmp_path / "Sales.Customer.parquet"
    path.write_text("CustomerID\n")
    with raises_source_error("Sales.Customer.parquet: not a Parquet file"):
        read_source_file(path, CUSTOMER)


def test_every_contract_type_is_covered_by_the_samples() -> None:
    assert set(SAMPLE_VALUES) == set(ColumnType)
