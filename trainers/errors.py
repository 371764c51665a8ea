"""Errors a user can cause and fix. Each message names the field or file, the rule and the value."""

from trainers.config import ConfigError


class DataError(ValueError):
    """A dataset cannot be loaded as asked: unknown name, missing target column, empty file..."""


__all__ = ["ConfigError", "DataError"]
