"""The markers of real components, put on from the fixtures a test uses, and checked at run time.

`make check` runs `pytest -m "not slow"`; that tier is only as fast as the markers are true.
So the markers are not left to memory: `mark_from_fixtures` (called by tests/conftest.py at
collection) marks a test by the fixtures it uses, and `require` (called where a component is
started: a PostgreSQL database created, an `mlflow server` started) fails a test that starts
one without its marker, e.g. through a module-scoped fixture of its own.
"""

from __future__ import annotations

import pytest

# fixture -> the markers every test using it (directly or through another fixture) gets
FIXTURE_MARKS: dict[str, tuple[str, ...]] = {
    "postgres_db": ("postgres",),
    "mlflow_server_factory": ("mlflow_server", "slow"),  # a server process takes seconds
    "make_pool": ("slow",),  # worker processes (tests/faults)
    "deployment": ("postgres", "mlflow_server", "slow"),  # tests/deploy: the compose services
    "compose": ("docker",),  # tests/deploy: the docker-compose binary
    "engine_images": ("engine", "slow"),  # tests/deploy/test_engine_*: containers on dockerd
}

# What a component needs on the running test.
COMPONENT_MARKS = {"postgres": ("postgres",), "mlflow_server": ("mlflow_server", "slow")}

_running: list[pytest.Item] = []  # the test being set up, run or torn down (one at a time)


def mark_from_fixtures(items: list[pytest.Item]) -> None:
    for item in items:
        names = getattr(item, "fixturenames", ())
        for fixture, marks in FIXTURE_MARKS.items():
            if fixture in names:
                for mark in marks:
                    if item.get_closest_marker(mark) is None:
                        item.add_marker(mark)


def enter(item: pytest.Item) -> None:
    _running[:] = [item]


def leave() -> None:
    _running.clear()


def require(component: str) -> None:
    """Fail the running test unless it carries the markers `component` needs.

    Outside pytest (a benchmark starting a server) there is no running test: nothing to check.
    """
    if not _running:
        return
    item = _running[0]
    missing = [m for m in COMPONENT_MARKS[component] if item.get_closest_marker(m) is None]
    if missing:
        pytest.fail(
            f"{item.nodeid} starts a {component} but is not marked {missing}: mark the test or "
            "its module (pytestmark), or use the conftest fixture that marks it",
            pytrace=False,
        )
