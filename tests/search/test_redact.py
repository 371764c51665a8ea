"""`redact` hides every password form a storage or tracking URL can carry, and nothing else."""

import base64
import io
import json
import random
import string
from urllib.parse import quote, urlsplit

import pytest

from search.errors import StudyError
from search.redact import RedactingStream, redact, redact_json, remember_url, strip_secrets


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


# --- property: generated URL forms with a canary, through every sink -------------------------
#
# Seeded random generation (no hypothesis in the dev dependencies): each case is a URL of a form
# the storage, the tracking URI or the proxy accepts, whose secret is made of unique markers
# joined by characters that URLs treat specially. A sink passes when no marker survives in what
# it writes; a marker cut in half by a wrong delimiter would survive in part, so markers are
# checked whole and each is longer than anything a redaction leaves.

SEED = 15
CASES = 300
# Characters with a meaning in a URL or a log line; a raw password may hold any of them.
SPECIALS = "@:/?#%&+=;,!$*()[]~-._"
QUERY_KEYS = ["password", "sslpassword", "token", "access_token", "api_key", "apikey",
              "client_secret", "auth_token", "X-Amz-Security-Token", "sig", "passwd",
              "PWD"]  # fmt: skip
HOSTS = ["db", "127.0.0.1", "[::1]", "[2001:db8::7]", "db.example.com"]
STORAGE_SCHEMES = ["postgresql", "postgresql+psycopg"]
TRACKING_SCHEMES = ["http", "https", "postgresql+psycopg", "mysql+pymysql", "mssql+pyodbc"]


class Form:
    def __init__(self, url: str, markers: list[str], kind: str, raw: str) -> None:
        self.url, self.markers, self.kind, self.raw = url, markers, kind, raw

    def __repr__(self) -> str:
        return f"Form({self.url!r})"


def _marker(rng: random.Random) -> str:
    return "cnry" + "".join(rng.choices(string.ascii_letters + string.digits, k=8))


def _secret(rng: random.Random, alphabet: str) -> tuple[str, list[str]]:
    markers = [_marker(rng) for _ in range(rng.randint(1, 3))]
    seps = [rng.choice(alphabet) for _ in markers[1:]]
    text = markers[0] + "".join(s + m for s, m in zip(seps, markers[1:], strict=True))
    return text, markers


def _form(rng: random.Random, *, any_char: bool) -> Form:
    """One URL with a secret in it. `any_char`: a raw password may hold spaces and quotes too
    (only hidden once the URL is remembered, as every URL the process uses is)."""
    kind = rng.choice(["storage", "tracking", "proxy"])
    scheme = rng.choice(
        {"storage": STORAGE_SCHEMES, "tracking": TRACKING_SCHEMES, "proxy": ["postgresql"]}[kind]
    )
    host = rng.choice(HOSTS) + rng.choice(["", ":5432", ":5000"])
    path = "" if scheme.startswith("http") and rng.random() < 0.5 else "/" + rng.choice(["db", "x"])
    where = rng.choice(["userinfo-raw", "userinfo-encoded", "query", "query-raw", "both"])
    if scheme.startswith("mssql") and rng.random() < 0.5:
        where = "odbc"
    specials = SPECIALS + (" '\"" if any_char else "")
    # A raw `/`, `?` or `#` ends an http authority (urllib, requests): not a password there.
    raw = (
        specials.translate(str.maketrans("", "", "/?#")) if scheme.startswith("http") else specials
    )
    secret, used = _secret(rng, raw)
    userinfo, query, markers = "", [], []
    if where in ("userinfo-raw", "both"):
        userinfo, markers = f"hp:{secret}@", markers + used
    elif where == "userinfo-encoded":
        userinfo, markers = f"hp:{quote(secret, safe='')}@", markers + used
    if where in ("query", "both"):
        other, more = _secret(rng, specials)
        markers += more
        query.append(f"{rng.choice(QUERY_KEYS)}={quote(other, safe='')}")
    if where == "query-raw":
        # Raw in a query value: only what a query parser keeps inside one value (and a raw `@`
        # only in http: SQLAlchemy would take it for the end of a userinfo).
        secret, markers = _secret(rng, "-._~!$*:/" + ("@" if scheme.startswith("http") else ""))
        query.append(f"{rng.choice(QUERY_KEYS)}={secret}")
    if where == "odbc":
        # ODBC ends a value at `;` (braces quote one): the driver itself would split there.
        secret, used = _secret(rng, specials.replace(";", ""))
        odbc = f"DRIVER={{ODBC Driver 18}};SERVER=db;UID=hp;PWD={secret}"
        query.append(f"odbc_connect={quote(odbc, safe='')}")
        markers = used
    if rng.random() < 0.5:
        query.insert(rng.randint(0, len(query)), rng.choice(["sslmode=require", "x=1"]))
    url = f"{scheme}://{userinfo}{host}{path}" + (f"?{'&'.join(query)}" if query else "")
    return Form(url, markers, kind, secret)


def _forms(any_char: bool, n: int = CASES) -> list[Form]:
    rng = random.Random(SEED + any_char)
    return [_form(rng, any_char=any_char) for _ in range(n)]


def _leaks(form: Form, text: str) -> list[str]:
    return [m for m in form.markers if m in text]


def _sinks(form: Form) -> dict[str, str]:
    """What each place a string leaves the process through would hold."""
    from search.storage import parse_storage_url
    from search.study import storable_tracking_uri
    from search.tracking._ops import RunTarget, artifact_op, clean_param, clean_tag
    from search.tracking._spool import spool_header

    url = form.url
    messages = [
        f"the storage {url!r} was unreachable for 3 s: connection refused",
        f"WARNING search.tracking: MLflow unreachable ({url}), spooled",
        f"API request to {url}/api/2.0/mlflow/runs/create failed",
        f"storage={url} tracking={url}",
        json.dumps({"uri": url}),
    ]
    sinks = {f"message {i}": redact(m) for i, m in enumerate(messages)}
    sinks["param"] = clean_param(url)
    sinks["tag"] = clean_tag(f"hpsearch.storage={url}")
    op = artifact_op("config.json", json.dumps({"storage": url}))
    sinks["artifact"] = base64.b64decode(op["data"]).decode()
    sinks["optuna attrs"] = json.dumps(redact_json({"reason": f"lost {url}", "n": [url, 1]}))
    sinks["spool header"] = json.dumps(spool_header(url, RunTarget("1", "run", "file:///a")))
    sinks["stored address"] = strip_secrets(url)
    try:
        sinks["stored tracking_uri"] = storable_tracking_uri(url)
    except StudyError as exc:  # refused: its message is what the user sees
        sinks["stored tracking_uri"] = str(exc)
    if form.kind == "storage":
        try:
            parse_storage_url(url)
        except StudyError as exc:
            sinks["storage error"] = str(exc)
    # Output: written in random pieces, as print, logging and tqdm write.
    out = io.StringIO()
    stream = RedactingStream(out)
    line = f"MLflow: {url} in {url}\n"
    rng = random.Random(url)
    cuts = sorted(rng.sample(range(1, len(line)), k=min(5, len(line) - 1)))
    for a, b in zip([0, *cuts], [*cuts, len(line)], strict=True):
        stream.write(line[a:b])
    stream.flush()
    sinks["output"] = out.getvalue()
    return sinks


@pytest.mark.parametrize("form", _forms(any_char=False), ids=lambda f: f.url[:60])
def test_every_sink_hides_a_generated_url_secret_by_its_form(form: Form) -> None:
    """The patterns alone (nothing remembered: these markers were never seen before)."""
    assert all(m in form.url or quote(m) in form.url for m in form.markers)  # in play
    leaks = {where: text for where, text in _sinks(form).items() if _leaks(form, text)}
    assert leaks == {}, form.url


# Fewer: every remembered secret joins the pattern each later `redact` in this process runs.
@pytest.mark.parametrize("form", _forms(any_char=True, n=100), ids=lambda f: f.url[:60])
def test_every_sink_hides_a_remembered_url_secret_however_it_is_echoed(form: Form) -> None:
    """Once the process has seen the URL, its secret is hidden even where no pattern could
    find it: a password holding a space or a quote, or echoed alone by a driver."""
    remember_url(form.url)
    sinks = _sinks(form)
    sinks["echoed alone"] = redact(f'FATAL: password "{form.raw}" rejected for user "hp"')
    leaks = {where: text for where, text in sinks.items() if _leaks(form, text)}
    assert leaks == {}, form.url


HTTP_FORMS = [f for f in _forms(any_char=False) if f.url.startswith("http")]


@pytest.mark.parametrize("form", HTTP_FORMS, ids=lambda f: f.url[:60])
def test_a_stored_tracking_address_still_points_at_the_same_server(form: Form) -> None:
    try:
        before = urlsplit(form.url)
        before.port  # noqa: B018 (parsing the port is what raises)
    except ValueError:
        pytest.skip("not a URL urllib can read (a raw bracket in the password)")
    after = urlsplit(strip_secrets(form.url))
    assert (after.scheme, after.hostname, after.port, after.path) == (
        before.scheme, before.hostname, before.port, before.path,
    )  # fmt: skip
    assert after.password is None
