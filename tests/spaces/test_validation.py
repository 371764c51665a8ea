"""Bad space files are refused before anything is written: exit 2, naming parameter and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main
from spaces import Space, SpaceError, load_space

ALPHA = """
[[param]]
name = "alpha"
kind = "float"
tier = 1
low = 1e-4
high = 1.0
scale = "log"
default = 1e-3
"""


def _alpha(**changes: str) -> str:
    """The ALPHA table with some lines replaced (`key="..."`) or added, or removed (`key=None`)."""
    lines = []
    for line in ALPHA.strip().splitlines():
        key = line.split("=")[0].strip()
        if key in changes:
            if changes[key] is not None:
                lines.append(f"{key} = {changes.pop(key)}")
            else:
                changes.pop(key)
            continue
        lines.append(line)
    lines += [f"{key} = {value}" for key, value in changes.items()]
    return "\n".join(lines) + "\n"


OPTIMIZER = """
[[param]]
name = "optimizer"
kind = "categorical"
tier = 2
choices = {choices}
default = "momentum"
"""

UNITS = """
[[param]]
name = "hidden_units"
kind = "int"
tier = {tier}
low = {low}
high = 512
scale = "pow2"
default = 128
"""

DECAY = """
[[param]]
name = "decay"
kind = "categorical"
tier = 1
choices = ["none", "inverse_time"]
default = "none"

[[param]]
name = "decay_rate"
kind = "float"
tier = 1
low = 0.01
high = 1.0
default = 1.0
when = {when}
"""

# (id, file text, what the message must contain: the parameter and the rule)
BAD_SPACES = [
    ("unknown-top-level-key", 'nmae = "x"\n' + ALPHA, ["unknown top-level key", "nmae"]),
    ("unknown-param-key", _alpha(lo="1e-4"), ["`alpha`", "unknown key", "lo"]),
    ("wrong-type", _alpha(low='"0.1"'), ["`alpha`", "`low` must be a number", "'0.1'"]),
    ("low-above-high", _alpha(low="1.0", high="0.1"), ["`alpha`", "`low <= high`", "high=0.1"]),
    ("log-low-zero", _alpha(low="0.0"), ["`alpha`", "`low > 0` must hold", "low=0.0"]),
    ("nan-bound", _alpha(high="nan"), ["`alpha`", "`high` must be finite", "nan"]),
    ("inf-bound", _alpha(high="inf"), ["`alpha`", "`high` must be finite", "inf"]),
    ("empty-choices", ALPHA + OPTIMIZER.format(choices="[]"), ["`optimizer`", "non-empty"]),
    ("duplicate-names", ALPHA + ALPHA, ["`alpha`", "unique", "twice"]),
    ("tier-gap", ALPHA + UNITS.format(tier=3, low=16), ["without a gap", "[2]"]),
    ("default-out-of-bounds", _alpha(default="2.0"), ["`alpha`", "low <= default <= high"]),
    (
        "not-a-trainer-field",
        _alpha(name='"learning_rate"'),
        ["`learning_rate`", "TrainConfig field"],
    ),
    ("pow2-bounds", ALPHA + UNITS.format(tier=2, low=10), ["`hidden_units`", "powers of two"]),
    ("unknown-scale", _alpha(scale='"log10"'), ["`alpha`", "`scale` must be one of", "log10"]),
    ("unknown-kind", _alpha(kind='"double"'), ["`alpha`", "`kind` must be one of", "double"]),
    ("grid-in-file", 'sampler = "grid"\n' + ALPHA, ["grid search is refused", "Bergstra"]),
    ("missing-tier", _alpha(tier=None), ["`alpha`", "`tier` is required"]),
    ("tier-zero", _alpha(tier="0"), ["`alpha`", "`tier` must be an integer >= 1"]),
    (
        "int-kind-float-field",
        _alpha(kind='"int"', low="1", high="2", default="1"),
        ["`alpha`", "needs an int field"],
    ),
    (
        "choice-refused-by-trainer",
        ALPHA + OPTIMIZER.format(choices='["momentum", "sgd"]'),
        ["`optimizer`", "refused by TrainConfig", "sgd"],
    ),
    (
        "categorical-default-not-a-choice",
        ALPHA + OPTIMIZER.format(choices='["adam", "gd"]'),
        ["`optimizer`", "must be one of the choices"],
    ),
    (
        "when-unknown-parameter",
        ALPHA
        + DECAY.replace('name = "decay"\n', 'name = "init"\n')
        .replace('["none", "inverse_time"]', '["he"]')
        .replace('default = "none"', 'default = "he"')
        .format(when='{ decay = ["inverse_time"] }'),
        ["`decay_rate`", "`when` must name another"],
    ),
    (
        "when-value-typo",
        ALPHA + DECAY.format(when='{ decay = ["inverse-time"] }'),
        ["`decay_rate`", "refused by TrainConfig", "inverse-time"],
    ),
    (
        "one-minus-high-at-1",
        _alpha(name='"beta"', low="0.9", high="1.0", default="0.9", transform='"one_minus"'),
        ["`beta`", "`high < 1`"],
    ),
    ("no-parameters", 'name = "empty"\n', ["at least one [[param]]"]),
    ("not-toml", "[[param]\nname = ", ["not valid TOML"]),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES]
)
def test_validate_refuses_a_bad_space_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, expected: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["space", "validate", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"hpsearch: error: {path}: ")  # names the file
    assert err.count("\n") == 1  # one line, no traceback
    for fragment in expected:
        assert fragment in err


def test_the_table_is_long_enough() -> None:
    assert len(BAD_SPACES) >= 12


def test_the_good_base_file_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Each bad file above differs from a valid one by the one rule it breaks.
    path = tmp_path / "good.toml"
    path.write_text(
        ALPHA + UNITS.format(tier=2, low=16) + OPTIMIZER.format(choices='["momentum", "adam"]')
    )
    assert main(["space", "validate", str(path)]) == 0
    assert capsys.readouterr().out == "ok: 3 parameters, tiers 1..2\n"


def test_validate_the_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "validate", "lesson"]) == 0
    assert capsys.readouterr().out == "ok: 15 parameters, tiers 1..5\n"


def test_a_missing_file_is_a_user_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["space", "validate", "no/such/space.toml"]) == 2
    assert "neither a built-in space ['lesson'] nor a readable file" in capsys.readouterr().err


def test_conditions_must_not_form_a_cycle() -> None:
    text = (
        ALPHA
        + """
[[param]]
name = "decay"
kind = "categorical"
tier = 1
choices = ["none", "inverse_time"]
default = "none"
when = { optimizer = ["adam"] }

[[param]]
name = "optimizer"
kind = "categorical"
tier = 1
choices = ["adam", "gd"]
default = "adam"
when = { decay = ["none"] }
"""
    )
    with pytest.raises(SpaceError, match="must not form a cycle"):
        Space.from_toml(text, source="cycle.toml")


def test_lesson_round_trips_through_text() -> None:
    lesson = load_space("lesson")
    text = lesson.to_toml()
    again = Space.from_toml(text, source="stored")
    assert again == lesson
    assert again.to_toml() == text
    assert hash(again) == hash(lesson)  # frozen all the way down


def test_ints_in_float_bounds_become_floats_and_round_trip() -> None:
    space = Space.from_toml(_alpha(high="1", default="1"), source="x.toml")
    assert space.params[0].high == 1.0 and isinstance(space.params[0].high, float)
    assert space.name == "x"
    assert Space.from_toml(space.to_toml()) == space


def test_defaults_come_from_trainconfig_when_omitted() -> None:
    from trainers import TrainConfig

    space = Space.from_toml(_alpha(default=None))
    assert space.defaults() == {"alpha": TrainConfig().alpha}


def _roots_loaded_by(code: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {name.split(".")[0] for name in out.split()}


def test_importing_spaces_loads_no_torch_mlflow_or_search() -> None:
    assert not _roots_loaded_by("import spaces") & {"torch", "mlflow", "search"}


def test_loading_a_space_loads_no_torch() -> None:
    # Validation reads trainers.config, whose package __init__ may export the torch trainer.
    if "torch" in _roots_loaded_by("import trainers.config"):
        pytest.skip("trainers/__init__.py imports torch eagerly; make its exports lazy")
    loaded = _roots_loaded_by("import spaces; spaces.load_space('lesson')")
    assert not loaded & {"torch", "mlflow", "search"}


def test_spaces_source_imports_only_stdlib_optuna_distributions_and_trainers_config() -> None:
    import ast
    import sys

    import spaces

    allowed_roots = set(sys.stdlib_module_names) | {"spaces", "__future__"}
    allowed_modules = {"optuna.distributions", "trainers.config"}
    for source in Path(spaces.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in allowed_roots or name in allowed_modules
                assert ok, f"{source.name} imports {name}"
