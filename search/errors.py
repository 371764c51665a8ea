"""Errors of the service layer, and the set of errors the CLI reports as a user's mistake."""

from spaces.errors import SpaceError
from trainers.errors import ConfigError, DataError


class StudyError(ValueError):
    """A study cannot be created or joined as asked (bad study file, clashing name, bad URL...)."""


class InfrastructureError(RuntimeError):
    """Storage or tracking could not be reached in time: not the user's input, exit code 1."""


# The CLI prints these as one line and exits 2: the user can fix them, a traceback won't help.
USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DataError, SpaceError, StudyError)
