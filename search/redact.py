"""The one redaction: `redact(text)` hides every secret in a string before it leaves the process.

Storage and tracking URLs carry credentials, in more forms than `user:password@`: a query
parameter (`?password=`, libpq's `sslpassword`, `token`, `access_token`, `api_key`...), a
percent-encoded userinfo (`hp:p%40ss@`), a raw password holding `@` (`hp:p@ss@db`). They reach
log lines, error messages, MLflow params and tags, artifacts, spool files and the CLI's output.
Every such string goes through `redact`; the CLI also wraps its own stdout and stderr in
`RedactingStream`, so a line nobody thought of (a warning, a driver's traceback) is covered too.

`redact` works in two layers:

- patterns: a URL's userinfo password (up to the *last* `@` of the token, so a raw `@` in the
  password is hidden whole), and the value of every secret-named key in `key=value` (query
  strings, libpq DSNs, env dumps, also percent-encoded `key%3Dvalue`) and `"key": "value"`;
- known values: every URL this process resolves (the storage, the tracking URI, the proxy's
  upstream) is handed to `remember_url`, and its secrets are then hidden wherever they appear,
  however the text around them is shaped (a driver echoing the password alone, a password with
  a space or a quote that no pattern can delimit).

It errs on the side of hiding too much. `strip_secrets(url)` is the other half: the URL with
its secrets *removed*, for what is stored (the study's `tracking_uri`, spool headers), where
the value must stay a working address and must not depend on what one process happened to see.
"""

from __future__ import annotations

import json
import os
import re
import threading
from typing import Any, TextIO
from urllib.parse import quote, quote_plus, unquote, unquote_plus

__all__ = [
    "MASK",
    "RedactingStream",
    "redact",
    "redact_json",
    "remember_environment",
    "remember_secrets",
    "remember_url",
    "strip_secrets",
]

MASK = "***"

# scheme://user:PASSWORD@host. The password runs to the LAST `@` of the token, so a raw
# (not percent-encoded) password holding `@` or `/` is hidden whole. The user part cannot
# hold `:`, `/` or `@`, which keeps `http://host:5000/x` (a port, no userinfo) untouched.
_URL_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>\[\]]*):(?P<secret>[^\s'\"<>]*)@"
    r"(?=[^\s@'\"<>]*(?:[\s'\"<>]|$))"
)

# Words whose value is a secret in `key=value` (query strings, libpq DSNs, env dumps) and in
# `"key": "value"` (JSON, TOML, YAML). A prefix is allowed (`sslpassword`, `db_password`,
# `MLFLOW_TRACKING_PASSWORD`, `X-Amz-Security-Token`), a suffix is not (`tokens=5` and
# `max_tokens=5` are not secrets). `sig` (a signed URL's signature) only as itself.
_SECRET_WORD = (
    r"(?:[\w.\-]*(?:password|passwd|pwd|secret|token|credentials?"
    r"|(?:api|access|secret|private|account)[_\-]?key)|sig|signature)"
)
_IS_SECRET_KEY = re.compile(rf"(?i:{_SECRET_WORD})")
_KEY_EQUALS = re.compile(
    rf"(?P<head>(?i:(?<![\w.\-]){_SECRET_WORD})\s*=\s*)"
    # Unquoted, a value ends at a separator or a closing bracket: `(storage ...?password=x)`.
    r"(?P<secret>\"[^\"\n]*\"|'[^'\n]*'|[^\s&;,'\")\]}<>]+)"
)
# The same inside a percent-encoded value (`odbc_connect=...%3BPWD%3Dsecret%3B...`): there the
# nested string's own separator is `%3B`.
_KEY_ENCODED_EQUALS = re.compile(
    rf"(?P<head>(?i:(?<![\w.\-]){_SECRET_WORD})%3[dD])"
    r"(?P<secret>(?:(?!%3[bB])[^\s&;,'\")\]}<>])+)"
)
_KEY_COLON = re.compile(
    rf"(?P<head>(?i:[\"']?(?<![\w.\-]){_SECRET_WORD}[\"']?)\s*:\s*(?P<quote>[\"']))"
    r"(?P<secret>[^\"'\n]*)(?P=quote)"
)

# Known secrets shorter than this are left to the patterns: masking every "pw" in a log line
# would hide more than it protects.
_MIN_KNOWN = 4
_known: set[str] = set()
_known_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def redact(text: str) -> str:
    """Return `text` with every password-like value replaced by `***` (idempotent)."""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    # Known values first: a pattern could cut one in two (at a quote, say) and leave the rest.
    known = _known_pattern
    if known is not None:
        text = known.sub(MASK, text)
    return _redact_patterns(text)


def _redact_patterns(text: str) -> str:
    # Every pattern needs one of these (`=`, `%3D`, `://...@`, `key: "value"`): most texts a
    # trial logs (its parameters' values: numbers, names) have none, and skip four regexes.
    if "=" not in text and "%" not in text and ":" not in text:
        return text
    # `key=value` first: a raw `@` inside a query value must not pass for the end of a userinfo.
    text = _KEY_EQUALS.sub(_mask_value, text)
    text = _KEY_ENCODED_EQUALS.sub(_mask_value, text)
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _KEY_COLON.sub(lambda m: f"{m['head']}{MASK}{m['quote']}", text)


def redact_json(value: Any) -> Any:
    """`value` (JSON-like: dicts, lists, scalars) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def _mask_value(match: re.Match[str]) -> str:
    quote_char = match["secret"][0] if match["secret"][0] in "\"'" else ""
    return f"{match['head']}{quote_char}{MASK}{quote_char}"


def remember_url(url: str | None) -> None:
    """Hide `url`'s secrets (its password, secret query values: raw, decoded and encoded) in
    everything `redact` sees from now on, in this process."""
    if not url or "://" not in url:
        return
    found: set[str] = set()
    _scheme, rest = url.split("://", 1)
    user = re.match(r"[^:/@\[\]]*:", rest)
    if user:
        # A raw `@` makes the password's end ambiguous (urllib takes the last `@` of the
        # authority, SQLAlchemy the first): each reading is hidden.
        after = rest[user.end() :]
        found.update(after[:i] for i, c in enumerate(after) if c == "@")
    for key, value in _query_pairs(url):
        if _IS_SECRET_KEY.fullmatch(unquote_plus(key)):
            found.add(value)
        # A connection string nested in a value (`odbc_connect=...;PWD=secret;...`).
        for separator in (";", "&"):
            for item in unquote_plus(value).split(separator):
                inner_key, sep, inner = item.partition("=")
                if sep and inner and _IS_SECRET_KEY.fullmatch(inner_key.strip()):
                    found.add(inner)
    remember_secrets(found)


def remember_secrets(values: set[str] | list[str]) -> None:
    """Hide these literal values (and their URL-encoded and decoded forms) from now on."""
    global _known_pattern
    variants = set()
    for value in values:
        for form in (value, unquote(value), unquote_plus(value)):
            # As written, URL-encoded, and escaped inside a JSON or a Python string literal.
            variants.update({form, quote(form, safe=""), quote_plus(form)})
            variants.update({json.dumps(form)[1:-1], repr(form)[1:-1]})
    variants = {v for v in variants if len(v) >= _MIN_KNOWN}
    with _lock:
        if variants <= _known:
            return
        _known.update(variants)
        # Longest first, so a value is masked whole before any shorter one inside it; never
        # in the middle of a word (a password "postgres" leaves "postgresql://" alone).
        alternatives = "|".join(re.escape(v) for v in sorted(_known, key=len, reverse=True))
        _known_pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])")


# The shell's working directories match `pwd` but are not passwords.
_NOT_SECRET_ENV = frozenset({"PWD", "OLDPWD"})


def remember_environment(environ: dict[str, str] | None = None) -> None:
    """The URLs and secret-named variables of the environment (`HPSEARCH_STORAGE`,
    `MLFLOW_TRACKING_URI`, `MLFLOW_TRACKING_PASSWORD`, `PGPASSWORD`...)."""
    env = os.environ if environ is None else environ
    for name, value in env.items():
        if "://" in value:
            remember_url(value)
        elif _IS_SECRET_KEY.fullmatch(name) and name not in _NOT_SECRET_ENV and value:
            remember_secrets([value])


def _split_userinfo(scheme: str, rest: str) -> tuple[str | None, str]:
    """`user:pw` and the rest of a URL after `scheme://` (None: no userinfo).

    http(s) as urllib and requests read it: the authority ends at the first `/`, `?` or `#`,
    its userinfo at its last `@` (a raw `@` in the password belongs to the password).
    SQLAlchemy lets a password hold `/`, `?` or `#` too (`user:pa/ss@host`), and splits at the
    first `@` after `user:`; a URL with a raw `@` left after that is ambiguous, and the whole
    of it up to the last `@` before the query counts as userinfo. `sqlite:///path` (three
    slashes: no authority) has none.
    """
    authority = re.match(r"[^/?#]*", rest)
    netloc = authority.group(0) if authority else ""
    userinfo: str | None = None
    if "@" in netloc:
        at = netloc.rfind("@")
        userinfo, rest = rest[:at], rest[at + 1 :]
    elif not scheme.lower().startswith("http"):
        sqlalchemy_style = re.match(r"([^:/@\[\]]+:[^@]*)@", rest)
        if sqlalchemy_style:
            userinfo, rest = sqlalchemy_style.group(1), rest[sqlalchemy_style.end() :]
    if userinfo is not None and not scheme.lower().startswith("http"):
        before_query = rest.split("?", 1)[0]
        if "@" in before_query:
            at = before_query.rfind("@")
            userinfo, rest = f"{userinfo}@{rest[:at]}", rest[at + 1 :]
    return userinfo, rest


def _query_pairs(url: str) -> list[tuple[str, str]]:
    """The raw `key=value` pairs of the URL's query (split on `&` and `;`), undecoded."""
    scheme, rest = url.split("://", 1)
    _, hostpart = _split_userinfo(scheme, rest)
    if "?" not in hostpart:
        return []
    query = hostpart.split("?", 1)[1].split("#", 1)[0]
    pairs = []
    for item in re.split(r"[&;]", query):
        key, sep, value = item.partition("=")
        if sep:
            pairs.append((key, value))
    return pairs


def strip_secrets(url: str) -> str:
    """`url` with its password and secret query parameters removed (the user, host, path and
    the other parameters kept as written, a secret nested in one masked): an address that can
    be stored and shown. The same in every process: nothing remembered is used."""
    if "://" not in url:
        return _redact_patterns(url)
    scheme, rest = url.split("://", 1)
    userinfo, hostpart = _split_userinfo(scheme, rest)
    authority = ""
    if userinfo is not None:
        user = userinfo.split(":", 1)[0]
        authority = f"{user}@" if user else ""
    base, sep, query = hostpart.partition("?")
    if sep:
        query, hash_sep, fragment = query.partition("#")
        kept = [
            _redact_patterns(item)  # e.g. `odbc_connect=...PWD%3Dsecret`
            for item in re.split(r"[&;]", query)
            if item and not _IS_SECRET_KEY.fullmatch(unquote_plus(item.partition("=")[0]))
        ]
        base += (f"?{'&'.join(kept)}" if kept else "") + (hash_sep + fragment)
    return f"{scheme}://{authority}{base}"


class RedactingStream:
    """A text stream that redacts what passes through it, a line at a time (a URL written in
    two pieces is still seen whole). `flush` forwards a partial line, redacted. Anything else
    (`encoding`, `isatty`, `fileno`...) is the target's."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        # `\r` ends a line too: progress bars redraw in place and never write `\n`.
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self.target.write(redact(ready))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            ready, self._pending = self._pending, ""
            self.target.write(redact(ready))
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)
