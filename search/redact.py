"""`redact(text)`: hide passwords in any string before it reaches a log, an MLflow param or tag.

Storage and tracking URLs carry credentials (`postgresql://hp:s3cret@db/hpsearch`); they are
logged as study params, written into tags and error messages, and printed by the CLI. Every
string that leaves the process goes through `redact` first. It errs on the side of hiding too
much: a URL whose path holds an `@` loses a little more than its password, never less.
"""

from __future__ import annotations

import re

__all__ = ["MASK", "redact"]

MASK = "***"

# scheme://user:PASSWORD@host. The password runs to the LAST `@` of the token, so a raw
# (not percent-encoded) password holding `@` or `/` is hidden whole. The user part cannot
# hold `:`, `/` or `@`, which keeps `http://host:5000/x` (a port, no userinfo) untouched.
_URL_USERINFO = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"<>]*):(?P<secret>[^\s'\"<>]*)@"
    r"(?=[^\s@'\"<>]*(?:[\s'\"<>]|$))"
)

# Words whose value is a secret in `key=value` (query strings, libpq DSNs, env dumps) and in
# `"key": "value"` (JSON, TOML, YAML). A prefix is allowed (`db_password`, `MLFLOW_TRACKING_
# PASSWORD`), a suffix is not (`tokens=5` and `max_tokens=5` are not secrets).
_SECRET_WORD = (
    r"[\w.\-]*(?:password|passwd|pwd|secret|token|(?:api|access|secret|private)[_\-]?key)"
)
_KEY_EQUALS = re.compile(
    rf"(?P<head>(?i:\b{_SECRET_WORD})\s*=\s*)"
    r"(?P<secret>\"[^\"\n]*\"|'[^'\n]*'|[^\s&;,'\"]+)"
)
_KEY_COLON = re.compile(
    rf"(?P<head>(?i:[\"']?\b{_SECRET_WORD}[\"']?)\s*:\s*(?P<quote>[\"']))(?P<secret>[^\"'\n]*)"
    r"(?P=quote)"
)


def redact(text: str) -> str:
    """Return `text` with every password-like value replaced by `***` (idempotent)."""
    if not isinstance(text, str):
        text = str(text)
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _KEY_EQUALS.sub(_mask_value, text)
    return _KEY_COLON.sub(lambda m: f"{m['head']}{MASK}{m['quote']}", text)


def _mask_value(match: re.Match[str]) -> str:
    quote = match["secret"][0] if match["secret"][0] in "\"'" else ""
    return f"{match['head']}{quote}{MASK}{quote}"
