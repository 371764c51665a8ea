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
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>]*):(?P<secret>[^\s'\"<>]*)@"
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
# `=` may itself be percent-encoded, as in a URL nested in a query parameter.
_KEY_EQUALS = re.compile(
    rf"(?P<head>(?i:(?<![\w.\-]){_SECRET_WORD})\s*(?:=|%3[dD])\s*)"
    # Unquoted, a value ends at a separator or a closing bracket: `(storage ...?password=x)`.
    r"(?P<secret>\"[^\"\n]*\"|'[^'\n]*'|(?:(?!%3[bB]|%26)[^\s&;,'\")\]}<>])+)"
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
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _KEY_EQUALS.sub(_mask_value, text)
    text = _KEY_COLON.sub(lambda m: f"{m['head']}{MASK}{m['quote']}", text)
    known = _known_pattern
    return known.sub(MASK, text) if known is not None else text


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
    found = set()
    _scheme, rest = url.split("://", 1)
    userinfo, _hostpart = _split_userinfo(rest)
    if userinfo is not None and ":" in userinfo:
        found.add(userinfo.split(":", 1)[1])
    for key, value in _query_pairs(url):
        if _IS_SECRET_KEY.fullmatch(unquote_plus(key)):
            found.add(value)
    remember_secrets(found)


def remember_secrets(values: set[str] | list[str]) -> None:
    """Hide these literal values (and their URL-encoded and decoded forms) from now on."""
    global _known_pattern
    variants = set()
    for value in values:
        for form in (value, unquote(value), unquote_plus(value)):
            variants.update({form, quote(form, safe=""), quote_plus(form)})
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


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """`user:pw` and the rest of a URL after `scheme://`. The userinfo ends at the last `@`
    before the query: a raw `@` in the password belongs to it. `sqlite:///path@x` (three
    slashes: no authority) has none."""
    if rest.startswith("/"):
        return None, rest
    authority_end = len(rest)
    query = rest.find("?", rest.rfind("@") + 1 if "@" in rest else 0)
    if query >= 0:
        authority_end = query
    at = rest.rfind("@", 0, authority_end)
    if at < 0:
        return None, rest
    return rest[:at], rest[at + 1 :]


def _query_pairs(url: str) -> list[tuple[str, str]]:
    """The raw `key=value` pairs of the URL's query (split on `&` and `;`), undecoded."""
    _, rest = url.split("://", 1)
    _, hostpart = _split_userinfo(rest)
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
    the other parameters kept as written): an address that can be stored and shown."""
    if "://" not in url:
        return redact(url)
    scheme, rest = url.split("://", 1)
    userinfo, hostpart = _split_userinfo(rest)
    authority = ""
    if userinfo is not None:
        user = userinfo.split(":", 1)[0]
        authority = f"{user}@" if user else ""
    base, sep, query = hostpart.partition("?")
    if sep:
        query, hash_sep, fragment = query.partition("#")
        kept = [
            item
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
