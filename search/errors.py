"""Errors of the service layer, and the set of errors the CLI reports as a user's mistake."""


class StudyError(ValueError):
    """A study cannot be created or joined as asked (bad study file, clashing name, bad URL...)."""


class InfrastructureError(RuntimeError):
    """Storage or tracking could not be reached in time: not the user's input, exit code 1."""


class WorkerStopped(Exception):
    """A worker was asked to stop (SIGTERM): its trial was re-queued, its results recorded."""


def user_errors() -> tuple[type[Exception], ...]:
    """The errors the CLI prints as one line, exit 2: the user can fix them, a traceback won't
    help. A function, not a constant: `spaces` imports Optuna, which `--help` does without."""
    from spaces.errors import SpaceError
    from trainers.errors import ConfigError, DataError

    return (ConfigError, DataError, SpaceError, StudyError)
