"""A tiny TOML writer for flat configs (the standard library's `tomllib` only reads).

Supports what a `TrainConfig` holds: strings, integers, floats (inf/nan too), booleans and
lists of those. `None` has no TOML form: such keys are left out, so the reader's default
(which is None for every optional field) applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def toml_value(value: Any, name: str = "value") -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # shortest text that reads back to the same float
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v, name) for v in value) + "]"
    raise TypeError(
        f"`{name}` must be a string, number, boolean or list to be written as TOML, "
        f"but got {name}={value!r} ({type(value).__name__})"
    )


def dumps_flat_toml(values: Mapping[str, Any], header: str = "") -> str:
    """`key = value` lines in the mapping's order; `header` becomes `#` comment lines."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in values.items():
        if value is None:
            continue
        lines.append(f"{_key(str(key))} = {toml_value(value, str(key))}")
    return "\n".join(lines) + "\n"
