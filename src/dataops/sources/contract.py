"""The contract for the ten AdventureWorks OLTP tables the pipeline reads.

Column names, order and types follow Microsoft's `instawdb.sql`, so the loaded tables look like the
AdventureWorks2014 database a SQL Server user already has. Every reader, the generator and every
warehouse module type their data from this one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pyarrow as pa


class ColumnType(Enum):
    """Logical column types; each maps to one Arrow type and one SQL type per engine."""

    TINYINT = "tinyint"
    SMALLINT = "smallint"
    INT = "int"
    BIT = "bit"
    MONEY = "money"
    LINE_TOTAL = "numeric(38,6)"
    WEIGHT = "decimal(8,2)"
    DATETIME = "datetime"
    STRING = "string"
    GUID = "uniqueidentifier"

    @property
    def arrow(self) -> pa.DataType:
        return _ARROW_TYPES[self]


_ARROW_TYPES: dict[ColumnType, pa.DataType] = {
    # tinyint is unsigned in SQL Server; int16 holds it on engines without a tinyint.
    ColumnType.TINYINT: pa.int16(),
    ColumnType.SMALLINT: pa.int16(),
    ColumnType.INT: pa.int32(),
    ColumnType.BIT: pa.bool_(),
    # SQL Server money is an exact decimal(19,4); never a float.
    ColumnType.MONEY: pa.decimal128(19, 4),
    ColumnType.LINE_TOTAL: pa.decimal128(38, 6),
    ColumnType.WEIGHT: pa.decimal128(8, 2),
    ColumnType.DATETIME: pa.timestamp("ms"),
    ColumnType.STRING: pa.string(),
    ColumnType.GUID: pa.string(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    nullable: bool = False


@dataclass(frozen=True)
class SourceTable:
    schema: str
    name: str
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        """`Schema.Table`, as in the file names and in SQL Server."""
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type.arrow, nullable=c.nullable) for c in self.columns])


T = ColumnType


def _c(name: str, type_: ColumnType, nullable: bool = False) -> Column:
    return Column(name, type_, nullable)


_ROWGUID_MODIFIED = (_c("rowguid", T.GUID), _c("ModifiedDate", T.DATETIME))

SOURCE_TABLES: tuple[SourceTable, ...] = (
    SourceTable(
        "Sales",
        "Customer",
        (
            _c("CustomerID", T.INT),
            _c("PersonID", T.INT, True),
            _c("StoreID", T.INT, True),
            _c("TerritoryID", T.INT, True),
            _c("AccountNumber", T.STRING),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Sales",
        "SalesOrderHeader",
        (
            _c("SalesOrderID", T.INT),
            _c("RevisionNumber", T.TINYINT),
            _c("OrderDate", T.DATETIME),
            _c("DueDate", T.DATETIME),
            _c("ShipDate", T.DATETIME, True),
            _c("Status", T.TINYINT),
            _c("OnlineOrderFlag", T.BIT),
            _c("SalesOrderNumber", T.STRING),
            _c("PurchaseOrderNumber", T.STRING, True),
            _c("AccountNumber", T.STRING, True),
            _c("CustomerID", T.INT),
            _c("SalesPersonID", T.INT, True),
            _c("TerritoryID", T.INT, True),
            _c("BillToAddressID", T.INT),
            _c("ShipToAddressID", T.INT),
            _c("ShipMethodID", T.INT),
            _c("CreditCardID", T.INT, True),
            _c("CreditCardApprovalCode", T.STRING, True),
            _c("CurrencyRateID", T.INT, True),
            _c("SubTotal", T.MONEY),
            _c("TaxAmt", T.MONEY),
            _c("Freight", T.MONEY),
            _c("TotalDue", T.MONEY),
            _c("Comment", T.STRING, True),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Sales",
        "SalesOrderDetail",
        (
            _c("SalesOrderID", T.INT),
            _c("SalesOrderDetailID", T.INT),
            _c("CarrierTrackingNumber", T.STRING, True),
            _c("OrderQty", T.SMALLINT),
            _c("ProductID", T.INT),
            _c("SpecialOfferID", T.INT),
            _c("UnitPrice", T.MONEY),
            _c("UnitPriceDiscount", T.MONEY),
            _c("LineTotal", T.LINE_TOTAL),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Sales",
        "Store",
        (
            _c("BusinessEntityID", T.INT),
            _c("Name", T.STRING),
            _c("SalesPersonID", T.INT, True),
            _c("Demographics", T.STRING, True),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Sales",
        "SalesTerritory",
        (
            _c("TerritoryID", T.INT),
            _c("Name", T.STRING),
            _c("CountryRegionCode", T.STRING),
            _c("Group", T.STRING),
            _c("SalesYTD", T.MONEY),
            _c("SalesLastYear", T.MONEY),
            _c("CostYTD", T.MONEY),
            _c("CostLastYear", T.MONEY),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Person",
        "Person",
        (
            _c("BusinessEntityID", T.INT),
            _c("PersonType", T.STRING),
            _c("NameStyle", T.BIT),
            _c("Title", T.STRING, True),
            _c("FirstName", T.STRING),
            _c("MiddleName", T.STRING, True),
            _c("LastName", T.STRING),
            _c("Suffix", T.STRING, True),
            _c("EmailPromotion", T.INT),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Person",
        "EmailAddress",
        (
            _c("BusinessEntityID", T.INT),
            _c("EmailAddressID", T.INT),
            _c("EmailAddress", T.STRING, True),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Production",
        "Product",
        (
            _c("ProductID", T.INT),
            _c("Name", T.STRING),
            _c("ProductNumber", T.STRING),
            _c("MakeFlag", T.BIT),
            _c("FinishedGoodsFlag", T.BIT),
            _c("Color", T.STRING, True),
            _c("SafetyStockLevel", T.SMALLINT),
            _c("ReorderPoint", T.SMALLINT),
            _c("StandardCost", T.MONEY),
            _c("ListPrice", T.MONEY),
            _c("Size", T.STRING, True),
            _c("SizeUnitMeasureCode", T.STRING, True),
            _c("WeightUnitMeasureCode", T.STRING, True),
            _c("Weight", T.WEIGHT, True),
            _c("DaysToManufacture", T.INT),
            _c("ProductLine", T.STRING, True),
            _c("Class", T.STRING, True),
            _c("Style", T.STRING, True),
            _c("ProductSubcategoryID", T.INT, True),
            _c("ProductModelID", T.INT, True),
            _c("SellStartDate", T.DATETIME),
            _c("SellEndDate", T.DATETIME, True),
            _c("DiscontinuedDate", T.DATETIME, True),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Production",
        "ProductSubcategory",
        (
            _c("ProductSubcategoryID", T.INT),
            _c("ProductCategoryID", T.INT),
            _c("Name", T.STRING),
            *_ROWGUID_MODIFIED,
        ),
    ),
    SourceTable(
        "Production",
        "ProductCategory",
        (
            _c("ProductCategoryID", T.INT),
            _c("Name", T.STRING),
            *_ROWGUID_MODIFIED,
        ),
    ),
)

SOURCE_TABLES_BY_NAME: dict[str, SourceTable] = {t.qualified_name: t for t in SOURCE_TABLES}
