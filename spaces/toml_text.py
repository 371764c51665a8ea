"""Write TOML (the standard library reads TOML but does not write it): one writer for the
project's spaces, study files and best configurations.

`space_to_toml` is canonical: every key explicit, in a fixed order, so
`Space.from_toml(s.to_toml())` gives back an equal space. Comments of a source file are not kept.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spaces.space import Space

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def toml_value(value: Any, name: str = "value") -> str:
    """One TOML value: strings, numbers (inf and nan too), booleans, lists, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # the shortest text that reads back to the same float
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v, name) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{toml_key(str(k))} = {toml_value(v, name)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(
        f"`{name}` must be a string, number, boolean, list or table to be written as TOML, "
        f"but got {name}={value!r} ({type(value).__name__})"
    )


def dump_toml(table: Mapping[str, Any], header: str = "", _prefix: str = "") -> str:
    """A document: `key = value` lines in the mapping's order, nested mappings as `[tables]`.

    `None` has no TOML form: such keys are left out, so the reader's default applies.
    `header` becomes `#` comment lines at the top.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    nested: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            nested.append((str(key), value))
        elif value is not None:
            lines.append(f"{toml_key(str(key))} = {toml_value(value, str(key))}")
    for key, value in nested:
        full = f"{_prefix}.{toml_key(key)}" if _prefix else toml_key(key)
        lines += ["", f"[{full}]", dump_toml(value, _prefix=full).strip("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def space_to_toml(space: Space) -> str:
    lines = [f"name = {toml_value(space.name)}"]
    if space.description:
        lines.append(f"description = {toml_value(space.description)}")
    if space.sampler is not None:
        lines.append(f"sampler = {toml_value(space.sampler)}")
    for p in space.params:
        lines += ["", "[[param]]", f"name = {toml_value(p.name)}", f"kind = {toml_value(p.kind)}"]
        lines.append(f"tier = {p.tier}")
        if p.kind == "categorical":
            lines.append(f"choices = {toml_value(list(p.choices or ()))}")
        else:
            lines += [f"low = {toml_value(p.low)}", f"high = {toml_value(p.high)}"]
            lines.append(f"scale = {toml_value(p.scale)}")
            if p.transform is not None:
                lines.append(f"transform = {toml_value(p.transform)}")
        lines.append(f"default = {toml_value(p.default)}")
        if p.when:
            inner = ", ".join(f"{toml_key(ref)} = {toml_value(list(vals))}" for ref, vals in p.when)
            lines.append(f"when = {{ {inner} }}")
        if p.help:
            lines.append(f"help = {toml_value(p.help)}")
    return "\n".join(lines) + "\n"
