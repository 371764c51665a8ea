"""Bad space files are refused when loaded: one line naming the file, parameter and rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from spaces import Space, SpaceError, load_space
from tests.support.space_files import ALPHA, BAD_SPACES, alpha_with, good_base


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_SPACES], ids=[c[0] for c in BAD_SPACES]
)
def test_a_bad_space_file_is_refused_in_one_line_naming_the_file_and_the_rule(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")  # names the file
    assert "\n" not in message  # one line
    for fragment in expected:
        assert fragment in message


def test_the_table_is_long_enough() -> None:
    assert len(BAD_SPACES) >= 12


def test_the_good_base_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text(good_base())
    space = load_space(path)
    assert [p.name for p in space.params] == ["alpha", "hidden_units", "optimizer"]
    assert space.max_tier == 2


def test_a_missing_file_names_the_builtins() -> None:
    with pytest.raises(SpaceError, match=r"neither a built-in space \['lesson'\] nor a readable"):
        load_space("no/such/space.toml")


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
    space = Space.from_toml(alpha_with(high="1", default="1"), source="x.toml")
    assert space.params[0].high == 1.0 and isinstance(space.params[0].high, float)
    assert space.name == "x"
    assert Space.from_toml(space.to_toml()) == space


def test_defaults_come_from_trainconfig_when_omitted() -> None:
    from trainers import TrainConfig

    space = Space.from_toml(alpha_with(default=None))
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
    assert "torch" not in _roots_loaded_by("import trainers.config")  # lazy exports
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
