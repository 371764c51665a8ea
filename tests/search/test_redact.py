"""`redact` hides every password form a storage or tracking URL can carry, and nothing else."""

import pytest

from search.redact import redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://hp:s3cret@db:5432/hpsearch", "postgresql://hp:***@db:5432/hpsearch"),
        (
            "postgresql+psycopg://hp:s3cret@db/hpsearch?sslmode=require",
            "postgresql+psycopg://hp:***@db/hpsearch?sslmode=require",
        ),
        ("http://alice:pa55@mlflow:5000", "http://alice:***@mlflow:5000"),
        # a raw (not percent-encoded) password holding `@` or `/` is hidden whole
        ("postgresql://hp:p@ss/w@db/x", "postgresql://hp:***@db/x"),
        ("mysql://u:%40pw@h/db", "mysql://u:***@h/db"),
        # an empty user still has a secret
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        # inside a longer line, twice
        (
            "storage=sqlite:///a.db tracking=http://u:one@h and postgresql://v:two@k/d done",
            "storage=sqlite:///a.db tracking=http://u:***@h and postgresql://v:***@k/d done",
        ),
        ("'postgresql://u:pw@h/d'", "'postgresql://u:***@h/d'"),
        # query parameters and DSN key=value pairs
        ("postgresql://h/db?user=u&password=pw&x=1", "postgresql://h/db?user=u&password=***&x=1"),
        ("host=db user=hp password=s3cret dbname=x", "host=db user=hp password=*** dbname=x"),
        ("MLFLOW_TRACKING_PASSWORD=abc", "MLFLOW_TRACKING_PASSWORD=***"),
        ("db_password = abc;next", "db_password = ***;next"),
        ("api_key=XYZ&token=T", "api_key=***&token=***"),
        ("AWS_SECRET_ACCESS_KEY=k secret_key=k2", "AWS_SECRET_ACCESS_KEY=*** secret_key=***"),
        # JSON / TOML style
        ('{"password": "pw", "user": "u"}', '{"password": "***", "user": "u"}'),
        ('secret = "abc"', 'secret = "***"'),
        # not secrets: must stay as they are
        ("http://127.0.0.1:5000/#/experiments/1", "http://127.0.0.1:5000/#/experiments/1"),
        ("postgresql://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db"),
        ("sqlite:///hpsearch.db", "sqlite:///hpsearch.db"),
        ("max_tokens=5 tokens=3 passwords_checked=2", "max_tokens=5 tokens=3 passwords_checked=2"),
        ("alpha=0.001 user@example.com", "alpha=0.001 user@example.com"),
        ("", ""),
    ],
)
def test_redact_table(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text", ["postgresql://hp:s3cret@db/x", "a password=s3cret b", '{"token": "s3cret"}']
)
def test_redact_is_idempotent_and_removes_the_secret(text: str) -> None:
    once = redact(text)
    assert "s3cret" not in once
    assert redact(once) == once
