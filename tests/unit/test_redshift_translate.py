"""Redshift semantics on the DuckDB engine: each rule where DuckDB differs, and the Redshift functions."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from local.redshift.engine import Engine, RedshiftError
from local.redshift.translate import split_statements, translate

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def engine():
    eng = Engine(":memory:", auto_refresh_interval=None)
    eng.execute(
        "CREATE TABLE tx (id bigint encode az64, customer_id int, amount decimal(9,2), ts timestamp, note varchar(20))"
        " DISTSTYLE KEY DISTKEY(customer_id) SORTKEY(ts)"
    )
    eng.execute(
        "INSERT INTO tx VALUES (1, 10, 10.00, '2018-10-07 01:00:00', 'a'), (2, 10, 20.50, '2018-10-08 13:00:00', NULL),"
        " (3, 11, 5.25, '2018-10-06 23:59:59', 'c')"
    )
    yield eng
    eng.close()


def one(engine: Engine, sql: str, params: dict | None = None):
    return engine.execute(sql, params).rows[0]


def test_storage_clauses_are_accepted_and_ignored(engine):
    engine.execute(
        'CREATE TABLE public."customer_info"(customer_id bigint NOT NULL encode az64, '
        "job_title character varying(500) encode lzo, PRIMARY KEY (customer_id)) "
        "BACKUP NO DISTSTYLE ALL SORTKEY(customer_id)"
    )
    engine.execute("INSERT INTO customer_info VALUES (1, 'x')")
    # Redshift declares primary keys but does not enforce them: a duplicate is accepted.
    engine.execute("INSERT INTO public.customer_info VALUES (1, 'y')")
    assert one(engine, "SELECT count(*) FROM customer_info") == (2,)


def test_integer_division_truncates_toward_zero(engine):
    assert one(engine, "SELECT 7/2, -7/2") == (3, -3)
    assert float(one(engine, "SELECT 7.0/2")[0]) == 3.5
    assert one(engine, "SELECT customer_id / 3 FROM tx WHERE id = 1") == (3,)


def test_division_by_zero_is_an_error(engine):
    with pytest.raises(RedshiftError) as err:
        engine.execute("SELECT 1/0")
    assert err.value.code == "22012"
    assert err.value.message == "division by zero"


def test_lateral_column_alias_in_one_select_list(engine):
    row = one(engine, "SELECT sum(amount) AS total, total * 2 AS doubled FROM tx WHERE customer_id = 10")
    assert row == (Decimal("30.50"), Decimal("61.00"))


def test_extract_dow_numbers_sunday_zero(engine):
    # 2018-10-07 was a Sunday, 2018-10-06 a Saturday.
    assert one(
        engine, "SELECT extract(dow FROM '2018-10-07'::timestamp), extract(dow FROM '2018-10-06'::timestamp)"
    ) == (0, 6)


def test_nulls_sort_as_largest_value(engine):
    desc = [r[0] for r in engine.execute("SELECT note FROM tx ORDER BY note DESC").rows]
    asc = [r[0] for r in engine.execute("SELECT note FROM tx ORDER BY note").rows]
    assert desc == [None, "c", "a"]
    assert asc == ["a", "c", None]


def test_date_minus_integer_is_a_date(engine):
    assert one(engine, "SELECT cast('2018-10-08' AS date) - 7") == (date(2018, 10, 1),)


def test_decimal_scale_of_sum_and_product(engine):
    result = engine.execute("SELECT sum(amount) AS s, amount * 2 AS p FROM tx WHERE id = 1 GROUP BY amount")
    s, p = result.columns
    assert (s.type_name, s.scale) == ("numeric", 2)
    assert (p.type_name, p.scale) == ("numeric", 2)
    assert result.rows == [(Decimal("10.00"), Decimal("20.00"))]


def test_parameters_are_cast_by_context(engine):
    params = {"cid": "10", "min": "15.5", "since": "2018-10-08 00:00:00"}
    rows = engine.execute(
        "SELECT id FROM tx WHERE customer_id = :cid AND amount > :min AND ts >= :since", params
    ).rows
    assert rows == [(2,)]
    engine.execute("INSERT INTO tx VALUES (:id, :cid, :amount, :ts, :note)",
                   {"id": "99", "cid": "12", "amount": "1.10", "ts": "2018-10-09 00:00:00", "note": "it's"})  # fmt: skip
    assert one(engine, "SELECT amount, ts, note FROM tx WHERE id = 99") == (
        Decimal("1.10"), datetime(2018, 10, 9), "it's",
    )  # fmt: skip
    engine.execute("DELETE FROM tx WHERE id = :id", {"id": "99"})


def test_parameter_values_are_never_spliced_as_sql(engine):
    rows = engine.execute("SELECT count(*) FROM tx WHERE note = :n", {"n": "a' OR '1'='1"}).rows
    assert rows == [(0,)]


def test_missing_parameter_is_a_clear_error(engine):
    with pytest.raises(RedshiftError, match=r'parameter ":cid" has no value'):
        engine.execute("SELECT 1 FROM tx WHERE customer_id = :cid", {})


def test_redshift_functions(engine):
    row = one(
        engine,
        """SELECT json_extract_path_text('{"a":{"b":"x"}}', 'a', 'b'),
                  json_extract_path_text('{"a":1}', 'missing'),
                  to_char('2018-10-07 01:02:03'::timestamp, 'YYYYMM'),
                  dateadd(day, 3, '2018-01-01'::date),
                  datediff(day, '2018-01-01'::date, '2018-01-10'::date),
                  is_utf8(to_varbyte('héllo', 'utf-8')),
                  is_utf8(from_hex('ff')::varbyte),
                  can_json_parse('{"a": 1}'), can_json_parse('nope'),
                  from_varbyte(to_varbyte('hé', 'utf-8'), 'utf-8'),
                  nvl(NULL, 'z')""",
    )
    assert row == ("x", "", "201810", datetime(2018, 1, 4), 9, True, False, True, False, "hé", "z")


def test_json_parse_yields_super(engine):
    result = engine.execute("""SELECT json_parse('{"a": [1, 2]}') AS doc""")
    assert result.columns[0].type_name == "super"


def test_clock_override_python_and_sql(engine):
    engine.set_clock(datetime(2018, 10, 1, 12, 0, 0, 500))
    try:
        assert one(engine, "SELECT getdate(), sysdate, current_date, cast(getdate() AS date) - 1") == (
            datetime(2018, 10, 1, 12, 0, 0), datetime(2018, 10, 1, 12, 0, 0, 500), date(2018, 10, 1), date(2018, 9, 30),
        )  # fmt: skip
    finally:
        engine.set_clock(None)
    engine.execute("SET emulator_clock TO '2019-01-02 03:04:05'")
    assert one(engine, "SELECT getdate()") == (datetime(2019, 1, 2, 3, 4, 5),)
    engine.execute("RESET emulator_clock")
    assert one(engine, "SELECT getdate()")[0].year >= 2024
    with pytest.raises(RedshiftError, match="invalid input syntax for type timestamp"):
        engine.execute("SET emulator_clock TO 'yesterday-ish'")


def test_clock_applies_to_views_at_query_time(engine):
    engine.execute("CREATE VIEW recent AS SELECT id FROM tx WHERE ts >= getdate() - interval '1 day'")
    engine.set_clock(datetime(2018, 10, 8, 12, 0))
    try:
        assert sorted(r[0] for r in engine.execute("SELECT id FROM recent").rows) == [2]
        engine.set_clock(datetime(2018, 10, 6, 12, 0))
        assert sorted(r[0] for r in engine.execute("SELECT id FROM recent").rows) == [1, 2, 3]
    finally:
        engine.set_clock(None)


def test_output_column_names_like_redshift(engine):
    result = engine.execute("SELECT count(*), getdate(), 1 + 1, id FROM tx GROUP BY id LIMIT 1")
    assert [c.name for c in result.columns] == ["count", "getdate", "?column?", "id"]


def test_identifiers_fold_to_lower_case(engine):
    result = engine.execute('SELECT ID AS "TxId", Customer_ID FROM TX WHERE id = 1')
    assert [c.name for c in result.columns] == ["txid", "customer_id"]


@pytest.mark.parametrize(
    ("sql", "code", "message"),
    [
        ("SELECT * FROM nope", "42P01", 'relation "nope" does not exist'),
        ("SELECT nope FROM tx", "42703", 'column "nope" does not exist in tx'),
        ("SELEC 1", "42601", "syntax error at or near"),
        ("CREATE TABLE tx (a int)", "42P07", 'relation "tx" already exists'),
        ("SELECT undefined_fn(1)", "42883", "function undefined_fn does not exist"),
        ("SELECT 'abc'::int", "22P02", "abc"),
    ],
)
def test_errors_look_like_redshift(engine, sql, code, message):
    with pytest.raises(RedshiftError) as err:
        engine.execute(sql)
    assert err.value.code == code
    assert message in err.value.message


def test_batch_is_all_or_nothing(engine):
    before = one(engine, "SELECT count(*) FROM tx")
    with pytest.raises(RedshiftError, match='relation "missing" does not exist'):
        engine.execute_batch(["INSERT INTO tx (id) VALUES (500)", "INSERT INTO missing VALUES (1)"])
    assert one(engine, "SELECT count(*) FROM tx") == before


def test_explicit_transaction_statements_and_rowcounts(engine):
    results = engine.execute_batch(
        ["BEGIN", "INSERT INTO tx (id) VALUES (600), (601)", "UPDATE tx SET note = 'u' WHERE id >= 600",
         "DELETE FROM tx WHERE id >= 600", "COMMIT"]
    )  # fmt: skip
    assert [r.rowcount for r in results[1:4]] == [2, 2, 2]
    assert not results[1].has_result_set


def test_unknown_functions_pass_through_as_plain_calls():
    sql = translate("SELECT public.fn_customer_cc_fd(a, b), explain_model('m') FROM t").lower()
    assert "fn_customer_cc_fd(a, b)" in sql
    assert "explain_model('m')" in sql
    assert "public." not in sql


def test_split_statements_respects_strings_and_comments():
    assert split_statements("select ';' ; -- c;\n select 2; /* x; */") == ["select ';'", "select 2"]


def test_avg_keeps_redshift_types(engine):
    result = engine.execute("SELECT avg(amount) AS a, avg(customer_id) AS c FROM tx WHERE id IN (1, 2, 3)")
    a, c = result.columns
    assert (a.type_name, a.precision, a.scale) == ("numeric", 38, 2)  # AVG(DECIMAL(9,2)) is DECIMAL(38,2)
    assert c.type_name == "int8"  # AVG of integers is BIGINT
    assert result.rows == [(Decimal("11.92"), 10)]  # 35.75 / 3 = 11.9166..., (10+10+11) / 3 = 10.33...


def test_decimal_division_scale(engine):
    result = engine.execute(
        "SELECT amount / 4 AS q, sum(amount) / count(*) AS m FROM tx WHERE id = 1 GROUP BY amount"
    )
    q, m = result.columns
    # DECIMAL(9,2) / INT: scale max(4, 2 + 10 - 0 + 1) = 13, precision 9 - 2 + 0 + 13 = 20.
    assert (q.precision, q.scale) == (20, 13)
    assert (m.precision, m.scale) == (38, 4)
    assert result.rows == [(Decimal("2.5000000000000"), Decimal("10.0000"))]


def test_parameters_in_arithmetic(engine):
    assert one(engine, "SELECT :a + 1, :b * 2, :c || 'x'", {"a": "2", "b": "1.5", "c": "7"}) == (
        3,
        Decimal("3.0"),
        "7x",
    )


def test_super_navigation_with_json_parse(engine):
    engine.execute("CREATE TABLE docs (id int, doc super)")
    engine.execute("""INSERT INTO docs SELECT 1, json_parse('{"customer": {"id": 7}, "amount": 12.5}')""")
    result = engine.execute(
        "SELECT d.doc.customer.id, doc.amount::decimal(9,2), json_serialize(doc) FROM docs d"
    )
    assert result.rows == [("7", Decimal("12.50"), '{"customer":{"id":7},"amount":12.5}')]
    assert [c.type_name for c in result.columns] == ["super", "numeric", "varchar"]
    tags = engine.execute(
        """SELECT doc.tags[0], doc.tags[1] FROM (SELECT json_parse('{"tags": ["a", "b"]}') AS doc)"""
    )
    assert tags.rows == [('"a"', '"b"')]


def test_trunc_and_datepart(engine):
    row = one(
        engine,
        "SELECT trunc('2018-10-07 13:45:00'::timestamp), trunc(2.75), trunc(2.757, 2), "
        "datepart(hour, '2018-10-07 13:45:00'::timestamp), datepart(dw, '2018-10-07'::timestamp), "
        "date_part(epoch, '1970-01-02 00:00:00'::timestamp)",
    )
    assert row[:5] == (date(2018, 10, 7), Decimal("2"), Decimal("2.75"), 13, 0)
    assert float(row[5]) == 86400
