"""Every third-party import is a declared dependency (pyproject.toml), for each part of the repo.

A direct import is a direct dependency, even when another package brings it in today: the
import statements (all of them, the lazy ones inside functions too) are read with `ast`, each
top-level name is mapped to the distribution that installs it (`sklearn` -> scikit-learn,
`yaml` -> PyYAML) from the installed packages' own metadata, and checked against the
`dependencies` of pyproject.toml plus the extras that part of the repo may use.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"search", "spaces", "trainers", "tests", "bench"}

# part of the repo -> the extras of pyproject.toml it may import from, besides `dependencies`
PARTS = {
    "spaces": (),
    "trainers": (),
    "search": (),
    "deploy": (),  # runs in the image, where hpsearch is installed
    "tests": ("dev",),
    "bench": ("dev", "bench"),
}


@functools.cache
def distributions() -> dict[str, set[str]]:
    """Top-level import name -> the (normalized) distributions that install it (reads every
    installed package's metadata: once per session)."""
    return {
        name: {_normalize(d) for d in dists}
        for name, dists in importlib.metadata.packages_distributions().items()
    }


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert match, requirement
    return _normalize(match.group(0))


def declared(extras: tuple[str, ...]) -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {_requirement_name(r) for r in requirements}


def imported_roots(folder: Path, base: Path = REPO) -> dict[str, str]:
    """Top-level module name -> where it is first imported (absolute imports only)."""
    roots: dict[str, str] = {}
    for source in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                roots.setdefault(name.split(".")[0], f"{source.relative_to(base)}:{node.lineno}")
    return roots


def third_party(roots: dict[str, str]) -> dict[str, str]:
    skip = set(sys.stdlib_module_names) | FIRST_PARTY | {"__future__"}
    return {name: where for name, where in roots.items() if name not in skip}


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_third_party_import_is_declared(part: str) -> None:
    allowed = declared(PARTS[part])
    undeclared = []
    for name, where in sorted(third_party(imported_roots(REPO / part)).items()):
        # Not installed here (an extra this environment lacks): its name is the best guess.
        installing = distributions().get(name) or {_normalize(name)}
        if not installing & allowed:
            undeclared.append(f"{where}: `import {name}` ({', '.join(sorted(installing))})")
    assert not undeclared, f"imported by {part}/ but not declared in pyproject.toml: {undeclared}"


def test_the_check_sees_lazy_imports_and_maps_import_names_to_distributions(
    tmp_path: Path,
) -> None:
    # The names that differ from their distribution's, and an import inside a function.
    (tmp_path / "m.py").write_text(
        "import os\nfrom sklearn import datasets\n\ndef f():\n    import yaml\n"
    )
    roots = third_party(imported_roots(tmp_path, base=tmp_path))
    assert roots == {"sklearn": "m.py:2", "yaml": "m.py:5"}
    assert "scikit-learn" in distributions()["sklearn"]
    assert "pyyaml" in distributions()["yaml"]
    assert "pyyaml" not in declared(())  # a test-only dependency: the dev extra's
    assert "pyyaml" in declared(("dev",))
