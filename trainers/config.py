"""`TrainConfig`: everything one training run needs, flat, with a default for every field.

The fields are the lesson's knobs (`../shared/lesson.md`): normalization, initialization,
optimizer and its betas, learning rate and its decay, and the network's shape. A search space
samples these fields by name, so a field's name is part of the public contract.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["auto", "classification", "regression"]

NORMALIZATIONS = ("none", "standardize", "minmax")
ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")
INITS = ("he", "xavier", "glorot_uniform", "default", "scaled_identity", "fixed_normal")
OPTIMIZERS = ("gd", "momentum", "rmsprop", "adam")
DECAYS = ("none", "inverse_time", "exponential", "inverse_sqrt", "step")
TASKS = ("auto", "classification", "regression")
MISSING_TARGETS = ("refuse", "drop")


class ConfigError(ValueError):
    """A `TrainConfig` field holds a value its rule refuses. The message names all three."""


@dataclass(frozen=True)
class TrainConfig:
    # --- data ---------------------------------------------------------------------------
    dataset: str = "digits"  # a built-in name, `synthetic:N` (N samples), or a .csv/.npz path
    target: str | None = None  # target column of a CSV (or array name in an .npz); None: "target"
    task: Task = "auto"  # auto: classification for built-ins, text or few-valued int targets
    normalization: str = "standardize"  # none | standardize (mean/std) | minmax ([0, 1])
    standardize_target: bool = True  # regression only; metrics stay in the target's units
    val_fraction: float = 0.2  # share of rows held out for validation
    test_fraction: float = 0.2  # share held out for the final test (only `retrain` reads it)
    split_seed: int = 0  # fixes the train/validation/test split (one per study)
    drop: tuple[str, ...] = ()  # columns (features) left out before anything else, by name
    missing_target: str = "refuse"  # rows whose target is missing: refuse | drop

    # --- network ------------------------------------------------------------------------
    hidden_layers: int = 2  # number of hidden layers (the lesson's "number of layers")
    hidden_units: int = 128  # units in each hidden layer
    activation: str = "relu"  # relu | tanh | sigmoid | linear
    init: str = "he"  # he (std sqrt(2/n_in)) | xavier (sqrt(1/n_in)) | glorot_uniform | default
    # | scaled_identity (init_scale * I, square layers; the lesson's 1.3 * I demo) | fixed_normal
    init_scale: float = 1.0  # the scale of `scaled_identity` / the std of `fixed_normal`

    # --- optimization -------------------------------------------------------------------
    # The `lesson` space's defaults (spaces/builtin/lesson.toml), so that an untuned `train`
    # and an unsearched tier agree: momentum, whose beta is the lesson's tier 2, at an alpha it
    # trains well with in a few epochs (10 epochs: digits 0.95, wine 1.0, breast_cancer 0.96,
    # as Adam at 1e-3 does).
    optimizer: str = "momentum"  # gd | momentum | rmsprop | adam
    alpha: float = 0.1  # the learning rate; the lesson's most important hyperparameter
    beta: float = 0.9  # momentum's and RMSprop's averaging coefficient (window ~ 1/(1-beta))
    beta1: float = 0.9  # Adam's first moment; the lesson: almost never tuned
    beta2: float = 0.999  # Adam's second moment; almost never tuned
    epsilon: float = 1e-8  # added to denominators (RMSprop, Adam); almost never tuned
    batch_size: int = 32  # mini-batch size
    epochs: int = 20  # passes over the training split

    # --- learning-rate decay (per epoch; epoch counts from 0) ---------------------------
    decay: str = "none"  # none | inverse_time | exponential | inverse_sqrt | step
    decay_rate: float = 1.0  # inverse_time: alpha0 / (1 + decay_rate * epoch)
    decay_base: float = 0.97  # exponential: alpha0 * decay_base ** epoch
    decay_k: float = 1.0  # inverse_sqrt: alpha0 * k / sqrt(epoch) (epoch 0 uses alpha0)
    decay_milestones: tuple[int, ...] = ()  # step: epochs at which alpha is multiplied ...
    decay_gamma: float = 0.1  # ... by this factor

    # --- health and stopping ------------------------------------------------------------
    explode_threshold: float = 1e4  # a layer's gradient norm above this: diverged
    vanish_ratio: float = 1e-3  # first/last layer gradient-norm ratio below this: "vanishing"
    early_stopping_patience: int = 0  # epochs without validation improvement; 0 turns it off

    # --- run ----------------------------------------------------------------------------
    seed: int = 0  # weights and mini-batch order; the same seed on CPU gives the same bits
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N

    def __post_init__(self) -> None:
        # Coerce TOML/CLI friendly forms once, so every consumer sees one type.
        for name in ("decay_milestones", "drop"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        """One flat dict: logged in one call, stored with a trial, accepted by `from_dict`."""
        out = dataclasses.asdict(self)
        out["decay_milestones"] = list(self.decay_milestones)
        out["drop"] = list(self.drop)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a mapping, refusing unknown keys by name (typos must not pass silently)."""
        known = field_names()
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown TrainConfig field(s) {unknown}; known fields: {sorted(known)}"
            )
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def field_names() -> set[str]:
    return {f.name for f in dataclasses.fields(TrainConfig)}


def field_types() -> dict[str, type]:
    """The Python type a field's value must have (for space validation and CLI parsing)."""
    types: dict[str, type] = {}
    for f in dataclasses.fields(TrainConfig):
        default = f.default
        types[f.name] = str if default is None else type(default)
    return types


def _fail(name: str, rule: str, value: Any) -> ConfigError:
    return ConfigError(f"`{name}` {rule}, but got {name}={value!r}")


def _validate(c: TrainConfig) -> None:
    choices = {
        "normalization": NORMALIZATIONS,
        "activation": ACTIVATIONS,
        "init": INITS,
        "optimizer": OPTIMIZERS,
        "decay": DECAYS,
        "task": TASKS,
        "missing_target": MISSING_TARGETS,
    }
    for name, allowed in choices.items():
        value = getattr(c, name)
        if value not in allowed:
            raise _fail(name, f"must be one of {list(allowed)}", value)

    ints = {
        "hidden_layers": 1,
        "hidden_units": 1,
        "batch_size": 1,
        "epochs": 1,
        "early_stopping_patience": 0,
        "split_seed": 0,
        "seed": 0,
    }
    for name, low in ints.items():
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(name, "must be an integer", value)
        if value < low:
            raise _fail(name, f"must be >= {low}", value)

    positive = ("alpha", "epsilon", "decay_base", "decay_k", "explode_threshold", "init_scale")
    for name in positive:
        value = getattr(c, name)
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            raise _fail(name, "must be a finite number > 0", value)
    for name in ("decay_rate", "decay_gamma", "vanish_ratio"):
        value = getattr(c, name)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise _fail(name, "must be a finite number >= 0", value)
    for name in ("beta", "beta1", "beta2"):
        value = getattr(c, name)
        if not _is_number(value) or not 0 <= value < 1:
            raise _fail(name, "must be in [0, 1)", value)
    for name in ("val_fraction", "test_fraction"):
        value = getattr(c, name)
        if not _is_number(value) or not 0 < value < 1:
            raise _fail(name, "must be in (0, 1)", value)
    if c.val_fraction + c.test_fraction >= 1:
        raise _fail(
            "val_fraction",
            f"plus test_fraction={c.test_fraction} must leave rows to train on (sum < 1)",
            c.val_fraction,
        )
    if any(not isinstance(m, int) or m < 1 for m in c.decay_milestones) or list(
        c.decay_milestones
    ) != sorted(set(c.decay_milestones)):
        raise _fail("decay_milestones", "must be increasing integers >= 1", c.decay_milestones)
    if not isinstance(c.drop, tuple) or not all(isinstance(d, str) and d for d in c.drop):
        raise _fail("drop", "must be a list of column names", c.drop)
    if not isinstance(c.dataset, str) or not c.dataset:
        raise _fail("dataset", "must be a non-empty name or path", c.dataset)
    if not isinstance(c.standardize_target, bool):
        raise _fail("standardize_target", "must be true or false", c.standardize_target)
    if not (c.device in ("auto", "cpu", "cuda") or c.device.startswith("cuda:")):
        raise _fail("device", "must be auto, cpu, cuda or cuda:N", c.device)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Which fields each optimizer / decay schedule reads: `hpsearch train` refuses a flag that the
# chosen one would ignore (a silently ignored `--beta` under Adam reads like a tuned beta).
OPTIMIZER_FIELDS: dict[str, tuple[str, ...]] = {
    "beta": ("momentum", "rmsprop"),
    "beta1": ("adam",),
    "beta2": ("adam",),
    "epsilon": ("rmsprop", "adam"),
}
DECAY_FIELDS: dict[str, tuple[str, ...]] = {
    "decay_rate": ("inverse_time",),
    "decay_base": ("exponential",),
    "decay_k": ("inverse_sqrt",),
    "decay_milestones": ("step",),
    "decay_gamma": ("step",),
}
INIT_FIELDS: dict[str, tuple[str, ...]] = {"init_scale": ("scaled_identity", "fixed_normal")}


def ignored_fields(config: TrainConfig) -> dict[str, str]:
    """Field -> why `config` ignores it (its optimizer or decay schedule never reads it)."""
    out = {}
    for name, readers in OPTIMIZER_FIELDS.items():
        if config.optimizer not in readers:
            out[name] = f"only {' and '.join(readers)} read it, and optimizer={config.optimizer!r}"
    for name, readers in DECAY_FIELDS.items():
        if config.decay not in readers:
            out[name] = f"only decay={readers[0]!r} reads it, and decay={config.decay!r}"
    for name, readers in INIT_FIELDS.items():
        if config.init not in readers:
            out[name] = f"only init={' or '.join(readers)} read it, and init={config.init!r}"
    return out
