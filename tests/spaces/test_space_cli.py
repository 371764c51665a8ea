"""`hpsearch space show|validate|sample`, called in-process."""

from __future__ import annotations

import csv
import io
import json

import pytest

from search.cli import main


def test_show_prints_the_tiers_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "show", "lesson"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["tier", "name", "kind", "range", "scale", "default", "condition"]
    rows = [line.split() for line in lines[3:]]
    assert [row[1] for row in rows[:4]] == ["alpha", "beta", "hidden_units", "batch_size"]
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)
    beta = next(line for line in lines if line.startswith("2     beta"))
    assert "one_minus_beta" in beta and "log of 1 - beta" in beta and "optimizer in" in beta


def test_sample_prints_a_table_of_the_searched_parameters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["space", "sample", "lesson", "-n", "20", "--seed", "0", "--tiers", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["trial", "alpha"]
    assert len(lines) == 2 + 20
    assert [line.split()[0] for line in lines[2:]] == [str(n) for n in range(20)]


def test_sample_json_and_csv_agree(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["space", "sample", "lesson", "-n", "5", "--seed", "4", "--sampler", "sobol"]
    assert main([*args, "--json"]) == 0
    trials = json.loads(capsys.readouterr().out)
    assert main([*args, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [float(r["alpha"]) for r in rows] == [t["config"]["alpha"] for t in trials]
    assert trials[0]["params"]["one_minus_beta"] == pytest.approx(1 - trials[0]["config"]["beta"])


@pytest.mark.parametrize("sampler", ["grid", "GridSampler", "grid_search"])
def test_sample_refuses_a_grid_with_the_reason(
    capsys: pytest.CaptureFixture[str], sampler: str
) -> None:
    assert main(["space", "sample", "lesson", "--sampler", sampler]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpsearch: error: ") and "Bergstra & Bengio (2012" in err
    assert "hard to say in advance which hyperparameters matter" in err


def test_sample_validates_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["space", "sample", "lesson", "-n", "0"])
    assert info.value.code == 2
    assert "must be an integer >= 1" in capsys.readouterr().err
