"""Train one configuration of an MLP the way the lesson teaches. Knows nothing of Optuna or MLflow.

```python
from trainers import TrainConfig, DataCache, prepare_data, train

config = TrainConfig(dataset="digits", alpha=3e-3)
data = prepare_data(config, cache=DataCache())   # split, normalized, on config's device
result = train(config, data, report=lambda epoch, metrics: None)
retrain_data = data.merged_train_val()           # train on train+val, "validate" on test
```
"""

from typing import TYPE_CHECKING, Any

from trainers.config import TrainConfig
from trainers.errors import ConfigError, DataError

if TYPE_CHECKING:  # the real names, for type checkers; at run time they load lazily (below)
    from trainers.data import DataCache, DeviceData, prepare_data
    from trainers.device import resolve_device
    from trainers.features import DataSummary, check_data
    from trainers.loop import train
    from trainers.result import TrainResult, default_metric
    from trainers.schedules import learning_rate

# Loaded on first use (PEP 562): `spaces` reads `trainers.config` to validate field names, and
# must not pay for (or depend on) importing torch.
_LAZY = {
    "DataCache": "trainers.data",
    "DataSummary": "trainers.features",
    "check_data": "trainers.features",
    "DeviceData": "trainers.data",
    "prepare_data": "trainers.data",
    "resolve_device": "trainers.device",
    "train": "trainers.loop",
    "TrainResult": "trainers.result",
    "default_metric": "trainers.result",
    "learning_rate": "trainers.schedules",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainers' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataCache",
    "DataError",
    "DataSummary",
    "DeviceData",
    "TrainConfig",
    "TrainResult",
    "check_data",
    "default_metric",
    "learning_rate",
    "prepare_data",
    "resolve_device",
    "train",
]
