"""The deployment files, checked without a Docker engine.

Validation against the Compose specification uses `docker-compose config -q` (Debian's
docker-compose 1.29.2 validates with the compose-spec JSON schema and needs no engine), or
`docker compose config -q` where the v2 plugin is installed. The other checks read the files.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from mlflow.server.security_utils import is_allowed_host_header

from tests.deploy.compose_model import (
    ENV_EXAMPLE,
    MAIN_FILE,
    PRIVATE_NETWORK_FILE,
    REPO,
    WORKER_HOST_FILE,
    InterpolationError,
    command_of,
    compose_cli,
    environment_of,
    interpolate,
    load_compose,
    read_env_file,
    read_raw,
)

CANARY = "canary-pw-5f1d0c"
COMPOSE_FILES = [MAIN_FILE, WORKER_HOST_FILE]
WORKER_SERVICES = ("worker", "worker-cpu")


# What deploy/compose.private-network.yml requires besides the address (the MLflow login).
LOGIN = {
    "MLFLOW_TRACKING_USERNAME": "u",
    "MLFLOW_TRACKING_PASSWORD": "login-pw",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
}


def example_env(**overrides: str) -> dict[str, str]:
    """.env.example's values with a password filled in, as a user's .env would be."""
    return {**read_env_file(), "POSTGRES_PASSWORD": CANARY, **overrides}


# --- validation against the Compose specification ---------------------------------------


@pytest.fixture(scope="module")
def compose() -> list[str]:
    cli = compose_cli()
    if cli is None:
        if os.environ.get("HPSEARCH_REQUIRE_COMPOSE") == "1" or os.environ.get("CI") == "true":
            pytest.fail("docker-compose is required (apt-get install -y docker-compose)")
        pytest.skip("no docker-compose or `docker compose` to validate with")
    return cli


def compose_config(
    cli: list[str], files: list[Path], env: dict[str, str], tmp_path: Path, *, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    # An explicit --env-file: a developer's own .env in the repo must not change the result.
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    args = [*cli, "--project-directory", str(REPO), "--env-file", str(env_file)]
    for f in files:
        args += ["-f", str(f)]
    args += ["config", "-q"] if quiet else ["config"]
    clean_env = {
        k: v for k, v in os.environ.items() if k not in env and not k.startswith("COMPOSE")
    }
    return subprocess.run(
        args, capture_output=True, text=True, env=clean_env, timeout=60, check=False
    )


@pytest.mark.parametrize(
    "files",
    [[MAIN_FILE], [WORKER_HOST_FILE], [MAIN_FILE, PRIVATE_NETWORK_FILE]],
    ids=["main", "worker-host", "main+private-network"],
)
def test_compose_files_validate(compose: list[str], files: list[Path], tmp_path: Path) -> None:
    env = example_env(HPSEARCH_PRIVATE_IP="10.0.0.5", **LOGIN)
    result = compose_config(compose, files, env, tmp_path)
    assert result.returncode == 0, result.stderr


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = tree
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


BROKEN_VARIANTS = {
    "unknown service key": ("services.mlflow.portz", ["127.0.0.1:5000:5000"]),
    "bad depends_on condition": (
        "services.worker.depends_on.create-study.condition",
        "service_finished",
    ),
    "unknown healthcheck key": ("services.postgres.healthcheck.retry", 3),
    "ports not a list": ("services.mlflow.ports", {"host": 5000}),
    "unknown device key": ("services.worker.deploy.resources.reservations.devices.0.gpus", 1),
    "command not a string or list": ("services.create-study.command", {"run": "hpsearch"}),
}


@pytest.mark.parametrize("variant", sorted(BROKEN_VARIANTS))
def test_broken_compose_file_is_rejected(compose: list[str], variant: str, tmp_path: Path) -> None:
    tree = read_raw(MAIN_FILE)
    path, value = BROKEN_VARIANTS[variant]
    _set(tree, path, value)
    broken = tmp_path / "broken.yml"
    broken.write_text(yaml.safe_dump(tree, sort_keys=False))
    result = compose_config(compose, [broken], example_env(), tmp_path)
    assert result.returncode != 0, f"{variant}: accepted\n{result.stdout}"


def test_dumped_file_still_validates(compose: list[str], tmp_path: Path) -> None:
    """The broken variants are dumped from the parsed file: unbroken, that dump validates."""
    intact = tmp_path / "intact.yml"
    intact.write_text(yaml.safe_dump(read_raw(MAIN_FILE), sort_keys=False))
    result = compose_config(compose, [intact], example_env(), tmp_path)
    assert result.returncode == 0, result.stderr


def test_yaml_syntax_error_is_rejected(compose: list[str], tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(MAIN_FILE.read_text().replace("services:\n", "services:\n  - [\n", 1))
    assert compose_config(compose, [broken], example_env(), tmp_path).returncode != 0


def test_missing_password_is_refused(compose: list[str], tmp_path: Path) -> None:
    for files in ([MAIN_FILE], [WORKER_HOST_FILE]):
        result = compose_config(compose, files, example_env(POSTGRES_PASSWORD=""), tmp_path)
        assert result.returncode != 0
        assert "POSTGRES_PASSWORD" in result.stderr


def test_private_network_bind_needs_an_explicit_address(compose: list[str], tmp_path: Path) -> None:
    env = example_env(**LOGIN)
    result = compose_config(compose, [MAIN_FILE, PRIVATE_NETWORK_FILE], env, tmp_path)
    assert result.returncode != 0
    assert "HPSEARCH_PRIVATE_IP" in result.stderr


def test_our_interpolation_matches_docker_compose(compose: list[str], tmp_path: Path) -> None:
    """The local-process test trusts compose_model's reading of the file: check it here."""
    env = example_env(STUDY_NAME="s1", MLFLOW_HOST_PORT="5999")
    for path in COMPOSE_FILES:
        result = compose_config(compose, [path], env, tmp_path, quiet=False)
        assert result.returncode == 0, result.stderr
        theirs = yaml.safe_load(result.stdout)["services"]
        ours = load_compose(path, env)["services"]
        # Profiled services appear in `config` whatever the active profiles (compose 1.29, v2).
        for name, service in ours.items():
            if name not in theirs:
                continue
            assert command_of(theirs[name]) == command_of(service), name
            assert environment_of(theirs[name]) == environment_of(service), name


# --- what the files must say, read directly -----------------------------------------------


def test_interpolation_rules() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("${SET:-d} ${EMPTY:-d} ${EMPTY-d} ${NONE-d} $$SET $SET", env) == (
        "v d  d $SET v"
    )
    assert interpolate("${SET:+alt}|${EMPTY:+alt}|${EMPTY+alt}", env) == "alt||alt"
    with pytest.raises(InterpolationError, match="must be set"):
        interpolate("${EMPTY:?must be set}", env)
    assert interpolate("${EMPTY?must be set}", env) == ""


def published_ports(tree: dict[str, Any]) -> list[tuple[str, str]]:
    """(service, port spec) for every published port."""
    return [
        (name, str(port))
        for name, service in tree["services"].items()
        for port in service.get("ports") or []
    ]


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_only_loopback_ports_are_published(path: Path) -> None:
    tree = load_compose(path, example_env())
    for name, spec in published_ports(tree):
        assert isinstance(spec, str) and spec.count(":") == 2, (
            f"`{name}` must publish as '127.0.0.1:HOST:CONTAINER' (a bare port binds every "
            f"interface), but got {spec!r}"
        )
        assert spec.startswith("127.0.0.1:"), f"`{name}` publishes {spec!r} beyond loopback"
    for name, service in tree["services"].items():
        assert "expose" not in service, name
        if service.get("network_mode") == "host":
            assert not service.get("ports"), f"`{name}` uses the host network: nothing to publish"
    if path == MAIN_FILE:
        assert {name for name, _ in published_ports(tree)} == {"postgres", "pgbouncer", "mlflow"}


def test_private_network_override_has_no_default_address() -> None:
    services = read_raw(PRIVATE_NETWORK_FILE)["services"]
    assert {name for name, service in services.items() if "ports" in service} == {
        "postgres", "mlflow"
    }  # fmt: skip
    for service in services.values():
        for spec in service.get("ports") or []:
            assert spec.startswith("${HPSEARCH_PRIVATE_IP:?"), spec
    with pytest.raises(InterpolationError, match="HPSEARCH_PRIVATE_IP"):
        load_compose(PRIVATE_NETWORK_FILE, example_env(**LOGIN))


def _all_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in _all_strings(item)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [str(k), *_all_strings(v)]]
    return [str(node)]


@pytest.mark.parametrize("path", [*COMPOSE_FILES, PRIVATE_NETWORK_FILE], ids=lambda p: p.name)
def test_passwords_only_through_substitution(path: Path) -> None:
    raw = read_raw(path)
    for text in _all_strings(raw):
        for url in re.findall(r"[a-z+]+://\S+", text):
            userinfo = urlsplit(url).netloc.rpartition("@")[0]
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
                assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password), (
                    f"a URL in {path.name} must take its password from "
                    f"${{POSTGRES_PASSWORD:?...}}, but got {url!r}"
                )
    for service in raw["services"].values():
        for key, value in environment_of(service).items():
            if re.search(r"PASSWORD|SECRET|TOKEN", key):
                # Required (`:?`), or optional and empty by default (a worker host's MLflow
                # login): from .env either way, never a literal.
                assert re.fullmatch(r"\$\{[A-Z_]+(:\?[^}]+|:-)\}", value), (key, value)
    # With a password set, the substituted file carries it only where a URL or the
    # postgres service needs it, never in a command line.
    tree = load_compose(path, example_env(HPSEARCH_PRIVATE_IP="10.0.0.5", **LOGIN))
    for name, service in tree["services"].items():
        if name == "mlflow":
            continue  # the backend-store URI is mlflow's own argument (no env option for it)
        assert CANARY not in " ".join(_all_strings(service.get("command") or [])), name


def test_env_example_commits_no_password_and_covers_every_variable() -> None:
    values = read_env_file(ENV_EXAMPLE)
    for secret in (
        "POSTGRES_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    ):
        assert values[secret] == "", f"the committed .env.example must hold no {secret}"
    used = set()
    for path in [*COMPOSE_FILES, PRIVATE_NETWORK_FILE]:
        code = "\n".join(
            ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")
        )
        used |= set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", code))
    missing = used - set(values) - {"HPSEARCH_PRIVATE_IP"}  # opt-in: documented, not defaulted
    assert not missing, f".env.example must list every variable the compose files use: {missing}"


def test_image_holds_no_secret() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert not re.search(r"PASSWORD|SECRET|TOKEN|postgres(ql)?(\+\w+)?://", dockerfile)
    assert re.search(r"^USER (?!root\b)\w+", dockerfile, re.M), "the image must not run as root"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".env" in ignored, ".env (the password) must stay out of the build context"


def test_services_start_in_a_safe_order() -> None:
    services = load_compose(MAIN_FILE, example_env())["services"]
    assert set(services) == {
        "postgres", "pgbouncer", "mlflow", "create-study", "worker", "worker-cpu"
    }  # fmt: skip

    def waits_for(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert waits_for("mlflow") == {"postgres": "service_healthy"}
    assert waits_for("pgbouncer") == {"postgres": "service_healthy"}
    assert services["pgbouncer"]["profiles"] == ["proxy"]  # opt-in
    assert waits_for("create-study") == {"postgres": "service_healthy", "mlflow": "service_healthy"}
    for worker in WORKER_SERVICES:
        assert waits_for(worker)["create-study"] == "service_completed_successfully"
    assert services["create-study"]["restart"] == "no"


def test_healthchecks_and_volumes() -> None:
    tree = load_compose(MAIN_FILE, example_env())
    services = tree["services"]
    pg_check = services["postgres"]["healthcheck"]
    assert "pg_isready -h 127.0.0.1" in " ".join(pg_check["test"])
    assert pg_check["start_period"]
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    declared = set(tree["volumes"])
    assert services["postgres"]["volumes"][0] == "pgdata:/var/lib/postgresql/data"
    mlflow_cmd = command_of(services["mlflow"])
    artifacts = mlflow_cmd[mlflow_cmd.index("--artifacts-destination") + 1]
    assert "--serve-artifacts" in mlflow_cmd
    assert f"mlflow-artifacts:{artifacts}" in services["mlflow"]["volumes"]
    assert {"pgdata", "mlflow-artifacts"} <= declared
    assert re.fullmatch(r"postgres:\d+\.\d+(-\w+)?", services["postgres"]["image"]), "pin it"


def test_workers_can_reach_mlflow_through_its_allowed_hosts() -> None:
    """The Host header a worker sends must pass MLflow's own DNS-rebinding check."""
    for path in COMPOSE_FILES:
        services = load_compose(path, example_env())["services"]
        for name in WORKER_SERVICES:
            tracking = environment_of(services[name])["MLFLOW_TRACKING_URI"]
            main = load_compose(MAIN_FILE, example_env())["services"]
            cmd = command_of(main["mlflow"])
            allowed = cmd[cmd.index("--allowed-hosts") + 1].split(",")
            host = urlsplit(tracking).netloc
            assert is_allowed_host_header(allowed, host), (path.name, name, host, allowed)
    # And a browser through `ssh -L 5000:127.0.0.1:5000` or another local port.
    for host in ("localhost:5000", "127.0.0.1:5000", "localhost:8080"):
        assert is_allowed_host_header(allowed, host), host
    assert not is_allowed_host_header(allowed, "evil.example.com:5000")


def test_gpu_and_cpu_workers() -> None:
    for path in COMPOSE_FILES:
        services = load_compose(path, example_env())["services"]
        gpu, cpu = services["worker"], services["worker-cpu"]
        assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
        (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        # count: all + hpsearch-gpu-slot; `count: 1` gives every scaled replica GPU 0.
        assert device["count"] == "all"
        assert command_of(gpu)[0] == "hpsearch-gpu-slot"
        assert command_of(gpu)[1:] == command_of(cpu), "GPU and CPU workers run the same verb"
        assert "deploy" not in cpu
        assert environment_of(cpu)["CUDA_VISIBLE_DEVICES"] == ""
        lock_dir = environment_of(gpu)["HPSEARCH_GPU_LOCK_DIR"]
        assert any(v.endswith(f":{lock_dir}") for v in gpu["volumes"]), "locks shared per host"


def test_worker_host_file_starts_only_workers_that_use_host_one() -> None:
    main = load_compose(MAIN_FILE, example_env())["services"]
    env = example_env(HPSEARCH_PRIMARY_HOST="10.0.0.5")
    other = load_compose(WORKER_HOST_FILE, env)["services"]
    assert set(other) == set(WORKER_SERVICES)
    for name in WORKER_SERVICES:
        assert command_of(other[name]) == command_of(main[name])
        assert other[name]["network_mode"] == "host"
        assert "depends_on" not in other[name]
        storage = urlsplit(environment_of(other[name])["HPSEARCH_STORAGE"])
        assert storage.hostname == "10.0.0.5" and storage.port == 5432
        assert storage.path == urlsplit(environment_of(main[name])["HPSEARCH_STORAGE"]).path
        assert environment_of(other[name])["MLFLOW_TRACKING_URI"] == "http://10.0.0.5:5000"


def test_project_pins_an_mlflow_with_the_security_fixes() -> None:
    pins = dict(
        line.split("==")
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    major, minor, patch = (int(x) for x in pins["mlflow"].split("."))
    assert (major, minor, patch) >= (3, 11, 1)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "constraints" in dockerfile, "the image installs the versions CI tests"


def test_private_network_override_turns_on_the_mlflow_login() -> None:
    """Beyond loopback, MLflow runs with its login; the command is otherwise docker-compose.yml's
    (an override replaces a command whole, so the two are kept the same here)."""
    env = example_env(HPSEARCH_PRIVATE_IP="10.0.0.5", **LOGIN)
    main = load_compose(MAIN_FILE, env)["services"]
    override = load_compose(PRIVATE_NETWORK_FILE, env)["services"]
    command = command_of(override["mlflow"])
    at = command.index("--app-name")
    assert command[at + 1] == "basic-auth"
    assert command[:at] + command[at + 2 :] == command_of(main["mlflow"])
    mlflow_env = environment_of(override["mlflow"])
    assert mlflow_env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "login-pw"
    assert mlflow_env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/hpsearch/mlflow-auth.ini"
    assert "/etc/hpsearch/mlflow-auth.ini" in (REPO / "Dockerfile").read_text()
    for name in ("create-study", "worker", "worker-cpu"):
        login = environment_of(override[name])
        assert (login["MLFLOW_TRACKING_USERNAME"], login["MLFLOW_TRACKING_PASSWORD"]) == (
            "u",
            "login-pw",
        )
    for name in WORKER_SERVICES:  # a worker host sends the login only when .env has one
        assert (
            environment_of(load_compose(WORKER_HOST_FILE, env)["services"][name])[
                "MLFLOW_TRACKING_PASSWORD"
            ]
            == "login-pw"
        )
        assert (
            environment_of(load_compose(WORKER_HOST_FILE, example_env())["services"][name])[
                "MLFLOW_TRACKING_PASSWORD"
            ]
            == ""
        )
    for variable in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        with pytest.raises(InterpolationError, match=variable):
            load_compose(PRIVATE_NETWORK_FILE, {**env, variable: ""})


def test_dockerfile_builds_with_the_classic_builder() -> None:
    """Debian's docker.io has no buildx: no BuildKit-only syntax, no frontend to pull."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert not re.search(r"^#\s*syntax=", dockerfile, re.M)
    for line in dockerfile.splitlines():
        assert not re.match(r"\s*(COPY|ADD)\b.*--(chmod|link)", line), line
        assert not re.match(r"\s*RUN\b.*--mount", line), line
    assert 'ARG WHEELS_URL=""' in dockerfile, "PyPI only, unless a build says otherwise"
