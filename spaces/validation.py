"""Turn a parsed TOML document into validated `Param`s, or raise `SpaceError`.

Everything is checked before a study is written: unknown keys, types, bounds, scales, tiers,
conditions, and that every name, bound, choice and default is a value `TrainConfig` accepts.
Each message names the source, the parameter, the rule and the value, e.g.
    lesson.toml: parameter `alpha`: `low > 0` must hold for scale = "log", but got (low=0.0, ...)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from spaces.errors import SpaceError
from spaces.param import KINDS, SCALES, TRANSFORMS, Condition, Param, is_power_of_two
from spaces.sampler_names import check_sampler_name
from spaces.trainer_fields import default_of, field_names, field_types, refusal

TOP_LEVEL_KEYS = ("name", "description", "sampler", "param")
PARAM_KEYS = (
    "name",
    "kind",
    "tier",
    "default",
    "low",
    "high",
    "choices",
    "scale",
    "transform",
    "when",
    "help",
)
_REQUIRED = ("name", "kind", "tier")
_NUMERIC_ONLY = ("low", "high", "scale", "transform")


class _Checker:
    """Builds messages that always name the source and (when known) the parameter."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, rule: str, param: str | None = None) -> SpaceError:
        where = f"{self.source}: parameter `{param}`: " if param else f"{self.source}: "
        return SpaceError(where + rule)


def parse_document(
    doc: Mapping[str, Any], source: str
) -> tuple[str | None, str, str | None, tuple[Param, ...]]:
    """(name, description, sampler, params) of a TOML document; raises `SpaceError`."""
    check = _Checker(source)
    unknown = [key for key in doc if key not in TOP_LEVEL_KEYS]
    if unknown:
        raise check.fail(
            f"unknown top-level key(s) {unknown}; allowed keys: {list(TOP_LEVEL_KEYS)}"
        )
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise check.fail(f"`name` must be a non-empty string, but got name={name!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise check.fail(f"`description` must be a string, but got description={description!r}")
    sampler = doc.get("sampler")
    if sampler is not None:
        try:
            sampler = check_sampler_name(sampler)
        except SpaceError as exc:
            raise check.fail(str(exc)) from None

    raw_params = doc.get("param")
    if not isinstance(raw_params, list) or not raw_params:
        raise check.fail(
            f"a space needs at least one [[param]] table, but got param={raw_params!r}"
        )
    params: list[Param] = []
    for index, raw in enumerate(raw_params):
        if not isinstance(raw, dict):
            raise check.fail(f"[[param]] #{index + 1} must be a table, but got {raw!r}")
        param = _parse_param(raw, index, params, check)
        params.append(param)
    _check_tiers(params, check)
    _check_conditions(params, check)
    _check_defaults_together(params, check)
    return name, description, sampler, tuple(params)


def _parse_param(
    raw: Mapping[str, Any], index: int, earlier: list[Param], check: _Checker
) -> Param:
    label = raw.get("name") if isinstance(raw.get("name"), str) else f"#{index + 1}"
    unknown = [key for key in raw if key not in PARAM_KEYS]
    if unknown:
        raise check.fail(f"unknown key(s) {unknown}; allowed keys: {list(PARAM_KEYS)}", label)
    for key in _REQUIRED:
        if key not in raw:
            raise check.fail(f"`{key}` is required, but it is missing", label)

    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise check.fail(f"`name` must be a non-empty string, but got name={name!r}", label)
    if name not in field_names():
        raise check.fail(
            f"`name` must be a TrainConfig field (derived names such as one_minus_beta or "
            f"log2_batch_size come from `transform`/`scale`), but got name={name!r}; "
            f"fields: {sorted(field_names())}",
            name,
        )
    if any(p.name == name for p in earlier):
        raise check.fail(f"names must be unique, but got name={name!r} twice", name)

    kind = raw["kind"]
    if kind not in KINDS:
        raise check.fail(f"`kind` must be one of {list(KINDS)}, but got kind={kind!r}", name)
    tier = raw["tier"]
    if isinstance(tier, bool) or not isinstance(tier, int) or tier < 1:
        raise check.fail(f"`tier` must be an integer >= 1, but got tier={tier!r}", name)
    help_text = raw.get("help", "")
    if not isinstance(help_text, str):
        raise check.fail(f"`help` must be a string, but got help={help_text!r}", name)

    field_type = field_types()[name]
    if kind == "categorical":
        fields = _parse_categorical(raw, name, field_type, check)
    else:
        fields = _parse_numeric(raw, name, kind, field_type, check)
    when = _parse_when(raw.get("when", {}), name, check)
    param = Param(name=name, kind=kind, tier=tier, when=when, help=help_text, **fields)
    return param


def _parse_categorical(
    raw: Mapping[str, Any], name: str, field_type: type, check: _Checker
) -> dict[str, Any]:
    misplaced = [key for key in _NUMERIC_ONLY if key in raw]
    if misplaced:
        raise check.fail(
            f'{misplaced} do not apply to kind = "categorical" (it has `choices`)', name
        )
    choices = raw.get("choices")
    if not isinstance(choices, list) or not choices:
        raise check.fail(
            f'`choices` must be a non-empty list for kind = "categorical", but got '
            f"choices={choices!r}",
            name,
        )
    for choice in choices:
        _check_value_type(choice, field_type, name, "choice", check)
        _check_trainconfig_accepts(name, choice, "choice", check)
    if len(set(choices)) != len(choices):
        raise check.fail(f"`choices` must be unique, but got choices={choices!r}", name)
    default = raw.get("default", default_of(name))
    if default not in choices:
        raise check.fail(
            f"`default` must be one of the choices {choices!r}, but got default={default!r}",
            name,
        )
    return {"choices": tuple(choices), "default": default, "scale": "linear"}


def _parse_numeric(
    raw: Mapping[str, Any], name: str, kind: str, field_type: type, check: _Checker
) -> dict[str, Any]:
    if "choices" in raw:
        raise check.fail(f'`choices` applies only to kind = "categorical", not {kind!r}', name)
    if kind == "float" and field_type is not float:
        raise check.fail(
            f'kind = "float" needs a float field, but `{name}` holds {field_type.__name__}',
            name,
        )
    if kind == "int" and field_type is not int:
        raise check.fail(
            f'kind = "int" needs an int field, but `{name}` holds {field_type.__name__}', name
        )
    for key in ("low", "high"):
        if key not in raw:
            raise check.fail(f"`{key}` is required for kind = {kind!r}, but it is missing", name)
    low = _number(raw["low"], kind, name, "low", check)
    high = _number(raw["high"], kind, name, "high", check)
    if low > high:
        raise check.fail(f"`low <= high` must hold, but got ({low=}, {high=})", name)

    scale = raw.get("scale", "linear")
    if scale not in SCALES:
        raise check.fail(f"`scale` must be one of {list(SCALES)}, but got scale={scale!r}", name)
    transform = raw.get("transform")
    if transform is not None and transform not in TRANSFORMS:
        raise check.fail(
            f"`transform` must be one of {list(TRANSFORMS)}, but got transform={transform!r}",
            name,
        )
    if scale == "pow2" and kind != "int":
        raise check.fail(f'scale = "pow2" needs kind = "int", but got kind={kind!r}', name)
    if scale == "pow2" and not (is_power_of_two(low) and is_power_of_two(high)):
        raise check.fail(
            f'scale = "pow2" needs bounds that are powers of two, but got ({low=}, {high=})',
            name,
        )
    if transform == "one_minus":
        if kind != "float":
            raise check.fail(
                f'transform = "one_minus" needs kind = "float", but got kind={kind!r}', name
            )
        if scale == "log" and not high < 1:
            raise check.fail(
                '`high < 1` must hold for transform = "one_minus" with scale = "log" '
                f"(1 - high is drawn on a log scale), but got ({low=}, {high=})",
                name,
            )
    elif scale == "log" and not low > 0:
        raise check.fail(f'`low > 0` must hold for scale = "log", but got ({low=}, {high=})', name)

    default = raw.get("default", default_of(name))
    default = _number(default, kind, name, "default", check)
    if not low <= default <= high:
        raise check.fail(
            f"`low <= default <= high` must hold, but got ({low=}, {default=}, {high=})", name
        )
    if scale == "pow2" and not is_power_of_two(default):
        raise check.fail(
            f'scale = "pow2" needs a default that is a power of two, but got {default=}', name
        )
    for label, value in (("low", low), ("high", high), ("default", default)):
        _check_trainconfig_accepts(name, value, label, check)
    return {"low": low, "high": high, "default": default, "scale": scale, "transform": transform}


def _parse_when(raw_when: Any, name: str, check: _Checker) -> tuple[Condition, ...]:
    if not isinstance(raw_when, dict):
        raise check.fail(
            f'`when` must be a table such as {{ decay = ["inverse_time"] }}, but got '
            f"when={raw_when!r}",
            name,
        )
    conditions: list[Condition] = []
    for ref, allowed in raw_when.items():
        if ref not in field_names():
            raise check.fail(
                f"`when` must name another parameter of this space, but got {ref!r}", name
            )
        if not isinstance(allowed, list) or not allowed:
            raise check.fail(
                f"`when.{ref}` must be a non-empty list of values, but got {allowed!r}", name
            )
        for value in allowed:
            _check_value_type(value, field_types()[ref], name, f"`when.{ref}` value", check)
            # A typo ("inverse-time") must not silently turn a parameter off forever.
            _check_trainconfig_accepts(ref, value, f"`when.{ref}` value", check, owner=name)
        conditions.append((ref, tuple(allowed)))
    return tuple(conditions)


def _check_conditions(params: list[Param], check: _Checker) -> None:
    names = [p.name for p in params]
    for p in params:
        for ref, _ in p.when:
            if ref == p.name or ref not in names:
                raise check.fail(
                    f"`when` must name another parameter of this space, but got {ref!r}; "
                    f"parameters: {names}",
                    p.name,
                )
    try:
        decision_order(params)
    except ValueError as exc:
        raise check.fail(str(exc)) from None


def decision_order(params: Sequence[Param]) -> list[Param]:
    """File order, except that a parameter named in a `when` is decided before its users."""
    by_name = {p.name: p for p in params}
    order: list[Param] = []
    state: dict[str, str] = {}

    def visit(p: Param, path: tuple[str, ...]) -> None:
        if state.get(p.name) == "done":
            return
        if state.get(p.name) == "visiting":
            raise ValueError(f"`when` conditions must not form a cycle, but got {list(path)}")
        state[p.name] = "visiting"
        for ref, _ in p.when:
            visit(by_name[ref], (*path, ref))
        state[p.name] = "done"
        order.append(p)

    for p in params:
        visit(p, (p.name,))
    return order


def _check_tiers(params: list[Param], check: _Checker) -> None:
    tiers = sorted({p.tier for p in params})
    missing = sorted(set(range(1, tiers[-1] + 1)) - set(tiers))
    if missing:
        raise check.fail(
            f"tiers must run 1..N without a gap (tier N searches after tiers 1..N-1), but "
            f"tier(s) {missing} have no parameter; tiers used: {tiers}"
        )


def _check_defaults_together(params: list[Param], check: _Checker) -> None:
    message = refusal({p.name: p.default for p in params})
    if message is not None:
        raise check.fail(f"the defaults together are refused by TrainConfig: {message}")


def _number(value: Any, kind: str, name: str, label: str, check: _Checker) -> int | float:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise check.fail(
                f'`{label}` must be an integer for kind = "int", but got {label}={value!r}',
                name,
            )
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise check.fail(
            f'`{label}` must be a number for kind = "float", but got {label}={value!r}', name
        )
    # Optuna accepts nan and inf bounds and would then sample nonsense: refuse them here.
    if not math.isfinite(value):
        raise check.fail(f"`{label}` must be finite, but got {label}={value!r}", name)
    return float(value)


def _check_value_type(value: Any, field_type: type, name: str, label: str, check: _Checker) -> None:
    ok = isinstance(value, field_type) and not (isinstance(value, bool) and field_type is not bool)
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if isinstance(value, float) and not math.isfinite(value):
        ok = False
    if not ok:
        raise check.fail(
            f"{label} must be a finite {field_type.__name__} (the TrainConfig field's type), "
            f"but got {value!r}",
            name,
        )


def _check_trainconfig_accepts(
    field: str, value: Any, label: str, check: _Checker, owner: str | None = None
) -> None:
    message = refusal({field: value})
    if message is not None:
        raise check.fail(f"{label} {value!r} is refused by TrainConfig: {message}", owner or field)
