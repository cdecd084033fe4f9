"""COPY option parsing: Redshift's spellings, values with and without AS, and clear errors."""

from __future__ import annotations

import pytest

from local.redshift.copy import _strptime, parse_options
from local.redshift.engine import RedshiftError

pytestmark = pytest.mark.unit


def test_options_with_and_without_as():
    options = parse_options(
        " IAM_ROLE 'arn:aws:iam::1:role/r' FORMAT AS CSV DELIMITER AS '|' IGNOREHEADER 1 GZIP "
        "DATEFORMAT 'auto' TIMEFORMAT AS 'YYYY-MM-DD HH24:MI:SS' NULL AS '\\N' EMPTYASNULL REGION 'us-east-1';"
    )
    assert options == {
        "IAM_ROLE": "arn:aws:iam::1:role/r", "CSV": True, "DELIMITER": "|", "IGNOREHEADER": "1", "GZIP": True,
        "DATEFORMAT": "auto", "TIMEFORMAT": "YYYY-MM-DD HH24:MI:SS", "NULL": "\\N", "EMPTYASNULL": True,
        "REGION": "us-east-1",
    }  # fmt: skip


def test_redshift_datetime_formats_become_strptime():
    assert _strptime("YYYY-MM-DD HH24:MI:SS") == "%Y-%m-%d %H:%M:%S"
    assert _strptime("DD/MM/YYYY") == "%d/%m/%Y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (" CSV MANIFEST", "MANIFEST is not supported"),
        (" FORMAT AS JSON", "JSON is not supported"),
        (" CSV BOGUS 1", 'syntax error at or near "BOGUS"'),
        (" DELIMITER", "DELIMITER needs a value"),
    ],
)
def test_bad_options_are_errors_not_ignored(text, message):
    with pytest.raises(RedshiftError, match=message):
        parse_options(text)
