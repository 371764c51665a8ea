"""`hpsearch` verbs: placeholder until its issue lands."""

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # noqa: ARG001
    pass
