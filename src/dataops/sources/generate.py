"""Deterministic synthetic AdventureWorks OLTP data for the ten tables in `dataops.sources.contract`.

`generate_tables(scale)` builds every table in memory with NumPy and `pyarrow.compute`; there is
no per-row Python code, so scale 100 (about 3.1 million orders and 12 million order lines) takes
seconds. Scale 1 has about the row counts of the real sample. The same `(scale, seed, as_of)`
always gives the same tables, and `write_tables` then writes byte-identical files.

Money is exact: amounts are computed as int64 counts of 1e-4 (money) or 1e-6 (LineTotal) and
turned into decimal128 arrays from those integers directly, never through a float. The invariants
the warehouse relies on hold on every row:

- LineTotal = OrderQty * UnitPrice * (1 - UnitPriceDiscount), exactly, at 6 decimals
- SubTotal = SUM(LineTotal) of the order rounded half up to 4 decimals
- TaxAmt = round(SubTotal * 0.08, 4), Freight = round(SubTotal * 0.025, 4)
- TotalDue = SubTotal + TaxAmt + Freight

Dates are relative to `as_of`, so freshness checks pass on freshly generated data: orders cover
the three years before `as_of`, the newest order's ModifiedDate is `as_of` exactly, customers were
modified in the last 30 days (the newest exactly at `as_of`) and no ModifiedDate, OrderDate or
ShipDate lies after `as_of`. Only DueDate (OrderDate + 12 days) can lie after it.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dataops.core.errors import DataOpsError
from dataops.sources.contract import SOURCE_TABLES, SOURCE_TABLES_BY_NAME
from dataops.sources.edits import (
    LINE_TOTAL,
    decimal,
    ids,
    ms,
    replace_rows,
    round_div,
    set_order_money,
    timestamps,
    units,
)
from dataops.sources.readers import find_source_file

__all__ = ["FILE_FORMATS", "MAX_SCALE", "folder_format", "generate_tables", "next_day", "write_tables"]

MAX_SCALE = 1000.0
"""Larger scales are refused: scale 1000 is already about 121 million order lines."""

FILE_FORMATS = ("parquet", "csv")

_EARLIEST_AS_OF = datetime(2010, 1, 1)
"""Every generated date lies within about seven years before `as_of`, so this keeps them all on
or after 2000-01-01."""

# ---------------------------------------------------------------------------------------------
# Sizes at scale 1 (the real sample) and the fixed dimensions
# ---------------------------------------------------------------------------------------------

_N_STORES = 701
_N_STORE_CONTACT_CUSTOMERS = 635  # customers with a store and a contact person
_N_INDIVIDUALS = 18_484  # customers with a person and no store
_N_ONLINE_ORDERS = 27_659
_N_RESELLER_ORDERS = 3_806
_N_EMPLOYEES = 273  # PersonType EM, not customers
_N_SALES_PEOPLE = 17  # PersonType SP, fixed: they sell to the stores
_N_STORE_CONTACTS = 753  # PersonType SC; some are not customers
_N_VENDOR_CONTACTS = 156  # PersonType VC
_N_GENERAL_CONTACTS = 289  # PersonType GC
_N_PRODUCTS = 504

_FIRST_SALES_ORDER_ID = 43_659
_ORDER_WINDOW_DAYS = 3 * 365
_CUSTOMER_WINDOW_MS = 30 * 86_400_000  # customers were modified in the last 30 days
_DAY = 86_400_000  # milliseconds

_CHUNK_ROWS = 1 << 21
"""Rows per chunk when writing CSV, to bound peak memory."""

_GUID_CHUNK_ROWS = 1 << 17
"""Rows per chunk of GUIDs: small enough that the scratch arrays are reused, not re-mapped."""

_MAX_STRING_BYTES = (1 << 31) - 1
"""An Arrow `string` array holds at most this many bytes (int32 offsets)."""

# ---------------------------------------------------------------------------------------------
# Vocabularies (invented, apart from the AdventureWorks territory names)
# ---------------------------------------------------------------------------------------------

_TERRITORIES: tuple[tuple[str, str, str], ...] = (
    ("Northwest", "US", "North America"),
    ("Northeast", "US", "North America"),
    ("Central", "US", "North America"),
    ("Southwest", "US", "North America"),
    ("Southeast", "US", "North America"),
    ("Canada", "CA", "North America"),
    ("France", "FR", "Europe"),
    ("Germany", "DE", "Europe"),
    ("Australia", "AU", "Pacific"),
    ("United Kingdom", "GB", "Europe"),
)
# Share of individual and of store customers per territory (TerritoryID 1..10).
_INDIVIDUAL_TERRITORY_P = (0.17, 0.005, 0.005, 0.23, 0.005, 0.09, 0.10, 0.10, 0.19, 0.105)
_STORE_TERRITORY_P = (0.12, 0.07, 0.09, 0.17, 0.09, 0.16, 0.07, 0.06, 0.07, 0.10)

_CATEGORIES = ("Bikes", "Components", "Clothing", "Accessories")


class _Sub(NamedTuple):
    """One product subcategory and how to invent its products."""

    name: str
    category: int  # ProductCategoryID
    products: int
    code: str  # two letters, the start of ProductNumber
    base: str  # the product name stem
    numbered: bool  # "Base-100" model names (bikes, frames) instead of "LL Base"
    price_lo: int  # ListPrice range in whole currency units
    price_hi: int
    cost_permille: int  # StandardCost as a share of ListPrice
    colors: tuple[int, int]  # (first index into _COLORS, how many); (0, 0) = no colour
    sizes: tuple[int, int]  # (first index into _SIZES, how many); (0, 0) = no size
    weight: tuple[int, int, int]  # (unit: 0 none, 1 LB, 2 G; low, high in 1/100 of the unit)
    line: str | None  # ProductLine
    style: str | None
    make: bool  # MakeFlag
    days: int  # DaysToManufacture
    stock: int  # SafetyStockLevel; ReorderPoint is 3/4 of it
    online_share: float  # share of online orders whose first line is from this subcategory


_COLORS = ("Black", "Silver", "Red", "Yellow", "Blue", "Multi", "White", "Silver/Black", "Grey")
# fmt: off
_SIZES = (
    "38", "40", "42", "44", "46", "48", "50", "52", "54", "56", "58", "60", "62",
    "S", "M", "L", "XL",
)
# fmt: on
_SIZE_FRAME_END = 13  # sizes before this index are frame sizes in centimetres

_W0 = (0, 0, 0)
# fmt: off
_SUBCATEGORIES: tuple[_Sub, ...] = (
    _Sub("Mountain Bikes", 1, 32, "BK", "Mountain", True, 540, 3400, 560, (0, 2), (0, 5),
         (1, 2300, 2900), "M ", "U ", True, 4, 100, 18.0),
    _Sub("Road Bikes", 1, 43, "BK", "Road", True, 540, 3580, 620, (0, 5), (3, 6),
         (1, 1500, 2300), "R ", "U ", True, 4, 100, 25.0),
    _Sub("Touring Bikes", 1, 22, "BK", "Touring", True, 740, 2390, 620, (3, 2), (2, 5),
         (1, 2500, 3100), "T ", "U ", True, 4, 100, 12.0),
    _Sub("Handlebars", 2, 8, "HB", "Handlebars", False, 44, 121, 444, (0, 0), (0, 0),
         _W0, None, None, True, 1, 500, 0.0),
    _Sub("Bottom Brackets", 2, 3, "BB", "Bottom Bracket", False, 53, 122, 444, (0, 0), (0, 0),
         (2, 16800, 22300), None, None, True, 1, 500, 0.0),
    _Sub("Brakes", 2, 2, "BR", "Brake Set", False, 106, 107, 444, (1, 1), (0, 0),
         (2, 31700, 31800), "R ", None, True, 1, 500, 0.0),
    _Sub("Chains", 2, 1, "CH", "Chain", False, 20, 35, 444, (1, 1), (0, 0),
         _W0, "R ", None, False, 0, 500, 0.0),
    _Sub("Cranksets", 2, 3, "CS", "Crankset", False, 175, 405, 444, (0, 1), (0, 0),
         (2, 60000, 65000), "R ", None, True, 1, 500, 0.0),
    _Sub("Derailleurs", 2, 2, "DR", "Derailleur", False, 91, 122, 444, (1, 1), (0, 0),
         (2, 8800, 9700), "R ", None, True, 1, 500, 0.0),
    _Sub("Forks", 2, 3, "FK", "Fork", False, 148, 230, 444, (0, 0), (0, 0),
         _W0, "R ", "U ", True, 1, 500, 0.0),
    _Sub("Headsets", 2, 3, "HS", "Headset", False, 34, 125, 444, (0, 0), (0, 0),
         _W0, "R ", None, True, 1, 500, 0.0),
    _Sub("Mountain Frames", 2, 28, "FR", "Mountain Frame", True, 250, 1365, 530, (0, 2),
         (0, 5), (1, 235, 300), "M ", "U ", True, 1, 500, 0.0),
    _Sub("Pedals", 2, 7, "PD", "Pedal", False, 40, 81, 444, (1, 2), (0, 0),
         (2, 14900, 21800), "M ", None, True, 1, 500, 0.0),
    _Sub("Road Frames", 2, 33, "FR", "Road Frame", True, 337, 1432, 600, (0, 5), (3, 6),
         (1, 200, 300), "R ", "U ", True, 1, 500, 0.0),
    _Sub("Saddles", 2, 9, "SE", "Saddle", False, 27, 53, 444, (0, 0), (0, 0),
         _W0, "M ", None, True, 1, 500, 0.0),
    _Sub("Touring Frames", 2, 18, "FR", "Touring Frame", True, 333, 1004, 600, (3, 2), (2, 5),
         (1, 300, 370), "T ", "U ", True, 1, 500, 0.0),
    _Sub("Wheels", 2, 14, "WH", "Wheel", False, 60, 357, 444, (0, 0), (0, 0),
         (1, 90, 150), "M ", None, True, 1, 500, 0.0),
    _Sub("Bib-Shorts", 3, 3, "SB", "Bib-Shorts", False, 89, 90, 412, (5, 1), (13, 3),
         _W0, "S ", "M ", False, 0, 4, 1.0),
    _Sub("Caps", 3, 1, "CA", "Logo Cap", False, 8, 9, 770, (5, 1), (0, 0),
         _W0, "S ", "U ", False, 0, 4, 3.0),
    _Sub("Gloves", 3, 6, "GL", "Gloves", False, 24, 38, 400, (0, 1), (13, 3),
         _W0, "S ", "U ", False, 0, 4, 2.0),
    _Sub("Jerseys", 3, 8, "LJ", "Jersey", False, 49, 54, 770, (5, 2), (13, 4),
         _W0, "S ", "U ", False, 0, 4, 4.0),
    _Sub("Shorts", 3, 7, "SH", "Sports Shorts", False, 59, 70, 400, (0, 1), (13, 4),
         _W0, "S ", "M ", False, 0, 4, 2.0),
    _Sub("Socks", 3, 4, "SO", "Bike Socks", False, 8, 10, 370, (6, 1), (13, 2),
         _W0, "M ", "U ", False, 0, 4, 1.0),
    _Sub("Tights", 3, 3, "TG", "Tights", False, 74, 75, 412, (0, 1), (13, 3),
         _W0, "S ", "W ", False, 0, 4, 1.0),
    _Sub("Vests", 3, 3, "VE", "Vest", False, 63, 64, 374, (4, 1), (13, 3),
         _W0, "S ", "U ", False, 0, 4, 1.0),
    _Sub("Bike Racks", 4, 1, "RA", "Hitch Rack", False, 120, 121, 374, (0, 0), (0, 0),
         _W0, "S ", None, False, 0, 4, 0.5),
    _Sub("Bike Stands", 4, 1, "ST", "Bike Stand", False, 159, 160, 374, (0, 0), (0, 0),
         _W0, "M ", None, False, 0, 4, 0.5),
    _Sub("Bottles and Cages", 4, 3, "WB", "Water Bottle", False, 4, 10, 374, (0, 0), (0, 0),
         _W0, "S ", None, False, 0, 4, 6.0),
    _Sub("Cleaners", 4, 1, "CL", "Bike Wash", False, 7, 8, 374, (0, 0), (0, 0),
         _W0, "S ", None, False, 0, 4, 2.0),
    _Sub("Fenders", 4, 1, "FE", "Fender Set", False, 21, 22, 374, (0, 0), (0, 0),
         _W0, "M ", None, False, 0, 4, 2.0),
    _Sub("Helmets", 4, 3, "HL", "Helmet", False, 34, 35, 374, (0, 3), (0, 0),
         _W0, "S ", None, False, 0, 4, 8.0),
    _Sub("Hydration Packs", 4, 1, "HY", "Hydration Pack", False, 54, 55, 374, (1, 1), (0, 0),
         _W0, "S ", "U ", False, 0, 4, 1.5),
    _Sub("Lights", 4, 3, "LT", "Bike Light", False, 13, 45, 412, (0, 0), (0, 0),
         _W0, "R ", None, False, 0, 4, 1.0),
    _Sub("Locks", 4, 1, "LO", "Cable Lock", False, 25, 26, 412, (0, 0), (0, 0),
         _W0, "S ", None, False, 0, 4, 1.0),
    _Sub("Panniers", 4, 1, "PA", "Panniers", False, 125, 126, 412, (8, 1), (0, 0),
         _W0, "T ", None, False, 0, 4, 0.5),
    _Sub("Pumps", 4, 2, "PU", "Minipump", False, 19, 25, 412, (1, 1), (0, 0),
         _W0, "S ", None, False, 0, 4, 1.0),
    _Sub("Tires and Tubes", 4, 11, "TT", "Tire", False, 2, 35, 374, (0, 0), (0, 0),
         _W0, "S ", None, False, 0, 4, 6.0),
)
# fmt: on
# fmt: off
_MODEL_TIERS = (
    "LL", "ML", "HL", "Sport", "Classic", "Pro", "Team", "Elite", "Trail", "Urban", "Race",
    "Expert", "Comp", "Touring", "Light", "Heavy-Duty",
)
# fmt: on
# fmt: off
_PART_NAMES = (
    ("Hex Nut", "HN"), ("Lock Nut", "LN"), ("Flat Washer", "FW"), ("Lock Washer", "LW"),
    ("Thin-Jam Hex Nut", "HJ"), ("Metal Plate", "MP"), ("Metal Sheet", "MS"), ("Spokes", "SK"),
    ("Chainring Bolts", "CB"), ("Chainring Nut", "CN"), ("Bearing Ball", "BA"),
    ("Cone-Shaped Race", "RA"),
    ("Crown Race", "CR"), ("Decal", "DC"), ("Down Tube", "DT"), ("Fork Crown", "FC"),
    ("Fork End", "FE"), ("Freewheel", "FH"), ("Guide Pulley", "GP"), ("Head Tube", "HT"),
    ("Internal Lock Washer", "IL"), ("Keyed Washer", "KW"), ("Lower Head Race", "LR"),
    ("Mountain End Caps", "EC"), ("Pinch Bolt", "PB"), ("Reflector", "RF"), ("Rim", "RM"),
    ("Seat Lug", "SL"), ("Seat Stays", "SS"), ("Stem", "SM"), ("Tension Pulley", "TP"),
    ("Top Tube", "TO"), ("Touring End Caps", "TE"), ("Adjustable Race", "AR"),
)
# fmt: on

# fmt: off
_FIRST_NAMES_MALE = (
    "James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Thomas",
    "Charles", "Daniel", "Matthew", "Anthony", "Mark", "Donald", "Steven", "Paul", "Andrew",
    "Joshua", "Kenneth", "Kevin", "Brian", "George", "Edward", "Ronald", "Timothy", "Jason",
    "Jeffrey", "Ryan", "Jacob", "Gary", "Nicholas", "Eric", "Jonathan", "Stephen", "Larry",
    "Justin", "Scott", "Brandon", "Benjamin", "Samuel", "Gregory", "Alexander", "Patrick",
    "Jack", "Dennis", "Jerry", "Tyler", "Aaron", "Jose", "Adam", "Nathan", "Henry", "Zachary",
    "Carlos", "Luis", "Miguel", "Pierre", "Hans", "Lukas", "Oliver", "Liam", "Noah", "Ethan",
    "Lucas", "Mason", "Logan", "Isaac", "Dylan", "Caleb", "Hunter", "Jesse", "Ian", "Blake",
)
# fmt: on
# fmt: off
_FIRST_NAMES_FEMALE = (
    "Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Barbara", "Susan", "Jessica",
    "Sarah", "Karen", "Lisa", "Nancy", "Betty", "Margaret", "Sandra", "Ashley", "Kimberly",
    "Emily", "Donna", "Michelle", "Carol", "Amanda", "Dorothy", "Melissa", "Deborah",
    "Stephanie", "Rebecca", "Sharon", "Laura", "Cynthia", "Kathleen", "Amy", "Angela",
    "Shirley", "Anna", "Brenda", "Pamela", "Emma", "Nicole", "Helen", "Samantha", "Katherine",
    "Christine", "Debra", "Rachel", "Carolyn", "Janet", "Catherine", "Maria", "Heather",
    "Diane", "Julie", "Joyce", "Victoria", "Kelly", "Christina", "Lauren", "Joan", "Evelyn",
    "Olivia", "Sophia", "Isabella", "Chloe", "Grace", "Natalie", "Hannah", "Abigail", "Marie",
    "Claire", "Ana", "Sofia", "Lucia", "Elena", "Julia",
)
# fmt: on
# fmt: off
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Sanchez",
    "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King", "Wright",
    "Scott", "Torres", "Nguyen", "Hill", "Flores", "Green", "Adams", "Nelson", "Baker", "Hall",
    "Rivera", "Campbell", "Mitchell", "Carter", "Roberts", "Gomez", "Phillips", "Evans",
    "Turner", "Diaz", "Parker", "Cruz", "Edwards", "Collins", "Reyes", "Stewart", "Morris",
    "Morales", "Murphy", "Cook", "Rogers", "Gutierrez", "Ortiz", "Morgan", "Cooper", "Peterson",
    "Bailey", "Reed", "Kelly", "Howard", "Ramos", "Kim", "Cox", "Ward", "Richardson", "Watson",
    "Brooks", "Chavez", "Wood", "James", "Bennett", "Gray", "Mendoza", "Ruiz", "Hughes",
    "Price", "Alvarez", "Castillo", "Sanders", "Patel", "Myers", "Long", "Ross", "Foster",
    "Jimenez", "Zhang", "Wang", "Li", "Chen", "Liu", "Yang", "Huang", "Zhao", "Wu", "Zhou",
    "Dubois", "Lefebvre", "Moreau", "Laurent", "Fournier", "Schmidt", "Schneider", "Fischer",
    "Weber", "Becker", "Hoffmann", "Sánchez", "Muñoz", "Müller", "Schäfer", "Lemaître",
)
# fmt: on
_MIDDLE_INITIALS = tuple("ABCDEFGHIJKLMNOPRSTVW")
_FIRST_NAMES = _FIRST_NAMES_MALE + _FIRST_NAMES_FEMALE
_FIRST_NAMES_LOWER = tuple(name.lower() for name in _FIRST_NAMES)
_SUFFIXES = ("Jr.", "Sr.", "II", "III", "IV", "PhD")
# fmt: off
_STORE_WORDS_1 = (
    "Next-Door", "Professional", "Riverside", "Friendly", "Valley", "Downtown", "Coastal",
    "Mountain", "Urban", "Village", "Neighborhood", "Metro", "Pedal", "Two-Wheel", "Trailhead",
    "Summit", "Lakeside", "Central", "Family", "Premier", "Quality", "Express", "Classic",
    "Modern", "Sunset", "Northern", "Southern", "Eastside", "Westside", "Hilltop",
)
# fmt: on
# fmt: off
_STORE_WORDS_2 = (
    "Bike Store", "Sales and Service", "Cycles", "Bike Shop", "Sporting Goods", "Outfitters",
    "Bicycle Supply", "Bike Works", "Cycle Center", "Parts Shop", "Wheels", "Repair",
    "Sports Depot", "Bike Company", "Cycle Store", "Distributors", "Bike Outlet",
)
# fmt: on
# fmt: off
_BANKS = (
    "United Security", "International Bank", "Primary International", "Guardian Bank",
    "Reserve Security", "International Security", "Primary Bank & Reserve",
)
# fmt: on
_BUSINESS_TYPES = ("BM", "BS", "OS")
_SPECIALTIES = ("Mountain", "Road", "Touring")
_BRANDS = ("1", "2", "3", "4+", "AW")
_INTERNET = ("ISDN", "DSL", "T1", "T2", "T3", "56kb")

# UnitPriceDiscount in whole percent (so LineTotal stays exact at 6 decimals) and its offer.
_DISCOUNT_PERCENT = np.array([0, 2, 5, 10, 15, 20, 30, 35, 40], dtype=np.int64)
_DISCOUNT_OFFER_ID = np.array([1, 2, 3, 4, 13, 14, 9, 7, 16], dtype=np.int32)
_RESELLER_DISCOUNT_P = (0.945, 0.021, 0.01, 0.005, 0.01, 0.004, 0.001, 0.002, 0.002)
_ONLINE_LINES_P = (0.35, 0.30, 0.35)  # 1, 2 or 3 lines
_RESELLER_MAX_LINES = 34
_RESELLER_MAX_QTY = 44


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def generate_tables(scale: float, seed: int = 42, as_of: datetime | None = None) -> dict[str, pa.Table]:
    """Generate the ten source tables, keyed `Schema.Table` in `SOURCE_TABLES` order.

    `scale` 1 gives about the row counts of the real AdventureWorks sample (31,465 orders); the
    product, category, subcategory and territory tables keep their fixed size. `as_of` is the
    moment the data is "current" at: a naive datetime in UTC (an aware one is converted),
    truncated to the millisecond; by default the current UTC time truncated to the second.
    """
    scale = _check_scale(scale)
    seed = _check_seed(seed)
    as_of = _check_as_of(as_of)
    as_of_ms = _epoch_ms(as_of)
    rngs = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(seed).spawn(8)]
    sizes = _Sizes.of(scale)

    categories, subcategories, products, catalog = _products(rngs[0], as_of_ms)
    territories = _territories(rngs[1], as_of_ms)
    people = _people(rngs[2], sizes, as_of_ms)
    stores, store_territory, store_sales_person = _stores(rngs[3], sizes, people, as_of_ms)
    customers, cust = _customers(rngs[4], sizes, people, store_territory, as_of_ms)
    headers, details = _orders(rngs[5], sizes, cust, store_sales_person, catalog, as_of_ms)

    tables = {
        "Sales.Customer": customers,
        "Sales.SalesOrderHeader": headers,
        "Sales.SalesOrderDetail": details,
        "Sales.Store": stores,
        "Sales.SalesTerritory": territories,
        "Person.Person": people.person,
        "Person.EmailAddress": people.email,
        "Production.Product": products,
        "Production.ProductSubcategory": subcategories,
        "Production.ProductCategory": categories,
    }
    return {t.qualified_name: tables[t.qualified_name] for t in SOURCE_TABLES}


def folder_format(folder: Path) -> str:
    """The format the source files in `folder` are in (one per folder, which `dataops load`
    requires): what the next day of them is written in; parquet for any other file."""
    found = find_source_file(folder, SOURCE_TABLES[0]).suffix.lstrip(".").lower()
    return found if found in FILE_FORMATS else "parquet"


def write_tables(tables: dict[str, pa.Table], out_dir: Path, file_format: str = "parquet") -> list[Path]:
    """Write each table to `out_dir/Schema.Table.parquet` (or `.csv`) and return the paths.

    CSV follows the layout of the reference AdventureWorks files: UTF-8, a header row, commas,
    CRLF line ends, RFC 4180 quoting only where needed, NULL as an empty field, datetimes as
    `YYYY-MM-DD HH:MM:SS.fff`, decimals with their full scale and bits as 0/1. Every file is
    written to a temporary file in `out_dir` first, and only once all of them are written are they
    renamed into place: a reader never sees a half-written file, and a write that fails (a full
    disk) leaves the folder as it was, not one table of the new data beside nine of the old. The
    output bytes depend only on the tables.
    """
    fmt = file_format.lower() if isinstance(file_format, str) else file_format
    if fmt not in FILE_FORMATS:
        raise DataOpsError(f"Unknown file format {file_format!r}: use one of {', '.join(FILE_FORMATS)}.")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataOpsError(f"Cannot create the output directory {out_dir}: {exc}") from exc
    for name in tables:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise DataOpsError(f"Cannot write a table named {name!r}: use `Schema.Table`.")
    staged: list[tuple[Path, Path]] = []
    try:
        for name, table in tables.items():
            path = out_dir / f"{name}.{fmt}"
            tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
            staged.append((tmp, path))
            if fmt == "parquet":
                pq.write_table(table, tmp, compression="snappy")
            else:
                _write_csv(table, tmp)
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as exc:
        raise DataOpsError(
            f"Cannot write {staged[-1][1]}: {exc.strerror or exc}; {out_dir} was left as it was"
        ) from exc
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    return [path for _, path in staged]


# ---------------------------------------------------------------------------------------------
# Argument checks and sizes
# ---------------------------------------------------------------------------------------------


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, int | float | np.integer | np.floating):
        raise DataOpsError(f"The scale must be a number, not {scale!r}.")
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
        raise DataOpsError(f"The scale must be a positive number (1 = the real sample), not {scale}.")
    if scale > MAX_SCALE:
        raise DataOpsError(
            f"A scale of {scale:g} is too large: the most is {MAX_SCALE:g} "
            f"(about {round(121_317 * MAX_SCALE):,} order lines)."
        )
    return scale


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataOpsError(f"The seed must be a non-negative integer, not {seed!r}.")
    return int(seed)


def _check_as_of(as_of: datetime | None) -> datetime:
    if as_of is None:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    if not isinstance(as_of, datetime):
        raise DataOpsError(f"as_of must be a datetime, not {as_of!r}.")
    if as_of.tzinfo is not None:
        as_of = as_of.astimezone(UTC).replace(tzinfo=None)
    as_of = as_of.replace(microsecond=as_of.microsecond // 1000 * 1000)
    if as_of < _EARLIEST_AS_OF:
        raise DataOpsError(
            f"as_of {as_of:%Y-%m-%d} is too early: use {_EARLIEST_AS_OF:%Y-%m-%d} or later, "
            "so that every generated date lies after 2000-01-01."
        )
    return as_of


def _epoch_ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _count(real: int, scale: float, minimum: int) -> int:
    return max(minimum, round(real * scale))


class _Sizes(NamedTuple):
    stores: int
    store_contact_customers: int
    individuals: int
    online_orders: int
    reseller_orders: int
    employees: int
    store_contacts: int
    vendor_contacts: int
    general_contacts: int

    @classmethod
    def of(cls, scale: float) -> _Sizes:
        stores = _count(_N_STORES, scale, 3)
        store_contact_customers = min(stores, _count(_N_STORE_CONTACT_CUSTOMERS, scale, 2))
        individuals = _count(_N_INDIVIDUALS, scale, 10)
        return cls(
            stores=stores,
            store_contact_customers=store_contact_customers,
            individuals=individuals,
            online_orders=max(individuals, _count(_N_ONLINE_ORDERS, scale, 10)),
            reseller_orders=max(store_contact_customers, _count(_N_RESELLER_ORDERS, scale, 2)),
            employees=_count(_N_EMPLOYEES, scale, 3),
            store_contacts=max(store_contact_customers, _count(_N_STORE_CONTACTS, scale, 2)),
            vendor_contacts=_count(_N_VENDOR_CONTACTS, scale, 1),
            general_contacts=_count(_N_GENERAL_CONTACTS, scale, 1),
        )


# ---------------------------------------------------------------------------------------------
# Arrow building blocks: exact decimals, timestamps and strings from NumPy
# ---------------------------------------------------------------------------------------------


def _table(name: str, columns: dict[str, pa.Array | pa.ChunkedArray]) -> pa.Table:
    schema = SOURCE_TABLES_BY_NAME[name].arrow_schema
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _validity(valid: np.ndarray | None) -> pa.Buffer | None:
    if valid is None or bool(valid.all()):
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _decimal(units: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """A decimal128 array whose unscaled values are exactly the int64 `units`."""
    units = np.asarray(units, dtype=np.int64)
    words = np.empty((len(units), 2), dtype="<i8")  # 16 bytes, little-endian two's complement
    words[:, 0] = units
    words[:, 1] = units >> 63  # sign extension to 128 bits
    return pa.Array.from_buffers(type_, len(units), [_validity(valid), pa.py_buffer(words)])


def _money(units: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return _decimal(units, pa.decimal128(19, 4), valid)


def _timestamp(ms: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    ms = np.ascontiguousarray(ms, dtype=np.int64)
    return pa.Array.from_buffers(pa.timestamp("ms"), len(ms), [_validity(valid), pa.py_buffer(ms)])


def _int(values: np.ndarray, type_: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    values = np.ascontiguousarray(values, dtype=type_.to_pandas_dtype())
    return pa.Array.from_buffers(type_, len(values), [_validity(valid), pa.py_buffer(values)])


def _int32(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return _int(values, pa.int32(), valid)


def _int16(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    return _int(values, pa.int16(), valid)


def _bool(values: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=bool), type=pa.bool_())


def _full(n: int, value: int) -> np.ndarray:
    return np.full(n, value, dtype=np.int64)


def _fixed_strings(chars: np.ndarray, valid: np.ndarray | None = None) -> pa.Array | pa.ChunkedArray:
    """A string array from an (m, width) uint8 matrix of ASCII. With `valid`, the result has
    len(valid) rows, null where `valid` is False, and `chars` holds only the valid rows, in order.
    Chunked when the bytes would not fit one array's int32 offsets."""
    width = chars.shape[1]
    n = len(chars) if valid is None else len(valid)
    rows_per_chunk = max(1, _MAX_STRING_BYTES // max(width, 1))
    chunks: list[pa.Array] = []
    used = 0  # rows of `chars` consumed so far
    for start in range(0, max(n, 1), rows_per_chunk):  # one pass per 2 GiB, not per row
        stop = min(n, start + rows_per_chunk)
        m = stop - start
        if valid is None:
            offsets = np.arange(0, (m + 1) * width, width, dtype=np.int32)
            part_valid = None
            take = m
        else:
            part_valid = valid[start:stop]
            offsets = np.zeros(m + 1, dtype=np.int32)
            np.cumsum(part_valid.astype(np.int32) * width, out=offsets[1:])
            take = int(part_valid.sum())
        data = np.ascontiguousarray(chars[used : used + take])
        used += take
        chunks.append(pa.StringArray.from_buffers(m, pa.py_buffer(offsets), pa.py_buffer(data), _validity(part_valid)))
    return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks, type=pa.string())


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative `values` as an (n, width) uint8 matrix."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(values, dtype=np.int64)[:, None] // powers) % 10 + 48).astype(np.uint8)


def _prefixed_digits(prefix: str, values: np.ndarray, width: int) -> pa.Array | pa.ChunkedArray:
    """`prefix` + `values` zero-padded to `width` digits, e.g. AW00000001."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    chars = np.empty((len(values), len(head) + width), dtype=np.uint8)
    chars[:, : len(head)] = head
    chars[:, len(head) :] = _digits(values, width)
    return _fixed_strings(chars)


def _hex_table() -> np.ndarray:
    """For every uint16 (two bytes, little-endian), the four upper-case hex digits of its bytes
    in memory order, packed as one little-endian uint32."""
    digits = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)
    byte = np.arange(256)
    pairs = np.stack([digits[byte >> 4], digits[byte & 0x0F]], axis=1)  # (256, 2)
    value = np.arange(65_536)
    quads = np.concatenate([pairs[value & 0xFF], pairs[value >> 8]], axis=1)  # (65536, 4)
    return np.ascontiguousarray(quads).view("<u4").ravel()


_HEX_TABLE = _hex_table()


def _hex(data: np.ndarray) -> np.ndarray:
    """Upper-case hex of an (n, k) uint8 matrix, k even, as an (n, 2k) uint8 matrix of ASCII."""
    pairs = np.ascontiguousarray(data).view("<u2")  # (n, k/2)
    return _HEX_TABLE[pairs].view(np.uint8).reshape(len(data), 2 * data.shape[1])


def _random_bytes(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    return np.frombuffer(rng.bytes(n * width), dtype=np.uint8).reshape(n, width).copy()


def _guids(rng: np.random.Generator, n: int) -> pa.Array | pa.ChunkedArray:
    """`n` random (version 4) GUIDs, upper case without braces."""
    chars = np.empty((n, 36), dtype=np.uint8)
    chars[:, [8, 13, 18, 23]] = ord("-")
    for start in range(0, n, _GUID_CHUNK_ROWS):  # chunks of rows to bound memory, not per row
        raw = _random_bytes(rng, min(_GUID_CHUNK_ROWS, n - start), 16)
        raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
        raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
        hexed = _hex(raw)
        block = chars[start : start + len(raw)]
        block[:, 0:8] = hexed[:, 0:8]
        block[:, 9:13] = hexed[:, 8:12]
        block[:, 14:18] = hexed[:, 12:16]
        block[:, 19:23] = hexed[:, 16:20]
        block[:, 24:36] = hexed[:, 20:32]
    return _fixed_strings(chars)


def _pick(vocabulary: Sequence[str], indices: np.ndarray) -> pa.Array:
    """`vocabulary[i]` for every index, as a string array."""
    return pa.array(vocabulary, type=pa.string()).take(pa.array(indices))


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _null_where(array: pa.Array, valid: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(valid), array, pa.scalar(None, type=array.type))


def _uniform_ms(rng: np.random.Generator, low_ms: int, high_ms: int, n: int) -> np.ndarray:
    """Random instants in [low_ms, high_ms]."""
    return low_ms + rng.integers(0, high_ms - low_ms + 1, size=n, dtype=np.int64)


def _reference_revision_ms(rng: np.random.Generator, as_of_ms: int) -> int:
    """Reference data (catalogue, territories) was last revised one to six months ago: inside
    its 365-day freshness window, far outside the orders' one hour."""
    today = _midnight(as_of_ms)
    return int(_uniform_ms(rng, today - 180 * _DAY, today - 30 * _DAY, 1)[0])


def _midnight(ms: int) -> int:
    return ms - ms % _DAY


# ---------------------------------------------------------------------------------------------
# Products, categories, territories
# ---------------------------------------------------------------------------------------------


class _Catalog(NamedTuple):
    """What the order lines need to know about the products that are sold: clothing and
    accessories (the small items) first, then bikes and components."""

    product_id: np.ndarray  # ProductID
    list_price: np.ndarray  # ListPrice in 1e-4 units
    online_p: np.ndarray  # probability of being the first line of an online order
    n_small: int  # the first n_small products are clothing and accessories


def _products(rng: np.random.Generator, as_of_ms: int) -> tuple[pa.Table, pa.Table, pa.Table, _Catalog]:
    today = _midnight(as_of_ms)
    old = today - 7 * 365 * _DAY  # when the catalogue was set up
    revised = _reference_revision_ms(rng, as_of_ms)
    window_start = today - _ORDER_WINDOW_DAYS * _DAY

    categories = _table(
        "Production.ProductCategory",
        {
            "ProductCategoryID": _int32(np.arange(1, len(_CATEGORIES) + 1)),
            "Name": pa.array(_CATEGORIES, type=pa.string()),
            "rowguid": _guids(rng, len(_CATEGORIES)),
            "ModifiedDate": _timestamp(_full(len(_CATEGORIES), revised)),
        },
    )

    spec = _Sub(*(np.array(column) for column in zip(*_SUBCATEGORIES, strict=True)))
    n_sub = len(_SUBCATEGORIES)
    subcategories = _table(
        "Production.ProductSubcategory",
        {
            "ProductSubcategoryID": _int32(np.arange(1, n_sub + 1)),
            "ProductCategoryID": _int32(spec.category),
            "Name": pa.array(spec.name.tolist(), type=pa.string()),
            "rowguid": _guids(rng, n_sub),
            "ModifiedDate": _timestamp(_full(n_sub, revised)),
        },
    )

    # Finished goods: the products of each subcategory, spread over models, colours and sizes.
    sub = np.repeat(np.arange(n_sub), spec.products)
    n_fin = len(sub)
    k = np.arange(n_fin) - np.repeat(np.cumsum(spec.products) - spec.products, spec.products)
    color_first, n_colors = spec.colors[:, 0][sub], spec.colors[:, 1][sub]
    size_first, n_sizes = spec.sizes[:, 0][sub], spec.sizes[:, 1][sub]
    per_size = np.maximum(n_sizes, 1)
    per_model = per_size * np.maximum(n_colors, 1)
    size_idx = size_first + k % per_size
    color_idx = color_first + (k // per_size) % np.maximum(n_colors, 1)
    model = k // per_model
    has_color, has_size = n_colors > 0, n_sizes > 0
    color = _null_where(_pick(_COLORS, color_idx), has_color)
    size = _null_where(_pick(_SIZES, size_idx), has_size)
    numbered = spec.numbered[sub]
    base = _pick(spec.base.tolist(), sub)
    stem = pc.if_else(
        pa.array(numbered),
        _join(base, _text(100 * (model + 1)), sep="-"),
        _join(_pick(_MODEL_TIERS, model % len(_MODEL_TIERS)), base, sep=" "),
    )
    fin_name = pc.binary_join_element_wise(
        pc.binary_join_element_wise(stem, color, " ", null_handling="skip"),
        size,
        ", ",
        null_handling="skip",
    )

    # Models share a price; bikes and frames end in .99, the rest in .x9 or a round amount.
    model_key = np.unique(sub * 1000 + model, return_inverse=True)[1]
    model_u = rng.random(int(model_key.max()) + 1)[model_key]
    lo, hi = spec.price_lo[sub], spec.price_hi[sub]
    whole = lo + np.floor(model_u * (hi - lo)).astype(np.int64)
    cents = np.where(whole >= 100, 99, rng.choice(np.array([0, 49, 95, 99]), size=n_fin))
    fin_price = whole * 10_000 + cents * 100
    fin_cost = fin_price * spec.cost_permille[sub] // 1000
    w_unit, w_lo, w_hi = spec.weight[:, 0][sub], spec.weight[:, 1][sub], spec.weight[:, 2][sub]
    fin_weight = w_lo + np.floor(model_u * (w_hi - w_lo)).astype(np.int64)
    line = spec.line[sub]
    style = spec.style[sub]
    fin_line_valid = line != None  # noqa: E711 - element-wise on an object array
    fin_class = np.array(["L ", "M ", "H "])[np.minimum(model % 3, 2)]

    # Components without a subcategory (nuts, washers, tubes): not sold, no price.
    n_parts = _N_PRODUCTS - n_fin
    part_k = np.arange(n_parts)
    part_kind = part_k % len(_PART_NAMES)
    part_no = part_k // len(_PART_NAMES) + 1
    part_names, part_codes = zip(*_PART_NAMES, strict=True)
    part_name = _join(_pick(part_names, part_kind), _text(part_no), sep=" ")
    part_make = rng.random(n_parts) < 0.4
    part_stock = np.where(part_make, rng.choice(np.array([500, 800]), size=n_parts), 1000)

    # Products: the components first (IDs 1..), then the finished goods (IDs 680..).
    product_id = np.concatenate([np.arange(1, n_parts + 1), 680 + np.arange(n_fin)])
    n = _N_PRODUCTS
    is_fin = np.arange(n) >= n_parts
    serial = _text(1000 + (np.arange(n) * 7919) % 9000)  # unique four-digit serials
    code = pa.concat_arrays([_pick(part_codes, part_kind), _pick(spec.code.tolist(), sub)])
    product_number = pc.binary_join_element_wise(
        _join(code, serial, sep="-"),
        pa.concat_arrays([pa.nulls(n_parts, pa.string()), size]),
        "-",
        null_handling="skip",
    )

    def both(parts: np.ndarray, finished: np.ndarray) -> np.ndarray:
        return np.concatenate([parts, finished])

    price = both(np.zeros(n_parts, np.int64), fin_price)
    stock = both(part_stock, spec.stock[sub])
    weight_unit = both(np.zeros(n_parts, np.int64), w_unit)
    has_weight = weight_unit > 0
    size_all = pa.concat_arrays([pa.nulls(n_parts, pa.string()), size])
    size_unit_valid = both(np.zeros(n_parts, bool), has_size & (size_idx < _SIZE_FRAME_END))
    no_text = np.full(n_parts, None, dtype=object)
    line_all = both(no_text, line)

    # About one in eight bikes and components was discontinued before the order window: never
    # sold. All clothing and accessories are on sale.
    category = both(np.zeros(n_parts, np.int64), spec.category[sub])
    discontinued = is_fin & (category <= 2) & (rng.random(n) < 0.12)
    sold = is_fin & ~discontinued
    sell_start = np.where(
        sold,
        window_start - rng.integers(0, 3, size=n) * 365 * _DAY,
        np.where(discontinued, window_start - 3 * 365 * _DAY, old),
    )
    sell_end = window_start - rng.integers(30, 365, size=n) * _DAY
    modified = revised

    products = _table(
        "Production.Product",
        {
            "ProductID": _int32(product_id),
            "Name": pa.concat_arrays([part_name, fin_name]),
            "ProductNumber": product_number,
            "MakeFlag": _bool(both(part_make, spec.make[sub])),
            "FinishedGoodsFlag": _bool(is_fin),
            "Color": pa.concat_arrays([pa.nulls(n_parts, pa.string()), color]),
            "SafetyStockLevel": _int16(stock),
            "ReorderPoint": _int16(stock * 3 // 4),
            "StandardCost": _money(both(np.zeros(n_parts, np.int64), fin_cost)),
            "ListPrice": _money(price),
            "Size": size_all,
            "SizeUnitMeasureCode": _null_where(pa.array(["CM "] * n, pa.string()), size_unit_valid),
            "WeightUnitMeasureCode": _null_where(_pick(("", "LB ", "G  "), weight_unit), has_weight),
            "Weight": _decimal(both(np.zeros(n_parts, np.int64), fin_weight), pa.decimal128(8, 2), has_weight),
            "DaysToManufacture": _int32(both(np.where(part_make, 1, 0), spec.days[sub])),
            "ProductLine": pa.array(line_all.tolist(), type=pa.string()),
            "Class": _null_where(
                pa.concat_arrays([pa.nulls(n_parts, pa.string()), pa.array(fin_class)]),
                both(np.zeros(n_parts, bool), fin_line_valid & spec.make[sub]),
            ),
            "Style": pa.array(both(no_text, style).tolist(), type=pa.string()),
            "ProductSubcategoryID": _int32(both(np.zeros(n_parts, np.int64), sub + 1), is_fin),
            "ProductModelID": _int32(both(np.zeros(n_parts, np.int64), model_key + 1), is_fin),
            "SellStartDate": _timestamp(sell_start),
            "SellEndDate": _timestamp(sell_end, discontinued),
            "DiscontinuedDate": pa.nulls(n, pa.timestamp("ms")),
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(_full(n, modified)),
        },
    )
    # The sold products, small items first; a subcategory's online share is split evenly.
    sold_index = np.flatnonzero(sold)
    sold_index = sold_index[np.argsort(category[sold_index] <= 2, kind="stable")]
    sold_sub = both(np.full(n_parts, -1, np.int64), sub)[sold_index]
    sold_per_sub = np.bincount(sold_sub, minlength=n_sub)
    online_p = spec.online_share[sold_sub] / sold_per_sub[sold_sub]
    catalog = _Catalog(
        product_id=product_id[sold_index].astype(np.int32),
        list_price=price[sold_index],
        online_p=online_p / online_p.sum(),
        n_small=int((category[sold_index] >= 3).sum()),
    )
    return categories, subcategories, products, catalog


def _territories(rng: np.random.Generator, as_of_ms: int) -> pa.Table:
    n = len(_TERRITORIES)
    names, countries, groups = zip(*_TERRITORIES, strict=True)
    revised = _reference_revision_ms(rng, as_of_ms)
    return _table(
        "Sales.SalesTerritory",
        {
            "TerritoryID": _int32(np.arange(1, n + 1)),
            "Name": pa.array(names, type=pa.string()),
            "CountryRegionCode": pa.array(countries, type=pa.string()),
            "Group": pa.array(groups, type=pa.string()),
            "SalesYTD": _money(rng.integers(2_000_000_0000, 11_000_000_0000, size=n)),
            "SalesLastYear": _money(rng.integers(1_000_000_0000, 6_000_000_0000, size=n)),
            "CostYTD": _money(np.zeros(n, np.int64)),
            "CostLastYear": _money(np.zeros(n, np.int64)),
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(_full(n, revised)),
        },
    )


# ---------------------------------------------------------------------------------------------
# People, stores, customers
# ---------------------------------------------------------------------------------------------


class _People(NamedTuple):
    person: pa.Table
    email: pa.Table
    sales_person_ids: np.ndarray  # BusinessEntityID of the SP persons
    store_ids: np.ndarray  # BusinessEntityIDs reserved for the stores
    store_contact_ids: np.ndarray  # SC persons
    individual_ids: np.ndarray  # IN persons


class _Names(NamedTuple):
    """A person's name parts, drawn once per person: indices into the vocabularies above."""

    male: np.ndarray
    first: np.ndarray  # into _FIRST_NAMES
    last: np.ndarray
    has_middle: np.ndarray
    middle: np.ndarray
    has_title: np.ndarray
    has_suffix: np.ndarray
    suffix: np.ndarray
    promotion: np.ndarray


def _names(rng: np.random.Generator, n: int) -> _Names:
    n_male, n_female = len(_FIRST_NAMES_MALE), len(_FIRST_NAMES_FEMALE)
    male = rng.random(n) < 0.5
    first = np.where(male, rng.integers(0, n_male, size=n), n_male + rng.integers(0, n_female, size=n))
    last = rng.integers(0, len(_LAST_NAMES), size=n)
    has_middle = rng.random(n) < 0.57
    middle = rng.integers(0, len(_MIDDLE_INITIALS), size=n)
    has_title = rng.random(n) < 0.05
    has_suffix = rng.random(n) < 0.003
    suffix = rng.integers(0, len(_SUFFIXES), size=n)
    promotion = rng.choice(3, size=n, p=(0.56, 0.25, 0.19))
    return _Names(male, first, last, has_middle, middle, has_title, has_suffix, suffix, promotion)


def _person_table(
    rng: np.random.Generator, ids: np.ndarray, person_type: pa.Array, names: _Names, modified: np.ndarray
) -> pa.Table:
    return _table(
        "Person.Person",
        {
            "BusinessEntityID": _int32(ids),
            "PersonType": person_type,
            "NameStyle": _bool(np.zeros(len(ids), bool)),
            "Title": _null_where(_pick(("Ms.", "Mr."), names.male.astype(np.int64)), names.has_title),
            "FirstName": _pick(_FIRST_NAMES, names.first),
            "MiddleName": _null_where(_pick(_MIDDLE_INITIALS, names.middle), names.has_middle),
            "LastName": _pick(_LAST_NAMES, names.last),
            "Suffix": _null_where(_pick(_SUFFIXES, names.suffix), names.has_suffix),
            "EmailPromotion": _int32(names.promotion),
            "rowguid": _guids(rng, len(ids)),
            "ModifiedDate": _timestamp(modified),
        },
    )


def _address(first: np.ndarray, number: np.ndarray) -> pa.Array:
    """firstname + a number + the domain, like ken0@adventure-works.com."""
    return _join(_pick(_FIRST_NAMES_LOWER, first), _text(number), "@adventure-works.com")


def _email_table(
    rng: np.random.Generator, ids: np.ndarray, email_ids: np.ndarray, address: pa.Array, modified: np.ndarray
) -> pa.Table:
    return _table(
        "Person.EmailAddress",
        {
            "BusinessEntityID": _int32(ids),
            "EmailAddressID": _int32(email_ids),
            "EmailAddress": address,
            "rowguid": _guids(rng, len(ids)),
            "ModifiedDate": _timestamp(modified),
        },
    )


def _people(rng: np.random.Generator, sizes: _Sizes, as_of_ms: int) -> _People:
    """Persons and their e-mail addresses. Persons and stores share the BusinessEntityID
    space: employees, sales people, then the stores' IDs, then the other persons."""
    types = ("EM", "SP", "SC", "VC", "GC", "IN")
    counts = np.array(
        [
            sizes.employees,
            _N_SALES_PEOPLE,
            sizes.store_contacts,
            sizes.vendor_contacts,
            sizes.general_contacts,
            sizes.individuals,
        ]
    )
    n = int(counts.sum())
    kind = np.repeat(np.arange(len(types)), counts)
    first_staff = sizes.employees + _N_SALES_PEOPLE
    ids = np.arange(1, n + 1, dtype=np.int64)
    ids[first_staff:] += sizes.stores  # leave room for the stores after the staff
    starts = np.cumsum(counts) - counts
    store_ids = np.arange(first_staff + 1, first_staff + 1 + sizes.stores, dtype=np.int64)

    def of_type(t: str) -> np.ndarray:
        i = types.index(t)
        return ids[starts[i] : starts[i] + counts[i]]

    names = _names(rng, n)
    today = _midnight(as_of_ms)
    modified = today - rng.integers(1, 6 * 365, size=n) * _DAY
    person = _person_table(rng, ids, _pick(types, kind), names, modified)

    # firstname + the person's rank among those with that first name: unique, like ken0@...
    first = names.first
    order = np.argsort(first.astype(np.int16), kind="stable")  # radix sort
    group_start = np.cumsum(np.bincount(first, minlength=len(_FIRST_NAMES)))
    group_start = np.concatenate([[0], group_start[:-1]])
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start[first[order]]
    email = _email_table(rng, ids, np.arange(1, n + 1), _address(first, rank), modified)
    return _People(
        person=person,
        email=email,
        sales_person_ids=of_type("SP"),
        store_ids=store_ids,
        store_contact_ids=of_type("SC"),
        individual_ids=of_type("IN"),
    )


def _stores(
    rng: np.random.Generator, sizes: _Sizes, people: _People, as_of_ms: int
) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The stores, and each store's TerritoryID and SalesPersonID."""
    n = sizes.stores
    territory = 1 + rng.choice(len(_TERRITORIES), size=n, p=_STORE_TERRITORY_P)
    sales_person = people.sales_person_ids[rng.integers(0, len(people.sales_person_ids), size=n)]
    name = _join(
        _pick(_STORE_WORDS_1, rng.integers(0, len(_STORE_WORDS_1), size=n)),
        _pick(_STORE_WORDS_2, rng.integers(0, len(_STORE_WORDS_2), size=n)),
        sep=" ",
    )
    annual_sales = rng.choice(np.array([300_000, 800_000, 1_500_000, 3_000_000]), size=n)
    survey = _join(
        '<StoreSurvey xmlns="http://schemas.microsoft.com/sqlserver/2004/07/adventure-works/StoreSurvey"><AnnualSales>',
        _text(annual_sales),
        "</AnnualSales><AnnualRevenue>",
        _text(annual_sales // 10),
        "</AnnualRevenue><BankName>",
        _pick(_BANKS, rng.integers(0, len(_BANKS), size=n)),
        "</BankName><BusinessType>",
        _pick(_BUSINESS_TYPES, rng.integers(0, len(_BUSINESS_TYPES), size=n)),
        "</BusinessType><YearOpened>",
        _text(rng.integers(1970, 2001, size=n)),
        "</YearOpened><Specialty>",
        _pick(_SPECIALTIES, rng.integers(0, len(_SPECIALTIES), size=n)),
        "</Specialty><SquareFeet>",
        _text(rng.integers(6, 81, size=n) * 1000),
        "</SquareFeet><Brands>",
        _pick(_BRANDS, rng.integers(0, len(_BRANDS), size=n)),
        "</Brands><Internet>",
        _pick(_INTERNET, rng.integers(0, len(_INTERNET), size=n)),
        "</Internet><NumberEmployees>",
        _text(rng.integers(2, 100, size=n)),
        "</NumberEmployees></StoreSurvey>",
    )
    stores = _table(
        "Sales.Store",
        {
            "BusinessEntityID": _int32(people.store_ids),
            "Name": name,
            "SalesPersonID": _int32(sales_person),
            "Demographics": survey,
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(_uniform_ms(rng, as_of_ms - _CUSTOMER_WINDOW_MS, as_of_ms, n)),
        },
    )
    return stores, territory, sales_person


class _Customers(NamedTuple):
    """What the orders need to know about the customers."""

    customer_id: np.ndarray
    territory: np.ndarray
    store_index: np.ndarray  # index into the stores, -1 for individuals
    individuals: np.ndarray  # indices of the individual customers
    store_contacts: np.ndarray  # indices of the store customers with a contact person


def _customers(
    rng: np.random.Generator,
    sizes: _Sizes,
    people: _People,
    store_territory: np.ndarray,
    as_of_ms: int,
) -> tuple[pa.Table, _Customers]:
    """Store-only customers (one per store, never ordering), then individuals, then store
    customers with a contact person, with CustomerIDs 1, 2, ..."""
    n_store, n_ind, n_sc = sizes.stores, sizes.individuals, sizes.store_contact_customers
    n = n_store + n_ind + n_sc
    contact_stores = rng.permutation(n_store)[:n_sc]
    store_index = np.concatenate([np.arange(n_store), np.full(n_ind, -1, dtype=np.int64), contact_stores])
    has_store = store_index >= 0
    territory = np.where(
        has_store,
        store_territory[np.maximum(store_index, 0)],
        1 + rng.choice(len(_TERRITORIES), size=n, p=_INDIVIDUAL_TERRITORY_P),
    )
    person_id = np.concatenate(
        [
            np.zeros(n_store, dtype=np.int64),
            people.individual_ids,
            people.store_contact_ids[rng.permutation(len(people.store_contact_ids))[:n_sc]],
        ]
    )
    has_person = np.arange(n) >= n_store
    customer_id = np.arange(1, n + 1, dtype=np.int64)
    modified = _uniform_ms(rng, as_of_ms - _CUSTOMER_WINDOW_MS, as_of_ms, n)
    modified[rng.integers(0, n)] = as_of_ms
    table = _table(
        "Sales.Customer",
        {
            "CustomerID": _int32(customer_id),
            "PersonID": _int32(person_id, has_person),
            "StoreID": _int32(people.store_ids[np.maximum(store_index, 0)], has_store),
            "TerritoryID": _int32(territory),
            "AccountNumber": _prefixed_digits("AW", customer_id, 8),
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(modified),
        },
    )
    info = _Customers(
        customer_id=customer_id,
        territory=territory,
        store_index=store_index,
        individuals=np.arange(n_store, n_store + n_ind),
        store_contacts=np.arange(n_store + n_ind, n),
    )
    return table, info


# ---------------------------------------------------------------------------------------------
# Orders and order lines
# ---------------------------------------------------------------------------------------------


def _order_days(rng: np.random.Generator, n: int) -> np.ndarray:
    """Day offsets in [0, window) with a density rising linearly to three times its start, like a
    growing business: the inverse of the CDF of f(x) ~ 1 + 2x/D."""
    u = rng.random(n)
    days = np.floor(_ORDER_WINDOW_DAYS * (np.sqrt(1.0 + 8.0 * u) - 1.0) / 2.0).astype(np.int64)
    return np.minimum(days, _ORDER_WINDOW_DAYS - 1)


def _coprime_strides(rng: np.random.Generator, length: int, n: int) -> np.ndarray:
    """`n` random steps in [1, length) coprime with `length` (1 when length is 1)."""
    steps = np.arange(1, max(length, 2), dtype=np.int64)
    steps = steps[np.gcd(steps, max(length, 1)) == 1]
    return steps[rng.integers(0, len(steps), size=n)]


def _orders(
    rng: np.random.Generator,
    sizes: _Sizes,
    cust: _Customers,
    store_sales_person: np.ndarray,
    catalog: _Catalog,
    as_of_ms: int,
    first_order_id: int = _FIRST_SALES_ORDER_ID,
    first_line_id: int = 1,
) -> tuple[pa.Table, pa.Table]:
    """The orders and their lines, dated over the order window before `as_of_ms`; SalesOrderIDs
    from `first_order_id`, SalesOrderDetailIDs from `first_line_id`."""
    n_online, n_reseller = sizes.online_orders, sizes.reseller_orders
    n = n_online + n_reseller

    # Every customer with a person orders at least once; the other orders go to random ones.
    customer = np.concatenate(
        [
            cust.individuals,
            cust.individuals[rng.integers(0, len(cust.individuals), n_online - len(cust.individuals))],
            cust.store_contacts,
            cust.store_contacts[rng.integers(0, len(cust.store_contacts), n_reseller - len(cust.store_contacts))],
        ]
    )
    online = np.arange(n) < n_online
    day = _order_days(rng, n)
    # SalesOrderID follows OrderDate; the random shuffle breaks ties within a day.
    shuffle = rng.permutation(n)
    order = shuffle[np.argsort(day[shuffle].astype(np.int16), kind="stable")]  # radix sort
    customer, online, day = customer[order], online[order], day[order]
    day[-1] = _ORDER_WINDOW_DAYS  # the newest order is from the as_of day itself
    del order, shuffle

    today = _midnight(as_of_ms)
    order_date = today + (day - _ORDER_WINDOW_DAYS) * _DAY
    ship_date = order_date + 7 * _DAY
    shipped = ship_date <= as_of_ms
    modified = np.where(shipped, ship_date, order_date)
    modified[-1] = as_of_ms
    sales_order_id = first_order_id + np.arange(n, dtype=np.int64)

    # Lines: online orders 1-3 lines of one item; reseller orders many lines, larger quantities.
    # Line-level arrays are int32 where they can be: there are about 12 million at scale 100.
    n_lines = np.empty(n, dtype=np.int32)
    n_lines[online] = 1 + rng.choice(3, size=n_online, p=_ONLINE_LINES_P)
    n_lines[~online] = rng.integers(1, _RESELLER_MAX_LINES + 1, size=n_reseller)
    first_line = np.cumsum(n_lines, dtype=np.int64) - n_lines
    total = int(first_line[-1] + n_lines[-1])
    line_order = np.repeat(np.arange(n, dtype=np.int32), n_lines)
    position = np.arange(total, dtype=np.int32)
    position -= np.repeat(first_line.astype(np.int32), n_lines)

    # Distinct products within an order: line j is (start + j * stride) % length, with a stride
    # coprime with the length. Reseller orders walk the whole catalogue; online orders walk the
    # small items (clothing, accessories) after a popular first item, often a bike.
    n_products, n_small = len(catalog.product_id), catalog.n_small
    first = np.where(
        online,
        rng.choice(n_products, size=n, p=catalog.online_p),
        rng.integers(0, n_products, size=n),
    )
    small_start = np.where(first < n_small, first, rng.integers(0, n_small, size=n))
    start = np.where(online, small_start, first).astype(np.int32)
    length = np.where(online, n_small, n_products).astype(np.int32)
    stride = np.where(online, _coprime_strides(rng, n_small, n), _coprime_strides(rng, n_products, n)).astype(np.int32)
    product = stride[line_order]
    product *= position
    product += start[line_order]
    product %= length[line_order]
    big_first = online & (first >= n_small)  # online orders whose first item is not small
    product[first_line[big_first]] = first[big_first]
    del position, start, length, stride

    reseller_lines = ~online[line_order]
    n_reseller_lines = int(np.count_nonzero(reseller_lines))
    qty = np.ones(total, dtype=np.int16)
    qty[reseller_lines] = np.minimum(rng.geometric(0.4, size=n_reseller_lines), _RESELLER_MAX_QTY)
    discount = np.zeros(total, dtype=np.int8)
    discount[reseller_lines] = rng.choice(len(_DISCOUNT_PERCENT), size=n_reseller_lines, p=_RESELLER_DISCOUNT_P)
    percent = _DISCOUNT_PERCENT[discount]
    unit_price = catalog.list_price[product]  # 1e-4 units (a copy: fancy indexing)
    # Resellers buy at trade price, 60% of list (58% in the real sample), rounded to 1e-4.
    unit_price[reseller_lines] = (unit_price[reseller_lines] * 6 + 5) // 10
    # qty * price * (1 - pct/100): 1e-4 units * (100 - pct) are exactly 1e-6 units.
    line_total = unit_price * qty
    line_total *= 100 - percent

    sub_total_6 = np.add.reduceat(line_total, first_line)
    sub_total = (sub_total_6 + 50) // 100  # round half up to 1e-4 (all amounts are positive)
    tax = (sub_total * 8 + 50) // 100  # SubTotal * 0.08
    freight = (sub_total * 25 + 500) // 1000  # SubTotal * 0.025
    total_due = sub_total + tax + freight

    # Reseller orders share one carrier tracking number per order, e.g. 4911-403C-98.
    tracking = np.empty((n, 12), dtype=np.uint8)
    tracking[:, [4, 9]] = ord("-")
    hexed = _hex(_random_bytes(rng, n, 6))
    tracking[:, 0:4], tracking[:, 5:9], tracking[:, 10:12] = (
        hexed[:, 0:4],
        hexed[:, 4:8],
        hexed[:, 8:10],
    )

    customer_id = cust.customer_id[customer]
    store = cust.store_index[customer]
    has_card = rng.random(n) < np.where(online, 0.96, 0.998)
    territory = cust.territory[customer]
    has_rate = (territory >= 6) & (rng.random(n) < np.where(online, 0.95, 0.7))
    address = 400 + customer_id  # no Address table here: one address per customer

    headers = _table(
        "Sales.SalesOrderHeader",
        {
            "SalesOrderID": _int32(sales_order_id),
            "RevisionNumber": _int16(np.where(online, 8, rng.choice(np.array([8, 9]), size=n))),
            "OrderDate": _timestamp(order_date),
            "DueDate": _timestamp(order_date + 12 * _DAY),
            "ShipDate": _timestamp(ship_date, shipped),
            "Status": _int16(_full(n, 5)),
            "OnlineOrderFlag": _bool(online),
            "SalesOrderNumber": _join("SO", _text(sales_order_id)),
            "PurchaseOrderNumber": _null_where(
                _join("PO", _text(rng.integers(1_000_000_000, 30_000_000_000, size=n))), ~online
            ),
            "AccountNumber": _join(
                pc.if_else(pa.array(online), "10-4030-", "10-4020-"),
                pc.utf8_lpad(_text(customer_id), 6, "0"),
            ),
            "CustomerID": _int32(customer_id),
            "SalesPersonID": _int32(store_sales_person[np.maximum(store, 0)], ~online),
            "TerritoryID": _int32(territory),
            "BillToAddressID": _int32(address),
            "ShipToAddressID": _int32(address),
            "ShipMethodID": _int32(np.where(online, 1, 5)),
            "CreditCardID": _int32(rng.integers(1, 19_238, size=n), has_card),
            "CreditCardApprovalCode": _null_where(
                _join(
                    _text(rng.integers(1, 1_240_000, size=n)),
                    _text(rng.integers(1, 100_000, size=n)),
                    sep="Vi",
                ),
                has_card,
            ),
            "CurrencyRateID": _int32(rng.integers(1, 13_533, size=n), has_rate),
            "SubTotal": _money(sub_total),
            "TaxAmt": _money(tax),
            "Freight": _money(freight),
            "TotalDue": _money(total_due),
            "Comment": pa.nulls(n, pa.string()),
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(modified),
        },
    )
    details = _table(
        "Sales.SalesOrderDetail",
        {
            "SalesOrderID": _int32(line_order + np.int32(first_order_id)),
            "SalesOrderDetailID": _int32(np.arange(first_line_id, first_line_id + total, dtype=np.int32)),
            "CarrierTrackingNumber": _fixed_strings(tracking[line_order[reseller_lines]], reseller_lines),
            "OrderQty": _int16(qty),
            "ProductID": _int32(catalog.product_id[product]),
            "SpecialOfferID": _int32(_DISCOUNT_OFFER_ID[discount]),
            "UnitPrice": _money(unit_price),
            "UnitPriceDiscount": _money(percent * 100),
            "LineTotal": _decimal(line_total, pa.decimal128(38, 6)),
            "rowguid": _guids(rng, total),
            # Lines are written with their order, so they carry the order's modified date.
            "ModifiedDate": _timestamp(modified[line_order]),
        },
    )
    return headers, details


# ---------------------------------------------------------------------------------------------
# The next day
# ---------------------------------------------------------------------------------------------

# Of the next day's online orders, the share placed by customers who never ordered before.
_NEW_CUSTOMER_SHARE = 0.3


def next_day(
    tables: dict[str, pa.Table],
    append_pct: float,
    update_pct: float = 0.0,
    seed: int = 42,
    as_of: datetime | None = None,
) -> dict[str, pa.Table]:
    """The ten source tables one day on: the old rows, `update_pct` % of the old orders changed,
    and `append_pct` % more orders with their lines, keyed `Schema.Table` in `SOURCE_TABLES` order.

    The new orders go to existing individuals and store contacts and, for a share of the online
    ones, to new individual customers (with a Person and an EmailAddress each); they are placed
    after the data's newest ModifiedDate and up to `as_of` (default now), which must lie after
    it. A changed order has one more unit on its first line: that line's LineTotal and the
    order's SubTotal, TaxAmt, Freight and TotalDue follow exactly, its RevisionNumber goes up by
    one, and both rows get a ModifiedDate in that same interval, which an incremental build's
    lookback keys on. Keys stay unique (new IDs after the highest in use), every column keeps its
    contract type, and the same tables, percentages, seed and `as_of` give the same tables.
    """
    append_pct, update_pct = _check_percent("append", append_pct), _check_percent("update", update_pct)
    seed = _check_seed(seed)
    missing = [t.qualified_name for t in SOURCE_TABLES if t.qualified_name not in tables]
    if missing:
        raise DataOpsError(f"The next day needs all ten source tables; missing: {', '.join(missing)}.")
    tables = {t.qualified_name: tables[t.qualified_name].cast(t.arrow_schema) for t in SOURCE_TABLES}
    newest_ms = max(int(np.max(ms(table.column("ModifiedDate")))) for table in tables.values())
    as_of_ms = _epoch_ms(_check_as_of(as_of))
    if as_of_ms <= newest_ms:
        newest = datetime(1970, 1, 1) + timedelta(milliseconds=newest_ms)
        raise DataOpsError(
            f"The data is current up to {newest:%Y-%m-%d %H:%M:%S}: the next day's as_of must be after it."
        )
    headers = tables["Sales.SalesOrderHeader"]
    # The day's own stream of random numbers: the next day of the next day differs from this one.
    entropy = [seed, headers.num_rows, newest_ms, as_of_ms, round(append_pct * 1000), round(update_pct * 1000)]
    rngs = [np.random.Generator(np.random.PCG64(s)) for s in np.random.SeedSequence(entropy).spawn(3)]

    out = dict(tables)
    n_changed = round(headers.num_rows * update_pct / 100)
    out["Sales.SalesOrderHeader"], out["Sales.SalesOrderDetail"] = _changed_orders(
        rngs[0], headers, tables["Sales.SalesOrderDetail"], n_changed, newest_ms, as_of_ms
    )
    n_new = round(headers.num_rows * append_pct / 100)
    if n_new:
        for name, new_rows in _new_orders(rngs[1], rngs[2], tables, n_new, newest_ms, as_of_ms).items():
            out[name] = pa.concat_tables([out[name], new_rows.cast(out[name].schema)])
    return out


def _check_percent(name: str, percent: float) -> float:
    if isinstance(percent, bool) or not isinstance(percent, int | float | np.integer | np.floating):
        raise DataOpsError(f"The {name} percentage must be a number, not {percent!r}.")
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        raise DataOpsError(f"The {name} percentage must be between 0 and 100 (of the orders), not {percent:g}.")
    return float(percent)


def _day_instants(rng: np.random.Generator, newest_ms: int, as_of_ms: int, n: int) -> np.ndarray:
    """`n` ascending instants after `newest_ms`, the last exactly `as_of_ms` (the data is current)."""
    instants = np.sort(_uniform_ms(rng, newest_ms + 1, as_of_ms, n))
    if n:
        instants[-1] = as_of_ms
    return instants


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Where each of `values` is in `keys` (unique, in any order; every value must be there)."""
    sorter = np.argsort(keys, kind="stable")
    return sorter[np.searchsorted(keys, values, sorter=sorter)]


def _changed_orders(
    rng: np.random.Generator,
    headers: pa.Table,
    details: pa.Table,
    n_changed: int,
    newest_ms: int,
    as_of_ms: int,
) -> tuple[pa.Table, pa.Table]:
    """The headers and lines with `n_changed` random orders given one more unit on their first line."""
    if not n_changed:
        return headers, details
    rows = np.sort(rng.choice(headers.num_rows, size=n_changed, replace=False))
    changed = ids(headers.column("SalesOrderID"))[rows]
    modified = rng.permutation(_day_instants(rng, newest_ms, as_of_ms, n_changed))

    # The changed orders' lines, each with its order's position in `rows`, in SalesOrderDetailID order.
    line_order = ids(details.column("SalesOrderID"))
    lines = np.flatnonzero(np.isin(line_order, changed))
    lines = lines[np.argsort(ids(details.column("SalesOrderDetailID"))[lines], kind="stable")]
    of_order = _positions(changed, line_order[lines])
    first = np.unique(of_order, return_index=True)[1]  # each order's first line, among `lines`
    first_lines = lines[first]

    qty = ids(details.column("OrderQty"))[first_lines] + 1
    price = units(details.column("UnitPrice"))[first_lines]
    discount = units(details.column("UnitPriceDiscount"))[first_lines]
    # LineTotal (1e-6) = qty * UnitPrice (1e-4) * (1 - discount) (1e-4 units of 1): exact for whole percents.
    line_total = round_div(qty * price * (10_000 - discount), 100)
    line_totals = units(details.column("LineTotal"))[lines]
    line_totals[first] = line_total
    sub_total_6 = np.zeros(n_changed, dtype=np.int64)
    np.add.at(sub_total_6, of_order, line_totals)

    # Rows are replaced by ascending index: the first lines in table order, with their values.
    in_table_order = np.argsort(first_lines)
    first_lines = first_lines[in_table_order]
    details = replace_rows(details, "OrderQty", first_lines, pa.array(qty[in_table_order], pa.int16()))
    details = replace_rows(details, "LineTotal", first_lines, decimal(line_total[in_table_order], LINE_TOTAL))
    line_modified = modified[of_order[first][in_table_order]]
    details = replace_rows(details, "ModifiedDate", first_lines, timestamps(line_modified))
    headers = set_order_money(headers, rows, round_div(sub_total_6, 100))
    revision = ids(headers.column("RevisionNumber"))[rows] + 1
    headers = replace_rows(headers, "RevisionNumber", rows, pa.array(revision, pa.int16()))
    headers = replace_rows(headers, "ModifiedDate", rows, timestamps(modified))
    return headers, details


def _catalog_of(tables: dict[str, pa.Table]) -> _Catalog:
    """The products the old orders sold, clothing and accessories first, each as likely to be on
    a new online order as it was on the old ones' lines (plus one line each, so that none is
    impossible): the catalogue of a loaded warehouse, real or generated."""
    products, details = tables["Production.Product"], tables["Sales.SalesOrderDetail"]
    subcategories, categories = tables["Production.ProductSubcategory"], tables["Production.ProductCategory"]
    product_id = ids(products.column("ProductID"))
    line_product = ids(details.column("ProductID"))
    sold = np.unique(line_product[np.isin(line_product, product_id)])
    row = _positions(product_id, sold)

    small_categories = ids(categories.column("ProductCategoryID"))[
        np.isin(categories.column("Name").to_numpy(zero_copy_only=False), ["Clothing", "Accessories"])
    ]
    sub_ids = ids(subcategories.column("ProductSubcategoryID"))
    sub = ids(products.column("ProductSubcategoryID"))[row]
    has_sub = np.isin(sub, sub_ids)
    category = np.full(len(sold), -1, dtype=np.int64)
    category[has_sub] = ids(subcategories.column("ProductCategoryID"))[_positions(sub_ids, sub[has_sub])]
    small = np.isin(category, small_categories)
    small_first = np.argsort(~small, kind="stable")
    sold, row = sold[small_first], row[small_first]

    headers = tables["Sales.SalesOrderHeader"]
    online = ids(headers.column("SalesOrderID"))[headers.column("OnlineOrderFlag").to_numpy(zero_copy_only=False)]
    online_lines = np.isin(ids(details.column("SalesOrderID")), online) & np.isin(line_product, sold)
    popularity = 1.0 + np.bincount(_positions(sold, line_product[online_lines]), minlength=len(sold))
    return _Catalog(
        product_id=sold.astype(np.int32),
        list_price=units(products.column("ListPrice"))[row],
        online_p=popularity / popularity.sum(),
        n_small=int(small.sum()),
    )


def _new_orders(
    rng: np.random.Generator,
    order_rng: np.random.Generator,
    tables: dict[str, pa.Table],
    n_new: int,
    newest_ms: int,
    as_of_ms: int,
) -> dict[str, pa.Table]:
    """The new rows of the day: orders and lines, and the new customers with their persons."""
    headers, customers, stores = tables["Sales.SalesOrderHeader"], tables["Sales.Customer"], tables["Sales.Store"]
    customer_id, store_id = ids(customers.column("CustomerID")), ids(customers.column("StoreID"))
    has_person = ids(customers.column("PersonID")) >= 0
    individuals = np.flatnonzero(has_person & (store_id < 0))
    store_contacts = np.flatnonzero(has_person & (store_id >= 0))
    online_share = float(pc.mean(headers.column("OnlineOrderFlag").cast(pa.float64())).as_py() or 0.0)
    n_online = min(n_new, max(1, round(n_new * online_share))) if len(store_contacts) else n_new
    n_reseller = n_new - n_online
    n_new_customers = round(n_online * _NEW_CUSTOMER_SHARE) if len(individuals) else n_online

    new = _new_customers(rng, tables, n_new_customers, newest_ms, as_of_ms)
    online_old = individuals[rng.integers(0, len(individuals), size=n_online - n_new_customers)]
    reseller = store_contacts[rng.integers(0, len(store_contacts), size=n_reseller)]
    territory = ids(customers.column("TerritoryID"))
    store_rows = _positions(ids(stores.column("BusinessEntityID")), store_id[reseller])
    cust = _Customers(
        customer_id=np.concatenate(
            [customer_id[online_old], ids(new["Sales.Customer"].column("CustomerID")), customer_id[reseller]]
        ),
        territory=np.concatenate(
            [territory[online_old], ids(new["Sales.Customer"].column("TerritoryID")), territory[reseller]]
        ),
        store_index=np.concatenate([np.full(n_online, -1, dtype=np.int64), np.arange(n_reseller)]),
        individuals=np.arange(n_online),
        store_contacts=np.arange(n_online, n_new),
    )
    first_order_id = int(np.max(ids(headers.column("SalesOrderID")))) + 1
    order_headers, order_lines = _orders(
        order_rng,
        _Sizes(0, 0, 0, n_online, n_reseller, 0, 0, 0, 0),
        cust,
        ids(stores.column("SalesPersonID"))[store_rows],
        _catalog_of(tables),
        as_of_ms,
        first_order_id=first_order_id,
        first_line_id=int(np.max(ids(tables["Sales.SalesOrderDetail"].column("SalesOrderDetailID")))) + 1,
    )
    # Placed after the data's newest change and up to as_of, in SalesOrderID order; not shipped yet.
    placed = _day_instants(rng, newest_ms, as_of_ms, n_new)
    order_date = placed - placed % _DAY
    line_placed = placed[ids(order_lines.column("SalesOrderID")) - first_order_id]
    order_headers = _with_columns(
        order_headers,
        OrderDate=_timestamp(order_date),
        DueDate=_timestamp(order_date + 12 * _DAY),
        ShipDate=pa.nulls(n_new, pa.timestamp("ms")),
        Status=_int16(_full(n_new, 1)),  # 1: in process, as an order with no ship date yet is
        ModifiedDate=_timestamp(placed),
    )
    order_lines = _with_columns(order_lines, ModifiedDate=_timestamp(line_placed))
    return {**new, "Sales.SalesOrderHeader": order_headers, "Sales.SalesOrderDetail": order_lines}


def _with_columns(table: pa.Table, **columns: pa.Array) -> pa.Table:
    for name, values in columns.items():
        table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), values)
    return table


def _new_customers(
    rng: np.random.Generator, tables: dict[str, pa.Table], n: int, newest_ms: int, as_of_ms: int
) -> dict[str, pa.Table]:
    """`n` new individual customers, each with a new Person (type IN) and EmailAddress."""
    people, emails, customers = tables["Person.Person"], tables["Person.EmailAddress"], tables["Sales.Customer"]
    # Persons and stores share the BusinessEntityIDs: the new persons take the ones after both.
    entities = (people.column("BusinessEntityID"), tables["Sales.Store"].column("BusinessEntityID"))
    first_entity = max(int(np.max(ids(column))) for column in entities) + 1
    person_ids = np.arange(first_entity, first_entity + n, dtype=np.int64)
    email_ids = int(np.max(ids(emails.column("EmailAddressID")))) + 1 + np.arange(n, dtype=np.int64)
    customer_id = int(np.max(ids(customers.column("CustomerID")))) + 1 + np.arange(n, dtype=np.int64)
    modified = _day_instants(rng, newest_ms, as_of_ms, n)
    names = _names(rng, n)
    territory = 1 + rng.choice(len(_TERRITORIES), size=n, p=_INDIVIDUAL_TERRITORY_P)
    person = _person_table(rng, person_ids, _pick(("IN",), np.zeros(n, np.int64)), names, modified)
    # Numbered by the new EmailAddressID, above every number the old addresses use: unique.
    email = _email_table(rng, person_ids, email_ids, _address(names.first, email_ids), modified)
    customer = _table(
        "Sales.Customer",
        {
            "CustomerID": _int32(customer_id),
            "PersonID": _int32(person_ids),
            "StoreID": _int32(np.zeros(n, np.int64), np.zeros(n, bool)),
            "TerritoryID": _int32(territory),
            "AccountNumber": _prefixed_digits("AW", customer_id, 8),
            "rowguid": _guids(rng, n),
            "ModifiedDate": _timestamp(modified),
        },
    )
    return {"Sales.Customer": customer, "Person.Person": person, "Person.EmailAddress": email}


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _csv_field(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """One column as CSV text: RFC 4180 quoting where needed, NULL stays null (-> empty)."""
    type_ = column.type
    if pa.types.is_boolean(type_):
        return pc.if_else(column, "1", "0")
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        needs_quotes = pc.or_(pc.match_substring_regex(column, r'[",\r\n]'), pc.equal(pc.binary_length(column), 0))
        if not pc.any(needs_quotes).as_py():
            return column
        quoted = _join('"', pc.replace_substring(column, '"', '""'), '"')
        return pc.if_else(needs_quotes, quoted, column)
    # Integers, decimals at their full scale and timestamps as YYYY-MM-DD HH:MM:SS.fff.
    return pc.cast(column, pa.string())


def _csv_header(names: Sequence[str]) -> bytes:
    header = _csv_field(pa.chunked_array([pa.array(list(names), type=pa.string())]))
    return (",".join(header.to_pylist()) + "\r\n").encode("utf-8")


def _write_csv(table: pa.Table, path: Path) -> None:
    with open(path, "wb") as out:
        out.write(_csv_header(table.column_names))
        for start in range(0, table.num_rows, _CHUNK_ROWS):  # one pass per chunk of rows
            part = table.slice(start, _CHUNK_ROWS)
            fields = [_csv_field(part.column(i)) for i in range(part.num_columns)]
            lines = pc.binary_join_element_wise(*fields, ",", null_handling="replace", null_replacement="")
            lines = pc.binary_join_element_wise(lines, "", "\r\n")
            offset_type = np.int64 if pa.types.is_large_string(lines.type) else np.int32
            for chunk in lines.chunks:
                offsets = np.frombuffer(
                    chunk.buffers()[1],
                    dtype=offset_type,
                    count=len(chunk) + 1,
                    offset=chunk.offset * np.dtype(offset_type).itemsize,
                )
                out.write(memoryview(chunk.buffers()[2])[offsets[0] : offsets[-1]])
        out.flush()
        os.fsync(out.fileno())
