"""What T-SQL does not have: the constructs other engines accept that SQL Server rejects.

Parsers are lenient here: sqlfluff's and sqlglot's T-SQL modes both accept `now()` and `x::int`.
So after both have parsed a file, these rules look at its tokens and functions for what only
DuckDB or PostgreSQL understand, and name each with the portable alternative.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.tsql import TSQL
from sqlglot.errors import ParseError
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
radians rand rank regexp_like replace replicate reverse right round row_number rtrim schema_id sign
sin soundex space sqrt square stdev str string_agg string_escape stuff substring sum
switchoffset sysdatetime sysdatetimeoffset sysutcdatetime tan timefromparts todatetimeoffset
translate trim try_cast try_convert try_parse unicode upper var year
"""
_TSQL_FUNCTIONS = frozenset(_TSQL_FUNCTION_NAMES.split())


@dataclass(frozen=True)
class Problem:
    line: int
    message: str
    validator: str = "sqlserver rules"


def _line_of(tokens: list[Token], name: str) -> int:
    for token, following in itertools.pairwise(tokens):
        if token.text.lower() == name and following.token_type == TokenType.L_PAREN:
            return token.line
    return 1


# `OBJECT::[s].[t]` in GRANT, DENY, REVOKE, ALTER SCHEMA ... TRANSFER, ALTER AUTHORIZATION: the class
# of a securable, which T-SQL writes with `::` too.
_SECURABLE_CLASSES = frozenset(
    {"object", "schema", "type", "database", "role", "user", "login", "certificate", "assembly", "collection"}
)


def _scope_qualifier(before: Token | None, token: Token) -> bool:
    return token.token_type == TokenType.DCOLON and before is not None and before.text.lower() in _SECURABLE_CLASSES


def portability_problems(sql: str) -> list[Problem]:
    """Everything in `sql` (already parsed as T-SQL) that SQL Server would reject."""
    tokens = TSQL().tokenize(sql)
    problems = [
        Problem(token.line, _TOKEN_RULES[token.token_type])
        for before, token in itertools.pairwise([None, *tokens])
        if token is not None and token.token_type in _TOKEN_RULES and not _scope_qualifier(before, token)
    ]
    for statement in sqlglot.parse(sql, read=SQLGLOT_DIALECT):
        if statement is None:
            continue
        for function in statement.find_all(exp.Anonymous):
            name = function.name.lower()
            if name not in _TSQL_FUNCTIONS:
                problems.append(Problem(_line_of(tokens, name), f"{name}() is not a SQL Server function"))
        for _ in statement.find_all(exp.Extract):
            problems.append(Problem(_line_of(tokens, "extract"), "EXTRACT is not T-SQL; use DATEPART"))
    return sorted(set(problems), key=lambda problem: problem.line)


# Batches dataops itself sends (publish, rollback, drop a version, the lock) -----------------------
#
# Each is a list of statements, one a line. Both parsers are checked statement by statement, with
# the T-SQL neither models (THROW for sqlglot, ALTER SCHEMA ... TRANSFER for both) held to its exact
# shape instead; what SQL Server requires of a batch beyond its statements is checked here too.

_ID = r"(?:\[(?:[^\]]|\]\])+\]|[A-Za-z_#@][\w@$#]*)"
_BRACKETED = re.compile(r"\[(?:[^\]]|\]\])+\]")
_STRING = r"N?'(?:[^']|'')*'"
_THROW = re.compile(rf"THROW\s+(?P<number>\d+)\s*,\s*{_STRING}\s*,\s*(?P<state>\d+)", re.I)
_TRANSFER = re.compile(
    rf"ALTER\s+SCHEMA\s+{_ID}\s+TRANSFER\s+(?:(?:OBJECT|TYPE|XML\s+SCHEMA\s+COLLECTION)::)?{_ID}(?:\.{_ID})?", re.I
)
_DYNAMIC = re.compile(r"EXEC(?:UTE)?\s+(?:sys\s*\.\s*)?sp_executesql\s+N'(?P<sql>(?:[^']|'')*)'", re.I)
# Statements SQL Server runs only as the first of their batch (else error 111).
_FIRST_IN_BATCH = re.compile(
    r"CREATE\s+(?:OR\s+ALTER\s+)?(?:VIEW|SCHEMA|PROC|PROCEDURE|FUNCTION|TRIGGER|RULE|DEFAULT)\b", re.I
)
# What starts the statement an IF runs (at the IF's own level, not inside its condition).
_STATEMENT_KEYWORDS = """
alter begin commit create declare delete drop exec execute grant insert merge print revoke rollback
select set throw truncate update
"""
_STATEMENT_STARTS = frozenset(_STATEMENT_KEYWORDS.split())
_BEGIN = re.compile(r"BEGIN\s+TRAN(?:SACTION)?", re.I)
_END = re.compile(r"(?:COMMIT|ROLLBACK|SAVE)(?:\s+TRAN(?:SACTION)?)?\b.*", re.I)
_COMMIT = re.compile(r"COMMIT(?:\s+TRAN(?:SACTION)?)?", re.I)
_XACT_ABORT = re.compile(r"SET\s+XACT_ABORT\s+ON", re.I)
_LOCK_TIMEOUT = re.compile(r"SET\s+LOCK_TIMEOUT\s+(?P<ms>-?\d+)", re.I)

_linter: Any = None


def _sqlfluff_problems(statements: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """sqlfluff's parse of `(line, statement)`s in one go (one parse costs what ten statements
    do), each violation on the line of the statement it is in."""
    global _linter
    if not statements:
        return []
    if _linter is None:
        from sqlfluff.core import FluffConfig, Linter

        _linter = Linter(config=FluffConfig(overrides={"dialect": SQLFLUFF_DIALECT}))
    starts: list[tuple[int, int]] = []  # (first line in the document, the statement's line)
    document: list[str] = []
    for line, statement in statements:
        starts.append((sum(text.count("\n") + 1 for text in document) + 1, line))
        # sqlfluff's T-SQL lexer ends `[a]]b]` at its first `]`: an escaped bracket, as sqlfluff reads it.
        document.append(_BRACKETED.sub(lambda found: found.group(0).replace("]]", "__"), statement) + ";")
    problems = []
    for violation in _linter.parse_string("\n".join(document) + "\n").violations:
        at = violation.line_no or 1
        line = next((own for first, own in reversed(starts) if first <= at), starts[0][1])
        problems.append((line, " ".join(violation.desc().split())))
    return problems


def _sqlglot_problems(sql: str) -> list[str]:
    """sqlglot's parse error, if any (its fallback to a bare command, with a logged warning, is
    no error: that is how it reads a GRANT), then the portability rules."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        sqlglot.parse(sql, read=SQLGLOT_DIALECT)
        return [problem.message for problem in portability_problems(sql)]
    except ParseError as error:
        first = error.errors[0] if error.errors else {}
        return [str(first.get("description") or error)]
    finally:
        logger.setLevel(level)


def _split_if(statement: str) -> tuple[str, str] | None:
    """`IF <condition> <statement>` as its condition and its statement."""
    tokens = TSQL().tokenize(statement)
    if not tokens or tokens[0].text.upper() != "IF":
        return None
    depth = 0
    for token in tokens[1:]:
        if token.token_type == TokenType.L_PAREN:
            depth += 1
        elif token.token_type == TokenType.R_PAREN:
            depth -= 1
        elif depth == 0 and token.text.lower() in _STATEMENT_STARTS:
            return statement[len(tokens[0].text) : token.start].strip(), statement[token.start :].strip()
    return None


@dataclass
class _Checked:
    """What one statement's checks found, and what sqlfluff is still to parse: the statement
    itself unless neither parser knows it (`fluff`), and the statements it runs dynamically
    (`dynamic`: sp_executesql's, each a batch of its own)."""

    problems: list[tuple[str, str]]
    fluff: str | None
    dynamic: list[str]


def _check(statement: str, first: bool) -> _Checked:
    """`first`: the statement opens its batch."""
    checked = _Checked([], statement, [])
    body = statement
    branch = _split_if(statement)
    if branch is not None:
        condition, body = branch
        checked.problems += [
            ("sqlglot", f"IF condition: {message}")
            for message in _sqlglot_problems(f"SELECT CASE WHEN {condition} THEN 1 END")
        ]
    opening = _FIRST_IN_BATCH.match(body)
    if opening and (branch is not None or not first):
        checked.problems.append(
            (
                "sqlserver batch",
                f"{' '.join(opening.group(0).upper().split())} must be the "
                "first statement of its batch: run it with EXEC sys.sp_executesql",
            )
        )
    if re.match(r"ALTER\s+SCHEMA\b", body, re.I):
        checked.fluff = None  # neither parser knows ALTER SCHEMA ... TRANSFER: its exact shape, then
        if not _TRANSFER.fullmatch(body):
            checked.problems.append(("sqlserver batch", "not an ALTER SCHEMA <schema> TRANSFER <schema>.<object>"))
        return checked
    if body.upper().startswith("THROW"):  # sqlglot does not know THROW
        thrown = _THROW.fullmatch(body)
        if not thrown:
            checked.problems.append(("sqlserver batch", "not a THROW <number>, <message>, <state>"))
        elif int(thrown.group("number")) < 50000 or int(thrown.group("state")) > 255:
            checked.problems.append(
                ("sqlserver batch", "THROW takes an error number of 50000 or more and a state of 0 to 255")
            )
        return checked
    checked.problems += [("sqlglot", message) for message in _sqlglot_problems(body)]
    dynamic = _DYNAMIC.fullmatch(body)
    if dynamic:
        checked.dynamic.append(dynamic.group("sql").replace("''", "'"))
    return checked


def batch_problems(statements: Sequence[str], atomic: bool = False) -> list[Problem]:
    """Everything SQL Server would reject in one batch of `statements` (line n: statement n), and,
    for an `atomic` batch, whatever would let it commit in part or wait without end: SET XACT_ABORT
    ON and a LOCK_TIMEOUT before its one BEGIN TRANSACTION, its COMMIT last, nothing else that
    ends a transaction. A statement run by sp_executesql is checked as the batch it is."""
    statements = [statement.strip().rstrip(";").strip() for statement in statements]
    problems: list[Problem] = []
    fluff: dict[str, list[tuple[int, str]]] = {"": [], "in sp_executesql: ": []}
    for line, statement in enumerate(statements, start=1):
        pending = [("", statement, line == 1)]
        while pending:
            prefix, text, first = pending.pop()
            checked = _check(text, first)
            problems += [Problem(line, prefix + message, validator) for validator, message in checked.problems]
            if checked.fluff is not None:
                fluff.setdefault(prefix, []).append((line, checked.fluff))
            pending += [(prefix + "in sp_executesql: ", inner, True) for inner in checked.dynamic]
    for prefix, parsed in fluff.items():
        problems += [Problem(line, prefix + message, "sqlfluff") for line, message in _sqlfluff_problems(parsed)]
    if atomic:
        problems += [
            Problem(line, message, "sqlserver transaction") for line, message in _transaction_problems(statements)
        ]
    return sorted(set(problems), key=lambda problem: (problem.line, problem.validator, problem.message))


def _transaction_problems(statements: list[str]) -> list[tuple[int, str]]:
    begins = [n for n, s in enumerate(statements, start=1) if _BEGIN.fullmatch(s)]
    if len(begins) != 1:
        return [(begins[1] if begins else 1, "an atomic batch has exactly one BEGIN TRANSACTION")]
    begin = begins[0]
    before = statements[: begin - 1]
    problems = [
        (n, "only SET statements come before BEGIN TRANSACTION")
        for n, s in enumerate(before, start=1)
        if not s.upper().startswith("SET ")
    ]
    if not any(_XACT_ABORT.fullmatch(s) for s in before):
        problems.append(
            (
                begin,
                "SET XACT_ABORT ON must come before BEGIN TRANSACTION: without it an error "
                "(a lock timeout among them) leaves the statements before it to commit",
            )
        )
    timeouts = [_LOCK_TIMEOUT.fullmatch(s) for s in before]
    if not any(timeouts):
        problems.append(
            (
                begin,
                "SET LOCK_TIMEOUT <ms> must come before BEGIN TRANSACTION: without it the swap "
                "waits for as long as any reader holds a view, and every later reader waits behind it",
            )
        )
    elif any(found and int(found.group("ms")) < 0 for found in timeouts):
        problems.append((begin, "SET LOCK_TIMEOUT -1 waits without end: give it milliseconds"))
    if not _COMMIT.fullmatch(statements[-1]):
        problems.append((len(statements), "an atomic batch ends with COMMIT TRANSACTION"))
    problems += [
        (n, "nothing but the last statement ends the transaction")
        for n, s in enumerate(statements[begin:-1], start=begin + 1)
        if _END.fullmatch(s)
    ]
    return problems
