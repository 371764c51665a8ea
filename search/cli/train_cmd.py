"""`hpsearch train`: train one configuration from flags and/or a TOML file, print its metrics.

Every `TrainConfig` field is a flag (`--hidden-units 64`, or `--hidden_units 64`); a TOML file
(`--config run.toml`) holds the same fields as top-level keys, unknown keys refused by name.
Flags override the file, which overrides the defaults. Exit codes: 0 when training completed,
3 when it diverged (the run worked; the configuration did not), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Light imports only (`hpsearch --help` builds every verb's parser): torch loads in the handler.
from trainers.config import ConfigError, TrainConfig, field_types, ignored_fields

if TYPE_CHECKING:
    from trainers import TrainResult

EXIT_DIVERGED = 3


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train",
        help="train one configuration and print its metrics",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML file of TrainConfig fields")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    fields = parser.add_argument_group("TrainConfig fields (defaults: trainers/config.py)")
    for name, kind in field_types().items():
        flags = [f"--{name.replace('_', '-')}"]
        if "_" in name:
            flags.append(f"--{name}")
        if kind is bool:
            fields.add_argument(
                *flags, dest=name, action=argparse.BooleanOptionalAction, default=None
            )
        else:
            # Values are parsed here, not by argparse, so a bad one is a one-line ConfigError.
            hint = "comma-separated integers" if kind is tuple else kind.__name__
            hint = "comma-separated names" if name in _NAME_LISTS else hint
            fields.add_argument(*flags, dest=name, metavar=hint.upper().split()[0], default=None)
    parser.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from search.start_up_gc import start_up_done
    from trainers import prepare_data, train

    config = build_config(args)
    data = prepare_data(config)
    if not args.json:
        print(describe_config(config), flush=True)
        if data.dropped_rows:
            print(f"dropped {data.dropped_rows} row(s) whose target is missing", flush=True)
    report = None if args.json else _print_epoch(config.epochs)
    start_up_done()  # the imports are in: collect while training
    result = train(config, data, report)
    if args.json:
        printed = {
            "config": config.to_dict(),
            "data": {"dropped_rows": data.dropped_rows},
            "result": _json_safe(result.to_dict()),
        }
        print(json.dumps(printed))
    else:
        _print_summary(result)
    if result.outcome == "diverged":
        print(f"hpsearch: training diverged: {result.reason}", file=sys.stderr)
        return EXIT_DIVERGED
    return 0


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the TOML file, then the flags given on the command line."""
    values: dict[str, Any] = read_toml(args.config) if args.config else {}
    types = field_types()
    flags = []
    for name, kind in types.items():
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given if kind is bool else _parse(name, kind, given)
            flags.append(name)
    config = TrainConfig.from_dict(values)
    # Only flags: a `--config` file (e.g. from `hpsearch best`) holds every field, read or not.
    ignored = ignored_fields(config)
    for name in flags:
        if name in ignored:
            raise ConfigError(
                f"`--{name.replace('_', '-')}` would be ignored: {ignored[name]}, but got "
                f"{name}={values[name]!r}"
            )
    return config


# How `describe_config` groups the fields (TrainConfig's own sections).
_GROUPS = {
    "data": ("dataset", "target", "task", "drop", "missing_target", "normalization",
             "standardize_target",
             "val_fraction", "test_fraction", "split_seed"),
    "network": ("hidden_layers", "hidden_units", "activation", "init", "init_scale"),
    "optimization": ("optimizer", "alpha", "beta", "beta1", "beta2", "epsilon", "batch_size",
                     "epochs", "decay", "decay_rate", "decay_base", "decay_k",
                     "decay_milestones", "decay_gamma"),
    "run": ("seed", "device", "early_stopping_patience"),
}  # fmt: skip


def describe_config(config: TrainConfig) -> str:
    """The configuration that runs, one line per group, without the fields it ignores."""
    values, ignored = config.to_dict(), ignored_fields(config)
    lines = ["configuration:"]
    for group, names in _GROUPS.items():
        shown = " ".join(f"{n}={_fmt(values[n])}" for n in names if n not in ignored)
        lines.append(f"  {group:<13}{shown}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"`--config` file '{path}' does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"`--config` file '{path}' is not valid TOML: {exc}") from None


# Tuple fields of names, not numbers: `--drop name,notes`.
_NAME_LISTS = ("drop",)


def _parse(name: str, kind: type, text: str) -> Any:
    if name in _NAME_LISTS:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    try:
        if kind is tuple:
            return tuple(int(part) for part in text.split(",") if part.strip())
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        expected = "comma-separated integers" if kind is tuple else f"a {kind.__name__}"
        flag = f"--{name.replace('_', '-')}"
        raise ConfigError(f"`{flag}` must be {expected}, but got {text!r}") from None
    return text


def _print_epoch(epochs: int) -> Any:
    width = len(str(epochs))

    def report(epoch: int, metrics: dict[str, float]) -> None:
        shown = "  ".join(
            f"{k} {v:.4g}" for k, v in metrics.items() if not k.startswith("grad_norm/")
        )
        print(f"epoch {epoch:>{width}}/{epochs}  {shown}", flush=True)

    return report


def _print_summary(result: TrainResult) -> None:
    print(f"outcome: {result.outcome}" + (f" ({result.reason})" if result.reason else ""))
    print(f"device: {result.device}  epochs: {result.epochs_run}  time: {result.wall_time_s:.2f}s")
    if result.flags:
        print(f"flags: {', '.join(result.flags)}")
    for key, value in result.metrics.items():
        print(f"  {key:<16} {value:.6g}")


def _json_safe(value: Any) -> Any:
    """NaN and infinity are not JSON: they become null (the reason says what happened)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
