"""`hpsearch space show|validate|sample`, called in-process."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from search.cli import main
from spaces import SpaceError, load_space
from tests.support.space_files import BAD_SPACES, good_base


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


@pytest.mark.parametrize("text", [c[1] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES])
def test_validate_prints_the_refusal_as_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as refused:  # what the library says (tests/spaces)...
        load_space(path)
    assert main(["space", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"hpsearch: error: {refused.value}\n"  # ... is all the CLI says: one line


def test_validate_passes_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "good.toml"
    path.write_text(good_base())
    assert main(["space", "validate", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 3 parameters, tiers 1..2\n"


def test_validate_the_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "validate", "lesson"]) == 0
    assert capsys.readouterr().out == "ok: 15 parameters, tiers 1..5\n"


def test_a_missing_file_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "validate", "no/such/space.toml"]) == 2
    assert "neither a built-in space ['lesson'] nor a readable file" in capsys.readouterr().err
