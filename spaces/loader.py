"""`load_space`: a built-in space by name (shipped in spaces/builtin/) or a TOML file by path."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from spaces.errors import SpaceError
from spaces.space import Space


def list_builtin() -> list[str]:
    """Names of the spaces shipped with the package (spaces/builtin/<name>.toml)."""
    folder = resources.files("spaces").joinpath("builtin")
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


BUILTIN_SPACES: tuple[str, ...] = tuple(list_builtin())


def load_space(name_or_path: str | os.PathLike[str]) -> Space:
    """A built-in name ("lesson") or a path to a TOML file; raises `SpaceError` otherwise."""
    text_name = os.fspath(name_or_path)
    if text_name in BUILTIN_SPACES and not Path(text_name).is_file():
        entry = resources.files("spaces").joinpath("builtin", f"{text_name}.toml")
        return Space.from_toml(entry.read_text(encoding="utf-8"), source=f"{text_name}.toml")
    path = Path(text_name)
    if not path.is_file():
        raise SpaceError(
            f"space {text_name!r} is neither a built-in space {list(BUILTIN_SPACES)} "
            "nor a readable file"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{text_name}: cannot read the space file: {exc}") from None
    return Space.from_toml(text, source=text_name)


def space_source(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Where a space comes from and its text as written (comments kept): what a user copies
    and edits. The text is validated first (`SpaceError` as `load_space` raises it)."""
    load_space(name_or_path)
    text_name = os.fspath(name_or_path)
    if text_name in BUILTIN_SPACES and not Path(text_name).is_file():
        entry = resources.files("spaces").joinpath("builtin", f"{text_name}.toml")
        return str(entry), entry.read_text(encoding="utf-8")
    path = Path(text_name)
    return str(path.resolve()), path.read_text(encoding="utf-8")
