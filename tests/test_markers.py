"""The markers that select the test tiers are true: put on from fixtures, checked at run time."""

from __future__ import annotations

import pytest

from tests.support import markers


def test_a_test_using_a_postgres_fixture_is_marked_postgres(
    request: pytest.FixtureRequest, postgres_url: str
) -> None:
    assert request.node.get_closest_marker("postgres") is not None


def test_starting_a_component_without_its_marker_fails_the_test() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"starts a mlflow_server but is not marked"):
        markers.require("mlflow_server")
    with pytest.raises(pytest.fail.Exception, match=r"not marked \['postgres'\]"):
        markers.require("postgres")


@pytest.mark.postgres
def test_a_marked_test_may_start_its_component() -> None:
    markers.require("postgres")
