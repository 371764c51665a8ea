"""Read the compose files the way `docker compose` does, for tests that have no Docker engine.

`load_compose(path, env)` parses a file (YAML anchors and `<<` merges included) and applies the
Compose specification's variable substitution to every string value: `$$`, `$VAR`, `${VAR}`,
`${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`,
`${VAR+alt}`. A test cross-checks the result against `docker-compose config` when it is there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MAIN_FILE = REPO / "docker-compose.yml"
WORKER_HOST_FILE = REPO / "docker-compose.worker-host.yml"
PRIVATE_NETWORK_FILE = REPO / "deploy" / "compose.private-network.yml"
ENV_EXAMPLE = REPO / ".env.example"

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A `${VAR:?message}` (or `?`) variable is missing, as `docker compose` would refuse."""


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        value = env.get(name)
        op, arg = match["op"], match["arg"] or ""
        if op is None:
            return value or ""
        is_set = value is not None
        is_set_nonempty = bool(value)
        present = is_set_nonempty if op.startswith(":") else is_set
        kind = op[-1]
        if kind == "-":
            return value if present and value is not None else arg
        if kind == "+":
            return arg if present else ""
        if not present:  # kind == "?"
            raise InterpolationError(f"required variable {name} is missing: {arg}")
        assert value is not None  # present
        return value

    return _VAR.sub(one, text)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def read_raw(path: Path) -> dict[str, Any]:
    """The file as YAML gives it: anchors merged, variables not substituted."""
    return yaml.safe_load(path.read_text())


def load_compose(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The file after variable substitution with `env` (the `.env` file's values)."""
    return _interpolate_tree(read_raw(path), env)


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped), as compose reads them."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line in {path.name}: {line!r}"
        values[key.strip()] = value.strip()
    return values


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment` as a dict (compose allows a mapping or a list of K=V)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    """A service's `command` as an argv list (empty when the image's default runs)."""
    command = service.get("command") or []
    assert isinstance(command, list), f"commands are written as lists here, got {command!r}"
    return [str(part) for part in command]


def compose_cli() -> list[str] | None:
    """The compose command line that validates files without an engine, or None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return None
