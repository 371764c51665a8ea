"""`hpsearch space show|validate|sample`: look at a search space before a study spends on it.

User errors (a bad file, a grid) raise `SpaceError`; the CLI shell prints one line, exits 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "space",
        help="show, validate or sample a search space",
        description="Inspect search spaces: a built-in name (lesson) or a TOML file.",
    )
    verbs = parser.add_subparsers(dest="space_command", metavar="VERB", required=True)

    show = verbs.add_parser("show", help="print a space's parameters, tier by tier")
    show.add_argument("space", metavar="NAME|FILE")
    show.add_argument(
        "--toml",
        action="store_true",
        help="print the space file itself, to copy and edit: "
        "hpsearch space show lesson --toml > my_space.toml",
    )
    show.set_defaults(handler=show_space)

    validate = verbs.add_parser("validate", help="check a space file; exit 2 with the reason")
    validate.add_argument("space", metavar="FILE")
    validate.set_defaults(handler=validate_space)

    sample = verbs.add_parser("sample", help="print configurations the sampler would draw")
    sample.add_argument("space", metavar="NAME|FILE")
    sample.add_argument("-n", type=_positive_int, default=20, help="how many (default 20)")
    sample.add_argument("--seed", type=int, default=0, help="sampler seed (default 0)")
    sample.add_argument("--tiers", type=_positive_int, default=3, help="search tiers 1..N")
    sample.add_argument("--sampler", default="random", help="random (default) | sobol | tpe")
    output = sample.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON list of trials")
    output.add_argument("--csv", action="store_true", help="CSV of every parameter")
    sample.set_defaults(handler=sample_space)


def show_space(args: argparse.Namespace) -> int:
    from spaces import load_space
    from spaces.loader import space_source

    where, text = space_source(args.space)
    if args.toml:
        # The file as written, comments and all (they say why each range is what it is).
        print(f"# {args.space}: {where}")
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    space = load_space(args.space)
    print(f"space {space.name!r} ({where}): {space.description}".rstrip(": "))
    rows = [["tier", "name", "kind", "range", "scale", "default", "condition"]]
    for p in sorted(space.params, key=lambda p: p.tier):  # stable: file order inside a tier
        rows.append(
            [
                str(p.tier),
                p.name if p.drawn_name == p.name else f"{p.name} ({p.drawn_name})",
                p.kind,
                p.describe_range(),
                p.describe_scale(),
                _fmt(p.default),
                p.describe_condition() or "-",
            ]
        )
    _print_table(rows)
    return 0


def validate_space(args: argparse.Namespace) -> int:
    from spaces import load_space

    space = load_space(args.space)
    print(f"ok: {len(space.params)} parameters, tiers 1..{space.max_tier}")
    return 0


def sample_space(args: argparse.Namespace) -> int:
    from search.samplers import draw  # imported here: `hpsearch --help` stays fast (optuna)
    from spaces import load_space

    space = load_space(args.space)
    trials = draw(space, n=args.n, seed=args.seed, tiers=args.tiers, sampler=args.sampler)
    searched = [p.name for p in space.searched(args.tiers)]
    if args.json:
        json.dump(trials, sys.stdout, indent=2)
        print()
    elif args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["trial", *space.names()])
        for t in trials:
            writer.writerow([t["number"], *(t["config"][name] for name in space.names())])
    else:
        rows = [["trial", *searched]]
        rows += [[str(t["number"]), *(_fmt(t["config"][n]) for n in searched)] for t in trials]
        _print_table(rows)
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, but got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, but got {value}")
    return value


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            print("  ".join("-" * width for width in widths))


__all__ = ["register"]
