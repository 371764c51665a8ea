"""What a newcomer meets (issue 13): default names, studies that grow, a finished study run
again, seeds per name, `refine`'s ranges, and no side effect of a bad request.

Real components throughout: SQLite files, worker processes, the trainers on digits/wine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search.cli import main
from search.study import default_seed, load_spec
from tests.search.cli.test_study_cmd import FAST, here  # noqa: F401 (a fixture)
from tests.support.study import trials

STORE = "hpsearch.db"


def _url(where: Path) -> str:
    return f"sqlite:///{where / STORE}"


# --- the default name ------------------------------------------------------------------------


def test_the_default_name_is_the_csv_stem_or_the_builtin_and_the_space(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    csv = here / "data" / "my_data.csv"
    csv.parent.mkdir()
    csv.write_text("a,b,species\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(60)))
    assert main(["create", "--dataset", str(csv), "--target", "species", *FAST]) == 0
    assert "study 'my_data-tiny' created" in capsys.readouterr().out
    assert main(["create", "--dataset", "wine", "--no-tracking"]) == 0
    assert "study 'wine-lesson' created" in capsys.readouterr().out
    assert main(["create", "--no-tracking"]) == 0  # the demo keeps its name
    assert "study 'digits-lesson' created" in capsys.readouterr().out


def test_an_empty_name_is_refused_naming_the_field(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    for verb in ("run", "create"):
        assert main([verb, "--name", "", *FAST]) == 2
        err = capsys.readouterr().err
        assert "`--name` must be a non-empty study name" in err and "Traceback" not in err
    assert not (here / STORE).exists()


def test_two_datasets_in_one_folder_need_no_name(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    for dataset in ("wine", "breast_cancer"):
        assert main(["run", "--dataset", dataset, "--trials", "2", "--workers", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"wine-tiny\s+2/2", out) and re.search(r"breast_cancer-tiny\s+2/2", out)


# --- studies a user can grow -----------------------------------------------------------------


def test_raising_a_finished_studys_budget_runs_the_difference_and_keeps_the_first(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--name", "g", "--trials", "3", "--workers", "1", *FAST]) == 0
    before = {t.number: (t.params, t.value) for t in trials(_url(here), "g")}
    capsys.readouterr()
    # Only the name and the new budget: the rest is the study's own configuration.
    assert main(["run", "--name", "g", "--trials", "5", "--workers", "1", "--no-progress"]) == 0
    assert "5/5 trials finished" in capsys.readouterr().out
    after = {t.number: (t.params, t.value) for t in trials(_url(here), "g")}
    assert sorted(after) == [0, 1, 2, 3, 4]
    assert {n: after[n] for n in before} == before  # the first three untouched
    assert load_spec(_url(here), "g").n_trials == 5


def test_running_a_finished_study_again_returns_at_once_without_a_worker(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--name", "f", "--trials", "2", "--workers", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["run", "--name", "f"]) == 0
    captured = capsys.readouterr()
    assert "already has 2/2 trials finished: nothing to run" in captured.out
    # The runner never started (how long that takes is the throughput benchmark's business).
    assert "worker(s) on" not in captured.err and "logs in" not in captured.err
    assert len(trials(_url(here), "f")) == 2


def test_a_successful_run_removes_its_logs_and_a_failed_one_keeps_them(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--name", "ok", "--trials", "2", "--workers", "1", *FAST]) == 0
    logs = re.search(r"logs in (\S+)", capsys.readouterr().err)
    assert logs and not Path(logs.group(1)).exists()

    csv = here / "gone.csv"
    csv.write_text("a,b,y\n" + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(60)))
    assert main(["create", "--name", "bad", "--dataset", str(csv), "--target", "y", *FAST]) == 0
    csv.unlink()  # every trial now fails with an error: the worker stops after three
    assert main(["run", "--name", "bad", "--workers", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    kept = re.search(r"--- (\S+worker-0\.log)", err)
    assert kept and Path(kept.group(1)).exists(), err[-2000:]


# --- seeds and refine ------------------------------------------------------------------------


def test_the_default_seed_is_stable_per_name_and_differs_across_names(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert default_seed("a") == default_seed("a") != default_seed("b")
    for name in ("a", "b"):
        assert main(["create", "--name", name, "--trials", "1", *FAST]) == 0
        assert f"seed {default_seed(name)}" in capsys.readouterr().out
        assert main(["worker", name]) == 0
    first = [trials(_url(here), name)[0].params["alpha"] for name in ("a", "b")]
    assert first[0] != first[1]


def test_refine_prints_each_range_and_draws_new_points(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    space = here / "two.toml"
    space.write_text(
        (here / "tiny.toml").read_text()
        + '\n[[param]]\nname = "hidden_layers"\nkind = "int"\ntier = 1\nlow = 1\nhigh = 4\n'
        "default = 1\n"
    )
    fast = ["--space", "two.toml", "--tiers", "1", "--epochs", "2", "--no-tracking"]
    assert main(["create", "--name", "wide", "--trials", "6", *fast]) == 0
    assert main(["worker", "wide"]) == 0
    capsys.readouterr()
    assert main(["refine", "wide", "--top", "2", "--name", "fine", "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"alpha: 0\.001 \.\. 0\.1 -> \S+ \.\. \S+", out), out
    assert "hidden_layers: 1 .. 4" in out, out
    assert main(["worker", "fine"]) == 0
    old = {t.params["alpha"] for t in trials(_url(here), "wide")}
    new = {t.params["alpha"] for t in trials(_url(here), "fine")}
    assert not old & new  # its own seed: not the coarse study's points again


# --- no side effect of a bad request ---------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["trials", "absent"], ["best", "absent"], ["worker", "absent"], ["status", "absent"]],
)
def test_asking_for_a_missing_study_creates_no_file_and_names_the_absolute_path(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no study named 'absent'" in err and str(here / STORE) in err
    assert not (here / STORE).exists()


def test_status_in_an_empty_folder_says_where_it_looked_and_creates_nothing(
    here: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["status"]) == 0
    assert f"no studies in sqlite:///{here / STORE}" in capsys.readouterr().out
    assert not (here / STORE).exists()
