"""What T-SQL does not have: the constructs other engines accept that SQL Server rejects.

Parsers are lenient here: sqlfluff's and sqlglot's T-SQL modes both accept `now()` and `x::int`.
So after both have parsed a file, these rules look at its tokens and functions for what only
DuckDB or PostgreSQL understand, and name each with the portable alternative.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.tokens import Token, TokenType

SQLGLOT_DIALECT = "tsql"
SQLFLUFF_DIALECT = "tsql"

_TOKEN_RULES: dict[TokenType, str] = {
    TokenType.DCOLON: "`::` cast is not T-SQL; use CAST(x AS type) or dbt.safe_cast",
    TokenType.DPIPE: "`||` is not T-SQL concatenation; use dbt.concat([...])",
    TokenType.LIMIT: "LIMIT is not T-SQL; use TOP n or OFFSET ... FETCH",
    TokenType.TRUE: "T-SQL has no boolean literals; compare a bit with 1 / 0",
    TokenType.FALSE: "T-SQL has no boolean literals; compare a bit with 1 / 0",
    TokenType.ILIKE: "ILIKE is not T-SQL; use LIKE (the collation decides case)",
    TokenType.INTERVAL: "INTERVAL is not T-SQL; use dbt.dateadd",
    TokenType.FILTER: "aggregate FILTER is not T-SQL; use CASE inside the aggregate",
    TokenType.QUALIFY: "QUALIFY is not T-SQL; filter the window function in an outer query",
}

# SQL Server built-in functions that sqlglot does not model itself (it reads those as Anonymous).
_TSQL_FUNCTION_NAMES = """
abs acos ascii asin atan atn2 avg cast ceiling char charindex checksum choose coalesce
collationproperty concat concat_ws convert cos cot count count_big cume_dist current_timestamp
datalength dateadd datediff datediff_big datefromparts datename datepart datetrunc day
db_name degrees dense_rank difference eomonth error_message exp first_value floor format
getdate getutcdate grouping hashbytes iif isdate isjson isnull isnumeric json_modify
json_query json_value lag last_value lead left len log log10 lower ltrim max min month
newid nchar ntile nullif object_id parsename patindex percent_rank pi power quotename
radians rand rank regexp_like replace replicate reverse right round row_number rtrim sign
sin soundex space sqrt square stdev str string_agg string_escape stuff substring sum
switchoffset sysdatetime sysdatetimeoffset sysutcdatetime tan timefromparts todatetimeoffset
translate trim try_cast try_convert try_parse unicode upper var year
"""
_TSQL_FUNCTIONS = frozenset(_TSQL_FUNCTION_NAMES.split())


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


def _line_of(tokens: list[Token], name: str) -> int:
    for token, following in itertools.pairwise(tokens):
        if token.text.lower() == name and following.token_type == TokenType.L_PAREN:
            return token.line
    return 1


def portability_problems(sql: str) -> list[Problem]:
    """Everything in `sql` (already parsed as T-SQL) that SQL Server would reject."""
    tokens = TSQL().tokenize(sql)
    problems = [
        Problem(token.line, _TOKEN_RULES[token.token_type])
        for token in tokens
        if token.token_type in _TOKEN_RULES
    ]
    for statement in sqlglot.parse(sql, read=SQLGLOT_DIALECT):
        if statement is None:
            continue
        for function in statement.find_all(exp.Anonymous):
            name = function.name.lower()
            if name not in _TSQL_FUNCTIONS:
                problems.append(
                    Problem(_line_of(tokens, name), f"{name}() is not a SQL Server function")
                )
        for _ in statement.find_all(exp.Extract):
            problems.append(Problem(_line_of(tokens, "extract"), "EXTRACT is not T-SQL; use DATEPART"))
    return sorted(set(problems), key=lambda problem: problem.line)
