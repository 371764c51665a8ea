"""Train one configuration of an MLP the way the lesson teaches. Knows nothing of Optuna or MLflow."""

from trainers.config import TrainConfig
from trainers.errors import ConfigError, DataError

__all__ = ["ConfigError", "DataError", "TrainConfig"]
