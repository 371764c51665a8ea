"""The private Optuna names of search/optuna_internals.py do what `search` relies on.

Checked on the pinned Optuna. When an upgrade moves or changes one, this file fails, naming
it: fix search/optuna_internals.py, nowhere else.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from search.optuna_internals import SearchSpaceTransform, study_storage

VERSION = f"optuna {optuna.__version__}"


def test_a_log_scale_is_a_box_in_log_space_and_back() -> None:
    trans = SearchSpaceTransform({"alpha": FloatDistribution(1e-4, 1.0, log=True)})
    np.testing.assert_allclose(trans.bounds, [[math.log(1e-4), 0.0]], err_msg=VERSION)
    value = trans.untransform(np.array([math.log(3e-3)]))["alpha"]
    assert value == pytest.approx(3e-3), VERSION


def test_integer_steps_come_back_on_the_grid_of_the_step() -> None:
    trans = SearchSpaceTransform({"units": IntDistribution(16, 512, step=16)})
    low, high = trans.bounds[0]
    for u in np.linspace(0.0, 1.0, 23):
        value = trans.untransform(np.array([low + u * (high - low)]))["units"]
        assert isinstance(value, int) and 16 <= value <= 512 and value % 16 == 0, (VERSION, value)


def test_study_storage_is_the_study_backend_and_its_id() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="internals")
    backend, study_id = study_storage(study)
    assert isinstance(backend, optuna.storages.BaseStorage), VERSION
    assert backend.get_study_id_from_name("internals") == study_id, VERSION
    study.set_user_attr("written", "through the study")
    assert backend.get_study_user_attrs(study_id) == {"written": "through the study"}, VERSION
    backend.set_study_system_attr(study_id, "hpsearch_check", True)
    assert backend.get_study_system_attrs(study_id)["hpsearch_check"] is True, VERSION


def test_search_names_no_private_optuna_api_outside_this_module() -> None:
    import ast
    from pathlib import Path

    import search

    exempt = {"optuna_internals.py"}
    root = Path(search.__file__).parent
    offenders = []
    for source in sorted(root.rglob("*.py")):
        if source.name in exempt:
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.startswith("optuna"):
                private = any(part.startswith("_") for part in module.split("."))
                if private or any(a.name.startswith("_") for a in node.names):
                    offenders.append(f"{source.relative_to(root)}:{node.lineno} {module}")
            if isinstance(node, ast.Attribute) and node.attr in {
                "_storage", "_study_id", "_trial_id", "_backend"
            }:  # fmt: skip
                offenders.append(f"{source.relative_to(root)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_a_joining_storage_skips_the_set_up_and_still_versions_on_demand(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'join.db'}"
    optuna.create_study(study_name="joined", storage=url).optimize(lambda t: 1.0, n_trials=1)
    # Run in a fresh interpreter: whether alembic is imported is a process-wide fact.
    code = (
        "import sys\n"
        "from search.optuna_internals import open_joining_storage\n"
        f"s = open_joining_storage({url!r})\n"
        "sid = s.get_study_id_from_name('joined')\n"
        "assert len(s.get_all_trials(sid)) == 1\n"
        "assert 'alembic' not in sys.modules, 'alembic imported at open'\n"
        "print(s.get_current_version() == s.get_head_version())\n"  # the deferred set-up runs
        "assert 'alembic' in sys.modules\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0 and out.stdout.strip() == "True", (VERSION, out.stderr[-2000:])
    # The class swap is undone: a plain RDBStorage sets up its version bookkeeping at once.
    plain = optuna.storages.RDBStorage(url)
    assert type(plain._version_manager).__name__ == "_VersionManager", VERSION


def test_a_worker_opening_an_empty_database_still_gets_optunas_tables(tmp_path: Path) -> None:
    from search.optuna_internals import has_optuna_tables
    from search.storage import open_storage

    url = f"sqlite:///{tmp_path / 'empty.db'}"
    storage = open_storage(url, check_schema=False)
    assert has_optuna_tables(storage)
    assert storage.get_all_studies() == []
    storage.engine.dispose()
