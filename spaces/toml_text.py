"""Write a `Space` back as TOML text (the standard library reads TOML but does not write it).

The output is canonical: every key explicit, in a fixed order, so `Space.from_toml(s.to_toml())`
gives back an equal space. Comments of the source file are not kept.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spaces.space import Space

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def space_to_toml(space: Space) -> str:
    lines = [f"name = {_value(space.name)}"]
    if space.description:
        lines.append(f"description = {_value(space.description)}")
    if space.sampler is not None:
        lines.append(f"sampler = {_value(space.sampler)}")
    for p in space.params:
        lines += ["", "[[param]]", f"name = {_value(p.name)}", f"kind = {_value(p.kind)}"]
        lines.append(f"tier = {p.tier}")
        if p.kind == "categorical":
            lines.append(f"choices = {_value(list(p.choices or ()))}")
        else:
            lines += [f"low = {_value(p.low)}", f"high = {_value(p.high)}"]
            lines.append(f"scale = {_value(p.scale)}")
            if p.transform is not None:
                lines.append(f"transform = {_value(p.transform)}")
        lines.append(f"default = {_value(p.default)}")
        if p.when:
            inner = ", ".join(f"{_key(ref)} = {_value(list(vals))}" for ref, vals in p.when)
            lines.append(f"when = {{ {inner} }}")
        if p.help:
            lines.append(f"help = {_value(p.help)}")
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-tripping form; validation keeps it finite
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
