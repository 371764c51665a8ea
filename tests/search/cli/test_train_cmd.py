"""`hpsearch train`: flags and TOML in, metrics out; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import main
from tests.support.house_prices import write_house_prices

HPSEARCH = Path(sys.executable).with_name("hpsearch")
FAST = ["--dataset", "wine", "--epochs", "2", "--device", "cpu"]


def test_train_prints_epochs_and_final_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *FAST, "--alpha", "0.01", "--hidden-units", "16"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out
    assert "outcome: complete" in out
    assert "val_accuracy" in out


def test_train_prints_the_configuration_it_runs_without_what_it_ignores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", *FAST]) == 0
    out = capsys.readouterr().out
    # The defaults are the lesson space's: momentum at 0.1 (see spaces/builtin/lesson.toml).
    assert "optimizer=momentum alpha=0.1 beta=0.9 batch_size=32 epochs=2 decay=none" in out
    assert "beta1=" not in out and "decay_rate=" not in out and "dataset=wine" in out
    assert main(["train", *FAST, "--optimizer", "adam", "--alpha", "0.003"]) == 0
    out = capsys.readouterr().out
    assert "optimizer=adam alpha=0.003 beta1=0.9 beta2=0.999 epsilon=1e-08" in out
    assert " beta=" not in out


def test_a_config_file_may_hold_fields_its_optimizer_ignores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `hpsearch best` writes holds every field: only flags are checked.
    config = tmp_path / "best.toml"
    config.write_text('optimizer = "adam"\nalpha = 0.003\nbeta = 0.95\nepochs = 1\n')
    assert main(["train", "--config", str(config), "--dataset", "wine", "--device", "cpu"]) == 0


def test_toml_file_then_flags_override_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(
        'dataset = "digits"\nalpha = 0.5\nhidden_units = 8\nepochs = 1\n'
        'decay = "step"\ndecay_milestones = [1]\nstandardize_target = false\n'
    )
    code = main([
        "train", "--config", str(config), "--alpha", "0.01", "--dataset", "wine", "--json",
        "--decay-milestones", "2,3", "--standardize-target",
    ])  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["config"]["dataset"] == "wine"  # flag beats file
    assert printed["config"]["alpha"] == 0.01
    assert printed["config"]["hidden_units"] == 8  # from the file
    assert printed["config"]["decay_milestones"] == [2, 3]
    assert printed["config"]["standardize_target"] is True
    assert printed["result"]["outcome"] == "complete"
    assert printed["result"]["epochs_run"] == 1


def _bad_toml(tmp_path: Path) -> str:
    path = tmp_path / "bad.toml"
    path.write_text("alpha = = 3\n")
    return str(path)


def _unknown_key_toml(tmp_path: Path) -> str:
    path = tmp_path / "typo.toml"
    path.write_text("learning_rate = 0.1\n")
    return str(path)


BAD_INPUT = [
    (["--dataset", "mnist"], r"`dataset` must be one of \['digits'.*but got dataset='mnist'"),
    (["--dataset", "{csv}", "--target", "cost"], r"target column 'cost' is not in .*houses\.csv"),
    (["--alpha", "-0.1"], r"`alpha` must be a finite number > 0, but got alpha=-0\.1"),
    (["--alpha", "fast"], r"`--alpha` must be a float, but got 'fast'"),
    (["--hidden-layers", "0"], r"`hidden_layers` must be >= 1, but got hidden_layers=0"),
    (["--optimizer", "sgd"], r"`optimizer` must be one of \['gd'.*but got optimizer='sgd'"),
    (["--decay-milestones", "3,1"], r"`decay_milestones` must be increasing integers"),
    (["--config", "{bad_toml}"], r"`--config` file '.*bad\.toml' is not valid TOML"),
    (["--config", "{typo_toml}"], r"unknown TrainConfig field\(s\) \['learning_rate'\]"),
    (["--config", "{missing}"], r"`--config` file '.*nope\.toml' does not exist"),
    (["--device", "tpu"], r"`device` must be auto, cpu, cuda or cuda:N"),
    # A flag the chosen optimizer / schedule never reads is refused, with the reason.
    (
        ["--optimizer", "adam", "--beta", "0.5"],
        r"`--beta` would be ignored: only momentum and rmsprop read it, and optimizer='adam', "
        r"but got beta=0\.5",
    ),
    (
        ["--beta1", "0.8"],
        r"`--beta1` would be ignored: only adam read it, and optimizer='momentum'",
    ),
    (["--decay-rate", "0.5"], r"`--decay-rate` would be ignored: only decay='inverse_time'"),
]


@pytest.mark.parametrize(("flags", "message"), BAD_INPUT, ids=[" ".join(f) for f, _ in BAD_INPUT])
def test_bad_input_is_one_line_and_exit_code_2(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = {
        "csv": str(write_house_prices(tmp_path / "houses.csv")),
        "bad_toml": _bad_toml(tmp_path),
        "typo_toml": _unknown_key_toml(tmp_path),
        "missing": str(tmp_path / "nope.toml"),
    }
    argv = ["train", *[f.format(**paths) for f in flags]]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("hpsearch: error: ")
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_divergence_through_the_cli_exits_3_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_house_prices(tmp_path / "houses.csv")
    argv = [
        "train", "--dataset", str(csv), "--target", "price", "--normalization", "none",
        "--no-standardize-target", "--optimizer", "adam", "--alpha", "1.0", "--device", "cpu",
    ]  # fmt: skip
    assert main(argv) == 3
    captured = capsys.readouterr()
    assert "outcome: diverged (gradient norm of layer" in captured.out
    assert captured.err.startswith("hpsearch: training diverged: gradient norm of layer ")
    assert main([*argv, "--json"]) == 3
    printed = json.loads(capsys.readouterr().out)
    assert printed["result"]["outcome"] == "diverged"
    assert "explode_threshold" in printed["result"]["reason"]


def test_console_script_in_a_real_subprocess(tmp_path: Path) -> None:
    assert HPSEARCH.exists(), f"console script not installed at {HPSEARCH}"
    bad = subprocess.run(
        [str(HPSEARCH), "train", "--dataset", "wine", "--alpha", "-1"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2
    assert (
        bad.stderr.strip()
        == "hpsearch: error: `alpha` must be a finite number > 0, but got alpha=-1.0"
    )
    good = subprocess.run(
        [str(HPSEARCH), "train", *FAST, "--json"], capture_output=True, text=True, timeout=120
    )
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["result"]["outcome"] == "complete"
