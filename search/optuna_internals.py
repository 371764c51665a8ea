"""The private Optuna names `search` relies on, in one place (outside the worker and storage).

Optuna keeps these out of its public API, so a minor release may move or change them. Each
is reached only through this module, and tests/search/test_optuna_internals.py checks the
behaviour we rely on against the pinned Optuna (constraints.txt): an upgrade that changes one
fails there, by name, not somewhere deep in a study.

- `SearchSpaceTransform` (`optuna._transform._SearchSpaceTransform`): maps a distribution to
  a box in which a uniform draw is the right draw (log scales, integer steps) and back. It is
  exactly what `RandomSampler` does, which is what the keyed samplers must match.
- `study_storage(study)` (`Study._storage`, `Study._study_id`): the storage and id of a study,
  for study-level system attributes, which `Study` exposes only read-only.
"""

from __future__ import annotations

import optuna
from optuna._transform import _SearchSpaceTransform as SearchSpaceTransform
from optuna.storages import BaseStorage


def study_storage(study: optuna.Study) -> tuple[BaseStorage, int]:
    """The storage a study object talks to, and the study's id in it."""
    return study._storage, study._study_id


__all__ = ["SearchSpaceTransform", "study_storage"]
