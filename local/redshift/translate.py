"""Redshift SQL -> DuckDB SQL with sqlglot: parse with the Redshift dialect, rewrite the AST where the
two differ, generate DuckDB SQL.

What the rewrite does (each rule has a unit test in tests/unit/test_redshift_translate.py):
- `:name` Data API parameters become string literals. A quoted literal is "unknown"-typed in both
  Redshift and DuckDB, so `col = :id` compares as the column's type, as Redshift casts by context.
- GETDATE()/SYSDATE/CURRENT_TIMESTAMP/CURRENT_DATE read the engine's clock (overridable for replays).
- json_extract_path_text keeps Redshift's '' for an absent path.
- Storage clauses (ENCODE, DISTSTYLE, DISTKEY, SORTKEY, BACKUP) are dropped; so are PRIMARY KEY,
  UNIQUE and REFERENCES, which Redshift declares but never enforces.
- Identifiers are folded to lower case, as Redshift does by default (even quoted ones).
- SUPER is DuckDB's JSON, VARBYTE its BLOB.
Integer division and DECIMAL arithmetic are handled by connection settings and by `decimal_rules`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import sqlglot
from sqlglot import exp
from sqlglot.dialects.redshift import Redshift
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from local.redshift.errors import RedshiftError

# sqlglot warns about every Redshift-only property it cannot render; we drop them on purpose.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_REDSHIFT = Redshift()

_STORAGE_PROPERTIES = (
    exp.DistStyleProperty,
    exp.DistKeyProperty,
    exp.SortKeyProperty,
    exp.BackupProperty,
)
# Declared-only on Redshift: keeping them in DuckDB would reject rows Redshift accepts.
_UNENFORCED_CONSTRAINTS = (
    exp.EncodeColumnConstraint,
    exp.PrimaryKeyColumnConstraint,
    exp.UniqueColumnConstraint,
    exp.Reference,
)


def split_statements(sql: str) -> list[str]:
    """Split a script on top-level semicolons (string literals and comments respected)."""
    try:
        tokens = _REDSHIFT.tokenize(sql)
    except TokenError as exc:
        raise RedshiftError(f"syntax error: {exc}", "42601") from exc
    # Each statement starts at its first token, so leading comments never reach the dispatchers.
    statements: list[str] = []
    start: int | None = None
    for token in tokens:
        if token.token_type == sqlglot.TokenType.SEMICOLON:
            if start is not None:
                statements.append(sql[start : token.start].strip())
            start = None
        elif start is None:
            start = token.start
    if start is not None:
        statements.append(sql[start:].strip())
    return statements


def leading_words(sql: str, count: int = 4) -> list[str]:
    """The first `count` words of a statement (without leading comments), upper-cased, for dispatch."""
    statements = split_statements(sql)
    text = statements[0] if statements else ""
    return [w.upper() for w in re.findall(r'"[^"]*"|[^\s(),;]+', text)[:count]]


def parse(sql: str) -> exp.Expression:
    """Parse one Redshift statement; syntax errors are raised the way Redshift reports them."""
    try:
        expression = sqlglot.parse_one(sql, read="redshift")
    except (ParseError, TokenError) as exc:
        raise _syntax_error(exc) from exc
    if expression is None:
        raise RedshiftError("syntax error at end of input", "42601")
    return expression


def _syntax_error(exc: Exception) -> RedshiftError:
    errors = getattr(exc, "errors", None) or [{}]
    near = errors[0].get("highlight") or ""
    if near:
        return RedshiftError(f'syntax error at or near "{near}"', "42601")
    return RedshiftError(f"syntax error: {exc}", "42601")


# Redshift's datepart abbreviations that DuckDB spells differently.
_DATEPART_UNITS = {"dw": "dow", "dayofweek": "dow", "weekday": "dow", "dy": "doy", "dayofyear": "doy", "y": "year",
                   "yr": "year", "yrs": "year", "mon": "month", "mons": "month", "d": "day", "h": "hour",
                   "hr": "hour", "hrs": "hour", "m": "minute", "min": "minute", "mins": "minute", "s": "second",
                   "sec": "second", "secs": "second", "ms": "millisecond", "msec": "millisecond", "w": "week",
                   "qtr": "quarter", "qtrs": "quarter"}  # fmt: skip
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def bind_parameters(expression: exp.Expression, parameters: Mapping[str, str] | None) -> exp.Expression:
    """Replace every `:name` with its value as a string literal (values are never spliced as SQL)."""
    params = {k.lower(): v for k, v in (parameters or {}).items()}

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder) and node.name:
            name = node.name.lower()
            if name not in params:
                raise RedshiftError(f'parameter ":{node.name}" has no value', "42P02")
            value = params[name]
            if value is None:
                return exp.null()
            # In arithmetic an unknown-typed literal resolves to the other operand's numeric type on
            # Redshift; DuckDB cannot pick an overload for a string literal there, so give it a number.
            if isinstance(node.parent, _ARITHMETIC) and _NUMBER.fullmatch(str(value).strip()):
                return exp.Literal.number(str(value).strip())
            return exp.Literal.string(str(value))
        return node

    return expression.transform(replace, copy=False)


def _rewrite(node: exp.Expression) -> exp.Expression | None:
    if isinstance(node, exp.Table) and node.db.lower() == "public" and not node.catalog:
        node.set("db", None)  # Redshift's default schema is DuckDB's main
        return node
    if (
        isinstance(node, exp.Dot)
        and isinstance(node.this, exp.Identifier)
        and node.this.name.lower() == "public"
    ) and isinstance(node.expression, exp.Func):
        return node.expression  # public.fn(...): UDFs live unqualified on every connection
    if isinstance(node, exp.CurrentTimestamp):
        return exp.Anonymous(this="redshift_sysdate" if node.args.get("sysdate") else "redshift_getdate")
    if isinstance(node, exp.CurrentDate):
        return exp.cast(exp.Anonymous(this="redshift_sysdate"), exp.DataType.Type.DATE)
    if isinstance(node, exp.JSONExtractScalar) and isinstance(node.expression, exp.JSONPath):
        return exp.Anonymous(
            this="redshift_json_text",
            expressions=[node.this, exp.Literal.string(_json_path(node.expression))],
        )
    if isinstance(node, exp.Trunc) and node.args.get("decimals") is None:
        return exp.Anonymous(this="redshift_trunc", expressions=[node.this])  # TRUNC(timestamp) is a DATE
    if (
        isinstance(node, exp.Anonymous)
        and node.name.lower() == "datepart"
        and len(node.expressions) == 2
        and isinstance(node.expressions[0], exp.Column | exp.Var)
    ):
        unit = node.expressions[0].name.lower()
        return exp.Extract(
            this=exp.var(_DATEPART_UNITS.get(unit, unit).upper()), expression=node.expressions[1]
        )
    if isinstance(node, exp.Bracket):
        node.set("json_access", True)  # Redshift subscripts only SUPER (JSON here), 0-based in both
        return node
    if isinstance(node, _STORAGE_PROPERTIES):
        return None
    if isinstance(node, exp.ColumnConstraint) and isinstance(node.args.get("kind"), _UNENFORCED_CONSTRAINTS):
        return None
    if isinstance(node, exp.PrimaryKey | exp.UniqueColumnConstraint) and isinstance(node.parent, exp.Schema):
        return None
    if isinstance(node, exp.DataType):
        if node.this == exp.DataType.Type.SUPER:
            return exp.DataType.build("JSON")
        if node.this in (exp.DataType.Type.VARBINARY, exp.DataType.Type.BINARY):
            return exp.DataType.build("BLOB")
    return node


def _json_path(path: exp.JSONPath) -> str:
    parts = ["$"]
    for part in path.expressions:
        if isinstance(part, exp.JSONPathKey):
            key = str(part.this).replace('"', '\\"')
            parts.append(f'."{key}"')
        elif isinstance(part, exp.JSONPathSubscript):
            parts.append(f"[{part.this}]")
    return "".join(parts)


def _name_output_columns(select: exp.Select) -> None:
    """Unnamed output columns get Redshift's names: the function's name, else ?column?."""
    for projection in select.expressions:
        if isinstance(projection, exp.Alias | exp.Column | exp.Star):
            continue
        target = projection.expression if isinstance(projection, exp.Dot) else projection
        if isinstance(target, exp.Anonymous):
            name = target.name
        elif isinstance(target, exp.CurrentTimestamp):
            name = "sysdate" if target.args.get("sysdate") else "getdate"
        elif isinstance(target, exp.Cast):
            continue  # DuckDB names x::t after x already, close enough to Redshift
        elif isinstance(target, exp.Func):
            match = re.match(r"\s*(\w+)\s*\(", target.sql(dialect="redshift"))
            name = match.group(1).lower() if match else "?column?"
        else:
            name = "?column?"
        projection.replace(exp.alias_(projection.copy(), name, quoted=True))


def rewrite(expression: exp.Expression) -> exp.Expression:
    """Apply the Redshift -> DuckDB semantic rewrites (in place) and return the expression."""
    expression = normalize_identifiers(expression, dialect="redshift")
    if isinstance(expression, exp.Select):
        _name_output_columns(expression)
    return expression.transform(_rewrite, copy=False)


def to_duckdb(expression: exp.Expression) -> str:
    return expression.sql(dialect="duckdb")


def translate(sql: str, parameters: Mapping[str, str] | None = None) -> str:
    """One Redshift statement -> DuckDB SQL (parameters bound as literals)."""
    expression = parse(sql)
    if isinstance(expression, exp.Command):
        # sqlglot could not model it: pass through; DuckDB reports what it cannot run.
        return sql
    return to_duckdb(rewrite(bind_parameters(expression, parameters)))


def parse_table_name(text: str) -> str:
    """`public."My_MV"` -> `my_mv`: a relation name as the emulator's catalog keys it."""
    text = text.strip().rstrip(";").strip()
    if not text:
        raise RedshiftError("syntax error at end of input", "42601")
    try:
        table = exp.to_table(text, dialect="redshift")
    except (ParseError, TokenError) as exc:
        raise _syntax_error(exc) from exc
    return table_key(table)


def table_key(table: exp.Table) -> str:
    """The catalog key of a table reference: its name, lower-cased (the `public` schema is implied)."""
    schema = table.db.lower()
    name = table.name.lower()
    return name if schema in ("", "public", "main") else f"{schema}.{name}"


_INTEGER_TYPES = {
    exp.DataType.Type.TINYINT: 5,
    exp.DataType.Type.SMALLINT: 5,
    exp.DataType.Type.INT: 10,
    exp.DataType.Type.BIGINT: 19,
    exp.DataType.Type.INT128: 38,
}


def _decimal_of(data_type: exp.DataType | None) -> tuple[int, int] | None:
    """(precision, scale) of a DECIMAL or integer type; None for anything else."""
    if data_type is None:
        return None
    if data_type.this in _INTEGER_TYPES:
        return _INTEGER_TYPES[data_type.this], 0
    if data_type.this == exp.DataType.Type.DECIMAL:
        params = [int(p.name) for p in data_type.expressions if p.name.isdigit()]
        return (params[0], params[1] if len(params) > 1 else 0) if params else (18, 0)
    return None


def _type_rule(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Avg) and not isinstance(node.this, exp.Distinct):
        arg = _decimal_of(node.this.type)
        if arg and node.this.type.this == exp.DataType.Type.DECIMAL:
            return exp.cast(node.copy(), exp.DataType.build(f"DECIMAL(38, {arg[1]})"))
        if arg:
            return exp.cast(node.copy(), exp.DataType.Type.BIGINT)  # Redshift: AVG of integers is BIGINT
    if isinstance(node, exp.Div):
        left, right = _decimal_of(node.this.type), _decimal_of(node.expression.type)
        decimals = {node.this.type.this, node.expression.type.this} & {exp.DataType.Type.DECIMAL}
        if left and right and decimals:
            (p1, s1), (p2, s2) = left, right
            p1 = 38 if isinstance(node.this, exp.Sum) else p1  # Redshift: SUM(DECIMAL(p,s)) is DECIMAL(38,s)
            p2 = 38 if isinstance(node.expression, exp.Sum) else p2
            scale = max(4, s1 + p2 - s2 + 1)
            precision = p1 - s1 + s2 + scale
            if precision > 38:
                scale = max(38 - (p1 - s1 + s2), 4)
                precision = 38
            # DuckDB divides decimals in DOUBLE; going through scale 9 keeps the cast exact (a direct
            # DOUBLE -> DECIMAL(p, 22) cast shows binary noise), at the cost of digits past the 9th.
            exact = exp.cast(node.copy(), exp.DataType.build(f"DECIMAL(38, {min(scale, 9)})"))
            return exp.Cast(this=exact, to=exp.DataType.build(f"DECIMAL({precision}, {scale})"))
    return node


def apply_type_rules(expression: exp.Expression, schema: dict[str, dict[str, str]]) -> exp.Expression:
    """Redshift's result types where DuckDB's differ: AVG(DECIMAL(p,s)) is DECIMAL(38,s), AVG(INT) is
    BIGINT, DECIMAL division keeps Redshift's scale (max(4, s1 + p2 - s2 + 1)) instead of DOUBLE.

    Needs column types, so the query is qualified against `schema` ({table: {column: type}}); if
    sqlglot cannot resolve it, the expression is returned unchanged (DuckDB's types then apply).
    """
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    query = expression.expression if isinstance(expression, exp.Create | exp.Insert) else expression
    if not isinstance(query, exp.Query) or not any(query.find_all(exp.Avg, exp.Div)):
        return expression
    try:
        qualified = qualify(
            query.copy(), schema=schema, dialect="redshift", expand_stars=False, validate_qualify_columns=False,
            identify=False, quote_identifiers=False,
        )  # fmt: skip
        annotate_types(qualified, schema=schema, dialect="redshift")
        qualified = qualified.transform(_type_rule)
    except Exception:  # sqlglot could not resolve a name or type: keep DuckDB's typing
        return expression
    if query is expression:
        return qualified
    query.replace(qualified)
    return expression
